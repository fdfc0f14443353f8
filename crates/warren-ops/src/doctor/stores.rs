//! The stores: each reachable and at the schema this build expects, and
//! backups recent. Nothing is created or migrated: a store that is not
//! there yet is reported, not made.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use warren_core::config::WarrenConfig;
use warren_core::ports::OperationState;
use warren_log::SegmentLog;
use warren_meta::{MetaSchema, MetaStore, MigrationState, SqlMeta};
use warren_store::migrations::OperationStatus;
use warren_store::{open_object_store, ClickHouseStore, ClickHouseStoreOptions};

use super::{Finding, Severity};
use crate::backup::BackupTarget;

pub(super) async fn check(config: &WarrenConfig, timeout: Duration) -> Vec<Finding> {
    let (reachable, meta) = connect_meta(config, timeout).await;
    let mut findings = vec![reachable, event_log(config), event_store(config, timeout).await];
    if let Some(meta) = &meta {
        findings.push(match meta.migration_status().await {
            Ok(migrations) => meta_schema(&migrations),
            Err(error) => Finding::new(
                "meta.schema",
                Severity::Critical,
                format!("cannot read the migrations: {error}"),
            ),
        });
        findings.extend(clickhouse(config, meta.clone(), timeout).await);
    }
    findings.push(backups(config, timeout, scheduled_backup_age(config)).await);
    if let Some(meta) = meta {
        meta.close().await;
    }
    findings
}

/// The meta store's `meta.reachable` finding, and the store when it
/// answers. A SQLite file that does not exist yet is not created; close
/// the store when done, which folds SQLite's write-ahead log back into the
/// file rather than leave it owned by whoever ran the check.
pub(crate) async fn connect_meta(
    config: &WarrenConfig,
    timeout: Duration,
) -> (Finding, Option<Arc<SqlMeta>>) {
    const REACHABLE: &str = "meta.reachable";
    let url = config.meta_url();
    let shown = warren_core::config::redact_url(&url);
    if config.meta_url.is_none() && !config.data_dir.join(warren_core::config::META_DB_FILE).exists() {
        let summary = format!("no meta store yet at {shown}: `warren serve` creates it on its first start");
        return (Finding::new(REACHABLE, Severity::Info, summary), None);
    }
    let connected = tokio::time::timeout(timeout, async {
        let meta = Arc::new(SqlMeta::connect(&url).await?);
        meta.ping().await?;
        Ok::<_, warren_meta::MetaError>(meta)
    })
    .await;
    match connected {
        Ok(Ok(meta)) => (Finding::ok(REACHABLE, format!("{shown} answers")), Some(meta)),
        Ok(Err(error)) => (
            Finding::new(REACHABLE, Severity::Critical, format!("{shown} does not answer: {error}"))
                .fix("start the database or correct `meta_url`; every role needs it"),
            None,
        ),
        Err(_) => (
            Finding::new(REACHABLE, Severity::Critical, format!("{shown} did not answer in {timeout:?}"))
                .fix("check the database's host, port and load"),
            None,
        ),
    }
}

/// The meta store's migrations in `state`, as `version description`.
pub(crate) fn migrations_in(
    migrations: &[warren_meta::MigrationStatus],
    state: MigrationState,
) -> Vec<String> {
    migrations
        .iter()
        .filter(|m| m.state == state)
        .map(|m| format!("{} {}", m.version, m.description))
        .collect()
}

/// Where the meta store's schema stands against this build's migrations.
fn meta_schema(migrations: &[warren_meta::MigrationStatus]) -> Finding {
    const CHECK: &str = "meta.schema";
    let with = |state| migrations_in(migrations, state);
    let (unknown, failed, pending) =
        (with(MigrationState::Unknown), with(MigrationState::Failed), with(MigrationState::Pending));
    if !unknown.is_empty() {
        Finding::new(
            CHECK,
            Severity::Critical,
            format!(
                "applied by a newer Warren, unknown to {}: {}",
                env!("CARGO_PKG_VERSION"),
                unknown.join(", ")
            ),
        )
        .fix("run the newer Warren that applied them; going back needs a restore from a backup taken before")
    } else if !failed.is_empty() {
        Finding::new(CHECK, Severity::Critical, format!("failed migrations: {}", failed.join(", ")))
            .fix("see the error in `warren migrate status`, fix its cause, then `warren migrate up`")
    } else if !pending.is_empty() {
        Finding::new(CHECK, Severity::Warning, format!("pending migrations: {}", pending.join(", ")))
            .fix("`warren migrate up` (or the next `warren serve` start) applies them; `warren upgrade check` says what they do")
    } else {
        let latest = migrations.iter().map(|m| m.version).max().unwrap_or_default();
        Finding::ok(CHECK, format!("at version {latest}, as this build expects"))
    }
}

