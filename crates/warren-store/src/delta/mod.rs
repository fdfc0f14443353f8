//! [`DeltaStore`]: the events table as a Delta Lake table.

mod files;
mod maintenance;
mod read;
mod schema;

pub use files::{TableFile, TableFiles};
pub use read::DaySummary;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::Transaction;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder, TableProperty};
use tokio::sync::Mutex;
use url::Url;
use warren_core::config::EventStoreConfig;
use warren_core::jobs::{JobBoard, Outcome};
use warren_core::metrics as names;
use warren_core::person::{PersonChanges, PersonsSnapshot};

use crate::upkeep::MaintenanceReport;
use crate::{EventKey, EventRow, EventStore, StoreError};

/// Where the table lives and how it is kept.
#[derive(Debug, Clone)]
pub struct DeltaStoreOptions {
    pub url: Url,
    pub storage_options: HashMap<String, String>,
    pub target_file_bytes: u64,
    pub compaction_min_files: usize,
    pub checkpoint_interval: u64,
    pub vacuum_retention: Duration,
    pub vacuum_every: Duration,
    /// Where compaction, vacuum, checkpoints and deletes report their runs.
    pub jobs: JobBoard,
}

impl DeltaStoreOptions {
    /// Options from configuration; the table defaults to `events/` in
    /// `data_dir`.
    pub fn from_config(config: &EventStoreConfig, data_dir: &Path) -> Result<Self, StoreError> {
        let url = match &config.url {
            Some(url) => parse_url(url)?,
            None => {
                let dir = data_dir.join("events");
                std::fs::create_dir_all(&dir).map_err(|e| StoreError::UnsupportedUrl {
                    url: dir.display().to_string(),
                    reason: format!("cannot create the directory: {e}"),
                })?;
                let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
                Url::from_directory_path(&dir).map_err(|()| StoreError::UnsupportedUrl {
                    url: dir.display().to_string(),
                    reason: "not an absolute path".into(),
                })?
            }
        };
        if config.vacuum_retention_hours == 0 {
            return Err(StoreError::Invalid(
                "event_store.vacuum_retention_hours must be at least 1: readers of recent versions need those files"
                    .into(),
            ));
        }
        Ok(Self {
            url,
            storage_options: config.storage_options.clone().into_iter().collect(),
            target_file_bytes: config.target_file_bytes.max(1024 * 1024),
            compaction_min_files: config.compaction_min_files.max(2),
            checkpoint_interval: config.checkpoint_interval.max(1),
            vacuum_retention: Duration::from_secs(config.vacuum_retention_hours * 3600),
            vacuum_every: Duration::from_secs(3600),
            jobs: JobBoard::default(),
        })
    }
}

fn parse_url(raw: &str) -> Result<Url, StoreError> {
    let unsupported = |reason: String| StoreError::UnsupportedUrl { url: raw.to_string(), reason };
    let url = Url::parse(raw).map_err(|e| unsupported(e.to_string()))?;
    match url.scheme() {
        "file" => {
            let path = url.to_file_path().map_err(|()| unsupported("not a local path".into()))?;
            std::fs::create_dir_all(&path)
                .map_err(|e| unsupported(format!("cannot create the directory: {e}")))?;
            Ok(url)
        }
        "s3" | "s3a" => Ok(url),
        other => Err(unsupported(format!("scheme {other}:// is not supported; use file:// or s3://"))),
    }
}

/// The events table. One process writes it: appends and upkeep take turns
/// on one table handle, so commits never race even on object stores
/// without conditional writes. Any number of readers may open it.
pub struct DeltaStore {
    table: Mutex<DeltaTable>,
    options: DeltaStoreOptions,
    last_vacuum: Mutex<Instant>,
    /// The version a read-only view ([`DeltaStore::view_at`]) stays at.
    pub(super) pinned: Option<u64>,
}

impl std::fmt::Debug for DeltaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaStore").field("url", &self.options.url.as_str()).finish_non_exhaustive()
    }
}

