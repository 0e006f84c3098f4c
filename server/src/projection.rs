//! The server's projection of IoT jobs and executions (schema `server`).
//!
//! AWS publishes events only when executions finish and jobs complete, and its list APIs are
//! paginated and throttled, so the UI never reads IoT directly: it reads these tables. They
//! are refreshed from IoT when a `$aws/events` message names a job, and every
//! `reconcile_every` for jobs still in progress (which is also how QUEUED → IN_PROGRESS
//! becomes visible, as AWS sends no event for it).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use flotilla_api::{Execution, ExecutionCounts, Job, JobDetail, JobStatus};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::iot::{Iot, IotError};

/// Reads and refreshes the projection.
#[derive(Clone, Debug)]
pub struct Projection {
    pool: PgPool,
    iot: Iot,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    job_id: String,
    job_arn: String,
    status: String,
    description: Option<String>,
    targets: Vec<String>,
    queued: i64,
    in_progress: i64,
    succeeded: i64,
    failed: i64,
    rejected: i64,
    canceled: i64,
    timed_out: i64,
    removed: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl From<JobRow> for Job {
    fn from(row: JobRow) -> Self {
        Job {
            job_id: row.job_id,
            job_arn: row.job_arn,
            status: JobStatus::parse(&row.status).unwrap_or(JobStatus::InProgress),
            description: row.description,
            targets: row.targets,
            counts: ExecutionCounts {
                queued: row.queued,
                in_progress: row.in_progress,
                succeeded: row.succeeded,
                failed: row.failed,
                rejected: row.rejected,
                canceled: row.canceled,
                timed_out: row.timed_out,
                removed: row.removed,
            },
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            completed_at: row.completed_at.map(rfc3339),
        }
    }
}

#[derive(sqlx::FromRow)]
struct ExecutionRow {
    thing_name: String,
    status: String,
    execution_number: Option<i64>,
    queued_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

const JOB_COLUMNS: &str = "job_id, job_arn, status, description, targets, queued, in_progress, \
     succeeded, failed, rejected, canceled, timed_out, removed, created_at, updated_at, completed_at";

impl Projection {
    pub fn new(pool: PgPool, iot: Iot) -> Self {
        Self { pool, iot }
    }

