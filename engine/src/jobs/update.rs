//! Changing a job after creation: UpdateJob (description and the configurations the model
//! lets change) and AssociateTargetsWithJob (more targets for a continuous job). Both lock
//! the job row first, like every path that changes a job and its executions, and let the
//! rollout release whatever the change made due.

use serde_json::{Map, Value};

use super::admin::{check_comment, check_free_text, lock_job};
use super::job_config::{JobConfig, UPDATABLE_MEMBERS};
use super::{ErrorKind, JOB_COLUMNS, JobRow, Jobs, Result, ServiceError, check_job_id};

/// AWS's limit on the targets of one job.
pub const MAX_TARGETS: usize = 100;

/// What UpdateJob changes, already decoded from the request.
#[derive(Debug, Clone, Default)]
pub struct JobUpdate {
    pub description: Option<String>,
    /// The configurations to replace, as the request spelled them (only
    /// [`UPDATABLE_MEMBERS`]).
    pub config: Map<String, Value>,
}

impl Jobs {
    /// UpdateJob. The retry counts can only be set to 0 (the developer guide: "After a job
    /// has been created, the number of retries can't be updated"); a changed in-progress
    /// timeout applies to executions that start afterwards, as AWS's timer does.
    pub async fn update_job(&self, job_id: &str, update: JobUpdate) -> Result<JobRow> {
        check_job_id(job_id)?;
        if let Some(description) = &update.description {
            check_free_text("description", description)?;
        }
        if let Some(name) = update
            .config
            .keys()
            .find(|name| !UPDATABLE_MEMBERS.contains(&name.as_str()))
        {
            return Err(ServiceError::invalid(format!(
                "{name} cannot be changed by UpdateJob"
            )));
        }
        let changes = JobConfig::validate_update(&update.config)?;

        let mut tx = self.pool.begin().await?;
        let job = lock_job(&mut tx, job_id).await?;
        if !matches!(job.status.as_str(), "IN_PROGRESS" | "SCHEDULED") {
            return Err(ServiceError::invalid(format!(
                "Job {job_id} is {} and can no longer be updated",
                job.status
            )));
        }
        if let Some(retry) = &changes.retry {
            let current = JobConfig::stored(&job.config)?.retry;
            for criteria in &retry.criteria_list {
                let unchanged = current.as_ref().is_some_and(|current| {
                    current.criteria_list.iter().any(|c| {
                        c.failure_type == criteria.failure_type
                            && c.number_of_retries == criteria.number_of_retries
                    })
                });
                if criteria.number_of_retries != 0 && !unchanged {
                    return Err(ServiceError::invalid(
                        "the number of retries of a job can only be set to 0 after creation",
                    ));
                }
            }
        }
        let mut config = job.config.as_object().cloned().unwrap_or_default();
        config.extend(update.config);
        let updated: JobRow = sqlx::query_as(&format!(
            "update engine.jobs set config = $2, description = coalesce($3, description),
                 last_updated_at = now()
             where job_id = $1
             returning {JOB_COLUMNS}"
        ))
        .bind(job_id)
        .bind(Value::Object(config))
        .bind(&update.description)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(job.id = %job_id, "updated job {job_id}");
        // A higher rate may release more this minute.
        self.advance_rollout_after_change(job_id).await;
        Ok(updated)
    }

    /// AssociateTargetsWithJob: adds targets to a CONTINUOUS job that is IN_PROGRESS, as the
    /// model requires, up to [`MAX_TARGETS`] in all. New things get a QUEUED execution that
    /// the rollout releases.
    pub async fn associate_targets(
        &self,
        job_id: &str,
        targets: Vec<String>,
        comment: Option<String>,
    ) -> Result<JobRow> {
        check_job_id(job_id)?;
        if let Some(comment) = &comment {
            check_comment(comment)?;
        }
        let mut tx = self.pool.begin().await?;
        // The membership lock before the job's row: membership changes take it first and then
        // lock continuous jobs, so taking it after the job (when a target is a group) could
        // deadlock with them.
        super::targets::lock_membership(&mut tx).await?;
        let job = lock_job(&mut tx, job_id).await?;
        if job.target_selection != "CONTINUOUS" {
            return Err(ServiceError::invalid(format!(
                "Job {job_id} is a SNAPSHOT job; targets can only be added to CONTINUOUS jobs"
            )));
        }
        if job.status != "IN_PROGRESS" {
            return Err(ServiceError::invalid(format!(
                "Job {job_id} is {}; targets can only be added to a job IN_PROGRESS",
                job.status
            )));
        }
        let things = self.resolve_targets(&mut tx, &targets).await?;
        let mut all_targets = job.targets.clone();
        for target in targets {
            if !all_targets.contains(&target) {
                all_targets.push(target);
            }
        }
        if all_targets.len() > MAX_TARGETS {
            return Err(ServiceError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "a job can have at most {MAX_TARGETS} targets; this would make {}",
                    all_targets.len()
                ),
            ));
        }
        let updated: JobRow = sqlx::query_as(&format!(
            "update engine.jobs set targets = $2, comment = coalesce($3, comment),
                 last_updated_at = now()
             where job_id = $1
             returning {JOB_COLUMNS}"
        ))
        .bind(job_id)
        .bind(&all_targets)
        .bind(&comment)
        .fetch_one(&mut *tx)
        .await?;
        let queued = self.queue_executions(&mut tx, job_id, &things).await?;
        tx.commit().await?;
        tracing::info!(job.id = %job_id, queued, "added targets to job {job_id}: {queued} new executions");
        self.advance_rollout_after_change(job_id).await;
        Ok(updated)
    }
}
