//! `/api/v1/rollouts`: create (and preview), list, read with waves and gate status, and the
//! operators' actions: pause, resume, cancel, promote, approve, retry failed devices.
//!
//! Every action changes state through [`super::model::transition`] with the acting operator
//! (the audit hook's [`Actor`]) and the given reason, and wakes the orchestrator.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use flotilla_api::{
    Conflict, CreateRollout, GateStatus, PreviewWave, RolloutAction, RolloutDetail, RolloutList,
    RolloutPreview, WaveSpec, WaveStatus,
};
use serde_json::Value;
use sqlx::PgConnection;
use sqlx::types::Json as SqlJson;

use super::model::{self, RolloutRow, WaveRow};
use super::orchestrator::{Orchestrator, StepError, wave_job_id};
use super::{gates, release, schedule, selection};
use crate::api::job_options::Problems;
use crate::api::{ApiError, ApiJson, ApiQuery, valid_id};
use crate::app::AppState;
use crate::audit::Actor;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rollouts", get(list).post(create))
        .route("/rollouts/preview", post(preview_new))
        .route("/rollouts/{rollout_id}", get(detail))
        .route("/rollouts/{rollout_id}/preview", get(preview_existing))
        .route("/rollouts/{rollout_id}/pause", post(pause))
        .route("/rollouts/{rollout_id}/resume", post(resume))
        .route("/rollouts/{rollout_id}/cancel", post(cancel))
        .route("/rollouts/{rollout_id}/rollback", post(rollback))
        .route("/rollouts/{rollout_id}/promote", post(promote))
        .route("/rollouts/{rollout_id}/approve", post(approve))
        .route("/rollouts/{rollout_id}/retry-failed", post(retry_failed))
}

impl From<StepError> for ApiError {
    fn from(error: StepError) -> Self {
        match error {
            StepError::Database(e) => Self::Database(e),
            StepError::Iot(e) => e.into(),
        }
    }
}

/// The longest rollout id: wave, retry and rollback job ids add at most 24 characters to it.
const MAX_ROLLOUT_ID: usize = 40;

/// A create request, checked and resolved.
struct NewRollout {
    request: CreateRollout,
    document: Value,
    previous_document: Option<Value>,
    set: BTreeSet<String>,
}

/// Checks a create request completely and reports every problem at once.
async fn validate(state: &AppState, mut request: CreateRollout) -> Result<NewRollout, ApiError> {
    let mut problems = Problems::default();
    if !(valid_id(&request.rollout_id) && request.rollout_id.len() <= MAX_ROLLOUT_ID) {
        problems.add(
            "rollout_id",
            format!("must be 1-{MAX_ROLLOUT_ID} characters of letters, digits, '-' and '_'"),
        );
    }
    if request
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 2028)
    {
        problems.add("description", "must be at most 2028 characters");
    }
    let document = release::resolve(state, "release", &mut request.release, &mut problems).await?;
    let previous_document = match request.previous_release.as_mut() {
        Some(previous) => {
            release::resolve(state, "previous_release", previous, &mut problems).await?
        }
        None => None,
    };
    match request.failure_policy.as_str() {
        "pause" | "cancel" => {}
        "rollback" => problems.check(
            request.previous_release.is_some(),
            "previous_release",
            || "the rollback policy needs the release to roll back to".into(),
        ),
        _ => problems.add("failure_policy", "must be pause, cancel or rollback"),
    }
    if !(1..=20).contains(&request.waves.len()) {
        problems.add("waves", "give 1 to 20 waves");
    }
    for (i, wave) in request.waves.iter().enumerate() {
        let field = format!("waves[{i}]");
        match (wave.count, wave.percent) {
            (Some(count), None) => problems.check(count >= 1, &format!("{field}.count"), || {
                format!("must be at least 1, got {count}")
            }),
            (None, Some(percent)) => problems.check(
                percent > 0.0 && percent <= 100.0,
                &format!("{field}.percent"),
                || format!("must be above 0 and at most 100, got {percent}"),
            ),
            _ => problems.add(field.clone(), "give exactly one of count and percent"),
        }
        if let Some(options) = &wave.job_options {
            release::job_options(options, &format!("{field}.job_options"), &mut problems);
        }
        if let Some(wave_gates) = &wave.gates {
            gates::validate(wave_gates, &format!("{field}.gates"), &mut problems);
        }
    }
    release::job_options(&request.job_options, "job_options", &mut problems);
    gates::validate(&request.gates, "gates", &mut problems);
    if let Some(plan) = &request.schedule {
        schedule::validate(plan, &mut problems);
    }
    if request.webhooks.len() > 5 {
        problems.add("webhooks", "at most 5 webhooks");
    }
    for (i, hook) in request.webhooks.iter().enumerate() {
        problems.check(
            (hook.url.starts_with("http://") || hook.url.starts_with("https://"))
                && hook.url.len() <= 2048
                && reqwest::Url::parse(&hook.url).is_ok(),
            &format!("webhooks[{i}].url"),
            || "must be an http:// or https:// URL of at most 2048 characters".into(),
        );
        problems.check(
            (16..=256).contains(&hook.secret.chars().count()),
            &format!("webhooks[{i}].secret"),
            || "must be 16-256 characters".into(),
        );
    }
    let targets = &request.targets;
    if targets.things.is_empty() && targets.thing_groups.is_empty() {
        problems.add("targets", "name at least one thing or thing group");
    }
    // The target set costs IoT calls: only for an otherwise valid request.
    if !problems.0.is_empty() {
        return Err(ApiError::fields(problems.0));
    }
    crate::api::jobs::resolve_targets(
        &state.iot,
        &targets.things,
        &targets.thing_groups,
        ("targets.things", "targets.thing_groups"),
        &mut problems,
    )
    .await?;
    if !problems.0.is_empty() {
        return Err(ApiError::fields(problems.0));
    }
    let set = selection::target_set(&state.iot, targets).await?;
    for canary in &request.canary_things {
        if !set.contains(canary) {
            problems.add(
                "canary_things",
                format!("{canary:?} is not in the target set"),
            );
        }
    }
    if !problems.0.is_empty() {
        return Err(ApiError::fields(problems.0));
    }
    Ok(NewRollout {
        request,
        // Both are present when there were no problems.
        document: document.unwrap_or_default(),
        previous_document,
        set,
    })
}

