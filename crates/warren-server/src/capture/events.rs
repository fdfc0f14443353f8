//! From decoded JSON to events: the batch shapes, token rules and field
//! normalisation of the capture contract.
//!
//! Events are not parsed into a tree: each is read as its top-level fields
//! with their values left as raw JSON text, so re-serialising an event for
//! the log is a copy, not a rebuild.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use warren_core::token::{check_project_token, TokenProblem};

use crate::ApiError;

const MAX_DISTINCT_ID_CHARS: usize = 200;

/// A JSON object's top-level fields in order, values unparsed.
#[derive(Debug, Default)]
pub struct RawObject<'a> {
    pub fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RawObject<'a> {
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject<'de>, A::Error> {
                // No capacity up front: a flood of `{}` must cost nothing each.
                let mut fields = Vec::new();
                while let Some((Key(key), value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    fields.push((key, value));
                }
                Ok(RawObject { fields })
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// The few properties capture itself needs; the rest are skipped unparsed.
#[derive(Debug, Default, Deserialize)]
struct PropertyHints<'a> {
    #[serde(borrow, default)]
    distinct_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    token: Option<&'a RawValue>,
    #[serde(rename = "$ignore_sent_at", default)]
    ignore_sent_at: Option<serde_json::Value>,
}

/// A decoded request: its events and the batch-level fields.
#[derive(Debug)]
pub struct Batch<'a> {
    pub events: Vec<RawObject<'a>>,
    pub token: Option<String>,
    pub sent_at: Option<String>,
    pub historical_migration: bool,
}

/// Reads any of the accepted shapes: a bare array, a `{batch: […]}` object,
/// or a single event.
pub fn parse_batch(json: &[u8], engage_route: bool) -> Result<Batch<'_>, ApiError> {
    let invalid = |e: serde_json::Error| ApiError::InvalidPayload(e.to_string());
    let text = std::str::from_utf8(json).map_err(|e| ApiError::InvalidPayload(format!("not UTF-8: {e}")))?;
    let mut batch = Batch { events: Vec::new(), token: None, sent_at: None, historical_migration: false };
    match text.trim_start().as_bytes().first() {
        Some(b'[') => batch.events = serde_json::from_str(text).map_err(invalid)?,
        Some(b'{') => {
            let object: RawObject<'_> = serde_json::from_str(text).map_err(invalid)?;
            match object.get("batch") {
                Some(items) => {
                    batch.events = serde_json::from_str(items.get()).map_err(invalid)?;
                    batch.token = string_field(&object, &["api_key", "token"]);
                    batch.sent_at = string_field(&object, &["sent_at"]);
                    batch.historical_migration =
                        object.get("historical_migration").is_some_and(|v| v.get().trim() == "true");
                }
                None => batch.events.push(object),
            }
        }
        _ => return Err(ApiError::InvalidPayload("expected a JSON array or object".into())),
    }
    if engage_route {
        for event in &mut batch.events {
            if event.get("event").is_none() {
                event.fields.push((Cow::Borrowed("event"), identify_name()));
            }
        }
    }
    Ok(batch)
}

fn identify_name() -> &'static RawValue {
    static NAME: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| RawValue::from_string("\"$identify\"".into()).unwrap_or_else(|_| unreachable!()))
}

/// The first of `keys` present as a JSON string.
fn string_field(object: &RawObject<'_>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|key| object.get(key).and_then(as_string))
}

pub(super) fn as_string(value: &RawValue) -> Option<String> {
    let text = value.get().trim();
    if text.starts_with('"') {
        serde_json::from_str(text).ok()
    } else {
        None
    }
}

/// One event after validation, ready to become a log record.
#[derive(Debug)]
pub struct ValidEvent {
    pub uuid: Uuid,
    pub event: String,
    pub distinct_id: String,
    pub timestamp: Option<String>,
    pub offset_ms: Option<i64>,
    pub ignore_sent_at: bool,
    /// The event as sent, with `uuid` and `distinct_id` normalised.
    pub data: String,
}

