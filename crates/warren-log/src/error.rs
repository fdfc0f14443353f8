use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in an event log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log could not take the records before the append deadline.
    #[error("event log overloaded: no room for {bytes} bytes within {waited_ms} ms")]
    Overloaded { bytes: u64, waited_ms: u64 },
    #[error("event log is closed")]
    Closed,
    /// The log's disk or quota is full; nothing of the append was stored.
    #[error("event log storage is full: {0}")]
    Full(String),
    #[error("record of {bytes} bytes exceeds the {max} byte limit")]
    RecordTooLarge { bytes: usize, max: usize },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "segment {path} is corrupt at byte {position}: {reason}; \
         start with --repair to keep every intact record and drop the damaged bytes"
    )]
    Corrupt { path: PathBuf, position: u64, reason: String },
    #[error("offset {requested} is outside partition {partition}, which holds {start}..{end}")]
    OffsetOutOfRange { partition: u32, requested: u64, start: u64, end: u64 },
    #[error("partition {partition} does not exist; the log has {partitions}")]
    UnknownPartition { partition: u32, partitions: u32 },
    #[error("invalid consumer group name {0:?}: use 1-128 letters, digits, '-', '_' or '.'")]
    InvalidGroup(String),
    #[error("{0}")]
    Config(String),
}

impl LogError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
}
