//! [`restore_at`]: the deployment as it was at a moment — the newest
//! backup taken before it, and then the archived event log replayed
//! through ingest up to exactly the events received at or before it.
//!
//! A backup holds the events of log offsets before its ingest offsets,
//! all received before the backup was taken, so for a moment `T` at or
//! after a backup, the events of `T` are the backup's plus the archived
//! records from its offsets on whose time is at or before `T`. Replaying
//! them through ingest's own code rebuilds persons as they were; product
//! entities are the backup's, as of when it was taken.

use std::collections::BTreeMap;
use std::sync::Arc;

use warren_core::config::IngestConfig;
use warren_core::INGEST_CONSUMER;
use warren_log::{AppendRecord, EventLog, SegmentLog, SegmentLogOptions};
use warren_meta::SqlMeta;

use super::archive::{archive_progress, archived, chain, read_object, ArchiveProgress, Archived};
use super::create::META_FILE;
use super::manifest::Manifest;
use super::restore::{finish, open_table, restore_files};
use super::target::BackupTarget;
use super::{Progress, Report};
use crate::OpsError;

/// Records appended to the restored log at a time.
const APPEND_BATCH: usize = 5_000;

/// The moments one backup can be restored to: from when it was taken to
/// how far the archived log goes on from it without a gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub backup: String,
    pub from_ms: i64,
    pub until_ms: i64,
}

/// What [`restore_at`] restored.
#[derive(Debug, Clone)]
pub struct PointInTime {
    pub manifest: Manifest,
    pub at_ms: i64,
    /// Archived records replayed after the backup.
    pub replayed: u64,
    /// Events the restored table holds.
    pub events: u64,
}

/// How far each finished backup on `target` reaches, oldest first.
pub async fn reach(target: &BackupTarget) -> Result<Vec<Reach>, OpsError> {
    let listing = target.list().await?;
    // Each log's archive, read once however many backups share it.
    let mut archives: BTreeMap<String, Option<Archive>> = BTreeMap::new();
    let mut reaches = Vec::new();
    for manifest in &listing.finished {
        let from_ms = taken_ms(manifest)?;
        let mut until_ms = from_ms;
        if let Some(log_id) = &manifest.log_id {
            if !archives.contains_key(log_id) {
                let archive = Archive::read(target, log_id, manifest.log_partitions).await?;
                archives.insert(log_id.clone(), archive);
            }
            if let Some(archive) = archives.get(log_id).and_then(Option::as_ref) {
                if archive.progress.covered_until_ms > from_ms && archive.replays(manifest).is_ok() {
                    until_ms = archive.progress.covered_until_ms;
                }
            }
        }
        reaches.push(Reach { backup: manifest.id.clone(), from_ms, until_ms });
    }
    Ok(reaches)
}

/// One log's archive: how far it reaches, and its objects per partition.
struct Archive {
    log_id: String,
    progress: ArchiveProgress,
    objects: Vec<Vec<Archived>>,
}

impl Archive {
    /// The archive of log `log_id`, `None` before its first run.
    async fn read(target: &BackupTarget, log_id: &str, partitions: u32) -> Result<Option<Self>, OpsError> {
        let Some(progress) = archive_progress(target, log_id).await? else { return Ok(None) };
        let objects = archived(target, log_id, partitions).await?;
        Ok(Some(Self { log_id: log_id.to_string(), progress, objects }))
    }

    /// The objects, per partition, that hold every record after
    /// `manifest`'s offsets up to the progress's ends and on as far as
    /// they go without a gap (a record made durable late is archived by a
    /// later run); `Err` says where a partition's records are missing.
    fn replays(&self, manifest: &Manifest) -> Result<Vec<(u32, u64, Vec<Archived>)>, OpsError> {
        let mut chains = Vec::new();
        for partition in 0..manifest.log_partitions {
            let from = manifest.ingest_offsets.get(&partition).copied().unwrap_or(0);
            let end = self.progress.ends.get(&partition).copied().unwrap_or(0);
            if end < from {
                return Err(OpsError::Verification(format!(
                    "the archive of log {} ends partition {partition} at offset {end}, before backup {}'s {from}",
                    self.log_id, manifest.id
                )));
            }
            let objects = self.objects.get(partition as usize).map(Vec::as_slice).unwrap_or_default();
            let (chain, reached) = chain(objects, from);
            if reached < end {
                return Err(OpsError::Verification(format!(
                    "the archive of log {} has no records of partition {partition} from offset {reached}",
                    self.log_id
                )));
            }
            chains.push((partition, from, chain));
        }
        Ok(chains)
    }
}

/// When `manifest`'s backup was taken, in Unix milliseconds.
fn taken_ms(manifest: &Manifest) -> Result<i64, OpsError> {
    chrono::DateTime::parse_from_rfc3339(&manifest.created_at)
        .map(|at| at.timestamp_millis())
        .map_err(|e| OpsError::Verification(format!("backup {} has no readable time: {e}", manifest.id)))
}

/// The reachable moments of `reaches`, merged, for people.
pub fn describe_windows(reaches: &[Reach]) -> String {
    let mut windows: Vec<(i64, i64)> = Vec::new();
    let mut sorted: Vec<_> = reaches.iter().map(|reach| (reach.from_ms, reach.until_ms)).collect();
    sorted.sort();
    for (from, until) in sorted {
        match windows.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(until),
            _ => windows.push((from, until)),
        }
    }
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| ms.to_string())
    };
    let shown: Vec<String> = windows
        .iter()
        .map(
            |(from, until)| {
                if from == until {
                    at(*from)
                } else {
                    format!("{} to {}", at(*from), at(*until))
                }
            },
        )
        .collect();
    if shown.is_empty() {
        "none: the target holds no backup".into()
    } else {
        shown.join(", ")
    }
}

