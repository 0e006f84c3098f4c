//! Rollout semantics through `aws-sdk-iot` and the Jobs MQTT API: release rates, exponential
//! steps, abort criteria, in-progress timeouts, retries, scheduling, maintenance windows,
//! UpdateJob and AssociateTargetsWithJob. The engine runs on a test clock that each test
//! moves forward, then asks the engine to tick, so simulated minutes cost no real time.
//! Devices are driven over MQTT by the service identity, which may act for any thing.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_iot::types::{
    AbortAction, AbortConfig, AbortCriteria, ExponentialRolloutRate, JobEndBehavior,
    JobExecutionFailureType, JobExecutionsRetryConfig, JobExecutionsRolloutConfig, JobStatus,
    MaintenanceWindow, PresignedUrlConfig, RateIncreaseCriteria, RetryCriteria,
    RetryableFailureType, SchedulingConfig, TargetSelection, TimeoutConfig,
};
use chrono::{DateTime, TimeZone, Utc};
use flotilla_engine::clock::TestClock;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::test_engine::{TestEngine, code};

const DOCUMENT: &str = r#"{"operation":"update","version":"2.0"}"#;

/// A fixed start, so maintenance windows fall where the tests expect: Sunday 2026-11-29,
/// 01:00 UTC.
fn sunday_one_am() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 1, 0, 0)
        .single()
        .expect("a valid time")
}

/// An engine on a test clock, with `count` things named `{prefix}-00` ….
async fn engine_with_things(
    start: DateTime<Utc>,
    prefix: &str,
    count: usize,
) -> (TestEngine, Arc<TestClock>, Vec<String>) {
    let clock = Arc::new(TestClock::new(start));
    let engine = TestEngine::start_with_clock(clock.clone()).await;
    let mut things = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("{prefix}-{i:02}");
        engine
            .iot
            .create_thing()
            .thing_name(&name)
            .send()
            .await
            .expect("CreateThing");
        things.push(name);
    }
    (engine, clock, things)
}

/// Moves the clock by `minutes` and lets the engine act on it.
async fn advance(engine: &TestEngine, clock: &TestClock, minutes: i64) {
    clock.advance(chrono::Duration::minutes(minutes));
    engine.engine.tick().await.expect("tick");
}

/// A service-identity MQTT session that makes Jobs device-API requests for any thing.
struct Fleet {
    client: AsyncClient,
    events: EventLoop,
    next_token: u64,
}

impl Fleet {
    async fn connect(engine: &TestEngine) -> Self {
        let addr = engine.engine.mqtt_addr;
        let mut options = MqttOptions::new("rollout-fleet", addr.ip().to_string(), addr.port());
        options.set_credentials("service", "service-password");
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut events) = AsyncClient::new(options, 64);
        client
            .subscribe("$aws/things/+/jobs/#", QoS::AtLeastOnce)
            .await
            .expect("subscribing");
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.poll())
                .await
                .expect("the broker answers")
                .expect("the service connects");
            if let Event::Incoming(Packet::SubAck(_)) = event {
                break;
            }
        }
        Self {
            client,
            events,
            next_token: 0,
        }
    }

    /// Publishes a request for `thing` and returns whether it was accepted, and the reply.
    async fn request(&mut self, thing: &str, operation: &str, mut body: Value) -> (bool, Value) {
        self.next_token += 1;
        let token = format!("t{}", self.next_token);
        body["clientToken"] = json!(token);
        let topic = format!("$aws/things/{thing}/jobs/{operation}");
        self.client
            .publish(&topic, QoS::AtLeastOnce, false, body.to_string())
            .await
            .expect("publishing");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.poll())
                .await
                .expect("a reply within 10 s")
                .expect("the connection stays up");
            if let Event::Incoming(Packet::Publish(publish)) = event {
                let accepted = publish.topic == format!("{topic}/accepted");
                if !accepted && publish.topic != format!("{topic}/rejected") {
                    continue;
                }
                let reply: Value = serde_json::from_slice(&publish.payload).unwrap_or(Value::Null);
                if reply["clientToken"] == json!(token) {
                    return (accepted, reply);
                }
            }
        }
    }

    /// The jobs `thing` can see pending (queued or in progress).
    async fn pending(&mut self, thing: &str) -> Vec<String> {
        let (accepted, reply) = self.request(thing, "get", json!({})).await;
        assert!(accepted, "{reply}");
        ["inProgressJobs", "queuedJobs"]
            .iter()
            .flat_map(|list| reply[*list].as_array().cloned().unwrap_or_default())
            .filter_map(|job| job["jobId"].as_str().map(str::to_owned))
            .collect()
    }

    /// How many of `things` have been notified of `job_id`.
    async fn notified(&mut self, things: &[String], job_id: &str) -> usize {
        let mut count = 0;
        for thing in things {
            if self.pending(thing).await.iter().any(|j| j == job_id) {
                count += 1;
            }
        }
        count
    }

    /// StartNextPendingJobExecution; returns the execution started, if any.
    async fn start_next(&mut self, thing: &str) -> Value {
        let (accepted, reply) = self.request(thing, "start-next", json!({})).await;
        assert!(accepted, "{reply}");
        reply["execution"].clone()
    }

    /// UpdateJobExecution to `status`; returns whether it was accepted.
    async fn report(&mut self, thing: &str, job_id: &str, status: &str) -> bool {
        let (accepted, _) = self
            .request(
                thing,
                &format!("{job_id}/update"),
                json!({ "status": status }),
            )
            .await;
        accepted
    }
}

