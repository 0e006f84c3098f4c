//! `$aws/events/…` messages, with the payloads of the AWS developer guide ("Jobs events").
//! The dashboard subscribes to them to keep its projection current. Each type is published
//! only while the account's event configuration enables it ([`super::event_config`]).
//!
//! AWS announces no QUEUED or IN_PROGRESS change, so a dashboard would have to poll for
//! them. The engine adds one documented extension, published while JOB_EXECUTION events are
//! enabled: `flotilla/events/jobExecution/{jobId}/{status}` (`queued`, `in_progress`) with
//! the AWS payload plus `executionNumber`, `versionNumber`, `queuedAt`, `startedAt` and
//! `lastUpdatedAt` (epoch milliseconds), so a subscriber can order what it hears. Clients
//! written for AWS never subscribe to it and never see it.

use serde_json::json;

use super::{ExecutionRow, JobRow, Jobs, StatusCounts};
use crate::model::ExecutionStatus;

/// `$aws/events/jobExecution/{jobId}/{operation}` for an execution that reached a final state.
pub(super) fn execution(jobs: &Jobs, execution: &ExecutionRow) {
    if let Some(operation) =
        ExecutionStatus::parse(&execution.status).and_then(ExecutionStatus::event_operation)
    {
        execution_event(jobs, execution, operation);
    }
}

/// `flotilla/events/jobExecution/{jobId}/{status}` for an execution that is now QUEUED (a
/// retry) or IN_PROGRESS (started, or its statusDetails changed): the extension described
/// above. Final states go out on AWS's topic only ([`execution`]).
pub(super) fn execution_progress(jobs: &Jobs, execution: &ExecutionRow) {
    if !jobs.enabled_events.contains("JOB_EXECUTION") {
        return;
    }
    let operation = match ExecutionStatus::parse(&execution.status) {
        Some(ExecutionStatus::Queued) => "queued",
        Some(ExecutionStatus::InProgress) => "in_progress",
        _ => return,
    };
    let body = json!({
        "eventType": "JOB_EXECUTION",
        "eventId": uuid::Uuid::new_v4().to_string(),
        "timestamp": chrono::Utc::now().timestamp(),
        "operation": operation,
        "jobId": execution.job_id,
        "thingArn": jobs.arns.thing(&execution.thing_name),
        "status": execution.status,
        "statusDetails": execution.status_details,
        "executionNumber": execution.execution_number,
        "versionNumber": execution.version_number,
        "queuedAt": execution.queued_at.timestamp_millis(),
        "startedAt": execution.started_at.map(|t| t.timestamp_millis()),
        "lastUpdatedAt": execution.last_updated_at.timestamp_millis(),
    });
    jobs.broker.publish(
        &format!(
            "flotilla/events/jobExecution/{}/{operation}",
            execution.job_id
        ),
        body.to_string(),
    );
}

/// `$aws/events/jobExecution/{jobId}/deleted` for an execution DeleteJobExecution deleted.
pub(super) fn execution_deleted(jobs: &Jobs, execution: &ExecutionRow) {
    execution_event(jobs, execution, "deleted");
}

fn execution_event(jobs: &Jobs, execution: &ExecutionRow, operation: &str) {
    if !jobs.enabled_events.contains("JOB_EXECUTION") {
        return;
    }
    let body = json!({
        "eventType": "JOB_EXECUTION",
        "eventId": uuid::Uuid::new_v4().to_string(),
        "timestamp": chrono::Utc::now().timestamp(),
        "operation": operation,
        "jobId": execution.job_id,
        "thingArn": jobs.arns.thing(&execution.thing_name),
        "status": execution.status,
        "statusDetails": execution.status_details,
    });
    jobs.broker.publish(
        &format!("$aws/events/jobExecution/{}/{operation}", execution.job_id),
        body.to_string(),
    );
}

/// `$aws/events/job/{jobId}/{operation}` for a job that completed, was canceled or deleted.
pub(super) fn job(jobs: &Jobs, job: &JobRow, operation: &str, counts: &StatusCounts) {
    if !jobs.enabled_events.contains("JOB") {
        return;
    }
    let count = |status| counts.get(&status).copied().unwrap_or(0);
    let mut body = json!({
        "eventType": "JOB",
        "eventId": uuid::Uuid::new_v4().to_string(),
        "timestamp": chrono::Utc::now().timestamp(),
        "operation": operation,
        "jobId": job.job_id,
        "status": job.status,
        "targetSelection": job.target_selection,
        "targets": job.targets,
        "description": job.description,
        "createdAt": job.created_at.timestamp_millis(),
        "lastUpdatedAt": job.last_updated_at.timestamp_millis(),
    });
    // The guide's `deleted` payload carries the job's comment; CancelJob is where it is set.
    if let Some(comment) = &job.comment {
        body["comment"] = json!(comment);
    }
    if let Some(completed) = job.completed_at {
        body["completedAt"] = json!(completed.timestamp_millis());
        body["jobProcessDetails"] = json!({
            "numberOfCanceledThings": count(ExecutionStatus::Canceled),
            "numberOfRejectedThings": count(ExecutionStatus::Rejected),
            "numberOfFailedThings": count(ExecutionStatus::Failed),
            "numberOfRemovedThings": count(ExecutionStatus::Removed),
            "numberOfSucceededThings": count(ExecutionStatus::Succeeded),
            "numberOfTimedOutThings": count(ExecutionStatus::TimedOut),
        });
    }
    jobs.broker.publish(
        &format!("$aws/events/job/{}/{operation}", job.job_id),
        body.to_string(),
    );
}
