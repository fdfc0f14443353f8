//! The record capture writes to the event log.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One captured event as it travels through the event log.
///
/// The JSON form is wire-compatible with PostHog's `CapturedEvent` Kafka
/// message, so a PostHog consumer can read Warren's log and Warren's ingest
/// can read a PostHog topic. `data` is the event exactly as the client sent
/// it (with `uuid` and `distinct_id` normalised), re-serialised as a string.
///
/// `timestamp` is Warren's addition: the event time after clock-skew
/// correction, computed once at capture so every reader agrees on it.
/// PostHog consumers ignore unknown fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedEvent {
    pub uuid: Uuid,
    pub distinct_id: String,
    pub ip: String,
    pub data: String,
    /// Server time when the batch was received, RFC 3339.
    pub now: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    pub token: String,
    pub event: String,
    /// Corrected event time, RFC 3339 with milliseconds, UTC.
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub historical_migration: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The event-log key, `token:distinct_id`: events of one person stay in
/// order on one partition.
pub fn partition_key(token: &str, distinct_id: &str) -> String {
    let mut key = String::with_capacity(token.len() + 1 + distinct_id.len());
    key.push_str(token);
    key.push(':');
    key.push_str(distinct_id);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_like_posthog_captured_event() {
        let event = CapturedEvent {
            uuid: Uuid::nil(),
            distinct_id: "u1".into(),
            ip: "127.0.0.1".into(),
            data: r#"{"event":"x"}"#.into(),
            now: "2026-01-01T00:00:00.000Z".into(),
            sent_at: None,
            token: "phc_t".into(),
            event: "x".into(),
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            historical_migration: false,
        };
        let json: serde_json::Value = serde_json::to_value(&event).unwrap_or_default();
        assert!(json.get("sent_at").is_none(), "absent sent_at is omitted");
        assert!(json.get("historical_migration").is_none(), "false is omitted");
        assert_eq!(json["data"], r#"{"event":"x"}"#);
        assert_eq!(partition_key(&event.token, &event.distinct_id), "phc_t:u1");
    }
}
