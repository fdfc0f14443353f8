//! [`create`]: one backup of a running (or stopped) deployment.
//!
//! The meta store is snapshotted first; its ingest offsets then pick the
//! events table's version that holds exactly the events those offsets
//! cover (the table may be one batch ahead of the meta store, never
//! behind), so the two restore as one consistent moment. Table files never
//! change once written, which is what lets them be copied while ingest and
//! upkeep go on, and lets an incremental backup skip the ones its chain
//! already holds. Session recordings' blobs are copied the same way: the
//! snapshot's chunk rows name them, and a blob never changes once its row
//! is committed.

use std::collections::HashMap;
use std::sync::Arc;

use fastcdc::v2020::StreamCDC;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use warren_core::ports::ConsumerOffsets;
use warren_core::INGEST_CONSUMER;
use warren_meta::{MetaSchema, Recordings, SqlMeta};
use warren_store::DeltaStore;

use super::copy::{checksum, copy_object, CopyRun, Tally, COPIES_AT_ONCE};
use super::drill::{day_checks, record_answers};
use super::manifest::{BackupKind, Chunk, FileEntry, Manifest, MANIFEST_FORMAT};
use super::target::BackupTarget;
use super::{Progress, Report};
use crate::OpsError;

/// Where a backup's files within the backup (and in a restored data
/// directory) live.
pub(crate) const META_FILE: &str = "meta.db";
/// The meta store as the backup keeps it: its rows (`warren_meta::dump_sqlite`),
/// which a restore loads into [`META_FILE`].
pub(crate) const META_DUMP: &str = "meta.rows";
pub(crate) const EVENTS_DIR: &str = "events";
/// The recordings' blobs, each under its key in the blob store: where a
/// restored data directory's default blob store has them.
pub(crate) const RECORDINGS_DIR: &str = "recordings";
pub(crate) const CONFIG_FILE: &str = "config-at-backup.json";

/// What a backup is taken of.
pub struct Sources<'a> {
    pub meta: &'a dyn MetaSchema,
    pub table: &'a DeltaStore,
    /// The event log's partition count and id.
    pub log_partitions: u32,
    pub log_id: Option<String>,
    /// The configuration, secrets redacted: kept for people restoring.
    pub config: serde_json::Value,
    /// The blob store of session recordings (`[recordings] url`).
    pub recordings: Arc<dyn ObjectStore>,
}

/// How to take it.
#[derive(Debug, Clone, Copy)]
pub struct CreateOptions {
    pub kind: BackupKind,
    /// Record each day's checksum and the drill's insight answers (each
    /// a read of the whole table) for `warren backup drill`.
    pub record_checks: bool,
    /// Taken by a schedule, whose retention may delete it.
    pub scheduled: bool,
    /// Bytes per second to copy at most; `None` copies as fast as the
    /// stores go.
    pub max_bytes_per_sec: Option<u64>,
}

/// A file of the events table, copied whole.
struct TableSource {
    store: Arc<dyn ObjectStore>,
    from: Path,
    /// Its path in the backup.
    path: String,
    size: u64,
}

/// Chunk sizes: small enough that a change to the meta store rewrites few
/// bytes of the backup, large enough that a big store is not millions of
/// objects.
const CHUNK_MIN: usize = 4 * 1024;
const CHUNK_AVG: usize = 16 * 1024;
const CHUNK_MAX: usize = 64 * 1024;

/// A staged file stored as content-defined chunks. The meta store's
/// snapshot is rewritten whole each time, but most of its pages come out
/// the same, only moved: cut where the content says (not every N bytes),
/// most chunks are the chain's already, and an incremental backup copies
/// the few that changed.
struct ChunkedFile<'a> {
    target: &'a BackupTarget,
    id: &'a str,
    local: &'a std::path::Path,
    path: &'a str,
}

