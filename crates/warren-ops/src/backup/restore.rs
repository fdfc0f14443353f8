//! [`restore`]: a backup back into a new data directory, checked file by
//! file against the manifest's checksums and then, opened, against its
//! events per day.
//!
//! The event log is not copied: it is created empty, numbering records
//! from the offsets the restored meta store and table hold, so a server
//! started on the directory ingests every new event after them — nothing
//! twice, nothing skipped.

use std::io::Write;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;
use warren_log::SegmentLog;
use warren_store::{DeltaStore, DeltaStoreOptions};

use super::copy::{copy_object, read_chunks, CopyRun, COPIES_AT_ONCE};
use super::create::{by_day, META_DUMP, META_FILE};
use super::manifest::{FileEntry, Manifest};
use super::target::{sync_filesystem, BackupTarget};
use super::{Progress, Report};
use crate::OpsError;

// Present in a data directory while a restore fills it: a restore cut
// short is started over, and `warren serve` refuses such a directory.
use warren_core::RESTORING_MARKER;

/// Restores backup `id` from `target` into `data_dir`, which must be
/// missing or empty (or left by a restore cut short).
pub async fn restore(
    target: &BackupTarget,
    id: &str,
    data_dir: &std::path::Path,
    report: &Report<'_>,
) -> Result<Manifest, OpsError> {
    let manifest = restore_files(target, id, data_dir, report).await?;
    finish(data_dir)?;
    Ok(manifest)
}

/// Copies one file of a backup into `data_dir` and checks it against its
/// entry.
async fn restore_file(
    target: &BackupTarget,
    file: &FileEntry,
    data_dir: &std::path::Path,
    local: &Arc<dyn ObjectStore>,
    run: &CopyRun<'_>,
) -> Result<(), OpsError> {
    let copied = if file.chunks.is_empty() {
        let from = BackupTarget::file_path(&file.stored_in, &file.path);
        copy_object(target.store(), &from, local, &Path::from(file.path.as_str()), run).await?
    } else {
        let to = data_dir.join(&file.path);
        let what = || format!("writing {}", to.display());
        let mut out = std::fs::File::create(&to).map_err(OpsError::io(what()))?;
        read_chunks(target.store(), file, |bytes| {
            // A restore has no bandwidth limit: nothing to wait for.
            let _no_wait = run.count(bytes.len() as u64);
            out.write_all(bytes).map_err(OpsError::io(what()))
        })
        .await?
    };
    if (copied.size, copied.sha256.as_str()) != (file.size, file.sha256.as_str()) {
        return Err(OpsError::Verification(format!(
            "{} (stored in backup {}) does not match its manifest: {} bytes with SHA-256 {}, expected {} bytes with {}",
            file.path, file.stored_in, copied.size, copied.sha256, file.size, file.sha256
        )));
    }
    run.file_done();
    Ok(())
}

/// Restores backup `id` and checks it, leaving the directory marked as a
/// restore in progress for [`finish`]: what comes between (a replay of
/// the archived log) is cut short safely.
pub(crate) async fn restore_files(
    target: &BackupTarget,
    id: &str,
    data_dir: &std::path::Path,
    report: &Report<'_>,
) -> Result<Manifest, OpsError> {
    let manifest = target.manifest(id).await?;
    check_layout(&manifest)?;
    prepare(data_dir)?;
    let marker = data_dir.join(RESTORING_MARKER);
    std::fs::write(&marker, id).map_err(OpsError::io(format!("writing {}", marker.display())))?;
    sync_filesystem(data_dir)?;

    let local: Arc<dyn ObjectStore> = Arc::new(
        LocalFileSystem::new_with_prefix(data_dir)
            .map_err(|e| OpsError::Refused(format!("data directory {}: {e}", data_dir.display())))?,
    );
    let run = CopyRun::new(manifest.files.len(), manifest.total_bytes(), None, report);
    // Made up front, as named futures: a stream mapping a closure to
    // these would not be provably `Send` for the drill's task.
    let copies: Vec<_> =
        manifest.files.iter().map(|file| restore_file(target, file, data_dir, &local, &run)).collect();
    let copied =
        futures_util::stream::iter(copies).buffer_unordered(COPIES_AT_ONCE).try_collect::<()>().await;
    copied.map_err(|error| match error {
        OpsError::Verification(what) => {
            OpsError::Verification(format!("{what}; run `warren backup verify {}`", manifest.id))
        }
        other => other,
    })?;

    if manifest.files.iter().any(|file| file.path == META_DUMP) {
        report(&Progress::phase("loading the meta store's rows"));
        let dump = data_dir.join(META_DUMP);
        let read = std::fs::File::open(&dump).map_err(OpsError::io(format!("reading {}", dump.display())))?;
        warren_meta::load_sqlite(std::io::BufReader::new(read), &data_dir.join(META_FILE)).await?;
        std::fs::remove_file(&dump).map_err(OpsError::io(format!("removing {}", dump.display())))?;
    }

    report(&Progress::phase("creating the event log"));
    let starts = log_starts(&manifest);
    let log_dir = data_dir.join("log");
    tokio::task::spawn_blocking(move || SegmentLog::create_at(&log_dir, &starts))
        .await
        .map_err(|e| OpsError::Verification(format!("creating the event log: {e}")))??;

    report(&Progress::phase("checking the restored events table"));
    check_table(data_dir, &manifest).await?;
    Ok(manifest)
}

