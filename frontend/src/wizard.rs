//! The create wizard: what to install (a template release or an artifact) → targets, with a
//! live count of the devices they reach → waves → rate, abort, timeout, retry, gates and
//! schedule, with defaults and inline validation → review of the exact request and job
//! document → start.
//!
//! The form is one [`Draft`] of plain strings; [`problems`] checks it step by step with the
//! server's own rules, and [`to_rollout`] turns it into the API request, so all of it is tested
//! without a browser. Both kinds of release go out as a staged rollout.

use std::collections::BTreeMap;

use flotilla_api::artifacts::{Artifact, ArtifactList};
use flotilla_api::install::InstallStep;
use flotilla_api::{
    AbortCriterion, AbortOptions, CreateRollout, Gates, Release, RenderedTemplate, RetryCriterion,
    RetryOptions, RolloutDetail, RolloutOptions, RolloutPreview, RolloutTargets, Schedule,
    Template, TemplateList, ThingGroupList, TimeoutOptions, WaveJobOptions, WaveSpec,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;

use crate::api::{self, ApiError, encode};
use crate::perm::Act;
use crate::route::Route;
use crate::ui::{error_box, loaded, may, notify, t, tr};

/// The wizard's steps, in order.
pub const STEPS: [&str; 5] = ["Release", "Targets", "Waves", "Options", "Review"];

/// What the rollout installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    #[default]
    Template,
    Artifact,
}

/// One wave as typed: a count or a percentage of the devices not reached yet.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveDraft {
    pub percent: bool,
    pub value: String,
}

/// The whole form, as typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub source: Source,
    pub template_id: String,
    /// Parameter values as typed; `int_params` are sent as numbers.
    pub params: BTreeMap<String, String>,
    pub int_params: Vec<String>,
    pub version: String,
    pub artifact_id: String,
    pub handler: String,
    /// The artifact a rollback reinstalls (artifact releases; empty: none).
    pub previous_artifact_id: String,
    pub rollout_id: String,
    pub description: String,
    pub things: String,
    pub groups: Vec<String>,
    pub attributes: String,
    pub canary: String,
    pub waves: Vec<WaveDraft>,
    pub rate: String,
    pub abort_percent: String,
    pub abort_min: String,
    pub timeout: String,
    pub retries: String,
    pub success: String,
    pub max_failure: String,
    pub soak: String,
    pub approval: bool,
    pub policy: String,
    pub time_zone: String,
    pub not_before: String,
}

impl Default for Draft {
    fn default() -> Self {
        Self {
            source: Source::Template,
            template_id: String::new(),
            params: BTreeMap::new(),
            int_params: Vec::new(),
            version: String::new(),
            artifact_id: String::new(),
            handler: "install.sh".into(),
            previous_artifact_id: String::new(),
            rollout_id: String::new(),
            description: String::new(),
            things: String::new(),
            groups: Vec::new(),
            attributes: String::new(),
            canary: String::new(),
            waves: vec![
                WaveDraft {
                    percent: true,
                    value: "10".into(),
                },
                WaveDraft {
                    percent: true,
                    value: "100".into(),
                },
            ],
            rate: "100".into(),
            abort_percent: String::new(),
            abort_min: "10".into(),
            timeout: "60".into(),
            retries: "0".into(),
            success: "100".into(),
            max_failure: "100".into(),
            soak: "0".into(),
            approval: false,
            policy: "pause".into(),
            time_zone: "UTC".into(),
            not_before: String::new(),
        }
    }
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: &'static str,
    /// The field is empty but required: shown only after the person tried to go on.
    pub missing: bool,
}

fn problem(field: impl Into<String>, message: &'static str) -> Problem {
    Problem {
        field: field.into(),
        message,
        missing: false,
    }
}

fn missing(field: &str, message: &'static str) -> Problem {
    Problem {
        field: field.into(),
        message,
        missing: true,
    }
}

/// Names separated by commas, spaces or new lines.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `key=value` lines (or comma-separated pairs).
pub fn parse_attributes(text: &str) -> Result<BTreeMap<String, String>, ()> {
    let mut out = BTreeMap::new();
    for pair in text
        .split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (k, v) = pair.split_once('=').ok_or(())?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(());
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

fn valid_id(id: &str, max: usize) -> bool {
    (1..=max).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An optional whole number within `range`: `Ok(None)` when empty.
fn int_in(text: &str, range: std::ops::RangeInclusive<i64>) -> Result<Option<i64>, ()> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<i64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(()),
    }
}

fn percent_in(text: &str, zero_ok: bool) -> Result<Option<f64>, ()> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<f64>() {
        Ok(p) if p <= 100.0 && (p > 0.0 || zero_ok && p == 0.0) => Ok(Some(p)),
        _ => Err(()),
    }
}

