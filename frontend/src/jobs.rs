//! Jobs: the list, and one job's detail — live counts and progress, failure reasons, the
//! executions table (status filter, search, paging), a drawer per device, and the actions
//! cancel (with a reason) and retry failed, each behind a confirmation.

use std::collections::BTreeMap;

use flotilla_api::{
    CancelExecution, CancelJob, Execution, ExecutionPage, FailureReason,
    FailureReasons as FailureReasonList, JobDetail, JobList, JobStatus, RetriedExecution,
    ThingDetail,
};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, encode};
use crate::live::Live;
use crate::overview::JobTable;
use crate::perm::Act;
use crate::route::Route;
use crate::ui::{
    Confirm, CountList, JobPill, Pill, ProgressBar, Reason, format_time, loaded, may, notify, t, tr,
};

/// Executions per page of the table.
pub const PAGE_SIZE: usize = 25;
/// Statuses an execution ends badly in.
pub const FAILED_STATUSES: [&str; 3] = ["FAILED", "REJECTED", "TIMED_OUT"];
const EXECUTION_STATUSES: [&str; 8] = [
    "QUEUED",
    "IN_PROGRESS",
    "SUCCEEDED",
    "FAILED",
    "REJECTED",
    "TIMED_OUT",
    "CANCELED",
    "REMOVED",
];

/// The failure reasons of several jobs (a rollout's waves) as one list: the same status and
/// reason counted together, most frequent first.
pub fn merge_reasons(lists: Vec<FailureReasonList>) -> Vec<FailureReason> {
    let mut merged: BTreeMap<(String, String), i64> = BTreeMap::new();
    for reason in lists.into_iter().flat_map(|l| l.reasons) {
        *merged.entry((reason.status, reason.reason)).or_default() += reason.count;
    }
    let mut reasons: Vec<FailureReason> = merged
        .into_iter()
        .map(|((status, reason), count)| FailureReason {
            status,
            reason,
            count,
        })
        .collect();
    reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    reasons
}

