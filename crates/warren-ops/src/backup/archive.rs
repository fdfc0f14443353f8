//! Continuous archiving of the event log to the backup target: what lets
//! `warren restore --at T` replay the events acknowledged after a backup.
//!
//! Layout on the target, beside the backups:
//!
//! ```text
//! log/<partition>/<from>-<end>.gz  the partition's records at offsets from..end
//! log/progress.json                every record received up to `covered_until_ms` is archived
//! ```
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
/// Records read from the log at a time.
const PAGE: usize = 2_000;
/// An object is cut once it holds this many bytes of records, so memory
/// stays bounded however far behind the archive is.
const OBJECT_BYTES: usize = 32 * 1024 * 1024;
/// The most an object may hold once inflated: a damaged or hostile one
/// cannot exhaust memory.
const MAX_INFLATED_BYTES: u64 = 4 * OBJECT_BYTES as u64;

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
    fn path(&self) -> Path {
        Path::from(format!("{PREFIX}/{}/{:020}-{:020}.gz", self.partition, self.from, self.end))
    }

    fn parse(partition: u32, name: &str) -> Option<Self> {
        let (from, end) = name.strip_suffix(".gz")?.split_once('-')?;
        Some(Self { partition, from: from.parse().ok()?, end: end.parse().ok()? })
    }
}

fn progress_path() -> Path {
    Path::from(format!("{PREFIX}/progress.json"))
}

/// Archives what `log` holds beyond the last run. `settle_ms` is how long
/// an append may take (`[event_log] append_timeout_ms`): a record received
/// earlier than that before the run began is durable by then, or was never
/// acknowledged.
pub async fn archive_log(
    target: &BackupTarget,
    log: &dyn EventLog,
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
        let mut batch: Vec<LogRecord> = Vec::new();
        let mut batch_bytes = 0;
        let mut from = next;
        while next < marks.end {
            let page = log.read(partition, next, PAGE).await?;
            let Some(last) = page.last() else { break };
            next = last.offset + 1;
            for record in page.into_iter().filter(|record| record.offset < marks.end) {
                batch_bytes += record.key.len() + record.value.len() + 24;
                batch.push(record);
            }
            if batch_bytes >= OBJECT_BYTES {
                let end = next.min(marks.end);
                put_object(target, Archived { partition, from, end }, &batch, &mut run).await?;
                log.commit(LOG_ARCHIVE_CONSUMER, partition, end).await?;
                (batch, batch_bytes, from) = (Vec::new(), 0, end);
            }
        }
        if !batch.is_empty() {
            put_object(target, Archived { partition, from, end: marks.end }, &batch, &mut run).await?;
        }
        if committed != Some(marks.end) {
            log.commit(LOG_ARCHIVE_CONSUMER, partition, marks.end).await?;
        }
        progress.ends.insert(partition, marks.end);
    }
    let bytes = serde_json::to_vec(&progress)
        .map_err(|e| OpsError::Verification(format!("encoding the archive's progress: {e}")))?;
    target.persist()?;
    target.store().put(&progress_path(), PutPayload::from(bytes)).await?;
    target.persist()?;
    Ok(run)
}

async fn put_object(
    target: &BackupTarget,
    object: Archived,
    records: &[LogRecord],
    run: &mut ArchiveRun,
) -> Result<(), OpsError> {
    let bytes = encode(records).map_err(OpsError::io("compressing archived records"))?;
    run.records += records.len() as u64;
    run.objects += 1;
    run.bytes += bytes.len() as u64;
    target.store().put(&object.path(), PutPayload::from(bytes)).await?;
    Ok(())
}

/// The archive's progress, or `None` before its first run.
pub async fn archive_progress(target: &BackupTarget) -> Result<Option<ArchiveProgress>, OpsError> {
    match target.store().get(&progress_path()).await {
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

/// Every archived object of partitions `0..partitions`, by first offset.
pub(crate) async fn archived(target: &BackupTarget, partitions: u32) -> Result<Vec<Vec<Archived>>, OpsError> {
    let mut all = Vec::with_capacity(partitions as usize);
    for partition in 0..partitions {
        all.push(objects_of(target, partition).await?);
    }
    Ok(all)
}

async fn objects_of(target: &BackupTarget, partition: u32) -> Result<Vec<Archived>, OpsError> {
    use futures_util::TryStreamExt;
    let prefix = Path::from(format!("{PREFIX}/{partition}"));
    let listed: Vec<_> = target.store().list(Some(&prefix)).try_collect().await?;
    let mut objects: Vec<Archived> =
        listed.iter().filter_map(|object| Archived::parse(partition, object.location.filename()?)).collect();
    objects.sort_by_key(|object| (object.from, std::cmp::Reverse(object.end)));
    Ok(objects)
}

/// The objects of one partition's `objects` that hold its records from
/// `from` to `end` without a gap, in order; `Err` names the first offset
/// none holds.
pub(crate) fn chain(objects: &[Archived], from: u64, end: u64) -> Result<Vec<Archived>, u64> {
    let mut chain = Vec::new();
    let mut need = from;
    while need < end {
        // Of the objects holding `need`, the one reaching furthest.
        let next =
            objects.iter().filter(|object| object.from <= need && object.end > need).max_by_key(|o| o.end);
        let Some(object) = next else { return Err(need) };
        need = object.end;
        chain.push(object.clone());
    }
    Ok(chain)
}

/// The records of one archived object.
pub(crate) async fn read_object(
    target: &BackupTarget,
    object: &Archived,
) -> Result<Vec<LogRecord>, OpsError> {
    let bytes = target.store().get(&object.path()).await?.bytes().await?;
    decode(object.partition, &bytes).map_err(|why| {
        OpsError::Verification(format!("archived log object {} is damaged: {why}", object.path()))
    })
}

/// Deletes archived objects every backup kept has no use for: those
/// wholly before `keep_from` (partition → the oldest kept backup's
/// offset). Returns how many were deleted.
pub async fn prune_archive(target: &BackupTarget, keep_from: &BTreeMap<u32, u64>) -> Result<u64, OpsError> {
    let mut deleted = 0;
    for (partition, keep) in keep_from {
        for object in objects_of(target, *partition).await? {
            if object.end <= *keep {
                match target.store().delete(&object.path()).await {
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
        .take(MAX_INFLATED_BYTES)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot be inflated: {e}"))?;
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
        let objects = vec![object(0, 10), object(10, 25), object(10, 20), object(25, 30), object(40, 50)];
        assert_eq!(chain(&objects, 5, 30), Ok(vec![object(0, 10), object(10, 25), object(25, 30)]));
        assert_eq!(chain(&objects, 12, 26), Ok(vec![object(10, 25), object(25, 30)]));
        assert_eq!(chain(&objects, 30, 30), Ok(vec![]));
        assert_eq!(chain(&objects, 5, 45), Err(30));
    }

    #[test]
    fn object_names_round_trip() {
        let object = Archived { partition: 2, from: 40, end: 1234 };
        let path = object.path();
        assert_eq!(Archived::parse(2, path.filename().expect("test setup")), Some(object));
        assert_eq!(Archived::parse(2, "progress.json"), None);
    }
}