/// Restores the deployment as it was at `at_ms` into `data_dir` (new or
/// empty), refusing a moment the backups and the archive do not reach
/// with the moments they do. Cut short, it starts over when run again.
pub async fn restore_at(
    target: &BackupTarget,
    at_ms: i64,
    data_dir: &std::path::Path,
    ingest: IngestConfig,
    report: &Report<'_>,
) -> Result<PointInTime, OpsError> {
    let reaches = reach(target).await?;
    let Some(chosen) = reaches.iter().rev().find(|reach| reach.from_ms <= at_ms && at_ms <= reach.until_ms)
    else {
        return Err(OpsError::Refused(format!(
            "the backups on {} cannot restore {}: they reach {}",
            target.url(),
            describe_windows(&[Reach { backup: String::new(), from_ms: at_ms, until_ms: at_ms }]),
            describe_windows(&reaches)
        )));
    };
    let manifest = target.manifest(&chosen.backup).await?;
    // Reached, so the backup has a log id and the archive is there.
    let log_id = manifest.log_id.clone().unwrap_or_default();
    let archive = Archive::read(target, &log_id, manifest.log_partitions)
        .await?
        .ok_or_else(|| OpsError::Verification(format!("the archive of log {log_id} is gone")))?;
    let chains = archive.replays(&manifest)?;
    let manifest = restore_files(target, &chosen.backup, data_dir, report).await?;

    let options = SegmentLogOptions {
        consumers: vec![INGEST_CONSUMER.to_string()],
        ..SegmentLogOptions::new(data_dir.join("log"))
    };
    let log = Arc::new(
        tokio::task::spawn_blocking(move || SegmentLog::open(options))
            .await
            .map_err(|e| OpsError::Verification(format!("opening the restored event log: {e}")))??,
    );
    let mut shown = Progress::phase("replaying the archived event log (objects)");
    shown.files = chains.iter().map(|(_, _, chain)| chain.len()).sum();
    report(&shown);
    let mut replayed = 0;
    for (partition, from, chain) in &chains {
        let mut done = |objects: usize| {
            shown.files_done += objects;
            report(&shown);
        };
        let source = (target, log_id.as_str());
        replayed += replay(source, log.as_ref(), chain, *partition, *from, at_ms, &mut done).await?;
    }

    report(&Progress::phase("ingesting the replayed events"));
    let meta = Arc::new(SqlMeta::connect(&format!("sqlite://{}", data_dir.join(META_FILE).display())).await?);
    let table = Arc::new(open_table(data_dir).await?);
    // Recordings replayed go where a deployment of this data dir keeps them
    // by default.
    let url = warren_core::config::RecordingsConfig::default().url_in(data_dir);
    let blobs = warren_store::ObjectBlobStore::open(&url, &Default::default())?;
    let ingested = warren_ingest::Ingester::new(log.clone(), meta.clone(), table.clone(), ingest)
        .with_recordings(Arc::new(blobs))
        .catch_up()
        .await;
    log.close().await?;
    meta.close().await;
    ingested.map_err(|e| OpsError::Verification(format!("ingesting the replayed events: {e}")))?;

    report(&Progress::phase("checking the restored events table"));
    let events: u64 = table.rows_per_day().await?.iter().map(|(_, rows)| rows).sum();
    // Ingest drops a record whose event it already holds (a client's
    // retry), never one it does not.
    if events < manifest.events() || events > manifest.events() + replayed {
        return Err(OpsError::Verification(format!(
            "the restored table holds {events} events; the backup held {} and {replayed} were replayed",
            manifest.events()
        )));
    }
    finish(data_dir)?;
    Ok(PointInTime { manifest, at_ms, replayed, events })
}

/// Appends the records of `chain` from offset `from` received at or
/// before `at_ms` to `log`, in their order; returns how many.
async fn replay(
    (target, log_id): (&BackupTarget, &str),
    log: &dyn EventLog,
    chain: &[Archived],
    partition: u32,
    from: u64,
    at_ms: i64,
    done: &mut impl FnMut(usize),
) -> Result<u64, OpsError> {
    let mut next = from;
    let mut replayed = 0;
    let mut batch = Vec::with_capacity(APPEND_BATCH);
    for object in chain {
        for record in read_object(target, log_id, object).await? {
            if record.offset < next || record.offset >= object.end {
                continue;
            }
            next = record.offset + 1;
            if record.timestamp_ms > at_ms {
                continue;
            }
            batch.push(AppendRecord {
                key: record.key,
                value: record.value,
                timestamp_ms: record.timestamp_ms,
            });
            if batch.len() == APPEND_BATCH {
                replayed += append(log, std::mem::take(&mut batch), partition).await?;
            }
        }
        done(1);
    }
    if !batch.is_empty() {
        replayed += append(log, batch, partition).await?;
    }
    Ok(replayed)
}

async fn append(log: &dyn EventLog, records: Vec<AppendRecord>, partition: u32) -> Result<u64, OpsError> {
    let positions = log.append(records).await?;
    // The restored log has the source's partition count, so a key lands
    // where it did; anything else would reorder a person's events.
    if let Some(moved) = positions.iter().find(|position| position.partition != partition) {
        return Err(OpsError::Verification(format!(
            "a record of partition {partition} was appended to partition {} of the restored log",
            moved.partition
        )));
    }
    Ok(positions.len() as u64)
}
