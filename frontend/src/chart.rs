//! The chart of a job's executions per state over time: a stacked area in SVG, drawn from
//! `GET /api/v1/jobs/{id}/timeline` (the projection's transition history) and read again on
//! every live change. The layers are the progress bar's (succeeded, failed, in progress,
//! queued), bottom to top, so the two read alike.

use flotilla_api::{JobTimeline, TimelinePoint};
use leptos::prelude::*;

use crate::api::{self, encode};
use crate::live::Live;
use crate::ui::{format_time, loaded, segments, t};

/// The drawing's size in SVG units; the page scales it to its width.
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
/// How many points the server is asked for.
const POINTS: usize = 60;

/// One layer of the chart: its segment kind (CSS `chart-<kind>`), its label and its outline.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub kind: &'static str,
    pub label: &'static str,
    /// An SVG path: along the layer's top, then back along its bottom.
    pub path: String,
}

/// The stacked layers of `points`, scaled to `width` × `height` (the largest total fills the
/// height). Empty when there is nothing to draw.
pub fn layers(points: &[TimelinePoint], width: f64, height: f64) -> Vec<Layer> {
    let max = points.iter().map(|p| p.counts.total()).max().unwrap_or(0);
    if points.len() < 2 || max == 0 {
        return Vec::new();
    }
    let x = |i: usize| width * i as f64 / (points.len() - 1) as f64;
    let y = |count: i64| height - height * count as f64 / max as f64;
    // Per point, the running total below each layer.
    let stacks: Vec<[(i64, i64); 4]> = points
        .iter()
        .map(|p| {
            let mut below = 0;
            segments(&p.counts).map(|s| {
                let bottom = below;
                below += s.count;
                (bottom, below)
            })
        })
        .collect();
    let kinds = segments(&points[0].counts);
    kinds
        .iter()
        .enumerate()
        .map(|(layer, segment)| {
            let mut path = String::new();
            for (i, stack) in stacks.iter().enumerate() {
                let command = if i == 0 { 'M' } else { 'L' };
                path.push_str(&format!("{command}{:.1},{:.1} ", x(i), y(stack[layer].1)));
            }
            for (i, stack) in stacks.iter().enumerate().rev() {
                path.push_str(&format!("L{:.1},{:.1} ", x(i), y(stack[layer].0)));
            }
            path.push('Z');
            Layer {
                kind: segment.kind,
                label: segment.label,
                path,
            }
        })
        .collect()
}

/// The chart of `job_id`'s executions per state over time.
#[component]
pub fn StateChart(job_id: String) -> impl IntoView {
    let live = expect_context::<Live>();
    let job_id = StoredValue::new(job_id);
    let timeline = LocalResource::new(move || {
        live.version.track();
        let path = format!(
            "/api/v1/jobs/{}/timeline?points={POINTS}",
            encode(&job_id.get_value())
        );
        async move { api::get::<JobTimeline>(&path).await }
    });
    loaded(timeline, |timeline: JobTimeline| {
        let drawn = layers(&timeline.points, WIDTH, HEIGHT);
        if drawn.is_empty() {
            return view! { <p class="muted">{t("No executions yet.")}</p> }.into_any();
        }
        let first = timeline.points.first().map(|p| format_time(&p.at));
        let last = timeline.points.last().map(|p| format_time(&p.at));
        view! {
            <figure class="chart" data-testid="state-chart">
                <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") preserveAspectRatio="none" role="img"
                    aria-label=t("Executions per state over time")>
                    {drawn.into_iter().map(|l| view! {
                        <path class=format!("chart-{}", l.kind) d=l.path><title>{t(l.label)}</title></path>
                    }).collect_view()}
                </svg>
                <figcaption class="muted">{first} " – " {last}</figcaption>
            </figure>
        }
        .into_any()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_api::ExecutionCounts;

    fn point(queued: i64, in_progress: i64, succeeded: i64) -> TimelinePoint {
        TimelinePoint {
            at: String::new(),
            counts: ExecutionCounts {
                queued,
                in_progress,
                succeeded,
                ..Default::default()
            },
        }
    }

    #[test]
    fn layers_stack_in_the_progress_bars_order() {
        let points = [point(4, 0, 0), point(0, 2, 2)];
        let drawn = layers(&points, 100.0, 40.0);
        let kinds: Vec<&str> = drawn.iter().map(|l| l.kind).collect();
        assert_eq!(kinds, ["succeeded", "failed", "in-progress", "queued"]);
        // Succeeded: nothing at first, half of the height at the end.
        assert_eq!(
            drawn[0].path,
            "M0.0,40.0 L100.0,20.0 L100.0,40.0 L0.0,40.0 Z"
        );
        // Queued sits on top of everything else: all of it at first, nothing at the end.
        assert_eq!(drawn[3].path, "M0.0,0.0 L100.0,0.0 L100.0,0.0 L0.0,40.0 Z");
        assert!(layers(&points[..1], 100.0, 40.0).is_empty());
        assert!(layers(&[point(0, 0, 0), point(0, 0, 0)], 100.0, 40.0).is_empty());
    }
}
