//! Warren's HTTP surface.
//!
//! The PostHog-compatible capture API (`capture/`), the REST API under
//! `/api/` and the SDKs' feature-flag endpoints (`api/`: accounts,
//! projects, keys, the audit log, product entities, queries, persons,
//! flags, Warren's own health and the OpenAPI document, all from one
//! route table), feature-flag evaluation (`flags/`), the web dashboard
//! (`ui/`: pages and their embedded assets), self-monitoring (`monitor/`),
//! liveness and readiness, and
//! `/metrics` (on the main listener, or alone on an admin listener:
//! [`admin_router`]), served by [`serve`] with bounded connections. Capture only ever appends to the event log; it never reads
//! the event store. [`ApiError`] is the one error type of
//! this crate and the one place errors become HTTP answers.

mod admission;
mod api;
mod capture;
mod error;
mod flags;
mod listener;
pub mod metrics;
pub mod monitor;
mod tokens;
mod ui;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use warren_core::config::{AuthConfig, CaptureConfig};
use warren_log::EventLog;
use warren_meta::MetaStore;
use warren_query::QueryEngine;

use admission::Admission;
pub use error::ApiError;
pub use listener::serve;
pub use monitor::Monitor;
use tokens::TokenCache;

/// What the System page tells about this process.
#[derive(Debug, Clone, Default)]
pub struct InstanceInfo {
    pub version: String,
    /// The roles this process runs, as configured (`all`, `capture`, …).
    pub role: String,
    pub started_at_ms: i64,
    /// The configuration with secrets redacted.
    pub config: serde_json::Value,
    pub data_dir: PathBuf,
    /// Where the events table lives.
    pub event_store_url: String,
    /// Warren's own project, when self-monitoring writes into one.
    pub internal_project: Option<i64>,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    log: Arc<dyn EventLog>,
    meta: Arc<dyn MetaStore>,
    tokens: TokenCache,
    capture: Arc<CaptureConfig>,
    admission: Admission,
    metrics: PrometheusHandle,
    /// Present when this process answers queries.
    query: Option<Arc<QueryEngine>>,
    auth: Arc<AuthConfig>,
    login_limiter: api::LoginLimiter,
    instance: Arc<InstanceInfo>,
    monitor: Monitor,
    /// The ClickHouse cluster ingest writes, for the System page.
    clickhouse: Option<Arc<dyn warren_core::ports::SystemStatus>>,
    /// Session recordings' blobs, when this process answers queries.
    recordings: Option<Arc<dyn warren_core::ports::BlobStore>>,
}

impl AppState {
    pub fn new(
        log: Arc<dyn EventLog>,
        meta: Arc<dyn MetaStore>,
        capture: CaptureConfig,
        metrics: PrometheusHandle,
    ) -> Self {
        let admission = Admission::new(capture.max_concurrent_requests, capture.max_inflight_bytes);
        let tokens = TokenCache::new(meta.clone());
        let auth = AuthConfig::default();
        let login_limiter = api::LoginLimiter::new(auth.login_attempts_per_minute);
        Self {
            log,
            meta,
            tokens,
            capture: Arc::new(capture),
            admission,
            metrics,
            query: None,
            auth: Arc::new(auth),
            login_limiter,
            instance: Arc::new(InstanceInfo::default()),
            monitor: Monitor::new(Default::default(), Default::default(), "warren".into()),
            clickhouse: None,
            recordings: None,
        }
    }

    /// Serves session recordings from `blobs`.
    pub fn with_recordings(mut self, blobs: Arc<dyn warren_core::ports::BlobStore>) -> Self {
        self.recordings = Some(blobs);
        self
    }

    /// Describes this process to the System page, and shares the monitor
    /// whose history the overview shows.
    pub fn with_instance(mut self, instance: InstanceInfo, monitor: Monitor) -> Self {
        self.instance = Arc::new(instance);
        self.monitor = monitor;
        self
    }

    /// Shows `cluster`'s health on the System page.
    pub fn with_clickhouse(mut self, cluster: Arc<dyn warren_core::ports::SystemStatus>) -> Self {
        self.clickhouse = Some(cluster);
        self
    }

    /// Signs users in with `auth`'s settings.
    pub fn with_auth(mut self, auth: AuthConfig) -> Self {
        self.login_limiter = api::LoginLimiter::new(auth.login_attempts_per_minute);
        self.auth = Arc::new(auth);
        self
    }

    /// Serves the query API with `engine`.
    pub fn with_query_engine(mut self, engine: Arc<QueryEngine>) -> Self {
        self.query = Some(engine);
        self
    }
}

/// The HTTP API: capture when `with_capture`, the REST API (whose query
/// routes answer when the state has a query engine), health, and
/// `/metrics` when `with_metrics` (else [`admin_router`] serves it).
pub fn router(state: AppState, with_capture: bool, with_metrics: bool) -> Router {
    let mut routes = Router::new();
    if with_capture {
        routes = routes.merge(capture::routes().layer(sdk_cors()));
    }
    if with_metrics {
        routes = routes.route("/metrics", get(metrics::render));
    }
    routes
        .merge(api::routes(&state))
        .merge(ui::routes())
        .route("/_liveness", get(|| async { "ok" }))
        .route("/_readiness", get(readiness))
        // An SDK asking for something Warren does not serve (a recording
        // endpoint, a lazily loaded script) gets an answer its page may
        // read, rather than a CORS failure that hides the 404.
        .fallback_service(any(|| async { ApiError::NotFound }).layer(sdk_cors()))
        .layer(axum::middleware::from_fn(metrics::track))
        // A bug must cost one request a 500, not its connection.
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("the request hit a bug".into()).into_response()
        }))
        .with_state(state)
}

/// `/metrics` and the probes, for the admin listener of `[http]
/// admin_listen`, so scrapes stay off the public port and the private one
/// alone tells a process's health (`warren doctor --url`).
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::render))
        .route("/_liveness", get(|| async { "ok" }))
        .route("/_readiness", get(readiness))
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

/// CORS for what browsers' SDKs call (capture, flags): any origin, as
/// PostHog's capture does, since the project token is public anyway.
pub(crate) fn sdk_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_credentials(true)
        .max_age(Duration::from_secs(3600))
}

/// Ready when the stores answer: the meta store a query, the log its bounds.
async fn readiness(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.meta.ping().await.map_err(|e| ApiError::MetaUnavailable(e.to_string()))?;
    state.log.watermarks(0).await?;
    Ok("ok")
}
