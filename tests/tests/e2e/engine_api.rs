//! The engine's job-management API (CancelJob, DeleteJob, ListJobs, GetJobDocument,
//! DescribeJobExecution, ListJobExecutionsForThing) driven through `aws-sdk-iot`, so the
//! paths, member names and error shapes are checked against what the real SDK sends and
//! parses.

use aws_sdk_iot::types::{JobExecutionStatus, JobStatus};

use crate::test_engine::{TestEngine, code, received};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_listed_inspected_canceled_and_deleted_through_the_sdk() {
    let engine = TestEngine::start().await;
    let iot = &engine.iot;
    for thing in ["t1", "t2", "t3"] {
        iot.create_thing()
            .thing_name(thing)
            .send()
            .await
            .expect("CreateThing");
    }
    let document = r#"{"operation":"install","version":"1.2.3"}"#;
    engine
        .create_job("job-a", document, &["t1", "t2", "t3"])
        .await;
    engine
        .create_job("job-b", r#"{"operation":"reboot"}"#, &["t1"])
        .await;

    // ListJobs pages one job at a time, newest first, and ends without a token.
    let first = iot
        .list_jobs()
        .max_results(1)
        .send()
        .await
        .expect("ListJobs");
    let first_jobs = first.jobs();
    assert_eq!(first_jobs.len(), 1);
    assert_eq!(first_jobs[0].job_id(), Some("job-b"));
    assert_eq!(first_jobs[0].status(), Some(&JobStatus::InProgress));
    assert!(first_jobs[0].created_at().is_some());
    let token = first.next_token().expect("a second page");
    let second = iot
        .list_jobs()
        .max_results(1)
        .next_token(token)
        .send()
        .await
        .expect("ListJobs page 2");
    assert_eq!(second.jobs().len(), 1);
    assert_eq!(second.jobs()[0].job_id(), Some("job-a"));
    assert_eq!(
        second.jobs()[0].job_arn(),
        Some("arn:aws:iot:us-east-1:000000000000:job/job-a")
    );
    assert_eq!(second.next_token(), None);

    let fetched = iot
        .get_job_document()
        .job_id("job-a")
        .send()
        .await
        .expect("GetJobDocument");
    assert_eq!(fetched.document(), Some(document));

    let execution = engine.execution("t1", "job-a").await;
    assert_eq!(execution.job_id(), Some("job-a"));
    assert_eq!(execution.status(), Some(&JobExecutionStatus::Queued));
    assert_eq!(execution.thing_arn(), Some(engine.thing_arn("t1").as_str()));
    assert_eq!(execution.execution_number(), Some(1));
    assert_eq!(execution.version_number(), 1);
    assert_eq!(execution.force_canceled(), Some(false));
    assert!(execution.queued_at().is_some());
    assert!(execution.started_at().is_none());
    assert!(execution.status_details().is_some());

    let for_thing = iot
        .list_job_executions_for_thing()
        .thing_name("t1")
        .send()
        .await
        .expect("ListJobExecutionsForThing");
    let mut ids: Vec<&str> = for_thing
        .execution_summaries()
        .iter()
        .filter_map(|s| s.job_id())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["job-a", "job-b"]);
    let summary = for_thing.execution_summaries()[0]
        .job_execution_summary()
        .expect("a summary");
    assert_eq!(summary.status(), Some(&JobExecutionStatus::Queued));
    assert_eq!(summary.execution_number(), Some(1));

    // t2 has started job-a (as a device would have); a cancel without force leaves it.
    sqlx::query(
        "update engine.job_executions set status = 'IN_PROGRESS', started_at = now()
         where job_id = 'job-a' and thing_name = 't2'",
    )
    .execute(&engine.pool)
    .await
    .expect("starting t2's execution");
    let mut messages = engine
        .watch(&["$aws/events/#", "$aws/things/+/jobs/notify-next"])
        .await;
    let canceled = iot
        .cancel_job()
        .job_id("job-a")
        .reason_code("BAD_BUILD")
        .comment("rolled back")
        .send()
        .await
        .expect("CancelJob");
    assert_eq!(canceled.job_id(), Some("job-a"));
    assert_eq!(canceled.description(), Some("job-a description"));
    let job = engine.describe_job("job-a").await;
    assert_eq!(job.status(), Some(&JobStatus::Canceled));
    assert_eq!(job.force_canceled(), Some(false));
    assert_eq!(job.reason_code(), Some("BAD_BUILD"));
    assert_eq!(job.comment(), Some("rolled back"));

    // The job event, one execution event per canceled execution, and notify-next to the
    // devices whose next job changed: t1 moves on to job-b, t3 has none left, t2 keeps job-a.
    let mut got = received(&mut messages, 5).await;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let topics: Vec<&str> = got.iter().map(|(topic, _)| topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "$aws/events/job/job-a/canceled",
            "$aws/events/jobExecution/job-a/canceled",
            "$aws/events/jobExecution/job-a/canceled",
            "$aws/things/t1/jobs/notify-next",
            "$aws/things/t3/jobs/notify-next",
        ],
        "{got:?}"
    );
    assert_eq!(got[0].1["status"], "CANCELED");
    assert_eq!(got[0].1["comment"], "rolled back");
    assert_eq!(got[1].1["status"], "CANCELED");
    assert_eq!(got[3].1["execution"]["jobId"], "job-b");
    assert!(got[4].1.get("execution").is_none(), "{:?}", got[4].1);
    let details = job.job_process_details().expect("process details");
    assert_eq!(details.number_of_canceled_things(), Some(2));
    assert_eq!(details.number_of_in_progress_things(), Some(1));
    assert_eq!(
        engine.execution("t1", "job-a").await.status(),
        Some(&JobExecutionStatus::Canceled)
    );
    assert_eq!(
        engine.execution("t2", "job-a").await.status(),
        Some(&JobExecutionStatus::InProgress)
    );
    let only_canceled = iot
        .list_jobs()
        .status(JobStatus::Canceled)
        .send()
        .await
        .expect("ListJobs by status");
    let ids: Vec<_> = only_canceled
        .jobs()
        .iter()
        .filter_map(|j| j.job_id())
        .collect();
    assert_eq!(ids, ["job-a"]);

    // Canceling again needs force; with force the IN_PROGRESS execution goes too.
    assert_eq!(
        code(iot.cancel_job().job_id("job-a").send().await),
        "InvalidRequestException"
    );
    iot.cancel_job()
        .job_id("job-a")
        .force(true)
        .send()
        .await
        .expect("forced CancelJob");
    let job = engine.describe_job("job-a").await;
    assert_eq!(job.force_canceled(), Some(true));
    assert_eq!(job.reason_code(), Some("BAD_BUILD"));
    assert_eq!(
        job.job_process_details()
            .and_then(|d| d.number_of_canceled_things()),
        Some(3)
    );
    // No second job event: the job was already canceled; only t2's execution is news.
    let got = received(&mut messages, 2).await;
    let topics: Vec<&str> = got.iter().map(|(topic, _)| topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "$aws/events/jobExecution/job-a/canceled",
            "$aws/things/t2/jobs/notify-next"
        ],
        "{got:?}"
    );
    let forced = engine.execution("t2", "job-a").await;
    assert_eq!(forced.status(), Some(&JobExecutionStatus::Canceled));
    assert_eq!(forced.force_canceled(), Some(true));

    // An IN_PROGRESS job is deleted only with force; a canceled one without.
    assert_eq!(
        code(iot.delete_job().job_id("job-b").send().await),
        "InvalidStateTransitionException"
    );
    iot.delete_job()
        .job_id("job-b")
        .force(true)
        .send()
        .await
        .expect("forced DeleteJob");
    let got = received(&mut messages, 2).await;
    let topics: Vec<&str> = got.iter().map(|(topic, _)| topic.as_str()).collect();
    assert!(
        topics.contains(&"$aws/events/job/job-b/deleted"),
        "{topics:?}"
    );
    // t1's last pending job is gone.
    assert!(
        got.iter()
            .any(|(topic, body)| topic == "$aws/things/t1/jobs/notify-next"
                && body.get("execution").is_none()),
        "{got:?}"
    );
    iot.delete_job()
        .job_id("job-a")
        .send()
        .await
        .expect("DeleteJob");
    for job_id in ["job-a", "job-b"] {
        assert_eq!(
            code(iot.describe_job().job_id(job_id).send().await),
            "ResourceNotFoundException"
        );
    }
    assert_eq!(
        code(
            iot.describe_job_execution()
                .thing_name("t1")
                .job_id("job-a")
                .send()
                .await
        ),
        "ResourceNotFoundException"
    );
    assert!(
        iot.list_jobs()
            .send()
            .await
            .expect("ListJobs")
            .jobs()
            .is_empty()
    );

    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_inputs_are_invalid_request_exceptions() {
    let engine = TestEngine::start().await;
    let iot = &engine.iot;
    let invalid = "InvalidRequestException";
    assert_eq!(
        code(iot.get_job_document().job_id("bad:id").send().await),
        invalid
    );
    assert_eq!(
        code(iot.cancel_job().job_id("bad:id").send().await),
        invalid
    );
    assert_eq!(
        code(iot.delete_job().job_id("bad:id").send().await),
        invalid
    );
    assert_eq!(code(iot.list_jobs().max_results(0).send().await), invalid);
    assert_eq!(code(iot.list_jobs().max_results(251).send().await), invalid);
    assert_eq!(
        code(iot.list_jobs().next_token("garbage").send().await),
        invalid
    );
    assert_eq!(
        code(iot.list_jobs().thing_group_id("not-a-uuid").send().await),
        invalid
    );
    assert_eq!(
        code(
            iot.list_job_executions_for_thing()
                .thing_name("t1")
                .max_results(0)
                .send()
                .await
        ),
        invalid
    );
    assert_eq!(
        code(
            iot.describe_job_execution()
                .thing_name("bad thing")
                .job_id("job")
                .send()
                .await
        ),
        invalid
    );
    assert_eq!(
        code(
            iot.cancel_job()
                .job_id("job")
                .reason_code("lower case")
                .send()
                .await
        ),
        invalid
    );
    assert_eq!(
        code(iot.cancel_job().job_id("no-such-job").send().await),
        "ResourceNotFoundException"
    );
    assert_eq!(
        code(
            iot.list_job_executions_for_thing()
                .thing_name("no-such-thing")
                .send()
                .await
        ),
        "ResourceNotFoundException"
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_past_its_step_timeout_times_out_and_completes_the_job() {
    let engine = TestEngine::start().await;
    engine
        .iot
        .create_thing()
        .thing_name("slow")
        .send()
        .await
        .expect("CreateThing");
    engine
        .create_job("job-slow", r#"{"operation":"install"}"#, &["slow"])
        .await;

    let mut messages = engine.watch(&["$aws/events/#"]).await;
    // The device took the job with a step timeout that has now passed (set in SQL, as waiting
    // out the one-minute minimum would make the test slow).
    sqlx::query(
        "update engine.job_executions set status = 'IN_PROGRESS', started_at = now(),
             step_timeout_at = now() - interval '1 second'
         where job_id = 'job-slow' and thing_name = 'slow'",
    )
    .execute(&engine.pool)
    .await
    .expect("starting the execution");

    let topics: Vec<String> = received(&mut messages, 2)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        topics,
        [
            "$aws/events/jobExecution/job-slow/timed_out",
            "$aws/events/job/job-slow/completed"
        ]
    );
    let job = engine.describe_job("job-slow").await;
    assert_eq!(job.status, Some(JobStatus::Completed));
    let details = job.job_process_details.expect("process details");
    assert_eq!(details.number_of_timed_out_things, Some(1));
    assert_eq!(details.number_of_in_progress_things, Some(0));

    engine.stop().await;
}
