//! Every metric Warren exports, named in one place.
//!
//! Crates record metrics through these constants only, so `/metrics` stays a
//! stable interface and a rename is one edit. [`DESCRIPTIONS`] feeds the
//! `# HELP` lines.

/// HTTP requests, labelled `route`, `method`, `status`.
pub const HTTP_REQUESTS: &str = "warren_http_requests_total";
/// HTTP request latency in seconds, labelled `route`.
pub const HTTP_REQUEST_SECONDS: &str = "warren_http_request_duration_seconds";
/// Connections refused at the door because `http.max_connections` were
/// open, labelled `answer`: `503` when the refusal was written, `none` when
/// too many refusals were already being written and the connection was
/// closed without one.
pub const HTTP_CONNECTIONS_REFUSED: &str = "warren_http_connections_refused_total";
/// Events accepted into the log.
pub const CAPTURE_EVENTS_RECEIVED: &str = "warren_capture_events_received_total";
/// Events of parsed requests not stored, labelled `cause`.
pub const CAPTURE_EVENTS_DROPPED: &str = "warren_capture_events_dropped_total";
/// Capture requests answered with an error, labelled `code`.
pub const CAPTURE_REQUESTS_REFUSED: &str = "warren_capture_requests_refused_total";
/// REST API requests (everything but capture) answered with an error, labelled `code`.
pub const API_REQUESTS_REFUSED: &str = "warren_api_requests_refused_total";
/// Queries answered, labelled `kind` and `outcome` (ok or an error code).
pub const QUERIES: &str = "warren_queries_total";
/// Time to answer one query, seconds, labelled `kind`.
pub const QUERY_SECONDS: &str = "warren_query_duration_seconds";
/// Audit log entries that could not be written.
pub const AUDIT_WRITE_FAILURES: &str = "warren_audit_write_failures_total";
/// Feature flag evaluations answered, labelled `endpoint` (flags, decide, definitions).
pub const FLAG_REQUESTS: &str = "warren_flag_requests_total";
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
/// Commits to the events table, labelled `kind` (append, compaction).
pub const STORE_COMMITS: &str = "warren_store_commits_total";
/// Rows appended to the events table.
pub const STORE_ROWS_WRITTEN: &str = "warren_store_rows_written_total";
/// Time of one append commit (encode, upload, commit), seconds.
pub const STORE_COMMIT_SECONDS: &str = "warren_store_commit_duration_seconds";
/// The events table's current version.
pub const STORE_TABLE_VERSION: &str = "warren_store_table_version";
/// Data files in the events table's current version.
pub const STORE_FILES: &str = "warren_store_files";
/// Small files rewritten by compaction.
pub const STORE_COMPACTED_FILES: &str = "warren_store_compacted_files_total";
/// Checkpoints written.
pub const STORE_CHECKPOINTS: &str = "warren_store_checkpoints_total";
/// Files no longer in the table deleted by vacuum.
pub const STORE_VACUUMED_FILES: &str = "warren_store_vacuumed_files_total";
/// Upkeep rounds that failed.
pub const STORE_MAINTENANCE_ERRORS: &str = "warren_store_maintenance_errors_total";
/// Events ingest finished with, labelled `outcome` (stored, duplicate, invalid).
pub const INGEST_EVENTS: &str = "warren_ingest_events_total";
/// Time of one ingest batch, seconds, labelled `stage` (persons, store, meta).
pub const INGEST_STAGE_SECONDS: &str = "warren_ingest_stage_duration_seconds";
/// Events per ingest batch.
pub const INGEST_BATCH_EVENTS: &str = "warren_ingest_batch_events";
/// Records in the event log that ingest has not stored yet.
pub const INGEST_LAG_RECORDS: &str = "warren_ingest_lag_records";
/// Ingestion warnings recorded, labelled `kind`.
pub const INGEST_WARNINGS: &str = "warren_ingest_warnings_total";
/// Persons created.
pub const INGEST_PERSONS_CREATED: &str = "warren_ingest_persons_created_total";
/// Persons merged into another.
pub const INGEST_PERSONS_MERGED: &str = "warren_ingest_persons_merged_total";
/// Ingest batches that failed and were retried.
pub const INGEST_BATCH_FAILURES: &str = "warren_ingest_batch_failures_total";
/// Events the log deleted by retention before ingest stored them (only with
/// `retention_ignores_consumers`), labelled `partition`; an upper bound.
pub const INGEST_EVENTS_LOST_TO_RETENTION: &str = "warren_ingest_events_lost_to_retention_total";
/// Seconds from capture's acknowledgement to the store commit, for the
/// oldest event of the last batch.
pub const INGEST_FRESHNESS_SECONDS: &str = "warren_ingest_freshness_seconds";
/// Log records the replica (the ClickHouse cluster) holds fewer than the
/// canonical store: 0 while it is written beside every batch.
pub const INGEST_REPLICA_LAG_RECORDS: &str = "warren_ingest_replica_lag_records";
/// Writes to the replica that failed, after which it fell behind and
/// catches up by itself.
pub const INGEST_REPLICA_FAILURES: &str = "warren_ingest_replica_failures_total";
/// Bytes of session-recording blobs ingest wrote (compressed).
pub const INGEST_RECORDING_BYTES: &str = "warren_ingest_recording_bytes_total";
/// Recording chunks retention deleted, blob and row.
pub const RECORDING_CHUNKS_DELETED: &str = "warren_recording_chunks_deleted_total";
/// Bytes of the data files in the events table's current version.
pub const STORE_BYTES: &str = "warren_store_bytes";
/// Runs of background jobs, labelled `job` and `outcome` (ok, failed).
pub const JOB_RUNS: &str = "warren_job_runs_total";
/// Duration of one background job run, seconds, labelled `job`.
pub const JOB_SECONDS: &str = "warren_job_duration_seconds";
/// Events self-monitoring wrote about Warren into its internal project.
pub const MONITOR_EVENTS: &str = "warren_monitor_events_total";
/// Always 1, labelled `version` and `role`: which build runs where.
pub const BUILD_INFO: &str = "warren_build_info";
/// The process's soft limit on open files.
pub const PROCESS_OPEN_FILES_LIMIT: &str = "warren_process_open_files_limit";
/// The memory limit of the process's cgroup, bytes; unset when unlimited.
pub const PROCESS_MEMORY_LIMIT_BYTES: &str = "warren_process_memory_limit_bytes";

