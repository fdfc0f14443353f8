//! The table's files as a backup copies them: which version pairs with a
//! meta store snapshot, and every file a reader of that version needs.
//!
//! Every file of a Delta table is written once and never changed (data
//! files carry a unique name; commits and checkpoints are numbered), so a
//! backup can copy them while ingest and upkeep go on, and an incremental
//! backup can tell the files it already holds by path and size.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Action;
use deltalake::logstore::get_actions;
use deltalake::{DeltaTable, DeltaTableBuilder, ObjectStore};
use futures_util::TryStreamExt;

use super::read::{day_summaries_in, rows_per_day_in, DaySummary};
use super::schema::PARTITION_COLUMN;
use super::DeltaStore;
use crate::StoreError;

/// One file of the table, by its path from the table's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFile {
    pub path: String,
    pub size: u64,
}

/// Every file a reader of `version` needs.
#[derive(Debug, Clone)]
pub struct TableFiles {
    pub version: u64,
    pub files: Vec<TableFile>,
    /// Rows per UTC day at `version`, oldest first: what a copy of that
    /// version is checked against.
    pub rows_per_day: Vec<(NaiveDate, u64)>,
}

impl DeltaStore {
    /// The table's files, read and written by their paths from its root.
    pub async fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.table.lock().await.object_store()
    }

    /// The newest version holding no more of `writer`'s log than
    /// `offsets` (partition → next offset): the version that pairs with a
    /// meta store whose ingest offsets are `offsets`. Ingest commits a
    /// batch's rows before its persons, so the table may be one batch
    /// ahead of a meta store snapshot; commits are walked back from the
    /// newest until one of `writer`'s is within `offsets` (every older one
    /// then is too: offsets only grow).
    pub async fn version_within(&self, writer: &str, offsets: &HashMap<u32, u64>) -> Result<u64, StoreError> {
        let (log_store, latest) = {
            let mut table = self.table.lock().await;
            if self.pinned.is_none() {
                table.update_state().await?;
            }
            (table.log_store(), table.version().unwrap_or(0))
        };
        // Transactions are named `writer:partition` (`super::app_id`).
        let prefix = format!("{writer}:");
        // The partition of one of `writer`'s transactions, and whether it
        // covers more of that partition than `offsets` does.
        let ahead = |app: &str, version: i64| {
            let partition = app.strip_prefix(&prefix)?.parse::<u32>().ok()?;
            Some(version > offsets.get(&partition).copied().unwrap_or(0) as i64)
        };
        let mut within = latest;
        let mut version = latest;
        loop {
            // Commits older than the log's retention are gone; the ones
            // kept are the newest, which are what this walk is about.
            let Some(bytes) = log_store.read_commit_entry(version).await? else { break };
            let (mut writes, mut passes) = (false, false);
            for action in get_actions(version, &bytes)? {
                if let Some(past) = match &action {
                    Action::Txn(txn) => ahead(&txn.app_id, txn.version),
                    _ => None,
                } {
                    writes = true;
                    passes |= past;
                }
            }
            if passes {
                within = version.checked_sub(1).ok_or_else(|| {
                    StoreError::Invalid("the table's first commit is ahead of the given offsets".into())
                })?;
            } else if writes {
                break;
            }
            match version.checked_sub(1) {
                Some(older) => version = older,
                None => break,
            }
        }
        Ok(within)
    }

    /// The table as it was at `version`.
    pub(super) async fn at(&self, version: u64) -> Result<DeltaTable, StoreError> {
        Ok(DeltaTableBuilder::from_url(self.options.url.clone())?
            .with_storage_options(self.options.storage_options.clone())
            .with_version(version)
            .load()
            .await?)
    }

    /// Rows and their checksum per UTC day in the table as it was at
    /// `version`.
    pub async fn day_summaries_at(&self, version: u64) -> Result<Vec<DaySummary>, StoreError> {
        let table = self.at(version).await?;
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state())?;
        ctx.register_table("events", table.table_provider().await?)?;
        day_summaries_in(&ctx).await
    }

    /// The files a reader of `version` needs: its commits and checkpoints
    /// (those still kept) and the data files live at that version.
    pub async fn files_at(&self, version: u64) -> Result<TableFiles, StoreError> {
        let table = self.at(version).await?;
        let mut files: Vec<TableFile> = table
            .snapshot()?
            .log_data()
            .into_iter()
            .map(|add| TableFile {
                path: add.object_store_path().to_string(),
                size: add.size().max(0) as u64,
            })
            .collect();
        let store = table.object_store();
        let listed: Vec<_> = store.list(Some(&"_delta_log".into())).try_collect().await?;
        for object in listed {
            let Some(name) = object.location.filename() else { continue };
            if log_file_version(name).is_some_and(|of| of <= version) {
                files.push(TableFile { path: object.location.to_string(), size: object.size });
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let rows_per_day = rows_per_day_of(&table).await?;
        Ok(TableFiles { version, files, rows_per_day })
    }
}

/// Rows per UTC day of `table`, oldest first. Each data file holds one
/// day (the partition) and its add action records its rows, so the log
/// answers without reading a data file; a table with a file whose
/// statistics are missing is counted by a scan instead.
pub(super) async fn rows_per_day_of(table: &DeltaTable) -> Result<Vec<(NaiveDate, u64)>, StoreError> {
    if let Some(days) = rows_per_day_listed(table)? {
        return Ok(days);
    }
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("events", table.table_provider().await?)?;
    rows_per_day_in(&ctx, "").await
}

/// Rows per day as the add actions record them; `None` when a file's
/// day or row count is missing, or rows of it are deleted by a vector.
fn rows_per_day_listed(table: &DeltaTable) -> Result<Option<Vec<(NaiveDate, u64)>>, StoreError> {
    let mut days = std::collections::BTreeMap::<NaiveDate, u64>::new();
    for file in table.snapshot()?.log_data() {
        let day = file.partition_values_map().remove(PARTITION_COLUMN).flatten();
        let day = day.and_then(|day| NaiveDate::parse_from_str(&day, "%Y-%m-%d").ok());
        // A deletion vector hides rows the recorded count still includes.
        let rows = file.num_records().filter(|_| file.deletion_vector_descriptor().is_none());
        let (Some(day), Some(rows)) = (day, rows) else { return Ok(None) };
        *days.entry(day).or_default() += rows as u64;
    }
    // A day whose rows were all deleted keeps no file, as a scan sees it.
    Ok(Some(days.into_iter().filter(|(_, rows)| *rows > 0).collect()))
}

/// The version a `_delta_log` file belongs to, for commits
/// (`00000000000000000012.json`) and checkpoints (`….checkpoint.parquet`,
/// multi-part ones included); `None` for anything else (`_last_checkpoint`,
/// which a reader does without, and unfinished temporary files).
fn log_file_version(name: &str) -> Option<u64> {
    let (number, rest) = name.split_at_checked(20)?;
    let is_log = rest == ".json" || (rest.starts_with(".checkpoint") && rest.ends_with(".parquet"));
    is_log.then(|| number.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::log_file_version;

    #[test]
    fn commits_and_checkpoints_are_told_from_other_log_files() {
        assert_eq!(log_file_version("00000000000000000012.json"), Some(12));
        assert_eq!(log_file_version("00000000000000000010.checkpoint.parquet"), Some(10));
        assert_eq!(
            log_file_version("00000000000000000010.checkpoint.0000000001.0000000002.parquet"),
            Some(10)
        );
        assert_eq!(log_file_version("_last_checkpoint"), None);
        assert_eq!(log_file_version("_commit_2b1c.json.tmp"), None);
        assert_eq!(log_file_version("00000000000000000012.crc"), None);
    }
}
