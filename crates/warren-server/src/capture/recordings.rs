//! `/s/`: posthog-js's session recordings, batches of `$snapshot` events
//! whose `$snapshot_data` holds rrweb events. They go to the event log like
//! any event; ingest turns them into a session's blobs. Capture checks
//! what ingest needs to file them — the session id becomes part of a
//! blob's path — so a recording it accepts is one ingest can store.

use serde::Deserialize;
use serde_json::value::RawValue;
use warren_core::recording::{valid_session_id, SNAPSHOT_EVENT};

use super::events::{as_string, RawObject};
use crate::ApiError;

#[derive(Deserialize)]
struct SnapshotFields<'a> {
    #[serde(rename = "$session_id", borrow, default)]
    session_id: Option<&'a RawValue>,
    #[serde(rename = "$snapshot_data", borrow, default)]
    snapshot_data: Option<&'a RawValue>,
}

/// Checks one event sent to `/s/`.
pub(super) fn check_snapshot(raw: &RawObject<'_>) -> Result<(), ApiError> {
    if raw.get("event").and_then(as_string).as_deref() != Some(SNAPSHOT_EVENT) {
        return Err(ApiError::InvalidPayload(format!(
            "`/s/` takes `{SNAPSHOT_EVENT}` events; send other events to `/i/v0/e/`"
        )));
    }
    let properties = raw.get("properties").ok_or(ApiError::MissingSessionId)?;
    let fields: SnapshotFields<'_> = serde_json::from_str(properties.get())
        .map_err(|e| ApiError::InvalidPayload(format!("properties: {e}")))?;
    let session_id = fields
        .session_id
        .and_then(|value| serde_json::from_str::<String>(value.get()).ok())
        .ok_or(ApiError::MissingSessionId)?;
    if !valid_session_id(&session_id) {
        return Err(ApiError::InvalidSessionId);
    }
    match fields.snapshot_data.and_then(|data| data.get().trim_start().bytes().next()) {
        Some(b'[' | b'{') => Ok(()),
        _ => Err(ApiError::MissingSnapshotData),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<(), &'static str> {
        let raw: RawObject<'_> = serde_json::from_str(json).expect("object");
        check_snapshot(&raw).map_err(|error| error.code())
    }

    #[test]
    fn what_ingest_cannot_file_is_refused_with_its_code() {
        let ok =
            r#"{"event":"$snapshot","properties":{"$session_id":"0193-ab_c","$snapshot_data":[{"type":4}]}}"#;
        assert_eq!(check(ok), Ok(()));
        let object_data =
            r#"{"event":"$snapshot","properties":{"$session_id":"s","$snapshot_data":{"type":2}}}"#;
        assert_eq!(check(object_data), Ok(()));
        let cases = [
            (
                r#"{"event":"$pageview","properties":{"$session_id":"s","$snapshot_data":[]}}"#,
                "invalid_payload",
            ),
            (r#"{"event":"$snapshot"}"#, "missing_session_id"),
            (r#"{"event":"$snapshot","properties":{"$snapshot_data":[]}}"#, "missing_session_id"),
            (
                r#"{"event":"$snapshot","properties":{"$session_id":7,"$snapshot_data":[]}}"#,
                "missing_session_id",
            ),
            (
                r#"{"event":"$snapshot","properties":{"$session_id":"../../etc","$snapshot_data":[]}}"#,
                "invalid_session_id",
            ),
            (r#"{"event":"$snapshot","properties":{"$session_id":"s"}}"#, "missing_snapshot_data"),
            (
                r#"{"event":"$snapshot","properties":{"$session_id":"s","$snapshot_data":"x"}}"#,
                "missing_snapshot_data",
            ),
        ];
        for (json, code) in cases {
            assert_eq!(check(json), Err(code), "{json}");
        }
    }
}
