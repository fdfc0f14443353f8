//! `warren serve`: open the stores, bootstrap a fresh deployment, run the
//! roles asked for (capture's HTTP API, ingest), and shut down cleanly on
//! SIGTERM or SIGINT.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use warren_core::config::{LogFormat, QueryBackendKind, Role, WarrenConfig, DEFAULT_LOG_LEVEL};
use warren_core::jobs::{JobBoard, Outcome};
use warren_core::{ADMIN_LISTENING_LINE, FIRST_START_CREDENTIALS, LISTENING_LINE};
use warren_log::{EventLog, RetentionPolicy, SegmentLog, SegmentLogOptions};
use warren_meta::accounts::{NewUser, Role as MemberRole};
use warren_meta::audit::AuditEntry;
use warren_meta::{BootstrapRequest, MetaStore, SqlMeta};
use warren_query::{ClickHouseBackend, DataFusionBackend, QueryBackend, QueryEngine, QueryLimits};
use warren_server::{AppState, InstanceInfo, Monitor};
use warren_store::{ClickHouseStore, ClickHouseStoreOptions, DeltaStore, DeltaStoreOptions, EventStore};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// What to run: all (capture, ingest and queries), capture, ingest or query.
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    /// Where embedded storage lives.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on, `host:port`; port 0 picks a free one.
    #[arg(long)]
    listen: Option<String>,
    /// Project token to create on first start instead of a random one.
    #[arg(long)]
    bootstrap_project_token: Option<String>,
    /// Personal API key to create on first start instead of a random one.
    #[arg(long)]
    bootstrap_api_key: Option<String>,
    /// Open a damaged event log by keeping every intact record.
    #[arg(long)]
    repair: bool,
}

