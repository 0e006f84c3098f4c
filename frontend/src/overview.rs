//! The overview: what an operator needs at a glance — fleet size, active rollouts and jobs with
//! live progress, and the failures that need attention.

use flotilla_api::{ExecutionCounts, Job, JobList, JobStatus, RolloutList, ThingList};
use leptos::prelude::*;

use crate::api::{self, ApiResult};
use crate::live::Live;
use crate::route::{Route, encode};
use crate::ui::{JobPill, Pill, ProgressBar, failed, loaded, t};

/// The most pages of things the fleet count reads (250 each).
const FLEET_PAGES: usize = 40;

/// Counts the registered things, page by page; `true` when there are more than it read.
async fn fleet_size() -> ApiResult<(usize, bool)> {
    let mut count = 0;
    let mut token: Option<String> = None;
    for _ in 0..FLEET_PAGES {
        let url = match &token {
            Some(token) => format!("/api/v1/things?limit=250&next_token={}", encode(token)),
            None => "/api/v1/things?limit=250".to_owned(),
        };
        let page: ThingList = api::get(&url).await?;
        count += page.things.len();
        match page.next_token {
            Some(next) => token = Some(next),
            None => return Ok((count, false)),
        }
    }
    Ok((count, true))
}

/// The jobs of a rollout: its wave, retry, follow-up and rollback jobs are named after it.
pub fn rollout_jobs<'a>(rollout_id: &str, jobs: &'a [Job]) -> Vec<&'a Job> {
    let prefix = format!("{rollout_id}-");
    jobs.iter()
        .filter(|job| {
            job.job_id.strip_prefix(&prefix).is_some_and(|rest| {
                rest == "rollback"
                    || rest.starts_with('w') && rest[1..].starts_with(|c: char| c.is_ascii_digit())
                    || rest.starts_with('c') && rest[1..].starts_with(|c: char| c.is_ascii_digit())
            })
        })
        .collect()
}

/// The sum of the counts of `jobs`.
pub fn sum_counts<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> ExecutionCounts {
    jobs.into_iter()
        .fold(ExecutionCounts::default(), |mut sum, job| {
            let c = &job.counts;
            sum.queued += c.queued;
            sum.in_progress += c.in_progress;
            sum.succeeded += c.succeeded;
            sum.failed += c.failed;
            sum.rejected += c.rejected;
            sum.canceled += c.canceled;
            sum.timed_out += c.timed_out;
            sum.removed += c.removed;
            sum
        })
}

fn active(status: JobStatus) -> bool {
    matches!(status, JobStatus::InProgress | JobStatus::Scheduled)
}