/// Things of `things` with QUEUED or IN_PROGRESS executions of jobs not of `rollout_id`.
async fn conflicts(
    conn: &mut PgConnection,
    rollout_id: &str,
    things: &[String],
) -> sqlx::Result<Vec<Conflict>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select e.thing_name, e.job_id, e.status from server.job_executions e
         where e.thing_name = any($1) and e.status in ('QUEUED', 'IN_PROGRESS')
           and not exists (select 1 from server.rollout_jobs j
                           where j.job_id = e.job_id and j.rollout_id = $2)
         order by e.thing_name, e.job_id",
    )
    .bind(things)
    .bind(rollout_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(thing_name, job_id, status)| Conflict {
            thing_name,
            job_id,
            status,
        })
        .collect())
}

/// The preview of `waves` (numbered from `first`) over `remaining`.
async fn preview(
    conn: &mut PgConnection,
    rollout_id: &str,
    first: i32,
    waves: &[WaveSpec],
    canary: &[String],
    total: usize,
    remaining: BTreeSet<String>,
) -> sqlx::Result<RolloutPreview> {
    let (planned, unassigned) = selection::plan(rollout_id, first, waves, canary, remaining);
    let mut out = Vec::new();
    for (i, things) in planned.into_iter().enumerate() {
        out.push(PreviewWave {
            number: first + i as i32,
            conflicts: conflicts(conn, rollout_id, &things).await?,
            things,
        });
    }
    Ok(RolloutPreview {
        total: total as i64,
        waves: out,
        unassigned,
    })
}

/// `POST /rollouts/preview`: what a create request would do now; nothing is stored.
#[utoipa::path(post, path = "/api/v1/rollouts/preview", operation_id = "rollouts_preview_new", tag = "rollouts", request_body(content = Object, description = "a rollout as for create"), responses((status = 200, description = "The things each wave would hit and conflicts with running jobs", body = Object), ApiError))]
pub(crate) async fn preview_new(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CreateRollout>,
) -> Result<Json<RolloutPreview>, ApiError> {
    let new = validate(&state, request).await?;
    let mut conn = state.pool.acquire().await?;
    let total = new.set.len();
    Ok(Json(
        preview(
            &mut conn,
            &new.request.rollout_id,
            1,
            &new.request.waves,
            &new.request.canary_things,
            total,
            new.set,
        )
        .await?,
    ))
}