impl ChunkedFile<'_> {
    /// Stores the chunks `held` (SHA-256 → backup keeping it) lacks,
    /// adding them to it, and returns the file's entry.
    async fn store(
        &self,
        held: &mut HashMap<String, String>,
        run: &CopyRun<'_>,
    ) -> Result<FileEntry, OpsError> {
        let read = std::fs::File::open(self.local).map_err(OpsError::io(format!("reading {}", self.path)))?;
        let mut file = Tally::default();
        let mut chunks = Vec::new();
        // The file is local and read a chunk at a time.
        for piece in StreamCDC::new(read, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX) {
            let piece = piece.map_err(|e| OpsError::Verification(format!("reading {}: {e}", self.path)))?;
            file.add(&piece.data);
            let mut one = Tally::default();
            one.add(&piece.data);
            let sha256 = one.finish().sha256;
            let stored_in = match held.get(&sha256) {
                Some(stored_in) => stored_in.clone(),
                None => {
                    let size = piece.data.len() as u64;
                    let to = BackupTarget::chunk_path(self.id, &sha256);
                    self.target.store().put(&to, PutPayload::from(piece.data)).await?;
                    run.copied(size).await;
                    held.insert(sha256.clone(), self.id.to_string());
                    self.id.to_string()
                }
            };
            chunks.push(Chunk { size: piece.length as u64, sha256, stored_in });
        }
        let whole = file.finish();
        Ok(FileEntry {
            path: self.path.to_string(),
            size: whole.size,
            sha256: whole.sha256,
            stored_in: self.id.to_string(),
            chunks,
        })
    }
}

/// Takes a backup of `sources` on `target` and returns its manifest.
/// A run cut short leaves an unfinished backup that this removes first.
pub async fn create(
    target: &BackupTarget,
    sources: Sources<'_>,
    options: CreateOptions,
    report: &Report<'_>,
) -> Result<Manifest, OpsError> {
    let listing = target.list().await?;
    for unfinished in &listing.unfinished {
        tracing::info!(backup = %unfinished, "removing a backup that was cut short");
        target.remove(unfinished).await?;
    }
    let parent = match options.kind {
        BackupKind::Full => None,
        BackupKind::Incremental => Some(listing.finished.last().cloned().ok_or_else(|| {
            OpsError::Refused(format!("{} holds no backup to build on: take a full one first", target.url()))
        })?),
    };
    let id = new_id(listing.finished.last().map(|manifest| manifest.id.as_str()));

    report(&Progress::phase("snapshotting the meta store"));
    let staging = tempfile::tempdir().map_err(OpsError::io("creating a staging directory"))?;
    let snapshot = staging.path().join(META_FILE);
    sources.meta.snapshot_into(&snapshot).await?;
    // Taken once the snapshot is: every event the backup holds was
    // received before, which is what a restore to a moment relies on.
    let created_at = chrono::Utc::now();
    // The snapshot is closed again before it is copied, standing alone.
    let snapshot_meta = Arc::new(SqlMeta::connect(&format!("sqlite://{}", snapshot.display())).await?);
    let moment =
        at_moment(sources.table, snapshot_meta.clone(), created_at, options.record_checks, report).await;
    // Every chunk the snapshot names (each is "older than" the end of time).
    let recorded = snapshot_meta.expired_recording_chunks(i64::MAX, u32::MAX).await;
    snapshot_meta.close().await;
    let Moment { offsets, table_version, days, answers } = moment?;
    let recordings = recording_files(&sources.recordings, recorded?).await?;
    let mut table_files = sources.table.files_at(table_version).await?;
    let events_per_day = by_day(std::mem::take(&mut table_files.rows_per_day));

    let config = serde_json::to_vec_pretty(&sources.config)
        .map_err(|e| OpsError::Verification(format!("encoding the configuration: {e}")))?;
    std::fs::write(staging.path().join(CONFIG_FILE), config)
        .map_err(OpsError::io("writing the configuration's copy"))?;
    report(&Progress::phase("writing the meta store's rows"));
    let dump = staging.path().join(META_DUMP);
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&dump).map_err(OpsError::io("writing the meta store's rows"))?,
    );
    warren_meta::dump_sqlite(&snapshot, &mut out).await?;
    std::io::Write::flush(&mut out).map_err(OpsError::io("writing the meta store's rows"))?;
    drop(out);
    // Made for the backup, stored in chunks.
    let mut staged = Vec::new();
    for name in [META_DUMP, CONFIG_FILE] {
        let local = staging.path().join(name);
        let size = std::fs::metadata(&local).map_err(OpsError::io(name))?.len();
        staged.push((local, name, size));
    }
    let table_store = sources.table.object_store().await;
    let mut table = Vec::new();
    for file in table_files.files {
        table.push(TableSource {
            store: table_store.clone(),
            from: Path::from(file.path.as_str()),
            path: format!("{EVENTS_DIR}/{}", file.path),
            size: file.size,
        });
    }
    table.extend(recordings);

    // Data files are never rewritten and carry unique names, so one of
    // the same path and size is the same file. A commit of the same number
    // may not be (a restored table writes its own under the numbers the
    // chain used): it is reused only when its content is the same too. The
    // chain's chunks are known by their content.
    let held: HashMap<(&str, u64), &FileEntry> = parent
        .iter()
        .flat_map(|parent| &parent.files)
        .filter(|entry| {
            entry.path.starts_with(&format!("{EVENTS_DIR}/"))
                || entry.path.starts_with(&format!("{RECORDINGS_DIR}/"))
        })
        .map(|entry| ((entry.path.as_str(), entry.size), entry))
        .collect();
    let mut chunks: HashMap<String, String> = parent
        .iter()
        .flat_map(|parent| &parent.files)
        .flat_map(|entry| &entry.chunks)
        .map(|chunk| (chunk.sha256.clone(), chunk.stored_in.clone()))
        .collect();
    let to_copy: u64 = staged.iter().map(|(_, _, size)| size).sum::<u64>()
        + table
            .iter()
            .filter(|file| is_commit(&file.path) || !held.contains_key(&(file.path.as_str(), file.size)))
            .map(|file| file.size)
            .sum::<u64>();
    let run = CopyRun::new(staged.len() + table.len(), to_copy, options.max_bytes_per_sec, report);
    let mut entries = Vec::with_capacity(staged.len() + table.len());
    for (local, path, _) in &staged {
        let chunked = ChunkedFile { target, id: &id, local, path };
        entries.push(chunked.store(&mut chunks, &run).await?);
        run.file_done();
    }
    // Made up front, as named futures: a stream mapping a closure to
    // these would not be provably `Send` for the scheduled backup's task.
    let copies: Vec<_> = table.iter().map(|file| copy_table_file(file, &held, target, &id, &run)).collect();
    entries
        .extend(futures_util::stream::iter(copies).buffered(COPIES_AT_ONCE).try_collect::<Vec<_>>().await?);

    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        id,
        kind: options.kind,
        parent: parent.map(|parent| parent.id),
        created_at: created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        warren_version: env!("CARGO_PKG_VERSION").to_string(),
        table_version,
        log_partitions: sources.log_partitions,
        log_id: sources.log_id,
        scheduled: options.scheduled,
        ingest_offsets: offsets.into_iter().collect(),
        events_per_day,
        checks_recorded: options.record_checks,
        days,
        answers,
        files: entries,
    };
    report(&Progress::phase("writing the manifest"));
    target.put_manifest(&manifest).await?;
    Ok(manifest)
}

