//! Managing jobs after creation: CancelJob, DeleteJob, ListJobs, GetJobDocument,
//! DescribeJobExecution and ListJobExecutionsForThing.
//!
//! Cancel and delete change many executions at once. Each is one transaction that locks the
//! job row first and then the executions, the order the device's UpdateJobExecution takes, so
//! the two never deadlock and a device finishing its execution concurrently either lands
//! before the cancel (and is kept) or after it (and is rejected as a terminal state).
//! Messages go out after the commit, as everywhere in the engine.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{
    EXECUTION_COLUMNS, ErrorKind, ExecutionRow, JOB_COLUMNS, JobRow, Jobs, Result, ServiceError,
    StatusCounts, events,
};
use crate::model::{ExecutionStatus, valid_job_id, valid_thing_name};

/// The job statuses of AWS's `JobStatus`, for ListJobs' filter.
const JOB_STATUSES: [&str; 5] = [
    "IN_PROGRESS",
    "CANCELED",
    "COMPLETED",
    "DELETION_IN_PROGRESS",
    "SCHEDULED",
];

/// A job execution with what DescribeJobExecution adds to the stored row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExecutionDetail {
    #[sqlx(flatten)]
    pub execution: ExecutionRow,
    /// Seconds until the step or in-progress timeout, whichever comes first, while the
    /// execution can still time out.
    pub seconds_before_timed_out: Option<i64>,
}

/// What ListJobs filters on.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<String>,
    pub target_selection: Option<String>,
    /// Only jobs that target this thing group (by name; ListJobs may name it by id).
    pub thing_group_name: Option<String>,
    pub thing_group_id: Option<String>,
}

/// Where a page of a newest-first listing starts: after this (time, id) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    pub at: DateTime<Utc>,
    pub id: String,
}

impl PageToken {
    /// The opaque `nextToken`: callers must not build or edit tokens, so its format can change.
    pub fn encode(&self) -> String {
        hex::encode(format!("{}|{}", self.at.timestamp_micros(), self.id))
    }

    pub fn decode(token: &str) -> Result<Self> {
        let invalid = || ServiceError::invalid("nextToken is not a token this API returned");
        let text = hex::decode(token)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(invalid)?;
        let (micros, id) = text.split_once('|').ok_or_else(invalid)?;
        let at = micros
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(invalid)?;
        if !valid_job_id(id) {
            return Err(invalid());
        }
        Ok(Self {
            at,
            id: id.to_owned(),
        })
    }
}

pub fn check_job_id(job_id: &str) -> Result<()> {
    if valid_job_id(job_id) {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "jobId must be 1-64 characters of [a-zA-Z0-9_-], got {job_id:?}"
        )))
    }
}

pub fn check_thing_name(name: &str) -> Result<()> {
    if valid_thing_name(name) {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "thingName must be 1-128 characters of [a-zA-Z0-9:_-], got {name:?}"
        )))
    }
}

/// AWS's `ReasonCode`: `[\p{Upper}\p{Digit}_]+`, at most 128 characters.
fn check_reason_code(code: &str) -> Result<()> {
    let ok = (1..=128).contains(&code.chars().count())
        && code
            .chars()
            .all(|c| c.is_uppercase() || c.is_numeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "reasonCode must be 1-128 upper-case letters, digits or underscores",
        ))
    }
}

/// AWS's `Comment`: `[^\p{C}]+`, at most 2028 characters.
pub(super) fn check_comment(comment: &str) -> Result<()> {
    check_free_text("comment", comment)
}

/// AWS's free-text members (`Comment`, `JobDescription`): `[^\p{C}]+`, at most 2028
/// characters.
pub(super) fn check_free_text(member: &str, text: &str) -> Result<()> {
    let ok = (1..=2028).contains(&text.chars().count())
        && !text.chars().any(|c| c.is_control() || is_format_char(c));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "{member} must be 1-2028 characters without control characters"
        )))
    }
}

/// The common invisible format characters (`\p{Cf}`) a comment must not carry.
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

