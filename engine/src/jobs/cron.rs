//! The cron expressions of maintenance windows (`cron(Minutes Hours Day-of-month Month
//! Day-of-week Year)`, the syntax AWS uses for schedules): parsing with AWS's rules, matching
//! a minute, and finding the next matching minute.

use chrono::{DateTime, Datelike, Duration, DurationRound, TimeZone, Timelike, Utc};

/// A parsed cron expression. Each field is the set of values it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    /// `None` for `?`: the day is chosen by the day of the week.
    days_of_month: Option<Vec<bool>>,
    months: Vec<bool>,
    /// `None` for `?`. 1 is Sunday, as in AWS's cron.
    days_of_week: Option<Vec<bool>>,
    years: Vec<bool>,
}

/// The years a cron expression may name.
const FIRST_YEAR: u32 = 1970;
const LAST_YEAR: u32 = 2199;

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// How far ahead [`Cron::next_at_or_after`] looks before concluding there is no next minute.
const SEARCH_YEARS: i32 = 5;

impl Cron {
    /// Parses `cron(…)` or the bare six fields.
    pub fn parse(expression: &str) -> Result<Self, String> {
        let trimmed = expression.trim();
        let inner = trimmed
            .strip_prefix("cron(")
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or(trimmed);
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [minutes, hours, dom, month, dow, year] = fields.as_slice() else {
            return Err(format!(
                "{expression:?} is not a cron expression of six fields (minutes hours day-of-month month day-of-week year)"
            ));
        };
        let days_of_month = (*dom != "?").then(|| field(dom, 1, 31, &[])).transpose()?;
        let days_of_week = (*dow != "?")
            .then(|| field(dow, 1, 7, &DAY_NAMES))
            .transpose()?;
        if days_of_month.is_some() == days_of_week.is_some() {
            return Err(format!(
                "{expression:?}: exactly one of day-of-month and day-of-week must be '?'"
            ));
        }
        Ok(Self {
            minutes: field(minutes, 0, 59, &[])?,
            hours: field(hours, 0, 23, &[])?,
            days_of_month,
            months: field(month, 1, 12, &MONTH_NAMES)?,
            days_of_week,
            years: field(year, FIRST_YEAR, LAST_YEAR, &[])?,
        })
    }

    /// Whether the minute containing `t` matches.
    pub fn matches(&self, t: DateTime<Utc>) -> bool {
        self.day_matches(t) && self.minutes[t.minute() as usize] && self.hours[t.hour() as usize]
    }

    fn day_matches(&self, t: DateTime<Utc>) -> bool {
        let year_ok = usize::try_from(t.year())
            .ok()
            .and_then(|year| self.years.get(year))
            .copied()
            .unwrap_or(false);
        let day_ok = match (&self.days_of_month, &self.days_of_week) {
            (Some(days), _) => days[t.day() as usize],
            (None, Some(days)) => days[t.weekday().number_from_sunday() as usize],
            (None, None) => true,
        };
        year_ok && day_ok && self.months[t.month() as usize]
    }

    /// The first matching minute at or after `t`, if one comes within a few years.
    pub fn next_at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut candidate = ceil_minute(t);
        let limit = t + Duration::days(366 * i64::from(SEARCH_YEARS));
        while candidate <= limit {
            if !self.day_matches(candidate) {
                // Skip to the next midnight.
                let day = candidate.date_naive().succ_opt()?;
                candidate = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0)?);
            } else if !self.hours[candidate.hour() as usize] {
                candidate = candidate.duration_trunc(Duration::hours(1)).ok()? + Duration::hours(1);
            } else if !self.minutes[candidate.minute() as usize] {
                candidate += Duration::minutes(1);
            } else {
                return Some(candidate);
            }
        }
        None
    }

    /// Whether `t` falls in a window that starts at a matching minute and lasts `minutes`.
    pub fn window_contains(&self, t: DateTime<Utc>, minutes: i64) -> bool {
        let Ok(minute) = t.duration_trunc(Duration::minutes(1)) else {
            return false;
        };
        (0..minutes).any(|back| self.matches(minute - Duration::minutes(back)))
    }
}

/// `t` rounded up to a whole minute.
fn ceil_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    match t.duration_trunc(Duration::minutes(1)) {
        Ok(floor) if floor == t => floor,
        Ok(floor) => floor + Duration::minutes(1),
        Err(_) => t,
    }
}

/// Parses one field: `*`, values, names, ranges `a-b`, steps `a/n` or `a-b/n` or `*/n`, and
/// comma-separated lists of those. Returns a table indexed by value.
fn field(text: &str, low: u32, high: u32, names: &[&str]) -> Result<Vec<bool>, String> {
    let mut allowed = vec![false; high as usize + 1];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{part:?}: the step must be a positive number"))?;
                (range, step)
            }
            None => (part, 1),
        };
        let (from, to) = if range == "*" {
            (low, high)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, low, high, names)?, value(b, low, high, names)?)
        } else {
            let single = value(range, low, high, names)?;
            // `a/n` runs from a to the end of the field.
            (single, if part.contains('/') { high } else { single })
        };
        if from > to {
            return Err(format!("{part:?}: the range runs backwards"));
        }
        for v in (from..=to).step_by(step as usize) {
            allowed[v as usize] = true;
        }
    }
    Ok(allowed)
}

fn value(text: &str, low: u32, high: u32, names: &[&str]) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    let parsed = match names.iter().position(|name| *name == upper) {
        Some(index) => Some(low + index as u32),
        None => text.parse::<u32>().ok(),
    };
    parsed
        .filter(|v| (low..=high).contains(v))
        .ok_or_else(|| format!("{text:?} is not a value between {low} and {high}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a time")
            .with_timezone(&Utc)
    }

    #[test]
    fn parses_aws_syntax_and_refuses_nonsense() {
        assert!(Cron::parse("cron(0 2 ? * SUN *)").is_ok());
        assert!(Cron::parse("0/15 8-17 ? * MON-FRI *").is_ok());
        assert!(Cron::parse("cron(30 1 1,15 * ? 2027)").is_ok());
        for bad in [
            "",
            "cron(0 2 * * *)",
            "cron(60 2 ? * SUN *)",
            "cron(0 2 * * SUN *)",
            "cron(0 2 ? * SUN-XYZ *)",
            "cron(0 25 ? * * *)",
            "cron(0/0 2 ? * * *)",
            "cron(5-1 2 ? * * *)",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn finds_next_occurrences_and_windows() {
        // Sundays at 02:00; 2026-11-29 is a Sunday.
        let cron = Cron::parse("cron(0 2 ? * SUN *)").expect("valid");
        let next = cron.next_at_or_after(at("2026-11-28T03:00:00Z"));
        assert_eq!(next, Some(at("2026-11-29T02:00:00Z")));
        let after = cron.next_at_or_after(at("2026-11-29T02:00:30Z"));
        assert_eq!(after, Some(at("2026-12-06T02:00:00Z")));
        assert!(cron.window_contains(at("2026-11-29T02:59:59Z"), 60));
        assert!(!cron.window_contains(at("2026-11-29T03:00:00Z"), 60));
        assert!(!cron.window_contains(at("2026-11-29T01:59:00Z"), 60));

        let daily = Cron::parse("cron(15 * * * ? *)").expect("valid");
        assert_eq!(
            daily.next_at_or_after(at("2026-11-28T03:16:00Z")),
            Some(at("2026-11-28T04:15:00Z"))
        );
        let past = Cron::parse("cron(0 0 1 1 ? 1999)").expect("valid");
        assert_eq!(past.next_at_or_after(at("2026-11-28T03:16:00Z")), None);
    }
}
