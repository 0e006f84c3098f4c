//! One execution at a time from the control plane: CancelJobExecution and DeleteJobExecution.
//!
//! Both lock the job row, then the execution (the order of every path that finishes
//! executions), so a snapshot job whose last pending execution goes this way completes
//! exactly once. After the commit come the `$aws/events/jobExecution/…` event, `notify-next`
//! to the device if its next job changed, and the job's `completed` event if it completed.

use std::collections::HashMap;

use serde_json::json;

use super::admin::lock_job;
use super::device::check_status_details;
use super::things::check_version;
use super::{
    EXECUTION_COLUMNS, ErrorKind, ExecutionRow, Jobs, Result, ServiceError, check_job_id,
    check_thing_name, complete_if_done, events,
};

fn not_found(job_id: &str, thing: &str) -> ServiceError {
    ServiceError::not_found(format!("No job execution of {job_id} for {thing}"))
}

impl Jobs {
    /// CancelJobExecution. A QUEUED execution is canceled; an IN_PROGRESS one only with
    /// `force`; a finished one not at all (InvalidStateTransitionException).
    pub async fn cancel_execution(
        &self,
        job_id: &str,
        thing: &str,
        force: bool,
        expected_version: Option<i64>,
        status_details: Option<HashMap<String, String>>,
    ) -> Result<()> {
        check_job_id(job_id)?;
        check_thing_name(thing)?;
        check_status_details(&status_details)?;
        let mut tx = self.pool.begin().await?;
        lock_job(&mut tx, job_id).await?;
        let current = lock_execution(&mut tx, job_id, thing).await?;
        let status = current.status();
        if status.is_terminal() || (status == crate::model::ExecutionStatus::InProgress && !force) {
            return Err(ServiceError::new(
                ErrorKind::InvalidStateTransition,
                format!(
                    "the job execution of {job_id} for {thing} is {}{}",
                    current.status,
                    if status.is_terminal() {
                        " and cannot be canceled"
                    } else {
                        "; pass force=true to cancel it"
                    }
                ),
            ));
        }
        check_version(
            &format!("The job execution of {job_id} for {thing}"),
            expected_version,
            current.version_number,
        )?;
        let things = [thing.to_owned()];
        let before = self.next_pending(&mut tx, &things).await?;
        let canceled: ExecutionRow = sqlx::query_as(&format!(
            "update engine.job_executions set status = 'CANCELED', force_canceled = $3,
                 status_details = coalesce($4, status_details),
                 version_number = version_number + 1, last_updated_at = now()
             where job_id = $1 and thing_name = $2
             returning {EXECUTION_COLUMNS}"
        ))
        .bind(job_id)
        .bind(thing)
        .bind(force)
        .bind(status_details.map(|d| json!(d)))
        .fetch_one(&mut *tx)
        .await?;
        let completed = complete_if_done(&mut *tx, job_id).await?;
        tx.commit().await?;
        tracing::info!(job.id = %job_id, thing = %thing, force, "canceled the execution of {job_id} for {thing}");

        events::execution(self, &canceled);
        self.announce_changed(&things, before).await;
        if let Some(job) = completed {
            self.announce_completed(&job).await;
        }
        Ok(())
    }

    /// DeleteJobExecution. Only a finished execution, unless `force`; `execution_number`
    /// must be the execution's.
    pub async fn delete_execution(
        &self,
        job_id: &str,
        thing: &str,
        execution_number: i64,
        force: bool,
    ) -> Result<()> {
        check_job_id(job_id)?;
        check_thing_name(thing)?;
        let mut tx = self.pool.begin().await?;
        lock_job(&mut tx, job_id).await?;
        let current = lock_execution(&mut tx, job_id, thing).await?;
        if current.execution_number != execution_number {
            return Err(ServiceError::not_found(format!(
                "No job execution of {job_id} for {thing} with executionNumber {execution_number}"
            )));
        }
        if !current.status().is_terminal() && !force {
            return Err(ServiceError::new(
                ErrorKind::InvalidStateTransition,
                format!(
                    "the job execution of {job_id} for {thing} is {}; pass force=true to delete it",
                    current.status
                ),
            ));
        }
        let things = [thing.to_owned()];
        let before = self.next_pending(&mut tx, &things).await?;
        sqlx::query("delete from engine.job_executions where job_id = $1 and thing_name = $2")
            .bind(job_id)
            .bind(thing)
            .execute(&mut *tx)
            .await?;
        let completed = complete_if_done(&mut *tx, job_id).await?;
        tx.commit().await?;
        tracing::info!(job.id = %job_id, thing = %thing, force, "deleted the execution of {job_id} for {thing}");

        events::execution_deleted(self, &current);
        // Only a pending execution was in the device's list.
        if !current.status().is_terminal() {
            self.announce_changed(&things, before).await;
        }
        if let Some(job) = completed {
            self.announce_completed(&job).await;
        }
        Ok(())
    }
}

/// Reads a job execution and locks it for the rest of the transaction.
async fn lock_execution(
    tx: &mut sqlx::PgConnection,
    job_id: &str,
    thing: &str,
) -> Result<ExecutionRow> {
    sqlx::query_as(&format!(
        "select {EXECUTION_COLUMNS} from engine.job_executions
         where job_id = $1 and thing_name = $2 for update"
    ))
    .bind(job_id)
    .bind(thing)
    .fetch_optional(tx)
    .await?
    .ok_or_else(|| not_found(job_id, thing))
}
