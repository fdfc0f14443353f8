//! The backups `warren serve` takes by itself once `[backup] url` is set:
//! the event log archived every `archive_interval_secs` (`backup.archive`),
//! and a backup every `interval_mins` — full when the newest full one is
//! older than `full_interval_hours`, incremental otherwise — followed by
//! retention (`backup.create`), and a drill of each full one
//! (`backup.drill`). Each run is a job-board entry, so the
//! System page shows it and self-monitoring turns it into an event of the
//! internal project.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use warren_core::config::WarrenConfig;
use warren_core::jobs::{JobBoard, Outcome};
use warren_log::{EventLog, SegmentLog};
use warren_meta::MetaStore;
use warren_ops::backup::{self, BackupKind, BackupTarget, CreateOptions, RetentionPolicy, Sources};
use warren_store::DeltaStore;

use crate::error::Step;
use crate::tasks::{FirstRun, PeriodicTasks};
use crate::NodeError;

/// A record may be received this long before it is durable: a run's
/// archive covers what was received at least this long before it began.
const APPEND_SETTLE_MS: i64 = 1_000;

/// Schedules the log's archiving and the backups on the process that
/// ingests (which writes `table`): its log holds what ingest reads, while
/// another role's log (a query process's, say) holds none of it.
pub(crate) fn schedule_backups(
    tasks: &mut PeriodicTasks,
    config: &WarrenConfig,
    log: Arc<SegmentLog>,
    meta: Arc<dyn MetaStore>,
    table: Option<Arc<DeltaStore>>,
    jobs: &JobBoard,
) -> Result<(), NodeError> {
    let settings = &config.backup;
    let Some(url) = &settings.url else { return Ok(()) };
    let target = BackupTarget::open(url, &settings.storage_options).step(|| "opening [backup] url".into())?;
    let Some(table) = table else { return Ok(()) };
    if settings.archives_log() {
        let settle =
            i64::try_from(config.event_log.append_timeout_ms).unwrap_or(i64::MAX / 2) + APPEND_SETTLE_MS;
        let (target, log) = (target.clone(), log.clone());
        let every = Duration::from_secs(settings.archive_interval_secs);
        tasks.every("backup.archive", every, FirstRun::AtStart, move || {
            let (target, log) = (target.clone(), log.clone());
            async move {
                let run = backup::archive_log(&target, log.as_ref(), log.id(), settle)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "archived {} records in {} objects ({} bytes); every record received before {} is archived{}",
                    run.records,
                    run.objects,
                    run.bytes,
                    shown_time(run.covered_until_ms),
                    if run.skipped > 0 {
                        format!("; {} records were deleted before they were archived", run.skipped)
                    } else {
                        String::new()
                    }
                ))
            }
        });
    }
    if settings.interval_mins == 0 {
        return Ok(());
    }
    let every = Duration::from_secs(settings.interval_mins.saturating_mul(60));
    let full_every = i64::try_from(settings.full_interval_hours)
        .ok()
        .and_then(chrono::Duration::try_hours)
        .unwrap_or(chrono::Duration::MAX);
    let policy = RetentionPolicy {
        keep_all_hours: settings.keep_all_hours,
        keep_daily: settings.keep_daily,
        keep_weekly: settings.keep_weekly,
    };
    let redacted = config.redacted();
    let recordings = crate::adapters::open_recording_objects(config)?.store;
    let (partitions, log_id) = (log.partitions(), log.id().to_string());
    let drill_full = settings.drill_full_backups;
    let scratch = config.data_dir.join("drills");
    let jobs = jobs.clone();
    tasks.every("backup.create", every, FirstRun::AtStart, move || {
        let (target, meta, table, redacted) = (target.clone(), meta.clone(), table.clone(), redacted.clone());
        let (scratch, jobs, log_id, recordings) = (scratch.clone(), jobs.clone(), log_id.clone(), recordings.clone());
        async move {
            let listing = target.list().await.map_err(|e| e.to_string())?;
            let newest_full = listing.finished.iter().rev().find(|manifest| manifest.kind == BackupKind::Full);
            let full_due = newest_full.is_none_or(|full| {
                chrono::DateTime::parse_from_rfc3339(&full.created_at)
                    .map_or(true, |at| Utc::now().signed_duration_since(at) >= full_every)
            });
            let kind = if full_due { BackupKind::Full } else { BackupKind::Incremental };
            let sources = Sources {
                meta: meta.as_ref(),
                table: table.as_ref(),
                log_partitions: partitions,
                log_id: Some(log_id),
                config: redacted,
                recordings,
            };
            // Checks read the whole table: a full backup records them.
            let full = kind == BackupKind::Full;
            let options = CreateOptions { kind, record_checks: full, scheduled: true, max_bytes_per_sec: None };
            let manifest = backup::create(&target, sources, options, &|_| {}).await.map_err(|e| e.to_string())?;
            let kept = backup::apply_retention(&target, policy, Utc::now()).await.map_err(|e| e.to_string())?;
            if kind == BackupKind::Full && drill_full {
                drill(&target, &manifest.id, &scratch, &jobs).await;
            }
            Ok(format!(
                "backup {} ({:?}): {} events, {} bytes copied; retention kept {} backups, deleted {} and {} archived log objects",
                manifest.id,
                manifest.kind,
                manifest.events(),
                manifest.copied_bytes(),
                kept.kept,
                kept.deleted.len(),
                kept.archive_objects_deleted
            ))
        }
    });
    Ok(())
}

/// Drills backup `id` in a scratch directory under `scratch` (on the data
/// dir's disk, which has room for a copy more often than a small `/tmp`)
/// and puts the outcome on the job board as `backup.drill`.
async fn drill(target: &BackupTarget, id: &str, scratch: &std::path::Path, jobs: &JobBoard) {
    let started_ms = warren_core::unix_millis();
    let started = std::time::Instant::now();
    let drilled = async {
        std::fs::create_dir_all(scratch).map_err(|e| format!("creating {}: {e}", scratch.display()))?;
        let dir = tempfile::tempdir_in(scratch).map_err(|e| format!("a scratch directory: {e}"))?;
        backup::drill(target, id, dir.path(), &|_| {}).await.map_err(|e| e.to_string())
    }
    .await;
    let (outcome, detail) = match drilled {
        Ok(report) => (
            Outcome::Ok,
            format!(
                "backup {} restored: {} events on {} days match their checksums, {} insight answers match",
                report.backup, report.events, report.days, report.answers
            ),
        ),
        Err(error) => {
            tracing::error!(backup = id, %error, "the drill of a scheduled backup failed");
            (Outcome::Failed(format!("backup {id}: {error}")), String::new())
        }
    };
    jobs.record("backup.drill", started_ms, started.elapsed(), outcome, detail);
}

fn shown_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}
