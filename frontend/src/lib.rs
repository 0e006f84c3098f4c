//! The Flotilla dashboard: a client-side Leptos app that lists the fleet's update jobs and their
//! progress, polling the server's JSON API.
//!
//! `cargo xtask frontend` compiles this crate to `wasm32-unknown-unknown`, runs wasm-bindgen and
//! wasm-opt, and writes the bundle to `static/pkg/`, which the server serves next to
//! `static/index.html`. The crate also builds for the host so that clippy and the unit tests of
//! its pure helpers run with the rest of the workspace.

mod api;
mod app;
mod jobs;

use wasm_bindgen::prelude::wasm_bindgen;

pub use app::App;

/// Starts the app; wasm-bindgen's `init()` calls this once the module is instantiated.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}
