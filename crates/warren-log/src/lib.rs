//! The event log: Warren's durable, partitioned, ordered record of every
//! captured event, and the only thing capture writes to.
//!
//! [`EventLog`] is the port. [`SegmentLog`] is the embedded adapter: segment
//! files on local disk with CRC-checked records, group-commit fsync and
//! torn-tail recovery. A Kafka-API adapter implements the same trait, and
//! [`conformance`] is the one suite that every adapter must pass.
//!
//! This crate knows records as keys and bytes; it does not parse events.

pub mod conformance;
mod error;
mod segment;

use async_trait::async_trait;

pub use error::LogError;
pub use segment::{
    LogInfo, RetentionPolicy, RetentionReport, SegmentLog, SegmentLogOptions,
    FORMAT_VERSION as SEGMENT_FORMAT_VERSION, MAX_RECORD_BYTES,
};

/// A record to append. The log picks its partition from `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRecord {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// When the record was received, in Unix milliseconds; used by
    /// [`EventLog::offset_for_time`] and retention.
    pub timestamp_ms: i64,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordPosition {
    pub partition: u32,
    pub offset: u64,
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// The offsets a partition holds: `start..end`, `end` being the next offset
/// to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub start: u64,
    pub end: u64,
}

/// A durable, partitioned, ordered append log with consumer offsets.
///
/// Offsets grow within a partition but may skip values, as Kafka's do.
/// Committed consumer offsets name the next offset to read.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Number of partitions; fixed for the life of the log.
    fn partitions(&self) -> u32;

    /// The partition that records with this key go to.
    fn partition_for(&self, key: &[u8]) -> u32;

    /// Appends records; returns once every one of them is durable, with their
    /// positions in the order given. Records with the same key keep their
    /// order. Fails with [`LogError::Overloaded`] rather than buffering
    /// without bound when the log cannot keep up, and with
    /// [`LogError::Full`] when its storage has no room.
    ///
    /// All or nothing: `Ok` means every record is stored, an error means
    /// none is, even when only one of the partitions involved failed, so a
    /// caller may retry the whole call. Only a process that dies mid-append
    /// can leave some records durable without an answer; a retry then
    /// stores them twice, and consumers deduplicate by (project, event uuid).
    async fn append(&self, records: Vec<AppendRecord>) -> Result<Vec<RecordPosition>, LogError>;

    /// Up to `max_records` durable records of `partition`, from `from` on.
    /// An offset at or past the end returns nothing; one before the start
    /// (deleted by retention) is [`LogError::OffsetOutOfRange`].
    async fn read(&self, partition: u32, from: u64, max_records: usize) -> Result<Vec<LogRecord>, LogError>;

    async fn watermarks(&self, partition: u32) -> Result<Watermarks, LogError>;

    /// The first offset whose record timestamp is at or after `timestamp_ms`,
    /// or `None` when no record is that new.
    async fn offset_for_time(&self, partition: u32, timestamp_ms: i64) -> Result<Option<u64>, LogError>;

    /// Records that `group` has consumed `partition` up to (not including)
    /// `offset`.
    async fn commit(&self, group: &str, partition: u32, offset: u64) -> Result<(), LogError>;

    /// The offset `group` committed for `partition`, if any.
    async fn committed(&self, group: &str, partition: u32) -> Result<Option<u64>, LogError>;

    /// The consumer groups that have committed anything.
    async fn consumer_groups(&self) -> Result<Vec<String>, LogError>;

    /// Sets the log's gauges (sizes, consumer lag) just before metrics are
    /// rendered, so they are current without a background task.
    fn report_metrics(&self) {}

    /// Makes everything appended so far durable and stops accepting appends.
    async fn close(&self) -> Result<(), LogError>;
}

/// Every record of `partition` from its start to its current end, read in
/// pages: for tools and tests, not for hot paths.
pub async fn read_partition<L: EventLog + ?Sized>(
    log: &L,
    partition: u32,
) -> Result<Vec<LogRecord>, LogError> {
    const PAGE: usize = 1000;
    let mut out = Vec::new();
    let mut next = log.watermarks(partition).await?.start;
    loop {
        let page = log.read(partition, next, PAGE).await?;
        let Some(last) = page.last() else { break };
        next = last.offset + 1;
        out.extend(page);
    }
    Ok(out)
}
