//! Configuration structs, as loaded by the binary from defaults, `warren.toml`,
//! `WARREN_*` environment variables and flags (in that order of precedence).
//!
//! Every field has a default, so an empty file is a valid configuration.
//! Durations are plain integers whose unit is in the name (`_secs`, `_ms`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole configuration of one `warren` process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarrenConfig {
    /// What this process runs: `all` (capture and ingest, the embedded
    /// default), `capture` or `ingest`.
    pub role: Role,
    /// Address the HTTP server binds, `host:port`.
    pub listen: String,
    /// Where embedded storage lives: the event log, the SQLite meta store.
    pub data_dir: PathBuf,
    /// Meta store URL; `sqlite://` inside `data_dir` when unset.
    pub meta_url: Option<String>,
    /// `text` for people, `json` for log pipelines.
    pub log_format: LogFormat,
    /// Log filter: a level (`info`) or per-module directives
    /// (`warn,warren_log=debug`). The default keeps Warren's own events at
    /// INFO and its dependencies' at WARN; `RUST_LOG`, when set, wins.
    pub log_level: String,
    pub http: HttpConfig,
    pub event_log: EventLogConfig,
    pub capture: CaptureConfig,
    pub ingest: IngestConfig,
    pub event_store: EventStoreConfig,
    pub clickhouse: ClickHouseConfig,
    pub backup: BackupConfig,
    pub query: QueryConfig,
    pub bootstrap: BootstrapConfig,
    pub auth: AuthConfig,
    pub self_monitoring: SelfMonitoringConfig,
    pub recordings: RecordingsConfig,
}

/// Warren's crates (every target starting `warren`) at INFO, everything
/// else at WARN: the Delta kernel and the HTTP stack log their own INFO
/// spans by the dozen, which drowned a first start's useful lines.
pub const DEFAULT_LOG_LEVEL: &str = "warn,warren=info";

impl Default for WarrenConfig {
    fn default() -> Self {
        Self {
            role: Role::All,
            listen: "127.0.0.1:8000".into(),
            data_dir: PathBuf::from("./warren-data"),
            meta_url: None,
            log_format: LogFormat::Text,
            log_level: DEFAULT_LOG_LEVEL.into(),
            http: HttpConfig::default(),
            event_log: EventLogConfig::default(),
            capture: CaptureConfig::default(),
            ingest: IngestConfig::default(),
            event_store: EventStoreConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            backup: BackupConfig::default(),
            query: QueryConfig::default(),
            bootstrap: BootstrapConfig::default(),
            auth: AuthConfig::default(),
            self_monitoring: SelfMonitoringConfig::default(),
            recordings: RecordingsConfig::default(),
        }
    }
}

/// The roles of one process; a large deployment runs each on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    All,
    Capture,
    Ingest,
    Query,
}

impl Role {
    pub fn captures(self) -> bool {
        matches!(self, Role::All | Role::Capture)
    }

    pub fn ingests(self) -> bool {
        matches!(self, Role::All | Role::Ingest)
    }

