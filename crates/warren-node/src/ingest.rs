//! The ingest role as a process runs it: the ingester over the event log,
//! the canonical table and the cluster beside it, and the periodic chores
//! of those stores (upkeep, the internal project's retention, session
//! recordings' retention).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};
use warren_core::config::WarrenConfig;
use warren_core::jobs::JobBoard;
use warren_core::ports::BlobStore;
use warren_log::SegmentLog;
use warren_meta::MetaStore;
use warren_store::EventStore;

use crate::tasks::{FirstRun, PeriodicTasks};

/// Where ingest writes: the canonical table, and the cluster beside it.
pub(crate) struct Stores {
    pub canonical: Arc<dyn EventStore>,
    pub replica: Option<Arc<dyn EventStore>>,
    /// Session recordings' blobs.
    pub blobs: Arc<dyn BlobStore>,
}

impl Stores {
    /// Canonical first, so a replica that fails never holds it up.
    fn all(&self) -> impl Iterator<Item = (&'static str, &Arc<dyn EventStore>)> {
        std::iter::once(("canonical", &self.canonical)).chain(self.replica.iter().map(|r| ("replica", r)))
    }
}

/// The running ingest role.
pub(crate) struct IngestRole {
    stop: watch::Sender<bool>,
    consumer: tokio::task::JoinHandle<()>,
}

impl IngestRole {
    /// Starts the ingester, and the stores' chores on `tasks`.
    pub fn start(
        config: &WarrenConfig,
        log: Arc<SegmentLog>,
        meta: Arc<dyn MetaStore>,
        stores: Stores,
        internal: Option<&warren_meta::Project>,
        jobs: &JobBoard,
        tasks: &mut PeriodicTasks,
    ) -> Self {
        let url = config.event_store.url.clone().unwrap_or_else(|| "events/ in the data dir".into());
        let (stop, stopped) = watch::channel(false);
        let mut ingester =
            warren_ingest::Ingester::new(log, meta.clone(), stores.canonical.clone(), config.ingest.clone())
                .with_jobs(jobs.clone())
                .with_recordings(stores.blobs.clone());
        if let Some(replica) = &stores.replica {
            ingester = ingester.with_replica(replica.clone());
        }
        let consumer = tokio::spawn(ingester.run(stopped));
        let days = config.recordings.retention_days;
        if days > 0 {
            let every = Duration::from_secs(config.recordings.retention_interval_secs.max(1));
            let blobs = stores.blobs.clone();
            tasks.every("recordings.retention", every, FirstRun::AtStart, move || {
                let (meta, blobs) = (meta.clone(), blobs.clone());
                async move {
                    let keep_ms = i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
                    let before = warren_core::unix_millis().saturating_sub(keep_ms);
                    let deleted =
                        warren_ingest::delete_expired_recordings(meta.as_ref(), blobs.as_ref(), before)
                            .await
                            .map_err(|e| e.to_string())?;
                    Ok(format!("{deleted} recording chunks older than {days} days deleted"))
                }
            });
        }
        let stores = Arc::new(stores);
        let every = Duration::from_secs(config.event_store.maintenance_interval_secs.max(1));
        let upkept = stores.clone();
        tasks.every("store.upkeep", every, FirstRun::AfterOneInterval, move || {
            let stores = upkept.clone();
            async move { upkeep(&stores).await }
        });
        let days = config.self_monitoring.retention_days;
        if let Some(project) = internal.filter(|_| days > 0) {
            let project = project.id;
            let done_until = Arc::new(Mutex::new(vec![i64::MIN; stores.all().count()]));
            let every = Duration::from_secs(3600);
            tasks.every("internal.retention", every, FirstRun::AtStart, move || {
                let (stores, done_until) = (stores.clone(), done_until.clone());
                async move { internal_retention(&stores, project, days, &done_until).await }
            });
        }
        tracing::info!(event_store = %url, clickhouse = config.clickhouse.url.is_some(), "ingest started");
        Self { stop, consumer }
    }

    /// Lets the batch in hand finish, then stops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.consumer.await {
            tracing::error!(%error, "the ingest task failed");
        }
        tracing::info!("ingest stopped");
    }
}

/// Upkeep of each store; one that fails does not stop the others.
async fn upkeep(stores: &Stores) -> Result<String, String> {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for (which, store) in stores.all() {
        match store.maintain().await {
            Ok(report) => done.push(format!(
                "{which}: {} files compacted into {}, {} vacuumed",
                report.files_compacted, report.files_written, report.files_vacuumed
            )),
            Err(error) => {
                metrics::counter!(warren_core::metrics::STORE_MAINTENANCE_ERRORS).increment(1);
                failed.push(format!("{which}: {error}"));
            }
        }
    }
    if failed.is_empty() {
        Ok(done.join("; "))
    } else {
        Err(failed.join("; "))
    }
}

/// Deletes Warren's own events past `self_monitoring.retention_days`, each
/// run only what aged out since the last, from the canonical table first;
/// a store that fails is tried again from where it stood at the next run.
async fn internal_retention(
    stores: &Stores,
    project: i64,
    days: u64,
    done_until: &Mutex<Vec<i64>>,
) -> Result<String, String> {
    let keep_us = i64::try_from(days.saturating_mul(86_400_000_000)).unwrap_or(i64::MAX);
    let before = chrono::Utc::now().timestamp_micros().saturating_sub(keep_us);
    let mut done_until = done_until.lock().await;
    let mut deleted = Vec::new();
    for ((which, store), done_until) in stores.all().zip(done_until.iter_mut()) {
        // Deletes reach the canonical table first: none goes further when
        // it fails.
        let count =
            store.delete_events(project, *done_until..before).await.map_err(|e| format!("{which}: {e}"))?;
        *done_until = before;
        deleted.push(format!("{which}: {count} events older than {days} days deleted"));
    }
    Ok(deleted.join("; "))
}
