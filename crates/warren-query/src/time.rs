//! Date ranges and interval buckets in a project's time zone: the relative
//! forms of PostHog's date filters (`-7d`, `-24h`, `mStart`, …), absolute
//! dates, and the list of buckets a time series reports, computed here so
//! every backend reports the same buckets.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::model::{DateRange, Interval};
use crate::project::ProjectContext;
use crate::QueryError;

/// A resolved range: `[from_us, to_us)` in UTC µs and the local bucket
/// starts that cover it, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeRange {
    pub from_us: i64,
    pub to_us: i64,
    pub interval: Interval,
    pub buckets: Vec<NaiveDateTime>,
}

/// Most buckets one series may have; a longer range asks for a coarser
/// interval instead of a response nobody can draw.
const MAX_BUCKETS: usize = 10_000;

impl TimeRange {
    pub fn resolve(
        range: Option<&DateRange>,
        interval: Interval,
        context: &ProjectContext,
        earliest_event_us: Option<i64>,
    ) -> Result<Self, QueryError> {
        let date_from = range.and_then(|r| r.date_from.as_deref()).unwrap_or("-7d");
        let date_to = range.and_then(|r| r.date_to.as_deref());
        let from_local = if date_from == "all" {
            earliest_event_us.map(|us| context.local(us)).unwrap_or_else(|| context.now_local())
        } else {
            parse_point(date_from, context, Edge::Start)?
        };
        let to_local = match date_to {
            None => context.now_local() + Duration::microseconds(1),
            Some(text) => parse_point(text, context, Edge::End)?,
        };
        if to_local <= from_local {
            return Err(QueryError::invalid(format!(
                "dateRange is empty: date_from {date_from:?} is not before date_to {:?}",
                date_to.unwrap_or("now")
            )));
        }
        let from_us = context.utc_us(from_local);
        let to_us = context.utc_us(to_local);
        let buckets = buckets_between(from_local, to_local, interval, context.week_starts_monday)?;
        Ok(Self { from_us, to_us, interval, buckets })
    }

    /// The range just before this one, as long, with as many buckets.
    pub fn previous(&self, context: &ProjectContext) -> Self {
        let n = self.buckets.len() as i32;
        let buckets: Vec<NaiveDateTime> = self.buckets.iter().map(|b| shift(*b, self.interval, -n)).collect();
        let length = self.to_us - self.from_us;
        let from_us = buckets
            .first()
            .map(|b| context.utc_us(*b))
            .unwrap_or(self.from_us - length)
            .min(self.from_us - length);
        Self { from_us, to_us: self.from_us, interval: self.interval, buckets }
    }

    pub fn index_of(&self, bucket: NaiveDateTime) -> Option<usize> {
        self.buckets.binary_search(&bucket).ok()
    }
}

/// The (exclusive) UTC end a `date_to` names; now when absent.
pub fn end_of(date_to: Option<&str>, context: &ProjectContext) -> Result<i64, QueryError> {
    let local = match date_to {
        None => context.now_local() + Duration::microseconds(1),
        Some(text) => parse_point(text, context, Edge::End)?,
    };
    Ok(context.utc_us(local))
}

/// The UTC instant (µs) a date names: its start (`after` of a list) or,
/// with `end`, its exclusive end (`before`).
pub fn instant(text: &str, context: &ProjectContext, end: bool) -> Result<i64, QueryError> {
    // An instant with its offset is taken as it is: through local time it
    // could land an hour off in the hour a clock change repeats.
    if let Ok(at) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(at.timestamp_micros());
    }
    let local = parse_point(text, context, if end { Edge::End } else { Edge::Start })?;
    Ok(context.utc_us(local))
}

#[derive(Clone, Copy, PartialEq)]
enum Edge {
    Start,
    End,
}

