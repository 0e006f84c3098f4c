//! What every page shares: the app context (language, theme, role, notices), the progress bar
//! and status pills, the loading and error states, and the confirmation dialog.
//!
//! Progress bars carry `data-percent` and status cells a `status-<status>` class so browser
//! tests can find them without depending on text or layout.

use flotilla_api::{ExecutionCounts, JobStatus};
use leptos::prelude::*;

use crate::api::{ApiError, ApiResult};
use crate::i18n::{Lang, translate};
use crate::perm::{Act, Role};

/// The colour scheme: the system's unless the person picked one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    System,
    Light,
    Dark,
}

impl Theme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Light => "light",
            Self::Dark => "dark",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "light" => Self::Light,
            "dark" => Self::Dark,
            _ => Self::System,
        }
    }
}

/// The app-wide state every page reads, provided as context.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub lang: RwSignal<Lang>,
    pub theme: RwSignal<Theme>,
    pub role: RwSignal<Role>,
    pub sign_in: RwSignal<SignIn>,
    /// The latest notice: whether it reports success, and its text.
    pub notice: RwSignal<Option<(bool, String)>>,
}

/// What the page knows of the sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    /// `GET /api/v1/me` has not answered yet.
    Unknown,
    /// Nobody is signed in: the page offers the server's sign-in.
    SignedOut,
    /// Signed in with the server's own sign-in (OpenID Connect), which the page can end.
    Session,
    /// Signed in otherwise (a proxy in front, development sign-in): nothing to end here.
    Other,
}

thread_local! {
    static CTX: std::cell::OnceCell<Ctx> = const { std::cell::OnceCell::new() };
}

/// Makes `ctx` the app's context. Kept outside Leptos' owner tree too, because actions read it
/// after an `await` in a spawned task, where there is no owner to ask.
pub fn set_ctx(ctx: Ctx) {
    CTX.with(|cell| {
        let _ = cell.set(ctx);
    });
    provide_context(ctx);
}

pub fn ctx() -> Ctx {
    CTX.with(|cell| {
        *cell
            .get()
            .expect("App sets the context before anything reads it")
    })
}

/// A text in the chosen language, as a reactive view or attribute value.
pub fn t(key: &'static str) -> impl Fn() -> &'static str + Copy + Send + Sync + 'static {
    let lang = ctx().lang;
    move || translate(lang.get(), key)
}

