//! Session recordings in the ingest loop: a batch's `$snapshot` records,
//! one blob per session (per log partition), written to the blob store
//! before the batch commits, and their rows committed with its offsets.
//!
//! A blob is named by the log position of its session's first record in
//! the batch. A batch rebuilt after a crash starts at the same committed
//! offsets, so each of its sessions starts at the same record and its blob
//! gets the same name: it is overwritten, never doubled, however the
//! retried batch is cut.
//!
//! posthog-js compresses the bulky parts of some rrweb events on its own
//! (`"cv": "2024-10"`: a full snapshot's `data`, a mutation's lists, as
//! gzip in a Latin-1 string). They are unpacked here, so what the blob
//! store holds — and the API serves — is plain rrweb that any player reads.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use warren_core::metrics as names;
use warren_core::person::{IngestionWarning, TeamId};
use warren_core::ports::BlobStore;
use warren_core::recording::{valid_session_id, RecordingChunk};
use warren_core::CapturedEvent;

use crate::IngestError;

/// posthog-js's mark on an event whose parts it gzipped.
const PACKED_MARK: &str = "2024-10";

/// What the packed parts of one record may unpack to, all together: a zip
/// bomb stops here.
const MAX_UNPACKED_PER_RECORD: u64 = 32 * 1024 * 1024;

/// What the packed parts of one batch may unpack to, all together (the
/// batch itself is bounded by `[ingest] batch_max_bytes`); past it, events
/// are left out with a warning.
const MAX_UNPACKED_PER_BATCH: u64 = 512 * 1024 * 1024;

/// How far from the time capture received a record its events' clock may
/// be taken at its word for listing and retention: a browser's wrong clock
/// must not hide a recording or have it deleted at once.
const TRUSTED_CLOCK_BEHIND_MS: i64 = 7 * 86_400_000;
const TRUSTED_CLOCK_AHEAD_MS: i64 = 3_600_000;

/// Blobs written at once.
const PUTS_AT_ONCE: usize = 8;

/// rrweb's event types and sources this module reads.
const FULL_SNAPSHOT: i64 = 2;
const INCREMENTAL: i64 = 3;
const META: i64 = 4;
const MUTATION: i64 = 0;
const MOUSE_INTERACTION: i64 = 2;
const CLICK: i64 = 2;
const STYLE_SHEET_RULE: i64 = 8;

#[derive(Deserialize, Default)]
struct Snapshot {
    #[serde(default)]
    properties: SnapshotProperties,
}

#[derive(Deserialize, Default)]
struct SnapshotProperties {
    #[serde(rename = "$session_id")]
    session_id: Option<String>,
    #[serde(rename = "$window_id")]
    window_id: Option<String>,
    #[serde(rename = "$snapshot_data")]
    snapshot_data: Option<Value>,
}

/// One session's share of the batch, until it is written.
struct Pending {
    first_offset: u64,
    distinct_id: String,
    /// JSON lines, `{"window_id": …, "event": {rrweb event}}`.
    lines: Vec<u8>,
    first_ms: i64,
    last_ms: i64,
    events: i64,
    clicks: i64,
    first_url: Option<String>,
}

/// The `$snapshot` records of one batch.
#[derive(Default)]
pub(crate) struct RecordingBatch {
    sessions: BTreeMap<(TeamId, String, u32), Pending>,
    /// Every `$snapshot` event's id, for the dedup window once committed:
    /// a batch posthog-js sends again is dropped like any event.
    pub(crate) uuids: Vec<(TeamId, uuid::Uuid)>,
    /// Bytes unpacked so far in this batch.
    unpacked: u64,
}

