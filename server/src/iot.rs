//! What the server asks of AWS IoT, through `aws-sdk-iot` only: the same calls go to AWS or,
//! with an endpoint override, to the embedded engine.

use std::sync::{Arc, Mutex};

use aws_sdk_iot::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_iot::types::{Configuration, EventType, JobExecutionStatus, JobStatus};
use chrono::{DateTime, Utc};
use flotilla_api::ExecutionCounts;

/// An IoT call that failed, classified for the API's error mapping.
#[derive(Debug, thiserror::Error)]
pub enum IotError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Invalid(String),
    /// The resource is in a state that does not allow the operation.
    #[error("{0}")]
    Conflict(String),
    /// Throttling, an outage, or anything else not caused by the request.
    #[error("AWS IoT call failed: {0}")]
    Upstream(String),
}

impl IotError {
    pub(crate) fn from_sdk<E, R>(error: aws_sdk_iot::error::SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = error.code().unwrap_or_default().to_owned();
        let message = error
            .message()
            .map(str::to_owned)
            .unwrap_or_else(|| DisplayErrorContext(&error).to_string());
        match code.as_str() {
            "ResourceNotFoundException" => Self::NotFound(message),
            "ResourceAlreadyExistsException" => Self::AlreadyExists(message),
            "InvalidRequestException" => Self::Invalid(message),
            "InvalidStateTransitionException"
            | "VersionConflictException"
            | "ConflictException" => Self::Conflict(message),
            _ => Self::Upstream(format!("{code} {message}").trim().to_owned()),
        }
    }
}

