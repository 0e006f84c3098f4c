//! The fleet inventory on the Devices page: search with filters and keyset pages, the software
//! distribution, registering devices (one by form, many from a CSV file) with their one-time
//! credential bundles, and thing groups.
//!
//! The live feed announces job changes only; connectivity and versions change without it. The
//! inventory's views therefore read again on [`visible_ticks`], which also moves on the feed's
//! quiet-time tick (every few seconds) while the tab is visible.

use std::collections::BTreeMap;

use flotilla_api::{
    CreateGroup, Device, DeviceBundle, DeviceList, ImportResult, RegisterDevice, RegisteredDevice,
    SoftwareDistribution, ThingGroupList,
};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast as _;

use crate::api::{self, ApiError, encode};
use crate::live::{Live, visible_ticks};
use crate::perm::Act;
use crate::route::Route;
use crate::ui::{
    Pill, error_box, field_errors_box, field_message, format_time, loaded, may, notify, save_file,
    t, tr,
};

/// Devices per page of the search.
pub const PAGE_SIZE: usize = 25;

/// The last-job outcomes the search filters on (the server's list).
pub const OUTCOMES: [&str; 6] = [
    "SUCCEEDED",
    "FAILED",
    "REJECTED",
    "TIMED_OUT",
    "CANCELED",
    "REMOVED",
];

/// The search's filters as typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    /// A name prefix.
    pub name: String,
    /// `key=value;…`.
    pub attributes: String,
    pub group: String,
    pub version: String,
    /// `online`, `offline` or empty.
    pub connectivity: String,
    /// One of [`OUTCOMES`] or empty.
    pub last_job: String,
}

/// `key=value;…` (the CSV import's form; new lines separate too) as a map. The error is the
/// first pair without a key or `=`.
pub fn parse_pairs(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut pairs = BTreeMap::new();
    for pair in text
        .split([';', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                pairs.insert(key.trim().to_owned(), value.trim().to_owned());
            }
            _ => return Err(pair.to_owned()),
        }
    }
    Ok(pairs)
}

