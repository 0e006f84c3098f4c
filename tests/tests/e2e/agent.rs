//! The device agent (`flotilla-agent`, run as its own process) against the real embedded
//! engine: each job document type, a SIGKILL mid-job and a restart (the job finishes once), a
//! reboot job that succeeds only after the device is back, a forced cancel in the middle of a
//! slow download, a download resumed with `Range` after a crash, and reconnection after the
//! broker restarts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_iot::types::JobExecutionStatus;
use base64::Engine as _;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{eventually, serve_files};
use crate::test_engine::{REGION, TestEngine};

/// A folder of its own for one test (state, handlers, outputs), removed by [`Scratch::remove`].
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "flotilla-agent-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(dir.join("handlers")).expect("creating the scratch folder");
        std::fs::create_dir_all(dir.join("state")).expect("creating the scratch folder");
        std::fs::write(dir.join("boot_id"), "boot-1\n").expect("writing the boot id");
        Self(dir)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes an executable handler script into the handler folder.
    pub(crate) fn handler(&self, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.0.join("handlers").join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("writing a handler");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("making a handler executable");
    }

    /// The files left in the agent's download folder.
    pub(crate) fn downloads(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.0.join("state/downloads"))
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }

    pub(crate) fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The signing key of the tests' "vendor", and its public half as the agent reads it.
fn vendor_key() -> SigningKey {
    SigningKey::from_slice(&[0x42; 32]).expect("a P-256 key")
}

fn write_trusted_key(scratch: &Scratch) -> PathBuf {
    let pem = vendor_key()
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("PEM");
    let path = scratch.path("trusted.pem");
    std::fs::write(&path, pem).expect("writing the trusted key");
    path
}

/// A Flotilla install document for `artifact` served at `url`, signed by `key`.
fn install_document(url: &str, artifact: &[u8], key: &SigningKey, reboot: bool) -> Value {
    let digest = Sha256::digest(artifact);
    let signature: Signature = key.sign_prehash(&digest).expect("signing");
    json!({
        "operation": "flotilla.install",
        "version": "1.0",
        "artifact": {
            "url": url,
            "size": artifact.len(),
            "sha256": hex::encode(digest),
            "signature": base64::engine::general_purpose::STANDARD.encode(signature.to_der()),
        },
        "install": { "handler": "install-app.sh", "args": ["--now"] },
        "reboot": reboot,
        "softwareVersion": "2.1.0",
    })
}

/// The agent as a separate process, its output echoed to the test's.
pub(crate) struct AgentProcess {
    child: tokio::process::Child,
}

impl AgentProcess {
    fn spawn(engine: &TestEngine, thing: &str, scratch: &Scratch) -> Self {
        Self::spawn_at(engine.engine.mqtt_addr, thing, scratch, &[])
    }

    /// The agent for `thing` against the broker at `addr`, with `env` added to its
    /// environment; it trusts `trusted.pem` in `scratch` when there is one.
    pub(crate) fn spawn_at(
        addr: std::net::SocketAddr,
        thing: &str,
        scratch: &Scratch,
        env: &[(&str, String)],
    ) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla-agent"));
        command
            .arg("--thing-name")
            .arg(thing)
            .arg("--endpoint")
            .arg(addr.ip().to_string())
            .arg("--port")
            .arg(addr.port().to_string())
            .arg("--handler-dir")
            .arg(scratch.path("handlers"))
            .arg("--state-dir")
            .arg(scratch.path("state"))
            .arg("--boot-id-file")
            .arg(scratch.path("boot_id"))
            .env("RUST_LOG", "info,flotilla_agent=debug")
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        if scratch.path("trusted.pem").exists() {
            command
                .arg("--trusted-key")
                .arg(scratch.path("trusted.pem"));
        }
        Self {
            child: command.spawn().expect("starting flotilla-agent"),
        }
    }

    /// SIGKILL: no cleanup, no goodbye, as in a crash or a power cut.
    pub(crate) async fn kill(mut self) {
        self.child.kill().await.expect("killing the agent");
    }

    /// Waits for the process to end by itself (a handler killed it).
    async fn wait_for_exit(mut self) {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the agent stops")
            .expect("waiting for the agent");
    }
}