    /// Re-reads one job and all its executions from IoT and stores them.
    pub async fn refresh(&self, job_id: &str) -> Result<(), RefreshError> {
        let job = self.iot.describe_job(job_id).await?;
        let executions = self.iot.executions(job_id).await?;
        let c = &job.counts;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "insert into server.jobs (job_id, job_arn, status, description, targets, queued, in_progress,
                 succeeded, failed, rejected, canceled, timed_out, removed, created_at, updated_at,
                 completed_at, synced_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, now())
             on conflict (job_id) do update set
                 status = excluded.status, description = excluded.description,
                 targets = excluded.targets, queued = excluded.queued,
                 in_progress = excluded.in_progress, succeeded = excluded.succeeded,
                 failed = excluded.failed, rejected = excluded.rejected,
                 canceled = excluded.canceled, timed_out = excluded.timed_out,
                 removed = excluded.removed, updated_at = excluded.updated_at,
                 completed_at = excluded.completed_at, synced_at = now()",
        )
        .bind(&job.job_id)
        .bind(&job.job_arn)
        .bind(&job.status)
        .bind(&job.description)
        .bind(&job.targets)
        .bind(c.queued)
        .bind(c.in_progress)
        .bind(c.succeeded)
        .bind(c.failed)
        .bind(c.rejected)
        .bind(c.canceled)
        .bind(c.timed_out)
        .bind(c.removed)
        .bind(job.created_at)
        .bind(job.updated_at)
        .bind(job.completed_at)
        .execute(&mut *tx)
        .await?;
        let things: Vec<&str> = executions.iter().map(|e| e.thing_name.as_str()).collect();
        let statuses: Vec<&str> = executions.iter().map(|e| e.status.as_str()).collect();
        let numbers: Vec<Option<i64>> = executions.iter().map(|e| e.execution_number).collect();
        let queued: Vec<Option<DateTime<Utc>>> = executions.iter().map(|e| e.queued_at).collect();
        let started: Vec<Option<DateTime<Utc>>> = executions.iter().map(|e| e.started_at).collect();
        let updated: Vec<Option<DateTime<Utc>>> = executions.iter().map(|e| e.updated_at).collect();
        sqlx::query(
            "insert into server.job_executions (job_id, thing_name, status, execution_number, queued_at, started_at, updated_at)
             select $1, * from unnest($2::text[], $3::text[], $4::bigint[], $5::timestamptz[], $6::timestamptz[], $7::timestamptz[])
             on conflict (job_id, thing_name) do update set
                 status = excluded.status, execution_number = excluded.execution_number,
                 queued_at = excluded.queued_at, started_at = excluded.started_at,
                 updated_at = excluded.updated_at",
        )
        .bind(&job.job_id)
        .bind(&things)
        .bind(&statuses)
        .bind(&numbers)
        .bind(&queued)
        .bind(&started)
        .bind(&updated)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets a job that IoT deleted.
    pub async fn forget(&self, job_id: &str) -> sqlx::Result<()> {
        sqlx::query("delete from server.jobs where job_id = $1")
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The newest jobs first.
    pub async fn list_jobs(&self, limit: i64) -> sqlx::Result<Vec<Job>> {
        let rows: Vec<JobRow> = sqlx::query_as(&format!(
            "select {JOB_COLUMNS} from server.jobs order by created_at desc, job_id limit $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Job::from).collect())
    }

    /// One job with its executions, or `None` if the projection does not have it.
    pub async fn job(&self, job_id: &str) -> sqlx::Result<Option<JobDetail>> {
        let row: Option<JobRow> = sqlx::query_as(&format!(
            "select {JOB_COLUMNS} from server.jobs where job_id = $1"
        ))
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let executions: Vec<ExecutionRow> = sqlx::query_as(
            "select thing_name, status, execution_number, queued_at, started_at, updated_at
                 from server.job_executions where job_id = $1 order by thing_name",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(JobDetail {
            job: row.into(),
            executions: executions
                .into_iter()
                .map(|e| Execution {
                    thing_name: e.thing_name,
                    status: e.status,
                    execution_number: e.execution_number,
                    queued_at: e.queued_at.map(rfc3339),
                    started_at: e.started_at.map(rfc3339),
                    updated_at: e.updated_at.map(rfc3339),
                })
                .collect(),
        }))
    }

    /// Jobs the projection still considers running.
    async fn active_job_ids(&self) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar(
            "select job_id from server.jobs where status in ('IN_PROGRESS', 'SCHEDULED')",
        )
        .fetch_all(&self.pool)
        .await
    }
}

/// A refresh that failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Iot(#[from] IotError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Keeps the projection current: refreshes the jobs named on `changed` (batched, so a burst of
/// events for one job costs one refresh) and, every `every`, the jobs still running.
pub async fn run_refresher(
    projection: Projection,
    mut changed: mpsc::UnboundedReceiver<String>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut due = BTreeSet::new();
        tokio::select! {
            () = shutdown.cancelled() => return,
            Some(job_id) = changed.recv() => { due.insert(job_id); }
            _ = tick.tick() => match projection.active_job_ids().await {
                Ok(ids) => due.extend(ids),
                Err(error) => tracing::warn!(%error, "reading active jobs failed: {error}"),
            },
        }
        while let Ok(job_id) = changed.try_recv() {
            due.insert(job_id);
        }
        for job_id in due {
            if let Err(error) = projection.refresh(&job_id).await {
                tracing::warn!(job.id = %job_id, %error, "refreshing job {job_id} failed: {error}");
            }
        }
    }
}

/// Where the job-event subscriber connects, and as whom.
#[derive(Debug, Clone)]
pub struct EventSource {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
}

/// Subscribes to `$aws/events/job/#` and `$aws/events/jobExecution/#` and sends the job id of
/// every event to `changed`. Reconnects forever; after a reconnect the periodic
/// reconciliation covers whatever was missed.
pub async fn run_event_subscriber(
    source: EventSource,
    changed: mpsc::UnboundedSender<String>,
    shutdown: CancellationToken,
) {
    let client_id = format!("flotilla-server-{}", uuid::Uuid::new_v4().simple());
    let mut options = MqttOptions::new(client_id, source.host, source.port);
    options.set_credentials(source.username, source.password);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(256 * 1024, 256 * 1024);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                for filter in ["$aws/events/job/#", "$aws/events/jobExecution/#"] {
                    if let Err(error) = client.subscribe(filter, QoS::AtLeastOnce).await {
                        tracing::warn!(%error, "subscribing to {filter} failed: {error}");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                // $aws/events/job/{jobId}/{op} and $aws/events/jobExecution/{jobId}/{op}
                if let Some(job_id) = publish.topic.split('/').nth(3) {
                    let _ = changed.send(job_id.to_owned());
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "event subscriber disconnected: {error}");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