/// A job as DescribeJob reports it.
#[derive(Debug, Clone)]
pub struct JobSnapshot {
    pub job_id: String,
    pub job_arn: String,
    pub status: String,
    pub description: Option<String>,
    pub targets: Vec<String>,
    pub counts: ExecutionCounts,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// One execution as ListJobExecutionsForJob reports it.
#[derive(Debug, Clone)]
pub struct ExecutionSnapshot {
    pub thing_name: String,
    pub status: String,
    pub execution_number: Option<i64>,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// The server's IoT client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Iot {
    client: aws_sdk_iot::Client,
    /// `arn:aws:iot:{region}:{account}:`, learned from the first thing described.
    arn_prefix: Arc<Mutex<Option<String>>>,
}

pub(crate) fn time(t: Option<&aws_sdk_iot::primitives::DateTime>) -> Option<DateTime<Utc>> {
    let t = t?;
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

impl Iot {
    pub fn new(client: aws_sdk_iot::Client) -> Self {
        Self {
            client,
            arn_prefix: Arc::new(Mutex::new(None)),
        }
    }

    /// The SDK client, for the API's calls that are not shared with the rest of the server.
    pub fn sdk(&self) -> &aws_sdk_iot::Client {
        &self.client
    }

    /// Enables the job and job-execution events the event subscriber relies on
    /// (UpdateEventConfigurations): AWS IoT, and the engine like it, publishes none until the
    /// account enables them. Other event types are left as they are.
    pub async fn enable_job_events(&self) -> Result<(), IotError> {
        let enabled = Configuration::builder().enabled(true).build();
        self.client
            .update_event_configurations()
            .event_configurations(EventType::Job, enabled.clone())
            .event_configurations(EventType::JobExecution, enabled)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        Ok(())
    }

    /// CreateThing (idempotent for identical attributes).
    pub async fn create_thing(&self, name: &str) -> Result<String, IotError> {
        let out = self
            .client
            .create_thing()
            .thing_name(name)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        Ok(out.thing_arn.unwrap_or_default())
    }

    /// The ARN of thing `name`; fails with NotFound if it does not exist.
    pub async fn thing_arn(&self, name: &str) -> Result<String, IotError> {
        if let Some(prefix) = self.arn_prefix.lock().expect("arn lock").clone() {
            return Ok(format!("{prefix}thing/{name}"));
        }
        let out = self
            .client
            .describe_thing()
            .thing_name(name)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        let arn = out
            .thing_arn
            .ok_or_else(|| IotError::Upstream("DescribeThing returned no ARN".into()))?;
        if let Some((prefix, _)) = arn.split_once("thing/") {
            *self.arn_prefix.lock().expect("arn lock") = Some(prefix.to_owned());
        }
        Ok(arn)
    }

    /// CreateJob with a raw document.
    pub async fn create_job(
        &self,
        job_id: &str,
        targets: Vec<String>,
        document: String,
        description: Option<String>,
    ) -> Result<(), IotError> {
        self.client
            .create_job()
            .job_id(job_id)
            .set_targets(Some(targets))
            .document(document)
            .set_description(description)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        Ok(())
    }

    /// CancelJob.
    pub async fn cancel_job(
        &self,
        job_id: &str,
        force: bool,
        comment: Option<String>,
        reason_code: Option<String>,
    ) -> Result<(), IotError> {
        self.client
            .cancel_job()
            .job_id(job_id)
            .force(force)
            .set_comment(comment)
            .set_reason_code(reason_code)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        Ok(())
    }

    /// DeleteJob.
    pub async fn delete_job(&self, job_id: &str, force: bool) -> Result<(), IotError> {
        self.client
            .delete_job()
            .job_id(job_id)
            .force(force)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        Ok(())
    }

    /// DescribeJob.
    pub async fn describe_job(&self, job_id: &str) -> Result<JobSnapshot, IotError> {
        let out = self
            .client
            .describe_job()
            .job_id(job_id)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        let job = out
            .job
            .ok_or_else(|| IotError::Upstream("DescribeJob returned no job".into()))?;
        let details = job
            .job_process_details
            .unwrap_or_else(|| aws_sdk_iot::types::JobProcessDetails::builder().build());
        let n = |v: Option<i32>| i64::from(v.unwrap_or(0));
        let counts = ExecutionCounts {
            queued: n(details.number_of_queued_things),
            in_progress: n(details.number_of_in_progress_things),
            succeeded: n(details.number_of_succeeded_things),
            failed: n(details.number_of_failed_things),
            rejected: n(details.number_of_rejected_things),
            canceled: n(details.number_of_canceled_things),
            timed_out: n(details.number_of_timed_out_things),
            removed: n(details.number_of_removed_things),
        };
        let now = Utc::now();
        Ok(JobSnapshot {
            job_id: job.job_id.unwrap_or_else(|| job_id.to_owned()),
            job_arn: job.job_arn.unwrap_or_default(),
            status: job
                .status
                .as_ref()
                .map(JobStatus::as_str)
                .unwrap_or("IN_PROGRESS")
                .to_owned(),
            description: job.description,
            targets: job.targets.unwrap_or_default(),
            counts,
            created_at: time(job.created_at.as_ref()).unwrap_or(now),
            updated_at: time(job.last_updated_at.as_ref()).unwrap_or(now),
            completed_at: time(job.completed_at.as_ref()),
        })
    }

    /// Every execution of a job (all pages of ListJobExecutionsForJob).
    pub async fn executions(&self, job_id: &str) -> Result<Vec<ExecutionSnapshot>, IotError> {
        let mut pages = self
            .client
            .list_job_executions_for_job()
            .job_id(job_id)
            .max_results(250)
            .into_paginator()
            .send();
        let mut all = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(IotError::from_sdk)?;
            for item in page.execution_summaries.unwrap_or_default() {
                let Some(thing_name) = item
                    .thing_arn
                    .as_deref()
                    .and_then(|a| a.rsplit_once("thing/"))
                    .map(|(_, n)| n.to_owned())
                else {
                    continue;
                };
                let summary = item.job_execution_summary;
                all.push(ExecutionSnapshot {
                    thing_name,
                    status: summary
                        .as_ref()
                        .and_then(|s| s.status.as_ref())
                        .map(JobExecutionStatus::as_str)
                        .unwrap_or("QUEUED")
                        .to_owned(),
                    execution_number: summary.as_ref().and_then(|s| s.execution_number),
                    queued_at: time(summary.as_ref().and_then(|s| s.queued_at.as_ref())),
                    started_at: time(summary.as_ref().and_then(|s| s.started_at.as_ref())),
                    updated_at: time(summary.as_ref().and_then(|s| s.last_updated_at.as_ref())),
                });
            }
        }
        Ok(all)
    }
}

/// What reconciliation and the readiness probe ask of IoT.
impl Iot {
    /// One page of ListJobExecutionsForJob and the token of the next page, if any.
    pub async fn executions_page(
        &self,
        job_id: &str,
        next_token: Option<String>,
        max_results: i32,
    ) -> Result<(Vec<ExecutionSnapshot>, Option<String>), IotError> {
        let page = self
            .client
            .list_job_executions_for_job()
            .job_id(job_id)
            .max_results(max_results)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        let executions = page
            .execution_summaries
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| {
                let thing_name = item
                    .thing_arn
                    .as_deref()
                    .and_then(|a| a.rsplit_once("thing/"))
                    .map(|(_, n)| n.to_owned())?;
                let summary = item.job_execution_summary;
                Some(ExecutionSnapshot {
                    thing_name,
                    status: summary
                        .as_ref()
                        .and_then(|s| s.status.as_ref())
                        .map(JobExecutionStatus::as_str)
                        .unwrap_or("QUEUED")
                        .to_owned(),
                    execution_number: summary.as_ref().and_then(|s| s.execution_number),
                    queued_at: time(summary.as_ref().and_then(|s| s.queued_at.as_ref())),
                    started_at: time(summary.as_ref().and_then(|s| s.started_at.as_ref())),
                    updated_at: time(summary.as_ref().and_then(|s| s.last_updated_at.as_ref())),
                })
            })
            .collect();
        Ok((executions, page.next_token.filter(|t| !t.is_empty())))
    }

    /// The account's MQTT data endpoint (DescribeEndpoint, `iot:Data-ATS`).
    pub async fn data_endpoint(&self) -> Result<String, IotError> {
        self.client
            .describe_endpoint()
            .endpoint_type("iot:Data-ATS")
            .send()
            .await
            .map_err(IotError::from_sdk)?
            .endpoint_address
            .ok_or_else(|| IotError::Upstream("DescribeEndpoint named no endpoint".into()))
    }

    /// A cheap authenticated call (DescribeEventConfigurations) proving IoT answers.
    pub async fn ping(&self) -> Result<(), IotError> {
        self.client
            .describe_event_configurations()
            .send()
            .await
            .map_err(IotError::from_sdk)?;
        Ok(())
    }
}

impl IotError {
    /// Whether IoT refused the call for its rate (the caller should slow down and retry).
    pub fn is_throttling(&self) -> bool {
        match self {
            Self::Upstream(message) => [
                "ThrottlingException",
                "TooManyRequestsException",
                "LimitExceededException",
                "Throttling",
            ]
            .iter()
            .any(|code| message.starts_with(code)),
            _ => false,
        }
    }
}
