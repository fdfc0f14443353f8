//! Every metric Warren exports, named in one place.
//!
//! Crates record metrics through these constants only, so `/metrics` stays a
//! stable interface and a rename is one edit. [`DESCRIPTIONS`] feeds the
//! `# HELP` lines.

/// HTTP requests, labelled `route`, `method`, `status`.
pub const HTTP_REQUESTS: &str = "warren_http_requests_total";
/// HTTP request latency in seconds, labelled `route`.
pub const HTTP_REQUEST_SECONDS: &str = "warren_http_request_duration_seconds";
/// Events accepted into the log.
pub const CAPTURE_EVENTS_RECEIVED: &str = "warren_capture_events_received_total";
/// Events of parsed requests not stored, labelled `cause`.
pub const CAPTURE_EVENTS_DROPPED: &str = "warren_capture_events_dropped_total";
/// Capture requests answered with an error, labelled `code`.
pub const CAPTURE_REQUESTS_REFUSED: &str = "warren_capture_requests_refused_total";
/// Events whose `timestamp` could not be parsed (server time was used).
pub const CAPTURE_TIMESTAMP_UNPARSEABLE: &str = "warren_capture_timestamp_unparseable_total";
/// Request body size in bytes as received (before decompression).
pub const CAPTURE_PAYLOAD_BYTES: &str = "warren_capture_payload_bytes";
/// Client clock skew in seconds (server now minus client sent_at).
pub const CAPTURE_CLOCK_SKEW_SECONDS: &str = "warren_capture_clock_skew_seconds";
/// Time from append request to durable acknowledgement, seconds.
pub const LOG_APPEND_SECONDS: &str = "warren_log_append_duration_seconds";
/// Time of one fsync, seconds.
pub const LOG_FSYNC_SECONDS: &str = "warren_log_fsync_duration_seconds";
/// Records made durable by one group commit.
pub const LOG_FSYNC_BATCH_RECORDS: &str = "warren_log_fsync_batch_records";
/// Appends that failed, labelled `cause`.
pub const LOG_APPEND_ERRORS: &str = "warren_log_append_errors_total";
/// Bytes on disk per partition, labelled `partition`.
pub const LOG_PARTITION_BYTES: &str = "warren_log_partition_bytes";
/// Segment files per partition, labelled `partition`.
pub const LOG_PARTITION_SEGMENTS: &str = "warren_log_partition_segments";
/// Records not yet committed by a consumer group, labelled `group`, `partition`.
pub const LOG_CONSUMER_LAG: &str = "warren_log_consumer_lag_records";
/// Segments deleted by retention.
pub const LOG_SEGMENTS_DELETED: &str = "warren_log_segments_deleted_total";

/// `(name, help)` for every metric above.
pub const DESCRIPTIONS: &[(&str, &str)] = &[
    (HTTP_REQUESTS, "HTTP requests by route, method and status."),
    (HTTP_REQUEST_SECONDS, "HTTP request latency by route."),
    (CAPTURE_EVENTS_RECEIVED, "Events durably accepted into the event log."),
    (CAPTURE_EVENTS_DROPPED, "Events of parsed requests not stored, by cause."),
    (CAPTURE_REQUESTS_REFUSED, "Capture requests answered with an error, by code."),
    (CAPTURE_TIMESTAMP_UNPARSEABLE, "Events whose timestamp could not be parsed."),
    (CAPTURE_PAYLOAD_BYTES, "Capture request body size as received."),
    (CAPTURE_CLOCK_SKEW_SECONDS, "Server time minus client sent_at."),
    (LOG_APPEND_SECONDS, "Event log append latency up to durability."),
    (LOG_FSYNC_SECONDS, "Duration of one event log fsync."),
    (LOG_FSYNC_BATCH_RECORDS, "Records made durable by one group commit."),
    (LOG_APPEND_ERRORS, "Event log appends that failed, by cause."),
    (LOG_PARTITION_BYTES, "Event log bytes on disk per partition."),
    (LOG_PARTITION_SEGMENTS, "Event log segment files per partition."),
    (LOG_CONSUMER_LAG, "Records not yet committed by a consumer group."),
    (LOG_SEGMENTS_DELETED, "Event log segments deleted by retention."),
];