impl RecordingBatch {
    pub(crate) fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Adds the record at `offset` of `partition`; what cannot be filed
    /// becomes a warning to the project.
    pub(crate) fn add(
        &mut self,
        team_id: TeamId,
        (partition, offset, received_ms): (u32, u64, i64),
        captured: &CapturedEvent,
        warnings: &mut Vec<IngestionWarning>,
    ) {
        let mut warn = |reason: String| {
            warnings.push(IngestionWarning {
                team_id,
                kind: "invalid_recording".into(),
                event_uuid: Some(captured.uuid),
                details: json!({ "reason": reason }),
                timestamp_us: warren_core::unix_millis() * 1000,
            })
        };
        self.uuids.push((team_id, captured.uuid));
        let snapshot: Snapshot = match serde_json::from_str(&captured.data) {
            Ok(snapshot) => snapshot,
            Err(error) => return warn(format!("unreadable: {error}")),
        };
        let properties = snapshot.properties;
        let Some(session_id) = properties.session_id.filter(|id| valid_session_id(id)) else {
            return warn("no valid $session_id".into());
        };
        let window_id = properties.window_id.unwrap_or_else(|| session_id.clone());
        let events = match properties.snapshot_data {
            Some(Value::Array(events)) => events,
            Some(event @ Value::Object(_)) => vec![event],
            _ => return warn("no $snapshot_data".into()),
        };
        let pending = self.sessions.entry((team_id, session_id, partition)).or_insert_with(|| Pending {
            first_offset: offset,
            distinct_id: captured.distinct_id.clone(),
            lines: Vec::new(),
            first_ms: i64::MAX,
            last_ms: i64::MIN,
            events: 0,
            clicks: 0,
            first_url: None,
        });
        pending.first_offset = pending.first_offset.min(offset);
        let mut unreadable = 0;
        let mut budget = MAX_UNPACKED_PER_RECORD.min(MAX_UNPACKED_PER_BATCH.saturating_sub(self.unpacked));
        let trusted = received_ms.saturating_sub(TRUSTED_CLOCK_BEHIND_MS)
            ..=received_ms.saturating_add(TRUSTED_CLOCK_AHEAD_MS);
        for mut event in events {
            let Some(timestamp) = event.get("timestamp").and_then(Value::as_i64) else {
                unreadable += 1;
                continue;
            };
            let before = budget;
            let unpacked = unpack(&mut event, &mut budget);
            self.unpacked += before - budget;
            if unpacked.is_err() {
                unreadable += 1;
                continue;
            }
            let timestamp = timestamp.clamp(*trusted.start(), *trusted.end());
            pending.first_ms = pending.first_ms.min(timestamp);
            pending.last_ms = pending.last_ms.max(timestamp);
            pending.events += 1;
            pending.clicks += i64::from(is_click(&event));
            if pending.first_url.is_none() && kind(&event) == Some(META) {
                pending.first_url = event.pointer("/data/href").and_then(Value::as_str).map(str::to_string);
            }
            let line = json!({ "window_id": window_id, "event": event });
            // Writing JSON into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut pending.lines, &line);
            pending.lines.push(b'\n');
        }
        if unreadable > 0 {
            warn(format!(
                "{unreadable} rrweb events without a timestamp, or with parts that do not unpack or unpack to \
                 more than {MAX_UNPACKED_PER_RECORD} bytes a record"
            ));
        }
    }

    /// Writes every session's blob, a few at once, and answers the rows to
    /// commit.
    pub(crate) async fn write(&mut self, blobs: &dyn BlobStore) -> Result<Vec<RecordingChunk>, IngestError> {
        let mut written = Vec::with_capacity(self.sessions.len());
        for ((team_id, session_id, partition), pending) in std::mem::take(&mut self.sessions) {
            if pending.events == 0 {
                continue;
            }
            let bytes = gzip(&pending.lines);
            let chunk = RecordingChunk {
                team_id,
                session_id,
                chunk: RecordingChunk::name_at(partition, pending.first_offset),
                distinct_id: pending.distinct_id,
                first_ms: pending.first_ms,
                last_ms: pending.last_ms,
                events: pending.events,
                bytes: bytes.len() as i64,
                clicks: pending.clicks,
                first_url: pending.first_url,
            };
            written.push((chunk, bytes));
        }
        // Made up front, as named futures: a stream mapping a closure to
        // them would not be provably `Send` for the ingest task.
        let puts: Vec<_> = written.iter().map(|(chunk, bytes)| put(blobs, chunk, bytes)).collect();
        futures_util::stream::iter(puts).buffer_unordered(PUTS_AT_ONCE).try_collect::<Vec<()>>().await?;
        Ok(written.into_iter().map(|(chunk, _)| chunk).collect())
    }
}