/// The embedded log's own description, read without opening the log
/// (a running process holds it).
fn event_log(config: &WarrenConfig) -> Finding {
    const CHECK: &str = "event_log.meta";
    let dir = config.data_dir.join("log");
    match SegmentLog::info_in(&dir) {
        Ok(None) => Finding::new(CHECK, Severity::Info, format!("no event log at {} yet", dir.display())),
        Ok(Some(info)) if info.partitions != config.event_log.partitions => Finding::new(
            CHECK,
            Severity::Warning,
            format!(
                "the log has {} partitions; `[event_log] partitions = {}` is ignored",
                info.partitions, config.event_log.partitions
            ),
        )
        .fix("set `[event_log] partitions` to the log's count: it is fixed once the log exists"),
        Ok(Some(info)) => Finding::ok(CHECK, format!("{} partitions at {}", info.partitions, dir.display())),
        Err(error @ warren_log::LogError::Config(_)) => Finding::new(CHECK, Severity::Critical, error.to_string())
            .fix("the log's `log.json` is damaged: restore the data dir from a backup (docs/runbooks/backup-restore.md)"),
        Err(error) => Finding::new(CHECK, Severity::Critical, error.to_string())
            .fix("run the doctor as the user Warren runs as, who can read the data dir"),
    }
}

async fn event_store(config: &WarrenConfig, timeout: Duration) -> Finding {
    const CHECK: &str = "event_store.reachable";
    let url = config
        .event_store
        .url
        .clone()
        .unwrap_or_else(|| config.data_dir.join("events").display().to_string());
    let shown = warren_core::config::redact_url(&url);
    if !url.starts_with("s3://") && !url.starts_with("s3a://") {
        let dir = std::path::PathBuf::from(url.strip_prefix("file://").unwrap_or(&url));
        return if dir.join("_delta_log").is_dir() {
            Finding::ok(CHECK, format!("the Delta table at {shown} is there"))
        } else {
            Finding::new(CHECK, Severity::Info, format!("no Delta table at {shown} yet: ingest creates it"))
        };
    }
    let listed = async {
        let opened =
            open_object_store(&url, &config.event_store.storage_options).map_err(|e| e.to_string())?;
        let prefix = object_store::path::Path::from("_delta_log");
        let mut entries = opened.store.list(Some(&prefix));
        match entries.next().await {
            Some(Err(error)) => Err(error.to_string()),
            found => Ok(found.is_some()),
        }
    };
    match tokio::time::timeout(timeout, listed).await {
        Ok(Ok(true)) => Finding::ok(CHECK, format!("the Delta table at {shown} answers")),
        Ok(Ok(false)) => {
            Finding::new(CHECK, Severity::Info, format!("no Delta table at {shown} yet: ingest creates it"))
        }
        Ok(Err(error)) => {
            Finding::new(CHECK, Severity::Critical, format!("{shown} does not answer: {error}"))
                .fix("check `[event_store] url` and its storage_options (endpoint, region, credentials)")
        }
        Err(_) => Finding::new(CHECK, Severity::Critical, format!("{shown} did not answer in {timeout:?}")),
    }
}

/// The cluster's migration operations as this build knows them; `None`
/// without a cluster, the `clickhouse.schema` finding when it cannot tell.
pub(crate) async fn clickhouse_operations(
    config: &WarrenConfig,
    meta: Arc<dyn MetaStore>,
    timeout: Duration,
) -> Option<Result<Vec<OperationStatus>, Finding>> {
    const CHECK: &str = "clickhouse.schema";
    let options = match ClickHouseStoreOptions::from_config(&config.clickhouse) {
        Ok(Some(options)) => options,
        Ok(None) => return None,
        Err(error) => {
            return Some(Err(Finding::new(CHECK, Severity::Critical, format!("[clickhouse] url: {error}"))))
        }
    };
    let status = async {
        // After a reshard, the layout in use.
        let options = options.in_use(meta.as_ref()).await.map_err(|e| e.to_string())?;
        let store = ClickHouseStore::connect(options, meta).map_err(|e| e.to_string())?;
        store.migrator().status().await.map_err(|e| e.to_string())
    };
    Some(match tokio::time::timeout(timeout, status).await {
        Ok(Ok(operations)) => Ok(operations),
        Ok(Err(error)) => {
            Err(Finding::new(CHECK, Severity::Critical, format!("the cluster does not answer: {error}"))
                .fix("check `[clickhouse] url` and that every shard's server is up"))
        }
        Err(_) => {
            Err(Finding::new(CHECK, Severity::Critical, format!("the cluster did not answer in {timeout:?}")))
        }
    })
}