    pub fn queries(self) -> bool {
        matches!(self, Role::All | Role::Query)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The HTTP server's connections. With the capture limits below, these
/// bound the memory clients can make Warren hold, and the timeouts keep
/// clients that hold connections without using them from starving others.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Open connections; beyond, a new connection is answered 503
    /// `too_many_connections` at once and closed.
    pub max_connections: usize,
    /// Largest read buffer of one connection.
    pub read_buffer_bytes: usize,
    /// A connection must deliver a request's complete headers within this
    /// long of opening or of its previous answer, or it is closed. This is
    /// also how long an idle keep-alive connection stays open. Behind a
    /// load balancer that reuses connections, keep it above the balancer's
    /// own idle timeout.
    pub header_read_timeout_secs: u64,
    /// After SIGTERM or SIGINT, requests in flight get this long to be
    /// answered (connections between requests are closed at once); the
    /// connections still open then are cut and the process goes on to exit.
    pub shutdown_timeout_secs: u64,
    /// Address (`host:port`) of a second listener that serves `/metrics`
    /// alone, so scrapes can stay off the public port; the main listener
    /// then has no `/metrics`. Unset: `/metrics` is on the main listener.
    pub admin_listen: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            read_buffer_bytes: 64 * 1024,
            header_read_timeout_secs: 30,
            shutdown_timeout_secs: 30,
            admin_listen: None,
        }
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
    /// Delete even what a consumer group (ingest, before its first commit
    /// too) has not committed yet; ingest reports what it lost.
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

/// The query role: insights and SQL over the event store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Which store answers: the canonical Delta table, or the ClickHouse
    /// cluster of `[clickhouse] url` (which must then be set).
    pub backend: QueryBackendKind,
    /// A query running longer is stopped and answered 504.
    pub timeout_secs: u64,
    /// Memory all running queries may hold together; sorts and
    /// aggregations spill to disk first, then the query fails.
    pub memory_limit_mb: u64,
    /// Rows one SQL query returns at most; the answer says when more exist.
    pub max_rows: usize,
    /// Worker threads of the query runtime, apart from capture's.
    pub threads: usize,
    /// Parallel partitions of one query; 0 means one per core.
    pub target_partitions: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            backend: QueryBackendKind::Delta,
            timeout_secs: 60,
            memory_limit_mb: 2048,
            max_rows: 10_000,
            threads: 2,
            target_partitions: 0,
        }
    }
}

/// The store insights and SQL are answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryBackendKind {
    /// DataFusion over the Delta events table.
    Delta,
    /// The ClickHouse cluster, in its own SQL.
    ClickHouse,
}

/// The ingest role: event log → persons → event store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// A batch is written once it holds this many events…
    pub batch_max_events: usize,
    /// …or this many bytes of log records (at least one record), so a
    /// batch of large events (session recordings) stays bounded…
    pub batch_max_bytes: usize,
    /// …or once its first event has waited this long, whichever is first.
    /// Bounds how stale the event store is behind the log.
    pub batch_max_wait_ms: u64,
    /// How often an idle consumer looks for new records.
    pub poll_interval_ms: u64,
    /// Recently stored events, by project and uuid, remembered to drop
    /// duplicates (a client retrying a batch that was stored but not
    /// answered); about 80 bytes each.
    pub dedup_window_events: usize,
    /// Largest a person's properties may grow, as JSON: a `$set`,
    /// `$set_once` or `$unset` (or a merge) that would take them past this
    /// is dropped with a `person_properties_size_violation` ingestion
    /// warning, and the event is stored without it. Every later event of
    /// the person carries its properties, so this bounds their rows too.
    pub max_person_properties_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            batch_max_events: 20_000,
            batch_max_bytes: 64 * 1024 * 1024,
            batch_max_wait_ms: 1000,
            poll_interval_ms: 50,
            dedup_window_events: 1_000_000,
            // PostHog's limit: 640 KiB.
            max_person_properties_bytes: 640 * 1024,
        }
    }
}

/// The canonical event store: a Delta Lake table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventStoreConfig {
    /// Table location: `file:///path` or `s3://bucket/prefix`; `events/`
    /// inside `data_dir` when unset.
    pub url: Option<String>,
    /// Object-store options passed to the Delta adapter, e.g. for S3:
    /// `aws_endpoint`, `aws_region`, `aws_access_key_id`,
    /// `aws_secret_access_key`, `aws_allow_http`, `aws_s3_allow_unsafe_rename`.
    #[serde(deserialize_with = "string_map")]
    pub storage_options: BTreeMap<String, String>,
    /// Compaction rewrites files smaller than this into files about this big.
    pub target_file_bytes: u64,
    /// How often upkeep (compaction, vacuum) looks for work.
    pub maintenance_interval_secs: u64,
    /// A date partition is compacted once it has this many small files.
    pub compaction_min_files: usize,
    /// A checkpoint is written every this many commits.
    pub checkpoint_interval: u64,
    /// Files no longer in the table are deleted once they are this old;
    /// readers of older table versions need them until then. At least 1.
    pub vacuum_retention_hours: u64,
}

impl Default for EventStoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            storage_options: BTreeMap::new(),
            target_file_bytes: 128 * 1024 * 1024,
            maintenance_interval_secs: 60,
            compaction_min_files: 16,
            checkpoint_interval: 100,
            vacuum_retention_hours: 168,
        }
    }
}

