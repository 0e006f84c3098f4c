//! The page: a header and a card with the jobs table, reloaded every [`REFRESH`] while it is open.

use std::time::Duration;

use leptos::prelude::*;

use crate::api;
use crate::jobs::JobTable;

/// How often the job list is fetched again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The whole dashboard.
#[component]
pub fn App() -> impl IntoView {
    let jobs = LocalResource::new(api::list_jobs);

    // Polling keeps the page current without a push channel. `Transition` keeps the previous
    // table on screen while a refetch is in flight, so the refresh does not flicker.
    match set_interval_with_handle(move || jobs.refetch(), REFRESH) {
        Ok(handle) => on_cleanup(move || handle.clear()),
        Err(e) => leptos::logging::error!("could not start refreshing the job list: {e:?}"),
    }

    view! {
        <header class="topbar">
            <div class="topbar-inner">
                <h1>"Flotilla"</h1>
                <span class="tagline">"Fleet software updates"</span>
            </div>
        </header>
        <main class="content">
            <section class="card">
                <div class="card-header">
                    <h2>"Jobs"</h2>
                    <span class="muted">{format!("Refreshes every {} seconds", REFRESH.as_secs())}</span>
                </div>
                <ErrorBoundary fallback=|errors| {
                    view! {
                        <div class="state error" role="alert">
                            <strong>"Could not load jobs: "</strong>
                            {move || {
                                errors
                                    .get()
                                    .into_iter()
                                    .map(|(_, e)| e.to_string())
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            }}
                        </div>
                    }
                }>
                    <Transition fallback=|| {
                        view! { <p class="state loading">"Loading jobs…"</p> }
                    }>
                        {move || Suspend::new(async move {
                            jobs.await.map(|list| view! { <JobTable jobs=list.jobs /> })
                        })}
                    </Transition>
                </ErrorBoundary>
            </section>
        </main>
    }
}
