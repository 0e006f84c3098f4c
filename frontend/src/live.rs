//! The live feed: one `EventSource` on `/api/v1/stream` for the whole app.
//!
//! Pages read [`Live::version`] inside their resources, so every change the server announces
//! makes them read again. Changes are coalesced (at most one refresh per [`COALESCE`]) so a
//! fleet finishing a job at once does not make the page fetch a hundred times; and when the
//! feed is quiet the version still moves every [`FALLBACK`], because rollout state changes
//! (the orchestrator's) are not on the job feed. Failure reasons the devices report arrive only
//! on this feed, so they are kept here for the detail pages.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use flotilla_api::stream::ExecutionChange;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;

/// The smallest time between two refreshes caused by the feed.
pub const COALESCE: Duration = Duration::from_millis(400);
/// How often pages refresh while the feed is quiet.
pub const FALLBACK: Duration = Duration::from_secs(4);
/// How many failure reports are kept.
const MAX_FAILURES: usize = 500;

/// One failed, rejected or timed-out execution as the feed reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub job_id: String,
    pub thing_name: String,
    pub status: String,
    /// The device's `statusDetails.reason` (or its other details), if it gave one.
    pub reason: Option<String>,
}

/// The feed's state, shared through the context.
#[derive(Debug, Clone, Copy)]
pub struct Live {
    /// Moves on every (coalesced) change.
    pub version: RwSignal<u64>,
    /// Whether the stream is open.
    pub connected: RwSignal<bool>,
    /// Failures seen since the page was opened, newest last.
    pub failures: RwSignal<Vec<Failure>>,
}

/// The failure a feed event describes, if it is one.
pub fn failure_of(change: ExecutionChange) -> Option<Failure> {
    if !matches!(change.status.as_str(), "FAILED" | "REJECTED" | "TIMED_OUT") {
        return None;
    }
    let details = &change.status_details;
    let reason = details
        .get("reason")
        .or_else(|| details.get("error"))
        .or_else(|| details.get("message"))
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())
        })
        .or_else(|| {
            (!details.is_empty()).then(|| serde_json::Value::Object(details.clone()).to_string())
        });
    Some(Failure {
        job_id: change.job_id,
        thing_name: change.thing_name,
        status: change.status,
        reason,
    })
}

/// Opens the feed (the browser reconnects on its own, resuming with `Last-Event-ID`).
pub fn start() -> Live {
    let live = Live {
        version: RwSignal::new(0),
        connected: RwSignal::new(false),
        failures: RwSignal::new(Vec::new()),
    };
    let dirty = Rc::new(Cell::new(false));
    let quiet_ticks = Rc::new(Cell::new(0u32));
    match web_sys::EventSource::new("/api/v1/stream") {
        Ok(source) => {
            let on_change = {
                let dirty = dirty.clone();
                Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
                    move |event: web_sys::MessageEvent| {
                        dirty.set(true);
                        if event.type_() == "execution"
                            && let Some(text) = event.data().as_string()
                            && let Ok(change) = serde_json::from_str::<ExecutionChange>(&text)
                            && let Some(failure) = failure_of(change)
                        {
                            live.failures.update(|all| {
                                if all.len() >= MAX_FAILURES {
                                    all.remove(0);
                                }
                                all.push(failure);
                            });
                        }
                    },
                )
            };
            for kind in ["job", "job_deleted", "execution", "execution_deleted"] {
                let _ = source
                    .add_event_listener_with_callback(kind, on_change.as_ref().unchecked_ref());
            }
            on_change.forget();
            let on_open = Closure::<dyn FnMut()>::new(move || live.connected.set(true));
            source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
            on_open.forget();
            let on_error = Closure::<dyn FnMut()>::new(move || live.connected.set(false));
            source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
            on_error.forget();
        }
        Err(e) => leptos::logging::error!("could not open the live stream: {e:?}"),
    }
    let fallback_ticks = (FALLBACK.as_millis() / COALESCE.as_millis()) as u32;
    let tick = move || {
        if dirty.replace(false) || quiet_ticks.get() >= fallback_ticks {
            quiet_ticks.set(0);
            live.version.update(|v| *v += 1);
        } else {
            quiet_ticks.set(quiet_ticks.get() + 1);
        }
    };
    if let Err(e) = set_interval_with_handle(tick, COALESCE) {
        leptos::logging::error!("could not start the refresh timer: {e:?}");
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(status: &str, details: serde_json::Value) -> ExecutionChange {
        ExecutionChange {
            job_id: "j".into(),
            thing_name: "t".into(),
            status: status.into(),
            previous_status: None,
            execution_number: Some(1),
            version_number: None,
            status_details: details.as_object().cloned().unwrap_or_default(),
            changed_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn only_bad_endings_are_failures_and_keep_their_reason() {
        assert_eq!(failure_of(change("SUCCEEDED", serde_json::json!({}))), None);
        let failed = failure_of(change("FAILED", serde_json::json!({"reason": "disk full"})));
        assert_eq!(failed.and_then(|f| f.reason).as_deref(), Some("disk full"));
        let rejected = failure_of(change("REJECTED", serde_json::json!({"code": 7})));
        assert_eq!(
            rejected.and_then(|f| f.reason).as_deref(),
            Some("{\"code\":7}")
        );
        let timed_out = failure_of(change("TIMED_OUT", serde_json::json!({})));
        assert_eq!(timed_out.map(|f| f.reason), Some(None));
    }
}
