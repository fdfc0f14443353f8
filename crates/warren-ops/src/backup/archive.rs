//! Continuous archiving of the event log to the backup target: what lets
//! `warren restore --at T` replay the events acknowledged after a backup.
//!
//! Layout on the target, beside the backups:
//!
//! ```text
//! log/<log id>/<partition>/<from>-<end>.gz  the partition's records at offsets from..end
//! log/<log id>/progress.json                every record received up to `covered_until_ms` is archived
//! ```
//!
//! A log's id names its history of records: a restored deployment's log
//! numbers records from offsets its source used, and archives under its
//! own id, so the two never mix. Backups record the id of the log their
//! offsets belong to.
//!
//! [`archive_log`] is one run (a periodic job of `warren serve`): it
//! reads each partition on from what the [`LOG_ARCHIVE_CONSUMER`] group
//! committed, writes the records as objects, commits, and then moves the
//! progress on. The log's retention waits for that group, so nothing is
//! deleted before it is archived. A run killed between writing an object
//! and committing writes an overlapping one next time; readers follow the
//! chain by offsets, so overlaps are harmless.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use warren_core::LOG_ARCHIVE_CONSUMER;
use warren_log::{EventLog, LogRecord};

use super::target::BackupTarget;
use crate::OpsError;

const PREFIX: &str = "log";
const MAGIC: &[u8; 8] = b"WLOGARC1";
/// Records read from the log at a time: few, since one may be large.
const PAGE: usize = 100;
/// An object is cut once it holds this many bytes of records, so memory
/// stays bounded however far behind the archive is.
const OBJECT_BYTES: usize = 32 * 1024 * 1024;
/// The most an object may hold once inflated: a full object plus the
/// largest record the log takes (its last one) and the framing. A damaged
/// or hostile object cannot exhaust memory.
const MAX_INFLATED_BYTES: u64 = (OBJECT_BYTES + 2 * warren_log::MAX_RECORD_BYTES + 1024 * 1024) as u64;

/// How far the archive reaches: every record received at or before
/// `covered_until_ms` is archived, and each partition up to its offset in
/// `ends`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveProgress {
    pub covered_until_ms: i64,
    pub ends: BTreeMap<u32, u64>,
}

/// What one run archived.
#[derive(Debug, Clone, Default)]
pub struct ArchiveRun {
    pub records: u64,
    pub objects: u64,
    pub bytes: u64,
    pub covered_until_ms: i64,
    /// Records retention deleted before they were archived, when it was
    /// told to ignore consumers: point-in-time restore cannot cross them.
    pub skipped: u64,
}

/// One archived object, known from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Archived {
    pub partition: u32,
    pub from: u64,
    pub end: u64,
}

impl Archived {
    fn path(&self, log_id: &str) -> Path {
        Path::from(format!("{PREFIX}/{log_id}/{}/{:020}-{:020}.gz", self.partition, self.from, self.end))
    }

    fn parse(partition: u32, name: &str) -> Option<Self> {
        let (from, end) = name.strip_suffix(".gz")?.split_once('-')?;
        Some(Self { partition, from: from.parse().ok()?, end: end.parse().ok()? })
    }
}

fn progress_path(log_id: &str) -> Path {
    Path::from(format!("{PREFIX}/{log_id}/progress.json"))
}

/// Archives what `log` (whose id is `log_id`) holds beyond the last run.
/// `settle_ms` is how long an append may take (`[event_log]
/// append_timeout_ms` and a margin): a record received earlier than that
/// before the run began is durable by then, or was never acknowledged.
pub async fn archive_log(
    target: &BackupTarget,
    log: &dyn EventLog,
    log_id: &str,
    settle_ms: i64,
) -> Result<ArchiveRun, OpsError> {
    let started_ms = warren_core::unix_millis();
    let mut run = ArchiveRun { covered_until_ms: started_ms - settle_ms, ..ArchiveRun::default() };
    let mut progress = ArchiveProgress { covered_until_ms: run.covered_until_ms, ends: BTreeMap::new() };
    for partition in 0..log.partitions() {
        let marks = log.watermarks(partition).await?;
        let committed = log.committed(LOG_ARCHIVE_CONSUMER, partition).await?;
        let mut next = committed.unwrap_or(marks.start);
        if next < marks.start {
            run.skipped += marks.start - next;
            tracing::warn!(
                partition,
                from = next,
                to = marks.start,
                "records were deleted before they were archived"
            );
            next = marks.start;
        }
        let mut object = Pending { partition, from: next, records: Vec::new(), bytes: 0 };
        while next < marks.end {
            let page = log.read(partition, next, PAGE).await?;
            if page.is_empty() {
                return Err(OpsError::Verification(format!(
                    "partition {partition} of the event log has no records from offset {next} though it ends at {}",
                    marks.end
                )));
            }
            for record in page {
                if record.offset >= marks.end {
                    next = marks.end;
                    break;
                }
                next = record.offset + 1;
                object.bytes += record.key.len() + record.value.len() + 24;
                object.records.push(record);
                // Cut per record, so an object stays near its size.
                if object.bytes >= OBJECT_BYTES {
                    object.store(target, log, log_id, next, &mut run).await?;
                }
            }
        }
        object.store(target, log, log_id, marks.end, &mut run).await?;
        if committed.is_none_or(|committed| committed < marks.end) {
            log.commit(LOG_ARCHIVE_CONSUMER, partition, marks.end).await?;
        }
        progress.ends.insert(partition, marks.end);
    }
    let bytes = serde_json::to_vec(&progress)
        .map_err(|e| OpsError::Verification(format!("encoding the archive's progress: {e}")))?;
    target.store().put(&progress_path(log_id), PutPayload::from(bytes)).await?;
    target.persist()?;
    Ok(run)
}

