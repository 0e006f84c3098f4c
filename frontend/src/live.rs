//! The live feed: one `EventSource` on `/api/v1/stream` for the whole app.
//!
//! Pages read [`Live::version`] inside their resources, so every change the server announces
//! makes them read again. Changes are coalesced (at most one refresh per [`COALESCE`]) so a
//! fleet finishing a job at once does not make the page fetch a hundred times; and when the
//! feed is quiet the version still moves every [`FALLBACK`], because rollout state changes
//! (the orchestrator's) are not on the job feed.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;

/// The smallest time between two refreshes caused by the feed.
pub const COALESCE: Duration = Duration::from_millis(400);
/// How often pages refresh while the feed is quiet.
pub const FALLBACK: Duration = Duration::from_secs(4);
/// The feed's state, shared through the context.
#[derive(Debug, Clone, Copy)]
pub struct Live {
    /// Moves on every (coalesced) change.
    pub version: RwSignal<u64>,
    /// Whether the stream is open.
    pub connected: RwSignal<bool>,
}

/// Opens the feed (the browser reconnects on its own, resuming with `Last-Event-ID`).
pub fn start() -> Live {
    let live = Live {
        version: RwSignal::new(0),
        connected: RwSignal::new(false),
    };
    let dirty = Rc::new(Cell::new(false));
    let quiet_ticks = Rc::new(Cell::new(0u32));
    match web_sys::EventSource::new("/api/v1/stream") {
        Ok(source) => {
            let on_change = {
                let dirty = dirty.clone();
                Closure::<dyn FnMut()>::new(move || dirty.set(true))
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

/// A counter that follows [`Live::version`] while the page is visible, and stands still while
/// the tab is hidden. For views of changes the feed does not announce (the inventory's
/// connectivity and versions): they refresh on the feed's quiet-time tick, every [`FALLBACK`]
/// at most, but not in a tab nobody looks at.
pub fn visible_ticks(live: Live) -> RwSignal<u64> {
    let ticks = RwSignal::new(0u64);
    Effect::new(move |first: Option<()>| {
        live.version.track();
        // The first run only subscribes: the page has just read its data.
        if first.is_some() && !document().hidden() {
            ticks.update(|v| *v += 1);
        }
    });
    ticks
}
