//! Uploading a build from the browser: the file goes straight to the artifact store in
//! presigned parts (never through the server's memory), with progress, pause and resume, and
//! its SHA-256 computed on the way so the server can check it got exactly these bytes.
//!
//! The steps (see docs/artifacts.md): `POST /artifacts/uploads` gives the part URLs; each part
//! is read from the file, hashed and `PUT` to its URL; `POST …/complete` with the SHA-256
//! makes the artifact. Pausing stops after the current part. Resuming asks the server which
//! parts the store already holds (`GET /artifacts/uploads/{id}`, with fresh URLs) and sends
//! only the others; the skipped parts are read again for the hash.

use flotilla_api::artifacts::{Artifact, CompleteUpload, CreateUpload, Upload, UploadPart};
use gloo_net::http::Request;
use leptos::prelude::*;
use leptos::task::spawn_local;
use sha2::{Digest, Sha256};
use wasm_bindgen_futures::JsFuture;

use crate::admin::human_size;
use crate::api::{self, ApiError, encode};
use crate::ui::{error_box, notify, t, tr};

/// Where an upload stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Nothing chosen, or the last upload finished.
    Idle,
    /// Parts are going out.
    Sending,
    /// Stopped after a part; resume sends the rest.
    Paused,
    /// Every part is in the store; the server reads it back, checks and signs it.
    Verifying,
    /// The artifact exists.
    Done(String),
    /// The upload stopped with this error; resume tries again.
    Failed(ApiError),
}

/// The form's fields as typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UploadForm {
    pub name: String,
    pub version: String,
    /// Comma- or space-separated.
    pub hardware_types: String,
}