/// Ends a restore: everything is made durable, then the marker goes.
pub(crate) fn finish(data_dir: &std::path::Path) -> Result<(), OpsError> {
    sync_filesystem(data_dir)?;
    let marker = data_dir.join(RESTORING_MARKER);
    std::fs::remove_file(&marker).map_err(OpsError::io(format!("removing {}", marker.display())))
}

/// Makes sure `data_dir` may be restored into, emptying what a restore
/// cut short left there.
fn prepare(data_dir: &std::path::Path) -> Result<(), OpsError> {
    std::fs::create_dir_all(data_dir).map_err(OpsError::io(format!("creating {}", data_dir.display())))?;
    let entries: Vec<_> = std::fs::read_dir(data_dir)
        .map_err(OpsError::io(format!("reading {}", data_dir.display())))?
        .collect::<Result<_, _>>()
        .map_err(OpsError::io(format!("reading {}", data_dir.display())))?;
    if entries.is_empty() {
        return Ok(());
    }
    if !data_dir.join(RESTORING_MARKER).exists() {
        return Err(OpsError::Refused(format!(
            "{} is not empty: restore into a new directory, so nothing there is overwritten",
            data_dir.display()
        )));
    }
    tracing::info!(dir = %data_dir.display(), "starting over a restore that was cut short");
    // The marker goes last: a restart cut short again still finds it.
    for entry in entries.iter().filter(|entry| entry.file_name() != RESTORING_MARKER) {
        let path = entry.path();
        let removed =
            if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.map_err(OpsError::io(format!("removing {}", path.display())))?;
    }
    Ok(())
}

/// Refuses a manifest that would write outside the data directory or
/// name log partitions the backup does not have.
fn check_layout(manifest: &Manifest) -> Result<(), OpsError> {
    use std::path::Component;
    for file in &manifest.files {
        let path = std::path::Path::new(&file.path);
        if !path.components().all(|part| matches!(part, Component::Normal(_))) {
            return Err(OpsError::Verification(format!(
                "backup {} names the file {:?}, outside a data directory",
                manifest.id, file.path
            )));
        }
    }
    if let Some(partition) = manifest.ingest_offsets.keys().find(|p| **p >= manifest.log_partitions) {
        return Err(OpsError::Verification(format!(
            "backup {} has offsets for log partition {partition} of {}",
            manifest.id, manifest.log_partitions
        )));
    }
    Ok(())
}

/// Where the restored log starts numbering each partition's records.
fn log_starts(manifest: &Manifest) -> Vec<u64> {
    (0..manifest.log_partitions)
        .map(|partition| manifest.ingest_offsets.get(&partition).copied().unwrap_or(0))
        .collect()
}

/// Opens the restored table and compares its events per day with the
/// manifest's.
async fn check_table(data_dir: &std::path::Path, manifest: &Manifest) -> Result<(), OpsError> {
    let table = open_table(data_dir).await?;
    let restored = by_day(table.rows_per_day().await?);
    if restored != manifest.events_per_day {
        return Err(OpsError::Verification(format!(
            "the restored table holds {} events, the backup {}: per day, restored {:?}, backed up {:?}",
            restored.values().sum::<u64>(),
            manifest.events(),
            restored,
            manifest.events_per_day
        )));
    }
    Ok(())
}

/// The events table of a restored data directory, which sits where an
/// unconfigured data directory keeps it.
pub(crate) async fn open_table(data_dir: &std::path::Path) -> Result<DeltaStore, OpsError> {
    let config = warren_core::config::EventStoreConfig::default();
    let options = DeltaStoreOptions::from_config(&config, data_dir)?;
    Ok(DeltaStore::open(options).await?)
}
