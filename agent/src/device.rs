//! The real device: runs the job documents of [`crate::documents`] on this machine, keeping
//! its progress in the state directory ([`crate::state`]) so a crash or a reboot resumes the
//! job instead of repeating it.
//!
//! Reboots: a step whose handler is `reboot.sh` (AWS-Reboot's) or an install document with
//! `"reboot": true` records the boot id (`/proc/sys/kernel/random/boot_id`) before it runs the
//! handler, then waits to be stopped by the reboot. When the agent starts again and finds the
//! job still IN_PROGRESS with a different boot id, the reboot happened and the job goes on (and
//! reports SUCCEEDED only then); with the same boot id the agent had merely restarted, and the
//! reboot step runs again.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::future::BoxFuture;
use p256::ecdsa::VerifyingKey;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::client::{JobHandler, Outcome, Progress, detail_tail};
use crate::documents::{self, DeviceClientDocument, JobDocument, SeedDownload, Step, StepKind};
use crate::download::{self, DownloadError};
use crate::state::{JobState, StateStore};
use flotilla_api::InstallDocument;

/// How much of each output stream is kept (the report holds the last 1024 characters).
const OUTPUT_KEPT: usize = 4096;

/// Where the device keeps things and whom it trusts.
#[derive(Debug, Clone)]
pub struct DeviceSettings {
    /// Default folder of job handlers (`runHandler` without `path`, install handlers, reboot.sh).
    pub handler_dir: PathBuf,
    pub state_dir: PathBuf,
    /// The key install documents must be signed with; without one they are rejected.
    pub trusted_key: Option<VerifyingKey>,
    /// A file whose content changes at every boot.
    pub boot_id_file: PathBuf,
    /// How long to wait for a reboot the handler started before the job fails.
    pub reboot_wait: Duration,
    /// The software version the device runs before any install document says otherwise.
    pub software_version: Option<String>,
}

impl DeviceSettings {
    pub fn new(handler_dir: PathBuf, state_dir: PathBuf) -> Self {
        Self {
            handler_dir,
            state_dir,
            trusted_key: None,
            boot_id_file: PathBuf::from("/proc/sys/kernel/random/boot_id"),
            reboot_wait: Duration::from_secs(600),
            software_version: None,
        }
    }
}

/// The job handler of a real device.
pub struct Device {
    settings: DeviceSettings,
    store: StateStore,
    http: reqwest::Client,
}

/// How many times one download asks for a fresh URL after its URL was refused.
const URL_RENEWALS: u32 = 3;

/// How a step ended when it did not succeed.
enum StepError {
    Cancelled,
    Failed(String),
}

