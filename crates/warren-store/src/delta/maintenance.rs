//! Upkeep of the events table: small-file compaction and vacuum.
//! Checkpoints need no job of their own: commits write one every
//! `checkpoint_interval` versions (the table's `delta.checkpointInterval`).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::time::Instant;

use deltalake::DeltaTable;
use warren_core::metrics as names;

use super::DeltaStoreOptions;
use crate::upkeep::{Job, MaintenanceReport};
use crate::StoreError;

/// Small files in the fullest date partition.
fn most_small_files(table: &DeltaTable, target: u64) -> Result<usize, StoreError> {
    let mut per_partition: HashMap<Vec<(String, Option<String>)>, usize> = HashMap::new();
    for file in table.snapshot()?.log_data().iter() {
        if (file.size() as u64) < target {
            let mut key: Vec<_> = file.partition_values_map().into_iter().collect();
            key.sort();
            *per_partition.entry(key).or_default() += 1;
        }
    }
    Ok(per_partition.into_values().max().unwrap_or(0))
}

pub(super) async fn run(
    table: &mut DeltaTable,
    options: &DeltaStoreOptions,
    last_vacuum: &mut Instant,
) -> Result<MaintenanceReport, StoreError> {
    let mut report = MaintenanceReport::default();
    table.update_state().await?;
    let target = options.target_file_bytes;
    if most_small_files(table, target)? >= options.compaction_min_files {
        let job = Job::start(&options.jobs, "store.compaction");
        let compacted = table
            .clone()
            .optimize()
            .with_target_size(NonZeroU64::new(target).unwrap_or(NonZeroU64::MIN))
            .await;
        let (compacted, metrics) = job.finish(compacted, |(_, metrics)| {
            format!("rewrote {} small files into {}", metrics.num_files_removed, metrics.num_files_added)
        })?;
        *table = compacted;
        report.files_compacted = metrics.num_files_removed;
        report.files_written = metrics.num_files_added;
        metrics::counter!(names::STORE_COMMITS, "kind" => "compaction").increment(1);
        metrics::counter!(names::STORE_COMPACTED_FILES).increment(metrics.num_files_removed);
        tracing::info!(
            removed = metrics.num_files_removed,
            added = metrics.num_files_added,
            "compacted the events table"
        );
    }
    if last_vacuum.elapsed() >= options.vacuum_every {
        let retention = chrono::Duration::from_std(options.vacuum_retention)
            .map_err(|e| StoreError::Invalid(format!("vacuum retention: {e}")))?;
        let job = Job::start(&options.jobs, "store.vacuum");
        let vacuumed = table
            .clone()
            .vacuum()
            .with_retention_period(retention)
            // The retention is checked by the config; the table's own
            // minimum (a week) would forbid shorter settings.
            .with_enforce_retention_duration(false)
            .await;
        let (vacuumed, metrics) = job.finish(vacuumed, |(_, metrics)| {
            format!("deleted {} unreferenced files", metrics.files_deleted.len())
        })?;
        *table = vacuumed;
        *last_vacuum = Instant::now();
        report.files_vacuumed = metrics.files_deleted.len() as u64;
        metrics::counter!(names::STORE_VACUUMED_FILES).increment(report.files_vacuumed);
        if report.files_vacuumed > 0 {
            tracing::info!(deleted = report.files_vacuumed, "vacuumed the events table");
        }
    }
    Ok(report)
}
