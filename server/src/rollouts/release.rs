//! What a rollout installs, and the IoT jobs that install it.
//!
//! A release is resolved once, at creation, into the job document every wave sends, so a
//! template edited mid-rollout cannot change what later waves install. A release is a
//! dashboard job template with parameters, or an artifact of the library sent as Flotilla's
//! signed install document; [`resolve`] is the one place a new kind plugs in.

use flotilla_api::{CreateJob, Release, WaveJobOptions};
use serde_json::Value;

use crate::api::ApiError;
use crate::api::job_options::{self, JobOptions, Problems};
use crate::api::jobs::{NewJob, create_job};
use crate::api::templates;
use crate::app::AppState;
use crate::iot::{Iot, IotError};

/// Resolves `release` (fields reported under `field`) into its job document, pinning the
/// template version or the artifact version it used.
pub(crate) async fn resolve(
    state: &AppState,
    field: &str,
    release: &mut Release,
    problems: &mut Problems,
) -> Result<Option<Value>, ApiError> {
    let document = match release.kind.as_str() {
        "template" => template_document(&state.pool, field, release, problems).await?,
        "artifact" => {
            crate::api::artifacts::release_document(state, field, release, problems).await?
        }
        other => {
            problems.add(
                format!("{field}.kind"),
                format!("{other:?} is not a release kind; use \"template\" or \"artifact\""),
            );
            None
        }
    };
    if release.version.is_empty() || release.version.chars().count() > 128 {
        problems.add(format!("{field}.version"), "must be 1-128 characters");
    }
    Ok(document)
}

/// A template release's document: the template rendered with the release's parameters.
async fn template_document(
    pool: &sqlx::PgPool,
    field: &str,
    release: &mut Release,
    problems: &mut Problems,
) -> Result<Option<Value>, ApiError> {
    let Some(template_id) = release.template_id.clone() else {
        problems.add(
            format!("{field}.template_id"),
            "a template release names its template",
        );
        return Ok(None);
    };
    let template = match templates::load(pool, &template_id, release.template_version).await {
        Ok(template) => template,
        Err(ApiError::NotFound(message)) => {
            problems.add(format!("{field}.template_id"), message);
            return Ok(None);
        }
        Err(other) => return Err(other),
    };
    release.template_version = Some(template.version);
    let mut own = Problems::default();
    let document = templates::render(&template, &release.parameters, &mut own);
    for problem in own.0 {
        problems.add(format!("{field}.{}", problem.field), problem.message);
    }
    Ok(document)
}

/// `wave`'s options over the rollout's, option by option.
pub fn merged(rollout: &WaveJobOptions, wave: Option<&WaveJobOptions>) -> WaveJobOptions {
    let Some(wave) = wave else {
        return rollout.clone();
    };
    WaveJobOptions {
        rollout: wave.rollout.clone().or_else(|| rollout.rollout.clone()),
        abort: wave.abort.clone().or_else(|| rollout.abort.clone()),
        timeout: wave.timeout.clone().or_else(|| rollout.timeout.clone()),
        retry: wave.retry.clone().or_else(|| rollout.retry.clone()),
    }
}

/// Checks `options` with the jobs API's rules (messages under `field`) and returns their SDK
/// form.
pub(crate) fn job_options(
    options: &WaveJobOptions,
    field: &str,
    problems: &mut Problems,
) -> JobOptions {
    let request = CreateJob {
        job_id: None,
        description: None,
        things: Vec::new(),
        thing_groups: Vec::new(),
        document: None,
        template_id: None,
        template_version: None,
        parameters: Default::default(),
        target_selection: None,
        rollout: options.rollout.clone(),
        abort: options.abort.clone(),
        timeout: options.timeout.clone(),
        retry: options.retry.clone(),
        scheduling: None,
        presigned_url: None,
    };
    let mut own = Problems::default();
    let built = job_options::validate(&request, chrono::Utc::now(), &mut own);
    for problem in own.0 {
        problems.add(format!("{field}.{}", problem.field), problem.message);
    }
    built
}

/// Creates job `job_id` sending `document` to `things`. `Ok(false)` when a job of that id
/// exists already: ids are derived from rollout and wave, so it is this one, created by an
/// earlier attempt that did not live to record it. `presigned_url_role` is the IAM role AWS IoT
/// assumes to presign an artifact's URL (`--presigned-url-role-arn`).
pub async fn create(
    iot: &Iot,
    job_id: &str,
    description: String,
    things: &[String],
    document: &Value,
    options: &WaveJobOptions,
    presigned_url_role: Option<&str>,
) -> Result<bool, IotError> {
    let mut targets = Vec::with_capacity(things.len());
    for thing in things {
        targets.push(iot.thing_arn(thing).await?);
    }
    let mut ignored = Problems::default();
    let mut options = job_options(options, "job_options", &mut ignored);
    // Its size was checked when the rollout was created.
    let document = document.to_string();
    if let Some(role) = presigned_url_role
        && document.contains("${aws:iot:s3-presigned-url:")
    {
        options.presigned_url = Some(
            aws_sdk_iot::types::PresignedUrlConfig::builder()
                .role_arn(role)
                .build(),
        );
    }
    match create_job(
        iot,
        NewJob {
            job_id: job_id.to_owned(),
            description: Some(description),
            targets,
            document,
            options,
        },
    )
    .await
    {
        Ok(()) => Ok(true),
        Err(IotError::AlreadyExists(_)) => Ok(false),
        Err(other) => Err(other),
    }
}

/// The thing names among a job's target ARNs.
pub fn thing_names(targets: &[String]) -> Vec<String> {
    let mut names: Vec<String> = targets
        .iter()
        .filter_map(|arn| arn.rsplit_once(":thing/").map(|(_, name)| name.to_owned()))
        .collect();
    names.sort();
    names
}