/// Validates one event. `Ok(None)` means the event is dropped on purpose.
pub fn validate_event(raw: &RawObject<'_>) -> Result<Option<ValidEvent>, ApiError> {
    let event = raw.get("event").and_then(as_string).ok_or(ApiError::MissingEventName)?;
    if event.is_empty() {
        return Err(ApiError::MissingEventName);
    }
    if event == "$performance_event" {
        return Ok(None);
    }
    let top_level_id =
        [raw.get("distinct_id"), raw.get("$distinct_id")].into_iter().flatten().find(|v| !is_null(v));
    // Reading the properties costs a scan of most of the event, so it is
    // done only when they can change the outcome.
    let properties = raw.get("properties").filter(|p| p.get().trim_start().starts_with('{'));
    let needs_hints =
        properties.is_some_and(|p| top_level_id.is_none() || p.get().contains("$ignore_sent_at"));
    let hints: PropertyHints<'_> = match properties {
        Some(properties) if needs_hints => serde_json::from_str(properties.get())
            .map_err(|e| ApiError::InvalidPayload(format!("properties: {e}")))?,
        _ => PropertyHints::default(),
    };
    let distinct_id = top_level_id
        .or(hints.distinct_id.filter(|v| !is_null(v)))
        .and_then(normalise_distinct_id)
        .ok_or(ApiError::MissingDistinctId)?;
    let uuid = match raw.get("uuid") {
        Some(value) if !is_null(value) => {
            let text = as_string(value).unwrap_or_else(|| value.get().to_string());
            Uuid::parse_str(&text).map_err(|_| ApiError::InvalidUuid(text))?
        }
        _ => Uuid::now_v7(),
    };
    let timestamp = raw.get("timestamp").and_then(as_string);
    let offset_ms = raw.get("offset").and_then(|v| v.get().trim().parse::<f64>().ok()).map(|v| v as i64);
    let ignore_sent_at = matches!(hints.ignore_sent_at, Some(serde_json::Value::Bool(true)));
    let data = reserialise(raw, &uuid, &distinct_id);
    Ok(Some(ValidEvent { uuid, event, distinct_id, timestamp, offset_ms, ignore_sent_at, data }))
}

fn is_null(value: &RawValue) -> bool {
    value.get().trim() == "null"
}

/// The token an event carries: `token`, `$token`, `api_key`, then
/// `properties.token`.
pub fn event_token(raw: &RawObject<'_>) -> Option<String> {
    string_field(raw, &["token", "$token", "api_key"]).or_else(|| {
        let properties = raw.get("properties")?;
        let hints: PropertyHints<'_> = serde_json::from_str(properties.get()).ok()?;
        hints.token.and_then(as_string)
    })
}

/// Checks a token against the capture rules and returns it trimmed.
pub fn validate_token(token: Option<String>) -> Result<String, ApiError> {
    let token = token.ok_or(ApiError::MissingToken)?;
    let token = token.trim();
    match check_project_token(token) {
        Ok(()) => Ok(token.to_string()),
        Err(TokenProblem::Empty) => Err(ApiError::MissingToken),
        Err(TokenProblem::PersonalApiKey) => Err(ApiError::PersonalApiKey),
        Err(problem) => Err(ApiError::InvalidToken(problem.describe())),
    }
}

/// Strings stay as they are, other JSON values become their compact JSON
/// text (so `1e2` and `100.0` are one person); NUL becomes U+FFFD and the
/// result is cut to 200 characters.
fn normalise_distinct_id(value: &RawValue) -> Option<String> {
    let id = match serde_json::from_str::<serde_json::Value>(value.get()).ok()? {
        serde_json::Value::String(text) => text,
        serde_json::Value::Null => return None,
        other => other.to_string(),
    };
    let id = if id.contains('\0') { id.replace('\0', "\u{FFFD}") } else { id };
    let id = match id.char_indices().nth(MAX_DISTINCT_ID_CHARS) {
        Some((cut, _)) => id[..cut].to_string(),
        None => id,
    };
    (!id.is_empty()).then_some(id)
}

