//! `warren support bundle`: one archive a person can attach to a support
//! request — the doctor's report, version and build, the configuration with
//! every secret redacted, each process's metrics, the stores' schema state
//! and sizes, and the tail of the logs given. Never event or person data:
//! nothing is read from the events table, the event log or the meta
//! store's rows.
//!
//! Every entry passes through one [`Scrubber`] that removes each secret
//! the configuration holds (and personal API keys and URL passwords
//! wherever they appear), and the written archive is read back and
//! searched for them before the command reports success. It is written to
//! a temporary file and renamed into place, so a killed run leaves no
//! half archive behind.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde_json::json;
use warren_core::config::{WarrenConfig, REDACTED};
use warren_meta::MetaSchema;

use crate::doctor::Report;
use crate::OpsError;

/// What goes into a bundle besides the configuration.
#[derive(Debug, Clone)]
pub struct BundleInputs<'a> {
    pub config: &'a WarrenConfig,
    pub report: &'a Report,
    /// Processes whose `/metrics` to include.
    pub processes: &'a [String],
    /// Log files whose tail to include.
    pub logs: &'a [PathBuf],
    /// How much of the end of each log to keep.
    pub log_tail_bytes: u64,
    pub timeout: Duration,
}

/// What the bundle holds, for the command to print.
#[derive(Debug, Clone)]
pub struct BundleSummary {
    pub path: PathBuf,
    pub entries: Vec<String>,
    pub bytes: u64,
}

/// Removes secrets from text.
#[derive(Debug)]
pub struct Scrubber {
    secrets: Vec<String>,
    /// Secrets too short to look for in free text (they would take every
    /// `a` or `1` with them): hidden by their keys in `config.json` only.
    pub too_short: usize,
}

/// The shortest secret looked for in free text.
const SHORTEST_SCRUBBED: usize = 4;

/// Personal API keys, whoever's they are.
static API_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"phx_[A-Za-z0-9_\-]{8,}").expect("a valid pattern"));

/// A password in any URL: `scheme://user:password@host`.
static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@"',]+:)(?P<password>[^@\s/"',]+)@"#)
        .expect("a valid pattern")
});

impl Scrubber {
    pub fn new(config: &WarrenConfig) -> Self {
        let values = config.secret_values();
        let too_short = values.iter().filter(|secret| secret.chars().count() < SHORTEST_SCRUBBED).count();
        let mut secrets = Vec::new();
        for secret in values {
            // As JSON writes it (a key file's quotes and newlines escaped),
            // and as a URL's percent-encoded password means it.
            let escaped = serde_json::to_string(&secret).unwrap_or_default();
            secrets.push(escaped.trim_matches('"').to_string());
            if secret.contains('%') {
                secrets.push(percent_encoding::percent_decode_str(&secret).decode_utf8_lossy().into_owned());
            }
            secrets.push(secret);
        }
        secrets.retain(|secret| secret.chars().count() >= SHORTEST_SCRUBBED);
        // Longest first, so a secret holding another is replaced whole.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Self { secrets, too_short }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), REDACTED);
        }
        let text = API_KEY.replace_all(&text, REDACTED);
        URL_PASSWORD.replace_all(&text, format!("${{head}}{REDACTED}@").as_str()).into_owned()
    }

    /// `value` with every string in it scrubbed, before it is written out
    /// as JSON (which would escape a secret's quotes and backslashes).
    pub fn scrub_json(&self, value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::String(text) => serde_json::Value::String(self.scrub(text)),
            serde_json::Value::Array(items) => items.iter().map(|item| self.scrub_json(item)).collect(),
            serde_json::Value::Object(map) => {
                map.iter().map(|(key, value)| (self.scrub(key), self.scrub_json(value))).collect()
            }
            other => other.clone(),
        }
    }

    /// Whether `text` still holds a secret. Looked for between the
    /// replacements, so a secret that is a piece of `********` itself is
    /// not found in them.
    fn leaks(&self, text: &str) -> bool {
        let pieces: Vec<&str> = text.split(REDACTED).collect();
        self.secrets.iter().any(|secret| pieces.iter().any(|piece| piece.contains(secret.as_str())))
            || API_KEY.is_match(text)
            || URL_PASSWORD.captures_iter(text).any(|found| &found["password"] != REDACTED)
    }
}

/// The archive being written, beside where it goes.
const TEMPORARY_PREFIX: &str = ".warren-support-";