fn targets(engine: &TestEngine, things: &[String]) -> Vec<String> {
    things.iter().map(|t| engine.thing_arn(t)).collect()
}

fn rate(maximum_per_minute: i32) -> JobExecutionsRolloutConfig {
    JobExecutionsRolloutConfig::builder()
        .maximum_per_minute(maximum_per_minute)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximum_per_minute_releases_that_many_each_minute_across_a_restart() {
    let (engine, clock, things) = engine_with_things(Utc::now(), "rate", 25).await;
    let mut fleet = Fleet::connect(&engine).await;
    engine
        .iot
        .create_job()
        .job_id("rate-job")
        .document(DOCUMENT)
        .set_targets(Some(targets(&engine, &things)))
        .job_executions_rollout_config(rate(10))
        .send()
        .await
        .expect("CreateJob");

    // Every target has its execution from the start; devices hear of 10 per minute.
    let job = engine.describe_job("rate-job").await;
    let details = job.job_process_details.expect("details");
    assert_eq!(details.number_of_queued_things, Some(25));
    assert_eq!(job.job_executions_rollout_config, Some(rate(10)));
    assert_eq!(fleet.notified(&things, "rate-job").await, 10);

    // Ticking again within the same minute releases nothing more, in this engine or in a
    // restarted one.
    engine.engine.tick().await.expect("tick");
    assert_eq!(fleet.notified(&things, "rate-job").await, 10);
    drop(fleet);
    let engine = engine.restart(clock.clone()).await;
    let mut fleet = Fleet::connect(&engine).await;
    engine.engine.tick().await.expect("tick");
    assert_eq!(fleet.notified(&things, "rate-job").await, 10);

    advance(&engine, &clock, 1).await;
    assert_eq!(fleet.notified(&things, "rate-job").await, 20);
    advance(&engine, &clock, 1).await;
    assert_eq!(fleet.notified(&things, "rate-job").await, 25);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exponential_rate_steps_up_as_things_are_notified() {
    let (engine, clock, things) = engine_with_things(Utc::now(), "expo", 30).await;
    let mut fleet = Fleet::connect(&engine).await;
    let exponential = ExponentialRolloutRate::builder()
        .base_rate_per_minute(2)
        .increment_factor(2.0)
        .rate_increase_criteria(
            RateIncreaseCriteria::builder()
                .number_of_notified_things(2)
                .build(),
        )
        .build()
        .expect("a rate");
    engine
        .iot
        .create_job()
        .job_id("expo-job")
        .document(DOCUMENT)
        .set_targets(Some(targets(&engine, &things)))
        .job_executions_rollout_config(
            JobExecutionsRolloutConfig::builder()
                .exponential_rate(exponential)
                .build(),
        )
        .send()
        .await
        .expect("CreateJob");

    // 2 per minute until 2 are notified, then 4 until 4 (cumulative: 2×2), then 8 …
    let mut seen = vec![fleet.notified(&things, "expo-job").await];
    for _ in 0..3 {
        advance(&engine, &clock, 1).await;
        seen.push(fleet.notified(&things, "expo-job").await);
    }
    assert_eq!(seen, [2, 6, 14, 30]);
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_cancels_queued_executions_at_the_threshold_only_after_the_minimum() {
    let (engine, _clock, things) = engine_with_things(Utc::now(), "abort", 6).await;
    let mut fleet = Fleet::connect(&engine).await;
    engine
        .iot
        .create_job()
        .job_id("abort-job")
        .document(DOCUMENT)
        .set_targets(Some(targets(&engine, &things)))
        .abort_config(
            AbortConfig::builder()
                .criteria_list(
                    AbortCriteria::builder()
                        .failure_type(JobExecutionFailureType::Failed)
                        .action(AbortAction::Cancel)
                        .threshold_percentage(50.0)
                        .min_number_of_executed_things(4)
                        .build()
                        .expect("criteria"),
                )
                .build()
                .expect("abort config"),
        )
        .send()
        .await
        .expect("CreateJob");

    // Two failures of two executed: 100 %, but fewer than the minimum of 4 executed.
    for thing in &things[..2] {
        assert!(fleet.report(thing, "abort-job", "FAILED").await);
    }
    assert!(fleet.report(&things[2], "abort-job", "SUCCEEDED").await);
    assert!(fleet.report(&things[4], "abort-job", "IN_PROGRESS").await);
    assert_eq!(
        engine.describe_job("abort-job").await.status,
        Some(JobStatus::InProgress)
    );

    // The fourth executed thing fails: 3 of 4 failed, 75 % ≥ 50 %.
    assert!(fleet.report(&things[3], "abort-job", "FAILED").await);
    let job = engine.describe_job("abort-job").await;
    assert_eq!(job.status, Some(JobStatus::Canceled));
    assert_eq!(job.reason_code.as_deref(), Some("FAILURE_TYPE_FAILED"));
    assert!(job.comment.is_some_and(|c| c.contains("3 of 4")));
    let details = job.job_process_details.expect("details");
    // Only the QUEUED execution was canceled; the IN_PROGRESS one runs on.
    assert_eq!(details.number_of_canceled_things, Some(1));
    assert_eq!(details.number_of_in_progress_things, Some(1));
    assert_eq!(
        engine.execution(&things[5], "abort-job").await.status,
        Some(aws_sdk_iot::types::JobExecutionStatus::Canceled)
    );
    engine.stop().await;
}

/// The `(status, executionNumber, retryAttempt)` of a thing's execution of a job, from
/// ListJobExecutionsForJob.
async fn attempt(engine: &TestEngine, job_id: &str, thing: &str) -> (String, i64, i32) {
    let listed = engine
        .iot
        .list_job_executions_for_job()
        .job_id(job_id)
        .send()
        .await
        .expect("ListJobExecutionsForJob");
    let summary = listed
        .execution_summaries
        .unwrap_or_default()
        .into_iter()
        .find(|s| s.thing_arn.as_deref() == Some(engine.thing_arn(thing).as_str()))
        .and_then(|s| s.job_execution_summary)
        .expect("the thing's execution");
    (
        summary.status.expect("a status").as_str().to_owned(),
        summary.execution_number.expect("a number"),
        summary.retry_attempt.expect("a retry attempt"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_progress_timeouts_and_retries_make_new_attempts_up_to_the_limit() {
    let (engine, clock, things) = engine_with_things(Utc::now(), "retry", 2).await;
    let mut fleet = Fleet::connect(&engine).await;
    let retry = |failure, n| {
        RetryCriteria::builder()
            .failure_type(failure)
            .number_of_retries(n)
            .build()
            .expect("criteria")
    };
    engine
        .iot
        .create_job()
        .job_id("retry-job")
        .document(DOCUMENT)
        .set_targets(Some(targets(&engine, &things)))
        .timeout_config(
            TimeoutConfig::builder()
                .in_progress_timeout_in_minutes(5)
                .build(),
        )
        .job_executions_retry_config(
            JobExecutionsRetryConfig::builder()
                .criteria_list(retry(RetryableFailureType::TimedOut, 1))
                .criteria_list(retry(RetryableFailureType::Failed, 2))
                .build()
                .expect("retry config"),
        )
        .send()
        .await
        .expect("CreateJob");
    let (timing_out, failing) = (&things[0], &things[1]);

    // The in-progress timer runs from the start: 5 minutes.
    let started = fleet.start_next(timing_out).await;
    assert_eq!(started["jobId"], "retry-job");
    advance(&engine, &clock, 3).await;
    let execution = engine.execution(timing_out, "retry-job").await;
    assert_eq!(execution.approximate_seconds_before_timed_out, Some(120));
    advance(&engine, &clock, 3).await;
    // Timed out, and retried once as a new execution.
    assert_eq!(
        attempt(&engine, "retry-job", timing_out).await,
        ("QUEUED".into(), 2, 1)
    );
    assert_eq!(fleet.start_next(timing_out).await["executionNumber"], 2);
    advance(&engine, &clock, 6).await;
    assert_eq!(
        attempt(&engine, "retry-job", timing_out).await,
        ("TIMED_OUT".into(), 2, 1)
    );

    // FAILED: two retries, then the failure stands.
    for expected in [("QUEUED", 2, 1), ("QUEUED", 3, 2), ("FAILED", 3, 2)] {
        assert!(fleet.report(failing, "retry-job", "FAILED").await);
        let (status, number, retry) = attempt(&engine, "retry-job", failing).await;
        assert_eq!((status.as_str(), number, retry), expected);
    }
    assert_eq!(
        engine.describe_job("retry-job").await.status,
        Some(JobStatus::Completed)
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_jobs_start_at_their_start_time_and_end_with_their_end_behavior() {
    let now = Utc::now();
    let (engine, clock, things) = engine_with_things(now, "sched", 3).await;
    let mut fleet = Fleet::connect(&engine).await;
    let at = |minutes| {
        (now + chrono::Duration::minutes(minutes))
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    };
    let schedule = |end_behavior| {
        SchedulingConfig::builder()
            .start_time(at(40))
            .end_time(at(100))
            .end_behavior(end_behavior)
            .build()
    };
    engine
        .iot
        .create_job()
        .job_id("sched-cancel")
        .document(DOCUMENT)
        .set_targets(Some(targets(&engine, &things)))
        .scheduling_config(schedule(JobEndBehavior::Cancel))
        .send()
        .await
        .expect("CreateJob");
    // One a minute, so some are never released before the end.
    engine
        .iot
        .create_job()
        .job_id("sched-stop")
        .document(DOCUMENT)
        .set_targets(Some(targets(&engine, &things)))
        .job_executions_rollout_config(rate(1))
        .scheduling_config(schedule(JobEndBehavior::StopRollout))
        .send()
        .await
        .expect("CreateJob");

    let job = engine.describe_job("sched-cancel").await;
    assert_eq!(job.status, Some(JobStatus::Scheduled));
    assert_eq!(
        job.scheduling_config.and_then(|s| s.end_behavior),
        Some(JobEndBehavior::Cancel)
    );
    assert_eq!(fleet.notified(&things, "sched-cancel").await, 0);

    advance(&engine, &clock, 39).await;
    assert_eq!(
        engine.describe_job("sched-cancel").await.status,
        Some(JobStatus::Scheduled)
    );
    advance(&engine, &clock, 1).await;
    assert_eq!(
        engine.describe_job("sched-cancel").await.status,
        Some(JobStatus::InProgress)
    );
    assert_eq!(fleet.notified(&things, "sched-cancel").await, 3);
    assert_eq!(fleet.notified(&things, "sched-stop").await, 1);
    // The first thing works on the STOP_ROLLOUT job when the end comes.
    assert!(fleet.report(&things[0], "sched-stop", "IN_PROGRESS").await);

    advance(&engine, &clock, 60).await;
    let canceled = engine.describe_job("sched-cancel").await;
    assert_eq!(canceled.status, Some(JobStatus::Canceled));
    assert_eq!(
        canceled
            .job_process_details
            .and_then(|d| d.number_of_canceled_things),
        Some(3)
    );
    // STOP_ROLLOUT: what was never released is canceled, what runs finishes the job.
    let stopped = engine.describe_job("sched-stop").await;
    assert_eq!(stopped.status, Some(JobStatus::InProgress));
    assert_eq!(
        stopped
            .job_process_details
            .and_then(|d| d.number_of_canceled_things),
        Some(2)
    );
    assert!(fleet.report(&things[0], "sched-stop", "SUCCEEDED").await);
    assert_eq!(
        engine.describe_job("sched-stop").await.status,
        Some(JobStatus::Completed)
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_windows_pause_releasing_outside_the_window() {
    let (engine, clock, things) = engine_with_things(sunday_one_am(), "window", 3).await;
    let mut fleet = Fleet::connect(&engine).await;
    engine
        .iot
        .create_job()
        .job_id("window-job")
        .document(DOCUMENT)
        .set_targets(Some(targets(&engine, &things)))
        .job_executions_rollout_config(rate(1))
        .scheduling_config(
            SchedulingConfig::builder()
                .maintenance_windows(
                    MaintenanceWindow::builder()
                        .start_time("cron(0 2 ? * SUN *)")
                        .duration_in_minutes(2)
                        .build()
                        .expect("a window"),
                )
                .build(),
        )
        .send()
        .await
        .expect("CreateJob");

    // 01:00 on a Sunday: outside the 02:00-02:02 window.
    let job = engine.describe_job("window-job").await;
    assert_eq!(job.status, Some(JobStatus::InProgress));
    let rollouts: Vec<String> = job
        .scheduled_job_rollouts
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.start_time)
        .collect();
    assert_eq!(rollouts.len(), 7);
    assert_eq!(rollouts[..2], ["2026-11-29T02:00", "2026-12-06T02:00"]);
    assert_eq!(fleet.notified(&things, "window-job").await, 0);

    advance(&engine, &clock, 59).await;
    assert_eq!(fleet.notified(&things, "window-job").await, 0);
    advance(&engine, &clock, 1).await;
    assert_eq!(fleet.notified(&things, "window-job").await, 1);
    advance(&engine, &clock, 1).await;
    assert_eq!(fleet.notified(&things, "window-job").await, 2);
    // 02:02: the window closed; the next opens a week later.
    advance(&engine, &clock, 1).await;
    assert_eq!(fleet.notified(&things, "window-job").await, 2);
    advance(&engine, &clock, 7 * 24 * 60 - 2).await;
    assert_eq!(fleet.notified(&things, "window-job").await, 3);
    engine.stop().await;
}

fn presigned() -> PresignedUrlConfig {
    PresignedUrlConfig::builder()
        .role_arn("arn:aws:iam::000000000000:role/flotilla-downloads")
        .expires_in_sec(600)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_job_changes_the_rate_and_description_and_refuses_more_retries() {
    let (engine, _clock, things) = engine_with_things(Utc::now(), "update", 5).await;
    let mut fleet = Fleet::connect(&engine).await;
    engine
        .iot
        .create_job()
        .job_id("update-job")
        .document(DOCUMENT)
        .set_targets(Some(targets(&engine, &things)))
        .job_executions_rollout_config(rate(1))
        .job_executions_retry_config(
            JobExecutionsRetryConfig::builder()
                .criteria_list(
                    RetryCriteria::builder()
                        .failure_type(RetryableFailureType::Failed)
                        .number_of_retries(2)
                        .build()
                        .expect("criteria"),
                )
                .build()
                .expect("retry config"),
        )
        .send()
        .await
        .expect("CreateJob");
    assert_eq!(fleet.notified(&things, "update-job").await, 1);

    engine
        .iot
        .update_job()
        .job_id("update-job")
        .description("faster now")
        .job_executions_rollout_config(rate(3))
        .presigned_url_config(presigned())
        .send()
        .await
        .expect("UpdateJob");
    // The higher rate applies within the same minute.
    assert_eq!(fleet.notified(&things, "update-job").await, 3);
    let job = engine.describe_job("update-job").await;
    assert_eq!(job.description.as_deref(), Some("faster now"));
    assert_eq!(job.job_executions_rollout_config, Some(rate(3)));
    assert_eq!(job.presigned_url_config, Some(presigned()));

    let more_retries = engine
        .iot
        .update_job()
        .job_id("update-job")
        .job_executions_retry_config(
            JobExecutionsRetryConfig::builder()
                .criteria_list(
                    RetryCriteria::builder()
                        .failure_type(RetryableFailureType::Failed)
                        .number_of_retries(5)
                        .build()
                        .expect("criteria"),
                )
                .build()
                .expect("retry config"),
        )
        .send()
        .await;
    assert_eq!(code(more_retries), "InvalidRequestException");
    let missing = engine.iot.update_job().job_id("no-such-job").send().await;
    assert_eq!(code(missing), "ResourceNotFoundException");
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associate_targets_adds_things_to_a_continuous_job() {
    let (engine, _clock, things) = engine_with_things(Utc::now(), "assoc", 2).await;
    let mut fleet = Fleet::connect(&engine).await;
    engine
        .iot
        .create_job()
        .job_id("continuous-job")
        .document(DOCUMENT)
        .target_selection(TargetSelection::Continuous)
        .targets(engine.thing_arn(&things[0]))
        .send()
        .await
        .expect("CreateJob");
    assert!(fleet.pending(&things[1]).await.is_empty());

    let associated = engine
        .iot
        .associate_targets_with_job()
        .job_id("continuous-job")
        .targets(engine.thing_arn(&things[1]))
        .comment("line 2 joins")
        .send()
        .await
        .expect("AssociateTargetsWithJob");
    assert_eq!(associated.job_id.as_deref(), Some("continuous-job"));
    assert_eq!(fleet.pending(&things[1]).await, ["continuous-job"]);
    let job = engine.describe_job("continuous-job").await;
    assert_eq!(job.targets.unwrap_or_default().len(), 2);

    // Unknown things, and snapshot jobs, are refused.
    let unknown = engine
        .iot
        .associate_targets_with_job()
        .job_id("continuous-job")
        .targets(engine.thing_arn("nobody"))
        .send()
        .await;
    assert_eq!(code(unknown), "ResourceNotFoundException");
    engine
        .create_job("snapshot-job", DOCUMENT, &[things[0].as_str()])
        .await;
    let snapshot = engine
        .iot
        .associate_targets_with_job()
        .job_id("snapshot-job")
        .targets(engine.thing_arn(&things[1]))
        .send()
        .await;
    assert_eq!(code(snapshot), "InvalidRequestException");
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_configurations_are_refused_and_create_nothing() {
    let (engine, _clock, things) = engine_with_things(Utc::now(), "absurd", 1).await;
    let create = || {
        engine
            .iot
            .create_job()
            .job_id("absurd-job")
            .document(DOCUMENT)
            .set_targets(Some(targets(&engine, &things)))
    };
    let abort = |threshold, min| {
        AbortConfig::builder()
            .criteria_list(
                AbortCriteria::builder()
                    .failure_type(JobExecutionFailureType::All)
                    .action(AbortAction::Cancel)
                    .threshold_percentage(threshold)
                    .min_number_of_executed_things(min)
                    .build()
                    .expect("criteria"),
            )
            .build()
            .expect("abort config")
    };
    let attempts = [
        create().job_executions_rollout_config(rate(0)).send().await,
        create()
            .job_executions_rollout_config(rate(1_000_000))
            .send()
            .await,
        create().abort_config(abort(250.0, 1)).send().await,
        create().abort_config(abort(10.0, -5)).send().await,
        create()
            .timeout_config(
                TimeoutConfig::builder()
                    .in_progress_timeout_in_minutes(100_000)
                    .build(),
            )
            .send()
            .await,
        create()
            .job_executions_retry_config(
                JobExecutionsRetryConfig::builder()
                    .criteria_list(
                        RetryCriteria::builder()
                            .failure_type(RetryableFailureType::All)
                            .number_of_retries(50)
                            .build()
                            .expect("criteria"),
                    )
                    .build()
                    .expect("retry config"),
            )
            .send()
            .await,
        create()
            .scheduling_config(
                SchedulingConfig::builder()
                    .start_time("1999-01-01T00:00")
                    .build(),
            )
            .send()
            .await,
        create()
            .scheduling_config(
                SchedulingConfig::builder()
                    .maintenance_windows(
                        MaintenanceWindow::builder()
                            .start_time("cron(99 2 ? * SUN *)")
                            .duration_in_minutes(30)
                            .build()
                            .expect("a window"),
                    )
                    .build(),
            )
            .send()
            .await,
        create()
            .job_executions_rollout_config(
                JobExecutionsRolloutConfig::builder()
                    .exponential_rate(
                        ExponentialRolloutRate::builder()
                            .base_rate_per_minute(10)
                            .increment_factor(50.0)
                            .rate_increase_criteria(
                                RateIncreaseCriteria::builder()
                                    .number_of_succeeded_things(1)
                                    .build(),
                            )
                            .build()
                            .expect("a rate"),
                    )
                    .build(),
            )
            .send()
            .await,
    ];
    for (index, attempt) in attempts.into_iter().enumerate() {
        assert_eq!(code(attempt), "InvalidRequestException", "attempt {index}");
    }
    let described = engine.iot.describe_job().job_id("absurd-job").send().await;
    assert_eq!(code(described), "ResourceNotFoundException");
    engine.stop().await;
}