/// Why the executions of `job_ids` ended badly, grouped by reason; read again on every live
/// change.
#[component]
pub fn FailureReasons(job_ids: Vec<String>) -> impl IntoView {
    let live = expect_context::<Live>();
    let job_ids = StoredValue::new(job_ids);
    let reasons = LocalResource::new(move || {
        live.version.track();
        let job_ids = job_ids.get_value();
        async move {
            let mut lists = Vec::new();
            for job_id in job_ids {
                let path = format!("/api/v1/jobs/{}/failure-reasons", encode(&job_id));
                lists.push(api::get::<FailureReasonList>(&path).await?);
            }
            Ok(merge_reasons(lists))
        }
    });
    loaded(reasons, |reasons: Vec<FailureReason>| {
        if reasons.is_empty() {
            return view! { <p class="muted">{t("No failures.")}</p> }.into_any();
        }
        view! {
            <ul class="reasons" data-testid="failure-reasons">
                {reasons
                    .into_iter()
                    .map(|r| {
                        view! {
                            <li>
                                <strong>{r.count}</strong>
                                " × "
                                <Pill status=r.status />
                                " "
                                {if r.reason.is_empty() {
                                    view! { <span class="muted">{t("no reason given")}</span> }.into_any()
                                } else {
                                    view! { <span>{r.reason}</span> }.into_any()
                                }}
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        }
        .into_any()
    })
}

#[component]
pub fn JobsPage() -> impl IntoView {
    let live = expect_context::<Live>();
    let status = RwSignal::new(String::new());
    let jobs = LocalResource::new(move || {
        live.version.track();
        let status = status.get();
        async move {
            let url = if status.is_empty() {
                "/api/v1/jobs?limit=200".to_owned()
            } else {
                format!("/api/v1/jobs?limit=200&status={status}")
            };
            api::get::<JobList>(&url).await
        }
    });
    view! {
        <h1>{t("Jobs")}</h1>
        <section class="card">
            <div class="card-header">
                <label class="inline">
                    {t("Status")}
                    <select bind:value=status>
                        <option value="">{t("All")}</option>
                        {["IN_PROGRESS", "SCHEDULED", "COMPLETED", "CANCELED"]
                            .into_iter()
                            .map(|s| view! { <option value=s>{t(crate::ui::status_label(s))}</option> })
                            .collect_view()}
                    </select>
                </label>
                <a class="button primary" href=Route::New.href()>{t("New rollout")}</a>
            </div>
            {loaded(jobs, |list| view! { <JobTable jobs=list.jobs /> })}
        </section>
    }
}

/// What the job page is asking to confirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobAction {
    Cancel,
    RetryFailed,
}

/// Retries every failed, rejected and timed-out execution of `job_id`; the number retried.
pub async fn retry_failed(job_id: &str) -> api::ApiResult<usize> {
    let mut retried = 0;
    for status in FAILED_STATUSES {
        let mut after: Option<String> = None;
        loop {
            let mut url = format!(
                "/api/v1/jobs/{}/executions?status={status}&limit=1000",
                encode(job_id)
            );
            if let Some(after) = &after {
                url.push_str(&format!("&after={}", encode(after)));
            }
            let page: ExecutionPage = api::get(&url).await?;
            for execution in &page.executions {
                let _: RetriedExecution = api::post(
                    &format!(
                        "/api/v1/jobs/{}/executions/{}/retry",
                        encode(job_id),
                        encode(&execution.thing_name)
                    ),
                    &serde_json::json!({}),
                )
                .await?;
                retried += 1;
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    Ok(retried)
}

#[component]
pub fn JobPage(job_id: String) -> impl IntoView {
    let live = expect_context::<Live>();
    let id = StoredValue::new(job_id.clone());
    let detail = LocalResource::new(move || {
        live.version.track();
        let id = id.get_value();
        async move { api::get::<JobDetail>(&format!("/api/v1/jobs/{}", encode(&id))).await }
    });
    let action = RwSignal::new(None::<JobAction>);
    let drawer = RwSignal::new(None::<String>);
    let run = Callback::new(move |(reason, force): (String, bool)| {
        let Some(which) = action.get_untracked() else {
            return;
        };
        let id = id.get_value();
        spawn_local(async move {
            let result = match which {
                JobAction::Cancel => api::post::<_, JobDetail>(
                    &format!("/api/v1/jobs/{}/cancel", encode(&id)),
                    &CancelJob {
                        force,
                        comment: (!reason.is_empty()).then_some(reason),
                        reason_code: None,
                    },
                )
                .await
                .map(|_| tr("Job canceled.").to_owned()),
                JobAction::RetryFailed => retry_failed(&id)
                    .await
                    .map(|n| format!("{} {n}", tr("Devices retried:"))),
            };
            action.set(None);
            match result {
                Ok(text) => notify(true, text),
                Err(e) => notify(false, e.to_string()),
            }
            detail.refetch();
        });
    });

    view! {
        <p class="crumbs"><a href=Route::Jobs.href()>{t("Jobs")}</a> " / "</p>
        <h1><code>{job_id.clone()}</code></h1>
        {loaded(detail, move |detail: JobDetail| {
            let job = detail.job;
            let running = matches!(job.status, JobStatus::InProgress | JobStatus::Scheduled);
            let has_failures = crate::ui::failed(&job.counts) > 0;
            view! {
                <section class="card" data-testid="job-summary" data-status=job.status.as_str()>
                    <div class="card-header">
                        <div>
                            <JobPill status=job.status />
                            {job.description.clone().map(|d| view! { <span class="muted">" " {d}</span> })}
                        </div>
                        <div class="actions">
                            {(may(Act::Deploy) && has_failures)
                                .then(|| view! {
                                    <button type="button" class="button" on:click=move |_| action.set(Some(JobAction::RetryFailed))>
                                        {t("Retry failed")}
                                    </button>
                                })}
                            {(may(Act::Deploy) && running)
                                .then(|| view! {
                                    <button type="button" class="button danger" data-testid="cancel-job" on:click=move |_| action.set(Some(JobAction::Cancel))>
                                        {t("Cancel job")}
                                    </button>
                                })}
                        </div>
                    </div>
                    <div class="card-body">
                        <ProgressBar counts=job.counts />
                        <CountList counts=job.counts />
                        <p class="muted">
                            {t("Created")} " " {format_time(&job.created_at)}
                            {job.completed_at.map(|c| view! { " · " {t("Finished")} " " {format_time(&c)} })}
                        </p>
                    </div>
                </section>
            }
        })}
        <section class="card">
            <div class="card-header"><h2>{t("Failure reasons")}</h2></div>
            <div class="card-body"><FailureReasons job_ids=vec![job_id.clone()] /></div>
        </section>
        <section class="card">
            <div class="card-header"><h2>{t("Executions")}</h2></div>
            <Executions job_id=job_id.clone() on_open=Callback::new(move |thing| drawer.set(Some(thing))) />
        </section>
        {move || drawer.get().map(|thing| view! {
            <DeviceDrawer thing job_id=Some(id.get_value()) on_close=Callback::new(move |()| drawer.set(None)) />
        })}
        {move || action.get().map(|which| {
            let (title, message, reason, force, label) = match which {
                JobAction::Cancel => (
                    tr("Cancel job"),
                    tr("Queued executions stop. Devices already working finish unless you force it."),
                    Reason::Required,
                    Some("Also stop executions in progress"),
                    "Cancel job",
                ),
                JobAction::RetryFailed => (
                    tr("Retry failed"),
                    tr("Every failed, rejected or timed-out device gets the job again as a follow-up job."),
                    Reason::None,
                    None,
                    "Retry failed",
                ),
            };
            view! {
                <Confirm
                    title=title.to_owned()
                    message=message.to_owned()
                    reason
                    force_label=force
                    confirm_label=label
                    danger=which == JobAction::Cancel
                    on_confirm=run
                    on_close=Callback::new(move |()| action.set(None))
                />
            }
        })}
    }
}

/// A job's executions, a page at a time, filtered by status and searched by thing name.
#[component]
pub fn Executions(job_id: String, on_open: Callback<String>) -> impl IntoView {
    let live = expect_context::<Live>();
    let id = StoredValue::new(job_id);
    let status = RwSignal::new(String::new());
    let search = RwSignal::new(String::new());
    // The `after` of each page shown so far; the last is the current page's.
    let pages = RwSignal::new(vec![None::<String>]);
    Effect::new(move |_| {
        status.track();
        search.track();
        pages.set(vec![None]);
    });
    let page = LocalResource::new(move || {
        live.version.track();
        let id = id.get_value();
        let status = status.get();
        let search = search.get().trim().to_owned();
        let after = pages.get().last().cloned().flatten();
        async move {
            // A search reads the largest page and filters it here (the API pages by name).
            let limit = if search.is_empty() { PAGE_SIZE } else { 1000 };
            let mut url = format!("/api/v1/jobs/{}/executions?limit={limit}", encode(&id));
            if !status.is_empty() {
                url.push_str(&format!("&status={status}"));
            }
            if let Some(after) = after.filter(|_| search.is_empty()) {
                url.push_str(&format!("&after={}", encode(&after)));
            }
            let mut page: ExecutionPage = api::get(&url).await?;
            if !search.is_empty() {
                let needle = search.to_lowercase();
                page.executions
                    .retain(|e| e.thing_name.to_lowercase().contains(&needle));
                page.next_after = None;
            }
            Ok(page)
        }
    });
    view! {
        <div class="toolbar">
            <label class="inline">
                {t("Status")}
                <select bind:value=status data-testid="execution-status">
                    <option value="">{t("All")}</option>
                    {EXECUTION_STATUSES
                        .into_iter()
                        .map(|s| view! { <option value=s>{t(crate::ui::status_label(s))}</option> })
                        .collect_view()}
                </select>
            </label>
            <label class="inline">
                {t("Search")}
                <input type="search" bind:value=search placeholder=t("Thing name") />
            </label>
        </div>
        {loaded(page, move |page: ExecutionPage| {
            let next = page.next_after.clone();
            let first = pages.with(|p| p.len() == 1);
            view! {
                <ExecutionRows executions=page.executions on_open />
                <div class="pager">
                    <button type="button" class="button" disabled=first on:click=move |_| pages.update(|p| { p.pop(); })>
                        {t("Previous")}
                    </button>
                    <span class="muted">{t("Page")} " " {move || pages.with(Vec::len)}</span>
                    <button
                        type="button"
                        class="button"
                        disabled=next.is_none()
                        on:click=move |_| pages.update(|p| p.push(next.clone()))
                    >
                        {t("Next")}
                    </button>
                </div>
            }
        })}
    }
}

#[component]
fn ExecutionRows(executions: Vec<Execution>, on_open: Callback<String>) -> impl IntoView {
    if executions.is_empty() {
        return view! { <p class="state empty">{t("No executions match.")}</p> }.into_any();
    }
    view! {
        <table class="table">
            <thead>
                <tr>
                    <th scope="col">{t("Device")}</th>
                    <th scope="col">{t("Status")}</th>
                    <th scope="col" class="num">{t("Attempt")}</th>
                    <th scope="col">{t("Updated (UTC)")}</th>
                </tr>
            </thead>
            <tbody>
                {executions
                    .into_iter()
                    .map(|e| {
                        let thing = e.thing_name.clone();
                        view! {
                            <tr data-thing=e.thing_name.clone()>
                                <td>
                                    <button type="button" class="link" on:click=move |_| on_open.run(thing.clone())>
                                        {e.thing_name.clone()}
                                    </button>
                                </td>
                                <td><Pill status=e.status.clone() /></td>
                                <td class="num">{e.execution_number.unwrap_or_default()}</td>
                                <td class="muted">{e.updated_at.as_deref().map(format_time).unwrap_or_default()}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// A side panel with one device: its attributes, groups and job history, and (for a job's
/// execution) retry and cancel.
#[component]
pub fn DeviceDrawer(
    thing: String,
    job_id: Option<String>,
    on_close: Callback<()>,
) -> impl IntoView {
    let dialog = NodeRef::<leptos::html::Dialog>::new();
    let name = StoredValue::new(thing.clone());
    let detail = LocalResource::new(move || {
        let name = name.get_value();
        async move { api::get::<ThingDetail>(&format!("/api/v1/things/{}", encode(&name))).await }
    });
    Effect::new(move |_| {
        if let Some(d) = dialog.get()
            && !d.open()
        {
            let _ = d.show_modal();
        }
    });
    let job = StoredValue::new(job_id);
    let act = move |retry: bool| {
        let Some(job_id) = job.get_value() else {
            return;
        };
        let thing = name.get_value();
        spawn_local(async move {
            let base = format!(
                "/api/v1/jobs/{}/executions/{}",
                encode(&job_id),
                encode(&thing)
            );
            let result = if retry {
                api::post::<_, RetriedExecution>(&format!("{base}/retry"), &serde_json::json!({}))
                    .await
                    .map(|r| format!("{} {}", tr("Retry started as job"), r.job_id))
            } else {
                api::post::<_, serde_json::Value>(
                    &format!("{base}/cancel"),
                    &CancelExecution {
                        force: true,
                        reason: Some("canceled from the device drawer".into()),
                    },
                )
                .await
                .map(|_| tr("Execution canceled.").to_owned())
            };
            match result {
                Ok(text) => notify(true, text),
                Err(e) => notify(false, e.to_string()),
            }
            detail.refetch();
        });
    };
    view! {
        <dialog node_ref=dialog class="drawer" aria-labelledby="drawer-title" on:close=move |_| on_close.run(())>
            <div class="drawer-header">
                <h2 id="drawer-title">{thing.clone()}</h2>
                <button type="button" class="button" on:click=move |_| on_close.run(())>{t("Close")}</button>
            </div>
            {job.get_value().filter(|_| may(Act::DeviceAction)).map(|_| view! {
                <div class="actions">
                    <button type="button" class="button" on:click=move |_| act(true)>{t("Retry on this device")}</button>
                    <button type="button" class="button danger" on:click=move |_| act(false)>{t("Cancel on this device")}</button>
                </div>
            })}
            {loaded(detail, |d: ThingDetail| view! { <ThingSummary detail=d /> })}
            <p><a href=Route::Device(thing.clone()).href()>{t("Open device page")}</a></p>
        </dialog>
    }
}

/// A device's attributes, groups and job history.
#[component]
pub fn ThingSummary(detail: ThingDetail) -> impl IntoView {
    let thing = detail.thing;
    view! {
        <dl class="facts">
            <dt>{t("Type")}</dt>
            <dd>{thing.thing_type.unwrap_or_else(|| "—".into())}</dd>
            <dt>{t("Groups")}</dt>
            <dd>{if detail.groups.is_empty() { "—".into() } else { detail.groups.join(", ") }}</dd>
            {thing
                .attributes
                .into_iter()
                .map(|(k, v)| view! { <dt>{k}</dt> <dd>{v}</dd> })
                .collect_view()}
        </dl>
        <h3>{t("Job history")}</h3>
        {if detail.executions.is_empty() {
            view! { <p class="muted">{t("No jobs yet.")}</p> }.into_any()
        } else {
            view! {
                <table class="table">
                    <thead>
                        <tr>
                            <th scope="col">{t("Job")}</th>
                            <th scope="col">{t("Status")}</th>
                            <th scope="col">{t("Updated (UTC)")}</th>
                        </tr>
                    </thead>
                    <tbody>
                        {detail
                            .executions
                            .into_iter()
                            .map(|e| view! {
                                <tr data-job-id=e.job_id.clone()>
                                    <td><a href=Route::Job(e.job_id.clone()).href()><code>{e.job_id.clone()}</code></a></td>
                                    <td><Pill status=e.status.clone() /></td>
                                    <td class="muted">{e.updated_at.as_deref().map(format_time).unwrap_or_default()}</td>
                                </tr>
                            })
                            .collect_view()}
                    </tbody>
                </table>
            }
            .into_any()
        }}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(status: &str, reason: &str, count: i64) -> FailureReason {
        FailureReason {
            status: status.into(),
            reason: reason.into(),
            count,
        }
    }

    #[test]
    fn the_reasons_of_several_jobs_add_up() {
        let wave_1 = FailureReasonList {
            reasons: vec![reason("FAILED", "disk full", 2), reason("TIMED_OUT", "", 1)],
        };
        let wave_2 = FailureReasonList {
            reasons: vec![
                reason("FAILED", "bad checksum", 1),
                reason("FAILED", "disk full", 3),
            ],
        };
        assert_eq!(
            merge_reasons(vec![wave_1, wave_2]),
            [
                reason("FAILED", "disk full", 5),
                reason("TIMED_OUT", "", 1),
                reason("FAILED", "bad checksum", 1),
            ]
        );
        assert!(merge_reasons(Vec::new()).is_empty());
    }
}
