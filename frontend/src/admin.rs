//! Templates, artifacts, the audit log (filters, paging, CSV export) and settings.

use flotilla_api::artifacts::ArtifactList;
use flotilla_api::{AuditEntry, AuditPage, SaveTemplate, Template, TemplateList};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, encode};
use crate::i18n::Lang;
use crate::perm::Act;
use crate::ui::{Theme, ctx, error_box, format_time, loaded, may, notify, t, tr};
use crate::upload::UploadArtifact;

/// The most audit entries one CSV export reads (20 pages of 500).
const CSV_PAGES: usize = 20;

#[component]
pub fn TemplatesPage() -> impl IntoView {
    let templates = LocalResource::new(|| api::get::<TemplateList>("/api/v1/templates"));
    let id = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let document = RwSignal::new("{\n  \"operation\": \"simulate\"\n}".to_owned());
    let error = RwSignal::new(None::<api::ApiError>);
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let document = match serde_json::from_str(&document.get_untracked()) {
            Ok(doc) => doc,
            Err(e) => {
                error.set(Some(api::ApiError::new(format!(
                    "{}: {e}",
                    tr("The document is not valid JSON")
                ))));
                return;
            }
        };
        let body = SaveTemplate {
            template_id: Some(id.get_untracked().trim().to_owned()),
            description: Some(description.get_untracked()).filter(|d| !d.trim().is_empty()),
            document,
            parameters: Vec::new(),
        };
        spawn_local(async move {
            match api::post::<_, Template>("/api/v1/templates", &body).await {
                Ok(saved) => {
                    error.set(None);
                    notify(
                        true,
                        format!("{} {}", tr("Template saved:"), saved.template_id),
                    );
                    templates.refetch();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <h1>{t("Templates")}</h1>
        <section class="card">
            {loaded(templates, |list: TemplateList| {
                if list.templates.is_empty() {
                    return view! { <p class="state empty">{t("No templates yet.")}</p> }.into_any();
                }
                view! {
                    <table class="table">
                        <thead>
                            <tr>
                                <th scope="col">{t("Template")}</th>
                                <th scope="col" class="num">{t("Version")}</th>
                                <th scope="col">{t("Parameters")}</th>
                                <th scope="col">{t("Document")}</th>
                            </tr>
                        </thead>
                        <tbody>
                            {list.templates.into_iter().map(|tpl| view! {
                                <tr data-template=tpl.template_id.clone()>
                                    <td>
                                        <code>{tpl.template_id.clone()}</code>
                                        {tpl.description.map(|d| view! { <div class="description">{d}</div> })}
                                    </td>
                                    <td class="num">{tpl.version}</td>
                                    <td>{tpl.parameters.iter().map(|p| format!("{} ({})", p.name, p.kind)).collect::<Vec<_>>().join(", ")}</td>
                                    <td>
                                        <details>
                                            <summary>{t("Show")}</summary>
                                            <pre class="code" tabindex="0">{serde_json::to_string_pretty(&tpl.document).unwrap_or_default()}</pre>
                                        </details>
                                    </td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }
                .into_any()
            })}
        </section>
        {may(Act::Deploy).then(|| view! {
            <form class="card" on:submit=save>
                <div class="card-header"><h2>{t("New template")}</h2></div>
                <div class="card-body grid">
                    <label class="field"><span>{t("Template id")}</span><input name="template-id" bind:value=id required /></label>
                    <label class="field"><span>{t("Description")}</span><input name="template-description" bind:value=description /></label>
                    <label class="field wide"><span>{t("Job document (JSON)")}</span><textarea name="template-document" rows="6" bind:value=document></textarea></label>
                    {move || error.get().map(|e| error_box(&e))}
                </div>
                <div class="actions card-footer"><button type="submit" class="button primary">{t("Save")}</button></div>
            </form>
        })}
    }
}

#[component]
pub fn ArtifactsPage() -> impl IntoView {
    let artifacts = LocalResource::new(|| api::get::<ArtifactList>("/api/v1/artifacts"));
    view! {
        <h1>{t("Artifacts")}</h1>
        {may(Act::Deploy).then(|| view! {
            <UploadArtifact on_done=Callback::new(move |()| artifacts.refetch()) />
        })}
        <section class="card">
            {loaded(artifacts, |list: ArtifactList| {
                if list.artifacts.is_empty() {
                    return view! { <p class="state empty">{t("No artifacts yet.")}</p> }.into_any();
                }
                view! {
                    <table class="table">
                        <thead>
                            <tr>
                                <th scope="col">{t("Name")}</th>
                                <th scope="col">{t("Version")}</th>
                                <th scope="col" class="num">{t("Size")}</th>
                                <th scope="col">"SHA-256"</th>
                                <th scope="col">{t("Uploaded (UTC)")}</th>
                            </tr>
                        </thead>
                        <tbody>
                            {list.artifacts.into_iter().map(|a| view! {
                                <tr data-artifact=a.id.clone()>
                                    <td>{a.name.clone()} <div class="muted">{a.hardware_types.join(", ")}</div></td>
                                    <td>{a.version.clone()}</td>
                                    <td class="num">{human_size(a.size)}</td>
                                    <td><code title=a.sha256.clone()>{a.sha256.get(..12).unwrap_or_default().to_owned()} "…"</code></td>
                                    <td class="muted">{format_time(&a.created_at)} " · " {a.uploader.clone()}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }
                .into_any()
            })}
        </section>
    }
}

/// `1536` becomes `1.5 KiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

/// The audit filters as a query string (without `?`).
fn audit_query(filters: &[(&str, String)], before: Option<i64>, limit: usize) -> String {
    let mut query = format!("limit={limit}");
    for (key, value) in filters {
        if !value.trim().is_empty() {
            query.push_str(&format!("&{key}={}", encode(value.trim())));
        }
    }
    if let Some(before) = before {
        query.push_str(&format!("&before={before}"));
    }
    query
}

/// One CSV field: quoted when it holds a separator, quote or line break; a leading `=`, `+`,
/// `-` or `@` is escaped with `'` so spreadsheets do not run it as a formula.
pub fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// The audit entries as CSV (RFC 4180, CRLF line ends), with a header row.
pub fn audit_csv(entries: &[AuditEntry]) -> String {
    let mut out = String::from("id,at,actor,action,target,status,outcome,source,request\r\n");
    for e in entries {
        let request = e
            .request
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default();
        let fields = [
            e.id.to_string(),
            e.at.clone(),
            e.actor.clone(),
            e.action.clone(),
            e.target.clone(),
            e.status.to_string(),
            e.outcome.clone(),
            e.source.clone().unwrap_or_default(),
            request,
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let action = RwSignal::new(String::new());
    let target = RwSignal::new(String::new());
    let outcome = RwSignal::new(String::new());
    let actor = RwSignal::new(String::new());
    let pages = RwSignal::new(vec![None::<i64>]);
    let filters = move || {
        vec![
            ("action", action.get()),
            ("target", target.get()),
            ("outcome", outcome.get()),
            ("actor", actor.get()),
        ]
    };
    Effect::new(move |_| {
        filters();
        pages.set(vec![None]);
    });
    let page = LocalResource::new(move || {
        let query = audit_query(&filters(), pages.get().last().copied().flatten(), 50);
        async move { api::get::<AuditPage>(&format!("/api/v1/audit?{query}")).await }
    });
    let export = move |_| {
        let filters = filters();
        spawn_local(async move {
            let mut all = Vec::new();
            let mut before = None;
            for _ in 0..CSV_PAGES {
                let query = audit_query(&filters, before, 500);
                match api::get::<AuditPage>(&format!("/api/v1/audit?{query}")).await {
                    Ok(page) => {
                        all.extend(page.entries);
                        match page.next_before {
                            Some(next) => before = Some(next),
                            None => break,
                        }
                    }
                    Err(e) => return notify(false, e.to_string()),
                }
            }
            match crate::ui::save_file(
                "flotilla-audit.csv",
                "text/csv;charset=utf-8",
                &audit_csv(&all),
            ) {
                Ok(()) => notify(true, format!("{} {}", tr("Entries exported:"), all.len())),
                Err(e) => notify(false, format!("{e:?}")),
            }
        });
    };
    let filter = move |label: &'static str, name: &'static str, signal: RwSignal<String>| {
        view! {
            <label class="inline">{t(label)}<input name=name type="search" bind:value=signal /></label>
        }
    };
    view! {
        <h1>{t("Audit log")}</h1>
        <section class="card">
            <div class="toolbar">
                {filter("Action", "audit-action", action)}
                {filter("Target starts with", "audit-target", target)}
                <label class="inline">
                    {t("Outcome")}
                    <select name="audit-outcome" bind:value=outcome>
                        <option value="">{t("All")}</option>
                        {["ok", "invalid_request", "not_found", "conflict", "upstream", "internal"].into_iter()
                            .map(|o| view! { <option value=o>{o}</option> }).collect_view()}
                    </select>
                </label>
                {filter("Actor", "audit-actor", actor)}
                <button type="button" class="button" data-testid="export-csv" on:click=export>{t("Export CSV")}</button>
            </div>
            {loaded(page, move |page: AuditPage| {
                let next = page.next_before;
                view! {
                    <table class="table audit">
                        <thead>
                            <tr>
                                <th scope="col">{t("When (UTC)")}</th>
                                <th scope="col">{t("Actor")}</th>
                                <th scope="col">{t("Action")}</th>
                                <th scope="col">{t("Target")}</th>
                                <th scope="col">{t("Outcome")}</th>
                            </tr>
                        </thead>
                        <tbody>
                            {page.entries.into_iter().map(|e| view! {
                                <tr data-audit-id=e.id>
                                    <td class="muted">{format_time(&e.at)}</td>
                                    <td>{e.actor.clone()}</td>
                                    <td><code>{e.action.clone()}</code></td>
                                    <td><code>{e.target.clone()}</code></td>
                                    <td class:bad-text=e.outcome != "ok">{e.outcome.clone()} " (" {e.status} ")"</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                    <div class="pager">
                        <button type="button" class="button" disabled=move || pages.with(|p| p.len() == 1)
                            on:click=move |_| pages.update(|p| { p.pop(); })>{t("Previous")}</button>
                        <button type="button" class="button" disabled=next.is_none()
                            on:click=move |_| pages.update(|p| p.push(next))>{t("Next")}</button>
                    </div>
                }
            })}
        </section>
    }
}

#[component]
pub fn SettingsPage() -> impl IntoView {
    let c = ctx();
    view! {
        <h1>{t("Settings")}</h1>
        <section class="card">
            <div class="card-body grid">
                <label class="field">
                    <span>{t("Language")}</span>
                    <select name="settings-language" prop:value=move || c.lang.get().as_str()
                        on:change=move |ev| c.lang.set(Lang::parse(&event_target_value(&ev)))>
                        <option value="en">"English"</option>
                        <option value="es">"Español"</option>
                    </select>
                </label>
                <label class="field">
                    <span>{t("Theme")}</span>
                    <select name="settings-theme" prop:value=move || c.theme.get().as_str()
                        on:change=move |ev| c.theme.set(Theme::parse(&event_target_value(&ev)))>
                        <option value="system">{t("Follow the system")}</option>
                        <option value="light">{t("Light")}</option>
                        <option value="dark">{t("Dark")}</option>
                    </select>
                </label>
                <p>
                    {t("Your role")} ": " <strong>{move || c.role.get().as_str()}</strong>
                    <span class="muted">" — " {t("actions your role may not take are hidden.")}</span>
                </p>
                <p class="muted">
                    {t("Live updates")} ": " <code>"/api/v1/stream"</code> " · " {t("API")} ": "
                    <a href="/api/v1/openapi.json">"openapi.json"</a>
                </p>
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, target: &str, request: Option<serde_json::Value>) -> AuditEntry {
        AuditEntry {
            id,
            at: "2026-01-01T00:00:00Z".into(),
            actor: "anonymous".into(),
            action: "POST /api/v1/jobs/{job_id}/cancel".into(),
            target: target.into(),
            request,
            status: 200,
            outcome: "ok".into(),
            source: None,
            role: None,
        }
    }

    #[test]
    fn csv_quotes_what_needs_quoting_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn the_audit_csv_has_a_header_and_one_row_per_entry() {
        let csv = audit_csv(&[
            entry(
                2,
                "/api/v1/jobs/a/cancel",
                Some(serde_json::json!({"comment": "x, y"})),
            ),
            entry(1, "/api/v1/jobs/b/cancel", None),
        ]);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines.len(), 4, "{csv}");
        assert_eq!(
            lines[0],
            "id,at,actor,action,target,status,outcome,source,request"
        );
        assert_eq!(
            lines[1],
            "2,2026-01-01T00:00:00Z,anonymous,POST /api/v1/jobs/{job_id}/cancel,/api/v1/jobs/a/cancel,200,ok,,\"{\"\"comment\"\":\"\"x, y\"\"}\""
        );
        assert!(lines[2].starts_with("1,") && lines[2].ends_with(",ok,,"));
        assert_eq!(lines[3], "");
    }

    #[test]
    fn audit_filters_become_a_query() {
        let filters = [("action", "POST /x".to_owned()), ("target", " ".to_owned())];
        assert_eq!(
            audit_query(&filters, Some(7), 50),
            "limit=50&action=POST%20%2Fx&before=7"
        );
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(10), "10 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