impl DeltaStore {
    /// Opens the table, creating it with Warren's schema if it is missing.
    pub async fn open(options: DeltaStoreOptions) -> Result<Self, StoreError> {
        let mut table = DeltaTableBuilder::from_url(options.url.clone())?
            .with_storage_options(options.storage_options.clone())
            .build()?;
        // Asked first, so a new deployment does not log the reader's error
        // about a missing table.
        if table.log_store().is_delta_table_location().await? {
            table.load().await?;
            schema::check(&table)?;
        } else {
            table = table
                .create()
                .with_table_name("events")
                .with_comment("Warren events, persons on events")
                .with_columns(schema::delta_columns())
                .with_partition_columns([schema::PARTITION_COLUMN])
                .with_configuration_property(
                    TableProperty::CheckpointInterval,
                    Some(options.checkpoint_interval.to_string()),
                )
                .await?;
            tracing::info!(url = %options.url, "created the events table");
        }
        report_table_gauges(&table);
        // A fresh process vacuums within its first upkeep round.
        let never = Instant::now().checked_sub(options.vacuum_every).unwrap_or_else(Instant::now);
        Ok(Self { table: Mutex::new(table), options, last_vacuum: Mutex::new(never), pinned: None })
    }

    /// A read-only view of the table as it was at `version`: queries on
    /// it see that version whatever is committed since; writes are refused.
    pub async fn view_at(&self, version: u64) -> Result<Self, StoreError> {
        let table = self.at(version).await?;
        let never = Instant::now();
        Ok(Self {
            table: Mutex::new(table),
            options: self.options.clone(),
            last_vacuum: Mutex::new(never),
            pinned: Some(version),
        })
    }

    fn writable(&self) -> Result<(), StoreError> {
        match self.pinned {
            Some(version) => {
                Err(StoreError::Invalid(format!("a view of the table at version {version} is read-only")))
            }
            None => Ok(()),
        }
    }

    /// A DataFusion provider for the table as it is now, commits by other
    /// processes included.
    pub async fn table_provider(&self) -> Result<Arc<dyn TableProvider>, StoreError> {
        let table = {
            let mut table = self.table.lock().await;
            if self.pinned.is_none() {
                table.update_state().await?;
            }
            table.clone()
        };
        Ok(table.table_provider().await?)
    }

    /// Registers the table as `name` in a DataFusion session.
    pub async fn register(&self, ctx: &SessionContext, name: &str) -> Result<(), StoreError> {
        let provider = self.table_provider().await?;
        self.table.lock().await.update_datafusion_session(&ctx.state())?;
        ctx.register_table(name, provider)?;
        Ok(())
    }
}

fn report_table_gauges(table: &DeltaTable) {
    if let (Some(version), Ok(snapshot)) = (table.version(), table.snapshot()) {
        let bytes: i64 = snapshot.log_data().iter().map(|file| file.size()).sum();
        metrics::gauge!(names::STORE_TABLE_VERSION).set(version as f64);
        metrics::gauge!(names::STORE_FILES).set(snapshot.log_data().num_files() as f64);
        metrics::gauge!(names::STORE_BYTES).set(bytes as f64);
    }
}

fn app_id(writer: &str, partition: u32) -> String {
    format!("{writer}:{partition}")
}

