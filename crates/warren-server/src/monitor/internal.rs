//! Warren's health as events of its internal project: what happened over
//! one interval, one event per dimension (route and status, partition,
//! query kind, job run), so trends, breakdowns and alerts work on them as
//! on product events. Every name and property is listed in
//! `docs/self-monitoring.md`.

use serde_json::{json, Map, Value};
use warren_core::jobs::{JobRun, Outcome};
use warren_core::metrics as names;

use super::health::{is_capture, status_class};
use warren_core::exposition::{growth, Labels, Reading};

/// An event about to be written: its name and properties.
pub(crate) type InternalEvent = (&'static str, Map<String, Value>);

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn label(labels: &Labels, name: &str) -> String {
    labels.get(name).cloned().unwrap_or_default()
}

/// Milliseconds, rounded to microseconds so the JSON stays short.
fn ms(seconds: Option<f64>) -> Value {
    seconds.map_or(Value::Null, |s| json!((s * 1e6).round() / 1e3))
}

/// The events of the interval from `earlier` to `now` (`seconds` long),
/// and one per job run in `runs`.
pub(crate) fn events(earlier: &Reading, now: &Reading, seconds: f64, runs: &[JobRun]) -> Vec<InternalEvent> {
    let mut out = Vec::new();
    http_requests(earlier, now, seconds, &mut out);
    queries(earlier, now, &mut out);
    out.push(("warren_ingest", ingest(earlier, now, seconds)));
    out.push(("warren_store", store(earlier, now)));
    for (labels, bytes) in now.series(names::LOG_PARTITION_BYTES) {
        let partition = label(labels, "partition");
        let segments = now.sum(names::LOG_PARTITION_SEGMENTS, |l| label(l, "partition") == partition);
        let lag = now.sum(names::LOG_CONSUMER_LAG, |l| label(l, "partition") == partition);
        out.push((
            "warren_log_partition",
            object(json!({
                "partition": partition.parse::<u32>().unwrap_or(0),
                "bytes": bytes,
                "segments": segments,
                "lag_records": lag,
            })),
        ));
    }
    for run in runs {
        let (outcome, message) = match &run.outcome {
            Outcome::Ok => ("ok", Value::Null),
            Outcome::Failed(message) => ("failed", json!(message)),
        };
        out.push((
            "warren_job",
            object(json!({
                "job": run.job,
                "outcome": outcome,
                "message": message,
                "duration_ms": (run.duration_ms * 1000.0).round() / 1000.0,
                "detail": run.detail,
            })),
        ));
    }
    out
}

/// One event per route, method and status that had requests, with the
/// route's latency.
fn http_requests(earlier: &Reading, now: &Reading, seconds: f64, out: &mut Vec<InternalEvent>) {
    for (labels, count) in now.series(names::HTTP_REQUESTS) {
        let requests = growth(count, earlier.sum(names::HTTP_REQUESTS, |l| l == labels));
        if requests <= 0.0 {
            continue;
        }
        let route = label(labels, "route");
        let latency =
            now.histogram_increase(earlier, names::HTTP_REQUEST_SECONDS, |l| label(l, "route") == route);
        out.push((
            "warren_http_requests",
            object(json!({
                "route": route,
                "method": label(labels, "method"),
                "status": label(labels, "status").parse::<u16>().unwrap_or(0),
                "status_class": format!("{}xx", status_class(labels)),
                "capture": is_capture(labels),
                "requests": requests,
                "requests_per_second": requests / seconds.max(1e-3),
                "route_p50_ms": ms(latency.quantile(0.5)),
                "route_p99_ms": ms(latency.quantile(0.99)),
            })),
        ));
    }
}

/// One event per query kind and outcome that had queries.
fn queries(earlier: &Reading, now: &Reading, out: &mut Vec<InternalEvent>) {
    for (labels, count) in now.series(names::QUERIES) {
        let answered = growth(count, earlier.sum(names::QUERIES, |l| l == labels));
        if answered <= 0.0 {
            continue;
        }
        let kind = label(labels, "kind");
        let latency = now.histogram_increase(earlier, names::QUERY_SECONDS, |l| label(l, "kind") == kind);
        out.push((
            "warren_queries",
            object(json!({
                "kind": kind,
                "outcome": label(labels, "outcome"),
                "queries": answered,
                "kind_p50_ms": ms(latency.quantile(0.5)),
                "kind_p99_ms": ms(latency.quantile(0.99)),
            })),
        ));
    }
}

fn ingest(earlier: &Reading, now: &Reading, seconds: f64) -> Map<String, Value> {
    let grew = |name: &str, outcome: Option<&str>| {
        now.increase(earlier, name, |l: &Labels| outcome.is_none_or(|o| label(l, "outcome") == o))
    };
    let received = grew(names::CAPTURE_EVENTS_RECEIVED, None);
    let stored = grew(names::INGEST_EVENTS, Some("stored"));
    object(json!({
        "events_received": received,
        "events_received_per_second": received / seconds.max(1e-3),
        "events_stored": stored,
        "events_stored_per_second": stored / seconds.max(1e-3),
        "duplicates": grew(names::INGEST_EVENTS, Some("duplicate")),
        "invalid": grew(names::INGEST_EVENTS, Some("invalid")),
        "dropped": grew(names::CAPTURE_EVENTS_DROPPED, None),
        "warnings": grew(names::INGEST_WARNINGS, None),
        "persons_created": grew(names::INGEST_PERSONS_CREATED, None),
        "batch_failures": grew(names::INGEST_BATCH_FAILURES, None),
        "lost_to_retention": grew(names::INGEST_EVENTS_LOST_TO_RETENTION, None),
        "lag_records": now.gauge(names::INGEST_LAG_RECORDS),
        "freshness_seconds": now.gauge(names::INGEST_FRESHNESS_SECONDS),
    }))
}

fn store(earlier: &Reading, now: &Reading) -> Map<String, Value> {
    let grew = |name: &str| now.increase(earlier, name, |_| true);
    object(json!({
        "files": now.gauge(names::STORE_FILES),
        "bytes": now.gauge(names::STORE_BYTES),
        "table_version": now.gauge(names::STORE_TABLE_VERSION),
        "commits": grew(names::STORE_COMMITS),
        "rows_written": grew(names::STORE_ROWS_WRITTEN),
        "log_bytes": now.sum(names::LOG_PARTITION_BYTES, |_| true),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(ok: u64, slow: u64) -> Reading {
        Reading::parse(&format!(
            "# TYPE {http} counter\n{http}{{route=\"/batch\",method=\"POST\",status=\"200\"}} {ok}\n\
             {http}{{route=\"/api/schema\",method=\"GET\",status=\"200\"}} 1\n\
             # TYPE {lat} histogram\n\
             {lat}_bucket{{route=\"/batch\",le=\"0.01\"}} {fast}\n\
             {lat}_bucket{{route=\"/batch\",le=\"1\"}} {ok}\n\
             {lat}_bucket{{route=\"/batch\",le=\"+Inf\"}} {ok}\n\
             # TYPE {bytes} gauge\n{bytes}{{partition=\"3\"}} 4096\n",
            http = names::HTTP_REQUESTS,
            lat = names::HTTP_REQUEST_SECONDS,
            bytes = names::LOG_PARTITION_BYTES,
            fast = ok - slow,
        ))
    }

    #[test]
    fn an_interval_becomes_events_per_dimension() {
        let run = JobRun {
            seq: 0,
            job: "store.vacuum".into(),
            started_ms: 0,
            duration_ms: 12.5,
            outcome: Outcome::Failed("disk full".into()),
            detail: String::new(),
        };
        let events = events(&reading(10, 0), &reading(30, 10), 10.0, &[run]);
        let named =
            |name: &str| events.iter().filter(|(n, _)| *n == name).map(|(_, p)| p).collect::<Vec<_>>();
        let http = named("warren_http_requests");
        assert_eq!(http.len(), 1, "only routes with requests in the interval: {http:?}");
        assert_eq!(http[0]["route"], "/batch");
        assert_eq!(http[0]["requests"], 20.0);
        assert_eq!(http[0]["requests_per_second"], 2.0);
        assert_eq!(http[0]["status_class"], "2xx");
        assert_eq!(http[0]["capture"], true);
        assert!(
            http[0]["route_p99_ms"].as_f64().is_some_and(|p| p > 10.0),
            "half the new requests were slow"
        );
        assert_eq!(named("warren_log_partition")[0]["partition"], 3);
        assert_eq!(named("warren_log_partition")[0]["bytes"], 4096.0);
        let job = named("warren_job");
        assert_eq!(job[0]["outcome"], "failed");
        assert_eq!(job[0]["message"], "disk full");
        assert_eq!(named("warren_ingest").len(), 1);
        assert_eq!(named("warren_store").len(), 1);
    }
}