/// Session recordings: where their blobs are kept and for how long.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingsConfig {
    /// The blob store: a directory, `file:///path` or `s3://bucket/prefix`;
    /// `recordings/` inside `data_dir` when unset.
    pub url: Option<String>,
    /// Object-store options for S3 (`aws_endpoint`, `aws_region`,
    /// `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http`).
    #[serde(deserialize_with = "string_map")]
    pub storage_options: BTreeMap<String, String>,
    /// A recording is deleted once its last event is this old; 0 keeps
    /// recordings for ever.
    pub retention_days: u64,
    /// How often retention looks for recordings to delete.
    pub retention_interval_secs: u64,
}

impl Default for RecordingsConfig {
    fn default() -> Self {
        Self {
            url: None,
            storage_options: BTreeMap::new(),
            retention_days: 30,
            retention_interval_secs: 3600,
        }
    }
}

impl RecordingsConfig {
    /// The blob store's URL: `url`, or `recordings/` inside `data_dir`.
    pub fn url_in(&self, data_dir: &std::path::Path) -> String {
        self.url.clone().unwrap_or_else(|| data_dir.join("recordings").display().to_string())
    }
}

/// Where `warren backup` keeps backups, and the backups `warren serve`
/// takes by itself once `url` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// A directory (a path or `file:///path`) or `s3://bucket/prefix`;
    /// `--to` overrides it. Unset: every backup command needs `--to`, and
    /// `warren serve` takes no backups.
    pub url: Option<String>,
    /// Object-store options for an `s3://` target, named as for
    /// `[event_store] storage_options`.
    #[serde(deserialize_with = "string_map")]
    pub storage_options: BTreeMap<String, String>,
    /// How often `warren serve` archives the event log to the target,
    /// which bounds what a restore to a moment can miss; 0 turns
    /// archiving (and restoring to a moment) off.
    pub archive_interval_secs: u64,
    /// How often `warren serve` takes an incremental backup, which bounds
    /// how old restored product entities can be; 0 turns scheduled
    /// backups off.
    pub interval_mins: u64,
    /// A scheduled backup is a full one when the newest full backup is
    /// older than this.
    pub full_interval_hours: u64,
    /// Retention of scheduled backups: every backup of the last
    /// `keep_all_hours`, then the newest of each of the last `keep_daily`
    /// days and `keep_weekly` weeks, with every backup those build on.
    pub keep_all_hours: u64,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    /// Drill every scheduled full backup (restore it into a scratch
    /// directory under the data dir and compare), so the System page
    /// shows whether the latest one restores.
    pub drill_full_backups: bool,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            url: None,
            storage_options: BTreeMap::new(),
            archive_interval_secs: 60,
            interval_mins: 15,
            full_interval_hours: 24,
            keep_all_hours: 24,
            keep_daily: 7,
            keep_weekly: 4,
            drill_full_backups: true,
        }
    }
}

impl BackupConfig {
    /// Whether `warren serve` archives the event log.
    pub fn archives_log(&self) -> bool {
        self.url.is_some() && self.archive_interval_secs > 0
    }
}

/// A map of options whose values are text to the object store, however
/// they were written: `aws_allow_http = true` in TOML, or `"true"` from an
/// environment variable (which the loader reads as a boolean).
fn string_map<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Bool(bool),
        Integer(i64),
        Float(f64),
    }
    let map = BTreeMap::<String, Scalar>::deserialize(deserializer)?;
    Ok(map
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                Scalar::Text(text) => text,
                Scalar::Bool(flag) => flag.to_string(),
                Scalar::Integer(number) => number.to_string(),
                Scalar::Float(number) => number.to_string(),
            };
            (key, value)
        })
        .collect())
}