/// `GET /rollouts/{id}/preview`: what the waves that have not started would take now.
#[utoipa::path(get, path = "/api/v1/rollouts/{rollout_id}/preview", operation_id = "rollouts_preview_existing", tag = "rollouts", params(("rollout_id" = String, Path, description = "The rollout id")), responses((status = 200, description = "The things each wave hits", body = Object), ApiError))]
pub(crate) async fn preview_existing(
    State(state): State<AppState>,
    Path(rollout_id): Path<String>,
) -> Result<Json<RolloutPreview>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let rollout = found(model::read(&mut conn, &rollout_id).await?, &rollout_id)?;
    let waves = model::waves(&mut conn, &rollout_id).await?;
    let set = selection::target_set(&state.iot, &rollout.targets).await?;
    let reached = model::reached(&mut conn, &rollout_id).await?;
    let remaining = set.difference(&reached).cloned().collect();
    let pending: Vec<&WaveRow> = waves.iter().filter(|w| w.state == "pending").collect();
    let first = pending.first().map_or(waves.len() as i32 + 1, |w| w.number);
    let specs: Vec<WaveSpec> = pending.iter().map(|w| w.spec.0.clone()).collect();
    Ok(Json(
        preview(
            &mut conn,
            &rollout_id,
            first,
            &specs,
            &rollout.canary_things,
            set.len(),
            remaining,
        )
        .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/rollouts", operation_id = "rollouts_create", tag = "rollouts", request_body(content = Object, description = "release, targets, waves, gates, policy, schedule, webhooks"), responses((status = 201, description = "The rollout as created", body = Object), ApiError))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(Actor(actor)): Extension<Actor>,
    ApiJson(request): ApiJson<CreateRollout>,
) -> Result<(StatusCode, Json<RolloutDetail>), ApiError> {
    let new = validate(&state, request).await?;
    let r = &new.request;
    let mut tx = state.pool.begin().await?;
    let inserted = sqlx::query(
        "insert into server.rollouts (rollout_id, description, release, document,
            previous_release, previous_document, targets, canary_things, job_options, gates,
            failure_policy, schedule, continuous, state, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'running', $14)
         on conflict (rollout_id) do nothing",
    )
    .bind(&r.rollout_id)
    .bind(&r.description)
    .bind(SqlJson(&r.release))
    .bind(&new.document)
    .bind(r.previous_release.as_ref().map(SqlJson))
    .bind(&new.previous_document)
    .bind(SqlJson(&r.targets))
    .bind(&r.canary_things)
    .bind(SqlJson(&r.job_options))
    .bind(SqlJson(&r.gates))
    .bind(&r.failure_policy)
    .bind(r.schedule.as_ref().map(SqlJson))
    .bind(r.continuous)
    .bind(&actor)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::Conflict(format!(
            "a rollout {:?} exists already",
            r.rollout_id
        )));
    }
    for (i, wave) in r.waves.iter().enumerate() {
        sqlx::query(
            "insert into server.rollout_waves (rollout_id, number, spec, state)
             values ($1, $2, $3, 'pending')",
        )
        .bind(&r.rollout_id)
        .bind(i as i32 + 1)
        .bind(SqlJson(wave))
        .execute(&mut *tx)
        .await?;
    }
    for hook in &r.webhooks {
        sqlx::query(
            "insert into server.rollout_webhooks (rollout_id, url, secret) values ($1, $2, $3)",
        )
        .bind(&r.rollout_id)
        .bind(&hook.url)
        .bind(&hook.secret)
        .execute(&mut *tx)
        .await?;
    }
    model::transition(
        &mut tx,
        &r.rollout_id,
        model::Change {
            actor: &actor,
            wave: None,
            from: None,
            to: "running",
            reason: Some(format!("created for {} things", new.set.len())),
        },
    )
    .await?;
    tx.commit().await?;
    wake(&state.rollouts);
    Ok((
        StatusCode::CREATED,
        Json(read_detail(&state, &r.rollout_id).await?),
    ))
}

#[derive(Debug, serde::Deserialize)]
pub(crate) struct ListQuery {
    state: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/rollouts", operation_id = "rollouts_list", tag = "rollouts", responses((status = 200, description = "Rollouts, newest first", body = Object), ApiError))]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<RolloutList>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let rows = model::list(&mut conn, query.state.as_deref()).await?;
    let mut rollouts = Vec::with_capacity(rows.len());
    for row in rows {
        let waves = model::waves(&mut conn, &row.rollout_id).await?;
        rollouts.push(row.to_api(&waves));
    }
    Ok(Json(RolloutList { rollouts }))
}

