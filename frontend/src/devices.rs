//! Devices: the device page (quick actions, the inventory's facts and histories, job history,
//! revoking certificates), and technician mode — device-first, large
//! touch targets, quick actions on one device (retry, cancel, run a template, reboot).

use flotilla_api::{
    CancelExecution, CreateJob, Device, DeviceCertificates, DeviceDetail, JobDetail,
    RetriedExecution, TemplateList, ThingDetail, ThingExecution, ThingList,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::json;

use crate::api::{self, encode};
use crate::inventory::Connectivity;
use crate::jobs::{FAILED_STATUSES, ThingSummary};
use crate::live::{Live, visible_ticks};
use crate::perm::Act;
use crate::route::Route;
use crate::ui::{Confirm, Pill, Reason, format_time, loaded, may, notify, t, tr};

/// The AWS-Reboot managed template's document: the agent (and the simulator) run `reboot.sh`.
pub fn reboot_document() -> serde_json::Value {
    json!({
        "version": "1.0",
        "steps": [{"action": {"name": "Reboot", "type": "runHandler",
                              "input": {"handler": "reboot.sh", "path": "default"},
                              "runAsUser": "root"}}]
    })
}

/// The execution a retry would repeat: the newest one that ended badly.
pub fn retryable(executions: &[ThingExecution]) -> Option<&ThingExecution> {
    newest(
        executions
            .iter()
            .filter(|e| FAILED_STATUSES.contains(&e.status.as_str())),
    )
}

/// The execution a cancel would stop: the newest one queued or in progress.
pub fn cancelable(executions: &[ThingExecution]) -> Option<&ThingExecution> {
    newest(
        executions
            .iter()
            .filter(|e| matches!(e.status.as_str(), "QUEUED" | "IN_PROGRESS")),
    )
}

fn newest<'a>(executions: impl Iterator<Item = &'a ThingExecution>) -> Option<&'a ThingExecution> {
    executions.max_by(|a, b| {
        let key = |e: &ThingExecution| {
            e.updated_at
                .clone()
                .or_else(|| e.queued_at.clone())
                .unwrap_or_default()
        };
        crate::ui::time_key(&key(a)).cmp(&crate::ui::time_key(&key(b)))
    })
}

async fn search(prefix: String) -> api::ApiResult<ThingList> {
    let prefix = prefix.trim().to_owned();
    let url = if prefix.is_empty() {
        "/api/v1/things?limit=50".to_owned()
    } else {
        format!("/api/v1/things?limit=50&name_prefix={}", encode(&prefix))
    };
    api::get(&url).await
}

fn detail_resource(name: StoredValue<String>) -> LocalResource<api::ApiResult<ThingDetail>> {
    let live = expect_context::<Live>();
    LocalResource::new(move || {
        live.version.track();
        let name = name.get_value();
        async move { api::get::<ThingDetail>(&format!("/api/v1/things/{}", encode(&name))).await }
    })
}

#[component]
pub fn DevicePage(name: String) -> impl IntoView {
    let thing = StoredValue::new(name.clone());
    let detail = detail_resource(thing);
    view! {
        <p class="crumbs"><a href=Route::Devices.href()>{t("Devices")}</a> " / "</p>
        <h1>{name.clone()}</h1>
        {loaded(detail, move |d: ThingDetail| view! {
            <QuickActions detail=d refetch=Callback::new(move |()| detail.refetch()) />
        })}
        <DeviceInventory name />
    }
}

