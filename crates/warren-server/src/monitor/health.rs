//! The overview's figures: one [`HealthPoint`] per sample, computed from
//! two consecutive readings of the metrics.

use serde::Serialize;
use warren_core::metrics as names;

use warren_core::exposition::{Labels, Reading};

/// Requests per second by class of answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusRates {
    /// 1xx, 2xx and 3xx.
    pub ok: f64,
    pub client_error: f64,
    pub server_error: f64,
}

/// Warren's health over one sample interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HealthPoint {
    /// End of the interval, Unix milliseconds.
    pub at_ms: i64,
    /// Events capture made durable, per second.
    pub events_per_second: f64,
    /// Events ingest stored, per second.
    pub stored_per_second: f64,
    /// Events capture made durable since this process started.
    pub events_received_total: f64,
    /// Events ingest stored since this process started.
    pub events_stored_total: f64,
    pub requests_per_second: StatusRates,
    /// 99th percentile of capture requests in the interval, ms.
    pub capture_p99_ms: Option<f64>,
    /// 99th percentile of queries in the interval, ms.
    pub query_p99_ms: Option<f64>,
    /// Records in the log that ingest has not stored yet.
    pub ingest_lag_records: Option<f64>,
    /// Acknowledgement to visibility, oldest event of the last batch, s.
    pub freshness_seconds: Option<f64>,
    pub store_files: Option<f64>,
    pub store_bytes: Option<f64>,
    pub log_bytes: f64,
}

/// One consumer group's lag on one partition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionLag {
    pub group: String,
    pub partition: u32,
    pub lag_records: f64,
}

fn label<'a>(labels: &'a Labels, name: &str) -> &'a str {
    labels.get(name).map_or("", String::as_str)
}

/// A series of the capture API, whose latency the overview shows.
pub(crate) fn is_capture(labels: &Labels) -> bool {
    crate::capture::is_route(label(labels, "route"))
}

/// `2xx`, `4xx`… of a status label.
pub(crate) fn status_class(labels: &Labels) -> char {
    label(labels, "status").chars().next().unwrap_or('?')
}

impl HealthPoint {
    /// The interval from `earlier` to `now`, `seconds` long, ending at `at_ms`.
    pub(crate) fn between(earlier: &Reading, now: &Reading, seconds: f64, at_ms: i64) -> Self {
        let seconds = seconds.max(1e-3);
        let rate = |name: &str, keep: &dyn Fn(&Labels) -> bool| now.increase(earlier, name, keep) / seconds;
        let stored = |labels: &Labels| label(labels, "outcome") == "stored";
        let p99_ms = |name: &str, keep: &dyn Fn(&Labels) -> bool| {
            now.histogram_increase(earlier, name, keep).quantile(0.99).map(|s| s * 1000.0)
        };
        HealthPoint {
            at_ms,
            events_per_second: rate(names::CAPTURE_EVENTS_RECEIVED, &|_| true),
            stored_per_second: rate(names::INGEST_EVENTS, &stored),
            events_received_total: now.sum(names::CAPTURE_EVENTS_RECEIVED, |_| true),
            events_stored_total: now.sum(names::INGEST_EVENTS, stored),
            requests_per_second: StatusRates {
                ok: rate(names::HTTP_REQUESTS, &|l| matches!(status_class(l), '1' | '2' | '3')),
                client_error: rate(names::HTTP_REQUESTS, &|l| status_class(l) == '4'),
                server_error: rate(names::HTTP_REQUESTS, &|l| status_class(l) == '5'),
            },
            capture_p99_ms: p99_ms(names::HTTP_REQUEST_SECONDS, &is_capture),
            query_p99_ms: p99_ms(names::QUERY_SECONDS, &|_| true),
            ingest_lag_records: now.gauge(names::INGEST_LAG_RECORDS),
            freshness_seconds: now.gauge(names::INGEST_FRESHNESS_SECONDS),
            store_files: now.gauge(names::STORE_FILES),
            store_bytes: now.gauge(names::STORE_BYTES),
            log_bytes: now.sum(names::LOG_PARTITION_BYTES, |_| true),
        }
    }
}

/// Every consumer group's lag per partition, as the reading has it.
pub(crate) fn partition_lags(reading: &Reading) -> Vec<PartitionLag> {
    let mut lags: Vec<PartitionLag> = reading
        .series(names::LOG_CONSUMER_LAG)
        .map(|(labels, lag)| PartitionLag {
            group: label(labels, "group").to_string(),
            partition: label(labels, "partition").parse().unwrap_or(0),
            lag_records: lag,
        })
        .collect();
    lags.sort_by(|a, b| (&a.group, a.partition).cmp(&(&b.group, b.partition)));
    lags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(received: u64, ok: u64, errors: u64, lag: u64) -> Reading {
        Reading::parse(&format!(
            "# TYPE {events} counter\n{events} {received}\n\
             # TYPE {http} counter\n{http}{{route=\"/batch\",method=\"POST\",status=\"200\"}} {ok}\n\
             {http}{{route=\"/batch\",method=\"POST\",status=\"503\"}} {errors}\n\
             # TYPE {lag_name} gauge\n{lag_name}{{group=\"ingest\",partition=\"1\"}} {lag}\n\
             {lag_name}{{group=\"ingest\",partition=\"0\"}} 0\n",
            events = names::CAPTURE_EVENTS_RECEIVED,
            http = names::HTTP_REQUESTS,
            lag_name = names::LOG_CONSUMER_LAG,
        ))
    }

    #[test]
    fn rates_are_per_second_over_the_interval() {
        let point = HealthPoint::between(&reading(100, 10, 0, 0), &reading(300, 30, 4, 7), 2.0, 5);
        assert_eq!(point.events_per_second, 100.0);
        assert_eq!(point.requests_per_second, StatusRates { ok: 10.0, client_error: 0.0, server_error: 2.0 });
        assert_eq!(point.capture_p99_ms, None, "no latency observed");
        assert_eq!(point.at_ms, 5);
        let lags = partition_lags(&reading(0, 0, 0, 7));
        assert_eq!(
            lags.iter().map(|l| (l.partition, l.lag_records)).collect::<Vec<_>>(),
            vec![(0, 0.0), (1, 7.0)]
        );
    }
}