#[utoipa::path(get, path = "/api/v1/rollouts/{rollout_id}", operation_id = "rollouts_detail", tag = "rollouts", params(("rollout_id" = String, Path, description = "The rollout id")), responses((status = 200, description = "The rollout with its waves, gates and events", body = Object), ApiError))]
pub(crate) async fn detail(
    State(state): State<AppState>,
    Path(rollout_id): Path<String>,
) -> Result<Json<RolloutDetail>, ApiError> {
    Ok(Json(read_detail(&state, &rollout_id).await?))
}

fn found(row: Option<RolloutRow>, rollout_id: &str) -> Result<RolloutRow, ApiError> {
    row.ok_or_else(|| ApiError::NotFound(format!("no rollout {rollout_id:?}")))
}

/// The rollout with its waves (and their gates against the clock), jobs and events.
async fn read_detail(state: &AppState, rollout_id: &str) -> Result<RolloutDetail, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let rollout = found(model::read(&mut conn, rollout_id).await?, rollout_id)?;
    let waves = model::waves(&mut conn, rollout_id).await?;
    let now = state.rollouts.now();
    let mut statuses = Vec::with_capacity(waves.len());
    for wave in &waves {
        let tally = model::tally(&mut conn, rollout_id, wave.number).await?;
        let wave_gates = wave.gates(&rollout);
        let waiting_for = match (wave.state.as_str(), wave.finished_at) {
            ("verifying", Some(finished)) => {
                match gates::verify(wave_gates, &tally, finished, now, &rollout.release.version) {
                    gates::Verification::Wait(why) | gates::Verification::Failed(why) => Some(why),
                    gates::Verification::Passed => None,
                }
            }
            ("awaiting_approval", _) => Some("an operator's approval".to_owned()),
            _ => None,
        };
        statuses.push(WaveStatus {
            number: wave.number,
            state: wave.state.clone(),
            spec: wave.spec.0.clone(),
            job_id: wave.job_id.clone(),
            size: tally.size,
            queued: tally.queued,
            in_progress: tally.in_progress,
            succeeded: tally.succeeded,
            failed: tally.failed,
            healthy: tally.healthy,
            gate: GateStatus {
                gates: wave_gates.clone(),
                success_percent: tally.success_percent(),
                failure_percent: tally.failure_percent(),
                soak_until: model::rfc3339_opt(
                    wave.finished_at.map(|f| gates::soak_until(wave_gates, f)),
                ),
                health_deadline: model::rfc3339_opt(
                    wave.finished_at
                        .and_then(|f| gates::health_deadline(wave_gates, f)),
                ),
                waiting_for,
            },
            started_at: model::rfc3339_opt(wave.started_at),
            finished_at: model::rfc3339_opt(wave.finished_at),
            passed_at: model::rfc3339_opt(wave.passed_at),
            approved_by: wave.approved_by.clone(),
            approved_at: model::rfc3339_opt(wave.approved_at),
        });
    }
    let next_window = rollout
        .schedule
        .as_ref()
        .and_then(|s| schedule::validate(&s.0, &mut Problems::default()))
        .map(|plan| plan.times(plan.next_opening(now).unwrap_or(now)));
    Ok(RolloutDetail {
        rollout: rollout.to_api(&waves),
        waves: statuses,
        jobs: model::jobs(&mut conn, rollout_id).await?,
        events: model::events(&mut conn, rollout_id).await?,
        next_window,
    })
}

fn wake(orchestrator: &Orchestrator) {
    orchestrator.wake.notify_one();
    orchestrator.webhooks.notify_one();
}

/// An operator's action under way: a transaction holding the rollout's row lock, the rollout
/// and its waves, who acts and why.
struct Act {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    rollout: RolloutRow,
    waves: Vec<WaveRow>,
    actor: String,
    /// 1–1024 characters.
    why: Option<String>,
}

