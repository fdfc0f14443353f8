//! From a log record to an event ingest can work with: the PostHog
//! normalisation steps of contracts/persons.md, and the sender mistakes
//! they reveal, as ingestion warnings.

use serde_json::{json, Map, Value};
use uuid::Uuid;
use warren_core::person::{IngestionWarning, Properties, TeamId};
use warren_core::CapturedEvent;

/// Event properties that also describe the person: each sets the person
/// property of the same name, and `$initial_<name>` once.
const PERSON_PROPERTIES_FROM_EVENT: &[&str] = &[
    "$browser",
    "$browser_version",
    "$device_type",
    "$current_url",
    "$pathname",
    "$os",
    "$os_version",
    "$referring_domain",
    "$referrer",
    "$screen_height",
    "$screen_width",
    "$viewport_height",
    "$viewport_width",
    "$raw_user_agent",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "gclid",
    "gad_source",
    "gclsrc",
    "dclid",
    "gbraid",
    "wbraid",
    "fbclid",
    "msclkid",
    "twclid",
    "li_fat_id",
    "mc_cid",
    "igshid",
    "ttclid",
    "rdt_cid",
    "irclid",
    "_kx",
];

/// An event after normalisation.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub team_id: TeamId,
    pub uuid: Uuid,
    pub event: String,
    pub distinct_id: String,
    /// The properties as stored, `$set`/`$set_once` merged in.
    pub properties: Properties,
    pub timestamp_us: i64,
    pub created_at_us: i64,
    pub elements_chain: String,
    /// `false` for `$process_person_profile = false`.
    pub process_person: bool,
    pub set: Properties,
    pub set_once: Properties,
    pub unset: Vec<String>,
}

impl Event {
    /// For `$identify`, `$create_alias` and `$merge_dangerously`: the other
    /// distinct id to join with this event's. Numbers count as their text,
    /// as SDKs send them; any other non-null value is an empty (illegal) id,
    /// so the merge is refused with a warning.
    pub fn merge_with(&self) -> Option<String> {
        let key = match self.event.as_str() {
            "$identify" => "$anon_distinct_id",
            "$create_alias" | "$merge_dangerously" => "alias",
            _ => return None,
        };
        match self.properties.get(key)? {
            Value::String(id) => Some(id.clone()),
            Value::Number(number) => Some(number.to_string()),
            Value::Null => None,
            _ => Some(String::new()),
        }
    }

    pub fn warning(&self, kind: &str, details: Value) -> IngestionWarning {
        IngestionWarning {
            team_id: self.team_id,
            kind: kind.to_string(),
            event_uuid: Some(self.uuid),
            details,
            timestamp_us: warren_core::unix_millis() * 1000,
        }
    }
}

/// Microseconds since the epoch of an RFC 3339 time.
pub(crate) fn parse_time_us(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_micros())
}

