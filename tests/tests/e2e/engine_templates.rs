//! Job templates through `aws-sdk-iot`: custom templates (create, describe, list, delete,
//! jobs made from them) and the AWS managed templates with `documentParameters`.

use aws_sdk_iot::types::AbortConfig;
use serde_json::Value;

use crate::test_engine::{REGION, TestEngine, code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_templates_are_created_listed_used_and_deleted() {
    let engine = TestEngine::start().await;
    let iot = &engine.iot;
    iot.create_thing()
        .thing_name("t1")
        .send()
        .await
        .expect("CreateThing");
    let rollout = aws_sdk_iot::types::JobExecutionsRolloutConfig::builder()
        .maximum_per_minute(10)
        .build();
    let created = iot
        .create_job_template()
        .job_template_id("install-v1")
        .description("install version 1")
        .document(r#"{"operation":"install","version":"1"}"#)
        .job_executions_rollout_config(rollout)
        .send()
        .await
        .expect("CreateJobTemplate");
    assert_eq!(created.job_template_id(), Some("install-v1"));
    let template_arn = created.job_template_arn().expect("an ARN").to_owned();
    assert_eq!(
        template_arn,
        format!("arn:aws:iot:{REGION}:000000000000:jobtemplate/install-v1")
    );

    // The same id again is a conflict; a template needs a description and a document.
    let again = iot
        .create_job_template()
        .job_template_id("install-v1")
        .description("again")
        .document("{}")
        .send()
        .await;
    assert_eq!(code(again), "ConflictException");
    let no_document = iot
        .create_job_template()
        .job_template_id("empty")
        .description("nothing")
        .send()
        .await;
    assert_eq!(code(no_document), "InvalidRequestException");
    let not_json = iot
        .create_job_template()
        .job_template_id("broken")
        .description("not json")
        .document("{oops")
        .send()
        .await;
    assert_eq!(code(not_json), "InvalidRequestException");
    let absurd_rate = iot
        .create_job_template()
        .job_template_id("flood")
        .description("too fast")
        .document("{}")
        .job_executions_rollout_config(
            aws_sdk_iot::types::JobExecutionsRolloutConfig::builder()
                .maximum_per_minute(1_000_000)
                .build(),
        )
        .send()
        .await;
    assert_eq!(code(absurd_rate), "InvalidRequestException");

    let described = iot
        .describe_job_template()
        .job_template_id("install-v1")
        .send()
        .await
        .expect("DescribeJobTemplate");
    assert_eq!(described.description(), Some("install version 1"));
    assert_eq!(
        described.document(),
        Some(r#"{"operation":"install","version":"1"}"#)
    );
    assert_eq!(
        described
            .job_executions_rollout_config()
            .and_then(|c| c.maximum_per_minute()),
        Some(10)
    );
    assert!(described.created_at().is_some());

    // A job from the template takes its document and configuration; its own members win.
    iot.create_job()
        .job_id("from-template")
        .job_template_arn(&template_arn)
        .targets(engine.thing_arn("t1"))
        .abort_config(
            AbortConfig::builder()
                .criteria_list(
                    aws_sdk_iot::types::AbortCriteria::builder()
                        .failure_type(aws_sdk_iot::types::JobExecutionFailureType::Failed)
                        .action(aws_sdk_iot::types::AbortAction::Cancel)
                        .threshold_percentage(50.0)
                        .min_number_of_executed_things(1)
                        .build()
                        .expect("criteria"),
                )
                .build()
                .expect("abort config"),
        )
        .send()
        .await
        .expect("CreateJob from a template");
    let document = iot
        .get_job_document()
        .job_id("from-template")
        .send()
        .await
        .expect("GetJobDocument");
    assert_eq!(
        document.document(),
        Some(r#"{"operation":"install","version":"1"}"#)
    );
    let job = engine.describe_job("from-template").await;
    assert_eq!(job.job_template_arn(), Some(template_arn.as_str()));
    assert_eq!(
        job.job_executions_rollout_config()
            .and_then(|c| c.maximum_per_minute()),
        Some(10)
    );
    assert!(job.abort_config().is_some());

    // Listing pages one at a time, newest first.
    iot.create_job_template()
        .job_template_id("reboot")
        .description("reboot")
        .job_arn(job.job_arn().expect("a job ARN"))
        .send()
        .await
        .expect("CreateJobTemplate from a job");
    let first = iot
        .list_job_templates()
        .max_results(1)
        .send()
        .await
        .expect("ListJobTemplates");
    assert_eq!(first.job_templates().len(), 1);
    assert_eq!(first.job_templates()[0].job_template_id(), Some("reboot"));
    let second = iot
        .list_job_templates()
        .max_results(1)
        .next_token(first.next_token().expect("a second page"))
        .send()
        .await
        .expect("ListJobTemplates page 2");
    assert_eq!(
        second.job_templates()[0].job_template_id(),
        Some("install-v1")
    );
    assert_eq!(second.next_token(), None);
    let from_job = iot
        .describe_job_template()
        .job_template_id("reboot")
        .send()
        .await
        .expect("DescribeJobTemplate");
    assert_eq!(
        from_job.document(),
        Some(r#"{"operation":"install","version":"1"}"#)
    );
    assert!(from_job.abort_config().is_some());

    // documentParameters are for managed templates only.
    let with_parameters = iot
        .create_job()
        .job_id("bad-parameters")
        .job_template_arn(&template_arn)
        .document_parameters("version", "2")
        .targets(engine.thing_arn("t1"))
        .send()
        .await;
    assert_eq!(code(with_parameters), "InvalidRequestException");

    iot.delete_job_template()
        .job_template_id("install-v1")
        .send()
        .await
        .expect("DeleteJobTemplate");
    let gone = iot
        .describe_job_template()
        .job_template_id("install-v1")
        .send()
        .await;
    assert_eq!(code(gone), "ResourceNotFoundException");
    let missing_template = iot
        .create_job()
        .job_id("from-deleted")
        .job_template_arn(&template_arn)
        .targets(engine.thing_arn("t1"))
        .send()
        .await;
    assert_eq!(code(missing_template), "ResourceNotFoundException");
    let deleted_again = iot
        .delete_job_template()
        .job_template_id("install-v1")
        .send()
        .await;
    assert_eq!(code(deleted_again), "ResourceNotFoundException");
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_templates_are_listed_described_and_fill_their_parameters() {
    let engine = TestEngine::start().await;
    let iot = &engine.iot;
    iot.create_thing()
        .thing_name("t1")
        .send()
        .await
        .expect("CreateThing");

    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = iot
            .list_managed_job_templates()
            .max_results(3)
            .set_next_token(token)
            .send()
            .await
            .expect("ListManagedJobTemplates");
        names.extend(
            page.managed_job_templates()
                .iter()
                .filter_map(|t| t.template_name().map(str::to_owned)),
        );
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    for expected in [
        "AWS-Reboot",
        "AWS-Download-File",
        "AWS-Install-Application",
        "AWS-Remove-Application",
        "AWS-Start-Application",
        "AWS-Stop-Application",
        "AWS-Restart-Application",
        "AWS-Run-Command",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert_eq!(names.len(), 8);
    let filtered = iot
        .list_managed_job_templates()
        .template_name("AWS-Reboot")
        .send()
        .await
        .expect("ListManagedJobTemplates by name");
    assert_eq!(filtered.managed_job_templates().len(), 1);

    let download = iot
        .describe_managed_job_template()
        .template_name("AWS-Download-File")
        .template_version("1.0")
        .send()
        .await
        .expect("DescribeManagedJobTemplate");
    let arn = download.template_arn().expect("an ARN").to_owned();
    assert_eq!(
        arn,
        format!("arn:aws:iot:{REGION}::jobtemplate/AWS-Download-File:1.0")
    );
    let keys: Vec<&str> = download
        .document_parameters()
        .iter()
        .filter_map(|p| p.key())
        .collect();
    assert_eq!(
        keys,
        ["downloadUrl", "filePath", "runAsUser", "pathToHandler"]
    );
    assert!(
        download
            .document()
            .expect("a document")
            .contains("${aws:iot:parameter:downloadUrl}")
    );
    let unknown = iot
        .describe_managed_job_template()
        .template_name("AWS-Fly")
        .send()
        .await;
    assert_eq!(code(unknown), "ResourceNotFoundException");

    iot.create_job()
        .job_id("download")
        .job_template_arn(&arn)
        .document_parameters("downloadUrl", "https://files.invalid/fw.bin")
        .document_parameters("filePath", "/tmp/fw.bin")
        .targets(engine.thing_arn("t1"))
        .send()
        .await
        .expect("CreateJob from a managed template");
    let after = iot
        .get_job_document()
        .job_id("download")
        .send()
        .await
        .expect("GetJobDocument");
    let document: Value = serde_json::from_str(after.document().expect("a document")).unwrap();
    let input = &document["steps"][0]["action"]["input"];
    assert_eq!(input["handler"], "download-file.sh");
    assert_eq!(input["args"][0], "https://files.invalid/fw.bin");
    assert_eq!(input["args"][1], "/tmp/fw.bin");
    let before = iot
        .get_job_document()
        .job_id("download")
        .before_substitution(true)
        .send()
        .await
        .expect("GetJobDocument beforeSubstitution");
    assert_eq!(before.document(), download.document());

    // A missing required parameter, an unknown one, and a document of its own are refused,
    // and no job is left behind.
    for (job_id, parameters, document) in [
        ("no-url", vec![("filePath", "/tmp/x")], None),
        (
            "extra",
            vec![
                ("downloadUrl", "https://files.invalid/a"),
                ("filePath", "/tmp/a"),
                ("color", "red"),
            ],
            None,
        ),
        (
            "own-document",
            vec![
                ("downloadUrl", "https://files.invalid/a"),
                ("filePath", "/tmp/a"),
            ],
            Some("{}"),
        ),
    ] {
        let mut request = iot
            .create_job()
            .job_id(job_id)
            .job_template_arn(&arn)
            .set_document(document.map(str::to_owned))
            .targets(engine.thing_arn("t1"));
        for (key, value) in parameters {
            request = request.document_parameters(key, value);
        }
        assert_eq!(
            code(request.send().await),
            "InvalidRequestException",
            "{job_id}"
        );
        let described = iot.describe_job().job_id(job_id).send().await;
        assert_eq!(code(described), "ResourceNotFoundException", "{job_id}");
    }
    engine.stop().await;
}