impl Act {
    /// Locks the rollout for `action`. A finished rollout is a conflict: nothing more can
    /// change. The reason is checked first (and required when `reason_required`).
    async fn begin(
        state: &AppState,
        rollout_id: &str,
        Actor(actor): Actor,
        action: RolloutAction,
        reason_required: bool,
    ) -> Result<Self, ApiError> {
        let why = match action.reason {
            Some(r) if r.trim().is_empty() || r.chars().count() > 1024 => {
                return Err(ApiError::field("reason", "must be 1-1024 characters"));
            }
            None if reason_required => return Err(ApiError::field("reason", "say why")),
            other => other,
        };
        let mut tx = state.pool.begin().await?;
        let rollout = found(model::lock(&mut tx, rollout_id).await?, rollout_id)?;
        if model::FINISHED.contains(&rollout.state.as_str()) {
            return Err(ApiError::Conflict(format!(
                "the rollout is {}; nothing more can change",
                rollout.state
            )));
        }
        let waves = model::waves(&mut tx, rollout_id).await?;
        Ok(Self {
            tx,
            rollout,
            waves,
            actor,
            why,
        })
    }

    /// A conflict unless the rollout is in one of `states`.
    fn require(&self, states: &[&str], to: &str) -> Result<(), ApiError> {
        if states.contains(&self.rollout.state.as_str()) {
            return Ok(());
        }
        Err(ApiError::Conflict(format!(
            "only a {} rollout can {to}; this one is {}",
            states.join(" or "),
            self.rollout.state
        )))
    }

    /// "{what} by {actor}: {why}", the reason recorded for the change.
    fn said(&self, what: &str) -> String {
        match &self.why {
            Some(why) => format!("{what} by {}: {why}", self.actor),
            None => format!("{what} by {}", self.actor),
        }
    }

    /// Changes the rollout's state.
    async fn rollout_to(&mut self, o: &Orchestrator, to: &str, what: &str) -> sqlx::Result<()> {
        let reason = self.said(what);
        o.rollout_to(&mut self.tx, &self.rollout, &self.actor, to, reason)
            .await
    }

    /// Changes wave `index`'s state.
    async fn wave_to(
        &mut self,
        o: &Orchestrator,
        index: usize,
        to: &str,
        what: &str,
    ) -> sqlx::Result<()> {
        let reason = self.said(what);
        o.wave_to(
            &mut self.tx,
            &self.rollout,
            &self.waves[index],
            &self.actor,
            to,
            reason,
        )
        .await
    }

    /// The index of the first wave that has not passed, if it is in one of `states`.
    fn current(&self, states: &[&str]) -> Option<usize> {
        let index = self.waves.iter().position(|w| w.state != "passed")?;
        states
            .contains(&self.waves[index].state.as_str())
            .then_some(index)
    }

    /// Commits, wakes the orchestrator and answers the rollout's detail.
    async fn commit(self, state: &AppState) -> Result<Json<RolloutDetail>, ApiError> {
        let rollout_id = self.rollout.rollout_id;
        self.tx.commit().await?;
        wake(&state.rollouts);
        Ok(Json(read_detail(state, &rollout_id).await?))
    }
}

#[utoipa::path(post, path = "/api/v1/rollouts/{rollout_id}/pause", operation_id = "rollouts_pause", tag = "rollouts", params(("rollout_id" = String, Path, description = "The rollout id")), request_body(content = Object, description = "the reason"), responses((status = 200, description = "The rollout after the action", body = Object), ApiError))]
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(rollout_id): Path<String>,
    Extension(actor): Extension<Actor>,
    ApiJson(action): ApiJson<RolloutAction>,
) -> Result<Json<RolloutDetail>, ApiError> {
    let mut act = Act::begin(&state, &rollout_id, actor, action, false).await?;
    act.require(&["running", "following"], "be paused")?;
    act.rollout_to(&state.rollouts, "paused", "paused").await?;
    act.commit(&state).await
}

/// Resumes a paused rollout. A wave that failed its gates is accepted as it is (the
/// operator's decision) and the next wave follows; to try its failed devices again, use
/// retry-failed instead.
#[utoipa::path(post, path = "/api/v1/rollouts/{rollout_id}/resume", operation_id = "rollouts_resume", tag = "rollouts", params(("rollout_id" = String, Path, description = "The rollout id")), request_body(content = Object, description = "the reason"), responses((status = 200, description = "The rollout after the action", body = Object), ApiError))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(rollout_id): Path<String>,
    Extension(actor): Extension<Actor>,
    ApiJson(action): ApiJson<RolloutAction>,
) -> Result<Json<RolloutDetail>, ApiError> {
    let mut act = Act::begin(&state, &rollout_id, actor, action, false).await?;
    act.require(&["paused"], "be resumed")?;
    if let Some(index) = act.current(&["failed"]) {
        act.wave_to(
            &state.rollouts,
            index,
            "passed",
            "accepted despite its failed gate",
        )
        .await?;
    }
    act.rollout_to(&state.rollouts, "running", "resumed")
        .await?;
    act.commit(&state).await
}