/// `YYYY-MM-DDTHH:MM` (what a `datetime-local` input gives), optionally with seconds.
fn local_time(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    (b.len() == 16 || b.len() == 19)
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && (b.len() == 16 || b[16] == b':' && digits(17..19))
}

/// The problems of step `step` (0-based, see [`STEPS`]) of `d`.
pub fn problems(d: &Draft, step: usize) -> Vec<Problem> {
    let mut out = Vec::new();
    match step {
        0 => {
            if d.rollout_id.is_empty() {
                out.push(missing("rollout_id", "Enter a name."));
            } else if !valid_id(&d.rollout_id, 40) {
                out.push(problem(
                    "rollout_id",
                    "Use letters, digits, '-' and '_' (at most 40).",
                ));
            }
            match d.source {
                Source::Template => {
                    if d.template_id.is_empty() {
                        out.push(missing("template_id", "Choose a template."));
                    }
                    if d.version.trim().is_empty() {
                        out.push(missing(
                            "version",
                            "Enter the version this release installs.",
                        ));
                    }
                    for name in &d.int_params {
                        let value = d.params.get(name).map(String::as_str).unwrap_or_default();
                        if !value.trim().is_empty() && value.trim().parse::<i64>().is_err() {
                            out.push(problem(format!("param.{name}"), "Enter a whole number."));
                        }
                    }
                }
                Source::Artifact => {
                    if d.artifact_id.is_empty() {
                        out.push(missing("artifact_id", "Choose an artifact."));
                    }
                    if d.handler.trim().is_empty() || d.handler.contains(['/', '\\']) {
                        out.push(problem(
                            "handler",
                            "Enter a handler file name without folders.",
                        ));
                    }
                }
            }
        }
        1 => {
            if split_list(&d.things).is_empty() && d.groups.is_empty() {
                out.push(missing("things", "Choose at least one device or group."));
            }
            if parse_attributes(&d.attributes).is_err() {
                out.push(problem("attributes", "Write one key=value per line."));
            }
        }
        2 => {
            if !(1..=20).contains(&d.waves.len()) {
                out.push(problem("waves", "Give 1 to 20 waves."));
            }
            for (i, wave) in d.waves.iter().enumerate() {
                let ok = if wave.percent {
                    matches!(percent_in(&wave.value, false), Ok(Some(_)))
                } else {
                    matches!(int_in(&wave.value, 1..=i64::MAX), Ok(Some(_)))
                };
                if !ok {
                    out.push(problem(
                        format!("waves[{i}]"),
                        if wave.percent {
                            "Enter a percentage above 0 and at most 100."
                        } else {
                            "Enter a whole number of at least 1."
                        },
                    ));
                }
            }
        }
        3 => {
            if int_in(&d.rate, 1..=1000).is_err() {
                out.push(problem("rate", "Enter a whole number from 1 to 1000."));
            }
            if percent_in(&d.abort_percent, false).is_err() {
                out.push(problem(
                    "abort_percent",
                    "Enter a percentage above 0 and at most 100.",
                ));
            }
            if int_in(&d.abort_min, 1..=i64::from(i32::MAX)).is_err() {
                out.push(problem("abort_min", "Enter a whole number of at least 1."));
            }
            if int_in(&d.timeout, 1..=10080).is_err() {
                out.push(problem("timeout", "Enter minutes from 1 to 10080."));
            }
            if int_in(&d.retries, 0..=10).is_err() {
                out.push(problem("retries", "Enter a whole number from 0 to 10."));
            }
            if !matches!(percent_in(&d.success, true), Ok(Some(_))) {
                out.push(problem("success", "Enter a percentage from 0 to 100."));
            }
            if !matches!(percent_in(&d.max_failure, true), Ok(Some(_))) {
                out.push(problem("max_failure", "Enter a percentage from 0 to 100."));
            }
            if int_in(&d.soak, 0..=10080).is_err() {
                out.push(problem("soak", "Enter minutes from 0 to 10080."));
            }
            if !d.not_before.is_empty() && !local_time(&d.not_before) {
                out.push(problem("not_before", "Enter a date and time."));
            }
            if !d.not_before.is_empty() && d.time_zone.trim().is_empty() {
                out.push(missing(
                    "time_zone",
                    "Enter a time zone such as Europe/Madrid.",
                ));
            }
            if d.policy == "rollback"
                && (d.source != Source::Artifact || d.previous_artifact_id.is_empty())
            {
                out.push(problem(
                    "policy",
                    "Choose the artifact to roll back to in the release step.",
                ));
            }
        }
        _ => {}
    }
    out
}

/// Every step's problems.
pub fn all_problems(d: &Draft) -> Vec<Problem> {
    (0..STEPS.len())
        .flat_map(|step| problems(d, step))
        .collect()
}