/// The job statuses ListJobs accepts as a filter.
fn check_job_status(status: &str) -> Result<()> {
    if JOB_STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "status must be one of {}, got {status:?}",
            JOB_STATUSES.join(", ")
        )))
    }
}

impl Jobs {
    /// CancelJob. QUEUED executions are canceled; IN_PROGRESS ones only with `force`, else
    /// they are left to finish (the job stays CANCELED whatever they report). A canceled job
    /// can be canceled again with `force` to cancel the executions the first cancel left.
    pub async fn cancel_job(
        &self,
        job_id: &str,
        force: bool,
        reason_code: Option<String>,
        comment: Option<String>,
    ) -> Result<JobRow> {
        check_job_id(job_id)?;
        if let Some(code) = &reason_code {
            check_reason_code(code)?;
        }
        if let Some(comment) = &comment {
            check_comment(comment)?;
        }
        let mut tx = self.pool.begin().await?;
        let job = lock_job(&mut tx, job_id).await?;
        // The model lists no InvalidStateTransitionException for CancelJob, so a job that
        // cannot be canceled is an InvalidRequestException.
        match (job.status.as_str(), force) {
            ("IN_PROGRESS" | "SCHEDULED", _) => {}
            ("CANCELED", true) if !job.force_canceled => {}
            ("CANCELED", _) => {
                return Err(ServiceError::invalid(format!(
                    "Job {job_id} is already canceled{}",
                    if job.force_canceled {
                        " with force"
                    } else {
                        "; pass force=true to cancel its IN_PROGRESS executions"
                    }
                )));
            }
            (status, _) => {
                return Err(ServiceError::invalid(format!(
                    "Job {job_id} is {status} and cannot be canceled"
                )));
            }
        }
        let canceling: &[&str] = if force {
            &["QUEUED", "IN_PROGRESS"]
        } else {
            &["QUEUED"]
        };
        let things = self.lock_executions(&mut tx, job_id, canceling).await?;
        let next_before = self.next_pending(&mut tx, &things).await?;
        let canceled: Vec<ExecutionRow> = sqlx::query_as(&format!(
            "update engine.job_executions set
                 status = 'CANCELED', force_canceled = $3,
                 version_number = version_number + 1, last_updated_at = now()
             where job_id = $1 and status = any($2)
             returning {EXECUTION_COLUMNS}"
        ))
        .bind(job_id)
        .bind(canceling)
        .bind(force)
        .fetch_all(&mut *tx)
        .await?;
        let updated: JobRow = sqlx::query_as(&format!(
            "update engine.jobs set status = 'CANCELED', force_canceled = force_canceled or $2,
                 reason_code = coalesce($3, reason_code), comment = coalesce($4, comment),
                 last_updated_at = now()
             where job_id = $1
             returning {JOB_COLUMNS}"
        ))
        .bind(job_id)
        .bind(force)
        .bind(&reason_code)
        .bind(&comment)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(job.id = %job_id, force, executions = canceled.len(), "canceled job {job_id} and {} executions", canceled.len());

        // A forced second cancel is no new job state; only the executions are news.
        if job.status != "CANCELED" {
            let counts = self.counts(job_id).await.unwrap_or_default();
            events::job(self, &updated, "canceled", &counts);
        }
        for execution in &canceled {
            events::execution(self, execution);
        }
        self.announce_changed(&things, next_before).await;
        Ok(updated)
    }

