//! Dates in filters and properties, read as posthog-python reads them.
//!
//! Dates are compared as microseconds since the Unix epoch, in UTC: Python's
//! datetime precision, and naive values count as UTC in posthog-python.

use serde_json::Value;

pub(super) const MICROS_PER_MILLI: i64 = 1_000;
const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SECOND;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// The date a filter compares with: relative (`"-7d"`) or absolute.
pub(super) fn filter_date(value: &Value, now: i64) -> Option<i64> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => return None,
    };
    relative_date(&text, now).or_else(|| parse_datetime(&text, now))
}

/// The date a property holds. Strings are read as posthog-python reads them;
/// what it cannot read (numbers, numeric strings) it leaves to the server,
/// which reads them as Unix timestamps in seconds.
pub(super) fn property_date(value: &Value, now: i64) -> Option<i64> {
    match value {
        Value::String(text) => {
            parse_datetime(text, now).or_else(|| text.parse::<f64>().ok().and_then(timestamp_seconds))
        }
        Value::Number(number) => number.as_f64().and_then(timestamp_seconds),
        _ => None,
    }
}

fn timestamp_seconds(seconds: f64) -> Option<i64> {
    if !seconds.is_finite() {
        return None;
    }
    let whole = seconds.floor();
    // Python's datetime cannot go beyond year 9999 either; stay well inside i64.
    if whole.abs() > 253_402_300_800.0 {
        return None;
    }
    // The server keeps sub-second parts only for positive remainders.
    let fraction = seconds % 1.0;
    let nanos = if fraction > 0.0 { (fraction * 1e9).round() as i64 } else { 0 };
    Some(whole as i64 * MICROS_PER_SECOND + nanos / 1_000)
}

/// `-?{n}{h|d|w|m|y}` with n below 10 000, counted back from `now`; the sign
/// is optional because PostHog always means the past.
fn relative_date(text: &str, now: i64) -> Option<i64> {
    let body = text.strip_prefix('-').unwrap_or(text);
    let unit = *body.as_bytes().last()?;
    if !unit.is_ascii_lowercase() {
        return None;
    }
    let digits = &body[..body.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More than four significant digits is at least 10 000, which PostHog
    // refuses; checking first keeps huge numbers from overflowing the parse.
    if digits.trim_start_matches('0').len() > 4 {
        return None;
    }
    let amount: i64 = digits.parse().ok()?;
    if amount >= 10_000 {
        return None;
    }
    match unit {
        b'h' => now.checked_sub(amount * MICROS_PER_HOUR),
        b'd' => now.checked_sub(amount * MICROS_PER_DAY),
        b'w' => now.checked_sub(amount * 7 * MICROS_PER_DAY),
        b'm' => shift_calendar(now, |date| date.minus_months(amount)),
        b'y' => shift_calendar(now, |date| date.minus_years(amount)),
        _ => None,
    }
}

fn shift_calendar(instant: i64, shift: impl FnOnce(CivilDate) -> Option<CivilDate>) -> Option<i64> {
    let days = instant.div_euclid(MICROS_PER_DAY);
    let time_of_day = instant.rem_euclid(MICROS_PER_DAY);
    let shifted = shift(CivilDate::from_days(days))?;
    Some(shifted.to_days() * MICROS_PER_DAY + time_of_day)
}

/// Reads a date string as posthog-python does: `Z` and ` UTC` suffixes mean
/// UTC, a bare four-digit year means today's month and day in that year, and
/// the rest is ISO 8601 as Python's `datetime.fromisoformat` takes it.
fn parse_datetime(raw: &str, now: i64) -> Option<i64> {
    let text = raw.trim();
    let mut owned;
    if let Some(stripped) = text.strip_suffix('Z') {
        owned = format!("{stripped}+00:00");
    } else if text.len() >= 4
        && text.is_char_boundary(text.len() - 4)
        && text[text.len() - 4..].eq_ignore_ascii_case(" utc")
    {
        owned = format!("{}+00:00", &text[..text.len() - 4]);
    } else if text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()) {
        let today = CivilDate::from_days(now.div_euclid(MICROS_PER_DAY));
        let date = CivilDate::new(text.parse().ok()?, today.month, today.day)?;
        return Some(date.to_days() * MICROS_PER_DAY);
    } else {
        owned = text.to_owned();
    }
    // Python drops the space in "2024-01-01 10:00 +02:00".
    let bytes = owned.as_bytes();
    let n = bytes.len();
    if n >= 7
        && bytes[n - 7] == b' '
        && matches!(bytes[n - 6], b'+' | b'-')
        && bytes[n - 5].is_ascii_digit()
        && bytes[n - 4].is_ascii_digit()
        && bytes[n - 3] == b':'
        && bytes[n - 2].is_ascii_digit()
        && bytes[n - 1].is_ascii_digit()
    {
        owned.remove(n - 7);
    }
    parse_iso_datetime(&owned)
}