/// Copies a file of the events table into backup `id`, unless the chain
/// (`held`) holds it already.
async fn copy_table_file(
    file: &TableSource,
    held: &HashMap<(&str, u64), &FileEntry>,
    target: &BackupTarget,
    id: &str,
    run: &CopyRun<'_>,
) -> Result<FileEntry, OpsError> {
    let entry = match reusable(file, held).await? {
        Some(entry) => entry,
        None => copy_new_table_file(file, target, id, run).await?,
    };
    run.file_done();
    Ok(entry)
}

/// Copies a file of the events table the chain does not hold.
async fn copy_new_table_file(
    file: &TableSource,
    target: &BackupTarget,
    id: &str,
    run: &CopyRun<'_>,
) -> Result<FileEntry, OpsError> {
    let TableSource { store, from, path, size } = file;
    let to = BackupTarget::file_path(id, path);
    let read = copy_object(store, from, target.store(), &to, run).await?;
    if read.size != *size {
        return Err(OpsError::Verification(format!(
            "{path} changed while it was copied ({size} bytes listed, {} read)",
            read.size
        )));
    }
    Ok(FileEntry {
        path: path.clone(),
        size: read.size,
        sha256: read.sha256,
        stored_in: id.to_string(),
        chunks: Vec::new(),
    })
}