async fn create_job(engine: &TestEngine, job_id: &str, document: &Value, thing: &str) {
    engine
        .create_job(job_id, &document.to_string(), &[thing])
        .await;
}

/// A job from an AWS managed template with `parameters`.
async fn create_managed_job(
    engine: &TestEngine,
    job_id: &str,
    template: &str,
    parameters: &[(&str, &str)],
    thing: &str,
) {
    let mut request = engine
        .iot
        .create_job()
        .job_id(job_id)
        .job_template_arn(format!("arn:aws:iot:{REGION}::jobtemplate/{template}:1.0"))
        .targets(engine.thing_arn(thing));
    for (key, value) in parameters {
        request = request.document_parameters(*key, *value);
    }
    request
        .send()
        .await
        .expect("CreateJob from a managed template");
}

/// The execution once it has `status`, with its statusDetails.
async fn wait_for_status(
    engine: &TestEngine,
    thing: &str,
    job_id: &str,
    status: JobExecutionStatus,
) -> HashMap<String, String> {
    wait_for_execution(&engine.iot, thing, job_id, status, Duration::from_secs(60)).await
}

/// The execution, read through `iot`, once it has `status`, with its statusDetails; fails
/// the test when it ends in another status or `timeout` passes.
pub(crate) async fn wait_for_execution(
    iot: &aws_sdk_iot::Client,
    thing: &str,
    job_id: &str,
    status: JobExecutionStatus,
    timeout: Duration,
) -> HashMap<String, String> {
    eventually(
        &format!("{job_id} on {thing} is {status:?}"),
        timeout,
        || async {
            let execution = iot
                .describe_job_execution()
                .thing_name(thing)
                .job_id(job_id)
                .send()
                .await
                .ok()?
                .execution?;
            let current = execution.status()?.clone();
            assert!(
                current == status
                    || matches!(
                        current,
                        JobExecutionStatus::Queued | JobExecutionStatus::InProgress
                    ),
                "{job_id} ended {current:?} (details {:?}), expected {status:?}",
                execution.status_details()
            );
            (current == status).then(|| {
                execution
                    .status_details()
                    .and_then(|d| d.details_map())
                    .cloned()
                    .unwrap_or_default()
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_the_seed_download_document() {
    let engine = TestEngine::start().await;
    let scratch = Scratch::new();
    let firmware: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let (files, file_server) = serve_files(vec![("firmware.bin", firmware.clone())]).await;
    engine.create_thing("agent-seed").await;
    let agent = AgentProcess::spawn(&engine, "agent-seed", &scratch);

    let target = scratch.path("out/firmware.bin");
    let document = json!({
        "operation": "download",
        "version": "1.0",
        "directory": target,
        "files": { "fileName": "firmware.bin", "url": format!("http://{files}/firmware.bin") },
    });
    create_job(&engine, "seed-download", &document, "agent-seed").await;
    wait_for_status(
        &engine,
        "agent-seed",
        "seed-download",
        JobExecutionStatus::Succeeded,
    )
    .await;
    assert!(std::fs::read(&target).expect("the downloaded file") == firmware);
    assert!(scratch.downloads().is_empty(), "{:?}", scratch.downloads());

    agent.kill().await;
    file_server.abort();
    scratch.remove();
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_the_managed_templates_and_reports_command_output() {
    let engine = TestEngine::start().await;
    let scratch = Scratch::new();
    let installed = scratch.path("installed.txt");
    scratch.handler(
        "install-packages.sh",
        &format!(
            "echo \"$@\" > {}\necho installing \"$@\"",
            installed.display()
        ),
    );
    let downloaded = scratch.path("downloaded.bin");
    scratch.handler(
        "download-file.sh",
        "exec curl --silent --show-error --fail --output \"$2\" \"$1\"",
    );
    let payload = b"payload of AWS-Download-File".to_vec();
    let (files, file_server) = serve_files(vec![("file.bin", payload.clone())]).await;
    engine.create_thing("agent-templates").await;
    let agent = AgentProcess::spawn(&engine, "agent-templates", &scratch);

    create_managed_job(
        &engine,
        "install-app",
        "AWS-Install-Application",
        &[("packages", "nginx curl")],
        "agent-templates",
    )
    .await;
    let details = wait_for_status(
        &engine,
        "agent-templates",
        "install-app",
        JobExecutionStatus::Succeeded,
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(&installed).expect("the handler ran"),
        "nginx curl\n"
    );
    assert_eq!(
        details.get("stdout").map(String::as_str),
        Some("installing nginx curl")
    );

    let url = format!("http://{files}/file.bin");
    create_managed_job(
        &engine,
        "download-file",
        "AWS-Download-File",
        &[
            ("downloadUrl", url.as_str()),
            ("filePath", downloaded.to_str().expect("UTF-8 path")),
        ],
        "agent-templates",
    )
    .await;
    wait_for_status(
        &engine,
        "agent-templates",
        "download-file",
        JobExecutionStatus::Succeeded,
    )
    .await;
    assert_eq!(std::fs::read(&downloaded).expect("downloaded"), payload);

    // AWS-Run-Command: the output tails come back within the 1024-character limit, line
    // breaks made printable.
    create_managed_job(
        &engine,
        "run-command",
        "AWS-Run-Command",
        &[(
            "command",
            "sh,-c,echo first; echo second; i=0; while [ $i -lt 400 ]; do printf abcdef; i=$((i+1)); done; echo; echo oops >&2",
        )],
        "agent-templates",
    )
    .await;
    let details = wait_for_status(
        &engine,
        "agent-templates",
        "run-command",
        JobExecutionStatus::Succeeded,
    )
    .await;
    let stdout = &details["stdout"];
    assert_eq!(stdout.chars().count(), 1024, "{stdout}");
    assert!(
        stdout.ends_with("abcdef") && stdout.starts_with('…'),
        "{stdout}"
    );
    assert_eq!(details["stderr"], "oops");

    create_managed_job(
        &engine,
        "run-failing-command",
        "AWS-Run-Command",
        &[("command", "sh,-c,echo broken >&2; exit 3")],
        "agent-templates",
    )
    .await;
    let details = wait_for_status(
        &engine,
        "agent-templates",
        "run-failing-command",
        JobExecutionStatus::Failed,
    )
    .await;
    assert!(details["reason"].contains("exit code 3"), "{details:?}");
    assert_eq!(details["stderr"], "broken");

    agent.kill().await;
    file_server.abort();
    scratch.remove();
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_rejects_unknown_and_invalid_documents_with_the_reason() {
    let engine = TestEngine::start().await;
    let scratch = Scratch::new();
    engine.create_thing("agent-reject").await;
    let agent = AgentProcess::spawn(&engine, "agent-reject", &scratch);

    for (job_id, document, expected) in [
        (
            "unknown-doc",
            json!({ "hello": "world" }),
            "unknown job document",
        ),
        (
            "unknown-step",
            json!({ "version": "1.0", "steps": [{ "action": { "name": "x", "type": "runScript", "input": {} } }] }),
            "runScript",
        ),
        (
            "bad-install",
            json!({ "operation": "flotilla.install", "version": "1.0", "artifact": { "url": "ftp://x" } }),
            "invalid install document",
        ),
    ] {
        create_job(&engine, job_id, &document, "agent-reject").await;
        let details = wait_for_status(
            &engine,
            "agent-reject",
            job_id,
            JobExecutionStatus::Rejected,
        )
        .await;
        assert!(
            details["reason"].contains(expected),
            "{job_id}: {details:?}"
        );
    }

    agent.kill().await;
    scratch.remove();
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_installs_a_signed_artifact_and_refuses_a_tampered_one() {
    let engine = TestEngine::start().await;
    let scratch = Scratch::new();
    write_trusted_key(&scratch);
    let installed = scratch.path("installed.bin");
    scratch.handler(
        "install-app.sh",
        &format!(
            "cp \"$1\" {}\necho \"installed with $2\"",
            installed.display()
        ),
    );
    let artifact: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let server = ArtifactServer::start(artifact.clone(), None).await;
    engine.create_thing("agent-install").await;
    let agent = AgentProcess::spawn(&engine, "agent-install", &scratch);

    // A wrong digest: FAILED with the precise reason, nothing installed, nothing left behind.
    let mut tampered = install_document(&server.url(), &artifact, &vendor_key(), false);
    tampered["artifact"]["sha256"] = json!(hex::encode(Sha256::digest(b"something else")));
    create_job(&engine, "bad-digest", &tampered, "agent-install").await;
    let details = wait_for_status(
        &engine,
        "agent-install",
        "bad-digest",
        JobExecutionStatus::Failed,
    )
    .await;
    assert!(
        details["reason"].starts_with("sha256 mismatch"),
        "{details:?}"
    );
    assert!(
        !installed.exists(),
        "a file that failed its checks was installed"
    );

    // Signed by someone else.
    let intruder = SigningKey::from_slice(&[0x17; 32]).expect("a P-256 key");
    let forged = install_document(&server.url(), &artifact, &intruder, false);
    create_job(&engine, "bad-signature", &forged, "agent-install").await;
    let details = wait_for_status(
        &engine,
        "agent-install",
        "bad-signature",
        JobExecutionStatus::Failed,
    )
    .await;
    assert!(
        details["reason"].starts_with("signature mismatch"),
        "{details:?}"
    );

    // A wrong size.
    let mut short = install_document(&server.url(), &artifact, &vendor_key(), false);
    short["artifact"]["size"] = json!(artifact.len() - 1);
    create_job(&engine, "bad-size", &short, "agent-install").await;
    let details = wait_for_status(
        &engine,
        "agent-install",
        "bad-size",
        JobExecutionStatus::Failed,
    )
    .await;
    assert!(
        details["reason"].starts_with("size mismatch"),
        "{details:?}"
    );
    assert!(!installed.exists());
    assert!(scratch.downloads().is_empty(), "{:?}", scratch.downloads());

    let good = install_document(&server.url(), &artifact, &vendor_key(), false);
    create_job(&engine, "good-install", &good, "agent-install").await;
    let details = wait_for_status(
        &engine,
        "agent-install",
        "good-install",
        JobExecutionStatus::Succeeded,
    )
    .await;
    assert!(std::fs::read(&installed).expect("installed") == artifact);
    assert_eq!(details["version"], "2.1.0");
    assert_eq!(details["stdout"], "installed with --now");
    assert!(scratch.downloads().is_empty(), "{:?}", scratch.downloads());

    agent.kill().await;
    server.stop();
    scratch.remove();
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_job_resumes_and_finishes_it_once() {
    let engine = TestEngine::start().await;
    let mut events = engine
        .watch(&["$aws/events/jobExecution/resume-steps/+"])
        .await;
    let scratch = Scratch::new();
    let log = scratch.path("steps.log");
    let mark = scratch.path("second-started");
    engine.create_thing("agent-resume").await;
    let agent = AgentProcess::spawn(&engine, "agent-resume", &scratch);

    // The second step's first run parks (the agent is killed under it); its rerun finishes.
    let second = format!(
        "sh,-c,if [ -f {mark} ]; then echo two >> {log}; else touch {mark}; sleep 60; fi",
        mark = mark.display(),
        log = log.display()
    );
    let document = json!({
        "version": "1.0",
        "steps": [
            { "action": { "name": "first", "type": "runCommand",
                "input": { "command": format!("sh,-c,echo one >> {}", log.display()) } } },
            { "action": { "name": "second", "type": "runCommand", "input": { "command": second } } },
        ],
        "finalStep": { "action": { "name": "final", "type": "runCommand",
            "input": { "command": format!("sh,-c,echo final >> {}", log.display()) } } },
    });
    create_job(&engine, "resume-steps", &document, "agent-resume").await;
    eventually(
        "the second step to start",
        Duration::from_secs(30),
        || async { mark.exists().then_some(()) },
    )
    .await;
    agent.kill().await;
    assert_eq!(
        engine
            .execution("agent-resume", "resume-steps")
            .await
            .status(),
        Some(&JobExecutionStatus::InProgress)
    );

    let agent = AgentProcess::spawn(&engine, "agent-resume", &scratch);
    wait_for_status(
        &engine,
        "agent-resume",
        "resume-steps",
        JobExecutionStatus::Succeeded,
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(&log).expect("the steps' log"),
        "one\ntwo\nfinal\n",
        "finished steps ran again, or a step was skipped"
    );
    // Exactly one terminal event for the execution.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut terminal = Vec::new();
    while let Ok((topic, _)) = events.try_recv() {
        terminal.push(topic);
    }
    assert_eq!(
        terminal,
        vec!["$aws/events/jobExecution/resume-steps/succeeded".to_owned()],
        "{terminal:?}"
    );

    agent.kill().await;
    scratch.remove();
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_job_succeeds_only_after_the_device_is_back() {
    let engine = TestEngine::start().await;
    let scratch = Scratch::new();
    // The "reboot": a new boot id, and the agent dies at once, as the machine would take it.
    scratch.handler(
        "reboot.sh",
        &format!(
            "echo boot-2 > {}\nkill -9 $PPID",
            scratch.path("boot_id").display()
        ),
    );
    engine.create_thing("agent-reboot").await;
    let agent = AgentProcess::spawn(&engine, "agent-reboot", &scratch);
    create_managed_job(&engine, "reboot", "AWS-Reboot", &[], "agent-reboot").await;
    agent.wait_for_exit().await;
    let execution = engine.execution("agent-reboot", "reboot").await;
    assert_eq!(execution.status(), Some(&JobExecutionStatus::InProgress));

    // The device comes back: now the job succeeds, and the reboot does not run again.
    scratch.handler("reboot.sh", "echo reboot ran twice >&2\nexit 1");
    let agent = AgentProcess::spawn(&engine, "agent-reboot", &scratch);
    wait_for_status(
        &engine,
        "agent-reboot",
        "reboot",
        JobExecutionStatus::Succeeded,
    )
    .await;

    agent.kill().await;
    scratch.remove();
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_cancel_stops_a_download_and_cleans_up() {
    let engine = TestEngine::start().await;
    let scratch = Scratch::new();
    write_trusted_key(&scratch);
    let installed = scratch.path("installed.bin");
    scratch.handler(
        "install-app.sh",
        &format!("cp \"$1\" {}", installed.display()),
    );
    let artifact: Vec<u8> = (0..2_000_000u32).map(|i| (i % 239) as u8).collect();
    // 16 KiB every 100 ms: about 12 s for the whole file.
    let server = ArtifactServer::start(artifact.clone(), Some(Duration::from_millis(100))).await;
    engine.create_thing("agent-cancel").await;
    let agent = AgentProcess::spawn(&engine, "agent-cancel", &scratch);

    let document = install_document(&server.url(), &artifact, &vendor_key(), false);
    create_job(&engine, "cancel-me", &document, "agent-cancel").await;
    eventually(
        "part of the artifact downloaded",
        Duration::from_secs(30),
        || async {
            scratch
                .downloads()
                .iter()
                .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 64 * 1024))
                .then_some(())
        },
    )
    .await;
    engine
        .iot
        .cancel_job_execution()
        .job_id("cancel-me")
        .thing_name("agent-cancel")
        .force(true)
        .send()
        .await
        .expect("CancelJobExecution");
    eventually(
        "the partial download removed",
        Duration::from_secs(20),
        || async { scratch.downloads().is_empty().then_some(()) },
    )
    .await;
    eventually(
        "the download connection closed",
        Duration::from_secs(20),
        || async { (server.open_connections() == 0).then_some(()) },
    )
    .await;
    assert_eq!(
        engine.execution("agent-cancel", "cancel-me").await.status(),
        Some(&JobExecutionStatus::Canceled)
    );
    assert!(!installed.exists(), "a cancelled install went ahead");
    assert!(
        !scratch.path("state/job.json").exists(),
        "the job's state was kept"
    );

    agent.kill().await;
    server.stop();
    scratch.remove();
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_resumes_with_range_after_the_agent_is_killed() {
    let engine = TestEngine::start().await;
    let scratch = Scratch::new();
    write_trusted_key(&scratch);
    let installed = scratch.path("installed.bin");
    scratch.handler(
        "install-app.sh",
        &format!("cp \"$1\" {}", installed.display()),
    );
    let artifact: Vec<u8> = (0..1_000_000u32).map(|i| (i % 233) as u8).collect();
    let server = ArtifactServer::start(artifact.clone(), Some(Duration::from_millis(50))).await;
    engine.create_thing("agent-range").await;
    let agent = AgentProcess::spawn(&engine, "agent-range", &scratch);

    let document = install_document(&server.url(), &artifact, &vendor_key(), false);
    create_job(&engine, "resume-download", &document, "agent-range").await;
    eventually(
        "part of the artifact downloaded",
        Duration::from_secs(30),
        || async {
            scratch
                .downloads()
                .iter()
                .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 100 * 1024))
                .then_some(())
        },
    )
    .await;
    agent.kill().await;

    let agent = AgentProcess::spawn(&engine, "agent-range", &scratch);
    wait_for_status(
        &engine,
        "agent-range",
        "resume-download",
        JobExecutionStatus::Succeeded,
    )
    .await;
    assert!(std::fs::read(&installed).expect("installed") == artifact);
    let ranges = server.ranges();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    let resumed_from: u64 = ranges[1]
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .expect("the second request continues with Range: bytes=N-");
    assert!(resumed_from > 100 * 1024, "{resumed_from}");

    agent.kill().await;
    server.stop();
    scratch.remove();
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reconnects_after_the_broker_restarts() {
    let engine = TestEngine::start().await;
    let scratch = Scratch::new();
    engine.create_thing("agent-reconnect").await;
    let agent = AgentProcess::spawn(&engine, "agent-reconnect", &scratch);
    let log = scratch.path("ran.log");
    let command = |word: &str| {
        json!({ "version": "1.0", "steps": [{ "action": { "name": "say", "type": "runCommand",
            "input": { "command": format!("sh,-c,echo {word} >> {}", log.display()) } } }] })
    };
    create_job(
        &engine,
        "before-restart",
        &command("before"),
        "agent-reconnect",
    )
    .await;
    wait_for_status(
        &engine,
        "agent-reconnect",
        "before-restart",
        JobExecutionStatus::Succeeded,
    )
    .await;

    let engine = engine.restart_on_same_ports().await;
    create_job(
        &engine,
        "after-restart",
        &command("after"),
        "agent-reconnect",
    )
    .await;
    wait_for_status(
        &engine,
        "agent-reconnect",
        "after-restart",
        JobExecutionStatus::Succeeded,
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(&log).expect("the log"),
        "before\nafter\n"
    );

    agent.kill().await;
    scratch.remove();
    engine.stop().await;
}

/// An HTTP/1.1 server for one file that honours `Range: bytes=N-`, optionally sending 16 KiB
/// per `pace` so a test can act in the middle of a download. It records each request's Range
/// header and counts the connections still open.
struct ArtifactServer {
    addr: std::net::SocketAddr,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
    open: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ArtifactServer {
    async fn start(body: Vec<u8>, pace: Option<Duration>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the artifact server");
        let addr = listener.local_addr().expect("an address");
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let body = Arc::new(body);
        let (task_ranges, task_open) = (ranges.clone(), open.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (body, ranges, open) = (body.clone(), task_ranges.clone(), task_open.clone());
                open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    serve_artifact(stream, &body, pace, &ranges).await;
                    open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            ranges,
            open,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/artifact.bin", self.addr)
    }

    fn ranges(&self) -> Vec<Option<String>> {
        self.ranges.lock().expect("ranges lock").clone()
    }

    fn open_connections(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn stop(self) {
        self.task.abort();
    }
}

async fn serve_artifact(
    mut stream: tokio::net::TcpStream,
    body: &[u8],
    pace: Option<Duration>,
    ranges: &Mutex<Vec<Option<String>>>,
) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request).into_owned();
    let range = request.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("range")
            .then(|| value.trim().to_owned())
    });
    ranges.lock().expect("ranges lock").push(range.clone());
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok())
        .filter(|start| *start < body.len());
    let head = match start {
        Some(start) => format!(
            "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {start}-{}/{}\r\nconnection: close\r\n\r\n",
            body.len() - start,
            body.len() - 1,
            body.len()
        ),
        None => format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        ),
    };
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for chunk in body[start.unwrap_or(0)..].chunks(16 * 1024) {
        if stream.write_all(chunk).await.is_err() {
            return;
        }
        if let Some(pace) = pace {
            tokio::time::sleep(pace).await;
        }
    }
    let _ = stream.shutdown().await;
}

#[test]
fn scratch_paths_are_utf8() {
    let scratch = Scratch::new();
    assert!(scratch.path("x").to_str().is_some());
    assert!(Path::new(&scratch.path("handlers")).is_dir());
    scratch.remove();
}