/// The scale-out event store: a ClickHouse cluster that ingest writes
/// beside the canonical Delta table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// Every server of the cluster, one URL:
    /// `clickhouse://[user:password@]host:port,host:port/database?cluster=name`
    /// (HTTP ports), or `clickhouses://…&ca=/path/ca.pem` for HTTPS (`ca=`
    /// optional: authorities to trust besides the system's). Unset: no
    /// ClickHouse.
    pub url: Option<String>,
    /// How long one statement may take before it is given up on.
    pub statement_timeout_secs: u64,
    /// How long a mutation (a delete) may take to finish on every replica.
    pub mutation_timeout_secs: u64,
    /// A partition is merged by upkeep once one shard holds this many of
    /// its parts (ClickHouse merges on its own; this catches it falling
    /// behind).
    pub merge_min_parts: usize,
    /// How long the lock of a schema migration outlives a runner that
    /// stopped renewing it (a killed `warren migrate`); a live runner
    /// renews it three times as often.
    pub migration_lease_secs: u64,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: None,
            statement_timeout_secs: 300,
            mutation_timeout_secs: 600,
            merge_min_parts: 16,
            migration_lease_secs: 30,
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
    /// Time zone of the default project (IANA name); UTC when unset.
    pub timezone: Option<String>,
    /// Email of a user made owner of the default organization, so the web
    /// UI can be signed into at once; needs `admin_password`.
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
}

/// Accounts and sign-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether anyone reaching the server may sign up once the first
    /// organization exists (each sign-up gets an organization of their
    /// own). Off: only the first organization is made by sign-up (and a
    /// started server has made it already); admins add everyone else.
    pub signup: bool,
    /// How long a login session lasts.
    pub session_hours: u64,
    /// Log in attempts allowed per client address and per email each minute.
    pub login_attempts_per_minute: u32,
    /// Audit log entries older than this are deleted (checked hourly).
    pub audit_retention_days: u64,
    /// Behind a reverse proxy: the header it puts the client's address in
    /// (e.g. `x-forwarded-for`); its last address is the client's. Unset:
    /// the connection's peer address.
    pub client_address_header: Option<String>,
    /// Mark the session cookie `Secure` (send it over HTTPS only) on every
    /// answer; turn on when Warren is served over TLS. Behind the proxy of
    /// `client_address_header` it is `Secure` anyway whenever the proxy
    /// says `X-Forwarded-Proto: https`.
    pub secure_cookie: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            signup: false,
            session_hours: 14 * 24,
            login_attempts_per_minute: 10,
            audit_retention_days: 365,
            client_address_header: None,
            secure_cookie: false,
        }
    }
}

/// Warren watching itself: health samples for the dashboard's overview,
/// and the same figures written as events into an internal project, where
/// insights (and alerts) work on them as on product events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelfMonitoringConfig {
    /// Write internal events at all; the overview's live figures are kept
    /// either way.
    pub enabled: bool,
    /// How often the figures of the last interval become events.
    pub interval_secs: u64,
    /// Internal events older than this are deleted from the event store
    /// (checked hourly); 0 keeps them forever.
    pub retention_days: u64,
    /// How often the overview's live figures are sampled.
    pub sample_interval_ms: u64,
    /// Samples the overview keeps (its short history).
    pub history_samples: usize,
}

impl Default for SelfMonitoringConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 10,
            retention_days: 30,
            sample_interval_ms: 2000,
            history_samples: 450,
        }
    }
}

/// What a value of a key named like this must not show: passwords,
/// tokens and every kind of key (API keys, AWS access keys, Azure account
/// and SAS keys, Google service-account keys).
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "password", "token", "key", "credential", "sas"].iter().any(|word| key.contains(word))
}

/// `url` with its user's password and secret query parameters replaced by
/// [`REDACTED`], for logs and reports.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (rest, query) = rest.split_once('?').map_or((rest, None), |(r, q)| (r, Some(q)));
    let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split_once(':').map_or(credentials, |(user, _)| user);
            format!("{user}:{REDACTED}@{host}")
        }
        None => authority.to_string(),
    };
    let mut out = format!("{scheme}://{authority}");
    if let Some(path) = path {
        out.push('/');
        out.push_str(path);
    }
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret_key(name) => format!("{name}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// What replaces a secret in [`WarrenConfig::redacted`].
pub const REDACTED: &str = "********";

fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if is_secret_key(key) && !value.is_null() {
                    *value = serde_json::Value::String(REDACTED.into());
                } else {
                    redact(value);
                }
            }
        }
        serde_json::Value::String(text) if text.contains("://") => *text = redact_url(text),
        _ => {}
    }
}