/// Python 3.11's `datetime.fromisoformat`: a date (`YYYY-MM-DD` or
/// `YYYYMMDD`), then optionally any one separator character and a time
/// (`HH[:MM[:SS[.f…]]]`, colons optional), then optionally `Z` or an offset.
fn parse_iso_datetime(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let (date, date_len) = if bytes.get(4) == Some(&b'-') {
        if bytes.get(7) != Some(&b'-') {
            return None;
        }
        (CivilDate::new(digits(bytes, 0, 4)?, digits(bytes, 5, 2)?, digits(bytes, 8, 2)?)?, 10)
    } else {
        (CivilDate::new(digits(bytes, 0, 4)?, digits(bytes, 4, 2)?, digits(bytes, 6, 2)?)?, 8)
    };
    let day_start = date.to_days() * MICROS_PER_DAY;
    let rest = text.get(date_len..)?;
    let mut chars = rest.chars();
    let Some(_separator) = chars.next() else {
        return Some(day_start);
    };
    let time = chars.as_str();
    let offset_at = time.find(['+', '-', 'Z']).unwrap_or(time.len());
    let (clock, zone) = time.split_at(offset_at);
    let time_of_day = parse_clock(clock)?;
    if time_of_day >= MICROS_PER_DAY {
        return None;
    }
    let offset = match zone.as_bytes().first() {
        None => 0,
        Some(b'Z') if zone.len() == 1 => 0,
        Some(b'+') => parse_clock(&zone[1..])?,
        Some(b'-') => -parse_clock(&zone[1..])?,
        _ => return None,
    };
    if offset.abs() >= MICROS_PER_DAY {
        return None;
    }
    Some(day_start + time_of_day - offset)
}

/// `HH[:MM[:SS[.f…]]]` or `HH[MM[SS[.f…]]]` as microseconds; fractions may
/// use `.` or `,` and are cut to microseconds.
fn parse_clock(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let extended = bytes.get(2) == Some(&b':');
    let mut parts = [0_i64; 3];
    let mut at = 0;
    let mut count = 0;
    while count < 3 && at < bytes.len() {
        if count > 0 && extended {
            if bytes.get(at) != Some(&b':') {
                break;
            }
            at += 1;
        }
        parts[count] = digits(bytes, at, 2)?;
        at += 2;
        count += 1;
        if matches!(bytes.get(at), Some(b'.' | b',')) {
            break;
        }
    }
    if count == 0 {
        return None;
    }
    let mut micros = 0;
    if matches!(bytes.get(at), Some(b'.' | b',')) {
        // Fractions need whole seconds before them.
        if count != 3 {
            return None;
        }
        let fraction = &bytes[at + 1..];
        if fraction.is_empty() || !fraction.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for position in 0..6 {
            micros = micros * 10 + fraction.get(position).map_or(0, |digit| i64::from(digit - b'0'));
        }
        at = bytes.len();
    }
    if at != bytes.len() {
        return None;
    }
    let [hours, minutes, seconds] = parts;
    if hours > 23 || minutes > 59 || seconds > 59 {
        return None;
    }
    Some(hours * MICROS_PER_HOUR + minutes * 60 * MICROS_PER_SECOND + seconds * MICROS_PER_SECOND + micros)
}

/// `len` ASCII digits at `at`, as a number.
fn digits(bytes: &[u8], at: usize, len: usize) -> Option<i64> {
    let slice = bytes.get(at..at + len)?;
    slice.iter().try_fold(0_i64, |acc, byte| byte.is_ascii_digit().then(|| acc * 10 + i64::from(byte - b'0')))
}

/// A proleptic Gregorian date within Python's datetime range (years 1–9999).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CivilDate {
    year: i64,
    month: i64,
    day: i64,
}

impl CivilDate {
    fn new(year: i64, month: i64, day: i64) -> Option<Self> {
        let valid = (1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day);
        valid.then_some(CivilDate { year, month, day })
    }