    /// DeleteJob. A job still IN_PROGRESS, or with executions still IN_PROGRESS, is only
    /// deleted with `force`, as the model documents.
    pub async fn delete_job(&self, job_id: &str, force: bool) -> Result<()> {
        check_job_id(job_id)?;
        let mut tx = self.pool.begin().await?;
        let job = lock_job(&mut tx, job_id).await?;
        let things = self
            .lock_executions(&mut tx, job_id, &["QUEUED", "IN_PROGRESS"])
            .await?;
        let counts = counts_in(&mut *tx, job_id).await?;
        let running = counts
            .get(&ExecutionStatus::InProgress)
            .copied()
            .unwrap_or(0);
        if !force && (job.status == "IN_PROGRESS" || running > 0) {
            return Err(ServiceError::new(
                ErrorKind::InvalidStateTransition,
                format!(
                    "Job {job_id} is {} with {running} executions IN_PROGRESS; pass force=true to delete it",
                    job.status
                ),
            ));
        }
        let next_before = self.next_pending(&mut tx, &things).await?;
        // The executions go with the job (on delete cascade).
        sqlx::query("delete from engine.jobs where job_id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(job.id = %job_id, force, "deleted job {job_id}");

        let deleted = JobRow {
            status: "DELETED".into(),
            ..job
        };
        events::job(self, &deleted, "deleted", &counts);
        self.announce_changed(&things, next_before).await;
        Ok(())
    }

    /// One page of jobs, newest first, after `after`.
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        limit: i64,
        after: Option<&PageToken>,
    ) -> Result<Vec<JobRow>> {
        if let Some(status) = &filter.status {
            check_job_status(status)?;
        }
        if let Some(selection) = &filter.target_selection
            && !matches!(selection.as_str(), "SNAPSHOT" | "CONTINUOUS")
        {
            return Err(ServiceError::invalid(
                "targetSelection must be SNAPSHOT or CONTINUOUS",
            ));
        }
        let group_id = match &filter.thing_group_id {
            None => None,
            Some(id) => Some(uuid::Uuid::parse_str(id).map_err(|_| {
                ServiceError::invalid(format!("thingGroupId {id:?} is not a thing group id"))
            })?),
        };
        let group_name = match (&filter.thing_group_name, group_id) {
            (Some(name), _) => Some(name.clone()),
            // An unknown id matches no job, like a group name no job targets.
            (None, Some(id)) => Some(
                sqlx::query_scalar(
                    "select group_name from engine.thing_groups where group_id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or_default(),
            ),
            (None, None) => None,
        };
        let group_arn = group_name.map(|name| self.arns.thing_group(&name));
        Ok(sqlx::query_as(&format!(
            "select {JOB_COLUMNS} from engine.jobs
             where ($1::text is null or status = $1)
               and ($2::text is null or target_selection = $2)
               and ($3::timestamptz is null or (created_at, job_id) < ($3, $4))
               and ($6::text is null or $6 = any(targets))
             order by created_at desc, job_id desc limit $5"
        ))
        .bind(&filter.status)
        .bind(&filter.target_selection)
        .bind(after.map(|t| t.at))
        .bind(after.map(|t| t.id.as_str()))
        .bind(limit)
        .bind(group_arn)
        .fetch_all(&self.pool)
        .await?)
    }

    /// DescribeJobExecution: one thing's execution of a job.
    pub async fn execution(
        &self,
        thing: &str,
        job_id: &str,
        execution_number: Option<i64>,
    ) -> Result<ExecutionDetail> {
        check_thing_name(thing)?;
        check_job_id(job_id)?;
        let detail: Option<ExecutionDetail> = sqlx::query_as(&format!(
            "select {EXECUTION_COLUMNS},
                 case when status in ('QUEUED', 'IN_PROGRESS')
                       and coalesce(step_timeout_at, in_progress_timeout_at) is not null
                      then greatest(0, ceil(extract(epoch from
                          least(step_timeout_at, in_progress_timeout_at) - $3)))::bigint
                 end as seconds_before_timed_out
             from engine.job_executions where job_id = $1 and thing_name = $2"
        ))
        .bind(job_id)
        .bind(thing)
        .bind(self.now())
        .fetch_optional(&self.pool)
        .await?;
        detail
            .filter(|d| execution_number.is_none_or(|n| n == d.execution.execution_number))
            .ok_or_else(|| {
                ServiceError::not_found(format!("No job execution of {job_id} for {thing}"))
            })
    }

    /// One page of a thing's executions, newest first, after `after`.
    pub async fn executions_for_thing(
        &self,
        thing: &str,
        status: Option<ExecutionStatus>,
        job_id: Option<&str>,
        limit: i64,
        after: Option<&PageToken>,
    ) -> Result<Vec<ExecutionRow>> {
        check_thing_name(thing)?;
        if let Some(job_id) = job_id {
            check_job_id(job_id)?;
        }
        if self.thing(thing).await?.is_none() {
            return Err(ServiceError::not_found(format!("Thing {thing} not found")));
        }
        Ok(sqlx::query_as(&format!(
            "select {EXECUTION_COLUMNS} from engine.job_executions
             where thing_name = $1
               and ($2::text is null or status = $2)
               and ($3::text is null or job_id = $3)
               and ($4::timestamptz is null or (queued_at, job_id) < ($4, $5))
             order by queued_at desc, job_id desc limit $6"
        ))
        .bind(thing)
        .bind(status.map(ExecutionStatus::as_str))
        .bind(job_id)
        .bind(after.map(|t| t.at))
        .bind(after.map(|t| t.id.as_str()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Locks the job's executions in `statuses` and returns their things: the devices whose
    /// pending lists the operation changes.
    async fn lock_executions(
        &self,
        tx: &mut sqlx::PgConnection,
        job_id: &str,
        statuses: &[&str],
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "select thing_name from engine.job_executions
             where job_id = $1 and status = any($2) order by thing_name for update",
        )
        .bind(job_id)
        .bind(statuses)
        .fetch_all(tx)
        .await?)
    }

    /// Each thing's next pending job, to tell afterwards whose next job changed.
    pub(super) async fn next_pending(
        &self,
        tx: &mut sqlx::PgConnection,
        things: &[String],
    ) -> Result<HashMap<String, String>> {
        Ok(self
            .pending(tx, things)
            .await?
            .into_iter()
            .filter_map(|(thing, list)| Some((thing, list.into_iter().next()?.job_id)))
            .collect())
    }

    /// `notify` to each of `things` and `notify-next` where the next job is no longer the one
    /// in `before`.
    pub(super) async fn announce_changed(
        &self,
        things: &[String],
        before: HashMap<String, String>,
    ) {
        self.announce_pending(things, &|thing, next| {
            before.get(thing).map(String::as_str) != next
        })
        .await;
    }
}

/// How many of a job's executions are in each status, inside a transaction.
async fn counts_in(executor: impl sqlx::PgExecutor<'_>, job_id: &str) -> Result<StatusCounts> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select status, count(*) from engine.job_executions where job_id = $1 group by status",
    )
    .bind(job_id)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(status, n)| Some((ExecutionStatus::parse(&status)?, n)))
        .collect())
}