fn collect_secrets(value: &serde_json::Value, secrets: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match value {
                    serde_json::Value::String(text) if is_secret_key(key) => secrets.push(text.clone()),
                    _ => collect_secrets(value, secrets),
                }
            }
        }
        serde_json::Value::String(text) if text.contains("://") => secrets.extend(url_secrets(text)),
        _ => {}
    }
}

/// What [`redact_url`] hides of `url`: its user's password and the values
/// of secret query parameters.
fn url_secrets(url: &str) -> Vec<String> {
    let Some((_, rest)) = url.split_once("://") else { return Vec::new() };
    let (rest, query) = rest.split_once('?').map_or((rest, None), |(r, q)| (r, Some(q)));
    let authority = rest.split_once('/').map_or(rest, |(authority, _)| authority);
    let mut secrets: Vec<String> = authority
        .rsplit_once('@')
        .and_then(|(credentials, _)| credentials.split_once(':'))
        .map(|(_, password)| password.to_string())
        .into_iter()
        .collect();
    for pair in query.unwrap_or_default().split('&') {
        if let Some((_, value)) = pair.split_once('=').filter(|(name, _)| is_secret_key(name)) {
            secrets.push(value.to_string());
        }
    }
    secrets
}

/// The embedded meta store's file in the data dir.
pub const META_DB_FILE: &str = "meta.db";

impl WarrenConfig {
    /// The meta store's URL: `meta_url`, or the SQLite file in the data dir.
    pub fn meta_url(&self) -> String {
        self.meta_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join(META_DB_FILE).display()))
    }

    /// Every secret this configuration holds — the values [`redacted`]
    /// hides — so text written elsewhere (a log, a support bundle) can be
    /// scrubbed of them too.
    ///
    /// [`redacted`]: WarrenConfig::redacted
    pub fn secret_values(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        collect_secrets(&serde_json::to_value(self).unwrap_or_default(), &mut secrets);
        secrets.retain(|secret| !secret.is_empty());
        secrets.sort();
        secrets.dedup();
        secrets
    }

    /// The configuration as JSON for people to read: passwords, keys,
    /// tokens and URL credentials replaced by [`REDACTED`].
    pub fn redacted(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        redact(&mut value);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_every_secret() {
        let mut config = WarrenConfig {
            meta_url: Some("postgres://warren:hunter2@db:5432/warren".into()),
            ..WarrenConfig::default()
        };
        config.bootstrap.api_key = Some("phx_secret".into());
        config.bootstrap.project_token = Some("phc_token".into());
        config.bootstrap.admin_password = Some("pw".into());
        config.event_store.storage_options.insert("aws_secret_access_key".into(), "s3cr3t".into());
        config.event_store.storage_options.insert("aws_access_key_id".into(), "GK123".into());
        config.event_store.storage_options.insert("aws_region".into(), "garage".into());
        for (key, value) in [
            ("azure_storage_account_key", "az-account"),
            ("azure_storage_sas_key", "az-sas"),
            ("google_service_account_key", "{\"private_key\": \"gcs-private\"}"),
        ] {
            config.event_store.storage_options.insert(key.into(), value.into());
        }
        config.event_store.url = Some("s3://bucket/events?region=eu&password=q-secret".into());
        let shown = config.redacted();
        let text = shown.to_string();
        for secret in [
            "hunter2",
            "phx_secret",
            "phc_token",
            "\"pw\"",
            "s3cr3t",
            "GK123",
            "az-account",
            "az-sas",
            "gcs-private",
            "q-secret",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
            assert!(
                config.secret_values().iter().any(|value| value.contains(secret.trim_matches('"'))),
                "{secret} is not among the values to scrub"
            );
        }
        assert!(!config.secret_values().contains(&"garage".to_string()), "a region is no secret");
        assert_eq!(shown["event_store"]["url"], "s3://bucket/events?region=eu&password=********");
        assert_eq!(shown["meta_url"], "postgres://warren:********@db:5432/warren");
        assert_eq!(shown["event_store"]["storage_options"]["aws_region"], "garage");
        assert_eq!(shown["bootstrap"]["admin_email"], serde_json::Value::Null);
        assert_eq!(shown["listen"], "127.0.0.1:8000");
    }
}