/// The text of `key` in the current language, read once (for building strings).
pub fn tr(key: &'static str) -> &'static str {
    translate(ctx().lang.get_untracked(), key)
}

/// Whether the signed-in person may `act`.
pub fn may(act: Act) -> bool {
    ctx().role.get().allows(act)
}

/// Shows a notice in the page's live region.
pub fn notify(ok: bool, text: impl Into<String>) {
    ctx().notice.set(Some((ok, text.into())));
}

/// Renders a resource: a loading line, the error, or `view` of the value (kept on screen
/// while a refetch runs).
pub fn loaded<T, V>(
    resource: LocalResource<ApiResult<T>>,
    view: impl Fn(T) -> V + Send + Sync + 'static,
) -> impl IntoView
where
    T: Clone + 'static,
    V: IntoView + 'static,
{
    move || match resource.get() {
        None => view! { <p class="state loading">{t("Loading…")}</p> }.into_any(),
        Some(Err(e)) => error_box(&e).into_any(),
        Some(Ok(value)) => view(value).into_any(),
    }
}

/// Makes the browser save `text` as `file` of type `mime`.
pub fn save_file(file: &str, mime: &str, text: &str) -> Result<(), wasm_bindgen::JsValue> {
    use wasm_bindgen::JsCast as _;
    let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    let link: web_sys::HtmlAnchorElement = document().create_element("a")?.unchecked_into();
    link.set_href(&url);
    link.set_download(file);
    link.click();
    web_sys::Url::revoke_object_url(&url)
}

/// An error as an alert.
pub fn error_box(e: &ApiError) -> impl IntoView + use<> {
    view! { <div class="state error" role="alert">{e.to_string()}</div> }
}

/// An error as an alert that lists the API's field messages one per line (a CSV import's
/// `line 5.attributes`, say) instead of joining them.
pub fn field_errors_box(e: &ApiError) -> impl IntoView + use<> {
    let fields = e.fields.clone();
    view! {
        <div class="state error" role="alert">
            <p>{e.message.clone()}</p>
            {(!fields.is_empty()).then(|| view! {
                <ul class="field-errors">
                    {fields.into_iter().map(|f| view! {
                        <li data-field=f.field.clone()><code>{f.field.clone()}</code>": "{f.message.clone()}</li>
                    }).collect_view()}
                </ul>
            })}
        </div>
    }
}

/// The API's message for `field`, if it sent one.
pub fn field_message(e: &ApiError, field: &str) -> Option<String> {
    e.fields
        .iter()
        .find(|f| f.field == field || f.field.starts_with(&format!("{field}.")))
        .map(|f| f.message.clone())
}

/// A job's status as a coloured pill.
#[component]
pub fn JobPill(status: JobStatus) -> impl IntoView {
    view! {
        <span class=format!("pill {}", status_class(status.as_str())) data-status=status.as_str()>
            {t(job_status_label(status))}
        </span>
    }
}

/// Any status string (executions, rollouts, waves) as a pill.
#[component]
pub fn Pill(#[prop(into)] status: String) -> impl IntoView {
    let label = status_label(&status);
    view! {
        <span class=format!("pill {}", status_class(&status)) data-status=status.clone()>
            {t(label)}
        </span>
    }
}

/// A bar split into succeeded, failed, in-progress and queued executions, each as wide as its
/// share of all executions (canceled and removed ones leave the rest of the track empty).
#[component]
pub fn ProgressBar(counts: ExecutionCounts) -> impl IntoView {
    let segments = segments(&counts)
        .into_iter()
        .filter(|segment| segment.count > 0)
        .map(|segment| {
            view! {
                <span
                    class=format!("segment segment-{}", segment.kind)
                    style=format!("width: {:.2}%", segment.percent)
                    title=format!("{} {}", segment.count, segment.label)
                ></span>
            }
        })
        .collect_view();
    view! {
        <div
            class="progress"
            role="img"
            aria-label=progress_label(&counts)
            data-percent=done_percent(&counts).to_string()
        >
            {segments}
        </div>
    }
}

/// The counts as labelled numbers.
#[component]
pub fn CountList(counts: ExecutionCounts) -> impl IntoView {
    let items = [
        ("succeeded", "Succeeded", counts.succeeded),
        ("failed", "Failed", failed(&counts)),
        ("in-progress", "In progress", counts.in_progress),
        ("queued", "Queued", counts.queued),
        ("canceled", "Canceled", counts.canceled + counts.removed),
    ];
    view! {
        <dl class="counts">
            {items
                .into_iter()
                .map(|(kind, label, n)| {
                    view! {
                        <div class=format!("count count-{kind}")>
                            <dt>{t(label)}</dt>
                            <dd>{n}</dd>
                        </div>
                    }
                })
                .collect_view()}
            <div class="count count-total">
                <dt>{t("Total")}</dt>
                <dd>{counts.total()}</dd>
            </div>
        </dl>
    }
}

/// Whether a confirmation asks for a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    None,
    Optional,
    Required,
}

