//! The API's reads of the projection tables that `crate::projection` does not offer: filtered
//! job lists and keyset pages of executions. Kept here, apart, so a change of the projection's
//! tables touches only this file.

use chrono::{DateTime, Utc};
use flotilla_api::{Execution, Job};
use sqlx::PgPool;

use crate::projection::{JobRow, rfc3339};

/// Jobs newest first, optionally only those in `status` and those targeting thing group
/// `thing_group` (by the `:thinggroup/{name}` end of a target ARN, compared literally: a
/// name's `_` or `%` are no LIKE wildcards).
pub(super) async fn jobs(
    pool: &PgPool,
    status: Option<&str>,
    thing_group: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<Job>> {
    let rows: Vec<JobRow> = sqlx::query_as(
        "select job_id, job_arn, status, description, targets, queued, in_progress, succeeded,
                failed, rejected, canceled, timed_out, removed, created_at, updated_at, completed_at
             from server.jobs
             where ($1::text is null or status = $1)
               and ($2::text is null
                    or exists (select 1 from unnest(targets) t
                               where right(t, char_length($2) + 12) = ':thinggroup/' || $2))
             order by created_at desc, job_id
             limit $3",
    )
    .bind(status)
    .bind(thing_group)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Job::from).collect())
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

impl From<ExecutionRow> for Execution {
    fn from(row: ExecutionRow) -> Self {
        Execution {
            thing_name: row.thing_name,
            status: row.status,
            execution_number: row.execution_number,
            queued_at: row.queued_at.map(rfc3339),
            started_at: row.started_at.map(rfc3339),
            updated_at: row.updated_at.map(rfc3339),
        }
    }
}

/// Up to `limit` executions of `job_id` in thing-name order after `after`, optionally only
/// those in `status`. The primary key (job, thing) makes each page one index range scan.
pub(super) async fn executions(
    pool: &PgPool,
    job_id: &str,
    status: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<Execution>> {
    let rows: Vec<ExecutionRow> = sqlx::query_as(
        "select thing_name, status, execution_number, queued_at, started_at, updated_at
             from server.job_executions
             where job_id = $1
               and ($2::text is null or status = $2)
               and ($3::text is null or thing_name > $3)
             order by thing_name
             limit $4",
    )
    .bind(job_id)
    .bind(status)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Execution::from).collect())
}

/// One execution of a job, if the projection has it.
pub(super) async fn execution(
    pool: &PgPool,
    job_id: &str,
    thing_name: &str,
) -> sqlx::Result<Option<Execution>> {
    let row: Option<ExecutionRow> = sqlx::query_as(
        "select thing_name, status, execution_number, queued_at, started_at, updated_at
             from server.job_executions where job_id = $1 and thing_name = $2",
    )
    .bind(job_id)
    .bind(thing_name)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Execution::from))
}

/// Whether the projection knows job `job_id`.
pub(super) async fn job_exists(pool: &PgPool, job_id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("select exists (select 1 from server.jobs where job_id = $1)")
        .bind(job_id)
        .fetch_one(pool)
        .await
}
