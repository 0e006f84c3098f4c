//! One rollout: its state and overall progress (live), the waves with their gates, failure
//! reasons, the executions of a chosen wave, the history, and the operators' actions (pause,
//! resume, promote, approve, cancel or roll back with a reason, retry failed) behind
//! confirmations.

use flotilla_api::{ExecutionCounts, RolloutAction, RolloutDetail, WaveStatus};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, encode};
use crate::jobs::{DeviceDrawer, Executions, FailureReasons};
use crate::live::Live;
use crate::perm::Act;
use crate::route::Route;
use crate::ui::{
    Confirm, CountList, Pill, ProgressBar, Reason, format_time, loaded, may, notify, t, tr,
};

/// An operator's action on a rollout: its path segment, its label and what it asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pause,
    Resume,
    Promote,
    Approve,
    Cancel,
    RollBack,
    RetryFailed,
}

impl Action {
    /// Whether the action ends the rollout for good: it asks for a reason and shows as
    /// dangerous.
    pub fn stops(self) -> bool {
        matches!(self, Self::Cancel | Self::RollBack)
    }

    pub fn path(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Promote => "promote",
            Self::Approve => "approve",
            Self::Cancel => "cancel",
            Self::RollBack => "rollback",
            Self::RetryFailed => "retry-failed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Pause => "Pause",
            Self::Resume => "Resume",
            Self::Promote => "Promote",
            Self::Approve => "Approve",
            Self::Cancel => "Cancel rollout",
            Self::RollBack => "Roll back",
            Self::RetryFailed => "Retry failed",
        }
    }

    pub fn explain(self) -> &'static str {
        match self {
            Self::Pause => "No new wave starts and the running wave's queued devices wait.",
            Self::Resume => "The rollout goes on from where it stopped.",
            Self::Promote => {
                "The next wave starts now, without waiting for the current wave's gate."
            }
            Self::Approve => "The wave's gate is approved; the next wave may start.",
            Self::Cancel => "Every wave that has not finished is canceled. This cannot be undone.",
            Self::RollBack => {
                "The rollout stops, and the devices that updated get the previous release again. This cannot be undone."
            }
            Self::RetryFailed => "The failed devices of the current wave get the release again.",
        }
    }
}

/// The actions that make sense in a rollout state (and wave state); a rollout with a previous
/// release can be rolled back.
pub fn actions_for(state: &str, awaiting_approval: bool, can_roll_back: bool) -> Vec<Action> {
    let mut actions = match state {
        "running" => vec![
            Action::Pause,
            Action::Promote,
            Action::RetryFailed,
            Action::Cancel,
        ],
        "paused" => vec![
            Action::Resume,
            Action::Promote,
            Action::RetryFailed,
            Action::Cancel,
        ],
        "following" | "rolling_back" => vec![Action::Cancel],
        _ => vec![],
    };
    if awaiting_approval && state == "running" {
        actions.insert(0, Action::Approve);
    }
    if can_roll_back && matches!(state, "running" | "paused" | "following") {
        actions.push(Action::RollBack);
    }
    actions
}

/// The counts of all waves together.
pub fn wave_totals(waves: &[WaveStatus]) -> ExecutionCounts {
    let mut sum = ExecutionCounts::default();
    for wave in waves {
        sum.queued += wave.queued;
        sum.in_progress += wave.in_progress;
        sum.succeeded += wave.succeeded;
        sum.failed += wave.failed;
        // Things a wave will take but whose job has not started yet count as queued.
        let reached = wave.queued + wave.in_progress + wave.succeeded + wave.failed;
        sum.queued += (wave.size - reached).max(0);
    }
    sum
}

fn wave_counts(wave: &WaveStatus) -> ExecutionCounts {
    wave_totals(std::slice::from_ref(wave))
}