#[utoipa::path(post, path = "/api/v1/rollouts/{rollout_id}/cancel", operation_id = "rollouts_cancel", tag = "rollouts", params(("rollout_id" = String, Path, description = "The rollout id")), request_body(content = Object, description = "the reason"), responses((status = 200, description = "The rollout after the action", body = Object), ApiError))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(rollout_id): Path<String>,
    Extension(actor): Extension<Actor>,
    ApiJson(action): ApiJson<RolloutAction>,
) -> Result<Json<RolloutDetail>, ApiError> {
    let mut act = Act::begin(&state, &rollout_id, actor, action, true).await?;
    let reason = act.said("canceled");
    state
        .rollouts
        .cancel(&mut act.tx, &act.rollout, &act.actor, reason)
        .await?;
    act.commit(&state).await
}

/// Rolls back now, on the operator's word rather than a failed gate: stops the rollout's
/// unfinished jobs, and one job reinstalls the previous release on every thing that updated.
/// Needs a `previous_release` and a reason.
#[utoipa::path(post, path = "/api/v1/rollouts/{rollout_id}/rollback", operation_id = "rollouts_rollback", tag = "rollouts", params(("rollout_id" = String, Path, description = "The rollout id")), request_body(content = Object, description = "the reason (required)"), responses((status = 200, description = "The rollout after the action", body = Object), ApiError))]
pub(crate) async fn rollback(
    State(state): State<AppState>,
    Path(rollout_id): Path<String>,
    Extension(actor): Extension<Actor>,
    ApiJson(action): ApiJson<RolloutAction>,
) -> Result<Json<RolloutDetail>, ApiError> {
    let mut act = Act::begin(&state, &rollout_id, actor, action, true).await?;
    act.require(&["running", "paused", "following"], "be rolled back")?;
    if act.rollout.previous_document.is_none() {
        return Err(ApiError::Conflict(
            "the rollout has no previous_release to roll back to".into(),
        ));
    }
    let reason = act.said("rolled back");
    state
        .rollouts
        .roll_back(&mut act.tx, &act.rollout, &act.actor, reason)
        .await?;
    act.commit(&state).await
}

/// Promote now: the current wave's remaining gates (soak, health check, approval) are
/// waived and the next wave starts, or a wave waiting for its maintenance window starts
/// without it. A wave whose job still runs, or that failed, cannot be promoted.
#[utoipa::path(post, path = "/api/v1/rollouts/{rollout_id}/promote", operation_id = "rollouts_promote", tag = "rollouts", params(("rollout_id" = String, Path, description = "The rollout id")), request_body(content = Object, description = "the reason"), responses((status = 200, description = "The rollout after the action", body = Object), ApiError))]
pub(crate) async fn promote(
    State(state): State<AppState>,
    Path(rollout_id): Path<String>,
    Extension(actor): Extension<Actor>,
    ApiJson(action): ApiJson<RolloutAction>,
) -> Result<Json<RolloutDetail>, ApiError> {
    let mut act = Act::begin(&state, &rollout_id, actor, action, false).await?;
    act.require(&["running"], "be promoted")?;
    if let Some(index) = act.current(&["verifying", "awaiting_approval"]) {
        act.wave_to(&state.rollouts, index, "passed", "promoted")
            .await?;
    } else if let Some(index) = act.current(&["pending"]) {
        let number = act.waves[index].number;
        sqlx::query(
            "update server.rollout_waves set promoted_by = $3
             where rollout_id = $1 and number = $2",
        )
        .bind(&act.rollout.rollout_id)
        .bind(number)
        .bind(&act.actor)
        .execute(&mut *act.tx)
        .await?;
        let reason = act.said(&format!("wave {number} promoted"));
        model::set_reason(&mut act.tx, &act.rollout, Some(reason)).await?;
    } else {
        return Err(ApiError::Conflict(
            "the current wave's job still runs, or it has failed (resume or retry-failed)".into(),
        ));
    }
    act.commit(&state).await
}