#[async_trait]
impl EventStore for DeltaStore {
    async fn append(
        &self,
        writer: &str,
        rows: Vec<EventRow>,
        offsets: &[(u32, u64)],
    ) -> Result<(), StoreError> {
        self.writable()?;
        let started = Instant::now();
        let row_count = rows.len();
        let transactions = offsets
            .iter()
            .map(|&(partition, next)| {
                let version = i64::try_from(next)
                    .map_err(|_| StoreError::Invalid(format!("offset {next} exceeds i64")))?;
                Ok(Transaction::new(app_id(writer, partition), version))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let batch =
            (row_count > 0).then(|| schema::to_batch(rows, warren_core::unix_millis() * 1000)).transpose()?;
        let mut table = self.table.lock().await;
        let properties = CommitProperties::default().with_application_transactions(transactions);
        let mut writer = RecordBatchWriter::for_table(&table)?
            .with_commit_properties(properties)
            .with_writer_properties(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
        if let Some(batch) = batch {
            writer.write(batch).await?;
        }
        let version = writer.flush_and_commit(&mut table).await?;
        metrics::counter!(names::STORE_COMMITS, "kind" => "append").increment(1);
        metrics::counter!(names::STORE_ROWS_WRITTEN).increment(row_count as u64);
        metrics::histogram!(names::STORE_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        if version > 0 && version.is_multiple_of(self.options.checkpoint_interval) {
            // The commit wrote a checkpoint at this interval.
            metrics::counter!(names::STORE_CHECKPOINTS).increment(1);
            self.options.jobs.record(
                "store.checkpoint",
                warren_core::unix_millis() - started.elapsed().as_millis() as i64,
                started.elapsed(),
                Outcome::Ok,
                format!("checkpoint at version {version}"),
            );
        }
        report_table_gauges(&table);
        Ok(())
    }

    /// Queries on the Delta table read persons from the meta store itself
    /// (see [`crate::register_person_tables`]): nothing to keep here.
    async fn write_persons(&self, _changes: &PersonChanges<'_>) -> Result<(), StoreError> {
        Ok(())
    }

    async fn offsets(&self, writer: &str, partitions: u32) -> Result<HashMap<u32, u64>, StoreError> {
        let mut table = self.table.lock().await;
        if self.pinned.is_none() {
            table.update_state().await?;
        }
        let log_store = table.log_store();
        let snapshot = table.snapshot()?;
        let mut offsets = HashMap::new();
        for partition in 0..partitions {
            if let Some(version) =
                snapshot.transaction_version(log_store.as_ref(), app_id(writer, partition)).await?
            {
                let next = u64::try_from(version)
                    .map_err(|_| StoreError::Invalid(format!("negative transaction version {version}")))?;
                offsets.insert(partition, next);
            }
        }
        Ok(offsets)
    }

    async fn delete_events(&self, team_id: i64, range: std::ops::Range<i64>) -> Result<u64, StoreError> {
        use deltalake::datafusion::prelude::{col, lit, Expr};
        use deltalake::datafusion::scalar::ScalarValue;
        self.writable()?;
        // The predicate is written out as SQL text, whose times have four-
        // digit years: a bound beyond them (`i64::MIN`, `i64::MAX` for "all
        // time") bounds nothing, or everything.
        let writable = |us: i64| {
            chrono::DateTime::from_timestamp_micros(us)
                .is_some_and(|at| (0..=9999).contains(&chrono::Datelike::year(&at)))
        };
        let nothing_between = range.start >= range.end
            || (!writable(range.end) && range.end < 0)
            || (!writable(range.start) && range.start > 0);
        if nothing_between {
            return Ok(0);
        }
        let day = |us: i64| i32::try_from(us.div_euclid(86_400_000_000)).ok();
        let at = |us: i64| lit(ScalarValue::TimestampMicrosecond(Some(us), Some("UTC".into())));
        let date = |day: i32| lit(ScalarValue::Date32(Some(day)));
        // The partition column bounds the days read, so upkeep that runs
        // often touches only the days it is about.
        let mut predicate: Expr = col("team_id").eq(lit(team_id));
        if writable(range.end) {
            predicate = predicate.and(col("timestamp").lt(at(range.end)));
            if let Some(last) = day(range.end) {
                predicate = predicate.and(col(schema::PARTITION_COLUMN).lt_eq(date(last)));
            }
        }
        if writable(range.start) {
            predicate = predicate.and(col("timestamp").gt_eq(at(range.start)));
            if let Some(first) = day(range.start) {
                predicate = predicate.and(col(schema::PARTITION_COLUMN).gt_eq(date(first)));
            }
        }
        let mut table = self.table.lock().await;
        table.update_state().await?;
        let job = crate::upkeep::Job::start(&self.options.jobs, "store.delete");
        let deleted = table.clone().delete().with_predicate(predicate).await;
        let (deleted, metrics) = job.finish(deleted, |(_, metrics)| {
            format!(
                "deleted {} rows of project {team_id}, rewrote {} files",
                metrics.num_deleted_rows.unwrap_or(0),
                metrics.num_removed_files
            )
        })?;
        *table = deleted;
        report_table_gauges(&table);
        Ok(metrics.num_deleted_rows.unwrap_or(0) as u64)
    }

    async fn maintain(&self) -> Result<MaintenanceReport, StoreError> {
        self.writable()?;
        let mut table = self.table.lock().await;
        let mut last_vacuum = self.last_vacuum.lock().await;
        let report = maintenance::run(&mut table, &self.options, &mut last_vacuum).await;
        report_table_gauges(&table);
        report
    }

    async fn read_events(&self, keys: &[EventKey]) -> Result<Vec<EventRow>, StoreError> {
        self.read_keys(keys).await
    }

    /// Queries on the Delta table read persons from the meta store itself.
    async fn refresh_persons(&self, _snapshot: &PersonsSnapshot) -> Result<(), StoreError> {
        Ok(())
    }
}
