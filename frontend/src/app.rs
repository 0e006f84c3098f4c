//! The shell: header with navigation, theme and language switches, the notice region, and the
//! page the location hash names. Settings persist in the browser's `localStorage`.

use leptos::prelude::*;
use wasm_bindgen::JsCast as _;

use crate::i18n::Lang;
use crate::perm::Role;
use crate::route::Route;
use crate::ui::{Ctx, SignIn, Theme, t};
use crate::{admin, devices, inventory, jobs, live, overview, rollouts, wizard};

const THEME_KEY: &str = "flotilla.theme";
const LANG_KEY: &str = "flotilla.lang";

fn storage() -> Option<web_sys::Storage> {
    window().local_storage().ok().flatten()
}

fn stored(key: &str) -> Option<String> {
    storage()?.get_item(key).ok().flatten()
}

fn store(key: &str, value: &str) {
    if let Some(storage) = storage() {
        let _ = storage.set_item(key, value);
    }
}

/// Whether the system asks for dark colours.
fn system_dark() -> bool {
    window()
        .match_media("(prefers-color-scheme: dark)")
        .ok()
        .flatten()
        .is_some_and(|m| m.matches())
}

fn current_route() -> Route {
    Route::parse(&window().location().hash().unwrap_or_default())
}

/// Asks the server who is signed in: their role decides which actions the pages offer, and
/// their session's CSRF token goes with every change. Without a sign-in, the page says so.
async fn who_am_i(ctx: Ctx) {
    match crate::api::get::<flotilla_api::Me>("/api/v1/me").await {
        Ok(me) => {
            crate::api::set_csrf_token(me.csrf_token);
            ctx.role.set(Role::from_api(me.role));
            ctx.sign_in.set(if me.via == "oidc" {
                SignIn::Session
            } else {
                SignIn::Other
            });
        }
        Err(error) => {
            if error.code.as_deref() == Some("unauthenticated") {
                ctx.sign_in.set(SignIn::SignedOut);
            }
            ctx.notice.set(Some((false, error.to_string())));
        }
    }
}

/// The server's sign-in, coming back to the page shown now.
fn sign_in_href() -> String {
    let hash = window().location().hash().unwrap_or_default();
    format!(
        "/api/v1/auth/login?return_to={}",
        crate::api::encode(&format!("/{hash}"))
    )
}

/// Ends the session, then the identity provider's session where it offers that.
fn sign_out() {
    leptos::task::spawn_local(async {
        match crate::api::post::<_, flotilla_api::LoggedOut>(
            "/api/v1/auth/logout",
            &serde_json::json!({}),
        )
        .await
        {
            Ok(out) => {
                let _ = window()
                    .location()
                    .set_href(out.end_session_url.as_deref().unwrap_or("/"));
            }
            Err(error) => crate::ui::notify(false, error.to_string()),
        }
    });
}