/// Approves the wave awaiting approval. The actor is the audit hook's; once requests are
/// authenticated (issue 9) this is where the approver's role is checked.
#[utoipa::path(post, path = "/api/v1/rollouts/{rollout_id}/approve", operation_id = "rollouts_approve", tag = "rollouts", params(("rollout_id" = String, Path, description = "The rollout id")), request_body(content = Object, description = "the reason"), responses((status = 200, description = "The rollout after the action", body = Object), ApiError))]
pub(crate) async fn approve(
    State(state): State<AppState>,
    Path(rollout_id): Path<String>,
    Extension(actor): Extension<Actor>,
    ApiJson(action): ApiJson<RolloutAction>,
) -> Result<Json<RolloutDetail>, ApiError> {
    let mut act = Act::begin(&state, &rollout_id, actor, action, false).await?;
    let Some(index) = act.current(&["awaiting_approval"]) else {
        return Err(ApiError::Conflict(
            "no wave of this rollout is awaiting approval".into(),
        ));
    };
    sqlx::query(
        "update server.rollout_waves set approved_by = $3, approved_at = now()
         where rollout_id = $1 and number = $2",
    )
    .bind(&act.rollout.rollout_id)
    .bind(act.waves[index].number)
    .bind(&act.actor)
    .execute(&mut *act.tx)
    .await?;
    act.wave_to(&state.rollouts, index, "passed", "approved")
        .await?;
    act.commit(&state).await
}

/// Sends the release again to the current wave's things whose execution failed, in a new
/// job; the wave runs again (and its gates are judged again) until that job ends.
#[utoipa::path(post, path = "/api/v1/rollouts/{rollout_id}/retry-failed", operation_id = "rollouts_retry_failed", tag = "rollouts", params(("rollout_id" = String, Path, description = "The rollout id")), request_body(content = Object, description = "the reason"), responses((status = 200, description = "The rollout after the action", body = Object), ApiError))]
pub(crate) async fn retry_failed(
    State(state): State<AppState>,
    Path(rollout_id): Path<String>,
    Extension(actor): Extension<Actor>,
    ApiJson(action): ApiJson<RolloutAction>,
) -> Result<Json<RolloutDetail>, ApiError> {
    let mut act = Act::begin(&state, &rollout_id, actor, action, false).await?;
    act.require(&["running", "paused"], "retry failed devices")?;
    let Some(index) = act.current(&["failed", "verifying", "awaiting_approval"]) else {
        return Err(ApiError::Conflict(
            "only a wave whose job has ended can retry its failed devices".into(),
        ));
    };
    let number = act.waves[index].number;
    let failed: Vec<String> = model::things_with_status(
        &mut act.tx,
        &rollout_id,
        Some(number),
        &model::FAILED_STATUSES,
    )
    .await?
    .into_iter()
    .map(|(thing, _)| thing)
    .collect();
    if failed.is_empty() {
        return Err(ApiError::Conflict(format!(
            "no device of wave {number} failed"
        )));
    }
    let retries: i64 = sqlx::query_scalar(
        "select count(*) from server.rollout_jobs
         where rollout_id = $1 and wave = $2 and kind = 'retry'",
    )
    .bind(&rollout_id)
    .bind(number)
    .fetch_one(&mut *act.tx)
    .await?;
    let job_id = format!("{}-r{}", wave_job_id(&rollout_id, number), retries + 1);
    let options = release::merged(
        &act.rollout.job_options,
        act.waves[index].spec.job_options.as_ref(),
    );
    release::create(
        &state.rollouts.iot,
        &job_id,
        format!("rollout {rollout_id} wave {number}: retry of failed devices"),
        &failed,
        &act.rollout.document,
        &options,
        state.rollouts.presigned_url_role_arn.as_deref(),
    )
    .await?;
    model::record_job(
        &mut act.tx,
        &rollout_id,
        &job_id,
        "retry",
        Some(number),
        &failed,
    )
    .await?;
    sqlx::query(
        "update server.rollout_waves set finished_at = null where rollout_id = $1 and number = $2",
    )
    .bind(&rollout_id)
    .bind(number)
    .execute(&mut *act.tx)
    .await?;
    let what = format!("job {job_id} retries {} failed devices", failed.len());
    act.wave_to(&state.rollouts, index, "running", &what)
        .await?;
    if act.rollout.state == "paused" {
        act.rollout_to(&state.rollouts, "running", &what).await?;
    }
    state.rollouts.follow_job(&job_id).await;
    act.commit(&state).await
}