fn parameters(d: &Draft) -> BTreeMap<String, Value> {
    d.params
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| {
            let value = match (d.int_params.contains(k), v.trim().parse::<i64>()) {
                (true, Ok(n)) => Value::from(n),
                _ => Value::from(v.clone()),
            };
            (k.clone(), value)
        })
        .collect()
}

fn job_options(d: &Draft) -> WaveJobOptions {
    let number = |text: &str| text.trim().parse::<i64>().ok();
    WaveJobOptions {
        rollout: number(&d.rate).map(|n| RolloutOptions {
            maximum_per_minute: Some(n as i32),
            exponential_rate: None,
        }),
        abort: d
            .abort_percent
            .trim()
            .parse::<f64>()
            .ok()
            .map(|p| AbortOptions {
                criteria: vec![AbortCriterion {
                    failure_type: "ALL".into(),
                    action: "CANCEL".into(),
                    threshold_percentage: p,
                    min_number_of_executed_things: number(&d.abort_min).unwrap_or(1) as i32,
                }],
            }),
        timeout: number(&d.timeout).map(|m| TimeoutOptions {
            in_progress_timeout_in_minutes: m,
        }),
        retry: number(&d.retries).filter(|n| *n > 0).map(|n| RetryOptions {
            criteria: vec![RetryCriterion {
                failure_type: "ALL".into(),
                number_of_retries: n as i32,
            }],
        }),
    }
}

/// An artifact release: `artifact_id` installed by the draft's handler, at the artifact's own
/// version.
fn artifact_release(d: &Draft, artifact_id: &str) -> Release {
    Release {
        kind: "artifact".into(),
        template_id: None,
        template_version: None,
        parameters: BTreeMap::new(),
        artifact_id: Some(artifact_id.to_owned()),
        install: Some(InstallStep {
            handler: d.handler.trim().to_owned(),
            args: Vec::new(),
        }),
        reboot: false,
        version: String::new(),
    }
}

/// The `POST /api/v1/rollouts` body.
pub fn to_rollout(d: &Draft) -> CreateRollout {
    let number = |text: &str, default: f64| text.trim().parse::<f64>().unwrap_or(default);
    let (release, previous_release) = match d.source {
        Source::Template => (
            Release {
                kind: "template".into(),
                template_id: Some(d.template_id.clone()),
                template_version: None,
                parameters: parameters(d),
                artifact_id: None,
                install: None,
                reboot: false,
                version: d.version.trim().to_owned(),
            },
            None,
        ),
        Source::Artifact => (
            artifact_release(d, &d.artifact_id),
            (!d.previous_artifact_id.is_empty())
                .then(|| artifact_release(d, &d.previous_artifact_id)),
        ),
    };
    CreateRollout {
        rollout_id: d.rollout_id.clone(),
        description: (!d.description.trim().is_empty()).then(|| d.description.trim().to_owned()),
        release,
        previous_release,
        targets: RolloutTargets {
            things: split_list(&d.things),
            thing_groups: d.groups.clone(),
            attributes: parse_attributes(&d.attributes).unwrap_or_default(),
        },
        canary_things: split_list(&d.canary),
        waves: d
            .waves
            .iter()
            .map(|w| WaveSpec {
                count: (!w.percent).then(|| w.value.trim().parse().unwrap_or(1)),
                percent: w.percent.then(|| number(&w.value, 100.0)),
                job_options: None,
                gates: None,
            })
            .collect(),
        job_options: job_options(d),
        gates: Gates {
            success_threshold_percent: number(&d.success, 100.0),
            max_failure_percent: number(&d.max_failure, 100.0),
            soak_minutes: d.soak.trim().parse().unwrap_or(0),
            health_check: None,
            approval: d.approval,
        },
        failure_policy: d.policy.clone(),
        schedule: (!d.not_before.is_empty()).then(|| Schedule {
            time_zone: d.time_zone.trim().to_owned(),
            not_before: Some(d.not_before.clone()),
            windows: Vec::new(),
        }),
        continuous: false,
        webhooks: Vec::new(),
    }
}

/// The field's message to show now.
fn message_for(problems: &[Problem], field: &str, attempted: bool) -> Option<&'static str> {
    problems
        .iter()
        .find(|p| p.field == field && (attempted || !p.missing))
        .map(|p| p.message)
}

