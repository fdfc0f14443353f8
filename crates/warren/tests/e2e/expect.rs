//! Comparing what a sender says it sent with what the event log holds.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;
use warren_core::CapturedEvent;
use warren_testkit::TOKEN;

/// One event as the sending script describes it.
#[derive(Debug, Deserialize)]
pub struct Expected {
    pub uuid: Option<Uuid>,
    pub event: String,
    pub distinct_id: String,
    /// What the sender put in `timestamp`, before skew correction.
    pub timestamp: Option<String>,
    /// Top-level fields the stored event must contain; objects as subsets.
    pub fields: Value,
}

pub fn parse_lines(stdout: &[u8]) -> Vec<Expected> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line}: {e}")))
        .collect()
}

/// `actual` holds everything in `expected` (objects may have more keys).
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(actual), Value::Object(expected)) => {
            expected.iter().all(|(key, value)| actual.get(key).is_some_and(|found| contains(found, value)))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => actual == expected,
    }
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}")).with_timezone(&Utc)
}

fn matches(expected: &Expected, stored: &CapturedEvent, data: &Value) -> bool {
    expected.uuid.is_none_or(|uuid| uuid == stored.uuid)
        && stored.event == expected.event
        && stored.distinct_id == expected.distinct_id
        && contains(data, &expected.fields)
}

/// Asserts the log holds exactly the expected events, each once, with the
/// token, normalised fields and skew-corrected timestamp the contract asks for.
pub fn assert_log_matches(expected: &[Expected], log: &[CapturedEvent]) {
    assert_eq!(log.len(), expected.len(), "the log holds exactly what was sent");
    let data: Vec<Value> =
        log.iter().map(|stored| serde_json::from_str(&stored.data).expect("data is JSON")).collect();
    let mut used = vec![false; log.len()];
    for want in expected {
        let found = (0..log.len())
            .find(|&i| !used[i] && matches(want, &log[i], &data[i]))
            .unwrap_or_else(|| panic!("not in the log: {want:?}"));
        used[found] = true;
        let stored = &log[found];
        assert_eq!(stored.token, TOKEN);
        assert_eq!(data[found]["uuid"], stored.uuid.to_string());
        assert_eq!(data[found]["distinct_id"], stored.distinct_id);
        if let Some(sent) = &want.timestamp {
            let sent = time(sent);
            let corrected = time(&stored.timestamp);
            if let Some(sent_at) = &stored.sent_at {
                let skew = time(sent_at) - time(&stored.now);
                let exact = sent - skew;
                let error = (corrected - exact).num_milliseconds().abs();
                assert!(error <= 2, "corrected {corrected} but {exact} expected for {want:?}");
            }
            let moved = (corrected - sent).num_seconds().abs();
            assert!(moved < 10, "same-machine skew is small, moved {moved} s for {want:?}");
        }
    }
}