/// What kind of metric a name is, for its `# TYPE` and `# HELP` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// `(name, kind, help)` for every metric above.
pub const DESCRIPTIONS: &[(&str, Kind, &str)] = &[
    (HTTP_REQUESTS, Kind::Counter, "HTTP requests by route, method and status."),
    (HTTP_REQUEST_SECONDS, Kind::Histogram, "HTTP request latency by route."),
    (HTTP_CONNECTIONS_REFUSED, Kind::Counter, "Connections refused at the connection cap, by answer."),
    (CAPTURE_EVENTS_RECEIVED, Kind::Counter, "Events durably accepted into the event log."),
    (CAPTURE_EVENTS_DROPPED, Kind::Counter, "Events of parsed requests not stored, by cause."),
    (CAPTURE_REQUESTS_REFUSED, Kind::Counter, "Capture requests answered with an error, by code."),
    (API_REQUESTS_REFUSED, Kind::Counter, "REST API requests answered with an error, by code."),
    (QUERIES, Kind::Counter, "Queries answered, by kind and outcome."),
    (QUERY_SECONDS, Kind::Histogram, "Time to answer one query, by kind."),
    (AUDIT_WRITE_FAILURES, Kind::Counter, "Audit log entries that could not be written."),
    (FLAG_REQUESTS, Kind::Counter, "Feature flag requests answered, by endpoint."),
    (CAPTURE_TIMESTAMP_UNPARSEABLE, Kind::Counter, "Events whose timestamp could not be parsed."),
    (CAPTURE_PAYLOAD_BYTES, Kind::Histogram, "Capture request body size as received."),
    (CAPTURE_CLOCK_SKEW_SECONDS, Kind::Histogram, "Server time minus client sent_at."),
    (LOG_APPEND_SECONDS, Kind::Histogram, "Event log append latency up to durability."),
    (LOG_FSYNC_SECONDS, Kind::Histogram, "Duration of one event log fsync."),
    (LOG_FSYNC_BATCH_RECORDS, Kind::Histogram, "Records made durable by one group commit."),
    (STORE_COMMITS, Kind::Counter, "Commits to the events table, by kind."),
    (STORE_ROWS_WRITTEN, Kind::Counter, "Rows appended to the events table."),
    (STORE_COMMIT_SECONDS, Kind::Histogram, "Duration of one events-table append commit."),
    (STORE_TABLE_VERSION, Kind::Gauge, "Current version of the events table."),
    (STORE_FILES, Kind::Gauge, "Data files in the current events-table version."),
    (STORE_COMPACTED_FILES, Kind::Counter, "Small files rewritten by compaction."),
    (STORE_CHECKPOINTS, Kind::Counter, "Events-table checkpoints written."),
    (STORE_VACUUMED_FILES, Kind::Counter, "Unreferenced files deleted by vacuum."),
    (STORE_MAINTENANCE_ERRORS, Kind::Counter, "Events-table upkeep rounds that failed."),
    (INGEST_EVENTS, Kind::Counter, "Events ingest finished with, by outcome."),
    (INGEST_STAGE_SECONDS, Kind::Histogram, "Duration of one ingest batch stage."),
    (INGEST_BATCH_EVENTS, Kind::Histogram, "Events per ingest batch."),
    (INGEST_LAG_RECORDS, Kind::Gauge, "Event-log records not yet stored by ingest."),
    (INGEST_WARNINGS, Kind::Counter, "Ingestion warnings recorded, by kind."),
    (INGEST_PERSONS_CREATED, Kind::Counter, "Persons created by ingest."),
    (INGEST_PERSONS_MERGED, Kind::Counter, "Persons merged into another."),
    (INGEST_BATCH_FAILURES, Kind::Counter, "Ingest batches that failed and were retried."),
    (INGEST_RECORDING_BYTES, Kind::Counter, "Bytes of session-recording blobs ingest wrote."),
    (RECORDING_CHUNKS_DELETED, Kind::Counter, "Session-recording chunks deleted by retention."),
    (
        INGEST_EVENTS_LOST_TO_RETENTION,
        Kind::Counter,
        "Events deleted by log retention before ingest stored them, by partition.",
    ),
    (LOG_APPEND_ERRORS, Kind::Counter, "Event log appends that failed, by cause."),
    (LOG_PARTITION_BYTES, Kind::Gauge, "Event log bytes on disk per partition."),
    (LOG_PARTITION_SEGMENTS, Kind::Gauge, "Event log segment files per partition."),
    (LOG_CONSUMER_LAG, Kind::Gauge, "Records not yet committed by a consumer group."),
    (LOG_SEGMENTS_DELETED, Kind::Counter, "Event log segments deleted by retention."),
    (
        INGEST_FRESHNESS_SECONDS,
        Kind::Gauge,
        "Capture acknowledgement to store commit, oldest event of the last batch.",
    ),
    (
        INGEST_REPLICA_LAG_RECORDS,
        Kind::Gauge,
        "Log records the ClickHouse replica holds fewer than the canonical store.",
    ),
    (INGEST_REPLICA_FAILURES, Kind::Counter, "Replica writes that failed (the replica then catches up)."),
    (STORE_BYTES, Kind::Gauge, "Bytes of data files in the current events-table version."),
    (JOB_RUNS, Kind::Counter, "Background job runs, by job and outcome."),
    (JOB_SECONDS, Kind::Histogram, "Duration of one background job run, by job."),
    (MONITOR_EVENTS, Kind::Counter, "Events self-monitoring wrote into the internal project."),
    (BUILD_INFO, Kind::Gauge, "Always 1: the version and role of this process."),
    (PROCESS_OPEN_FILES_LIMIT, Kind::Gauge, "The soft limit on open files."),
    (PROCESS_MEMORY_LIMIT_BYTES, Kind::Gauge, "The cgroup's memory limit, bytes (unset: none)."),
];