/// Normalises one captured event of project `team_id`, received (appended to
/// the log) at `received_ms`.
pub(crate) fn normalize(
    captured: CapturedEvent,
    team_id: TeamId,
    received_ms: i64,
) -> (Event, Vec<IngestionWarning>) {
    let mut warnings = Vec::new();
    let mut warn = |kind: &str, details: Value| {
        warnings.push(IngestionWarning {
            team_id,
            kind: kind.to_string(),
            event_uuid: Some(captured.uuid),
            details,
            timestamp_us: warren_core::unix_millis() * 1000,
        })
    };
    let mut data: Map<String, Value> = match serde_json::from_str(&captured.data) {
        Ok(Value::Object(data)) => data,
        _ => {
            warn("invalid_event", json!({"reason": "the event is not a JSON object"}));
            Map::new()
        }
    };
    let mut properties = match data.remove("properties") {
        Some(Value::Object(properties)) => properties,
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            warn(
                "invalid_event_properties",
                json!({"reason": "properties is not an object", "value": other}),
            );
            Map::new()
        }
    };
    if let Some(Value::String(sent)) = data.get("timestamp") {
        if parse_time_us(sent).is_none() {
            warn("ignored_invalid_timestamp", json!({"value": sent, "reason": "not an ISO 8601 time"}));
        }
    }
    // Top-level $set / $set_once win over the ones in properties.
    for key in ["$set", "$set_once"] {
        if let Some(top) = data.remove(key) {
            match top {
                Value::Object(top) => {
                    let merged = properties.entry(key).or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(merged) = merged {
                        merged.extend(top);
                    } else {
                        *merged = Value::Object(top);
                    }
                }
                other => warn("invalid_person_properties", json!({"field": key, "value": other})),
            }
        }
    }
    if !properties.contains_key("$ip") && !captured.ip.is_empty() {
        properties.insert("$ip".into(), Value::String(captured.ip.clone()));
    }
    let process_person = properties.get("$process_person_profile") != Some(&Value::Bool(false));
    let (mut set, mut set_once, mut unset) = (Map::new(), Map::new(), Vec::new());
    if process_person {
        for key in PERSON_PROPERTIES_FROM_EVENT {
            if let Some(value) = properties.get(*key).filter(|v| !v.is_null()) {
                set.insert((*key).to_string(), value.clone());
                set_once.insert(format!("$initial_{}", key.trim_start_matches('$')), value.clone());
            }
        }
        // What the sender set explicitly wins over what was derived.
        for (key, target) in [("$set", &mut set), ("$set_once", &mut set_once)] {
            match properties.get(key) {
                Some(Value::Object(explicit)) => {
                    target.extend(explicit.iter().map(|(k, v)| (k.clone(), v.clone())))
                }
                None | Some(Value::Null) => {}
                Some(other) => warn("invalid_person_properties", json!({"field": key, "value": other})),
            }
        }
        match properties.get("$unset") {
            Some(Value::Array(keys)) => unset.extend(keys.iter().filter_map(Value::as_str).map(String::from)),
            Some(Value::Object(keys)) => unset.extend(keys.keys().cloned()),
            None | Some(Value::Null) => {}
            Some(other) => warn("invalid_person_properties", json!({"field": "$unset", "value": other})),
        }
        if !set.is_empty() {
            properties.insert("$set".into(), Value::Object(set.clone()));
        }
        if !set_once.is_empty() {
            properties.insert("$set_once".into(), Value::Object(set_once.clone()));
        }
    } else {
        // Personless events touch no person, so they carry no updates.
        for key in ["$set", "$set_once", "$unset"] {
            properties.remove(key);
        }
    }
    let elements_chain = match properties.remove("$elements_chain") {
        Some(Value::String(chain)) => chain,
        _ => String::new(),
    };
    // Times come from the record, never the clock, so replaying the log
    // rebuilds the same persons.
    let created_at_us = parse_time_us(&captured.now).unwrap_or(received_ms.saturating_mul(1000));
    let timestamp_us = parse_time_us(&captured.timestamp).unwrap_or_else(|| {
        warn(
            "ignored_invalid_timestamp",
            json!({"value": captured.timestamp, "reason": "not an RFC 3339 time"}),
        );
        created_at_us
    });
    let event = Event {
        team_id,
        uuid: captured.uuid,
        event: captured.event,
        distinct_id: captured.distinct_id,
        properties,
        timestamp_us,
        created_at_us,
        elements_chain,
        process_person,
        set,
        set_once,
        unset,
    };
    (event, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(data: Value) -> CapturedEvent {
        CapturedEvent {
            uuid: Uuid::from_u128(1),
            distinct_id: "d1".into(),
            ip: "10.0.0.1".into(),
            data: data.to_string(),
            now: "2026-11-26T12:00:00.000Z".into(),
            sent_at: None,
            token: "phc_t".into(),
            event: data["event"].as_str().unwrap_or("e").into(),
            timestamp: "2026-11-26T11:59:59.000Z".into(),
            historical_migration: false,
        }
    }

    #[test]
    fn top_level_set_wins_and_initial_properties_are_derived() {
        let (event, warnings) = normalize(
            captured(json!({
                "event": "$pageview",
                "$set": {"plan": "pro"},
                "properties": {"$set": {"plan": "free", "name": "A"}, "$browser": "Firefox", "utm_source": "ads"}
            })),
            7,
            0,
        );
        assert!(warnings.is_empty());
        assert_eq!(event.set["plan"], "pro");
        assert_eq!(event.set["name"], "A");
        assert_eq!(event.set["$browser"], "Firefox");
        assert_eq!(event.set_once["$initial_browser"], "Firefox");
        assert_eq!(event.set_once["$initial_utm_source"], "ads");
        assert_eq!(event.properties["$ip"], "10.0.0.1");
        assert_eq!(event.properties["$set"]["plan"], "pro");
        assert_eq!(event.timestamp_us, parse_time_us("2026-11-26T11:59:59.000Z").unwrap_or_default());
    }

    #[test]
    fn personless_events_carry_no_updates() {
        let (event, _) = normalize(
            captured(
                json!({"event": "e", "properties": {"$process_person_profile": false, "$set": {"a": 1}, "$browser": "X"}}),
            ),
            7,
            0,
        );
        assert!(!event.process_person);
        assert!(event.set.is_empty() && event.set_once.is_empty());
        assert!(!event.properties.contains_key("$set"));
    }

    #[test]
    fn sender_mistakes_become_warnings() {
        let (_, warnings) = normalize(
            captured(
                json!({"event": "e", "timestamp": "yesterday", "$set": 5, "properties": {"$unset": "a"}}),
            ),
            7,
            0,
        );
        let kinds: Vec<&str> = warnings.iter().map(|w| w.kind.as_str()).collect();
        assert_eq!(
            kinds,
            vec!["ignored_invalid_timestamp", "invalid_person_properties", "invalid_person_properties"]
        );
        let (_, warnings) = normalize(CapturedEvent { data: "[1]".into(), ..captured(json!({})) }, 7, 0);
        assert_eq!(warnings[0].kind, "invalid_event");
        let bad_time = CapturedEvent { timestamp: "soon".into(), ..captured(json!({})) };
        let (event, warnings) = normalize(bad_time, 7, 0);
        assert_eq!(warnings[0].kind, "ignored_invalid_timestamp");
        assert_eq!(event.timestamp_us, event.created_at_us, "capture's receive time, not the clock");
    }

    #[test]
    fn merge_ids_may_be_numbers() {
        let (event, _) =
            normalize(captured(json!({"event": "$identify", "properties": {"$anon_distinct_id": 42}})), 7, 0);
        assert_eq!(event.merge_with().as_deref(), Some("42"));
        let (event, _) =
            normalize(captured(json!({"event": "$create_alias", "properties": {"alias": {"a": 1}}})), 7, 0);
        assert_eq!(event.merge_with().as_deref(), Some(""), "an object is no id");
    }
}