/// The whole dashboard.
#[component]
pub fn App() -> impl IntoView {
    let ctx = Ctx {
        lang: RwSignal::new(stored(LANG_KEY).map_or(Lang::En, |l| Lang::parse(&l))),
        theme: RwSignal::new(stored(THEME_KEY).map_or(Theme::System, |t| Theme::parse(&t))),
        // Until the server says who is signed in, the page offers nothing that changes
        // anything.
        role: RwSignal::new(Role::Viewer),
        sign_in: RwSignal::new(SignIn::Unknown),
        notice: RwSignal::new(None),
    };
    crate::ui::set_ctx(ctx);
    provide_context(live::start());
    leptos::task::spawn_local(who_am_i(ctx));

    let route = RwSignal::new(current_route());
    let handle = window_event_listener(leptos::ev::hashchange, move |_| {
        route.set(current_route());
        ctx.notice.set(None);
    });
    on_cleanup(move || handle.remove());

    // The theme and language live on <html>, where the style sheet and screen readers look.
    Effect::new(move |_| {
        let root = document().document_element();
        let theme = ctx.theme.get();
        store(THEME_KEY, theme.as_str());
        if let Some(root) = &root {
            // The style sheet knows only light and dark; "system" is resolved here.
            let effective = match theme {
                Theme::System if system_dark() => Theme::Dark,
                Theme::System => Theme::Light,
                chosen => chosen,
            };
            let _ = root.set_attribute("data-theme", effective.as_str());
        }
        let lang = ctx.lang.get();
        store(LANG_KEY, lang.as_str());
        if let Some(root) = &root {
            let _ = root.set_attribute("lang", lang.as_str());
        }
    });
    let dark = move || match ctx.theme.get() {
        Theme::Dark => true,
        Theme::Light => false,
        Theme::System => system_dark(),
    };
    let toggle_theme = move |_| {
        ctx.theme
            .set(if dark() { Theme::Light } else { Theme::Dark })
    };

    let nav = [
        (Route::Overview, "Overview"),
        (Route::Jobs, "Jobs"),
        (Route::New, "New rollout"),
        (Route::Devices, "Devices"),
        (Route::Tech(None), "Technician"),
        (Route::Templates, "Templates"),
        (Route::Artifacts, "Artifacts"),
        (Route::Audit, "Audit log"),
        (Route::Settings, "Settings"),
    ];
    let live = expect_context::<live::Live>();

    view! {
        <a class="skip" href="#main" on:click=move |ev| {
            ev.prevent_default();
            if let Some(main) = document().get_element_by_id("main") {
                let _ = main.unchecked_into::<web_sys::HtmlElement>().focus();
            }
        }>{t("Skip to content")}</a>
        <header class="topbar">
            <div class="topbar-inner">
                <a class="brand" href="#/">"Flotilla"</a>
                <nav aria-label=t("Main")>
                    <ul>
                        {nav
                            .into_iter()
                            .map(|(page, label)| {
                                let section = page.section();
                                view! {
                                    <li>
                                        <a
                                            href=page.href()
                                            data-nav=section
                                            aria-current=move || {
                                                (route.get().section() == section).then_some("page")
                                            }
                                        >
                                            {t(label)}
                                        </a>
                                    </li>
                                }
                            })
                            .collect_view()}
                    </ul>
                </nav>
                <div class="prefs">
                    <span
                        class="live-dot"
                        class:on=move || live.connected.get()
                        role="img"
                        aria-label=move || if live.connected.get() { t("Live")() } else { t("Offline")() }
                        title=move || if live.connected.get() { t("Live")() } else { t("Offline")() }
                    ></span>
                    <label class="sr-only" for="lang">{t("Language")}</label>
                    <select
                        id="lang"
                        data-testid="language"
                        on:change=move |ev| ctx.lang.set(Lang::parse(&event_target_value(&ev)))
                        prop:value=move || ctx.lang.get().as_str()
                    >
                        <option value="en">"English"</option>
                        <option value="es">"Español"</option>
                    </select>
                    <button
                        type="button"
                        class="button"
                        data-testid="theme-toggle"
                        aria-pressed=move || dark().to_string()
                        on:click=toggle_theme
                    >
                        {t("Dark mode")}
                    </button>
                    {move || match ctx.sign_in.get() {
                        SignIn::SignedOut => Some(view! {
                            <a class="button" data-testid="sign-in" href=sign_in_href()>{t("Sign in")}</a>
                        }.into_any()),
                        SignIn::Session => Some(view! {
                            <button type="button" class="button" data-testid="sign-out"
                                on:click=move |_| sign_out()>{t("Sign out")}</button>
                        }.into_any()),
                        SignIn::Unknown | SignIn::Other => None,
                    }}
                </div>
            </div>
        </header>
        <div class="notice-region" role="status" aria-live="polite">
            {move || {
                ctx.notice
                    .get()
                    .map(|(ok, text)| {
                        view! {
                            <div class="notice" class:ok=ok class:bad=!ok data-testid="notice">
                                <span>{text}</span>
                                <button
                                    type="button"
                                    class="button"
                                    aria-label=t("Dismiss")
                                    on:click=move |_| ctx.notice.set(None)
                                >
                                    "×"
                                </button>
                            </div>
                        }
                    })
            }}
        </div>
        <main id="main" class="content" tabindex="-1">
            {move || match route.get() {
                Route::Overview => overview::Overview().into_any(),
                Route::Jobs => view! { <jobs::JobsPage /> }.into_any(),
                Route::Job(id) => view! { <jobs::JobPage job_id=id /> }.into_any(),
                Route::Rollout(id) => view! { <rollouts::RolloutPage rollout_id=id /> }.into_any(),
                Route::New => wizard::Wizard().into_any(),
                Route::Devices => inventory::DevicesPage().into_any(),
                Route::Device(name) => view! { <devices::DevicePage name /> }.into_any(),
                Route::Tech(name) => view! { <devices::TechPage name /> }.into_any(),
                Route::Templates => admin::TemplatesPage().into_any(),
                Route::Artifacts => admin::ArtifactsPage().into_any(),
                Route::Audit => admin::AuditPage().into_any(),
                Route::Settings => admin::SettingsPage().into_any(),
                Route::NotFound => {
                    view! {
                        <section class="card">
                            <h1>{t("Page not found")}</h1>
                            <p><a href="#/">{t("Overview")}</a></p>
                        </section>
                    }
                        .into_any()
                }
            }}
        </main>
    }
}