async fn put(blobs: &dyn BlobStore, chunk: &RecordingChunk, bytes: &[u8]) -> Result<(), IngestError> {
    metrics::counter!(names::INGEST_RECORDING_BYTES).increment(bytes.len() as u64);
    Ok(blobs.put(&chunk.blob_key(), bytes.to_vec()).await?)
}

/// Chunks deleted per round of retention, so one round holds bounded memory.
const RETENTION_ROUND: u32 = 500;

/// Deletes every recording chunk whose last event is older than
/// `before_ms`: the blob first, then its row, so a run cut short leaves
/// rows whose blobs are gone — found and finished by the next run — and
/// never a blob no row names. Answers how many chunks went.
pub async fn delete_expired_recordings(
    meta: &dyn warren_meta::MetaStore,
    blobs: &dyn BlobStore,
    before_ms: i64,
) -> Result<u64, IngestError> {
    let mut deleted = 0u64;
    loop {
        let expired = meta.expired_recording_chunks(before_ms, RETENTION_ROUND).await?;
        if expired.is_empty() {
            return Ok(deleted);
        }
        for chunk in &expired {
            blobs.delete(&chunk.blob_key()).await?;
        }
        meta.delete_recording_chunks(&expired).await?;
        deleted += expired.len() as u64;
        metrics::counter!(names::RECORDING_CHUNKS_DELETED).increment(expired.len() as u64);
    }
}

fn kind(event: &Value) -> Option<i64> {
    event.get("type").and_then(Value::as_i64)
}

fn source(event: &Value) -> Option<i64> {
    event.pointer("/data/source").and_then(Value::as_i64)
}

fn is_click(event: &Value) -> bool {
    kind(event) == Some(INCREMENTAL)
        && source(event) == Some(MOUSE_INTERACTION)
        && event.pointer("/data/type").and_then(Value::as_i64) == Some(CLICK)
}

/// Unpacks the parts posthog-js gzipped, in place, and drops its mark;
/// `budget` is what the parts may unpack to, and what is left of it after.
fn unpack(event: &mut Value, budget: &mut u64) -> Result<(), String> {
    if event.get("cv").and_then(Value::as_str) != Some(PACKED_MARK) {
        return Ok(());
    }
    let fields: &[&str] = match (kind(event), source(event)) {
        (Some(FULL_SNAPSHOT), _) => &[],
        (Some(INCREMENTAL), Some(MUTATION)) => &["texts", "attributes", "removes", "adds"],
        (Some(INCREMENTAL), Some(STYLE_SHEET_RULE)) => &["adds", "removes"],
        _ => &[],
    };
    if kind(event) == Some(FULL_SNAPSHOT) {
        if let Some(packed) = event.get_mut("data") {
            unpack_value(packed, budget)?;
        }
    }
    if let Some(data) = event.get_mut("data") {
        for field in fields {
            if let Some(packed) = data.get_mut(*field) {
                unpack_value(packed, budget)?;
            }
        }
    }
    if let Some(object) = event.as_object_mut() {
        object.remove("cv");
    }
    Ok(())
}

