//! Schedules and maintenance windows in IANA time zones: when a rollout's waves may start.
//!
//! Windows recur on local days at a local time, so "Sunday 22:00 in Europe/Madrid" stays
//! 22:00 across daylight-saving changes. A window starting in a skipped hour (spring forward)
//! opens at the first local time that exists after it; one in a repeated hour (fall back)
//! opens at its first occurrence.

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeZone,
    Utc, Weekday,
};
use chrono_tz::Tz;
use flotilla_api::{Schedule, WindowTimes};

use crate::api::job_options::Problems;

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Plan {
    pub zone: Tz,
    pub not_before: Option<DateTime<Utc>>,
    pub windows: Vec<LocalWindow>,
}

#[derive(Debug, Clone)]
pub struct LocalWindow {
    /// Empty: every day.
    pub days: Vec<Weekday>,
    pub start: NaiveTime,
    pub duration: Duration,
}

fn weekday(day: &str) -> Option<Weekday> {
    Some(match day.to_ascii_lowercase().as_str() {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

/// The UTC instant of local time `at` in `zone`: the earlier one when the hour repeats, the
/// first existing minute after it when the hour is skipped.
fn resolve_local(zone: Tz, at: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = at;
    // A gap is at most a few hours; a day of probing is a generous bound.
    for _ in 0..(24 * 60) {
        if let Some(t) = zone.from_local_datetime(&probe).earliest() {
            return t.with_timezone(&Utc);
        }
        probe += Duration::minutes(1);
    }
    Utc.from_utc_datetime(&at)
}

/// Checks `schedule` (field messages under `schedule.`) and returns its plan.
pub(crate) fn validate(schedule: &Schedule, problems: &mut Problems) -> Option<Plan> {
    let before = problems.0.len();
    let zone: Option<Tz> = schedule.time_zone.parse().ok();
    if zone.is_none() {
        problems.add(
            "schedule.time_zone",
            format!(
                "{:?} is not an IANA time zone such as Europe/Madrid",
                schedule.time_zone
            ),
        );
    }
    let not_before = schedule.not_before.as_deref().and_then(|text| {
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Some(t.with_timezone(&Utc));
        }
        match (NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"), zone) {
            (Ok(local), Some(zone)) => Some(resolve_local(zone, local)),
            (Ok(_), None) => None,
            (Err(_), _) => {
                problems.add(
                    "schedule.not_before",
                    "must be a local time like 2026-12-24T22:00 or an RFC 3339 time",
                );
                None
            }
        }
    });
    let mut windows = Vec::new();
    for (i, window) in schedule.windows.iter().enumerate() {
        let field = |name: &str| format!("schedule.windows[{i}].{name}");
        let mut days = Vec::new();
        for day in &window.days {
            match weekday(day) {
                Some(d) => days.push(d),
                None => problems.add(field("days"), format!("{day:?} is not mon … sun")),
            }
        }
        let start = NaiveTime::parse_from_str(&window.start, "%H:%M").ok();
        if start.is_none() {
            problems.add(field("start"), "must be a local time HH:MM");
        }
        problems.check(
            (1..=1440).contains(&window.duration_minutes),
            &field("duration_minutes"),
            || format!("must be from 1 to 1440, got {}", window.duration_minutes),
        );
        if let Some(start) = start {
            windows.push(LocalWindow {
                days,
                start,
                duration: Duration::minutes(window.duration_minutes),
            });
        }
    }
    if problems.0.len() > before {
        return None;
    }
    Some(Plan {
        zone: zone?,
        not_before,
        windows,
    })
}

impl Plan {
    /// `None` when a wave may start at `now`; otherwise when it next may.
    pub fn next_opening(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let from = match self.not_before {
            Some(t) if t > now => t,
            _ => now,
        };
        let opening = self.window_at_or_after(from);
        (opening > now).then_some(opening)
    }

    /// The first instant at or after `from` inside a window (`from` itself without windows).
    fn window_at_or_after(&self, from: DateTime<Utc>) -> DateTime<Utc> {
        if self.windows.is_empty() {
            return from;
        }
        let today = from.with_timezone(&self.zone).date_naive();
        let mut best: Option<DateTime<Utc>> = None;
        // A window that opened yesterday may still be open; every weekday recurs within 8 days.
        for offset in -1..=8 {
            let Some(date) = today.checked_add_signed(Duration::days(offset)) else {
                continue;
            };
            for window in &self.windows {
                if let Some(opening) = self.occurrence(window, date, from) {
                    best = Some(best.map_or(opening, |b| b.min(opening)));
                }
            }
        }
        best.unwrap_or(from)
    }

    /// When `window`'s occurrence on local `date` lets a wave start at or after `from`.
    fn occurrence(
        &self,
        window: &LocalWindow,
        date: NaiveDate,
        from: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if !window.days.is_empty() && !window.days.contains(&date.weekday()) {
            return None;
        }
        let start = resolve_local(self.zone, date.and_time(window.start));
        let end = start + window.duration;
        if end <= from {
            None
        } else {
            Some(start.max(from))
        }
    }

    /// `at` in UTC and in the plan's zone.
    pub fn times(&self, at: DateTime<Utc>) -> WindowTimes {
        WindowTimes {
            utc: at.to_rfc3339_opts(SecondsFormat::Secs, true),
            local: at
                .with_timezone(&self.zone)
                .to_rfc3339_opts(SecondsFormat::Secs, false),
            time_zone: self.zone.name().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_api::Window;

    fn plan(zone: &str, windows: Vec<Window>) -> Plan {
        let mut problems = Problems::default();
        let plan = validate(
            &Schedule {
                time_zone: zone.into(),
                not_before: None,
                windows,
            },
            &mut problems,
        );
        assert!(problems.0.is_empty(), "{:?}", problems.0);
        plan.expect("a plan")
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a time")
            .with_timezone(&Utc)
    }

    fn sunday_night() -> Vec<Window> {
        vec![Window {
            days: vec!["sun".into()],
            start: "22:00".into(),
            duration_minutes: 120,
        }]
    }

    #[test]
    fn windows_follow_local_time_across_daylight_saving() {
        let madrid = plan("Europe/Madrid", sunday_night());
        // Winter (UTC+1): Sunday 2026-12-06 22:00 local is 21:00 UTC.
        assert_eq!(
            madrid.next_opening(utc("2026-12-04T12:00:00Z")),
            Some(utc("2026-12-06T21:00:00Z"))
        );
        // Summer (UTC+2): Sunday 2026-07-05 22:00 local is 20:00 UTC.
        assert_eq!(
            madrid.next_opening(utc("2026-07-03T12:00:00Z")),
            Some(utc("2026-07-05T20:00:00Z"))
        );
        // Inside the window: open now, even one that began the local day before.
        assert_eq!(madrid.next_opening(utc("2026-12-06T22:30:00Z")), None);
        let times = madrid.times(utc("2026-12-06T21:00:00Z"));
        assert_eq!(times.local, "2026-12-06T22:00:00+01:00");
    }

    #[test]
    fn a_window_in_a_skipped_hour_opens_when_the_hour_exists() {
        // 2027-03-28 02:30 does not exist in Madrid (clocks jump from 02:00 to 03:00).
        let madrid = plan(
            "Europe/Madrid",
            vec![Window {
                days: vec![],
                start: "02:30".into(),
                duration_minutes: 60,
            }],
        );
        assert_eq!(
            madrid.next_opening(utc("2027-03-27T23:00:00Z")),
            Some(utc("2027-03-28T01:00:00Z"))
        );
    }

    #[test]
    fn bad_schedules_get_field_messages() {
        let mut problems = Problems::default();
        let plan = validate(
            &Schedule {
                time_zone: "Mars/Olympus".into(),
                not_before: Some("tomorrow".into()),
                windows: vec![Window {
                    days: vec!["someday".into()],
                    start: "25:00".into(),
                    duration_minutes: 0,
                }],
            },
            &mut problems,
        );
        assert!(plan.is_none());
        let fields: Vec<&str> = problems.0.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "schedule.time_zone",
                "schedule.not_before",
                "schedule.windows[0].days",
                "schedule.windows[0].start",
                "schedule.windows[0].duration_minutes"
            ]
        );
    }

    #[test]
    fn not_before_waits_for_the_first_window_after_it() {
        let mut problems = Problems::default();
        let plan = validate(
            &Schedule {
                time_zone: "America/New_York".into(),
                not_before: Some("2026-12-07T00:00".into()),
                windows: sunday_night(),
            },
            &mut problems,
        )
        .expect("a plan");
        // Not before Monday 00:00 New York: the Sunday window of the 6th is gone; the 13th's.
        assert_eq!(
            plan.next_opening(utc("2026-12-06T12:00:00Z")),
            Some(utc("2026-12-14T03:00:00Z"))
        );
    }
}