/// Names separated by commas, semicolons or spaces, each once, in the order given.
pub fn parse_list(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in text
        .split([',', ';', ' ', '\n', '\t'])
        .filter(|n| !n.is_empty())
    {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names
}

/// The search's address for `filters`, from the page after `after`; the error names the
/// malformed attribute pair.
pub fn search_url(filters: &Filters, after: Option<&str>) -> Result<String, String> {
    let mut query = vec![("limit".to_owned(), PAGE_SIZE.to_string())];
    let mut add = |key: &str, value: &str| {
        if !value.trim().is_empty() {
            query.push((key.to_owned(), value.trim().to_owned()));
        }
    };
    add("name", &filters.name);
    add("group", &filters.group);
    add("version", &filters.version);
    add("connectivity", &filters.connectivity);
    add("last_job", &filters.last_job);
    add("after", after.unwrap_or_default());
    for (key, value) in parse_pairs(&filters.attributes)? {
        query.push((format!("attr.{key}"), value));
    }
    let query: Vec<String> = query
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect();
    Ok(format!("/api/v1/devices?{}", query.join("&")))
}

/// The registration the form describes; the error is the field and what is wrong with it.
pub fn registration(
    name: &str,
    thing_type: &str,
    attributes: &str,
    groups: &str,
    software_version: &str,
) -> Result<RegisterDevice, (&'static str, &'static str)> {
    let name = name.trim();
    if name.is_empty() {
        return Err(("name", "Enter the device's name."));
    }
    let attributes = parse_pairs(attributes).map_err(|_| {
        (
            "attributes",
            "Attributes are key=value pairs separated by ;",
        )
    })?;
    let some = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
    Ok(RegisterDevice {
        name: name.to_owned(),
        thing_type: some(thing_type),
        attributes,
        groups: parse_list(groups),
        software_version: some(software_version),
    })
}

/// Online or offline, with when the device was last seen.
#[component]
pub fn Connectivity(connected: bool, last_seen_at: Option<String>) -> impl IntoView {
    view! {
        <span class="connectivity">
            <span class="badge" class:online=connected class:offline=!connected
                data-connected=connected.to_string()>
                {if connected { t("Online") } else { t("Offline") }}
            </span>
            {last_seen_at.map(|at| view! {
                <span class="muted">" " {t("seen")} " " {format_time(&at)}</span>
            })}
        </span>
    }
}

/// Fetches a bundle (which the server then forgets) and saves it as a JSON file.
async fn download_bundle(name: &str, token: &str) -> Result<(), ApiError> {
    let bundle: DeviceBundle =
        api::get(&format!("/api/v1/device-bundles/{}", encode(token))).await?;
    let text = serde_json::to_string_pretty(&bundle)
        .map_err(|e| ApiError::new(format!("Could not write the bundle: {e}")))?;
    save_file(&format!("{name}-bundle.json"), "application/json", &text)
        .map_err(|e| ApiError::new(format!("Could not save the bundle: {e:?}")))
}

/// A one-time bundle's download button: after one download it is gone from the server.
#[component]
fn BundleButton(name: String, token: String) -> impl IntoView {
    let state = RwSignal::new(None::<Result<(), ApiError>>);
    let busy = RwSignal::new(false);
    let fetch = move |_| {
        let (name, token) = (name.clone(), token.clone());
        busy.set(true);
        spawn_local(async move {
            let result = download_bundle(&name, &token).await;
            busy.set(false);
            state.set(Some(result));
        });
    };
    view! {
        {move || match state.get() {
            None => view! {
                <button type="button" class="button primary" data-testid="download-bundle"
                    disabled=move || busy.get() on:click=fetch.clone()>
                    {t("Download bundle")}
                </button>
            }.into_any(),
            Some(Ok(())) => view! {
                <span class="muted" data-testid="bundle-downloaded">{t("Bundle downloaded; the server no longer has it.")}</span>
            }.into_any(),
            Some(Err(e)) => error_box(&e).into_any(),
        }}
    }
}

/// The Devices page.
#[component]
pub fn DevicesPage() -> impl IntoView {
    let groups_changed = RwSignal::new(0u64);
    view! {
        <h1>{t("Devices")}</h1>
        <DeviceSearch />
        <Distribution />
        {may(Act::ManageFleet).then(|| view! {
            <RegisterForm />
            <ImportForm />
        })}
        <Groups changed=groups_changed />
    }
}

#[component]
fn DeviceSearch() -> impl IntoView {
    let ticks = visible_ticks(expect_context::<Live>());
    let filters = RwSignal::new(Filters::default());
    // The keyset position: the `after` of every page up to the one shown.
    let pages = RwSignal::new(Vec::<String>::new());
    let field = move |get: fn(&Filters) -> &String, set: fn(&mut Filters, String)| {
        (
            move || filters.with(|f| get(f).clone()),
            move |ev: leptos::ev::Event| {
                let value = event_target_value(&ev);
                filters.update(|f| set(f, value));
                pages.set(Vec::new());
            },
        )
    };
    let (name, on_name) = field(|f| &f.name, |f, v| f.name = v);
    let (attributes, on_attributes) = field(|f| &f.attributes, |f, v| f.attributes = v);
    let (group, on_group) = field(|f| &f.group, |f, v| f.group = v);
    let (version, on_version) = field(|f| &f.version, |f, v| f.version = v);
    let (connectivity, on_connectivity) = field(|f| &f.connectivity, |f, v| f.connectivity = v);
    let (last_job, on_last_job) = field(|f| &f.last_job, |f, v| f.last_job = v);
    let devices = LocalResource::new(move || {
        ticks.track();
        let url = search_url(&filters.get(), pages.read().last().map(String::as_str));
        async move {
            match url {
                Ok(url) => api::get::<DeviceList>(&url).await,
                Err(pair) => Err(ApiError::new(format!(
                    "{} {pair}",
                    tr("Attributes are key=value pairs separated by ;")
                ))),
            }
        }
    });
    view! {
        <section class="card" data-testid="device-search">
            <form class="toolbar" role="search" on:submit=|ev| ev.prevent_default()>
                <label class="inline">
                    {t("Name starts with")}
                    <input type="search" name="device-search" prop:value=name on:input=on_name />
                </label>
                <label class="inline">
                    {t("Attributes (key=value;…)")}
                    <input name="filter-attributes" prop:value=attributes on:change=on_attributes placeholder="site=berlin" />
                </label>
                <label class="inline">
                    {t("Group")}
                    <input name="filter-group" prop:value=group on:change=on_group />
                </label>
                <label class="inline">
                    {t("Version")}
                    <input name="filter-version" prop:value=version on:change=on_version />
                </label>
                <label class="inline">
                    {t("Connectivity")}
                    <select name="filter-connectivity" prop:value=connectivity on:change=on_connectivity>
                        <option value="">{t("All")}</option>
                        <option value="online">{t("Online")}</option>
                        <option value="offline">{t("Offline")}</option>
                    </select>
                </label>
                <label class="inline">
                    {t("Last job")}
                    <select name="filter-last-job" prop:value=last_job on:change=on_last_job>
                        <option value="">{t("All")}</option>
                        {OUTCOMES.into_iter().map(|o| view! { <option value=o>{t(crate::ui::status_label(o))}</option> }).collect_view()}
                    </select>
                </label>
            </form>
            {loaded(devices, move |list: DeviceList| {
                let next = list.next.clone();
                let first_page = pages.with(Vec::is_empty);
                view! {
                    {if list.devices.is_empty() {
                        view! { <p class="state empty">{t("No devices match.")}</p> }.into_any()
                    } else {
                        view! { <DeviceTable devices=list.devices /> }.into_any()
                    }}
                    <div class="pager">
                        {(!first_page).then(|| view! {
                            <button type="button" class="button" data-testid="first-page"
                                on:click=move |_| pages.set(Vec::new())>{t("First page")}</button>
                        })}
                        {next.map(|after| view! {
                            <button type="button" class="button" data-testid="next-page"
                                on:click=move |_| pages.update(|p| p.push(after.clone()))>{t("Next")}</button>
                        })}
                    </div>
                }
            })}
        </section>
    }
}

#[component]
fn DeviceTable(devices: Vec<Device>) -> impl IntoView {
    view! {
        <table class="table devices">
            <thead>
                <tr>
                    <th scope="col">{t("Device")}</th>
                    <th scope="col">{t("Connectivity")}</th>
                    <th scope="col">{t("Installed version")}</th>
                    <th scope="col">{t("Groups")}</th>
                    <th scope="col">{t("Last job")}</th>
                </tr>
            </thead>
            <tbody>
                {devices.into_iter().map(|d| view! {
                    <tr data-thing=d.name.clone()>
                        <td><a href=Route::Device(d.name.clone()).href()>{d.name.clone()}</a></td>
                        <td><Connectivity connected=d.connected last_seen_at=d.last_seen_at.clone() /></td>
                        <td data-version=d.installed_version.clone().unwrap_or_default()>
                            {d.installed_version.clone().unwrap_or_else(|| "—".into())}
                        </td>
                        <td>{if d.groups.is_empty() { "—".into() } else { d.groups.join(", ") }}</td>
                        <td>
                            {match (d.last_job_status.clone(), d.last_job_id.clone()) {
                                (Some(status), Some(job)) => view! {
                                    <a href=Route::Job(job.clone()).href() title=job><Pill status /></a>
                                }.into_any(),
                                (Some(status), None) => view! { <Pill status /> }.into_any(),
                                _ => view! { <span class="muted">"—"</span> }.into_any(),
                            }}
                        </td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// Devices per installed version, in the fleet or one group.
#[component]
fn Distribution() -> impl IntoView {
    let ticks = visible_ticks(expect_context::<Live>());
    let group = RwSignal::new(String::new());
    let distribution = LocalResource::new(move || {
        ticks.track();
        let group = group.get().trim().to_owned();
        async move {
            let url = if group.is_empty() {
                "/api/v1/software-versions".to_owned()
            } else {
                format!("/api/v1/software-versions?group={}", encode(&group))
            };
            api::get::<SoftwareDistribution>(&url).await
        }
    });
    view! {
        <section class="card" data-testid="distribution">
            <div class="card-header row">
                <h2>{t("Software distribution")}</h2>
                <label class="inline push">
                    {t("Group")}
                    <input name="distribution-group" prop:value=move || group.get() placeholder=t("Whole fleet")
                        on:change=move |ev| group.set(event_target_value(&ev)) />
                </label>
            </div>
            {loaded(distribution, |d: SoftwareDistribution| {
                let total: i64 = d.versions.iter().map(|v| v.devices).sum();
                if total == 0 {
                    return view! { <p class="state empty">{t("No devices match.")}</p> }.into_any();
                }
                view! {
                    <table class="table">
                        <thead>
                            <tr>
                                <th scope="col">{t("Version")}</th>
                                <th scope="col" class="num">{t("Devices")}</th>
                                <th scope="col" class="num">{t("Online")}</th>
                                <th scope="col" class="share-col">{t("Share")}</th>
                            </tr>
                        </thead>
                        <tbody>
                            {d.versions.into_iter().map(|v| {
                                let percent = v.devices as f64 * 100.0 / total as f64;
                                let key = v.version.clone().unwrap_or_default();
                                view! {
                                    <tr data-version=key>
                                        <td>{match v.version {
                                            Some(version) => view! { <code>{version}</code> }.into_any(),
                                            None => view! { <span class="muted">{t("Never reported")}</span> }.into_any(),
                                        }}</td>
                                        <td class="num" data-testid="version-devices">{v.devices}</td>
                                        <td class="num">{v.connected}</td>
                                        <td>
                                            <div class="progress" role="img" aria-label=format!("{percent:.0}%")>
                                                <span class="segment segment-succeeded" style=format!("width: {percent:.2}%")></span>
                                            </div>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }
                .into_any()
            })}
        </section>
    }
}

/// Registers one device and offers its bundle.
#[component]
fn RegisterForm() -> impl IntoView {
    let name = RwSignal::new(String::new());
    let thing_type = RwSignal::new(String::new());
    let attributes = RwSignal::new(String::new());
    let groups = RwSignal::new(String::new());
    let version = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    let registered = RwSignal::new(None::<RegisteredDevice>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let request = match registration(
            &name.get_untracked(),
            &thing_type.get_untracked(),
            &attributes.get_untracked(),
            &groups.get_untracked(),
            &version.get_untracked(),
        ) {
            Ok(request) => request,
            Err((field, message)) => {
                error.set(Some(ApiError {
                    message: tr("The device was not registered.").to_owned(),
                    fields: vec![flotilla_api::FieldError {
                        field: field.to_owned(),
                        message: tr(message).to_owned(),
                    }],
                    code: None,
                }));
                return;
            }
        };
        busy.set(true);
        spawn_local(async move {
            let result = api::post::<_, RegisteredDevice>("/api/v1/devices", &request).await;
            busy.set(false);
            match result {
                Ok(device) => {
                    error.set(None);
                    notify(
                        true,
                        format!("{} {}", tr("Device registered:"), device.name),
                    );
                    for field in [name, thing_type, attributes, groups, version] {
                        field.set(String::new());
                    }
                    registered.set(Some(device));
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <form class="card" data-testid="register-device" on:submit=submit>
            <div class="card-header"><h2>{t("Register a device")}</h2></div>
            <div class="card-body grid">
                {register_field(t("Name"), "name", name, "pump-0042", error)}
                {register_field(t("Thing type"), "thing_type", thing_type, "", error)}
                {register_field(t("Attributes (key=value;…)"), "attributes", attributes, "site=berlin;hw=rev-2", error)}
                {register_field(t("Groups (comma-separated)"), "groups", groups, "", error)}
                {register_field(t("Software version"), "software_version", version, "1.0.0", error)}
                {move || error.get().filter(|e| e.fields.is_empty()).map(|e| view! { <div class="wide">{error_box(&e)}</div> })}
            </div>
            <div class="actions card-footer">
                <button type="submit" class="button primary" disabled=move || busy.get()>{t("Register")}</button>
            </div>
            {move || registered.get().map(|device| view! {
                <div class="card-body bundle" data-testid="registered" data-thing=device.name.clone()>
                    <p><strong>{device.name.clone()}</strong> " " {t("is registered.")} " "
                        <a href=Route::Device(device.name.clone()).href()>{t("Open the device")}</a></p>
                    <p class="warn" role="note">
                        {t("The bundle holds the device's private key and can be downloaded once, until")}
                        " " {format_time(&device.bundle_expires_at)} " UTC."
                    </p>
                    <BundleButton name=device.name.clone() token=device.bundle_token.clone() />
                </div>
            })}
        </form>
    }
}

/// One input of the registration form, with the API's message for its field.
fn register_field(
    label: impl Fn() -> &'static str + Copy + Send + Sync + 'static,
    field: &'static str,
    value: RwSignal<String>,
    hint: &'static str,
    error: RwSignal<Option<ApiError>>,
) -> impl IntoView {
    let problem = move || error.with(|e| e.as_ref().and_then(|e| field_message(e, field)));
    let err_id = format!("err-register-{field}");
    view! {
        <label class="field">
            <span>{label}</span>
            <input name=format!("register-{field}") bind:value=value placeholder=hint
                aria-invalid=move || problem().is_some().to_string()
                aria-describedby=err_id.clone() />
            <span class="field-error" id=err_id>{problem}</span>
        </label>
    }
}

/// Registers the devices of a CSV file and shows each row's result, or every problem.
#[component]
fn ImportForm() -> impl IntoView {
    let result = RwSignal::new(None::<Result<ImportResult, ApiError>>);
    let busy = RwSignal::new(false);
    let on_file = move |ev: leptos::ev::Event| {
        let Some(file) = ev
            .target()
            .and_then(|target| target.dyn_into::<web_sys::HtmlInputElement>().ok())
            .and_then(|input| input.files())
            .and_then(|files| files.get(0))
        else {
            return;
        };
        busy.set(true);
        result.set(None);
        spawn_local(async move {
            let text = wasm_bindgen_futures::JsFuture::from(file.text())
                .await
                .ok()
                .and_then(|v| v.as_string());
            let outcome = match text {
                Some(text) => {
                    api::post_text::<ImportResult>("/api/v1/devices/import", "text/csv", text).await
                }
                None => Err(ApiError::new(tr("The file could not be read."))),
            };
            busy.set(false);
            result.set(Some(outcome));
        });
    };
    view! {
        <section class="card" data-testid="import-devices">
            <div class="card-header"><h2>{t("Import devices from CSV")}</h2></div>
            <div class="card-body">
                <p class="muted">
                    {t("Columns: name, thing_type, attributes (key=value;…), groups (a;b), software_version; a header line first. A file with any problem registers nothing.")}
                </p>
                <label class="field">
                    <span>{t("CSV file")}</span>
                    <input type="file" name="import-file" accept=".csv,text/csv" on:change=on_file disabled=move || busy.get() />
                </label>
                {move || busy.get().then(|| view! { <p class="state loading">{t("Importing…")}</p> })}
                {move || result.get().map(|r| match r {
                    Err(e) => view! { <div data-testid="import-errors">{field_errors_box(&e)}</div> }.into_any(),
                    Ok(result) => view! { <ImportRows result /> }.into_any(),
                })}
            </div>
        </section>
    }
}

#[component]
fn ImportRows(result: ImportResult) -> impl IntoView {
    view! {
        <p data-testid="import-summary">
            {result.created} " " {t("registered")} ", " {result.failed} " " {t("failed")}
        </p>
        <table class="table">
            <thead>
                <tr>
                    <th scope="col" class="num">{t("Line")}</th>
                    <th scope="col">{t("Device")}</th>
                    <th scope="col">{t("Result")}</th>
                    <th scope="col">{t("Bundle")}</th>
                </tr>
            </thead>
            <tbody>
                {result.rows.into_iter().map(|row| view! {
                    <tr data-thing=row.name.clone() data-status=row.status.clone()>
                        <td class="num">{row.line}</td>
                        <td>{row.name.clone()}</td>
                        <td>
                            {match row.status.as_str() {
                                "created" => t("Created")(),
                                "exists" => t("Registered before")(),
                                _ => t("Failed")(),
                            }}
                            {row.message.map(|m| view! { <div class="description">{m}</div> })}
                        </td>
                        <td>{row.bundle_token.map(|token| view! { <BundleButton name=row.name.clone() token /> })}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// Thing groups with their member counts, and a form for a static or dynamic group.
#[component]
fn Groups(changed: RwSignal<u64>) -> impl IntoView {
    let groups = LocalResource::new(move || {
        changed.track();
        api::get::<ThingGroupList>("/api/v1/thing-groups?limit=100")
    });
    view! {
        <section class="card" data-testid="groups">
            <div class="card-header"><h2>{t("Thing groups")}</h2></div>
            {loaded(groups, |list: ThingGroupList| {
                if list.groups.is_empty() {
                    return view! { <p class="state empty">{t("No groups yet.")}</p> }.into_any();
                }
                view! {
                    <table class="table">
                        <thead>
                            <tr>
                                <th scope="col">{t("Group")}</th>
                                <th scope="col" class="num">{t("Members")}</th>
                            </tr>
                        </thead>
                        <tbody>
                            {list.groups.into_iter().map(|g| view! {
                                <tr data-group=g.name.clone()>
                                    <td>{g.name.clone()}</td>
                                    <td class="num">{g.member_count}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }
                .into_any()
            })}
            {may(Act::ManageFleet).then(|| view! { <GroupForm changed /> })}
        </section>
    }
}

#[component]
fn GroupForm(changed: RwSignal<u64>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let dynamic = RwSignal::new(false);
    let parent = RwSignal::new(String::new());
    let query = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let some = |s: String| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let group = CreateGroup {
            name: name.get_untracked().trim().to_owned(),
            parent: (!dynamic.get_untracked())
                .then(|| some(parent.get_untracked()))
                .flatten(),
            description: None,
            query: if dynamic.get_untracked() {
                Some(query.get_untracked().trim().to_owned())
            } else {
                None
            },
        };
        busy.set(true);
        spawn_local(async move {
            let result = api::post::<_, CreateGroup>("/api/v1/thing-groups", &group).await;
            busy.set(false);
            match result {
                Ok(group) => {
                    error.set(None);
                    notify(true, format!("{} {}", tr("Group created:"), group.name));
                    name.set(String::new());
                    query.set(String::new());
                    parent.set(String::new());
                    changed.update(|v| *v += 1);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let problem = move |field: &'static str| {
        move || error.with(|e| e.as_ref().and_then(|e| field_message(e, field)))
    };
    view! {
        <form class="card-body grid" data-testid="create-group" on:submit=submit>
            <label class="field">
                <span>{t("Group name")}</span>
                <input name="group-name" bind:value=name required
                    aria-invalid=move || problem("name")().is_some().to_string() aria-describedby="err-group-name" />
                <span class="field-error" id="err-group-name">{problem("name")}</span>
            </label>
            <fieldset class="choice">
                <legend>{t("Kind")}</legend>
                <label class="check">
                    <input type="radio" name="group-kind" value="static" prop:checked=move || !dynamic.get()
                        on:change=move |_| dynamic.set(false) />
                    {t("Static (members added by name)")}
                </label>
                <label class="check">
                    <input type="radio" name="group-kind" value="dynamic" prop:checked=move || dynamic.get()
                        on:change=move |_| dynamic.set(true) />
                    {t("Dynamic (members found by a query)")}
                </label>
            </fieldset>
            {move || if dynamic.get() {
                view! {
                    <label class="field wide">
                        <span>{t("Query")}</span>
                        <input name="group-query" bind:value=query placeholder="attributes.site:berlin AND thingTypeName:pump"
                            aria-invalid=move || problem("query")().is_some().to_string() aria-describedby="err-group-query" />
                        <span class="field-error" id="err-group-query" data-testid="group-query-error">{problem("query")}</span>
                    </label>
                }.into_any()
            } else {
                view! {
                    <label class="field">
                        <span>{t("Parent group (optional)")}</span>
                        <input name="group-parent" bind:value=parent
                            aria-invalid=move || problem("parent")().is_some().to_string() aria-describedby="err-group-parent" />
                        <span class="field-error" id="err-group-parent">{problem("parent")}</span>
                    </label>
                }.into_any()
            }}
            {move || error.get().filter(|e| e.fields.is_empty()).map(|e| view! { <div class="wide">{error_box(&e)}</div> })}
            <div class="actions wide">
                <button type="submit" class="button primary" disabled=move || busy.get()>{t("Create group")}</button>
            </div>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_pairs_and_lists_parse_as_the_csv_writes_them() {
        let pairs = parse_pairs(" site=berlin; hw = rev-2 ;;\nnote=a=b").unwrap();
        assert_eq!(pairs["site"], "berlin");
        assert_eq!(pairs["hw"], "rev-2");
        assert_eq!(pairs["note"], "a=b");
        assert_eq!(parse_pairs("site"), Err("site".into()));
        assert_eq!(parse_pairs("=x"), Err("=x".into()));
        assert!(parse_pairs("  ").unwrap().is_empty());
        assert_eq!(parse_list("a, b;c  a\nd"), ["a", "b", "c", "d"]);
    }

    #[test]
    fn the_search_url_carries_only_the_filters_given() {
        let all = Filters::default();
        assert_eq!(
            search_url(&all, None).unwrap(),
            format!("/api/v1/devices?limit={PAGE_SIZE}")
        );
        let some = Filters {
            name: " sim-0".into(),
            attributes: "site=new york;hw=r2".into(),
            group: "europe".into(),
            connectivity: "offline".into(),
            last_job: "FAILED".into(),
            ..Filters::default()
        };
        assert_eq!(
            search_url(&some, Some("sim-0025")).unwrap(),
            "/api/v1/devices?limit=25&name=sim-0&group=europe&connectivity=offline\
             &last_job=FAILED&after=sim-0025&attr.hw=r2&attr.site=new%20york"
        );
        let bad = Filters {
            attributes: "site".into(),
            ..Filters::default()
        };
        assert_eq!(search_url(&bad, None), Err("site".into()));
    }

    #[test]
    fn a_registration_is_read_from_the_form() {
        let device = registration("  pump-1 ", "", "site=berlin", "a, b", " 1.2.0 ").unwrap();
        assert_eq!(device.name, "pump-1");
        assert_eq!(device.thing_type, None);
        assert_eq!(device.attributes["site"], "berlin");
        assert_eq!(device.groups, ["a", "b"]);
        assert_eq!(device.software_version.as_deref(), Some("1.2.0"));
        assert_eq!(registration(" ", "", "", "", "").unwrap_err().0, "name");
        assert_eq!(
            registration("p", "", "site", "", "").unwrap_err().0,
            "attributes"
        );
    }
}
