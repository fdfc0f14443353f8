//! Configuration structs, as loaded by the binary from defaults, `warren.toml`,
//! `WARREN_*` environment variables and flags (in that order of precedence).
//!
//! Every field has a default, so an empty file is a valid configuration.
//! Durations are plain integers whose unit is in the name (`_secs`, `_ms`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole configuration of one `warren` process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarrenConfig {
    /// Address the HTTP server binds, `host:port`.
    pub listen: String,
    /// Where embedded storage lives: the event log, the SQLite meta store.
    pub data_dir: PathBuf,
    /// Meta store URL; `sqlite://` inside `data_dir` when unset.
    pub meta_url: Option<String>,
    /// `text` for people, `json` for log pipelines.
    pub log_format: LogFormat,
    /// Log filter: a level (`info`) or per-module directives
    /// (`warn,warren_log=debug`).
    pub log_level: String,
    pub http: HttpConfig,
    pub event_log: EventLogConfig,
    pub capture: CaptureConfig,
    pub bootstrap: BootstrapConfig,
}

impl Default for WarrenConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8000".into(),
            data_dir: PathBuf::from("./warren-data"),
            meta_url: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            http: HttpConfig::default(),
            event_log: EventLogConfig::default(),
            capture: CaptureConfig::default(),
            bootstrap: BootstrapConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The HTTP server's connections. With the capture limits below, these
/// bound the memory clients can make Warren hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Open connections; beyond, new ones wait in the kernel's queue.
    pub max_connections: usize,
    /// Largest read buffer of one connection.
    pub read_buffer_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { max_connections: 1024, read_buffer_bytes: 64 * 1024 }
    }
}

/// The embedded segment log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventLogConfig {
    /// Number of partitions, fixed when the log is created.
    pub partitions: u32,
    /// A segment is sealed once it holds this many bytes.
    pub segment_bytes: u64,
    /// A segment is sealed once it is this old, even if not full.
    pub segment_age_secs: u64,
    /// Delete sealed segments once a partition holds more than this; 0 for
    /// no size limit.
    pub retention_bytes: u64,
    /// Delete sealed segments whose newest record is older than this; 0 to
    /// keep them at any age.
    pub retention_age_secs: u64,
    /// Delete even what a consumer group has not committed yet.
    pub retention_ignores_consumers: bool,
    /// How often retention runs.
    pub retention_interval_secs: u64,
    /// Bytes accepted but not yet durable; appenders wait beyond this.
    pub max_pending_bytes: u64,
    /// How long an appender waits for room before the append fails.
    pub append_timeout_ms: u64,
}

impl Default for EventLogConfig {
    fn default() -> Self {
        Self {
            partitions: 8,
            segment_bytes: 128 * 1024 * 1024,
            segment_age_secs: 3600,
            retention_bytes: 0,
            retention_age_secs: 7 * 24 * 3600,
            retention_ignores_consumers: false,
            retention_interval_secs: 60,
            max_pending_bytes: 64 * 1024 * 1024,
            append_timeout_ms: 2000,
        }
    }
}

/// The capture API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Body limit for the single-event routes, before and after decompression.
    pub max_event_bytes: usize,
    /// Body limit for `/batch`, before and after decompression.
    pub max_batch_bytes: usize,
    /// Requests handled at once; more are answered 503 at the door.
    pub max_concurrent_requests: usize,
    /// Memory that request bodies being handled may hold, received and
    /// decoded; a request that would exceed it is answered 503.
    pub max_inflight_bytes: usize,
    /// A request whose body has not arrived by then is answered 408.
    pub body_timeout_secs: u64,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            max_event_bytes: 2 * 1024 * 1024,
            max_batch_bytes: 20 * 1024 * 1024,
            max_concurrent_requests: 256,
            max_inflight_bytes: 128 * 1024 * 1024,
            body_timeout_secs: 30,
        }
    }
}

/// Values for the first start of a fresh data dir; ignored afterwards.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapConfig {
    /// Project token of the default project; generated when unset.
    pub project_token: Option<String>,
    /// Personal API key of the default user; generated when unset.
    pub api_key: Option<String>,
}