impl UploadForm {
    /// The `POST /artifacts/uploads` body for a file of `size` bytes and MIME type `mime`.
    pub fn request(&self, size: u64, mime: &str) -> CreateUpload {
        CreateUpload {
            name: self.name.trim().to_owned(),
            version: self.version.trim().to_owned(),
            size,
            content_type: (!mime.is_empty()).then(|| mime.to_owned()),
            hardware_types: self
                .hardware_types
                .split([',', ' ', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// What is missing before an upload can start.
    pub fn missing(&self) -> Option<&'static str> {
        if self.name.trim().is_empty() {
            Some("Choose a file.")
        } else if self.version.trim().is_empty() {
            Some("Enter the version this build installs.")
        } else {
            None
        }
    }
}

/// Bytes of `parts` the store holds, for the progress bar.
pub fn bytes_received(parts: &[UploadPart]) -> u64 {
    parts.iter().filter(|p| p.received).map(|p| p.size).sum()
}

/// Whole percent of `done` out of `total` (100 for an empty total).
pub fn percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        100
    } else {
        (u128::from(done.min(total)) * 100 / u128::from(total)) as u64
    }
}

/// The signals the page shows and the controls set.
#[derive(Clone, Copy)]
struct Transfer {
    phase: RwSignal<Phase>,
    /// Bytes in the store so far.
    sent: RwSignal<u64>,
    total: RwSignal<u64>,
    /// Set by the pause button; the loop stops before its next part.
    pause: RwSignal<bool>,
    /// The upload under way (its id), kept to resume or abandon it.
    upload_id: RwSignal<Option<String>>,
}

/// Reads bytes `part.offset .. part.offset + part.size` of `file`.
async fn read_part(file: &web_sys::File, part: &UploadPart) -> Result<Vec<u8>, ApiError> {
    let start = part.offset as f64;
    let end = (part.offset + part.size) as f64;
    let slice = file
        .slice_with_f64_and_f64(start, end)
        .map_err(|_| ApiError::new(tr("The browser could not read the file.")))?;
    let buffer = JsFuture::from(slice.array_buffer())
        .await
        .map_err(|_| ApiError::new(tr("The browser could not read the file.")))?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// PUTs one part to its presigned URL.
async fn put_part(part: &UploadPart, bytes: &[u8]) -> Result<u16, ApiError> {
    let body = js_sys::Uint8Array::from(bytes);
    let response = Request::put(&part.url)
        .body(body)
        .map_err(|e| ApiError::new(e.to_string()))?
        .send()
        .await
        .map_err(|e| ApiError::new(format!("{}: {e}", tr("Could not reach the artifact store"))))?;
    Ok(response.status())
}

/// Sends every part of `upload` the store lacks, hashing all of them, then completes it.
/// Returns `None` when paused.
async fn send(
    file: &web_sys::File,
    mut upload: Upload,
    transfer: Transfer,
) -> Result<Option<Artifact>, ApiError> {
    let mut hasher = Sha256::new();
    transfer.total.set(upload.size);
    transfer.sent.set(bytes_received(&upload.parts));
    let mut index = 0;
    // Fresh URLs asked for in a row; a store that keeps refusing is not an expiry.
    let mut renewals = 0;
    while index < upload.parts.len() {
        if transfer.pause.get_untracked() {
            return Ok(None);
        }
        let part = upload.parts[index].clone();
        let bytes = read_part(file, &part).await?;
        if bytes.len() as u64 != part.size {
            return Err(ApiError::new(tr(
                "The file changed while it was being uploaded; choose it again.",
            )));
        }
        if !part.received {
            match put_part(&part, &bytes).await? {
                200..=299 => {
                    renewals = 0;
                    transfer.sent.update(|s| *s += part.size);
                }
                // The URLs expired (a long pause, a slow link): fresh ones, same part again.
                403 if renewals < 3 => {
                    renewals += 1;
                    upload = api::get(&format!("/api/v1/artifacts/uploads/{}", encode(&upload.id)))
                        .await?;
                    continue;
                }
                status => {
                    return Err(ApiError::new(format!(
                        "{} (HTTP {status})",
                        tr("The artifact store refused a part")
                    )));
                }
            }
        }
        hasher.update(&bytes);
        index += 1;
    }
    transfer.phase.set(Phase::Verifying);
    let complete = CompleteUpload {
        sha256: hex::encode(hasher.finalize()),
    };
    let artifact = api::post(
        &format!("/api/v1/artifacts/uploads/{}/complete", encode(&upload.id)),
        &complete,
    )
    .await?;
    Ok(Some(artifact))
}

/// Runs [`send`] and records how it ended.
fn run(file: web_sys::File, upload: Upload, transfer: Transfer, on_done: Callback<()>) {
    transfer.pause.set(false);
    transfer.phase.set(Phase::Sending);
    transfer.upload_id.set(Some(upload.id.clone()));
    spawn_local(async move {
        match send(&file, upload, transfer).await {
            Ok(Some(artifact)) => {
                transfer.upload_id.set(None);
                transfer.phase.set(Phase::Done(format!(
                    "{} {}",
                    artifact.name, artifact.version
                )));
                notify(true, tr("Uploaded and signed."));
                on_done.run(());
            }
            Ok(None) => transfer.phase.set(Phase::Paused),
            Err(e) => transfer.phase.set(Phase::Failed(e)),
        }
    });
}

/// The upload form with its progress bar and controls; `on_done` runs when an artifact was
/// made.
#[component]
pub fn UploadArtifact(on_done: Callback<()>) -> impl IntoView {
    let form = RwSignal::new(UploadForm::default());
    let file = StoredValue::new_local(None::<web_sys::File>);
    let error = RwSignal::new(None::<ApiError>);
    let dragging = RwSignal::new(false);
    let transfer = Transfer {
        phase: RwSignal::new(Phase::Idle),
        sent: RwSignal::new(0),
        total: RwSignal::new(0),
        pause: RwSignal::new(false),
        upload_id: RwSignal::new(None),
    };
    let choose = move |chosen: Option<web_sys::File>| {
        if let Some(chosen) = &chosen {
            let name = chosen.name();
            form.update(|f| f.name = name);
            transfer.total.set(chosen.size() as u64);
            transfer.sent.set(0);
            transfer.phase.set(Phase::Idle);
        }
        file.set_value(chosen);
    };
    let start = move |_| {
        error.set(None);
        let Some(chosen) = file.get_value() else {
            error.set(Some(ApiError::new(tr("Choose a file."))));
            return;
        };
        if let Some(missing) = form.with(UploadForm::missing) {
            error.set(Some(ApiError::new(tr(missing))));
            return;
        }
        let request = form.with(|f| f.request(chosen.size() as u64, &chosen.type_()));
        transfer.phase.set(Phase::Sending);
        spawn_local(async move {
            match api::post::<_, Upload>("/api/v1/artifacts/uploads", &request).await {
                Ok(upload) => run(chosen, upload, transfer, on_done),
                Err(e) => {
                    transfer.phase.set(Phase::Idle);
                    error.set(Some(e));
                }
            }
        });
    };
    let resume = move |_| {
        let (Some(chosen), Some(id)) = (file.get_value(), transfer.upload_id.get_untracked())
        else {
            return;
        };
        transfer.phase.set(Phase::Sending);
        spawn_local(async move {
            match api::get::<Upload>(&format!("/api/v1/artifacts/uploads/{}", encode(&id))).await {
                Ok(upload) => run(chosen, upload, transfer, on_done),
                Err(e) => transfer.phase.set(Phase::Failed(e)),
            }
        });
    };
    let abandon = move |_| {
        let Some(id) = transfer.upload_id.get_untracked() else {
            return;
        };
        spawn_local(async move {
            match api::delete(&format!("/api/v1/artifacts/uploads/{}", encode(&id))).await {
                Ok(()) => {
                    transfer.upload_id.set(None);
                    transfer.sent.set(0);
                    transfer.phase.set(Phase::Idle);
                    notify(true, tr("Upload abandoned."));
                }
                Err(e) => notify(
                    false,
                    format!("{}: {e}", tr("Could not abandon the upload.")),
                ),
            }
        });
    };
    let on_input = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        choose(input.files().and_then(|list| list.get(0)));
    };
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        choose(
            ev.data_transfer()
                .and_then(|d| d.files())
                .and_then(|list| list.get(0)),
        );
    };
    // The form describes the upload under way until it ends or is abandoned.
    let busy = move || {
        transfer.upload_id.get().is_some()
            || matches!(transfer.phase.get(), Phase::Sending | Phase::Verifying)
    };
    let text = move |label: &'static str,
                     name: &'static str,
                     get: fn(&UploadForm) -> String,
                     set: fn(&mut UploadForm, String)| {
        view! {
            <label class="field">
                <span>{t(label)}</span>
                <input name=name prop:value=move || form.with(get) disabled=busy
                    on:input=move |ev| form.update(|f| set(f, event_target_value(&ev))) />
            </label>
        }
    };
    view! {
        <form class="card upload" data-testid="upload" on:submit=|ev| ev.prevent_default() novalidate>
            <div class="card-header"><h2>{t("Upload a build")}</h2></div>
            <div class="card-body grid">
                <label class="dropzone wide" class:dragging=move || dragging.get()
                    on:dragover=move |ev: leptos::ev::DragEvent| { ev.prevent_default(); dragging.set(true); }
                    on:dragleave=move |_| dragging.set(false)
                    on:drop=on_drop>
                    <span>{t("Drop a file here or choose one")}</span>
                    <input type="file" name="file" disabled=busy on:change=on_input />
                </label>
                {text("Name", "artifact-name", |f| f.name.clone(), |f, v| f.name = v)}
                {text("Version", "artifact-version", |f| f.version.clone(), |f, v| f.version = v)}
                {text("Hardware types (comma-separated)", "artifact-hardware", |f| f.hardware_types.clone(), |f, v| f.hardware_types = v)}
                <div class="wide" role="status" aria-live="polite">
                    <progress max="100" data-testid="upload-progress"
                        prop:value=move || percent(transfer.sent.get(), transfer.total.get()) as f64
                        aria-label=t("Upload progress")></progress>
                    <span class="muted" data-testid="upload-state">
                        {move || format!("{} / {} ({}%)",
                            human_size(transfer.sent.get()), human_size(transfer.total.get()),
                            percent(transfer.sent.get(), transfer.total.get()))}
                        " · "
                        {move || match transfer.phase.get() {
                            Phase::Idle => tr("Ready").to_owned(),
                            Phase::Sending => tr("Sending").to_owned(),
                            Phase::Paused => tr("Paused").to_owned(),
                            Phase::Verifying => tr("Checking the SHA-256 and signing").to_owned(),
                            Phase::Done(what) => format!("{}: {what}", tr("Uploaded")),
                            Phase::Failed(e) => format!("{}: {e}", tr("Stopped")),
                        }}
                    </span>
                </div>
                {move || error.get().map(|e| error_box(&e))}
            </div>
            <div class="actions card-footer">
                {move || match (transfer.phase.get(), transfer.upload_id.get().is_some()) {
                    (Phase::Sending, _) => view! {
                        <button type="button" class="button" data-testid="upload-pause" on:click=move |_| transfer.pause.set(true)>{t("Pause")}</button>
                    }.into_any(),
                    (Phase::Paused | Phase::Failed(_), true) => view! {
                        <button type="button" class="button primary" data-testid="upload-resume" on:click=resume>{t("Resume")}</button>
                        <button type="button" class="button" data-testid="upload-abandon" on:click=abandon>{t("Abandon")}</button>
                    }.into_any(),
                    (Phase::Verifying, _) => view! { <span class="muted">{t("Checking the SHA-256 and signing")}</span> }.into_any(),
                    _ => view! {
                        <button type="button" class="button primary" data-testid="upload-start" on:click=start>{t("Upload")}</button>
                    }.into_any(),
                }}
            </div>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: u32, size: u64, received: bool) -> UploadPart {
        UploadPart {
            part_number: number,
            offset: u64::from(number - 1) * 8,
            size,
            url: String::new(),
            received,
        }
    }

    #[test]
    fn the_request_carries_the_form() {
        let form = UploadForm {
            name: " app.tar ".into(),
            version: "2.1.0".into(),
            hardware_types: "rpi4, imx8:rev-b\nx86".into(),
        };
        let request = form.request(42, "application/x-tar");
        assert_eq!(request.name, "app.tar");
        assert_eq!(request.size, 42);
        assert_eq!(request.content_type.as_deref(), Some("application/x-tar"));
        assert_eq!(request.hardware_types, ["rpi4", "imx8:rev-b", "x86"]);
        assert_eq!(form.request(1, "").content_type, None);
        assert_eq!(form.missing(), None);
        assert_eq!(UploadForm::default().missing(), Some("Choose a file."));
    }

    #[test]
    fn progress_counts_what_the_store_holds() {
        let parts = [part(1, 8, true), part(2, 8, false), part(3, 3, true)];
        assert_eq!(bytes_received(&parts), 11);
        assert_eq!(percent(11, 19), 57);
        assert_eq!(percent(0, 0), 100);
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
        assert_eq!(percent(u64::MAX / 2, u64::MAX), 49);
    }
}