#[component]
pub fn Overview() -> impl IntoView {
    let live = expect_context::<Live>();
    let fleet = LocalResource::new(fleet_size);
    let both = LocalResource::new(move || {
        live.version.track();
        async move {
            let jobs = api::get::<JobList>("/api/v1/jobs?limit=200").await?;
            let rollouts = api::get::<RolloutList>("/api/v1/rollouts").await?;
            Ok::<_, api::ApiError>((jobs, rollouts))
        }
    });

    view! {
        <h1>{t("Overview")}</h1>
        <div class="stats">
            <div class="stat card">
                <span class="stat-label">{t("Fleet size")}</span>
                <span class="stat-value" data-testid="fleet-size">
                    {move || match fleet.get() {
                        Some(Ok((n, more))) => format!("{n}{}", if more { "+" } else { "" }),
                        Some(Err(_)) => "?".into(),
                        None => "…".into(),
                    }}
                </span>
                <a href=Route::Devices.href()>{t("Devices")}</a>
            </div>
            {move || {
                both.get()
                    .and_then(Result::ok)
                    .map(|(jobs, rollouts)| {
                        let running = rollouts
                            .rollouts
                            .iter()
                            .filter(|r| matches!(r.state.as_str(), "running" | "paused" | "following" | "rolling_back"))
                            .count();
                        let active_jobs = jobs.jobs.iter().filter(|j| active(j.status)).count();
                        let failures: i64 = jobs
                            .jobs
                            .iter()
                            .filter(|j| active(j.status))
                            .map(|j| failed(&j.counts))
                            .sum();
                        view! {
                            <div class="stat card">
                                <span class="stat-label">{t("Active rollouts")}</span>
                                <span class="stat-value">{running}</span>
                            </div>
                            <div class="stat card">
                                <span class="stat-label">{t("Active jobs")}</span>
                                <span class="stat-value">{active_jobs}</span>
                            </div>
                            <div class="stat card" class:alert={failures > 0}>
                                <span class="stat-label">{t("Failed executions in active jobs")}</span>
                                <span class="stat-value">{failures}</span>
                            </div>
                        }
                    })
            }}
        </div>
        {loaded(both, |(jobs, rollouts)| {
            let jobs = jobs.jobs;
            let attention: Vec<_> = rollouts
                .rollouts
                .iter()
                .filter(|r| matches!(r.state.as_str(), "paused" | "rolling_back" | "rolled_back"))
                .cloned()
                .collect();
            let failing: Vec<Job> = jobs
                .iter()
                .filter(|j| failed(&j.counts) > 0 && active(j.status))
                .cloned()
                .collect();
            let active_rollouts: Vec<_> = rollouts
                .rollouts
                .iter()
                .filter(|r| !matches!(r.state.as_str(), "completed" | "canceled" | "rolled_back"))
                .map(|r| (r.clone(), sum_counts(rollout_jobs(&r.rollout_id, &jobs))))
                .collect();
            let active_jobs: Vec<Job> = jobs.iter().filter(|j| active(j.status)).cloned().collect();
            view! {
                <section class="card" data-loaded="true" data-testid="overview">
                    <div class="card-header">
                        <h2>{t("Active rollouts")}</h2>
                        <a class="button primary" href=Route::New.href()>{t("New rollout")}</a>
                    </div>
                    {if active_rollouts.is_empty() {
                        view! { <p class="state empty">{t("No active rollouts.")}</p> }.into_any()
                    } else {
                        view! {
                            <table class="table">
                                <thead>
                                    <tr>
                                        <th scope="col">{t("Rollout")}</th>
                                        <th scope="col">{t("State")}</th>
                                        <th scope="col">{t("Wave")}</th>
                                        <th scope="col" class="progress-col">{t("Progress")}</th>
                                    </tr>
                                </thead>
                                <tbody>
                                    {active_rollouts
                                        .into_iter()
                                        .map(|(r, counts)| {
                                            view! {
                                                <tr data-rollout-id=r.rollout_id.clone()>
                                                    <td>
                                                        <a href=Route::Rollout(r.rollout_id.clone()).href()>
                                                            <code>{r.rollout_id.clone()}</code>
                                                        </a>
                                                    </td>
                                                    <td><Pill status=r.state.clone() /></td>
                                                    <td>
                                                        {format!(
                                                            "{}/{}",
                                                            r.current_wave.unwrap_or(r.wave_count),
                                                            r.wave_count,
                                                        )}
                                                    </td>
                                                    <td class="progress-col"><ProgressBar counts /></td>
                                                </tr>
                                            }
                                        })
                                        .collect_view()}
                                </tbody>
                            </table>
                        }
                            .into_any()
                    }}
                </section>
                <section class="card">
                    <div class="card-header">
                        <h2>{t("Active jobs")}</h2>
                        <a href=Route::Jobs.href()>{t("All jobs")}</a>
                    </div>
                    <JobTable jobs=active_jobs />
                </section>
                <section class="card">
                    <div class="card-header">
                        <h2>{t("Needs attention")}</h2>
                    </div>
                    {if attention.is_empty() && failing.is_empty() {
                        view! { <p class="state empty">{t("Nothing needs attention.")}</p> }.into_any()
                    } else {
                        view! {
                            <ul class="attention">
                                {attention
                                    .into_iter()
                                    .map(|r| {
                                        view! {
                                            <li>
                                                <a href=Route::Rollout(r.rollout_id.clone()).href()>
                                                    <code>{r.rollout_id.clone()}</code>
                                                </a>
                                                " "
                                                <Pill status=r.state.clone() />
                                                " "
                                                <span class="muted">{r.state_reason.clone().unwrap_or_default()}</span>
                                            </li>
                                        }
                                    })
                                    .collect_view()}
                                {failing
                                    .into_iter()
                                    .map(|j| {
                                        let n = failed(&j.counts);
                                        view! {
                                            <li>
                                                <a href=Route::Job(j.job_id.clone()).href()>
                                                    <code>{j.job_id.clone()}</code>
                                                </a>
                                                " "
                                                <span class="bad-text">{n} " " {t("failed")}</span>
                                            </li>
                                        }
                                    })
                                    .collect_view()}
                            </ul>
                        }
                            .into_any()
                    }}
                </section>
            }
        })}
    }
}

