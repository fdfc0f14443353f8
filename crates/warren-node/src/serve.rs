//! [`serve`]: a process from its configuration to its clean stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use warren_core::config::WarrenConfig;
use warren_core::jobs::JobBoard;
use warren_core::{ADMIN_LISTENING_LINE, LISTENING_LINE};
use warren_log::{EventLog, RetentionPolicy, SegmentLog};
use warren_meta::{AuditLog, MetaStore};
use warren_server::{AppState, InstanceInfo, Monitor};
use warren_store::EventStore;

use crate::adapters::{
    open_clickhouse, open_event_store, open_log, open_meta, open_recording_blobs, query_engine,
};
use crate::backups::schedule_backups;
use crate::bootstrap::{bootstrap, INTERNAL_PROJECT_NAME};
use crate::error::Step;
use crate::ingest::{IngestRole, Stores};
use crate::process::publish_process_facts;
use crate::tasks::{FirstRun, PeriodicTasks};
use crate::NodeError;

/// Opens the stores, bootstraps a fresh deployment, runs the roles of
/// `config` until `shutdown` resolves, then drains requests (within
/// `[http] shutdown_timeout_secs`), stops self-monitoring, lets ingest
/// finish its batch and closes the event log. `repair` opens a damaged
/// event log by keeping every intact record. Prints the listening lines
/// scripts wait for ([`LISTENING_LINE`]) once it accepts connections.
///
/// `shutdown` is watched from the first step: resolved while the stores
/// are still opening (a cluster migration can take long), it abandons the
/// start where it stands — nothing has been acknowledged yet, and every
/// step is safe to run again — and returns.
pub async fn serve(
    config: WarrenConfig,
    repair: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let (stopping, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    let node = tokio::select! {
        node = start(&config, repair) => node?,
        () = signalled(stopped.clone()) => {
            tracing::info!("shutdown asked for while starting: stopped before serving");
            return Ok(());
        }
    };
    node.run(&config, stopped).await
}

/// Resolves once the shutdown signal has come.
async fn signalled(mut stopped: watch::Receiver<bool>) {
    // An error means the sender is gone, and with it any signal to wait for.
    if stopped.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A process whose stores are open and whose roles run, about to serve.
struct Node {
    log: Arc<SegmentLog>,
    ingest: Option<IngestRole>,
    tasks: PeriodicTasks,
    listener: tokio::net::TcpListener,
    admin: Option<tokio::net::TcpListener>,
    state: AppState,
    monitor: Monitor,
    internal: Option<warren_meta::Project>,
}

/// Opens the stores and starts every role but the listeners.
async fn start(config: &WarrenConfig, repair: bool) -> Result<Node, NodeError> {
    std::fs::create_dir_all(&config.data_dir)
        .step(|| format!("creating data dir {}", config.data_dir.display()))?;
    if config.data_dir.join(warren_core::RESTORING_MARKER).exists() {
        // Its stores are partial, and a log made here would number records
        // from 0 while the restored stores expect their offsets.
        return Err(NodeError::Config(format!(
            "{} holds a restore that did not finish; run `warren restore` again",
            config.data_dir.display()
        )));
    }
    let metrics = warren_server::metrics::install_recorder()
        .map_err(|error| NodeError::Config(format!("installing the metrics recorder: {error}")))?;
    publish_process_facts(config);

    // The log first: its lock keeps a second process off this data dir
    // before anything is changed.
    let log = Arc::new(open_log(config, repair).await?);
    let meta = open_meta(config).await?;
    bootstrap(meta.as_ref(), config).await?;
    let jobs = JobBoard::default();
    let internal = if config.self_monitoring.enabled {
        Some(
            meta.ensure_internal_project(INTERNAL_PROJECT_NAME)
                .await
                .step(|| "the internal project".into())?,
        )
    } else {
        None
    };
    let mut tasks = PeriodicTasks::new(jobs.clone());
    schedule_retention(&mut tasks, config, log.clone(), meta.clone());
    let store = if config.role.ingests() || config.role.queries() {
        Some(open_event_store(config, &jobs).await?)
    } else {
        None
    };
    let clickhouse = match &store {
        Some(_) => open_clickhouse(config, meta.clone(), &jobs).await?,
        None => None,
    };
    let backed_up = store.clone().filter(|_| config.role.ingests());
    schedule_backups(&mut tasks, config, log.clone(), meta.clone(), backed_up, &jobs)?;
    let blobs = match &store {
        Some(_) => Some(open_recording_blobs(config)?),
        None => None,
    };
    let ingest = match (&store, &blobs) {
        (Some(store), Some(blobs)) if config.role.ingests() => {
            // The cluster is a replica of the canonical table.
            let replica = clickhouse.clone().map(|cluster| cluster as Arc<dyn EventStore>);
            let stores = Stores { canonical: store.clone(), replica, blobs: blobs.clone() };
            Some(IngestRole::start(
                config,
                log.clone(),
                meta.clone(),
                stores,
                internal.as_ref(),
                &jobs,
                &mut tasks,
            ))
        }
        _ => None,
    };

    let listener =
        tokio::net::TcpListener::bind(&config.listen).await.step(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr().step(|| "reading the listener's address".into())?;
    let admin = match &config.http.admin_listen {
        Some(admin) => Some(
            tokio::net::TcpListener::bind(admin)
                .await
                .step(|| format!("binding the admin listener {admin}"))?,
        ),
        None => None,
    };
    let role = format!("{:?}", config.role).to_lowercase();
    let monitor = Monitor::new(config.self_monitoring.clone(), jobs, format!("warren-{role}@{address}"));
    let shown = config.redacted();
    let instance = InstanceInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        role,
        started_at_ms: warren_core::unix_millis(),
        event_store_url: shown["event_store"]["url"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("file://{}", config.data_dir.join("events").display())),
        config: shown,
        data_dir: std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone()),
        internal_project: internal.as_ref().map(|project| project.id),
    };
    let mut state = AppState::new(log.clone(), meta.clone(), config.capture.clone(), metrics)
        .with_auth(config.auth.clone())
        .with_instance(instance, monitor.clone());
    if let (Some(store), true) = (&store, config.role.queries()) {
        let engine = query_engine(config, store.clone(), clickhouse.clone(), meta)?;
        state = state.with_query_engine(Arc::new(engine));
    }
    if let (Some(blobs), true) = (blobs, config.role.queries()) {
        state = state.with_recordings(blobs);
    }
    if let Some(clickhouse) = clickhouse {
        state = state.with_clickhouse(clickhouse);
    }
    Ok(Node { log, ingest, tasks, listener, admin, state, monitor, internal })
}

impl Node {
    /// Serves until `stopped`, then stops every role in order.
    async fn run(self, config: &WarrenConfig, stopped: watch::Receiver<bool>) -> Result<(), NodeError> {
        let Node { log, ingest, tasks, listener, admin, state, monitor, internal } = self;
        let (stop_monitor, monitor_stopped) = watch::channel(false);
        let monitoring = tokio::spawn(monitor.run(state.clone(), internal, monitor_stopped));
        let app = warren_server::router(state.clone(), config.role.captures(), admin.is_none());
        // Scripts and tests read these lines to find the ports.
        let address = listener.local_addr().step(|| "reading the listener's address".into())?;
        if let Some(admin) = &admin {
            let address = admin.local_addr().step(|| "reading the admin listener's address".into())?;
            println!("{ADMIN_LISTENING_LINE}http://{address}");
            tracing::info!(%address, "serving /metrics on the admin listener");
        }
        println!("{LISTENING_LINE}http://{address}");
        tracing::info!(%address, role = ?config.role, data_dir = %config.data_dir.display(), "serving");

        // One signal stops both listeners.
        let public = warren_server::serve(listener, app, &config.http, signalled(stopped.clone()));
        let admin = async {
            if let Some(admin) = admin {
                let router = warren_server::admin_router(state);
                warren_server::serve(admin, router, &config.http, signalled(stopped)).await;
            }
        };
        tokio::join!(public, admin);

        tracing::info!("requests drained");
        let _ = stop_monitor.send(true);
        let _ = monitoring.await;
        if let Some(ingest) = ingest {
            ingest.stop().await;
        }
        tasks.stop();
        tracing::info!("closing the event log");
        log.close().await.step(|| "closing the event log".into())?;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

/// The event log's and the audit log's retention, whatever the roles.
fn schedule_retention(
    tasks: &mut PeriodicTasks,
    config: &WarrenConfig,
    log: Arc<SegmentLog>,
    meta: Arc<dyn MetaStore>,
) {
    let settings = &config.event_log;
    let policy = RetentionPolicy {
        max_bytes: (settings.retention_bytes > 0).then_some(settings.retention_bytes),
        max_age: (settings.retention_age_secs > 0).then(|| Duration::from_secs(settings.retention_age_secs)),
        ignore_consumers: settings.retention_ignores_consumers,
    };
    let every = Duration::from_secs(settings.retention_interval_secs.max(1));
    tasks.every("log.retention", every, FirstRun::AtStart, move || {
        let (log, policy) = (log.clone(), policy.clone());
        async move { log_retention(log, policy).await }
    });
    let days = config.auth.audit_retention_days;
    tasks.every("audit.retention", Duration::from_secs(3600), FirstRun::AtStart, move || {
        let meta = meta.clone();
        async move { audit_retention(meta.as_ref(), days).await }
    });
}

async fn log_retention(log: Arc<SegmentLog>, policy: RetentionPolicy) -> Result<String, String> {
    let now = warren_core::unix_millis();
    let report = tokio::task::spawn_blocking(move || log.apply_retention(&policy, now))
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| error.to_string())?;
    if report.segments_deleted > 0 || report.segments_held > 0 {
        tracing::info!(?report, "event log retention ran");
    }
    let mut detail = format!(
        "deleted {} segments, kept {} a consumer still needs",
        report.segments_deleted, report.segments_held
    );
    if report.records_unconsumed > 0 {
        detail.push_str(&format!(
            "; deleted {} records ingest had not stored (retention_ignores_consumers)",
            report.records_unconsumed
        ));
    }
    Ok(detail)
}

/// Deletes audit log entries older than `days`.
async fn audit_retention(meta: &dyn AuditLog, days: u64) -> Result<String, String> {
    let keep_us = i64::try_from(days.saturating_mul(86_400_000_000)).unwrap_or(i64::MAX);
    let before = chrono::Utc::now().timestamp_micros().saturating_sub(keep_us);
    let deleted = meta.prune_audit_log(before).await.map_err(|error| error.to_string())?;
    if deleted > 0 {
        tracing::info!(deleted, days, "audit log retention ran");
    }
    Ok(format!("deleted {deleted} entries older than {days} days"))
}
