//! The Flotilla dashboard: a client-side Leptos app for fleet operators and technicians.
//!
//! Pages are addressed by the URL's hash (`#/rollouts/fw-2`, see [`route`]), so the server
//! serves one `index.html` and the app needs no router crate. Data comes from the JSON API
//! (`/api/v1`, [`api`]); one Server-Sent Events connection ([`live`]) tells every page when
//! to read again, so progress moves without a reload.
//!
//! `cargo xtask frontend` compiles this crate to `wasm32-unknown-unknown`, runs wasm-bindgen and
//! wasm-opt, and writes the bundle to `static/pkg/`, which the server serves next to
//! `static/index.html`. The crate also builds for the host so that clippy and the unit tests of
//! its pure parts (routing, translations, the wizard's validation, CSV, progress maths) run
//! with the rest of the workspace. `docs/ui.md` describes the pages.

mod admin;
mod api;
mod app;
mod devices;
mod i18n;
mod inventory;
mod jobs;
mod live;
mod overview;
mod perm;
mod rollouts;
mod route;
mod ui;
mod upload;
mod wizard;

use wasm_bindgen::prelude::wasm_bindgen;

pub use app::App;

/// Starts the app; wasm-bindgen's `init()` calls this once the module is instantiated.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}
