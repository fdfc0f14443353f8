//! Event time: parsing what clients send, and correcting their clock skew.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, Utc};

/// Events further in the future than this get the server time instead.
const MAX_FUTURE: TimeDelta = TimeDelta::hours(23);

/// The inputs of the correction for one event.
#[derive(Debug, Clone, Copy)]
pub struct EventClock<'a> {
    pub now: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub timestamp: Option<&'a str>,
    pub offset_ms: Option<i64>,
    pub ignore_sent_at: bool,
}

/// The event's time in server terms. The flag is true when a timestamp was
/// sent but could not be parsed (and `now` was used).
/// Arithmetic is checked throughout: absurd inputs (an offset of 1e16 ms, a
/// year of 200000) give the server time, never a panic.
pub fn corrected(clock: EventClock<'_>) -> (DateTime<Utc>, bool) {
    let mut unparseable = false;
    let mut ts = clock.now;
    if let Some(text) = clock.timestamp {
        match parse(text) {
            Some(parsed) => {
                let skew = clock
                    .sent_at
                    .filter(|_| !clock.ignore_sent_at)
                    .map(|sent_at| sent_at.signed_duration_since(clock.now));
                ts = match skew {
                    Some(skew) => parsed.checked_sub_signed(skew).unwrap_or(clock.now),
                    None => parsed,
                };
            }
            None => unparseable = true,
        }
    }
    if let Some(offset) = clock.offset_ms {
        ts = TimeDelta::try_milliseconds(offset)
            .and_then(|offset| clock.now.checked_sub_signed(offset))
            .unwrap_or(clock.now);
    }
    if ts.signed_duration_since(clock.now) > MAX_FUTURE {
        ts = clock.now;
    }
    (ts, unparseable)
}

/// RFC 3339 (also with a `+HH` offset), then common date forms, then a
/// naive date-time read as UTC.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Some(parsed.with_timezone(&Utc));
    }
    if let Some(fixed) = expand_short_offset(text) {
        if let Ok(parsed) = DateTime::parse_from_rfc3339(&fixed) {
            return Some(parsed.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%z"] {
        if let Ok(parsed) = DateTime::parse_from_str(text, format) {
            return Some(parsed.with_timezone(&Utc));
        }
    }
    if let Ok(parsed) = DateTime::parse_from_rfc2822(text) {
        return Some(parsed.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(parsed) = NaiveDateTime::parse_from_str(text, format) {
            return Some(parsed.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc())
}

/// `…+05` → `…+05:00`.
fn expand_short_offset(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let sign_at = bytes.len().checked_sub(3)?;
    let is_short = matches!(bytes[sign_at], b'+' | b'-')
        && bytes[sign_at + 1..].iter().all(u8::is_ascii_digit)
        && text[..sign_at].contains('T');
    is_short.then(|| format!("{text}:00"))
}

/// Epoch milliseconds from the `_` query parameter, ignoring values that
/// land in 2020 or earlier (they are not send times).
pub fn sent_at_from_millis(ms: i64) -> Option<DateTime<Utc>> {
    let parsed = DateTime::<Utc>::from_timestamp_millis(ms)?;
    (parsed.year() > 2020).then_some(parsed)
}

pub fn format(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        parse(text).expect("parses")
    }

    fn clock<'a>(
        timestamp: Option<&'a str>,
        sent_at: Option<&str>,
        offset_ms: Option<i64>,
    ) -> EventClock<'a> {
        EventClock {
            now: at("2026-06-01T12:00:00Z"),
            sent_at: sent_at.map(at),
            timestamp,
            offset_ms,
            ignore_sent_at: false,
        }
    }

    #[test]
    fn parses_the_forms_clients_send() {
        let expected = at("2026-06-01T10:00:00Z");
        for text in [
            "2026-06-01T10:00:00Z",
            "2026-06-01T12:00:00+02:00",
            "2026-06-01T12:00:00+02",
            "2026-06-01 10:00:00",
            "2026-06-01T10:00:00",
            "2026-06-01 12:00:00+02:00",
        ] {
            assert_eq!(parse(text), Some(expected), "{text}");
        }
        assert_eq!(parse("2026-06-01"), Some(at("2026-06-01T00:00:00Z")));
        assert_eq!(parse("yesterday"), None);
    }

    #[test]
    fn corrects_skew_offsets_and_the_future() {
        // The client's clock runs 1 h fast: its timestamp moves back 1 h.
        let (ts, _) = corrected(clock(Some("2026-06-01T12:30:00Z"), Some("2026-06-01T13:00:00Z"), None));
        assert_eq!(ts, at("2026-06-01T11:30:00Z"));
        let (ts, _) = corrected(clock(Some("2026-06-01T11:00:00Z"), None, None));
        assert_eq!(ts, at("2026-06-01T11:00:00Z"));
        let (ts, _) = corrected(clock(Some("2026-06-01T11:00:00Z"), None, Some(5_000)));
        assert_eq!(ts, at("2026-06-01T11:59:55Z"), "offset wins");
        let (ts, _) = corrected(clock(Some("2026-06-03T00:00:00Z"), None, None));
        assert_eq!(ts, at("2026-06-01T12:00:00Z"), "more than 23 h ahead");
        let (ts, bad) = corrected(clock(Some("garbage"), None, None));
        assert_eq!((ts, bad), (at("2026-06-01T12:00:00Z"), true));
        let mut ignoring = clock(Some("2026-06-01T12:30:00Z"), Some("2026-06-01T13:00:00Z"), None);
        ignoring.ignore_sent_at = true;
        assert_eq!(corrected(ignoring).0, at("2026-06-01T12:30:00Z"));
    }

    #[test]
    fn absurd_values_give_the_server_time_instead_of_panicking() {
        let now = at("2026-06-01T12:00:00Z");
        for offset in [i64::MAX, i64::MIN, 10_000_000_000_000_000, -10_000_000_000_000_000] {
            assert_eq!(corrected(clock(None, None, Some(offset))).0, now, "offset {offset}");
        }
        // chrono reads signed years of more than four digits.
        assert!(parse("-200000-01-01T00:00:00").is_some());
        let mut far = clock(Some("-200000-01-01T00:00:00"), None, None);
        far.sent_at =
            NaiveDate::from_ymd_opt(200_000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).map(|d| d.and_utc());
        assert!(far.sent_at.is_some());
        assert_eq!(corrected(far).0, now);
    }

    #[test]
    fn query_send_times_before_2021_are_ignored() {
        assert!(sent_at_from_millis(1_000).is_none());
        assert!(sent_at_from_millis(1_780_000_000_000).is_some());
    }
}
