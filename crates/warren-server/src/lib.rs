//! Warren's HTTP surface.
//!
//! The PostHog-compatible capture API (`capture/`), the REST API under
//! `/api/` and the SDKs' feature-flag endpoints (`api/`: accounts,
//! projects, keys, the audit log, product entities, queries, flags, and
//! the OpenAPI document, all from one route table),
//! liveness and readiness, and `/metrics`, served by [`serve`] with bounded
//! connections. Capture only ever appends to the event log; it never reads
//! the event store. [`ApiError`] is the one error type of
//! this crate and the one place errors become HTTP answers.

mod admission;
mod api;
mod capture;
mod error;
mod listener;
pub mod metrics;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::get;
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
use tokens::TokenCache;

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
        }
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
/// routes answer when the state has a query engine), health and metrics.
pub fn router(state: AppState, with_capture: bool) -> Router {
    let mut routes = Router::new();
    if with_capture {
        routes = routes
            .merge(capture::routes().layer(sdk_cors()))
            .route("/", get(|| async { "Warren capture: send events to /batch/ or /e/\n" }));
    }
    routes
        .merge(api::routes(&state))
        .route("/_liveness", get(|| async { "ok" }))
        .route("/_readiness", get(readiness))
        .route("/metrics", get(metrics::render))
        .layer(axum::middleware::from_fn(metrics::track))
        // A bug must cost one request a 500, not its connection.
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("the request hit a bug".into()).into_response()
        }))
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
