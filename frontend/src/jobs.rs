//! The jobs table: one row per job with its status, a stacked progress bar of its executions
//! and their counts, plus the pure helpers (ordering, percentages, formatting) the rows use.
//!
//! Rows carry `data-job-id` and status cells a `status-<status>` class so browser tests can find
//! them without depending on text or layout.

use flotilla_api::{ExecutionCounts, Job, JobStatus};
use leptos::prelude::*;

/// The table of jobs, newest first, or a hint on how to create the first one.
#[component]
pub fn JobTable(jobs: Vec<Job>) -> impl IntoView {
    if jobs.is_empty() {
        return EmptyHint().into_any();
    }
    let jobs = newest_first(jobs);
    view! {
        <table class="jobs">
            <thead>
                <tr>
                    <th scope="col">"Job"</th>
                    <th scope="col">"Status"</th>
                    <th scope="col" class="progress-col">"Progress"</th>
                    <th scope="col" class="num">"Succeeded"</th>
                    <th scope="col" class="num">"Failed"</th>
                    <th scope="col">"Created (UTC)"</th>
                </tr>
            </thead>
            <tbody>{jobs.into_iter().map(|job| view! { <JobRow job /> }).collect_view()}</tbody>
        </table>
    }
    .into_any()
}

/// One job.
#[component]
fn JobRow(job: Job) -> impl IntoView {
    let counts = job.counts;
    let total = counts.total();
    let failed = failed(&counts);
    let status = job.status;
    let id = job.job_id;
    view! {
        <tr class="job" data-job-id=id>
            <td class="job-id">
                <code>{id.clone()}</code>
                {job.description.map(|d| view! { <div class="description">{d}</div> })}
            </td>
            <td class=format!("status {}", status_class(status)) data-status=status.as_str()>
                <span class="pill">{status_label(status)}</span>
            </td>
            <td class="progress-col">
                <ProgressBar counts />
            </td>
            <td class="num succeeded-count">{format!("{}/{total} succeeded", counts.succeeded)}</td>
            <td class="num failed-count" class:nonzero=failed != 0 title=failed_title(&counts)>
                {failed}
            </td>
            <td class="created">
                <time datetime=job.created_at.clone() title=job.created_at.clone()>
                    {format_time(&job.created_at)}
                </time>
            </td>
        </tr>
    }
}

/// A bar split into succeeded, failed, in-progress and queued executions, each as wide as its
/// share of all executions (canceled and removed ones leave the rest of the track empty).
#[component]
fn ProgressBar(counts: ExecutionCounts) -> impl IntoView {
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
        <div class="progress" role="img" aria-label=progress_label(&counts)>
            {segments}
        </div>
    }
}

/// What the page shows while the fleet has no jobs.
#[component]
fn EmptyHint() -> impl IntoView {
    // The page's own origin makes the command copy-pasteable against this very server.
    let origin = window().location().origin().unwrap_or_default();
    let command = format!(
        "curl -X POST {origin}/api/v1/jobs -H 'content-type: application/json' \
         -d '{{\"things\":[\"sim-0001\"],\"document\":{{\"operation\":\"simulate\"}}}}'"
    );
    view! {
        <div class="state empty">
            <p>"No jobs yet — create one with:"</p>
            <pre><code>{command}</code></pre>
        </div>
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

fn failed_title(counts: &ExecutionCounts) -> String {
    format!(
        "{} failed, {} rejected, {} timed out",
        counts.failed, counts.rejected, counts.timed_out
    )
}

/// The progress bar as a sentence, for screen readers.
pub fn progress_label(counts: &ExecutionCounts) -> String {
    let parts: Vec<String> = segments(counts)
        .iter()
        .map(|s| format!("{} {}", s.count, s.label))
        .collect();
    format!("{} of {} executions", parts.join(", "), counts.total())
}

/// The CSS class of a status cell: `status-in-progress`, `status-completed`, …
pub fn status_class(status: JobStatus) -> String {
    format!(
        "status-{}",
        status.as_str().to_ascii_lowercase().replace('_', "-")
    )
}

/// A status as a person reads it: `IN_PROGRESS` becomes "In progress".
pub fn status_label(status: JobStatus) -> &'static str {
    match status {
        JobStatus::InProgress => "In progress",
        JobStatus::Canceled => "Canceled",
        JobStatus::Completed => "Completed",
        JobStatus::DeletionInProgress => "Deleting",
        JobStatus::Scheduled => "Scheduled",
    }
}

/// Sorts jobs by creation time, newest first; jobs created at the same instant keep the
/// server's order.
pub fn newest_first(mut jobs: Vec<Job>) -> Vec<Job> {
    jobs.sort_by(|a, b| time_key(&b.created_at).cmp(&time_key(&a.created_at)));
    jobs
}

/// An ordering key for the RFC 3339 UTC times the API sends: the seconds, then the fraction.
///
/// Comparing whole strings would misorder `…:01Z` and `…:01.5Z`, because `Z` sorts after `.`.
fn time_key(time: &str) -> (&str, &str) {
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

/// `2026-05-01T12:34:56.789Z` becomes `2026-05-01 12:34:56`; anything unexpected is shown as is.
pub fn format_time(time: &str) -> String {
    match time.get(..19) {
        Some(prefix) if time.as_bytes().get(10) == Some(&b'T') => prefix.replacen('T', " ", 1),
        _ => time.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, created_at: &str) -> Job {
        Job {
            job_id: id.to_owned(),
            job_arn: format!("arn:aws:iot:eu-west-1:123456789012:job/{id}"),
            status: JobStatus::InProgress,
            description: None,
            targets: vec![],
            counts: ExecutionCounts::default(),
            created_at: created_at.to_owned(),
            updated_at: created_at.to_owned(),
            completed_at: None,
        }
    }

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
    }

    #[test]
    fn a_job_without_executions_has_an_empty_bar() {
        let counts = ExecutionCounts::default();
        assert!(segments(&counts).iter().all(|s| s.percent == 0.0));
        assert_eq!(
            progress_label(&counts),
            "0 succeeded, 0 failed, 0 in progress, 0 queued of 0 executions"
        );
    }

    #[test]
    fn status_classes_are_kebab_case() {
        assert_eq!(status_class(JobStatus::InProgress), "status-in-progress");
        assert_eq!(
            status_class(JobStatus::DeletionInProgress),
            "status-deletion-in-progress"
        );
        assert_eq!(status_class(JobStatus::Completed), "status-completed");
    }

    #[test]
    fn newest_first_orders_by_creation_time() {
        let jobs = vec![
            job("a", "2026-05-01T10:00:01Z"),
            job("b", "2026-05-01T10:00:01.500Z"),
            job("c", "2026-05-02T09:00:00Z"),
            job("d", "2026-05-01T10:00:01.500Z"),
        ];
        let ids: Vec<String> = newest_first(jobs).into_iter().map(|j| j.job_id).collect();
        assert_eq!(ids, ["c", "b", "d", "a"]);
    }

    #[test]
    fn times_are_shown_to_the_second() {
        assert_eq!(
            format_time("2026-05-01T12:34:56.789Z"),
            "2026-05-01 12:34:56"
        );
        assert_eq!(
            format_time("2026-05-01T12:34:56+00:00"),
            "2026-05-01 12:34:56"
        );
        assert_eq!(format_time("yesterday"), "yesterday");
    }
}