/// The event's JSON with `uuid` and `distinct_id` replaced by their
/// normalised values and every other field copied as sent.
fn reserialise(raw: &RawObject<'_>, uuid: &Uuid, distinct_id: &str) -> String {
    let size: usize = raw.fields.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum();
    let mut out = String::with_capacity(size + 80);
    out.push('{');
    let mut first = true;
    for (key, value) in &raw.fields {
        if key == "uuid" || key == "distinct_id" {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        push_json_string(&mut out, key);
        out.push(':');
        out.push_str(value.get());
    }
    if !first {
        out.push(',');
    }
    out.push_str("\"uuid\":\"");
    out.push_str(&uuid.hyphenated().to_string());
    out.push_str("\",\"distinct_id\":");
    push_json_string(&mut out, distinct_id);
    out.push('}');
    out
}

fn push_json_string(out: &mut String, text: &str) {
    // Serialising a &str to JSON cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> Result<Option<ValidEvent>, ApiError> {
        let batch = parse_batch(json.as_bytes(), false)?;
        validate_event(&batch.events[0])
    }

    #[test]
    fn batch_shapes() {
        let array = parse_batch(br#"[{"event":"a"},{"event":"b"}]"#, false).expect("array");
        assert_eq!(array.events.len(), 2);
        let batch = parse_batch(
            br#"{"api_key":"phc_x","sent_at":"2026-01-01T00:00:00Z","historical_migration":true,"batch":[{"event":"a"}]}"#,
            false,
        )
        .expect("batch");
        assert_eq!((batch.events.len(), batch.token.as_deref()), (1, Some("phc_x")));
        assert!(batch.historical_migration);
        assert_eq!(batch.sent_at.as_deref(), Some("2026-01-01T00:00:00Z"));
        let single = parse_batch(br#"{"event":"a","token":"t"}"#, false).expect("single");
        assert_eq!(single.events.len(), 1);
        let engage = parse_batch(br#"{"$set":{"a":1},"distinct_id":"d"}"#, true).expect("engage");
        assert_eq!(
            validate_event(&engage.events[0]).expect("valid").map(|e| e.event).as_deref(),
            Some("$identify")
        );
    }

    #[test]
    fn distinct_id_rules() {
        let event = one(r#"{"event":"e","distinct_id":42}"#).expect("ok").expect("kept");
        assert_eq!(event.distinct_id, "42");
        let event = one(r#"{"event":"e","properties":{"distinct_id":"p"}}"#).expect("ok").expect("kept");
        assert_eq!(event.distinct_id, "p");
        let event = one(r#"{"event":"e","distinct_id":"a\u0000b"}"#).expect("ok").expect("kept");
        assert_eq!(event.distinct_id, "a\u{FFFD}b");
        let long = format!(r#"{{"event":"e","distinct_id":"{}"}}"#, "é".repeat(300));
        assert_eq!(one(&long).expect("ok").expect("kept").distinct_id.chars().count(), 200);
        assert!(matches!(one(r#"{"event":"e","distinct_id":""}"#), Err(ApiError::MissingDistinctId)));
        let event = one(r#"{"event":"e","distinct_id":null,"properties":{"distinct_id":"p"}}"#).expect("ok");
        assert_eq!(event.expect("kept").distinct_id, "p", "null counts as missing");
        let event = one(r#"{"event":"e","distinct_id":{ "a" : 1 }}"#).expect("ok").expect("kept");
        assert_eq!(event.distinct_id, r#"{"a":1}"#, "compact JSON text");
        assert!(matches!(one(r#"{"event":"e"}"#), Err(ApiError::MissingDistinctId)));
    }

    #[test]
    fn uuid_event_and_data() {
        assert!(matches!(
            one(r#"{"event":"e","distinct_id":"d","uuid":"nope"}"#),
            Err(ApiError::InvalidUuid(_))
        ));
        assert!(matches!(one(r#"{"distinct_id":"d"}"#), Err(ApiError::MissingEventName)));
        assert!(one(r#"{"event":"$performance_event","distinct_id":"d"}"#).expect("ok").is_none());
        let id = "0190b3f2-7c1e-7000-8000-000000000001";
        let event =
            one(&format!(r#"{{"event":"e","distinct_id":"d","uuid":"{id}","properties":{{"x":[1,2]}}}}"#))
                .expect("ok")
                .expect("kept");
        assert_eq!(event.uuid.to_string(), id);
        let data: serde_json::Value = serde_json::from_str(&event.data).expect("data is JSON");
        assert_eq!(data["properties"]["x"], serde_json::json!([1, 2]));
        assert_eq!(data["uuid"], id);
        assert_eq!(data["distinct_id"], "d");
    }

    #[test]
    fn token_rules() {
        assert!(matches!(validate_token(None), Err(ApiError::MissingToken)));
        assert!(matches!(validate_token(Some("  ".into())), Err(ApiError::MissingToken)));
        assert!(matches!(validate_token(Some("phx_abc".into())), Err(ApiError::PersonalApiKey)));
        assert!(matches!(validate_token(Some("x".repeat(65))), Err(ApiError::InvalidToken(_))));
        assert!(matches!(validate_token(Some("tøken".into())), Err(ApiError::InvalidToken(_))));
        assert_eq!(validate_token(Some(" phc_ok ".into())).expect("valid"), "phc_ok");
        let batch = parse_batch(br#"{"event":"e","properties":{"token":"phc_p"}}"#, false).expect("ok");
        assert_eq!(event_token(&batch.events[0]).as_deref(), Some("phc_p"));
    }
}
