//! Session recordings: what a recorded session is made of as ingest stores
//! it and the API lists it.
//!
//! posthog-js sends a session's rrweb events to `/s/` in `$snapshot`
//! events. Ingest writes each batch's share of one session as one blob —
//! a [`RecordingChunk`] — to the [`crate::ports::BlobStore`], then records
//! the chunk in the meta store in the same transaction as the batch's log
//! offsets. A chunk is named by the log position of its first record, so a
//! batch written again after a crash overwrites its own blobs and rows
//! instead of adding to them (see `docs/recordings.md`).

use serde::Serialize;
use uuid::Uuid;

use crate::person::TeamId;

/// The event name of a batch of recorded rrweb events.
pub const SNAPSHOT_EVENT: &str = "$snapshot";

/// The longest session id kept; posthog-js sends UUIDs (36 characters).
pub const MAX_SESSION_ID_CHARS: usize = 128;

/// Whether `session_id` may name a recording: it becomes part of a blob's
/// path, so only letters, digits, `-` and `_`, and not too long.
pub fn valid_session_id(session_id: &str) -> bool {
    !session_id.is_empty()
        && session_id.len() <= MAX_SESSION_ID_CHARS
        && session_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One batch's share of one recorded session: a blob of rrweb events and
/// what the session list needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordingChunk {
    pub team_id: TeamId,
    pub session_id: String,
    /// The chunk's name within its session: the log partition and offset
    /// of its first `$snapshot` record (see [`RecordingChunk::name_at`]).
    pub chunk: String,
    /// The distinct id the chunk's events were sent with.
    pub distinct_id: String,
    /// Times of the first and last rrweb event, Unix milliseconds.
    pub first_ms: i64,
    pub last_ms: i64,
    /// rrweb events in the blob.
    pub events: i64,
    /// The blob's size as stored (compressed).
    pub bytes: i64,
    /// Mouse clicks among the events (rrweb incremental mouse interactions).
    pub clicks: i64,
    /// The first page address the chunk saw, when it saw one.
    pub first_url: Option<String>,
}

impl RecordingChunk {
    /// The name of a chunk whose first record is at `offset` of `partition`.
    pub fn name_at(partition: u32, offset: u64) -> String {
        format!("{partition:05}-{offset:020}")
    }

    /// Where the chunk's blob is kept in the blob store.
    pub fn blob_key(&self) -> String {
        format!("{}/{}/{}.jsonl.gz", self.team_id, self.session_id, self.chunk)
    }
}

/// A recorded session as the list shows it: its chunks added up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordingSummary {
    pub session_id: String,
    /// The distinct id of the session's first chunk.
    pub distinct_id: String,
    /// The person that distinct id belongs to now, if any.
    pub person_id: Option<Uuid>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub events: i64,
    pub bytes: i64,
    pub clicks: i64,
    pub first_url: Option<String>,
    pub chunks: i64,
}

impl RecordingSummary {
    /// One session's summary from its chunks in recording order (the
    /// person is left for the caller to find).
    pub fn of(chunks: &[RecordingChunk]) -> Option<Self> {
        let first = chunks.first()?;
        Some(Self {
            session_id: first.session_id.clone(),
            distinct_id: first.distinct_id.clone(),
            person_id: None,
            start_ms: chunks.iter().map(|c| c.first_ms).min().unwrap_or(first.first_ms),
            end_ms: chunks.iter().map(|c| c.last_ms).max().unwrap_or(first.last_ms),
            events: chunks.iter().map(|c| c.events).sum(),
            bytes: chunks.iter().map(|c| c.bytes).sum(),
            clicks: chunks.iter().map(|c| c.clicks).sum(),
            first_url: chunks.iter().find_map(|c| c.first_url.clone()),
            chunks: chunks.len() as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_that_could_leave_their_folder_are_refused() {
        assert!(valid_session_id("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"));
        for bad in ["", "..", "a/b", "a\\b", "a b", "ü", &"x".repeat(MAX_SESSION_ID_CHARS + 1)] {
            assert!(!valid_session_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn chunk_names_sort_in_log_order() {
        assert!(RecordingChunk::name_at(1, 99) < RecordingChunk::name_at(1, 100));
        let chunk = RecordingChunk {
            team_id: 7,
            session_id: "s".into(),
            chunk: RecordingChunk::name_at(1, 99),
            distinct_id: "d".into(),
            first_ms: 0,
            last_ms: 0,
            events: 1,
            bytes: 1,
            clicks: 0,
            first_url: None,
        };
        assert_eq!(chunk.blob_key(), "7/s/00001-00000000000000000099.jsonl.gz");
    }
}
