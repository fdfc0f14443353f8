//! `/metrics` and the per-request HTTP metrics.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, State};
use axum::http::{header, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use warren_core::metrics as names;

use crate::AppState;

/// Installs the process-wide Prometheus recorder. Call once, at startup.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    let latency_buckets =
        [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let size_buckets = [256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 20971520.0];
    let skew_buckets = [-3600.0, -60.0, -10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 10.0, 60.0, 3600.0];
    let batch_buckets = [1.0, 10.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency_buckets)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(names::CAPTURE_PAYLOAD_BYTES.into()), &size_buckets)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(names::CAPTURE_CLOCK_SKEW_SECONDS.into()), &skew_buckets)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(names::LOG_FSYNC_BATCH_RECORDS.into()), &batch_buckets)
        })
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    for (name, kind, help) in names::DESCRIPTIONS {
        match kind {
            names::Kind::Counter => metrics::describe_counter!(*name, *help),
            names::Kind::Gauge => metrics::describe_gauge!(*name, *help),
            names::Kind::Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
    Ok(handle)
}

pub(crate) async fn render(State(state): State<AppState>) -> Response {
    state.log.report_metrics();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// Counts every request by route, method and status, and times it.
pub(crate) async fn track(request: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().trim_end_matches('/').to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().as_str().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(names::HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(names::HTTP_REQUEST_SECONDS, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