/// A Latin-1 string of gzip bytes, replaced by the JSON it holds, taking
/// its size from `budget`; any other value is left as it is.
fn unpack_value(value: &mut Value, budget: &mut u64) -> Result<(), String> {
    let Value::String(packed) = value else { return Ok(()) };
    let bytes = packed
        .chars()
        .map(|c| {
            u8::try_from(u32::from(c)).map_err(|_| "a packed part holds a character above U+00FF".to_string())
        })
        .collect::<Result<Vec<u8>, _>>()?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .take(*budget + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("a packed part does not gunzip: {e}"))?;
    if json.len() as u64 > *budget {
        *budget = 0;
        return Err("packed parts unpack to more than the record may hold".into());
    }
    *budget -= json.len() as u64;
    *value = serde_json::from_slice(&json).map_err(|e| format!("a packed part is not JSON: {e}"))?;
    Ok(())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What posthog-js does to a part: gzip, then one character per byte.
    fn packed(value: &Value) -> Value {
        Value::String(gzip(value.to_string().as_bytes()).into_iter().map(char::from).collect())
    }

    fn captured(data: Value) -> CapturedEvent {
        serde_json::from_value(json!({
            "uuid": uuid::Uuid::now_v7(), "distinct_id": "anon-1", "ip": "", "data": data.to_string(),
            "now": "2026-12-03T10:00:00Z", "token": "phc_x", "event": "$snapshot",
            "timestamp": "2026-12-03T10:00:00Z"
        }))
        .expect("captured")
    }

    #[test]
    fn packed_parts_are_unpacked_and_clicks_and_urls_counted() {
        let node = json!({"type": 0, "id": 1, "childNodes": []});
        let adds =
            json!([{"parentId": 1, "nextId": null, "node": {"type": 3, "id": 2, "textContent": "hi"}}]);
        let data = json!({"properties": {"$session_id": "s1", "$window_id": "w1", "$snapshot_data": [
            {"type": 4, "timestamp": 1_000, "data": {"href": "https://shop.test/a", "width": 800, "height": 600}},
            {"type": 2, "timestamp": 1_010, "cv": "2024-10", "data": packed(&json!({"node": node, "initialOffset": {"top": 0, "left": 0}}))},
            {"type": 3, "timestamp": 2_000, "cv": "2024-10", "data": {"source": 0, "adds": packed(&adds),
                "removes": packed(&json!([])), "texts": packed(&json!([])), "attributes": packed(&json!([]))}},
            {"type": 3, "timestamp": 2_500, "data": {"source": 2, "type": 2, "id": 2, "x": 1, "y": 1}},
            {"type": 3, "data": {"source": 1}}
        ]}});
        let mut batch = RecordingBatch::default();
        let mut warnings = Vec::new();
        batch.add(1, (0, 42, 2_000), &captured(data), &mut warnings);
        assert_eq!(warnings.len(), 1, "the event without a timestamp: {warnings:?}");
        let pending = batch.sessions.get(&(1, "s1".to_string(), 0)).expect("session");
        assert_eq!((pending.first_ms, pending.last_ms, pending.events, pending.clicks), (1_000, 2_500, 4, 1));
        assert_eq!(pending.first_url.as_deref(), Some("https://shop.test/a"));
        let lines: Vec<Value> = pending
            .lines
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|line| serde_json::from_slice(line).expect("line"))
            .collect();
        assert_eq!(lines[1]["event"]["data"]["node"], node);
        assert_eq!(lines[2]["event"]["data"]["adds"], adds);
        assert_eq!(lines[2]["event"]["data"]["removes"], json!([]));
        assert!(lines.iter().all(|line| line["window_id"] == "w1" && line["event"].get("cv").is_none()));
    }

    #[test]
    fn unfileable_records_and_bombs_become_warnings() {
        let mut batch = RecordingBatch::default();
        let mut warnings = Vec::new();
        let bad_id = captured(json!({"properties": {"$session_id": "../x", "$snapshot_data": []}}));
        batch.add(1, (0, 1, 0), &bad_id, &mut warnings);
        batch.add(1, (0, 2, 0), &captured(json!({"properties": {"$session_id": "s"}})), &mut warnings);
        assert_eq!(warnings.len(), 2);
        let bomb = vec![b' '; (MAX_UNPACKED_PER_RECORD + 10) as usize];
        let mut value = Value::String(gzip(&bomb).into_iter().map(char::from).collect());
        let mut budget = MAX_UNPACKED_PER_RECORD;
        assert!(unpack_value(&mut value, &mut budget).is_err_and(|e| e.contains("more than")));
        let mut not_latin1 = Value::String("\u{2603}".into());
        let mut ample = MAX_UNPACKED_PER_RECORD;
        assert!(unpack_value(&mut not_latin1, &mut ample).is_err());
        // Many small parts share one budget.
        let mut budget = 10;
        let mut part = Value::String(gzip(b"[1,2,3]").into_iter().map(char::from).collect());
        assert!(unpack_value(&mut part.clone(), &mut budget).is_ok());
        assert_eq!(budget, 3);
        assert!(unpack_value(&mut part, &mut budget).is_err());
    }
}