impl Device {
    pub fn new(settings: DeviceSettings) -> anyhow::Result<Self> {
        let store = StateStore::open(&settings.state_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot use the state directory {}: {e}",
                settings.state_dir.display()
            )
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            settings,
            store,
            http,
        })
    }

    /// Where the version the last install put on the device is kept.
    fn installed_file(&self) -> PathBuf {
        self.settings.state_dir.join("installed-version")
    }

    fn boot_id(&self) -> String {
        std::fs::read_to_string(&self.settings.boot_id_file)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into())
    }

    fn save(&self, state: &JobState) {
        if let Err(error) = self.store.save(state) {
            tracing::warn!(job.id = %state.job_id, %error, "could not save the job state: {error}");
        }
    }

    fn detail(&self, state: &mut JobState, progress: &Progress<'_>, key: &str, value: &str) {
        let value = detail_tail(value);
        if !value.is_empty() {
            progress.set_detail(key, &value);
            state.details.insert(key.to_owned(), value);
        }
    }

    async fn run_document(
        &self,
        document: JobDocument,
        state: &mut JobState,
        progress: &Progress<'_>,
    ) -> Result<(), StepError> {
        match document {
            JobDocument::SeedDownload(seed) => self.run_seed(&seed, state, progress).await,
            JobDocument::DeviceClient(doc) => self.run_steps(&doc, state, progress).await,
            JobDocument::Install(install) => self.run_install(&install, state, progress).await,
        }
    }

    /// The seed's document: download the file to the path it names.
    async fn run_seed(
        &self,
        seed: &SeedDownload,
        state: &mut JobState,
        progress: &Progress<'_>,
    ) -> Result<(), StepError> {
        let partial = self
            .store
            .downloads()
            .join(format!("{}.part", state.job_id));
        self.track(state, &partial);
        self.download(&seed.files.url, &partial, None, progress, |doc| match doc {
            JobDocument::SeedDownload(seed) => Some(seed.files.url),
            _ => None,
        })
        .await?;
        let target = Path::new(&seed.directory);
        move_file(&partial, target).map_err(|e| {
            StepError::Failed(format!(
                "cannot store the file at {}: {e}",
                target.display()
            ))
        })
    }

    /// Flotilla's install document: download, check, install, maybe reboot.
    async fn run_install(
        &self,
        install: &InstallDocument,
        state: &mut JobState,
        progress: &Progress<'_>,
    ) -> Result<(), StepError> {
        let Some(key) = &self.settings.trusted_key else {
            return Err(StepError::Failed(
                "this device has no trusted signing key configured, so it cannot check the artifact".into(),
            ));
        };
        let artifact = &install.artifact;
        let file = self
            .store
            .downloads()
            .join(format!("{}.artifact", state.job_id));
        if state.steps_done == 0 {
            self.track(state, &file);
            self.download(
                &artifact.url,
                &file,
                Some(artifact.size),
                progress,
                |doc| match doc {
                    JobDocument::Install(install) => Some(install.artifact.url),
                    _ => None,
                },
            )
            .await?;
            let _ = progress.report("verifying", 100).await;
            if let Err(reason) = download::verify(
                &file,
                artifact.size,
                &artifact.sha256,
                &artifact.signature,
                key,
            ) {
                // Nothing of a file that failed its checks may stay on the device.
                let _ = std::fs::remove_file(&file);
                return Err(StepError::Failed(reason));
            }
            state.steps_done = 1;
            self.save(state);
        }
        if state.steps_done == 1 {
            let _ = progress.report("installing", 100).await;
            let mut argv = vec![
                self.settings
                    .handler_dir
                    .join(&install.install.handler)
                    .to_string_lossy()
                    .into_owned(),
                file.to_string_lossy().into_owned(),
            ];
            argv.extend(install.install.args.iter().cloned());
            self.run_process("install", &argv, None, None, state, progress)
                .await?;
            let _ = std::fs::remove_file(&file);
            state.steps_done = 2;
            self.save(state);
        }
        if install.reboot && state.steps_done == 2 {
            let argv = vec![
                self.settings
                    .handler_dir
                    .join("reboot.sh")
                    .to_string_lossy()
                    .into_owned(),
            ];
            self.reboot("reboot", &argv, None, state, progress).await?;
            state.steps_done = 3;
            self.save(state);
        }
        if let Some(version) = &install.software_version {
            self.detail(state, progress, "version", version);
            // What the device runs from now on, reported in the inventory shadow.
            if let Err(error) = std::fs::write(self.installed_file(), version) {
                tracing::warn!(%error, "could not record the installed version {version}: {error}");
            }
        }
        Ok(())
    }

    /// The AWS IoT Device Client schema: the steps in order, then the final step.
    async fn run_steps(
        &self,
        doc: &DeviceClientDocument,
        state: &mut JobState,
        progress: &Progress<'_>,
    ) -> Result<(), StepError> {
        let total = doc.steps.len().max(1);
        while state.steps_done < doc.steps.len() && state.failure.is_none() {
            let index = state.steps_done;
            let step = &doc.steps[index];
            let percent = (index * 100 / total) as u8;
            let _ = progress.report(&step.action.name, percent).await;
            match self.run_step(step, state, progress).await {
                Ok(()) => {}
                Err(StepError::Cancelled) => return Err(StepError::Cancelled),
                Err(StepError::Failed(reason)) if step.action.ignores_failure() => {
                    tracing::info!(job.id = %state.job_id, "step {} failed and is ignored: {reason}", step.action.name);
                }
                Err(StepError::Failed(reason)) => {
                    state.failure = Some(format!("step {:?} failed: {reason}", step.action.name));
                }
            }
            state.steps_done = index + 1;
            self.save(state);
        }
        if let Some(final_step) = doc.final_step.as_ref().filter(|_| !state.final_done) {
            let _ = progress.report(&final_step.action.name, 100).await;
            match self.run_step(final_step, state, progress).await {
                Ok(()) => {}
                Err(StepError::Cancelled) => return Err(StepError::Cancelled),
                Err(StepError::Failed(reason)) => {
                    if state.failure.is_none() && !final_step.action.ignores_failure() {
                        state.failure = Some(format!(
                            "final step {:?} failed: {reason}",
                            final_step.action.name
                        ));
                    }
                }
            }
            state.final_done = true;
            self.save(state);
        }
        match &state.failure {
            Some(reason) => Err(StepError::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    async fn run_step(
        &self,
        step: &Step,
        state: &mut JobState,
        progress: &Progress<'_>,
    ) -> Result<(), StepError> {
        let action = &step.action;
        let kind = action.kind().map_err(StepError::Failed)?;
        let (argv, is_reboot) = match kind {
            StepKind::RunHandler {
                handler,
                args,
                path,
            } => {
                let folder = path.map_or_else(|| self.settings.handler_dir.clone(), PathBuf::from);
                let mut argv = vec![folder.join(&handler).to_string_lossy().into_owned()];
                argv.extend(args);
                (argv, handler == "reboot.sh")
            }
            StepKind::RunCommand { argv } => (argv, false),
        };
        if is_reboot {
            return self
                .reboot(&action.name, &argv, action.user(), state, progress)
                .await;
        }
        self.run_process(
            &action.name,
            &argv,
            action.user(),
            action.allowed_stderr_lines(),
            state,
            progress,
        )
        .await
    }

    /// Runs a reboot handler and waits to be stopped by the reboot; on a resume after the
    /// reboot it returns at once.
    async fn reboot(
        &self,
        name: &str,
        argv: &[String],
        user: Option<&str>,
        state: &mut JobState,
        progress: &Progress<'_>,
    ) -> Result<(), StepError> {
        let now = self.boot_id();
        if let Some(before) = state.reboot_from_boot.take() {
            if before != now {
                tracing::info!(job.id = %state.job_id, "the device is back from its reboot");
                self.save(state);
                return Ok(());
            }
            tracing::info!(job.id = %state.job_id, "the reboot did not happen; running the reboot step again");
        }
        state.reboot_from_boot = Some(now);
        self.save(state);
        let _ = progress.report("rebooting", 100).await;
        if let Err(error) = self
            .run_process(name, argv, user, None, state, progress)
            .await
        {
            state.reboot_from_boot = None;
            self.save(state);
            return Err(error);
        }
        let cancel = progress.cancelled();
        tokio::select! {
            () = cancel.cancelled() => Err(StepError::Cancelled),
            () = tokio::time::sleep(self.settings.reboot_wait) => {
                state.reboot_from_boot = None;
                self.save(state);
                Err(StepError::Failed(format!(
                    "the reboot handler succeeded but the device did not reboot within {:?}",
                    self.settings.reboot_wait
                )))
            }
        }
    }

    fn track(&self, state: &mut JobState, file: &Path) {
        if !state.files.iter().any(|f| f == file) {
            state.files.push(file.to_owned());
            self.save(state);
        }
    }

    /// Downloads `url` into `target`. When the URL is refused (a presigned URL that expired),
    /// asks the service for the job document again and continues, from where it stopped,
    /// with the URL `url_of` finds in it: the service presigns a fresh one on every delivery.
    async fn download(
        &self,
        url: &str,
        target: &Path,
        size: Option<u64>,
        progress: &Progress<'_>,
        url_of: impl Fn(JobDocument) -> Option<String>,
    ) -> Result<(), StepError> {
        let mut url = url.to_owned();
        let mut renewals = 0;
        let failure = loop {
            match download::fetch(&self.http, &url, target, size, "downloading", progress).await {
                Ok(()) => return Ok(()),
                Err(DownloadError::Cancelled) => break StepError::Cancelled,
                Err(DownloadError::Failed(reason)) => break StepError::Failed(reason),
                Err(DownloadError::Forbidden(reason)) if renewals < URL_RENEWALS => {
                    renewals += 1;
                    tracing::info!("{reason}; asking for the job document again");
                    let fresh = progress
                        .job_document()
                        .await
                        .map_err(|e| format!("{e:#}"))
                        .and_then(|doc| documents::parse(&doc))
                        .map(&url_of);
                    match fresh {
                        Ok(Some(fresh)) => url = fresh,
                        Ok(None) => {
                            break StepError::Failed(format!(
                                "{reason}; the job document no longer names the file"
                            ));
                        }
                        Err(error) => {
                            break StepError::Failed(format!(
                                "{reason}; asking for a fresh URL failed: {error}"
                            ));
                        }
                    }
                }
                Err(DownloadError::Forbidden(reason)) => {
                    break StepError::Failed(format!(
                        "{reason}, also with the {URL_RENEWALS} fresh URLs asked for"
                    ));
                }
            }
        };
        let _ = std::fs::remove_file(target);
        Err(failure)
    }

    /// Runs `argv` (as `user` through `sudo` when given), keeping the tails of its output for
    /// the report; kills it when the job is cancelled.
    async fn run_process(
        &self,
        name: &str,
        argv: &[String],
        user: Option<&str>,
        allowed_stderr_lines: Option<usize>,
        state: &mut JobState,
        progress: &Progress<'_>,
    ) -> Result<(), StepError> {
        let mut full: Vec<String> = Vec::new();
        if let Some(user) = user {
            full.extend(["sudo", "-n", "-u", user, "--"].map(String::from));
        }
        full.extend(argv.iter().cloned());
        let mut command = tokio::process::Command::new(&full[0]);
        command
            .args(&full[1..])
            .env("FLOTILLA_JOB_ID", &state.job_id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| StepError::Failed(format!("cannot run {}: {e}", full[0])))?;
        let stdout = tokio::spawn(read_tail(child.stdout.take()));
        let stderr = tokio::spawn(read_tail(child.stderr.take()));
        let cancel = progress.cancelled();
        let status = tokio::select! {
            () = cancel.cancelled() => None,
            status = child.wait() => Some(status),
        };
        let Some(status) = status else {
            let _ = child.kill().await;
            return Err(StepError::Cancelled);
        };
        let stdout = stdout.await.unwrap_or_default();
        let stderr = stderr.await.unwrap_or_default();
        self.detail(state, progress, "stdout", &stdout);
        self.detail(state, progress, "stderr", &stderr);
        let status =
            status.map_err(|e| StepError::Failed(format!("waiting for {}: {e}", full[0])))?;
        if !status.success() {
            let code = status
                .code()
                .map_or_else(|| "a signal".to_owned(), |c| format!("exit code {c}"));
            return Err(StepError::Failed(format!(
                "{name}: {} ended with {code}",
                full[0]
            )));
        }
        if let Some(allowed) = allowed_stderr_lines {
            let lines = stderr.lines().filter(|l| !l.trim().is_empty()).count();
            if lines > allowed {
                return Err(StepError::Failed(format!(
                    "{name}: {lines} lines on stderr, {allowed} allowed"
                )));
            }
        }
        Ok(())
    }
}

/// Reads a stream to its end, keeping its last [`OUTPUT_KEPT`] bytes.
async fn read_tail(stream: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut stream) = stream else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(read) = stream.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        kept.extend_from_slice(&buffer[..read]);
        if kept.len() > OUTPUT_KEPT * 2 {
            kept.drain(..kept.len() - OUTPUT_KEPT);
        }
    }
    if kept.len() > OUTPUT_KEPT {
        kept.drain(..kept.len() - OUTPUT_KEPT);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Moves a finished download into place (copying when it crosses file systems).
fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    if std::fs::rename(from, to).is_err() {
        std::fs::copy(from, to)?;
        std::fs::remove_file(from)?;
    }
    Ok(())
}

impl JobHandler for Device {
    fn installed(&self) -> Option<String> {
        std::fs::read_to_string(self.installed_file())
            .ok()
            .map(|version| version.trim().to_owned())
            .filter(|version| !version.is_empty())
            .or_else(|| self.settings.software_version.clone())
    }

    fn run<'a>(
        &'a self,
        job_id: &'a str,
        document: &'a Value,
        progress: Progress<'a>,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let document = match documents::parse(document) {
                Ok(document) => document,
                Err(reason) => return Outcome::Rejected(reason),
            };
            if matches!(document, JobDocument::Install(_)) && self.settings.trusted_key.is_none() {
                return Outcome::Rejected(
                    "install documents need a trusted signing key, and this device has none configured".into(),
                );
            }
            let mut state = match self.store.load() {
                Some(saved) if saved.job_id == job_id => saved,
                Some(stale) => {
                    // A job the service ended while the agent was away: drop what it left.
                    self.store.discard(&stale);
                    JobState::new(job_id)
                }
                None => JobState::new(job_id),
            };
            if let Some(outcome) = state.outcome.clone() {
                for (key, value) in &state.details {
                    progress.set_detail(key, value);
                }
                return outcome;
            }
            self.save(&state);
            let outcome = match self.run_document(document, &mut state, &progress).await {
                Ok(()) => Outcome::Succeeded,
                Err(StepError::Failed(reason)) => Outcome::Failed(reason),
                Err(StepError::Cancelled) => return Outcome::Failed("cancelled".into()),
            };
            state.outcome = Some(outcome.clone());
            self.save(&state);
            outcome
        })
    }

    fn finished(&self, job_id: &str) {
        self.store.clear(job_id);
    }
}