/// A modal confirmation (the browser's `<dialog>`: it keeps focus inside and closes on
/// Escape). `on_confirm` gets the reason and whether "force" was ticked.
#[component]
pub fn Confirm(
    title: String,
    message: String,
    reason: Reason,
    /// Offer a "force" checkbox with this label.
    force_label: Option<&'static str>,
    confirm_label: &'static str,
    #[prop(optional)] danger: bool,
    on_confirm: Callback<(String, bool)>,
    on_close: Callback<()>,
) -> impl IntoView {
    let dialog = NodeRef::<leptos::html::Dialog>::new();
    let text = RwSignal::new(String::new());
    let force = RwSignal::new(false);
    let busy = RwSignal::new(false);
    Effect::new(move |_| {
        if let Some(d) = dialog.get()
            && !d.open()
        {
            let _ = d.show_modal();
        }
    });
    let missing = move || reason == Reason::Required && text.get().trim().is_empty();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if missing() || busy.get() {
            return;
        }
        busy.set(true);
        on_confirm.run((text.get().trim().to_owned(), force.get()));
    };
    view! {
        <dialog
            node_ref=dialog
            class="dialog"
            aria-labelledby="dialog-title"
            on:close=move |_| on_close.run(())
        >
            <form on:submit=submit>
                <h2 id="dialog-title">{title}</h2>
                <p>{message}</p>
                {(reason != Reason::None)
                    .then(|| {
                        view! {
                            <label class="field">
                                <span>
                                    {t("Reason")}
                                    {(reason == Reason::Required)
                                        .then(|| view! { <span class="muted">" " {t("(required)")}</span> })}
                                </span>
                                <textarea name="reason" rows="3" bind:value=text required=reason == Reason::Required></textarea>
                            </label>
                        }
                    })}
                {force_label
                    .map(|label| {
                        view! {
                            <label class="check">
                                <input type="checkbox" name="force" bind:checked=force />
                                {t(label)}
                            </label>
                        }
                    })}
                <div class="actions">
                    <button type="button" class="button" on:click=move |_| on_close.run(())>
                        {t("Back")}
                    </button>
                    <button
                        type="submit"
                        class="button primary"
                        class:danger=danger
                        disabled=move || missing() || busy.get()
                    >
                        {t(confirm_label)}
                    </button>
                </div>
            </form>
        </dialog>
    }
}

/// One part of the progress bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// The CSS suffix: `segment-<kind>`.
    pub kind: &'static str,
    /// How a person calls these executions.
    pub label: &'static str,
    pub count: i64,
    /// The share of all executions, 0 to 100.
    pub percent: f64,
}

/// The progress bar's parts, in the order they are drawn.
pub fn segments(counts: &ExecutionCounts) -> [Segment; 4] {
    let total = counts.total();
    let segment = |kind, label, count: i64| Segment {
        kind,
        label,
        count,
        percent: if total > 0 {
            count as f64 * 100.0 / total as f64
        } else {
            0.0
        },
    };
    [
        segment("succeeded", "succeeded", counts.succeeded),
        segment("failed", "failed", failed(counts)),
        segment("in-progress", "in progress", counts.in_progress),
        segment("queued", "queued", counts.queued),
    ]
}

/// Executions that ended badly: failed, rejected by the device or timed out.
pub fn failed(counts: &ExecutionCounts) -> i64 {
    counts.failed + counts.rejected + counts.timed_out
}

/// The share of executions that reached a terminal state, 0 to 100, rounded down.
pub fn done_percent(counts: &ExecutionCounts) -> i64 {
    let total = counts.total();
    if total == 0 {
        0
    } else {
        counts.finished() * 100 / total
    }
}

/// The progress bar as a sentence, for screen readers.
pub fn progress_label(counts: &ExecutionCounts) -> String {
    let parts: Vec<String> = segments(counts)
        .iter()
        .map(|s| format!("{} {}", s.count, s.label))
        .collect();
    format!("{} of {} executions", parts.join(", "), counts.total())
}

/// The CSS class of a status: `status-in-progress`, `status-timed-out`, …
pub fn status_class(status: &str) -> String {
    format!("status-{}", status.to_ascii_lowercase().replace('_', "-"))
}

/// A job status as a person reads it: `IN_PROGRESS` becomes "In progress".
pub fn job_status_label(status: JobStatus) -> &'static str {
    status_label(status.as_str())
}