#[component]
pub fn RolloutPage(rollout_id: String) -> impl IntoView {
    let live = expect_context::<Live>();
    let id = StoredValue::new(rollout_id.clone());
    let detail = LocalResource::new(move || {
        live.version.track();
        let id = id.get_value();
        async move { api::get::<RolloutDetail>(&format!("/api/v1/rollouts/{}", encode(&id))).await }
    });
    let action = RwSignal::new(None::<Action>);
    let wave_job = RwSignal::new(None::<String>);
    let drawer = RwSignal::new(None::<String>);
    let run = Callback::new(move |(reason, _force): (String, bool)| {
        let Some(which) = action.get_untracked() else {
            return;
        };
        let id = id.get_value();
        spawn_local(async move {
            let result = api::post::<_, serde_json::Value>(
                &format!("/api/v1/rollouts/{}/{}", encode(&id), which.path()),
                &RolloutAction {
                    reason: (!reason.is_empty()).then_some(reason),
                },
            )
            .await;
            action.set(None);
            match result {
                Ok(_) => notify(true, format!("{}: {}", tr(which.label()), tr("done"))),
                Err(e) => notify(false, e.to_string()),
            }
            detail.refetch();
        });
    });

    view! {
        <p class="crumbs"><a href=Route::Overview.href()>{t("Overview")}</a> " / "</p>
        <h1><code>{rollout_id.clone()}</code></h1>
        {loaded(detail, move |d: RolloutDetail| {
            let r = d.rollout.clone();
            let totals = wave_totals(&d.waves);
            let awaiting = d.waves.iter().any(|w| w.state == "awaiting_approval");
            let actions = if may(Act::SteerRollout) { actions_for(&r.state, awaiting, r.previous_release.is_some()) } else { vec![] };
            let job_ids: Vec<String> = d.jobs.iter().map(|j| j.job_id.clone()).collect();
            if wave_job.get_untracked().is_none() {
                // The newest wave job, so the table shows what is happening now.
                wave_job.set(d.jobs.iter().rev().find(|j| j.kind == "wave").map(|j| j.job_id.clone()));
            }
            let percent = crate::ui::done_percent(&totals);
            view! {
                <section class="card" data-testid="rollout-summary" data-state=r.state.clone() data-percent=percent>
                    <div class="card-header">
                        <div>
                            <Pill status=r.state.clone() />
                            " "
                            <span class="muted">
                                {t("Wave")} " " {r.current_wave.unwrap_or(r.wave_count)} "/" {r.wave_count}
                            </span>
                            {r.state_reason.clone().map(|reason| view! { <p class="muted">{reason}</p> })}
                        </div>
                        <div class="actions">
                            {actions
                                .into_iter()
                                .map(|a| view! {
                                    <button
                                        type="button"
                                        class="button"
                                        class:danger=a.stops()
                                        data-action=a.path()
                                        on:click=move |_| action.set(Some(a))
                                    >
                                        {t(a.label())}
                                    </button>
                                })
                                .collect_view()}
                        </div>
                    </div>
                    <div class="card-body">
                        <p class="big-percent"><strong>{percent} "%"</strong> " " {t("finished")}</p>
                        <ProgressBar counts=totals />
                        <CountList counts=totals />
                        <p class="muted">
                            {t("Release")} " " <code>{r.release.version.clone()}</code>
                            {r.release.template_id.clone().map(|t_id| view! { " · " {t("Template")} " " <code>{t_id}</code> })}
                            " · " {t("Failure policy")} " " {r.failure_policy.clone()}
                            " · " {t("Created")} " " {format_time(&r.created_at)} " " {t("by")} " " {r.created_by.clone()}
                        </p>
                        {d.next_window.clone().map(|w| view! {
                            <p class="muted">{t("Next window")} " " {format_time(&w.local)} " (" {w.time_zone} ")"</p>
                        })}
                    </div>
                </section>
                <section class="card">
                    <div class="card-header"><h2>{t("Waves")}</h2></div>
                    <table class="table waves">
                        <thead>
                            <tr>
                                <th scope="col">{t("Wave")}</th>
                                <th scope="col">{t("State")}</th>
                                <th scope="col" class="num">{t("Devices")}</th>
                                <th scope="col" class="progress-col">{t("Progress")}</th>
                                <th scope="col">{t("Gate")}</th>
                                <th scope="col">{t("Job")}</th>
                            </tr>
                        </thead>
                        <tbody>
                            {d.waves.iter().map(|w| {
                                let g = &w.gate;
                                let gate = format!(
                                    "{} {:.0}% / {:.0}% · {} {:.0}% / {:.0}%",
                                    tr("success"),
                                    g.success_percent,
                                    g.gates.success_threshold_percent,
                                    tr("failure"),
                                    g.failure_percent,
                                    g.gates.max_failure_percent,
                                );
                                let job = w.job_id.clone();
                                view! {
                                    <tr data-wave=w.number data-state=w.state.clone()>
                                        <td>{w.number}</td>
                                        <td><Pill status=w.state.clone() /></td>
                                        <td class="num">{w.size}</td>
                                        <td class="progress-col"><ProgressBar counts=wave_counts(w) /></td>
                                        <td>
                                            <span>{gate}</span>
                                            {g.waiting_for.clone().map(|why| view! { <div class="muted">{why}</div> })}
                                        </td>
                                        <td>
                                            {job.map(|j| {
                                                let shown = j.clone();
                                                view! {
                                                    <button type="button" class="link" on:click=move |_| wave_job.set(Some(j.clone()))>
                                                        {shown}
                                                    </button>
                                                }
                                            })}
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                </section>
                <section class="card">
                    <div class="card-header"><h2>{t("Failure reasons")}</h2></div>
                    <div class="card-body"><FailureReasons job_ids /></div>
                </section>
                <section class="card">
                    <div class="card-header"><h2>{t("History")}</h2></div>
                    <ol class="history">
                        {d.events.iter().rev().take(30).map(|e| view! {
                            <li>
                                <span class="muted">{format_time(&e.at)}</span>
                                " "
                                {if e.subject == "wave" { format!("{} {}", tr("Wave"), e.wave.unwrap_or_default()) } else { tr("Rollout").to_owned() }}
                                " → "
                                <Pill status=e.to_state.clone() />
                                " " <span class="muted">{e.actor.clone()}</span>
                                {e.reason.clone().map(|r| view! { " — " {r} })}
                            </li>
                        }).collect_view()}
                    </ol>
                </section>
            }
        })}
        {move || wave_job.get().map(|job_id| view! {
            <section class="card">
                <div class="card-header">
                    <h2>{t("Executions of")} " " <a href=Route::Job(job_id.clone()).href()><code>{job_id.clone()}</code></a></h2>
                </div>
                <Executions job_id on_open=Callback::new(move |thing| drawer.set(Some(thing))) />
            </section>
        })}
        {move || drawer.get().map(|thing| view! {
            <DeviceDrawer thing job_id=wave_job.get_untracked() on_close=Callback::new(move |()| drawer.set(None)) />
        })}
        {move || action.get().map(|which| view! {
            <Confirm
                title=tr(which.label()).to_owned()
                message=tr(which.explain()).to_owned()
                reason=if which.stops() { Reason::Required } else { Reason::Optional }
                force_label=None
                confirm_label=which.label()
                danger=which.stops()
                on_confirm=run
                on_close=Callback::new(move |()| action.set(None))
            />
        })}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_follow_the_state() {
        assert_eq!(
            actions_for("running", false, false),
            [
                Action::Pause,
                Action::Promote,
                Action::RetryFailed,
                Action::Cancel
            ]
        );
        assert_eq!(actions_for("running", true, false)[0], Action::Approve);
        assert_eq!(actions_for("paused", false, false)[0], Action::Resume);
        assert_eq!(
            actions_for("paused", false, true).last(),
            Some(&Action::RollBack)
        );
        assert!(!actions_for("running", false, false).contains(&Action::RollBack));
        assert!(actions_for("completed", false, true).is_empty());
        assert!(actions_for("canceled", true, true).is_empty());
        assert!(Action::RollBack.stops() && Action::Cancel.stops() && !Action::Pause.stops());
        assert_eq!(Action::RetryFailed.path(), "retry-failed");
    }
}