async fn clickhouse(config: &WarrenConfig, meta: Arc<dyn MetaStore>, timeout: Duration) -> Option<Finding> {
    const CHECK: &str = "clickhouse.schema";
    Some(match clickhouse_operations(config, meta, timeout).await? {
        Ok(operations) => {
            let pending: Vec<String> = operations
                .iter()
                .filter(|op| op.state != OperationState::Completed)
                .map(|op| {
                    format!("{} {} #{} ({})", op.version, op.migration, op.operation, op.state.as_str())
                })
                .collect();
            if pending.is_empty() {
                Finding::ok(CHECK, format!("the cluster answers; {} operations applied", operations.len()))
            } else {
                Finding::new(CHECK, Severity::Warning, format!("not applied on the cluster: {}", pending.join(", ")))
                    .fix("`warren migrate up` applies them, resumably (`warren upgrade check` says which run long)")
            }
        }
        Err(finding) => finding,
    })
}

/// How old the newest backup may be: three missed runs of the schedule,
/// or two days without one.
fn scheduled_backup_age(config: &WarrenConfig) -> chrono::Duration {
    match config.backup.interval_mins {
        0 => chrono::Duration::hours(48),
        every => chrono::Duration::minutes(3 * every as i64),
    }
}

/// The newest finished backup, at most `allowed` old.
pub(crate) async fn backups(config: &WarrenConfig, timeout: Duration, allowed: chrono::Duration) -> Finding {
    const CHECK: &str = "backup.fresh";
    let Some(url) = &config.backup.url else {
        return Finding::new(CHECK, Severity::Warning, "no backup target: `[backup] url` is unset")
            .fix("set `[backup] url` to a directory or s3:// URL on other storage (docs/runbooks/backup-restore.md)");
    };
    let local = url.strip_prefix("file://").or((!url.contains("://")).then_some(url.as_str()));
    if let Some(dir) = local.filter(|dir| !std::path::Path::new(dir).is_dir()) {
        // Opening it would create it, on whatever disk is mounted there now.
        return Finding::new(CHECK, Severity::Warning, format!("the backup directory {dir} does not exist"))
            .fix("mount the backup volume, or take a first backup with `warren backup create`");
    }
    let listing = async {
        let target = BackupTarget::open(url, &config.backup.storage_options)?;
        target.list().await
    };
    let listing = match tokio::time::timeout(timeout, listing).await {
        Ok(Ok(listing)) => listing,
        Ok(Err(error)) => {
            return Finding::new(
                CHECK,
                Severity::Critical,
                format!("the backup target does not answer: {error}"),
            )
        }
        Err(_) => {
            return Finding::new(
                CHECK,
                Severity::Critical,
                format!("the backup target did not answer in {timeout:?}"),
            )
        }
    };
    let newest = listing
        .finished
        .iter()
        .filter_map(|m| chrono::DateTime::parse_from_rfc3339(&m.created_at).ok())
        .max();
    let Some(newest) = newest else {
        return Finding::new(CHECK, Severity::Warning, "no finished backup on the target")
            .fix("`warren backup create`, and set `[backup] interval_mins` so `warren serve` takes them");
    };
    let age = chrono::Utc::now().signed_duration_since(newest);
    let hours = age.num_minutes() as f64 / 60.0;
    let summary = format!("newest backup taken {hours:.1} h ago ({} finished)", listing.finished.len());
    if age > allowed {
        Finding::new(CHECK, Severity::Warning, summary)
            .fix("see the `backup` job on the System page for why the schedule stopped, or take one by hand")
    } else {
        Finding::ok(CHECK, summary)
    }
}
