//! Rollouts as stored: the rows, their reads, and the one way a state changes
//! ([`transition`]): the new state, an event (the webhook event id), one outbox row per
//! webhook and an audit entry, all in the caller's transaction.

use chrono::{DateTime, SecondsFormat, Utc};
use flotilla_api::{
    Gates, Release, Rollout, RolloutEvent, RolloutTargets, Schedule, WaveJobOptions, WaveSpec,
};
use serde_json::{Value, json};
use sqlx::PgConnection;
use sqlx::types::Json;

use super::gates::Tally;

/// The actor of changes the orchestrator makes on its own.
pub const ORCHESTRATOR: &str = "orchestrator";

/// Rollout states in which the orchestrator has work to do.
pub const ACTIVE: [&str; 3] = ["running", "following", "rolling_back"];

/// Rollout states that never change again.
pub const FINISHED: [&str; 3] = ["completed", "canceled", "rolled_back"];

/// Execution statuses that count as a failure of the thing.
pub const FAILED_STATUSES: [&str; 5] = ["FAILED", "TIMED_OUT", "REJECTED", "CANCELED", "REMOVED"];

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn rfc3339_opt(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(rfc3339)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RolloutRow {
    pub rollout_id: String,
    pub description: Option<String>,
    pub release: Json<Release>,
    pub document: Value,
    pub previous_release: Option<Json<Release>>,
    pub previous_document: Option<Value>,
    pub targets: Json<RolloutTargets>,
    pub canary_things: Vec<String>,
    pub job_options: Json<WaveJobOptions>,
    pub gates: Json<Gates>,
    pub failure_policy: String,
    pub schedule: Option<Json<Schedule>>,
    pub continuous: bool,
    pub state: String,
    pub state_reason: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WaveRow {
    pub number: i32,
    pub spec: Json<WaveSpec>,
    pub state: String,
    pub job_id: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub passed_at: Option<DateTime<Utc>>,
    pub approved_by: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
    pub promoted_by: Option<String>,
}

impl WaveRow {
    /// The wave's own gates, else the rollout's.
    pub fn gates<'a>(&'a self, rollout: &'a RolloutRow) -> &'a Gates {
        self.spec.gates.as_ref().unwrap_or(&rollout.gates.0)
    }
}

impl RolloutRow {
    pub fn to_api(&self, waves: &[WaveRow]) -> Rollout {
        Rollout {
            rollout_id: self.rollout_id.clone(),
            description: self.description.clone(),
            state: self.state.clone(),
            state_reason: self.state_reason.clone(),
            release: self.release.0.clone(),
            previous_release: self.previous_release.as_ref().map(|r| r.0.clone()),
            targets: self.targets.0.clone(),
            canary_things: self.canary_things.clone(),
            failure_policy: self.failure_policy.clone(),
            continuous: self.continuous,
            gates: self.gates.0.clone(),
            schedule: self.schedule.as_ref().map(|s| s.0.clone()),
            current_wave: current(waves).map(|w| w.number),
            wave_count: waves.len() as i32,
            created_by: self.created_by.clone(),
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
        }
    }
}

/// The first wave that has not passed.
pub fn current(waves: &[WaveRow]) -> Option<&WaveRow> {
    waves.iter().find(|w| w.state != "passed")
}

const SELECT_ROLLOUT: &str = "select rollout_id, description, release, document, previous_release,
        previous_document, targets, canary_things, job_options, gates, failure_policy, schedule,
        continuous, state, state_reason, created_by, created_at, updated_at
     from server.rollouts";

/// The rollout, locked for the rest of the transaction: the orchestrator and operators'
/// actions change a rollout one at a time.
pub async fn lock(conn: &mut PgConnection, rollout_id: &str) -> sqlx::Result<Option<RolloutRow>> {
    sqlx::query_as(&format!(
        "{SELECT_ROLLOUT} where rollout_id = $1 for update"
    ))
    .bind(rollout_id)
    .fetch_optional(conn)
    .await
}

pub async fn read(conn: &mut PgConnection, rollout_id: &str) -> sqlx::Result<Option<RolloutRow>> {
    sqlx::query_as(&format!("{SELECT_ROLLOUT} where rollout_id = $1"))
        .bind(rollout_id)
        .fetch_optional(conn)
        .await
}

pub async fn list(conn: &mut PgConnection, state: Option<&str>) -> sqlx::Result<Vec<RolloutRow>> {
    sqlx::query_as(&format!(
        "{SELECT_ROLLOUT} where ($1::text is null or state = $1) order by created_at desc limit 500"
    ))
    .bind(state)
    .fetch_all(conn)
    .await
}

pub async fn waves(conn: &mut PgConnection, rollout_id: &str) -> sqlx::Result<Vec<WaveRow>> {
    sqlx::query_as(
        "select number, spec, state, job_id, started_at, finished_at, passed_at, approved_by,
                approved_at, promoted_by
         from server.rollout_waves where rollout_id = $1 order by number",
    )
    .bind(rollout_id)
    .fetch_all(conn)
    .await
}

/// How wave `wave`'s things stand, each by its current job (a retry replaces the wave's).
pub async fn tally(conn: &mut PgConnection, rollout_id: &str, wave: i32) -> sqlx::Result<Tally> {
    let rows: Vec<(Option<String>, bool)> = sqlx::query_as(
        "select e.status, t.healthy_at is not null
         from server.rollout_things t
         left join server.job_executions e on e.job_id = t.job_id and e.thing_name = t.thing_name
         where t.rollout_id = $1 and t.wave = $2",
    )
    .bind(rollout_id)
    .bind(wave)
    .fetch_all(conn)
    .await?;
    let mut tally = Tally::default();
    for (status, healthy) in rows {
        tally.add(status.as_deref());
        if healthy && status.as_deref() == Some("SUCCEEDED") {
            tally.healthy += 1;
        }
    }
    Ok(tally)
}

/// Things of wave `wave` (every wave with `None`) whose current execution has one of
/// `statuses`, with that job.
pub async fn things_with_status(
    conn: &mut PgConnection,
    rollout_id: &str,
    wave: Option<i32>,
    statuses: &[&str],
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "select t.thing_name, t.job_id
         from server.rollout_things t
         join server.job_executions e on e.job_id = t.job_id and e.thing_name = t.thing_name
         where t.rollout_id = $1 and ($2::integer is null or t.wave = $2) and e.status = any($3)
         order by t.thing_name",
    )
    .bind(rollout_id)
    .bind(wave)
    .bind(statuses)
    .fetch_all(conn)
    .await
}

/// Every thing the rollout has reached.
pub async fn reached(
    conn: &mut PgConnection,
    rollout_id: &str,
) -> sqlx::Result<std::collections::BTreeSet<String>> {
    let names: Vec<String> =
        sqlx::query_scalar("select thing_name from server.rollout_things where rollout_id = $1")
            .bind(rollout_id)
            .fetch_all(conn)
            .await?;
    Ok(names.into_iter().collect())
}

/// Records that `job_id` (of `kind`) now carries the release to `things`.
pub async fn record_job(
    conn: &mut PgConnection,
    rollout_id: &str,
    job_id: &str,
    kind: &str,
    wave: Option<i32>,
    things: &[String],
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into server.rollout_jobs (job_id, rollout_id, kind, wave) values ($1, $2, $3, $4)
         on conflict (job_id) do nothing",
    )
    .bind(job_id)
    .bind(rollout_id)
    .bind(kind)
    .bind(wave)
    .execute(&mut *conn)
    .await?;
    // A rollback job installs the old release: the things stay where their wave put them.
    if kind != "rollback" {
        sqlx::query(
            "insert into server.rollout_things (rollout_id, thing_name, wave, job_id)
             select $1, thing, $2, $3 from unnest($4::text[]) as thing
             on conflict (rollout_id, thing_name)
             do update set job_id = excluded.job_id, healthy_at = null",
        )
        .bind(rollout_id)
        .bind(wave.unwrap_or(0))
        .bind(job_id)
        .bind(things)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A state change of the rollout (`wave: None`) or of one wave.
#[derive(Debug)]
pub struct Change<'a> {
    pub actor: &'a str,
    pub wave: Option<i32>,
    pub from: Option<&'a str>,
    pub to: &'a str,
    pub reason: Option<String>,
}

/// Applies `change` to the rollout or wave and records it: the event, its webhook deliveries
/// and the audit entry, in the caller's transaction.
pub async fn transition(
    conn: &mut PgConnection,
    rollout_id: &str,
    change: Change<'_>,
) -> sqlx::Result<RolloutEvent> {
    match change.wave {
        None => {
            sqlx::query(
                "update server.rollouts set state = $2, state_reason = $3, updated_at = now()
                 where rollout_id = $1",
            )
            .bind(rollout_id)
            .bind(change.to)
            .bind(&change.reason)
            .execute(&mut *conn)
            .await?;
        }
        Some(number) => {
            sqlx::query(
                "update server.rollout_waves set state = $3,
                    passed_at = case when $3 = 'passed' then now() else passed_at end
                 where rollout_id = $1 and number = $2",
            )
            .bind(rollout_id)
            .bind(number)
            .bind(change.to)
            .execute(&mut *conn)
            .await?;
            sqlx::query("update server.rollouts set updated_at = now() where rollout_id = $1")
                .bind(rollout_id)
                .execute(&mut *conn)
                .await?;
        }
    }
    let subject = if change.wave.is_some() {
        "wave"
    } else {
        "rollout"
    };
    let (id, at): (i64, DateTime<Utc>) = sqlx::query_as(
        "insert into server.rollout_events
            (rollout_id, actor, subject, wave, from_state, to_state, reason)
         values ($1, $2, $3, $4, $5, $6, $7) returning id, at",
    )
    .bind(rollout_id)
    .bind(change.actor)
    .bind(subject)
    .bind(change.wave)
    .bind(change.from)
    .bind(change.to)
    .bind(&change.reason)
    .fetch_one(&mut *conn)
    .await?;
    let event = RolloutEvent {
        id,
        rollout_id: rollout_id.to_owned(),
        at: rfc3339(at),
        actor: change.actor.to_owned(),
        subject: subject.to_owned(),
        wave: change.wave,
        from_state: change.from.map(str::to_owned),
        to_state: change.to.to_owned(),
        reason: change.reason,
    };
    let payload = serde_json::to_value(&event).unwrap_or(Value::Null);
    sqlx::query(
        "insert into server.webhook_outbox (webhook_id, event_id, payload)
         select id, $2, $3 from server.rollout_webhooks where rollout_id = $1",
    )
    .bind(rollout_id)
    .bind(id)
    .bind(&payload)
    .execute(&mut *conn)
    .await?;
    crate::audit::record_change(
        conn,
        &event.actor,
        &format!("{subject} transition"),
        &format!("/api/v1/rollouts/{rollout_id}"),
        json!({
            "event_id": id,
            "wave": event.wave,
            "from": event.from_state,
            "to": event.to_state,
            "reason": event.reason,
        }),
    )
    .await?;
    Ok(event)
}

/// Sets the rollout's reason without a state change (what it waits for); no event.
pub async fn set_reason(
    conn: &mut PgConnection,
    rollout: &RolloutRow,
    reason: Option<String>,
) -> sqlx::Result<()> {
    if rollout.state_reason == reason {
        return Ok(());
    }
    sqlx::query("update server.rollouts set state_reason = $2 where rollout_id = $1")
        .bind(&rollout.rollout_id)
        .bind(reason)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn events(conn: &mut PgConnection, rollout_id: &str) -> sqlx::Result<Vec<RolloutEvent>> {
    let rows: Vec<EventRow> = sqlx::query_as(
        "select id, rollout_id, at, actor, subject, wave, from_state, to_state, reason
         from server.rollout_events where rollout_id = $1 order by id",
    )
    .bind(rollout_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RolloutEvent {
            id: r.id,
            rollout_id: r.rollout_id,
            at: rfc3339(r.at),
            actor: r.actor,
            subject: r.subject,
            wave: r.wave,
            from_state: r.from_state,
            to_state: r.to_state,
            reason: r.reason,
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    rollout_id: String,
    at: DateTime<Utc>,
    actor: String,
    subject: String,
    wave: Option<i32>,
    from_state: Option<String>,
    to_state: String,
    reason: Option<String>,
}

/// The jobs the rollout created, oldest first.
pub async fn jobs(
    conn: &mut PgConnection,
    rollout_id: &str,
) -> sqlx::Result<Vec<flotilla_api::RolloutJob>> {
    let rows: Vec<(String, String, Option<i32>, DateTime<Utc>)> = sqlx::query_as(
        "select job_id, kind, wave, created_at from server.rollout_jobs
         where rollout_id = $1 order by created_at, job_id",
    )
    .bind(rollout_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(job_id, kind, wave, created_at)| flotilla_api::RolloutJob {
                job_id,
                kind,
                wave,
                created_at: rfc3339(created_at),
            },
        )
        .collect())
}