/// Writes the bundle to `out`; `progress` hears each step.
pub async fn bundle(
    inputs: &BundleInputs<'_>,
    out: &Path,
    progress: impl Fn(&str),
) -> Result<BundleSummary, OpsError> {
    let scrubber = Scrubber::new(inputs.config);
    if scrubber.too_short > 0 {
        progress(&format!(
            "{} secrets shorter than {SHORTEST_SCRUBBED} characters are hidden in config.json only; \
             look through the logs for them before sending",
            scrubber.too_short
        ));
    }
    // Each entry is scrubbed once, as it is made: JSON value by value,
    // text as a whole.
    let mut entries: Vec<(String, String)> = Vec::new();
    let json = |value: &serde_json::Value| pretty(&scrubber.scrub_json(value));
    progress("the doctor's report");
    entries.push(("doctor.json".into(), json(&json!(inputs.report))));
    entries.push(("version.json".into(), json(&version())));
    entries.push(("config.json".into(), json(&inputs.config.redacted())));
    progress("metrics of each process");
    let scraped = metrics(inputs.processes, inputs.timeout).await;
    entries.extend(scraped.into_iter().map(|(name, text)| (name, scrubber.scrub(&text))));
    progress("the stores' schema and sizes");
    entries.push(("schema.json".into(), json(&schema(inputs.config, inputs.timeout).await)));
    entries.push(("store-sizes.json".into(), json(&store_sizes(&inputs.config.data_dir))));
    for (n, log) in inputs.logs.iter().enumerate() {
        progress(&format!("the end of {}", log.display()));
        let name = log.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "log".into());
        entries.push((format!("logs/{n}-{name}"), scrubber.scrub(&tail(log, inputs.log_tail_bytes)?)));
    }

    progress("writing the archive");
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    crate::doctor::remove_leftovers(parent, TEMPORARY_PREFIX);
    let temporary = tempfile::Builder::new()
        .prefix(TEMPORARY_PREFIX)
        .tempfile_in(parent)
        .map_err(OpsError::io(format!("creating a file in {}", parent.display())))?;
    write_archive(temporary.as_file(), &entries).map_err(OpsError::io("writing the archive"))?;
    temporary.as_file().sync_all().map_err(OpsError::io("syncing the archive"))?;

    progress("verifying: every entry there, no secret in any");
    verify(temporary.path(), &entries, &scrubber)?;
    temporary.persist(out).map_err(|e| OpsError::io(format!("writing {}", out.display()))(e.error))?;
    let bytes = std::fs::metadata(out).map_err(OpsError::io(format!("reading {}", out.display())))?.len();
    Ok(BundleSummary {
        path: out.to_path_buf(),
        entries: entries.into_iter().map(|(name, _)| name).collect(),
        bytes,
    })
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn version() -> serde_json::Value {
    json!({
        "warren": env!("CARGO_PKG_VERSION"),
        "event_log_segment_format": warren_log::SEGMENT_FORMAT_VERSION,
        "meta_schema_sqlite": warren_meta::Dialect::Sqlite.schema_version(),
        "meta_schema_postgres": warren_meta::Dialect::Postgres.schema_version(),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
    })
}

async fn metrics(processes: &[String], timeout: Duration) -> Vec<(String, String)> {
    let client = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
    let mut entries = Vec::new();
    for (n, url) in processes.iter().enumerate() {
        let url = url.trim_end_matches('/');
        let text = match client.get(format!("{url}/metrics")).send().await {
            Ok(answer) => answer.text().await.unwrap_or_else(|e| format!("# unreadable: {e}")),
            Err(error) => format!("# {url} did not answer: {error}"),
        };
        entries.push((format!("metrics/{n}.prom"), format!("# {url}\n{text}")));
    }
    entries
}

/// The meta store's migrations as recorded, or why they could not be read
/// (the doctor's connection: nothing created, the pool closed after).
async fn schema(config: &WarrenConfig, timeout: Duration) -> serde_json::Value {
    let (reachable, meta) = crate::doctor::stores::connect_meta(config, timeout).await;
    let Some(meta) = meta else { return json!({"meta": reachable.summary}) };
    let migrations = meta.migration_status().await;
    meta.close().await;
    let meta = match migrations {
        Ok(migrations) => json!(migrations
            .iter()
            .map(|m| json!({"version": m.version, "description": m.description, "state": format!("{:?}", m.state)}))
            .collect::<Vec<_>>()),
        Err(error) => json!(format!("unreadable: {error}")),
    };
    json!({"meta": meta})
}

/// Bytes under each top-level entry of the data dir.
fn store_sizes(dir: &Path) -> serde_json::Value {
    let mut sizes = serde_json::Map::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return json!({"data_dir": "unreadable"}) };
    for entry in entries.flatten() {
        sizes.insert(entry.file_name().to_string_lossy().into_owned(), json!(size_of(&entry.path())));
    }
    serde_json::Value::Object(sizes)
}

fn size_of(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            std::fs::read_dir(path).map_or(0, |entries| entries.flatten().map(|e| size_of(&e.path())).sum())
        }
        Ok(meta) => meta.len(),
        Err(_) => 0,
    }
}