    /// Days since 1970-01-01, by Howard Hinnant's era arithmetic: years are
    /// counted from March so the leap day falls at the end.
    fn to_days(self) -> i64 {
        let year = if self.month <= 2 { self.year - 1 } else { self.year };
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let month_from_march = (self.month + 9) % 12;
        let day_of_year = (153 * month_from_march + 2) / 5 + self.day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    fn from_days(days: i64) -> Self {
        let shifted = days + 719_468;
        let era = shifted.div_euclid(146_097);
        let day_of_era = shifted - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        CivilDate { year, month, day }
    }

    /// posthog-python steps back one month at a time and clamps the day at
    /// each step, so March 31, 2023 minus two months is January 28 (clamped
    /// in February), not January 31.
    fn minus_months(self, months: i64) -> Option<Self> {
        let current = self.year * 12 + self.month - 1;
        let target = current - months;
        let mut day = self.day;
        for index in (target..current).rev() {
            if day <= 28 {
                break;
            }
            day = day.min(days_in_month(index.div_euclid(12), index.rem_euclid(12) + 1));
        }
        CivilDate::new(target.div_euclid(12), target.rem_euclid(12) + 1, day)
    }

    fn minus_years(self, years: i64) -> Option<Self> {
        let leap_day = self.month == 2 && self.day == 29;
        let day = if years > 0 && leap_day { 28 } else { self.day };
        CivilDate::new(self.year - years, self.month, day)
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::flags::test_support::{check, filter};

    #[test]
    fn date_operators() {
        let before = filter("signup", "is_date_before", json!("2024-01-15"));
        assert!(check(&before, json!({"signup": "2024-01-14T23:59:59.999999Z"})));
        assert!(!check(&before, json!({"signup": "2024-01-15"})));
        assert!(check(&before, json!({"signup": "2024-01-15T01:00:00+02:00"})));
        assert!(check(&before, json!({"signup": "2024-01-15 01:00 +02:00"})));
        assert!(!check(&before, json!({"signup": "2024-01-15 01:00 UTC"})));
        assert!(check(&before, json!({"signup": "20240114"})));
        // Numbers and numeric strings are Unix seconds.
        assert!(check(&before, json!({"signup": 1_705_276_799})));
        assert!(!check(&before, json!({"signup": "1705276800"})));
        assert!(!check(&before, json!({"signup": "not a date"})));
        assert!(!check(&before, json!({"signup": null})));
        assert!(!check(&before, json!({})));
        let after = filter("seen", "is_date_after", json!("-7d"));
        assert!(check(&after, json!({"seen": "2024-03-25T00:00:00Z"})));
        assert!(!check(&after, json!({"seen": "2024-03-24T11:59:59Z"})));
        assert!(check(&filter("seen", "is_date_after", json!("2h")), json!({"seen": "2024-03-31T10:30:00"})));
        assert!(check(&filter("seen", "is_date_after", json!("-1w")), json!({"seen": "2024-03-25"})));
        // Months clamp step by step: March 31 - 1 month is February 29 (2024 is a leap year)
        // and - 2 months is January 29, not January 31.
        assert!(check(&filter("d", "is_date_before", json!("-1m")), json!({"d": "2024-02-29T11:59:59Z"})));
        assert!(!check(&filter("d", "is_date_before", json!("-1m")), json!({"d": "2024-02-29T12:00:00Z"})));
        assert!(check(&filter("d", "is_date_after", json!("-2m")), json!({"d": "2024-01-29T12:00:01Z"})));
        assert!(!check(&filter("d", "is_date_after", json!("-2m")), json!({"d": "2024-01-29T12:00:00Z"})));
        assert!(check(&filter("d", "is_date_after", json!("-1y")), json!({"d": "2023-03-31T12:00:01Z"})));
        // A bare year means today's month and day in that year.
        assert!(check(&filter("d", "is_date_before", json!("2020")), json!({"d": "2020-03-30"})));
        assert!(!check(&filter("d", "is_date_before", json!("-10000d")), json!({"d": "1900-01-01"})));
    }

    #[test]
    fn iso_parsing_follows_python() {
        let at = |text: &str| parse_iso_datetime(text);
        let midnight = at("2024-01-01").expect("date");
        assert_eq!(midnight, 1_704_067_200 * MICROS_PER_SECOND);
        assert_eq!(at("20240101"), Some(midnight));
        assert_eq!(at("2024-01-01x10:00"), Some(midnight + 10 * MICROS_PER_HOUR));
        assert_eq!(at("2024-01-01 10"), Some(midnight + 10 * MICROS_PER_HOUR));
        assert_eq!(at("2024-01-01T1000"), Some(midnight + 10 * MICROS_PER_HOUR));
        assert_eq!(at("2024-01-01T10:00:00,5"), Some(midnight + 10 * MICROS_PER_HOUR + 500_000));
        assert_eq!(at("2024-01-01T10:00:00.1234567"), Some(midnight + 10 * MICROS_PER_HOUR + 123_456));
        assert_eq!(
            at("2024-01-01T10:00+0530"),
            Some(midnight + 10 * MICROS_PER_HOUR - 330 * 60 * MICROS_PER_SECOND)
        );
        assert_eq!(at("2024-01-01T10:00-05"), Some(midnight + 15 * MICROS_PER_HOUR));
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(0));
        for bad in
            ["2024-1-01", "2024-01-01T24:00", "2024-02-30", "0000-01-01", "2024-01-01T10:00z", "2024-01-01T"]
        {
            assert_eq!(at(bad), None, "{bad}");
        }
    }
}