/// The blobs of the snapshot's recording chunks, with their sizes. A blob
/// deleted since the snapshot is left out: by retention, its row is
/// expired and goes at the restored deployment's next run; by the API,
/// that session lists in the restore but its events answer is cut off.
async fn recording_files(
    store: &Arc<dyn ObjectStore>,
    chunks: Vec<warren_core::recording::RecordingChunk>,
) -> Result<Vec<TableSource>, OpsError> {
    let heads = chunks.into_iter().map(|chunk| async move {
        let key = chunk.blob_key();
        let from = Path::from(key.as_str());
        match store.head(&from).await {
            Ok(found) => {
                let path = format!("{RECORDINGS_DIR}/{key}");
                Ok(Some(TableSource { store: store.clone(), from, path, size: found.size }))
            }
            Err(object_store::Error::NotFound { .. }) => {
                tracing::warn!(blob = %key, "a recording's blob was deleted during the backup; left out");
                Ok(None)
            }
            Err(error) => Err(OpsError::from(error)),
        }
    });
    let found: Vec<Option<TableSource>> =
        futures_util::stream::iter(heads).buffered(COPIES_AT_ONCE * 2).try_collect().await?;
    Ok(found.into_iter().flatten().collect())
}

fn is_commit(path: &str) -> bool {
    path.strip_prefix(EVENTS_DIR).is_some_and(|rest| rest.starts_with("/_delta_log/"))
}

/// The chain's entry for `file` when the chain holds it already: a data
/// file of the same path and size, or a commit whose content is the same.
async fn reusable(
    file: &TableSource,
    held: &HashMap<(&str, u64), &FileEntry>,
) -> Result<Option<FileEntry>, OpsError> {
    let TableSource { store, from, path, size } = file;
    let Some(entry) = held.get(&(path.as_str(), *size)) else { return Ok(None) };
    if is_commit(path) && checksum(store, from).await?.sha256 != entry.sha256 {
        return Ok(None);
    }
    Ok(Some((*entry).clone()))
}

/// The backup's moment, as the meta store's snapshot fixes it.
struct Moment {
    /// Ingest's offsets in the snapshot.
    offsets: HashMap<u32, u64>,
    /// The table's version that holds exactly the events they cover.
    table_version: u64,
    days: std::collections::BTreeMap<String, super::manifest::DayCheck>,
    answers: Vec<super::manifest::RecordedAnswer>,
}

async fn at_moment(
    table: &DeltaStore,
    snapshot: Arc<SqlMeta>,
    created_at: chrono::DateTime<chrono::Utc>,
    record_checks: bool,
    report: &Report<'_>,
) -> Result<Moment, OpsError> {
    let offsets =
        snapshot.ingest_offsets(INGEST_CONSUMER).await.map_err(|e| OpsError::Verification(e.to_string()))?;
    report(&Progress::phase("finding the events table's matching version"));
    let table_version = table.version_within(INGEST_CONSUMER, &offsets).await?;
    let (mut days, mut answers) = Default::default();
    if record_checks {
        report(&Progress::phase("recording each day's checksum and the drill's answers"));
        days = day_checks(table.day_summaries_at(table_version).await?);
        answers = record_answers(Arc::new(table.view_at(table_version).await?), snapshot, created_at).await?;
    }
    Ok(Moment { offsets, table_version, days, answers })
}

/// Rows per day keyed as manifests keep them (`YYYY-MM-DD`).
pub(crate) fn by_day(days: Vec<(chrono::NaiveDate, u64)>) -> std::collections::BTreeMap<String, u64> {
    days.into_iter().map(|(day, rows)| (day.format("%Y-%m-%d").to_string(), rows)).collect()
}

/// A new backup's id: the time, to the millisecond, so ids sort as the
/// backups were taken; never equal to the newest one's.
fn new_id(newest: Option<&str>) -> String {
    let mut at = chrono::Utc::now();
    loop {
        let id = at.format("%Y%m%dT%H%M%S%.3fZ").to_string();
        if newest.is_none_or(|newest| id.as_str() > newest) {
            return id;
        }
        at += chrono::Duration::milliseconds(1);
    }
}