/// Reads a job and locks its row for the rest of the transaction. Operations that change a
/// job and its executions lock the job first, as the device update path does, so they never
/// deadlock with it.
pub(super) async fn lock_job(tx: &mut sqlx::PgConnection, job_id: &str) -> Result<JobRow> {
    sqlx::query_as(&format!(
        "select {JOB_COLUMNS} from engine.jobs where job_id = $1 for update"
    ))
    .bind(job_id)
    .fetch_optional(tx)
    .await?
    .ok_or_else(|| ServiceError::not_found(format!("Job {job_id} not found")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let token = PageToken {
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("a time"),
            id: "job-1".into(),
        };
        assert_eq!(PageToken::decode(&token.encode()).ok(), Some(token));
        for garbage in [
            "",
            "zz",
            &hex::encode("no-separator"),
            &hex::encode("x|job"),
        ] {
            assert!(PageToken::decode(garbage).is_err(), "{garbage:?}");
        }
        assert!(PageToken::decode(&hex::encode("1|bad:id")).is_err());
    }

    #[test]
    fn cancel_inputs_follow_the_model_patterns() {
        assert!(check_reason_code("FIRMWARE_BAD_2").is_ok());
        assert!(check_reason_code("lower").is_err());
        assert!(check_reason_code("").is_err());
        assert!(check_reason_code(&"A".repeat(129)).is_err());
        assert!(check_comment("rolled back: bad build").is_ok());
        assert!(check_comment("line\nbreak").is_err());
        assert!(check_comment("").is_err());
        assert!(check_comment(&"c".repeat(2029)).is_err());
    }
}
