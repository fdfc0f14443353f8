//! Domain types shared by every Warren crate, and nothing else.
//!
//! This crate holds the values that cross crate boundaries: the
//! [`CapturedEvent`] record that capture writes to the event log and ingest
//! reads back, persons and groups as ingest builds them, the configuration
//! structs that the binary loads and hands to each role, the project-token
//! rule, the names of every metric Warren exports, the in-memory board where
//! background jobs report their runs, session recordings' chunks, and the
//! small ports (consumer offsets, a migration ledger, the blob store of
//! recordings) that meet between crates. It performs no I/O and depends on no
//! runtime, so every other crate can depend on it.

pub mod config;
pub mod event;
pub mod exposition;
pub mod jobs;
pub mod metrics;
pub mod person;
pub mod ports;
pub mod recording;
pub mod token;

pub use event::CapturedEvent;

/// The line `warren serve` prints once it accepts connections, followed by
/// its URL; scripts and tests wait for it.
pub const LISTENING_LINE: &str = "warren listening on ";

/// The line `warren serve` prints before [`LISTENING_LINE`] when
/// `[http] admin_listen` is set, followed by the admin listener's URL.
pub const ADMIN_LISTENING_LINE: &str = "warren admin listening on ";

/// The file in the data dir where `warren serve` writes a new
/// deployment's project token, personal API key and dashboard sign-in
/// (mode 0600), as `name = "value"` lines; only its path is printed.
pub const FIRST_START_CREDENTIALS: &str = "first-start-credentials";

/// The name under which ingest records what it has stored: its event-log
/// consumer group, its writer name in every event store and its consumer
/// in the meta store. The System page compares stores by it.
pub const INGEST_CONSUMER: &str = "ingest";

/// The event-log consumer group of the log's archiving to the backup
/// target: retention keeps every record until it is archived.
pub const LOG_ARCHIVE_CONSUMER: &str = "backup-archive";

/// A file in a data directory that `warren restore` is still filling: no
/// process may serve from it until the restore has finished.
pub const RESTORING_MARKER: &str = ".warren-restoring";

/// Now, in Unix milliseconds.
pub fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