#[component]
pub fn Wizard() -> impl IntoView {
    if !may(Act::Deploy) {
        return view! { <p class="state">{t("Your role may not start rollouts.")}</p> }.into_any();
    }
    let draft = RwSignal::new(Draft::default());
    let step = RwSignal::new(0usize);
    let attempted = RwSignal::new(false);
    let server_error = RwSignal::new(None::<ApiError>);
    let templates = LocalResource::new(|| api::get::<TemplateList>("/api/v1/templates"));
    let artifacts = LocalResource::new(|| api::get::<ArtifactList>("/api/v1/artifacts"));
    let groups =
        LocalResource::new(|| api::get::<ThingGroupList>("/api/v1/thing-groups?limit=250"));

    let show = move |field: &'static str| {
        move || {
            let problems = draft.with(|d| problems(d, step.get()));
            message_for(&problems, field, attempted.get()).map(|m| {
                view! { <span class="field-error" id=format!("err-{field}")>{t(m)}</span> }
            })
        }
    };
    let next = move |_| {
        if draft.with(|d| problems(d, step.get_untracked())).is_empty() {
            attempted.set(false);
            step.update(|s| *s += 1);
        } else {
            attempted.set(true);
        }
    };
    let start = move |_| {
        let d = draft.get_untracked();
        server_error.set(None);
        spawn_local(async move {
            let target = api::post::<_, RolloutDetail>("/api/v1/rollouts", &to_rollout(&d))
                .await
                .map(|r| Route::Rollout(r.rollout.rollout_id));
            match target {
                Ok(route) => {
                    let _ = window().location().set_hash(&route.href());
                    notify(true, tr("Started."));
                }
                Err(e) => server_error.set(Some(e)),
            }
        });
    };

    // The devices the targets reach now, and how the waves split them: the server's preview.
    let preview = LocalResource::new(move || {
        let d = draft.get();
        async move {
            if !problems(&d, 0).is_empty() {
                return Ok(None);
            }
            api::post::<_, RolloutPreview>("/api/v1/rollouts/preview", &to_rollout(&d))
                .await
                .map(Some)
        }
    });

    let text = move |label: &'static str,
                     field: &'static str,
                     get: fn(&Draft) -> &String,
                     set: fn(&mut Draft, String)| {
        view! {
            <label class="field">
                <span>{t(label)}</span>
                <input
                    name=field
                    prop:value=move || draft.with(|d| get(d).clone())
                    on:input=move |ev| draft.update(|d| set(d, event_target_value(&ev)))
                    aria-invalid=move || show(field)().is_some().to_string()
                    aria-describedby=format!("err-{field}")
                />
                {show(field)}
            </label>
        }
    };

    let step_release = move || {
        view! {
            <fieldset class="choice">
                <legend>{t("What to install")}</legend>
                <label class="check">
                    <input type="radio" name="source" value="template"
                        prop:checked=move || draft.with(|d| d.source == Source::Template)
                        on:change=move |_| draft.update(|d| d.source = Source::Template) />
                    {t("A job template")}
                </label>
                <label class="check">
                    <input type="radio" name="source" value="artifact"
                        prop:checked=move || draft.with(|d| d.source == Source::Artifact)
                        on:change=move |_| draft.update(|d| d.source = Source::Artifact) />
                    {t("An artifact from the library")}
                </label>
            </fieldset>
            {text("Name", "rollout_id", |d| &d.rollout_id, |d, v| d.rollout_id = v)}
            {text("Description", "description", |d| &d.description, |d, v| d.description = v)}
            {move || match draft.with(|d| d.source) {
                Source::Template => view! {
                    {loaded(templates, move |list: TemplateList| {
                        let all = StoredValue::new(list.templates.clone());
                        view! {
                            <label class="field">
                                <span>{t("Template")}</span>
                                <select name="template_id"
                                    prop:value=move || draft.with(|d| d.template_id.clone())
                                    on:change=move |ev| {
                                        let id = event_target_value(&ev);
                                        let template = all.with_value(|all| all.iter().find(|t| t.template_id == id).cloned());
                                        draft.update(|d| choose_template(d, id, template.as_ref()));
                                    }>
                                    <option value="">{t("Choose…")}</option>
                                    {list.templates.into_iter().map(|tpl| view! {
                                        <option value=tpl.template_id.clone()>{tpl.template_id.clone()}</option>
                                    }).collect_view()}
                                </select>
                                {show("template_id")}
                            </label>
                        }
                    })}
                    {move || {
                        let names: Vec<String> = draft.with(|d| d.params.keys().cloned().collect());
                        names.into_iter().map(|name| {
                            let key = name.clone();
                            let key2 = name.clone();
                            view! {
                                <label class="field">
                                    <span>{t("Parameter")} " " <code>{name.clone()}</code></span>
                                    <input name=format!("param.{name}")
                                        prop:value=move || draft.with(|d| d.params.get(&key).cloned().unwrap_or_default())
                                        on:input=move |ev| { let v = event_target_value(&ev); draft.update(|d| { d.params.insert(key2.clone(), v); }) } />
                                </label>
                            }
                        }).collect_view()
                    }}
                    {text("Version it installs", "version", |d| &d.version, |d, v| d.version = v)}
                }.into_any(),
                Source::Artifact => view! {
                    {loaded(artifacts, move |list: ArtifactList| {
                        let options = move |list: &[Artifact]| list.iter().map(|a| view! {
                            <option value=a.id.clone()>{format!("{} {}", a.name, a.version)}</option>
                        }).collect_view();
                        view! {
                            <label class="field">
                                <span>{t("Artifact")}</span>
                                <select name="artifact_id"
                                    prop:value=move || draft.with(|d| d.artifact_id.clone())
                                    on:change=move |ev| draft.update(|d| d.artifact_id = event_target_value(&ev))>
                                    <option value="">{t("Choose…")}</option>
                                    {options(&list.artifacts)}
                                </select>
                                {show("artifact_id")}
                            </label>
                            <label class="field">
                                <span>{t("Roll back to (optional)")}</span>
                                <select name="previous_artifact_id"
                                    prop:value=move || draft.with(|d| d.previous_artifact_id.clone())
                                    on:change=move |ev| draft.update(|d| d.previous_artifact_id = event_target_value(&ev))>
                                    <option value="">{t("None")}</option>
                                    {options(&list.artifacts)}
                                </select>
                            </label>
                        }
                    })}
                    {text("Install handler", "handler", |d| &d.handler, |d, v| d.handler = v)}
                }.into_any(),
            }}
        }
    };

    let step_targets = move || {
        view! {
            <label class="field">
                <span>{t("Devices (thing names, separated by commas or spaces)")}</span>
                <textarea name="things" rows="2"
                    prop:value=move || draft.with(|d| d.things.clone())
                    on:input=move |ev| draft.update(|d| d.things = event_target_value(&ev))></textarea>
                {show("things")}
            </label>
            <fieldset class="choice">
                <legend>{t("Thing groups")}</legend>
                {loaded(groups, move |list: ThingGroupList| {
                    if list.groups.is_empty() {
                        return view! { <p class="muted">{t("No thing groups.")}</p> }.into_any();
                    }
                    list.groups.into_iter().map(|g| {
                        let name = StoredValue::new(g.name.clone());
                        view! {
                            <label class="check">
                                <input type="checkbox" name="group" value=g.name.clone()
                                    prop:checked=move || draft.with(|d| d.groups.contains(&name.get_value()))
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        draft.update(|d| {
                                            d.groups.retain(|x| *x != name.get_value());
                                            if on { d.groups.push(name.get_value()); }
                                        })
                                    } />
                                {g.name.clone()} <span class="muted">" (" {g.member_count} ")"</span>
                            </label>
                        }
                    }).collect_view().into_any()
                })}
            </fieldset>
            <label class="field">
                <span>{t("Only devices with these attributes (key=value per line)")}</span>
                <textarea name="attributes" rows="2"
                    prop:value=move || draft.with(|d| d.attributes.clone())
                    on:input=move |ev| draft.update(|d| d.attributes = event_target_value(&ev))></textarea>
                {show("attributes")}
            </label>
            {text("Canary devices (go first)", "canary", |d| &d.canary, |d, v| d.canary = v)}
            <PreviewCount preview />
        }
    };

    let step_waves = move || {
        view! {
            <ol class="waves-edit">
                {move || (0..draft.with(|d| d.waves.len())).map(|i| {
                    let shown = format!("waves[{i}]");
                    view! {
                        <li>
                            <span>{t("Wave")} " " {i + 1}</span>
                            <label class="sr-only" for=format!("wave-kind-{i}")>{t("Size by")}</label>
                            <select id=format!("wave-kind-{i}") name=format!("wave-kind-{i}")
                                prop:value=move || if draft.with(|d| d.waves.get(i).is_some_and(|w| w.percent)) { "percent" } else { "count" }
                                on:change=move |ev| { let p = event_target_value(&ev) == "percent"; draft.update(|d| if let Some(w) = d.waves.get_mut(i) { w.percent = p; }) }>
                                <option value="percent">{t("percent of the rest")}</option>
                                <option value="count">{t("devices")}</option>
                            </select>
                            <label class="sr-only" for=format!("wave-{i}")>{t("Size")}</label>
                            <input id=format!("wave-{i}") name=format!("wave-{i}") inputmode="decimal"
                                prop:value=move || draft.with(|d| d.waves.get(i).map(|w| w.value.clone()).unwrap_or_default())
                                on:input=move |ev| { let v = event_target_value(&ev); draft.update(|d| if let Some(w) = d.waves.get_mut(i) { w.value = v; }) } />
                            <button type="button" class="button" aria-label=format!("{} {}", tr("Remove wave"), i + 1)
                                on:click=move |_| draft.update(|d| { if i < d.waves.len() { d.waves.remove(i); } })>
                                {t("Remove")}
                            </button>
                            {move || {
                                let problems = draft.with(|d| problems(d, 2));
                                message_for(&problems, &shown, true).map(|m| view! { <span class="field-error">{t(m)}</span> })
                            }}
                        </li>
                    }
                }).collect_view()}
            </ol>
            <button type="button" class="button" data-testid="add-wave"
                on:click=move |_| draft.update(|d| d.waves.push(WaveDraft { percent: true, value: "100".into() }))>
                {t("Add wave")}
            </button>
            {show("waves")}
            <PreviewCount preview />
        }
    };

    let step_options = move || {
        view! {
            <div class="grid">
                {text("Devices notified per minute (1-1000)", "rate", |d| &d.rate, |d, v| d.rate = v)}
                {text("Timeout in progress, minutes (1-10080)", "timeout", |d| &d.timeout, |d, v| d.timeout = v)}
                {text("Retries of failed devices (0-10)", "retries", |d| &d.retries, |d, v| d.retries = v)}
                {text("Abort when this % of devices failed (empty: never)", "abort_percent", |d| &d.abort_percent, |d, v| d.abort_percent = v)}
                {text("…after at least this many finished", "abort_min", |d| &d.abort_min, |d, v| d.abort_min = v)}
            </div>
            <h3>{t("Gates between waves")}</h3>
                <div class="grid">
                    {text("Success needed, %", "success", |d| &d.success, |d, v| d.success = v)}
                    {text("Failures allowed, %", "max_failure", |d| &d.max_failure, |d, v| d.max_failure = v)}
                    {text("Soak time, minutes", "soak", |d| &d.soak, |d, v| d.soak = v)}
                    <label class="check">
                        <input type="checkbox" name="approval" prop:checked=move || draft.with(|d| d.approval)
                            on:change=move |ev| draft.update(|d| d.approval = event_target_checked(&ev)) />
                        {t("An operator approves each wave")}
                    </label>
                    <label class="field">
                        <span>{t("When a gate fails")}</span>
                        <select name="policy" prop:value=move || draft.with(|d| d.policy.clone())
                            on:change=move |ev| draft.update(|d| d.policy = event_target_value(&ev))>
                            <option value="pause">{t("Pause")}</option>
                            <option value="cancel">{t("Cancel")}</option>
                            <option value="rollback">{t("Roll back")}</option>
                        </select>
                        {show("policy")}
                    </label>
                </div>
                <h3>{t("Schedule")}</h3>
                <div class="grid">
                    <label class="field">
                        <span>{t("Not before (empty: now)")}</span>
                        <input type="datetime-local" name="not_before" prop:value=move || draft.with(|d| d.not_before.clone())
                            on:input=move |ev| draft.update(|d| d.not_before = event_target_value(&ev)) />
                        {show("not_before")}
                    </label>
                    {text("Time zone", "time_zone", |d| &d.time_zone, |d, v| d.time_zone = v)}
                </div>
        }
    };

    let rendered = LocalResource::new(move || {
        let d = draft.get();
        let on_review = step.get() == 4;
        async move {
            if !on_review || d.source != Source::Template || d.template_id.is_empty() {
                return Ok(None);
            }
            api::post::<_, RenderedTemplate>(
                &format!("/api/v1/templates/{}/preview", encode(&d.template_id)),
                &serde_json::json!({ "parameters": parameters(&d) }),
            )
            .await
            .map(Some)
        }
    });

    let step_review = move || {
        let d = draft.get();
        let body = serde_json::to_string_pretty(&to_rollout(&d));
        view! {
            <h3>{t("Job document devices receive")}</h3>
            {move || match d.source {
                Source::Artifact => view! { <p class="muted">{t("The server writes the install document: the artifact's presigned URL, SHA-256 and signature, and the handler.")}</p> }.into_any(),
                Source::Template => loaded(rendered, |doc: Option<RenderedTemplate>| view! {
                    <pre class="code" tabindex="0" data-testid="job-document">{doc.map(|r| serde_json::to_string_pretty(&r.document).unwrap_or_default()).unwrap_or_default()}</pre>
                }).into_any(),
            }}
            <h3>{t("Request")} " " <code>"POST /api/v1/rollouts"</code></h3>
            <pre class="code" tabindex="0" data-testid="request-body">{body.unwrap_or_default()}</pre>
            {move || server_error.get().map(|e| error_box(&e))}
        }
    };

    view! {
        <h1>{t("New rollout")}</h1>
        <ol class="steps" aria-label=t("Steps")>
            {STEPS.iter().enumerate().map(|(i, name)| view! {
                <li aria-current=move || (step.get() == i).then_some("step") class:done={move || step.get() > i}>
                    {i + 1} ". " {t(name)}
                </li>
            }).collect_view()}
        </ol>
        <form class="card wizard" on:submit=|ev| ev.prevent_default() novalidate>
            <div class="card-body">
                <h2>{move || t(STEPS[step.get()])()}</h2>
                {move || match step.get() {
                    0 => step_release().into_any(),
                    1 => step_targets().into_any(),
                    2 => step_waves().into_any(),
                    3 => step_options().into_any(),
                    _ => step_review().into_any(),
                }}
            </div>
            <div class="actions card-footer">
                <button type="button" class="button" disabled=move || step.get() == 0
                    on:click=move |_| { attempted.set(false); step.update(|s| *s = s.saturating_sub(1)) }>
                    {t("Back")}
                </button>
                {move || if step.get() + 1 < STEPS.len() {
                    view! { <button type="button" class="button primary" data-testid="next" on:click=next>{t("Next")}</button> }.into_any()
                } else {
                    view! {
                        <button type="button" class="button primary" data-testid="start"
                            disabled=move || draft.with(|d| !all_problems(d).is_empty())
                            on:click=start>{t("Start")}</button>
                    }.into_any()
                }}
            </div>
        </form>
    }
    .into_any()
}