pub async fn serve(config_file: Option<PathBuf>, args: ServeArgs) -> anyhow::Result<()> {
    let mut config = crate::config::load(config_file.as_deref())?;
    apply_flags(&mut config, &args);
    init_tracing(config.log_format, &config.log_level);

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let metrics = warren_server::metrics::install_recorder()
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;

    // The log first: its lock keeps a second process off this data dir
    // before anything is changed.
    let log = Arc::new(open_log(&config, args.repair).await?);
    let meta = open_meta(&config).await?;
    bootstrap(meta.as_ref(), &config).await?;
    let jobs = JobBoard::default();
    let internal = if config.self_monitoring.enabled {
        let project =
            meta.ensure_internal_project(INTERNAL_PROJECT_NAME).await.context("the internal project")?;
        Some(project)
    } else {
        None
    };
    let retention = tokio::spawn(run_retention(log.clone(), config.clone(), jobs.clone()));
    let audit_retention =
        tokio::spawn(run_audit_retention(meta.clone(), config.auth.audit_retention_days, jobs.clone()));
    let store = if config.role.ingests() || config.role.queries() {
        Some(open_store(&config, &jobs).await?)
    } else {
        None
    };
    let clickhouse = match &store {
        Some(_) => open_clickhouse(&config, meta.clone(), &jobs).await?,
        None => None,
    };
    let ingest = match &store {
        Some(store) if config.role.ingests() => {
            // The cluster is a replica of the canonical table.
            let replica = clickhouse.clone().map(|cluster| cluster as Arc<dyn EventStore>);
            let stores = Stores { canonical: store.clone(), replica };
            Some(start_ingest(&config, log.clone(), meta.clone(), stores, internal.as_ref(), &jobs))
        }
        _ => None,
    };

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    let admin = match &config.http.admin_listen {
        Some(admin) => Some(
            tokio::net::TcpListener::bind(admin)
                .await
                .with_context(|| format!("binding the admin listener {admin}"))?,
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
        let engine = query_engine(&config, store.clone(), clickhouse.clone(), meta)?;
        state = state.with_query_engine(Arc::new(engine));
    }
    if let Some(clickhouse) = clickhouse {
        state = state.with_clickhouse(clickhouse);
    }
    let (stop_monitor, monitor_stopped) = watch::channel(false);
    let monitoring = tokio::spawn(monitor.run(state.clone(), internal, monitor_stopped));
    let app = warren_server::router(state.clone(), config.role.captures(), admin.is_none());
    let shutdown = shutdown_signal()?;
    // Scripts and tests read these lines to find the ports.
    if let Some(admin) = &admin {
        let address = admin.local_addr()?;
        println!("{ADMIN_LISTENING_LINE}http://{address}");
        tracing::info!(%address, "serving /metrics on the admin listener");
    }
    println!("{LISTENING_LINE}http://{address}");
    tracing::info!(%address, role = ?config.role, data_dir = %config.data_dir.display(), "serving");

    // One signal stops both listeners.
    let (stopping, stopped) = watch::channel(false);
    let public = warren_server::serve(listener, app, &config.http, async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    let admin = async {
        if let Some(admin) = admin {
            let mut stopped = stopped;
            let signal = async move {
                let _ = stopped.wait_for(|stopped| *stopped).await;
            };
            warren_server::serve(admin, warren_server::admin_router(state), &config.http, signal).await;
        }
    };
    tokio::join!(public, admin);

    tracing::info!("requests drained");
    let _ = stop_monitor.send(true);
    let _ = monitoring.await;
    if let Some(ingest) = ingest {
        ingest.stop().await;
    }
    tracing::info!("closing the event log");
    retention.abort();
    audit_retention.abort();
    log.close().await.context("closing the event log")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    All,
    Capture,
    Ingest,
    Query,
}

fn apply_flags(config: &mut WarrenConfig, args: &ServeArgs) {
    if let Some(role) = args.role {
        config.role = match role {
            RoleArg::All => Role::All,
            RoleArg::Capture => Role::Capture,
            RoleArg::Ingest => Role::Ingest,
            RoleArg::Query => Role::Query,
        };
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(listen) = &args.listen {
        config.listen = listen.clone();
    }
    if let Some(token) = &args.bootstrap_project_token {
        config.bootstrap.project_token = Some(token.clone());
    }
    if let Some(key) = &args.bootstrap_api_key {
        config.bootstrap.api_key = Some(key.clone());
    }
}

/// Logs to stderr, filtered by `RUST_LOG` when it is set (the usual way
/// to look closer for one run), else by the configured `log_level`.
fn init_tracing(format: LogFormat, level: &str) {
    let level =
        std::env::var("RUST_LOG").ok().filter(|l| !l.trim().is_empty()).unwrap_or_else(|| level.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&level).unwrap_or_else(|error| {
        eprintln!("invalid log filter {level:?} ({error}); using {DEFAULT_LOG_LEVEL}");
        tracing_subscriber::EnvFilter::new(DEFAULT_LOG_LEVEL)
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The meta store, its schema brought up to date.
pub(crate) async fn open_meta(config: &WarrenConfig) -> anyhow::Result<Arc<dyn MetaStore>> {
    let meta = connect_meta(config).await?;
    meta.migrate().await?;
    Ok(meta)
}

/// The meta store as it is, its schema untouched.
pub(crate) async fn connect_meta(config: &WarrenConfig) -> anyhow::Result<Arc<dyn MetaStore>> {
    let url = config
        .meta_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", config.data_dir.join("meta.db").display()));
    let meta = SqlMeta::connect(&url).await.with_context(|| format!("opening meta store {url}"))?;
    Ok(Arc::new(meta))
}

pub(crate) async fn bootstrap(meta: &dyn MetaStore, config: &WarrenConfig) -> anyhow::Result<()> {
    let request = BootstrapRequest {
        project_token: config.bootstrap.project_token.clone(),
        api_key: config.bootstrap.api_key.clone(),
        timezone: config.bootstrap.timezone.clone(),
    };
    if let Some(made) = meta.bootstrap(request).await.context("bootstrapping the deployment")? {
        let mut secrets = vec![
            ("project_token", made.project.api_token.clone()),
            ("personal_api_key", made.api_key.clone()),
        ];
        if config.bootstrap.admin_email.is_none() {
            let password = first_admin(meta, made.project.organization_id).await?;
            secrets.push(("dashboard_email", FIRST_ADMIN_EMAIL.to_string()));
            secrets.push(("dashboard_password", password));
        }
        // Secrets go to a file only its owner reads, never to stdout or the
        // log, where terminals, journals and log shippers would keep them.
        let path = config.data_dir.join(FIRST_START_CREDENTIALS);
        write_credentials(&path, &secrets).with_context(|| {
            format!(
                "writing the first-start credentials to {}; they are not stored anywhere else: set \
                 [bootstrap] admin_email and admin_password to get a sign-in, then make new keys",
                path.display()
            )
        })?;
        println!("Warren created a new deployment. Its project token, personal API key and dashboard");
        println!("sign-in are in {} (readable by this user only);", path.display());
        println!("keep them somewhere safe and delete the file.");
        tracing::info!(
            project_id = made.project.id,
            credentials = %path.display(),
            "bootstrapped a new deployment"
        );
    }
    bootstrap_admin(meta, config).await.context("creating the bootstrap admin user")
}

/// Writes `secrets` as `name = "value"` lines (TOML) to a new file at
/// `path`, mode 0600 from its creation, replacing one a wiped deployment
/// left there.
fn write_credentials(path: &std::path::Path, secrets: &[(&str, String)]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().context("the credentials file has no directory")?;
    let mut text = String::from(
        "# Warren's first-start credentials, written once when this deployment was created.\n\
         # Warren never reads this file: keep the values somewhere safe, then delete it.\n",
    );
    for (name, value) in secrets {
        text.push_str(&format!("{name} = {}\n", serde_json::Value::from(value.as_str())));
    }
    // A temporary file is created 0600; renamed into place once durable.
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Who signs into a new deployment's dashboard when no
/// `bootstrap.admin_email` was configured.
const FIRST_ADMIN_EMAIL: &str = "admin@warren.local";

/// Makes [`FIRST_ADMIN_EMAIL`] the owner of the new deployment's
/// organization with a random password, and returns the password.
async fn first_admin(meta: &dyn MetaStore, organization_id: i64) -> anyhow::Result<String> {
    use rand::distr::{Alphanumeric, SampleString};
    let password = Alphanumeric.sample_string(&mut rand::rng(), 20);
    make_owner(meta, organization_id, FIRST_ADMIN_EMAIL, &password, "bootstrap (first start)").await?;
    Ok(password)
}

/// Makes `bootstrap.admin_email` an owner of the default project's
/// organization, once: an existing account is left as it is.
async fn bootstrap_admin(meta: &dyn MetaStore, config: &WarrenConfig) -> anyhow::Result<()> {
    let (Some(email), Some(password)) = (&config.bootstrap.admin_email, &config.bootstrap.admin_password)
    else {
        if config.bootstrap.admin_email.is_some() {
            anyhow::bail!("bootstrap.admin_email needs bootstrap.admin_password");
        }
        return Ok(());
    };
    if meta.user_by_email(email).await?.is_some() {
        return Ok(());
    }
    let Some(project) = meta.project(1).await? else { return Ok(()) };
    make_owner(meta, project.organization_id, email, password, "bootstrap.admin_email").await
}

/// Creates an account owning `organization_id`, and says so in the audit
/// log; `route` names what asked for it.
async fn make_owner(
    meta: &dyn MetaStore,
    organization_id: i64,
    email: &str,
    password: &str,
    route: &str,
) -> anyhow::Result<()> {
    let name = email.split('@').next().unwrap_or(email).to_string();
    let user =
        meta.create_user(NewUser { email: email.to_string(), name, password: password.to_string() }).await?;
    meta.set_role(organization_id, user.id, Some(MemberRole::Owner)).await?;
    meta.record_audit(&AuditEntry {
        id: 0,
        at_us: chrono::Utc::now().timestamp_micros(),
        organization_id: Some(organization_id),
        project_id: None,
        user_id: Some(user.id),
        api_key_id: None,
        actor: "warren serve".into(),
        credential: "configuration".into(),
        action: "member.bootstrap".into(),
        method: "-".into(),
        route: route.into(),
        resource: Some(user.id.to_string()),
        source: "local".into(),
        status: 201,
        outcome: "ok".into(),
    })
    .await?;
    tracing::info!(user = user.email, "created an owner of the deployment's organization");
    Ok(())
}

/// The name Warren's own project is created with.
const INTERNAL_PROJECT_NAME: &str = "Warren (internal)";

/// The running ingest role.
struct IngestRole {
    stop: watch::Sender<bool>,
    consumer: tokio::task::JoinHandle<()>,
    upkeep: tokio::task::JoinHandle<()>,
    internal_retention: Option<tokio::task::JoinHandle<()>>,
}

impl IngestRole {
    /// Lets the batch in hand finish, then stops.
    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.consumer.await {
            tracing::error!(%error, "the ingest task failed");
        }
        self.upkeep.abort();
        if let Some(task) = self.internal_retention {
            task.abort();
        }
        tracing::info!("ingest stopped");
    }
}

pub(crate) async fn open_store(config: &WarrenConfig, jobs: &JobBoard) -> anyhow::Result<Arc<DeltaStore>> {
    let options = DeltaStoreOptions {
        jobs: jobs.clone(),
        ..DeltaStoreOptions::from_config(&config.event_store, &config.data_dir)?
    };
    let url = options.url.clone();
    let store = DeltaStore::open(options).await.with_context(|| format!("opening the event store {url}"))?;
    Ok(Arc::new(store))
}

/// The ClickHouse cluster of `[clickhouse] url`, when it names one.
async fn open_clickhouse(
    config: &WarrenConfig,
    meta: Arc<dyn MetaStore>,
    jobs: &JobBoard,
) -> anyhow::Result<Option<Arc<ClickHouseStore>>> {
    let Some(options) = ClickHouseStoreOptions::from_config(&config.clickhouse)? else {
        return Ok(None);
    };
    let options = ClickHouseStoreOptions { jobs: jobs.clone(), ..options };
    let cluster = format!("{} on {}", options.url.database, options.url.cluster);
    let store = ClickHouseStore::open(options, meta)
        .await
        .with_context(|| format!("opening the ClickHouse store {cluster}"))?;
    Ok(Some(Arc::new(store)))
}

fn query_engine(
    config: &WarrenConfig,
    store: Arc<DeltaStore>,
    clickhouse: Option<Arc<ClickHouseStore>>,
    meta: Arc<dyn MetaStore>,
) -> anyhow::Result<QueryEngine> {
    let settings = &config.query;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let limits = QueryLimits {
        max_rows: settings.max_rows.max(1),
        memory_bytes: (settings.memory_limit_mb.max(64) as usize) << 20,
        target_partitions: if settings.target_partitions == 0 { cores } else { settings.target_partitions },
    };
    let timeout = Duration::from_secs(settings.timeout_secs.max(1));
    let backend: Arc<dyn QueryBackend> = match (settings.backend, clickhouse) {
        (QueryBackendKind::Delta, _) => {
            Arc::new(DataFusionBackend::new(store, meta, limits).context("setting up the query engine")?)
        }
        (QueryBackendKind::ClickHouse, Some(cluster)) => {
            Arc::new(ClickHouseBackend::new(cluster, meta, limits).with_time_limit(timeout))
        }
        (QueryBackendKind::ClickHouse, None) => {
            anyhow::bail!("[query] backend = \"clickhouse\" needs a cluster: set [clickhouse] url")
        }
    };
    tracing::info!(backend = ?settings.backend, "queries answered");
    QueryEngine::new(backend, settings.threads, timeout).context("starting the query runtime")
}

/// Where ingest writes: the canonical table, and the cluster beside it.
struct Stores {
    canonical: Arc<dyn EventStore>,
    replica: Option<Arc<dyn EventStore>>,
}

impl Stores {
    /// Canonical first, so a replica that fails never holds it up.
    fn all(&self) -> impl Iterator<Item = (&'static str, &Arc<dyn EventStore>)> {
        std::iter::once(("canonical", &self.canonical)).chain(self.replica.iter().map(|r| ("replica", r)))
    }
}

fn start_ingest(
    config: &WarrenConfig,
    log: Arc<SegmentLog>,
    meta: Arc<dyn MetaStore>,
    stores: Stores,
    internal: Option<&warren_meta::Project>,
    jobs: &JobBoard,
) -> IngestRole {
    let url = config.event_store.url.clone().unwrap_or_else(|| "events/ in the data dir".into());
    let (stop, stopped) = watch::channel(false);
    let mut ingester =
        warren_ingest::Ingester::new(log, meta, stores.canonical.clone(), config.ingest.clone())
            .with_jobs(jobs.clone());
    if let Some(replica) = &stores.replica {
        ingester = ingester.with_replica(replica.clone());
    }
    let consumer = tokio::spawn(ingester.run(stopped));
    let stores = Arc::new(stores);
    let every = Duration::from_secs(config.event_store.maintenance_interval_secs.max(1));
    let upkeep = tokio::spawn(run_store_upkeep(stores.clone(), every));
    let days = config.self_monitoring.retention_days;
    let internal_retention = internal
        .filter(|_| days > 0)
        .map(|project| tokio::spawn(run_internal_retention(stores, project.id, days)));
    tracing::info!(event_store = %url, clickhouse = config.clickhouse.url.is_some(), "ingest started");
    IngestRole { stop, consumer, upkeep, internal_retention }
}

/// Deletes Warren's own events past `self_monitoring.retention_days`,
/// hourly, each run only what aged out since the last, from the canonical
/// table first; a store that fails is tried again from where it stood at
/// the next run. The stores report each run to the job board.
async fn run_internal_retention(stores: Arc<Stores>, project: i64, days: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    let keep_us = i64::try_from(days.saturating_mul(86_400_000_000)).unwrap_or(i64::MAX);
    let mut done_until = vec![i64::MIN; stores.all().count()];
    loop {
        tick.tick().await;
        let before = chrono::Utc::now().timestamp_micros().saturating_sub(keep_us);
        for ((which, store), done_until) in stores.all().zip(done_until.iter_mut()) {
            match store.delete_events(project, *done_until..before).await {
                Ok(deleted) => {
                    *done_until = before;
                    if deleted > 0 {
                        tracing::info!(store = which, deleted, days, "internal events retention ran");
                    }
                }
                Err(error) => {
                    tracing::error!(store = which, %error, "internal events retention failed");
                    // Deletes reach the canonical table first: none goes further.
                    break;
                }
            }
        }
    }
}

async fn run_store_upkeep(stores: Arc<Stores>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        for (which, store) in stores.all() {
            if let Err(error) = store.maintain().await {
                metrics::counter!(warren_core::metrics::STORE_MAINTENANCE_ERRORS).increment(1);
                tracing::error!(store = which, %error, "event store upkeep failed");
            }
        }
    }
}

async fn open_log(config: &WarrenConfig, repair: bool) -> anyhow::Result<SegmentLog> {
    let options = SegmentLogOptions {
        repair,
        // Whatever the roles of this process, ingest reads this log: its
        // records are kept for it from the first one on, and for the
        // cluster's catching up when there is one.
        consumers: std::iter::once(warren_ingest::CONSUMER)
            .chain(config.clickhouse.url.as_ref().map(|_| warren_ingest::REPLICA_CONSUMER))
            .map(str::to_string)
            .collect(),
        ..SegmentLogOptions::from_config(config.data_dir.join("log"), &config.event_log)
    };
    tokio::task::spawn_blocking(move || SegmentLog::open(options)).await?.context("opening the event log")
}

async fn run_retention(log: Arc<SegmentLog>, config: WarrenConfig, jobs: JobBoard) {
    let settings = config.event_log;
    let policy = RetentionPolicy {
        max_bytes: (settings.retention_bytes > 0).then_some(settings.retention_bytes),
        max_age: (settings.retention_age_secs > 0).then(|| Duration::from_secs(settings.retention_age_secs)),
        ignore_consumers: settings.retention_ignores_consumers,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(settings.retention_interval_secs.max(1)));
    loop {
        tick.tick().await;
        let log = log.clone();
        let policy = policy.clone();
        let now = warren_core::unix_millis();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || log.apply_retention(&policy, now)).await;
        let (outcome, detail) = match result {
            Ok(Ok(report)) => {
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
                (Outcome::Ok, detail)
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "event log retention failed");
                (Outcome::Failed(error.to_string()), String::new())
            }
            Err(error) => {
                tracing::error!(%error, "event log retention task failed");
                (Outcome::Failed(error.to_string()), String::new())
            }
        };
        jobs.record("log.retention", now, started.elapsed(), outcome, detail);
    }
}

/// Deletes audit log entries past their retention, hourly.
async fn run_audit_retention(meta: Arc<dyn MetaStore>, days: u64, jobs: JobBoard) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    let keep_us = i64::try_from(days.saturating_mul(86_400_000_000)).unwrap_or(i64::MAX);
    loop {
        tick.tick().await;
        let started_ms = warren_core::unix_millis();
        let started = Instant::now();
        let before = chrono::Utc::now().timestamp_micros().saturating_sub(keep_us);
        let (outcome, detail) = match meta.prune_audit_log(before).await {
            Ok(deleted) => {
                if deleted > 0 {
                    tracing::info!(deleted, days, "audit log retention ran");
                }
                (Outcome::Ok, format!("deleted {deleted} entries older than {days} days"))
            }
            Err(error) => {
                tracing::error!(%error, "audit log retention failed");
                (Outcome::Failed(error.to_string()), String::new())
            }
        };
        jobs.record("audit.retention", started_ms, started.elapsed(), outcome, detail);
    }
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed
/// here, before the caller announces it is listening, so a signal sent right
/// after that line is never lost to the default action.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}
