//! The ingest role: it consumes the event log, applies PostHog's person
//! semantics, and writes events with their persons into the event store.
//!
//! [`Ingester`] runs the loop. A batch of log records is normalised
//! (`normalize`), deduplicated by uuid (`dedup`), resolved to persons
//! (`persons`) and groups (`groups`), then committed in two steps: first
//! the rows to the event store together with the log offsets they cover,
//! then the person changes to the meta store with the same offsets. On
//! start, and after any failure, the loop resumes from the meta store's
//! offsets and replays person updates alone for records the event store
//! already holds — so a crash between (or during) the two commits neither
//! loses nor duplicates an event. Records the log deleted before ingest
//! read them (only retention told to ignore consumers does that) are
//! counted, logged and put on the job board, never skipped silently.
//! Session recordings' `$snapshot` records skip persons and rows: each
//! batch writes them as one blob per session to the blob store before it
//! commits, and their chunks' rows go to the meta store with its offsets
//! (`recordings`). Sender mistakes become ingestion warnings. A replica beside the event
//! store (the ClickHouse cluster) is written after it and catches up by
//! itself when it was away (`replica`): its outage never stops ingest.
//!
//! This crate never writes the event log and never serves HTTP.

mod dedup;
mod definitions;
mod error;
mod groups;
mod normalize;
mod person_size;
mod persons;
mod pipeline;
mod recordings;
mod replica;
mod store_persons;
mod teams;

pub use error::IngestError;
pub use pipeline::{Ingester, CONSUMER, RETENTION_GAP_JOB};
pub use recordings::delete_expired_recordings;
pub use replica::{REPLICA_CONSUMER, REPLICA_JOB};