/// Picks a template and fills its parameters' defaults.
fn choose_template(d: &mut Draft, id: String, template: Option<&Template>) {
    d.template_id = id;
    d.params.clear();
    d.int_params.clear();
    if let Some(template) = template {
        for p in &template.parameters {
            let default = match &p.default {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            d.params.insert(p.name.clone(), default);
            if p.kind == "int" {
                d.int_params.push(p.name.clone());
            }
        }
        if d.version.is_empty()
            && let Some(Value::String(v)) = template
                .parameters
                .iter()
                .find(|p| p.name == "version")
                .and_then(|p| p.default.clone())
        {
            d.version = v;
        }
    }
}

/// How many devices the targets reach now, and how the waves split them.
#[component]
fn PreviewCount(preview: LocalResource<api::ApiResult<Option<RolloutPreview>>>) -> impl IntoView {
    view! {
        <div class="preview" role="status" aria-live="polite" data-testid="preview">
            {move || match preview.get() {
                Some(Ok(Some(p))) => view! {
                    <p>
                        <strong data-testid="preview-total">{p.total}</strong> " " {t("devices match now")}
                        {p.waves.iter().map(|w| format!(" · {} {}: {}", tr("wave"), w.number, w.things.len())).collect::<String>()}
                        {(!p.unassigned.is_empty()).then(|| format!(" · {}: {}", tr("left out"), p.unassigned.len()))}
                    </p>
                }.into_any(),
                Some(Err(e)) => view! { <p class="field-error">{e.to_string()}</p> }.into_any(),
                _ => view! { <p class="muted">{t("Complete the release step to see which devices match.")}</p> }.into_any(),
            }}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Draft {
        Draft {
            template_id: "fw".into(),
            version: "2.0".into(),
            rollout_id: "fw-2".into(),
            things: "sim-0001, sim-0002\nsim-0003".into(),
            ..Draft::default()
        }
    }

    fn fields(d: &Draft, step: usize) -> Vec<String> {
        problems(d, step).into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn the_defaults_need_only_a_release_and_targets() {
        let d = Draft::default();
        assert_eq!(fields(&d, 0), ["rollout_id", "template_id", "version"]);
        assert!(problems(&d, 0).iter().all(|p| p.missing));
        assert_eq!(fields(&d, 1), ["things"]);
        assert!(fields(&d, 2).is_empty());
        assert!(fields(&d, 3).is_empty());
        assert!(all_problems(&valid()).is_empty());
    }

    #[test]
    fn bad_values_get_their_field_message() {
        let mut d = valid();
        d.rollout_id = "no spaces".into();
        d.waves = vec![
            WaveDraft {
                percent: true,
                value: "0".into(),
            },
            WaveDraft {
                percent: false,
                value: "1.5".into(),
            },
        ];
        d.rate = "5000".into();
        d.timeout = "0".into();
        d.retries = "11".into();
        d.abort_percent = "150".into();
        d.attributes = "site".into();
        d.not_before = "tomorrow".into();
        assert_eq!(fields(&d, 0), ["rollout_id"]);
        assert_eq!(fields(&d, 1), ["attributes"]);
        assert_eq!(fields(&d, 2), ["waves[0]", "waves[1]"]);
        assert_eq!(
            fields(&d, 3),
            ["rate", "abort_percent", "timeout", "retries", "not_before"]
        );
        assert!(problems(&d, 3).iter().all(|p| !p.missing));
        d.waves.clear();
        assert_eq!(fields(&d, 2), ["waves"]);
    }

    #[test]
    fn an_artifact_release_goes_out_in_waves_and_may_roll_back() {
        let mut d = valid();
        d.source = Source::Artifact;
        assert_eq!(fields(&d, 0), ["artifact_id"]);
        d.artifact_id = "a2".into();
        d.handler = "../evil.sh".into();
        assert_eq!(fields(&d, 0), ["handler"]);
        d.handler = "install.sh".into();
        d.policy = "rollback".into();
        assert_eq!(fields(&d, 3), ["policy"]);
        d.previous_artifact_id = "a1".into();
        assert!(all_problems(&d).is_empty());
        let r = to_rollout(&d);
        assert_eq!(r.rollout_id, "fw-2");
        assert_eq!(r.targets.things, ["sim-0001", "sim-0002", "sim-0003"]);
        assert_eq!(r.release.kind, "artifact");
        assert_eq!(r.release.artifact_id.as_deref(), Some("a2"));
        assert_eq!(
            r.release.install.map(|i| i.handler).as_deref(),
            Some("install.sh")
        );
        // The server fills in the artifact's version.
        assert_eq!(r.release.version, "");
        let previous = r.previous_release.expect("a release to roll back to");
        assert_eq!(previous.artifact_id.as_deref(), Some("a1"));
        assert_eq!(r.waves.len(), d.waves.len());
        assert_eq!(r.failure_policy, "rollback");
        // A template release has nothing to roll back to.
        d.source = Source::Template;
        assert_eq!(fields(&d, 3), ["policy"]);
    }

    #[test]
    fn the_request_carries_every_choice() {
        let mut d = valid();
        d.params.insert("size".into(), "42".into());
        d.params.insert("url".into(), "http://x".into());
        d.params.insert("empty".into(), " ".into());
        d.int_params.push("size".into());
        d.waves = vec![
            WaveDraft {
                percent: false,
                value: "2".into(),
            },
            WaveDraft {
                percent: true,
                value: "100".into(),
            },
        ];
        d.attributes = "site=madrid\nrack = 7".into();
        d.abort_percent = "20".into();
        d.retries = "2".into();
        d.approval = true;
        d.not_before = "2026-12-24T22:00".into();
        d.time_zone = "Europe/Madrid".into();
        let r = to_rollout(&d);
        assert_eq!(r.release.parameters.get("size"), Some(&Value::from(42)));
        assert_eq!(
            r.release.parameters.get("url"),
            Some(&Value::from("http://x"))
        );
        assert!(!r.release.parameters.contains_key("empty"));
        assert_eq!(r.release.version, "2.0");
        assert_eq!((r.waves[0].count, r.waves[0].percent), (Some(2), None));
        assert_eq!((r.waves[1].count, r.waves[1].percent), (None, Some(100.0)));
        assert_eq!(
            r.targets.attributes.get("rack").map(String::as_str),
            Some("7")
        );
        assert_eq!(
            r.job_options.rollout.and_then(|o| o.maximum_per_minute),
            Some(100)
        );
        assert_eq!(
            r.job_options
                .timeout
                .map(|o| o.in_progress_timeout_in_minutes),
            Some(60)
        );
        assert_eq!(
            r.job_options
                .abort
                .map(|a| a.criteria[0].threshold_percentage),
            Some(20.0)
        );
        assert_eq!(
            r.job_options.retry.map(|a| a.criteria[0].number_of_retries),
            Some(2)
        );
        assert!(r.gates.approval);
        assert_eq!(
            r.schedule.map(|s| s.time_zone),
            Some("Europe/Madrid".into())
        );
        assert_eq!(r.failure_policy, "pause");
    }

    #[test]
    fn lists_and_times_parse_like_people_type_them() {
        assert_eq!(split_list(" a,b  c\n"), ["a", "b", "c"]);
        assert_eq!(parse_attributes("").unwrap().len(), 0);
        assert!(parse_attributes("=x").is_err());
        assert!(local_time("2026-12-24T22:00"));
        assert!(local_time("2026-12-24T22:00:30"));
        assert!(!local_time("2026-12-24 22:00"));
    }

    #[test]
    fn choosing_a_template_fills_its_defaults() {
        let template: Template = serde_json::from_value(serde_json::json!({
            "template_id": "fw", "version": 1, "latest_version": 1, "description": null,
            "document": {}, "source": "custom", "created_at": "", "aws_job_template_id": null,
            "parameters": [
                {"name": "version", "type": "string", "default": "3.1"},
                {"name": "size", "type": "int", "default": 5}
            ]
        }))
        .unwrap();
        let mut d = Draft::default();
        choose_template(&mut d, "fw".into(), Some(&template));
        assert_eq!(d.params.get("size").map(String::as_str), Some("5"));
        assert_eq!(d.int_params, ["size"]);
        assert_eq!(d.version, "3.1");
    }
}