/// One end of a date filter as a local time; an `End` date without a
/// time of day means the end of that day.
fn parse_point(text: &str, context: &ProjectContext, edge: Edge) -> Result<NaiveDateTime, QueryError> {
    let text = text.trim();
    let invalid = || {
        QueryError::invalid(format!(
            "cannot read date {text:?}: use YYYY-MM-DD, an ISO 8601 time, or a relative form like -7d, -24h, -1m, -1y, dStart, mStart"
        ))
    };
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = date.and_time(NaiveTime::MIN);
        return Ok(if edge == Edge::End { start + Duration::days(1) } else { start });
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&context.time_zone).naive_local());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(at);
        }
    }
    let now = context.now_local();
    let (body, anchor) = if let Some(body) = text.strip_suffix("Start") {
        (body, Some(Edge::Start))
    } else if let Some(body) = text.strip_suffix("End") {
        (body, Some(Edge::End))
    } else {
        (text, None)
    };
    let unit = body.chars().last().ok_or_else(invalid)?;
    let amount = &body[..body.len() - unit.len_utf8()];
    let amount: i64 = match amount {
        "" => 0,
        "-" => return Err(invalid()),
        _ => amount.parse().map_err(|_| invalid())?,
    };
    // Checked arithmetic: an absurd amount is the asker's 400, not a panic.
    let shifted = match unit {
        'h' => Duration::try_hours(amount).and_then(|d| now.checked_add_signed(d)),
        'd' => Duration::try_days(amount).and_then(|d| now.checked_add_signed(d)),
        'w' => Duration::try_weeks(amount).and_then(|d| now.checked_add_signed(d)),
        'm' => add_months(now, amount),
        'q' => amount.checked_mul(3).and_then(|m| add_months(now, m)),
        'y' => amount.checked_mul(12).and_then(|m| add_months(now, m)),
        _ => return Err(invalid()),
    }
    .ok_or_else(invalid)?;
    let day = shifted.date().and_time(NaiveTime::MIN);
    let unit_start = match unit {
        'h' => shifted
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .ok_or_else(invalid)?,
        'd' => day,
        'w' => day - Duration::days(shifted.weekday().num_days_from_monday() as i64),
        'm' => day.with_day(1).ok_or_else(invalid)?,
        'q' => day.with_day(1).and_then(|d| d.with_month0(d.month0() / 3 * 3)).ok_or_else(invalid)?,
        _ => day.with_day(1).and_then(|d| d.with_month(1)).ok_or_else(invalid)?,
    };
    let unit_end = match unit {
        'h' => unit_start + Duration::hours(1),
        'd' => unit_start + Duration::days(1),
        'w' => unit_start + Duration::weeks(1),
        'm' => add_months(unit_start, 1).ok_or_else(invalid)?,
        'q' => add_months(unit_start, 3).ok_or_else(invalid)?,
        _ => add_months(unit_start, 12).ok_or_else(invalid)?,
    };
    Ok(match (anchor, edge, unit) {
        (Some(Edge::Start), _, _) => unit_start,
        (Some(Edge::End), _, _) => unit_end,
        // `-24h` keeps the hour; other relative starts begin at midnight,
        // and a relative end runs to the end of its day.
        (None, Edge::Start, 'h') => unit_start,
        (None, Edge::Start, _) => day,
        (None, Edge::End, 'h') => shifted,
        (None, Edge::End, _) if amount == 0 => now + Duration::microseconds(1),
        (None, Edge::End, _) => day + Duration::days(1),
    })
}

fn add_months(at: NaiveDateTime, months: i64) -> Option<NaiveDateTime> {
    let magnitude = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
    if months >= 0 {
        at.checked_add_months(magnitude)
    } else {
        at.checked_sub_months(magnitude)
    }
}

/// The local start of the bucket `at` falls in; the same rule the
/// renderers give the engines.
pub fn bucket_start(at: NaiveDateTime, interval: Interval, week_starts_monday: bool) -> NaiveDateTime {
    let day = at.date().and_time(NaiveTime::MIN);
    match interval {
        Interval::Hour => day + Duration::hours(at.hour() as i64),
        Interval::Day => day,
        Interval::Week => {
            let back = if week_starts_monday {
                at.weekday().num_days_from_monday()
            } else {
                at.weekday().num_days_from_sunday()
            };
            day - Duration::days(back as i64)
        }
        Interval::Month => day.with_day(1).unwrap_or(day),
    }
}

/// A bucket start moved by `n` intervals.
pub fn shift(bucket: NaiveDateTime, interval: Interval, n: i32) -> NaiveDateTime {
    match interval {
        Interval::Hour => bucket + Duration::hours(n as i64),
        Interval::Day => bucket + Duration::days(n as i64),
        Interval::Week => bucket + Duration::weeks(n as i64),
        Interval::Month => add_months(bucket, n as i64).unwrap_or(bucket),
    }
}