/// The inventory's view of a device: connectivity, software, groups and attributes, their
/// histories, its job executions with their status details, and revoking its certificates.
#[component]
fn DeviceInventory(name: String) -> impl IntoView {
    let ticks = visible_ticks(expect_context::<Live>());
    let thing = StoredValue::new(name);
    let detail = LocalResource::new(move || {
        ticks.track();
        let name = thing.get_value();
        async move { api::get::<DeviceDetail>(&format!("/api/v1/devices/{}", encode(&name))).await }
    });
    let revoking = RwSignal::new(false);
    let revoke = Callback::new(move |(_, _): (String, bool)| {
        let name = thing.get_value();
        spawn_local(async move {
            let result = api::post::<_, DeviceCertificates>(
                &format!("/api/v1/devices/{}/revoke", encode(&name)),
                &json!({}),
            )
            .await;
            revoking.set(false);
            match result {
                Ok(revoked) => notify(
                    true,
                    format!(
                        "{} {}",
                        tr("Certificates revoked:"),
                        revoked
                            .certificates
                            .iter()
                            .filter(|c| c.status == "REVOKED")
                            .count()
                    ),
                ),
                Err(e) => notify(false, e.to_string()),
            }
            detail.refetch();
        });
    });
    view! {
        <section class="card" data-testid="device-inventory">
            <div class="card-header row">
                <h2>{t("Inventory")}</h2>
                {may(Act::ManageFleet).then(|| view! {
                    <button type="button" class="button danger push" data-testid="revoke"
                        on:click=move |_| revoking.set(true)>{t("Revoke certificates")}</button>
                })}
            </div>
            <div class="card-body">
                {loaded(detail, |d: DeviceDetail| view! { <InventoryFacts detail=d /> })}
            </div>
        </section>
        {move || revoking.get().then(|| view! {
            <Confirm title=tr("Revoke certificates").to_owned()
                message=format!(
                    "{} {}. {}",
                    tr("Revoke every certificate of"),
                    thing.get_value(),
                    tr("The device is disconnected and cannot connect again with them."),
                )
                reason=Reason::None force_label=None confirm_label="Revoke" danger=true
                on_confirm=revoke on_close=Callback::new(move |()| revoking.set(false)) />
        })}
    }
}