/// A table of jobs with their status and progress.
#[component]
pub fn JobTable(jobs: Vec<Job>) -> impl IntoView {
    if jobs.is_empty() {
        return view! { <p class="state empty">{t("No jobs.")}</p> }.into_any();
    }
    view! {
        <table class="table jobs">
            <thead>
                <tr>
                    <th scope="col">{t("Job")}</th>
                    <th scope="col">{t("Status")}</th>
                    <th scope="col" class="progress-col">{t("Progress")}</th>
                    <th scope="col" class="num">{t("Succeeded")}</th>
                    <th scope="col" class="num">{t("Failed")}</th>
                    <th scope="col">{t("Created (UTC)")}</th>
                </tr>
            </thead>
            <tbody>
                {jobs
                    .into_iter()
                    .map(|job| {
                        let counts = job.counts;
                        let failed = failed(&counts);
                        view! {
                            <tr class="job" data-job-id=job.job_id.clone()>
                                <td class="job-id">
                                    <a href=Route::Job(job.job_id.clone()).href()>
                                        <code>{job.job_id.clone()}</code>
                                    </a>
                                    {job.description.map(|d| view! { <div class="description">{d}</div> })}
                                </td>
                                <td><JobPill status=job.status /></td>
                                <td class="progress-col"><ProgressBar counts /></td>
                                <td class="num succeeded-count">
                                    {format!("{}/{}", counts.succeeded, counts.total())}
                                </td>
                                <td class="num failed-count" class:nonzero=failed != 0>{failed}</td>
                                <td class="muted">{crate::ui::format_time(&job.created_at)}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_api::ExecutionCounts;

    fn job(id: &str, succeeded: i64) -> Job {
        Job {
            job_id: id.to_owned(),
            job_arn: String::new(),
            status: JobStatus::InProgress,
            description: None,
            targets: vec![],
            counts: ExecutionCounts {
                succeeded,
                ..ExecutionCounts::default()
            },
            created_at: String::new(),
            updated_at: String::new(),
            completed_at: None,
        }
    }

    #[test]
    fn a_rollouts_jobs_are_found_by_their_derived_ids() {
        let jobs = [
            job("fw-w1", 1),
            job("fw-w2-r1", 2),
            job("fw-c3", 4),
            job("fw-rollback", 8),
            job("fw-wide", 16),
            job("fw2-w1", 32),
            job("fw-x", 64),
        ];
        let ids: Vec<&str> = rollout_jobs("fw", &jobs)
            .iter()
            .map(|j| j.job_id.as_str())
            .collect();
        assert_eq!(ids, ["fw-w1", "fw-w2-r1", "fw-c3", "fw-rollback"]);
        assert_eq!(sum_counts(rollout_jobs("fw", &jobs)).succeeded, 15);
    }
}