/// Records of one partition waiting to be stored as one object.
struct Pending {
    partition: u32,
    from: u64,
    records: Vec<LogRecord>,
    bytes: usize,
}

impl Pending {
    /// Stores the records (up to offset `end`) as one object, durable
    /// before the log is told they are archived, and starts the next.
    async fn store(
        &mut self,
        target: &BackupTarget,
        log: &dyn EventLog,
        log_id: &str,
        end: u64,
        run: &mut ArchiveRun,
    ) -> Result<(), OpsError> {
        if self.records.is_empty() {
            return Ok(());
        }
        let object = Archived { partition: self.partition, from: self.from, end };
        let bytes = encode(&self.records).map_err(OpsError::io("compressing archived records"))?;
        run.records += self.records.len() as u64;
        run.objects += 1;
        run.bytes += bytes.len() as u64;
        target.store().put(&object.path(log_id), PutPayload::from(bytes)).await?;
        target.persist()?;
        log.commit(LOG_ARCHIVE_CONSUMER, self.partition, end).await?;
        (self.from, self.records, self.bytes) = (end, Vec::new(), 0);
        Ok(())
    }
}

/// The archive's progress, or `None` before its first run.
pub async fn archive_progress(
    target: &BackupTarget,
    log_id: &str,
) -> Result<Option<ArchiveProgress>, OpsError> {
    match target.store().get(&progress_path(log_id)).await {
        Ok(found) => {
            let bytes = found.bytes().await?;
            let progress = serde_json::from_slice(&bytes)
                .map_err(|e| OpsError::Verification(format!("the archive's progress is unreadable: {e}")))?;
            Ok(Some(progress))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Every archived object of log `log_id`'s partitions `0..partitions`,
/// by first offset.
pub(crate) async fn archived(
    target: &BackupTarget,
    log_id: &str,
    partitions: u32,
) -> Result<Vec<Vec<Archived>>, OpsError> {
    let mut all = Vec::with_capacity(partitions as usize);
    for partition in 0..partitions {
        all.push(objects_of(target, log_id, partition).await?);
    }
    Ok(all)
}

async fn objects_of(target: &BackupTarget, log_id: &str, partition: u32) -> Result<Vec<Archived>, OpsError> {
    use futures_util::TryStreamExt;
    let prefix = Path::from(format!("{PREFIX}/{log_id}/{partition}"));
    let listed: Vec<_> = target.store().list(Some(&prefix)).try_collect().await?;
    let mut objects: Vec<Archived> =
        listed.iter().filter_map(|object| Archived::parse(partition, object.location.filename()?)).collect();
    objects.sort_by_key(|object| (object.from, std::cmp::Reverse(object.end)));
    Ok(objects)
}

/// The objects of one partition's `objects` (sorted by first offset) that
/// hold its records from `from` on without a gap, in order, and the offset
/// they reach: one pass, however many objects there are.
pub(crate) fn chain(objects: &[Archived], from: u64) -> (Vec<Archived>, u64) {
    let mut chain = Vec::new();
    let mut need = from;
    let mut next = 0;
    loop {
        // Of the objects starting at or before `need`, the one reaching
        // furthest; those passed over never reach further later.
        let mut best: Option<&Archived> = None;
        while let Some(object) = objects.get(next).filter(|object| object.from <= need) {
            if object.end > need && best.is_none_or(|best| object.end > best.end) {
                best = Some(object);
            }
            next += 1;
        }
        let Some(object) = best else { return (chain, need) };
        need = object.end;
        chain.push(object.clone());
    }
}

/// The records of one archived object.
pub(crate) async fn read_object(
    target: &BackupTarget,
    log_id: &str,
    object: &Archived,
) -> Result<Vec<LogRecord>, OpsError> {
    let bytes = target.store().get(&object.path(log_id)).await?.bytes().await?;
    decode(object.partition, &bytes).map_err(|why| {
        OpsError::Verification(format!("archived log object {} is damaged: {why}", object.path(log_id)))
    })
}

/// Deletes the archived objects of log `log_id` that no kept backup has a
/// use for: those wholly before `keep_from` (partition → the oldest kept
/// backup's offset). Returns how many were deleted.
pub async fn prune_archive(
    target: &BackupTarget,
    log_id: &str,
    keep_from: &BTreeMap<u32, u64>,
) -> Result<u64, OpsError> {
    let mut deleted = 0;
    for (partition, keep) in keep_from {
        for object in objects_of(target, log_id, *partition).await? {
            if object.end <= *keep {
                match target.store().delete(&object.path(log_id)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
    Ok(deleted)
}

/// `MAGIC`, then per record its offset, time, key and value, then the
/// SHA-256 of all that; gzip-compressed (events are JSON, which shrinks
/// several times).
fn encode(records: &[LogRecord]) -> std::io::Result<Vec<u8>> {
    let mut raw =
        Vec::with_capacity(records.iter().map(|r| r.key.len() + r.value.len() + 24).sum::<usize>() + 40);
    raw.extend_from_slice(MAGIC);
    for record in records {
        raw.extend_from_slice(&record.offset.to_le_bytes());
        raw.extend_from_slice(&record.timestamp_ms.to_le_bytes());
        for part in [&record.key, &record.value] {
            raw.extend_from_slice(&(part.len() as u32).to_le_bytes());
            raw.extend_from_slice(part);
        }
    }
    let digest = Sha256::digest(&raw);
    raw.extend_from_slice(&digest);
    let mut gz = GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::fast());
    gz.write_all(&raw)?;
    gz.finish()
}

fn decode(partition: u32, compressed: &[u8]) -> Result<Vec<LogRecord>, String> {
    let mut raw = Vec::new();
    GzDecoder::new(compressed)
        .take(MAX_INFLATED_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot be inflated: {e}"))?;
    if raw.len() as u64 > MAX_INFLATED_BYTES {
        return Err(format!(
            "it inflates to more than {MAX_INFLATED_BYTES} bytes, more than an archive writes"
        ));
    }
    if raw.len() < MAGIC.len() + 32 || &raw[..MAGIC.len()] != MAGIC {
        return Err("not an archive of log records".into());
    }
    let (body, digest) = raw.split_at(raw.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err("its checksum does not match".into());
    }
    let mut rest = &body[MAGIC.len()..];
    let mut records = Vec::new();
    let take = |n: usize, rest: &mut &[u8]| -> Result<Vec<u8>, String> {
        if rest.len() < n {
            return Err("it ends inside a record".into());
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head.to_vec())
    };
    while !rest.is_empty() {
        let offset = u64::from_le_bytes(take(8, &mut rest)?.try_into().unwrap_or_default());
        let timestamp_ms = i64::from_le_bytes(take(8, &mut rest)?.try_into().unwrap_or_default());
        let key_len = u32::from_le_bytes(take(4, &mut rest)?.try_into().unwrap_or_default());
        let key = take(key_len as usize, &mut rest)?;
        let value_len = u32::from_le_bytes(take(4, &mut rest)?.try_into().unwrap_or_default());
        let value = take(value_len as usize, &mut rest)?;
        records.push(LogRecord { partition, offset, timestamp_ms, key, value });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: u64, value: &str) -> LogRecord {
        LogRecord {
            partition: 3,
            offset,
            timestamp_ms: 1_700_000_000_000 + offset as i64,
            key: b"k".to_vec(),
            value: value.into(),
        }
    }

    #[test]
    fn records_come_back_as_they_were_archived() {
        let records =
            vec![record(7, "{\"event\":\"a\"}"), record(9, ""), record(10, "x".repeat(5000).as_str())];
        let bytes = encode(&records).expect("test setup");
        assert_eq!(decode(3, &bytes).expect("test setup"), records);
    }

    #[test]
    fn a_damaged_object_is_named_damaged_not_read() {
        let bytes = encode(&[record(1, "one"), record(2, "two")]).expect("test setup");
        let mut raw = Vec::new();
        GzDecoder::new(bytes.as_slice()).read_to_end(&mut raw).expect("test setup");
        raw[12] ^= 1;
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).expect("test setup");
        let flipped = gz.finish().expect("test setup");
        assert_eq!(decode(3, &flipped).expect_err("refused"), "its checksum does not match");
        assert!(decode(3, &bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn a_chain_follows_offsets_across_overlaps_and_stops_at_a_gap() {
        let object = |from, end| Archived { partition: 0, from, end };
        // A run killed before its commit leaves 10..20 beside 10..25.
        let mut objects = vec![object(0, 10), object(10, 25), object(10, 20), object(25, 30), object(40, 50)];
        objects.sort_by_key(|object| (object.from, std::cmp::Reverse(object.end)));
        assert_eq!(chain(&objects, 5), (vec![object(0, 10), object(10, 25), object(25, 30)], 30));
        assert_eq!(chain(&objects, 12), (vec![object(10, 25), object(25, 30)], 30));
        assert_eq!(chain(&objects, 30), (vec![], 30));
        assert_eq!(chain(&objects, 41), (vec![object(40, 50)], 50));
        assert_eq!(chain(&objects, 60), (vec![], 60));
    }

    #[test]
    fn object_names_round_trip() {
        let object = Archived { partition: 2, from: 40, end: 1234 };
        let path = object.path("0af3");
        assert!(path.as_ref().starts_with("log/0af3/2/"), "{path}");
        assert_eq!(Archived::parse(2, path.filename().expect("test setup")), Some(object));
        assert_eq!(Archived::parse(2, "progress.json"), None);
    }
}