#[component]
fn InventoryFacts(detail: DeviceDetail) -> impl IntoView {
    let d = detail.device;
    let none = || "—".to_owned();
    view! {
        <dl class="facts">
            <dt>{t("Connectivity")}</dt>
            <dd data-testid="device-connectivity"><Connectivity connected=d.connected last_seen_at=d.last_seen_at.clone() /></dd>
            <dt>{t("Installed version")}</dt>
            <dd data-testid="installed-version">{d.installed_version.clone().unwrap_or_else(none)}</dd>
            <dt>{t("Agent version")}</dt>
            <dd>{d.agent_version.clone().unwrap_or_else(none)}</dd>
            <dt>{t("Type")}</dt>
            <dd>{d.thing_type.clone().unwrap_or_else(none)}</dd>
            <dt>{t("Groups")}</dt>
            <dd>{if d.groups.is_empty() { none() } else { d.groups.join(", ") }}</dd>
            {d.attributes.iter().map(|(k, v)| view! { <dt>{k.clone()}</dt> <dd>{v.clone()}</dd> }).collect_view()}
        </dl>
        <div class="histories">
            <div>
                <h3>{t("Connectivity history")}</h3>
                {if detail.connectivity.is_empty() {
                    view! { <p class="muted">{t("Never connected.")}</p> }.into_any()
                } else {
                    view! {
                        <table class="table" data-testid="connectivity-history">
                            <thead><tr>
                                <th scope="col">{t("When (UTC)")}</th>
                                <th scope="col">{t("Change")}</th>
                                <th scope="col">{t("Reason")}</th>
                            </tr></thead>
                            <tbody>
                                {detail.connectivity.into_iter().map(|c| view! {
                                    <tr data-connected=c.connected.to_string()>
                                        <td class="muted">{format_time(&c.at)}</td>
                                        <td>{if c.connected { t("Connected") } else { t("Disconnected") }}</td>
                                        <td>{c.reason.unwrap_or_default()}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }}
            </div>
            <div>
                <h3>{t("Version history")}</h3>
                {if detail.versions.is_empty() {
                    view! { <p class="muted">{t("No version reported yet.")}</p> }.into_any()
                } else {
                    view! {
                        <table class="table" data-testid="version-history">
                            <thead><tr>
                                <th scope="col">{t("Version")}</th>
                                <th scope="col">{t("Reported (UTC)")}</th>
                            </tr></thead>
                            <tbody>
                                {detail.versions.into_iter().map(|v| view! {
                                    <tr data-version=v.version.clone()>
                                        <td><code>{v.version.clone()}</code></td>
                                        <td class="muted">{format_time(&v.reported_at)}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any()
                }}
            </div>
        </div>
        <h3>{t("Job history")}</h3>
        {if detail.executions.is_empty() {
            view! { <p class="muted">{t("No jobs yet.")}</p> }.into_any()
        } else {
            view! {
                <table class="table" data-testid="device-executions">
                    <thead><tr>
                        <th scope="col">{t("Job")}</th>
                        <th scope="col">{t("Status")}</th>
                        <th scope="col" class="num">{t("Attempt")}</th>
                        <th scope="col">{t("Status details")}</th>
                        <th scope="col">{t("Updated (UTC)")}</th>
                    </tr></thead>
                    <tbody>
                        {detail.executions.into_iter().map(|e| view! {
                            <tr data-job-id=e.job_id.clone()>
                                <td><a href=Route::Job(e.job_id.clone()).href()><code>{e.job_id.clone()}</code></a></td>
                                <td><Pill status=e.status.clone() /></td>
                                <td class="num">{e.execution_number}</td>
                                <td class="details">
                                    {e.status_details.iter().map(|(k, v)| view! {
                                        <div><span class="muted">{k.clone()} ": "</span>{v.clone()}</div>
                                    }).collect_view()}
                                </td>
                                <td class="muted">{e.updated_at.as_deref().map(format_time).unwrap_or_default()}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        }}
    }
}

/// A device's quick actions, facts and job history, read again on every live change.
#[component]
fn DeviceBody(name: String) -> impl IntoView {
    let detail = detail_resource(StoredValue::new(name));
    loaded(detail, move |d: ThingDetail| {
        view! {
            <QuickActions detail=d.clone() refetch=Callback::new(move |()| detail.refetch()) />
            <ThingSummary detail=d />
        }
    })
}

/// Technician mode: find a device, then act on it.
#[component]
pub fn TechPage(name: Option<String>) -> impl IntoView {
    let query = RwSignal::new(name.clone().unwrap_or_default());
    let searching = name.is_none();
    let things = LocalResource::new(move || {
        let q = query.get();
        async move {
            if q.trim().is_empty() {
                Ok(None)
            } else {
                search(q).await.map(Some)
            }
        }
    });
    let open = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let q = query.get_untracked().trim().to_owned();
        if let Some(Ok(Some(list))) = things.get_untracked() {
            // An exact name, or the only match, opens the device at once.
            let hit = list
                .things
                .iter()
                .find(|t| t.name == q)
                .or(match list.things.as_slice() {
                    [only] => Some(only),
                    _ => None,
                });
            if let Some(thing) = hit {
                let _ = window()
                    .location()
                    .set_hash(&Route::Tech(Some(thing.name.clone())).href());
            }
        }
    };
    view! {
        <div class="tech">
            <h1>{t("Technician")}</h1>
            <form class="tech-search" on:submit=open role="search">
                <label for="tech-query">{t("Serial or thing name")}</label>
                <div class="row">
                    <input id="tech-query" name="tech-query" type="search" autocomplete="off"
                        inputmode="search" bind:value=query placeholder="sim-0001" />
                    <button type="submit" class="button primary">{t("Find")}</button>
                </div>
            </form>
            {move || match things.get() {
                Some(Ok(Some(list))) if searching => view! {
                    <ul class="tech-results">
                        {list.things.into_iter().map(|thing| view! {
                            <li><a class="button" href=Route::Tech(Some(thing.name.clone())).href()>{thing.name.clone()}</a></li>
                        }).collect_view()}
                    </ul>
                }.into_any(),
                Some(Err(e)) => crate::ui::error_box(&e).into_any(),
                _ => ().into_any(),
            }}
            {name.clone().map(|name| view! { <TechDevice name /> })}
        </div>
    }
}

#[component]
fn TechDevice(name: String) -> impl IntoView {
    view! {
        <section class="card tech-device" data-testid="tech-device" data-thing=name.clone()>
            <div class="card-header"><h2>{name.clone()}</h2><DeviceState name=name.clone() /></div>
            <div class="card-body"><DeviceBody name=name.clone() /></div>
        </section>
    }
}

/// Whether the device is online and what it runs, for the technician's header; nothing while
/// the inventory does not know the device.
#[component]
fn DeviceState(name: String) -> impl IntoView {
    let ticks = visible_ticks(expect_context::<Live>());
    let thing = StoredValue::new(name);
    let device = LocalResource::new(move || {
        ticks.track();
        let name = thing.get_value();
        async move { api::get::<Device>(&format!("/api/v1/devices/{}", encode(&name))).await }
    });
    move || {
        device.get().and_then(Result::ok).map(|d| {
            view! {
                <span class="row" data-testid="tech-device-state">
                    <Connectivity connected=d.connected last_seen_at=d.last_seen_at.clone() />
                    {d.installed_version.map(|v| view! { <code>{v}</code> })}
                </span>
            }
        })
    }
}

/// What a quick action asks to confirm.
#[derive(Debug, Clone, PartialEq)]
enum Quick {
    Retry(String),
    Cancel(String),
    Run(String),
    Reboot,
}

/// Retry, cancel, run a template and reboot, for one device.
#[component]
fn QuickActions(detail: ThingDetail, refetch: Callback<()>) -> impl IntoView {
    if !may(Act::DeviceAction) {
        return ().into_any();
    }
    let thing = StoredValue::new(detail.thing.name.clone());
    let retry = retryable(&detail.executions).map(|e| e.job_id.clone());
    let cancel = cancelable(&detail.executions).map(|e| e.job_id.clone());
    let pending = RwSignal::new(None::<Quick>);
    let template = RwSignal::new(String::new());
    let templates = LocalResource::new(|| api::get::<TemplateList>("/api/v1/templates"));
    let run = Callback::new(move |(reason, _): (String, bool)| {
        let Some(quick) = pending.get_untracked() else {
            return;
        };
        let thing = thing.get_value();
        spawn_local(async move {
            let job =
                |document: Option<serde_json::Value>, template_id: Option<String>| CreateJob {
                    job_id: None,
                    description: Some(format!("{} {thing}", tr("Technician action on"))),
                    things: vec![thing.clone()],
                    thing_groups: vec![],
                    document,
                    template_id,
                    template_version: None,
                    parameters: Default::default(),
                    target_selection: None,
                    rollout: None,
                    abort: None,
                    timeout: None,
                    retry: None,
                    scheduling: None,
                    presigned_url: None,
                };
            let result = match &quick {
                Quick::Retry(job_id) => api::post::<_, RetriedExecution>(
                    &format!(
                        "/api/v1/jobs/{}/executions/{}/retry",
                        encode(job_id),
                        encode(&thing)
                    ),
                    &json!({}),
                )
                .await
                .map(|r| format!("{} {}", tr("Retry started as job"), r.job_id)),
                Quick::Cancel(job_id) => api::post::<_, serde_json::Value>(
                    &format!(
                        "/api/v1/jobs/{}/executions/{}/cancel",
                        encode(job_id),
                        encode(&thing)
                    ),
                    &CancelExecution {
                        force: true,
                        reason: (!reason.is_empty()).then_some(reason),
                    },
                )
                .await
                .map(|_| tr("Execution canceled.").to_owned()),
                Quick::Run(template_id) => {
                    api::post::<_, JobDetail>("/api/v1/jobs", &job(None, Some(template_id.clone())))
                        .await
                        .map(|j| format!("{} {}", tr("Job started:"), j.job.job_id))
                }
                Quick::Reboot => {
                    api::post::<_, JobDetail>("/api/v1/jobs", &job(Some(reboot_document()), None))
                        .await
                        .map(|j| format!("{} {}", tr("Job started:"), j.job.job_id))
                }
            };
            pending.set(None);
            match result {
                Ok(text) => notify(true, text),
                Err(e) => notify(false, e.to_string()),
            }
            refetch.run(());
        });
    });
    view! {
        <div class="quick-actions">
            {retry.map(|job_id| {
                let label = format!("{} ({job_id})", tr("Retry"));
                view! {
                    <button type="button" class="button primary" data-testid="quick-retry"
                        on:click=move |_| pending.set(Some(Quick::Retry(job_id.clone())))>{label}</button>
                }
            })}
            {cancel.map(|job_id| {
                let label = format!("{} ({job_id})", tr("Cancel"));
                view! {
                    <button type="button" class="button danger" data-testid="quick-cancel"
                        on:click=move |_| pending.set(Some(Quick::Cancel(job_id.clone())))>{label}</button>
                }
            })}
            <button type="button" class="button" data-testid="quick-reboot" on:click=move |_| pending.set(Some(Quick::Reboot))>
                {t("Reboot")}
            </button>
            <div class="row">
                <label class="sr-only" for="quick-template">{t("Template")}</label>
                <select id="quick-template" bind:value=template>
                    <option value="">{t("Run a template…")}</option>
                    {move || templates.get().and_then(Result::ok).map(|list| list.templates.into_iter().map(|tpl| view! {
                        <option value=tpl.template_id.clone()>{tpl.template_id.clone()}</option>
                    }).collect_view())}
                </select>
                <button type="button" class="button" disabled=move || template.with(String::is_empty)
                    on:click=move |_| pending.set(Some(Quick::Run(template.get())))>
                    {t("Run")}
                </button>
            </div>
        </div>
        {move || pending.get().map(|quick| {
            let name = thing.get_value();
            let (title, message, reason, label) = match &quick {
                Quick::Retry(job) => (tr("Retry"), format!("{} {job} {} {name}.", tr("Run job"), tr("again on")), Reason::None, "Retry"),
                Quick::Cancel(job) => (tr("Cancel"), format!("{} {job} {} {name}.", tr("Stop job"), tr("on")), Reason::Optional, "Cancel"),
                Quick::Run(template) => (tr("Run"), format!("{} {template} {} {name}.", tr("Run template"), tr("on")), Reason::None, "Run"),
                Quick::Reboot => (tr("Reboot"), format!("{} {name}.", tr("Reboot")), Reason::None, "Reboot"),
            };
            view! {
                <Confirm title=title.to_owned() message reason force_label=None confirm_label=label
                    danger=matches!(quick, Quick::Cancel(_) | Quick::Reboot)
                    on_confirm=run on_close=Callback::new(move |()| pending.set(None)) />
            }
        })}
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execution(job: &str, status: &str, updated: &str) -> ThingExecution {
        ThingExecution {
            job_id: job.into(),
            status: status.into(),
            execution_number: Some(1),
            queued_at: None,
            started_at: None,
            updated_at: Some(updated.into()),
        }
    }

    #[test]
    fn quick_actions_pick_the_newest_matching_execution() {
        let executions = [
            execution("old-fail", "FAILED", "2026-01-01T00:00:00Z"),
            execution("new-fail", "TIMED_OUT", "2026-01-02T00:00:00Z"),
            execution("ok", "SUCCEEDED", "2026-01-03T00:00:00Z"),
            execution("waiting", "QUEUED", "2026-01-01T00:00:00.5Z"),
        ];
        assert_eq!(
            retryable(&executions).map(|e| e.job_id.as_str()),
            Some("new-fail")
        );
        assert_eq!(
            cancelable(&executions).map(|e| e.job_id.as_str()),
            Some("waiting")
        );
        assert!(retryable(&executions[2..3]).is_none());
    }

    #[test]
    fn the_reboot_document_is_what_the_agent_reboots_on() {
        let doc = reboot_document();
        assert_eq!(doc["steps"][0]["action"]["input"]["handler"], "reboot.sh");
    }
}
