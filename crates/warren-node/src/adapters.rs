//! Each port's adapter, opened from the configuration: the one place that
//! turns settings and URLs into stores.

use std::sync::Arc;
use std::time::Duration;

use warren_core::config::{QueryBackendKind, WarrenConfig};
use warren_core::jobs::JobBoard;
use warren_core::ports::BlobStore;
use warren_log::{SegmentLog, SegmentLogOptions};
use warren_meta::{MetaStore, SqlMeta};
use warren_query::{ClickHouseBackend, DataFusionBackend, QueryBackend, QueryEngine, QueryLimits};
use warren_store::{open_object_store, OpenedObjectStore};
use warren_store::{ClickHouseStoreOptions, DeltaStore, DeltaStoreOptions, LiveCluster, ObjectBlobStore};

use crate::error::Step;
use crate::NodeError;

/// The data dir's event log. Whatever the roles of this process, ingest
/// reads it: its records are kept for ingest from the first one on, for
/// the cluster's catching up when there is one, and until archived when
/// the log is archived to the backup target.
pub async fn open_log(config: &WarrenConfig, repair: bool) -> Result<SegmentLog, NodeError> {
    let options = SegmentLogOptions {
        repair,
        consumers: std::iter::once(warren_ingest::CONSUMER)
            .chain(config.clickhouse.url.as_ref().map(|_| warren_ingest::REPLICA_CONSUMER))
            .chain(
                (config.backup.archives_log() && config.role.ingests())
                    .then_some(warren_core::LOG_ARCHIVE_CONSUMER),
            )
            .map(str::to_string)
            .collect(),
        ..SegmentLogOptions::from_config(config.data_dir.join("log"), &config.event_log)
    };
    tokio::task::spawn_blocking(move || SegmentLog::open(options))
        .await
        .step(|| "opening the event log".into())?
        .step(|| "opening the event log".into())
}

/// The meta store, its schema brought up to date.
pub async fn open_meta(config: &WarrenConfig) -> Result<Arc<dyn MetaStore>, NodeError> {
    let meta = connect_meta(config).await?;
    meta.migrate().await.step(|| "migrating the meta store".into())?;
    Ok(meta)
}

/// The meta store as it is, its schema untouched.
pub async fn connect_meta(config: &WarrenConfig) -> Result<Arc<dyn MetaStore>, NodeError> {
    let url = config.meta_url();
    let meta = SqlMeta::connect(&url).await.step(|| format!("opening meta store {url}"))?;
    Ok(Arc::new(meta))
}

/// The canonical Delta table of `[event_store]`.
pub async fn open_event_store(config: &WarrenConfig, jobs: &JobBoard) -> Result<Arc<DeltaStore>, NodeError> {
    let options = DeltaStoreOptions {
        jobs: jobs.clone(),
        ..DeltaStoreOptions::from_config(&config.event_store, &config.data_dir)
            .step(|| "reading [event_store]".into())?
    };
    let url = options.url.clone();
    let store = DeltaStore::open(options).await.step(|| format!("opening the event store {url}"))?;
    Ok(Arc::new(store))
}

/// The blob store of session recordings, `[recordings] url`.
pub fn open_recording_blobs(config: &WarrenConfig) -> Result<Arc<dyn BlobStore>, NodeError> {
    let url = config.recordings.url_in(&config.data_dir);
    let blobs = ObjectBlobStore::open(&url, &config.recordings.storage_options)
        .step(|| format!("opening the recordings' blob store {url}"))?;
    Ok(Arc::new(blobs))
}

/// The same blob store as objects, for what copies it whole (backups).
pub fn open_recording_objects(config: &WarrenConfig) -> Result<OpenedObjectStore, NodeError> {
    let url = config.recordings.url_in(&config.data_dir);
    open_object_store(&url, &config.recordings.storage_options)
        .step(|| format!("opening the recordings' blob store {url}"))
}

/// The ClickHouse cluster of `[clickhouse] url` — or the layout a reshard
/// moved it to — its schema brought up to date, when it names one.
pub async fn open_clickhouse(
    config: &WarrenConfig,
    meta: Arc<dyn MetaStore>,
    jobs: &JobBoard,
) -> Result<Option<Arc<LiveCluster>>, NodeError> {
    let Some(options) =
        ClickHouseStoreOptions::from_config(&config.clickhouse).step(|| "reading [clickhouse]".into())?
    else {
        return Ok(None);
    };
    let options = ClickHouseStoreOptions { jobs: jobs.clone(), ..options };
    let cluster = format!("{} on {}", options.url.database, options.url.cluster);
    let store =
        LiveCluster::open(options, meta).await.step(|| format!("opening the ClickHouse store {cluster}"))?;
    Ok(Some(Arc::new(store)))
}

/// The query engine over the backend `[query] backend` names.
pub fn query_engine(
    config: &WarrenConfig,
    store: Arc<DeltaStore>,
    clickhouse: Option<Arc<LiveCluster>>,
    meta: Arc<dyn MetaStore>,
) -> Result<QueryEngine, NodeError> {
    let settings = &config.query;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let limits = QueryLimits {
        max_rows: settings.max_rows.max(1),
        memory_bytes: (settings.memory_limit_mb.max(64) as usize) << 20,
        target_partitions: if settings.target_partitions == 0 { cores } else { settings.target_partitions },
    };
    let timeout = Duration::from_secs(settings.timeout_secs.max(1));
    let backend: Arc<dyn QueryBackend> = match (settings.backend, clickhouse) {
        (QueryBackendKind::Delta, _) => Arc::new(
            DataFusionBackend::new(store, meta, limits).step(|| "setting up the query engine".into())?,
        ),
        (QueryBackendKind::ClickHouse, Some(cluster)) => {
            Arc::new(ClickHouseBackend::new(cluster, meta, limits).with_time_limit(timeout))
        }
        (QueryBackendKind::ClickHouse, None) => {
            return Err(NodeError::Config(
                "[query] backend = \"clickhouse\" needs a cluster: set [clickhouse] url".into(),
            ))
        }
    };
    tracing::info!(backend = ?settings.backend, "queries answered");
    QueryEngine::new(backend, settings.threads, timeout).step(|| "starting the query runtime".into())
}