/// Any status of a job, execution, rollout or wave as a person reads it.
pub fn status_label(status: &str) -> &'static str {
    match status {
        "IN_PROGRESS" | "in_progress" => "In progress",
        "CANCELED" | "canceled" => "Canceled",
        "COMPLETED" | "completed" => "Completed",
        "DELETION_IN_PROGRESS" => "Deleting",
        "SCHEDULED" => "Scheduled",
        "QUEUED" => "Queued",
        "SUCCEEDED" => "Succeeded",
        "FAILED" | "failed" => "Failed",
        "REJECTED" => "Rejected",
        "TIMED_OUT" => "Timed out",
        "REMOVED" => "Removed",
        "running" => "Running",
        "paused" => "Paused",
        "following" => "Following",
        "rolling_back" => "Rolling back",
        "rolled_back" => "Rolled back",
        "pending" => "Pending",
        "verifying" => "Verifying",
        "awaiting_approval" => "Awaiting approval",
        "passed" => "Passed",
        _ => "Unknown",
    }
}

/// `2026-05-01T12:34:56.789Z` becomes `2026-05-01 12:34:56`; anything unexpected is shown as is.
pub fn format_time(time: &str) -> String {
    match time.get(..19) {
        Some(prefix) if time.as_bytes().get(10) == Some(&b'T') => prefix.replacen('T', " ", 1),
        _ => time.to_owned(),
    }
}

/// An ordering key for the RFC 3339 UTC times the API sends: the seconds, then the fraction.
///
/// Comparing whole strings would misorder `…:01Z` and `…:01.5Z`, because `Z` sorts after `.`.
pub fn time_key(time: &str) -> (&str, &str) {
    let seconds = time.get(..19).unwrap_or(time);
    let fraction = time
        .get(19..)
        .and_then(|rest| rest.strip_prefix('.'))
        .map(|rest| {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            &rest[..digits]
        })
        .unwrap_or("");
    (seconds, fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_shares_of_all_executions() {
        let counts = ExecutionCounts {
            queued: 1,
            in_progress: 1,
            succeeded: 4,
            failed: 1,
            rejected: 1,
            timed_out: 1,
            canceled: 1,
            ..ExecutionCounts::default()
        };
        let [succeeded, failed, in_progress, queued] = segments(&counts);
        assert_eq!((succeeded.count, succeeded.percent), (4, 40.0));
        assert_eq!((failed.count, failed.percent), (3, 30.0));
        assert_eq!((in_progress.count, in_progress.percent), (1, 10.0));
        assert_eq!((queued.count, queued.percent), (1, 10.0));
        assert_eq!(done_percent(&counts), 80);
    }

    #[test]
    fn a_job_without_executions_has_an_empty_bar() {
        let counts = ExecutionCounts::default();
        assert!(segments(&counts).iter().all(|s| s.percent == 0.0));
        assert_eq!(done_percent(&counts), 0);
        assert_eq!(
            progress_label(&counts),
            "0 succeeded, 0 failed, 0 in progress, 0 queued of 0 executions"
        );
    }

    #[test]
    fn status_classes_are_kebab_case() {
        assert_eq!(status_class("IN_PROGRESS"), "status-in-progress");
        assert_eq!(
            status_class("awaiting_approval"),
            "status-awaiting-approval"
        );
        assert_eq!(status_label("TIMED_OUT"), "Timed out");
        assert_eq!(status_label("rolling_back"), "Rolling back");
        assert_eq!(status_label("something new"), "Unknown");
    }

    #[test]
    fn times_are_shown_to_the_second_and_ordered_by_instant() {
        assert_eq!(
            format_time("2026-05-01T12:34:56.789Z"),
            "2026-05-01 12:34:56"
        );
        assert_eq!(format_time("yesterday"), "yesterday");
        assert!(time_key("2026-05-01T10:00:01.5Z") > time_key("2026-05-01T10:00:01Z"));
    }

    #[test]
    fn themes_round_trip() {
        for theme in [Theme::System, Theme::Light, Theme::Dark] {
            assert_eq!(Theme::parse(theme.as_str()), theme);
        }
        assert_eq!(Theme::parse("purple"), Theme::System);
    }
}
