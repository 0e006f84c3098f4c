//! What happened in a job, read from the projection: the failure reasons devices reported
//! (`statusDetails.reason`, else `error` or `message`), grouped and counted, and how many executions were in each state over time (the history
//! behind the progress chart, from `server.execution_transitions`).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use flotilla_api::{ExecutionCounts, FailureReason, FailureReasons, JobTimeline, TimelinePoint};
use serde::Deserialize;

use super::job_options::Problems;
use super::{ApiError, ApiQuery, projection_reads};
use crate::app::AppState;

/// The most reason groups one answer lists.
const MAX_REASONS: i64 = 50;
/// A longer reason is cut to this many characters before grouping.
const REASON_CHARS: i32 = 200;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs/{job_id}/failure-reasons", get(failure_reasons))
        .route("/jobs/{job_id}/timeline", get(timeline))
}

async fn found(state: &AppState, job_id: &str) -> Result<(), ApiError> {
    if projection_reads::job_exists(&state.pool, job_id).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no job {job_id:?}")))
    }
}

/// `GET /jobs/{id}/failure-reasons`.
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}/failure-reasons", operation_id = "job_failure_reasons", tag = "jobs",
    params(("job_id" = String, Path, description = "The job id")),
    responses((status = 200, description = "Failure reasons, most frequent first", body = FailureReasons), ApiError))]
pub(super) async fn failure_reasons(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<FailureReasons>, ApiError> {
    found(&state, &job_id).await?;
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "select status,
                left(coalesce(status_details ->> 'reason', status_details ->> 'error',
                              status_details ->> 'message', ''), $3) as reason,
                count(*)
           from server.job_executions
          where job_id = $1 and status in ('FAILED', 'REJECTED', 'TIMED_OUT', 'REMOVED')
          group by 1, 2
          order by 3 desc, 1, 2
          limit $2",
    )
    .bind(&job_id)
    .bind(MAX_REASONS)
    .bind(REASON_CHARS)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(FailureReasons {
        reasons: rows
            .into_iter()
            .map(|(status, reason, count)| FailureReason {
                status,
                reason,
                count,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct TimelineQuery {
    /// How many points, 2-500 (default 60), evenly spaced from the first transition to now.
    points: Option<i64>,
}

/// `GET /jobs/{id}/timeline?points=N`.
///
/// Each transition moves one execution from its old state to its new one, so the counts at a
/// time are the sum of the moves before it. PostgreSQL sums the moves per interval (one row
/// per interval and pair of states, however many executions) and the running totals are made
/// here.
#[utoipa::path(get, path = "/api/v1/jobs/{job_id}/timeline", operation_id = "job_timeline", tag = "jobs",
    params(("job_id" = String, Path, description = "The job id"), TimelineQuery),
    responses((status = 200, description = "Executions per state over time", body = JobTimeline), ApiError))]
pub(super) async fn timeline(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    ApiQuery(query): ApiQuery<TimelineQuery>,
) -> Result<Json<JobTimeline>, ApiError> {
    let points = query.points.unwrap_or(60);
    if !(2..=500).contains(&points) {
        let mut problems = Problems::default();
        problems.add("points", "must be from 2 to 500");
        return Err(ApiError::fields(problems.0));
    }
    found(&state, &job_id).await?;
    let mut tx = state.pool.begin().await?;
    let first: Option<DateTime<Utc>> = sqlx::query_scalar(
        "select min(changed_at) from server.execution_transitions where job_id = $1",
    )
    .bind(&job_id)
    .fetch_one(&mut *tx)
    .await?;
    let Some(start) = first else {
        return Ok(Json(JobTimeline::default()));
    };
    let end = Utc::now().max(start + chrono::Duration::seconds(1));
    // Each move counts from the first point at or after it.
    let moves: Vec<(i32, Option<String>, String, i64)> = sqlx::query_as(
        "select least(greatest(ceil(extract(epoch from (changed_at - $2)) / $4)::int, 0), $5)
                    as point,
                from_status, to_status, count(*)
           from server.execution_transitions
          where job_id = $1
          group by 1, 2, 3",
    )
    .bind(&job_id)
    .bind(start)
    .bind((end - start).as_seconds_f64() / (points - 1) as f64)
    .bind(points as i32 - 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(JobTimeline {
        points: running_totals(start, end, points as usize, &moves),
    }))
}

/// The counts at each of `points` evenly spaced times from `start` to `end`, from `moves`
/// summed per point: `(point, from, to, how many)`, where a move belongs to the first point
/// at or after it (0-based; point 0 is `start`).
fn running_totals(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    points: usize,
    moves: &[(i32, Option<String>, String, i64)],
) -> Vec<TimelinePoint> {
    let step = (end - start) / (points as i32 - 1);
    let mut by_point = vec![Vec::new(); points];
    for (point, from, to, n) in moves {
        by_point[(*point).clamp(0, points as i32 - 1) as usize].push((from, to, *n));
    }
    let mut counts = ExecutionCounts::default();
    by_point
        .into_iter()
        .enumerate()
        .map(|(point, moves)| {
            for (from, to, n) in moves {
                if let Some(from) = from.as_deref().and_then(|s| counts.of_status(s)) {
                    *from -= n;
                }
                if let Some(to) = counts.of_status(to) {
                    *to += n;
                }
            }
            TimelinePoint {
                at: (start + step * point as i32).to_rfc3339_opts(SecondsFormat::Millis, true),
                counts,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(
        interval: i32,
        from: Option<&str>,
        to: &str,
        n: i64,
    ) -> (i32, Option<String>, String, i64) {
        (interval, from.map(str::to_owned), to.to_owned(), n)
    }

    #[test]
    fn the_counts_are_the_moves_summed_up_to_each_point() {
        let start = DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
            .unwrap()
            .to_utc();
        let end = start + chrono::Duration::seconds(30);
        let moves = [
            mv(0, None, "QUEUED", 3),
            mv(2, Some("QUEUED"), "IN_PROGRESS", 2),
            mv(3, Some("IN_PROGRESS"), "SUCCEEDED", 1),
            mv(3, Some("IN_PROGRESS"), "FAILED", 1),
            mv(3, Some("QUEUED"), "REMOVED", 1),
            // An unknown status is ignored rather than miscounted.
            mv(3, None, "PAUSED", 9),
        ];
        let points = running_totals(start, end, 4, &moves);
        let at: Vec<&str> = points.iter().map(|p| p.at.as_str()).collect();
        assert_eq!(
            at,
            [
                "2026-12-05T10:00:00.000Z",
                "2026-12-05T10:00:10.000Z",
                "2026-12-05T10:00:20.000Z",
                "2026-12-05T10:00:30.000Z"
            ]
        );
        let c: Vec<(i64, i64, i64, i64, i64)> = points
            .iter()
            .map(|p| {
                let c = p.counts;
                (c.queued, c.in_progress, c.succeeded, c.failed, c.removed)
            })
            .collect();
        assert_eq!(
            c,
            [
                (3, 0, 0, 0, 0),
                (3, 0, 0, 0, 0),
                (1, 2, 0, 0, 0),
                (0, 0, 1, 1, 1)
            ]
        );
    }
}