/// The last `bytes` of a log, from the first whole line.
fn tail(path: &Path, bytes: u64) -> Result<String, OpsError> {
    let mut file = std::fs::File::open(path).map_err(OpsError::io(format!("opening {}", path.display())))?;
    let length = file.metadata().map_err(OpsError::io(format!("reading {}", path.display())))?.len();
    let start = length.saturating_sub(bytes);
    file.seek(SeekFrom::Start(start)).map_err(OpsError::io(format!("reading {}", path.display())))?;
    let mut raw = Vec::new();
    file.read_to_end(&mut raw).map_err(OpsError::io(format!("reading {}", path.display())))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    Ok(match (start > 0, text.find('\n')) {
        (true, Some(newline)) => text[newline + 1..].to_string(),
        _ => text,
    })
}

fn write_archive(file: &std::fs::File, entries: &[(String, String)]) -> std::io::Result<()> {
    let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut archive = tar::Builder::new(encoder);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for (name, text) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(now);
        header.set_cksum();
        archive.append_data(&mut header, format!("warren-support/{name}"), text.as_bytes())?;
    }
    archive.into_inner()?.finish()?;
    Ok(())
}

/// Reads the archive back: every entry present and whole, no secret in any.
fn verify(path: &Path, entries: &[(String, String)], scrubber: &Scrubber) -> Result<(), OpsError> {
    let file = std::fs::File::open(path).map_err(OpsError::io("reopening the archive"))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found = 0;
    for entry in archive.entries().map_err(OpsError::io("reading the archive back"))? {
        let mut entry = entry.map_err(OpsError::io("reading the archive back"))?;
        let mut text = String::new();
        entry.read_to_string(&mut text).map_err(OpsError::io("reading the archive back"))?;
        let name = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        if scrubber.leaks(&text) {
            return Err(OpsError::Verification(format!(
                "{name} still holds a secret; the bundle was not written"
            )));
        }
        found += 1;
    }
    if found != entries.len() {
        return Err(OpsError::Verification(format!(
            "the archive holds {found} entries of {}",
            entries.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_json_would_escape_is_scrubbed_before_it_is_written() {
        let mut config = WarrenConfig::default();
        let key = "{\"private_key\": \"-----BEGIN\\nsecret\\n\"}";
        config.event_store.storage_options.insert("google_service_account_key".into(), key.into());
        config.meta_url = Some("postgres://warren:p%40ss@db/warren".into());
        let scrubber = Scrubber::new(&config);
        let report = json!({"summary": format!("could not use {key}; connecting as p@ss")});
        let text = pretty(&scrubber.scrub_json(&report));
        assert!(!text.contains("BEGIN") && !text.contains("p@ss"), "{text}");
        assert!(scrubber.leaks(&pretty(&report)), "the escaped form is known as a secret too");
        assert!(!scrubber.leaks(&text));
    }

    #[test]
    fn short_and_starred_secrets_leave_the_bundle_readable() {
        let mut config = WarrenConfig::default();
        config.bootstrap.admin_password = Some("a".into());
        config.bootstrap.api_key = Some("********".into());
        let scrubber = Scrubber::new(&config);
        assert_eq!(scrubber.too_short, 1);
        let report = json!({"ok": false, "summary": "a value"});
        let text = pretty(&scrubber.scrub_json(&report));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).ok(), Some(report), "untouched");
        assert!(
            !scrubber.leaks(&format!("hidden: {REDACTED}")),
            "a starred secret is not found in the stars"
        );
    }

    #[test]
    fn a_json_log_line_keeps_its_fields() {
        let scrubber = Scrubber::new(&WarrenConfig::default());
        let line = r#"{"url":"http://h:8000","user":"a@b.example"}"#;
        assert_eq!(scrubber.scrub(line), line, "no password here to hide");
    }

    #[test]
    fn scrubbing_removes_configured_secrets_api_keys_and_url_passwords() {
        let config = WarrenConfig {
            meta_url: Some("postgres://warren:pg-pass-1@db/warren".into()),
            ..Default::default()
        };
        let scrubber = Scrubber::new(&config);
        let text =
            "connecting with pg-pass-1; key phx_abcdefghijkl; https://bob:other-pass@host/x; region eu";
        let clean = scrubber.scrub(text);
        for secret in ["pg-pass-1", "phx_abcdefghijkl", "other-pass"] {
            assert!(!clean.contains(secret), "{secret} in {clean}");
        }
        assert!(clean.contains("https://bob:********@host/x") && clean.contains("region eu"), "{clean}");
        assert!(!scrubber.leaks(&clean));
        assert!(scrubber.leaks(text));
    }
}