fn buckets_between(
    from: NaiveDateTime,
    to: NaiveDateTime,
    interval: Interval,
    week_starts_monday: bool,
) -> Result<Vec<NaiveDateTime>, QueryError> {
    let mut buckets = Vec::new();
    let mut bucket = bucket_start(from, interval, week_starts_monday);
    while bucket < to {
        if buckets.len() == MAX_BUCKETS {
            return Err(QueryError::invalid(format!(
                "the date range holds more than {MAX_BUCKETS} {interval:?} intervals; choose a larger interval"
            )));
        }
        buckets.push(bucket);
        bucket = shift(bucket, interval, 1);
    }
    Ok(buckets)
}

/// `"2024-01-01"` (or with the time for hours), as PostHog's `days`.
pub fn day_key(bucket: NaiveDateTime, interval: Interval) -> String {
    match interval {
        Interval::Hour => bucket.format("%Y-%m-%d %H:%M:%S").to_string(),
        _ => bucket.format("%Y-%m-%d").to_string(),
    }
}

/// `"1-Jan-2024"` (with `HH:MM` for hours), as PostHog's `labels`.
pub fn label(bucket: NaiveDateTime, interval: Interval) -> String {
    match interval {
        Interval::Hour => bucket.format("%-d-%b-%Y %H:%M").to_string(),
        _ => bucket.format("%-d-%b-%Y").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn context(zone: &str) -> ProjectContext {
        let now = DateTime::parse_from_rfc3339("2024-03-15T10:30:00Z").map(|t| t.with_timezone(&Utc));
        ProjectContext::new(1, zone, now.unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn range(from: &str, to: Option<&str>, interval: Interval, zone: &str) -> TimeRange {
        let range = DateRange { date_from: Some(from.into()), date_to: to.map(Into::into) };
        TimeRange::resolve(Some(&range), interval, &context(zone), None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn relative_days_start_at_local_midnight_and_run_to_now() {
        let r = range("-7d", None, Interval::Day, "UTC");
        assert_eq!(r.buckets.len(), 8);
        assert_eq!(day_key(r.buckets[0], Interval::Day), "2024-03-08");
        assert_eq!(label(r.buckets[7], Interval::Day), "15-Mar-2024");
        let tokyo = range("-7d", None, Interval::Day, "Asia/Tokyo");
        // 10:30 UTC is 19:30 in Tokyo, still the 15th; midnight there is 15:00 UTC.
        assert_eq!(
            tokyo.from_us,
            context("UTC").utc_us(
                NaiveDate::from_ymd_opt(2024, 3, 7).and_then(|d| d.and_hms_opt(15, 0, 0)).unwrap_or_default()
            )
        );
    }

    #[test]
    fn absolute_dates_include_the_whole_last_day() {
        let r = range("2024-01-01", Some("2024-01-31"), Interval::Week, "UTC");
        assert_eq!(r.to_us - r.from_us, 31 * 86_400_000_000);
        // Sunday 2023-12-31 starts the first week.
        assert_eq!(day_key(r.buckets[0], Interval::Week), "2023-12-31");
        assert_eq!(r.buckets.len(), 5);
    }

    #[test]
    fn hours_and_month_anchors() {
        let r = range("-24h", None, Interval::Hour, "UTC");
        assert_eq!(r.buckets.len(), 25);
        let m = range("mStart", None, Interval::Day, "UTC");
        assert_eq!(day_key(m.buckets[0], Interval::Day), "2024-03-01");
        let prev = range("-1mStart", Some("-1mEnd"), Interval::Day, "UTC");
        assert_eq!(prev.buckets.len(), 29);
    }

    #[test]
    fn previous_period_has_as_many_buckets() {
        let r = range("-7d", None, Interval::Day, "UTC");
        let p = r.previous(&context("UTC"));
        assert_eq!(p.buckets.len(), r.buckets.len());
        assert_eq!(day_key(p.buckets[0], Interval::Day), "2024-02-29");
        assert_eq!(p.to_us, r.from_us);
    }

    #[test]
    fn bad_input_is_refused() {
        let c = context("UTC");
        for bad in [
            "yesterday",
            "-d",
            "-7x",
            "2024-13-01",
            "-99999999999d",
            "-9999999999999999h",
            "-999999999999999999q",
        ] {
            let range = DateRange { date_from: Some(bad.into()), date_to: None };
            assert!(TimeRange::resolve(Some(&range), Interval::Day, &c, None).is_err(), "{bad}");
        }
        assert!(ProjectContext::new(1, "Mars/Olympus", Utc::now()).is_err());
    }
}
