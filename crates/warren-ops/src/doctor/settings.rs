//! The configuration: settings that parse but will hurt, and tuning advice
//! from what the machine has and the running processes measured.

use std::net::SocketAddr;

use warren_core::config::{QueryBackendKind, Role, WarrenConfig};
use warren_core::metrics as names;

use super::processes::ProcessFacts;
use super::{bytes, Finding, Severity};

pub(super) fn check_config(config: &WarrenConfig) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut warn = |check: &str, severity: Severity, summary: String, fix: &str| {
        findings.push(Finding::new(check, severity, summary).fix(fix));
    };
    let public = config.listen.parse::<SocketAddr>().map_or(true, |address| !address.ip().is_loopback());
    if public && config.http.admin_listen.is_none() {
        warn(
            "config.admin_listen",
            Severity::Warning,
            format!("`/metrics` is served on the public listener {}", config.listen),
            "set `[http] admin_listen` to a private address (127.0.0.1:9090) for /metrics",
        );
    }
    if public && !config.auth.secure_cookie {
        warn(
            "config.secure_cookie",
            Severity::Warning,
            format!("dashboard sessions are not marked Secure while listening on {}", config.listen),
            "serve Warren behind HTTPS and set `[auth] secure_cookie = true`",
        );
    }
    if config.event_log.retention_ignores_consumers {
        warn(
            "config.log_retention",
            Severity::Warning,
            "`[event_log] retention_ignores_consumers` deletes records ingest has not stored yet".into(),
            "unset it unless losing a backlog is preferred to filling the disk",
        );
    }
    if config.role != Role::All && config.meta_url.is_none() {
        warn(
            "config.shared_stores",
            Severity::Critical,
            format!(
                "role {:?} on the embedded SQLite meta store, which no other process can share",
                config.role
            ),
            "set `meta_url` to PostgreSQL for roles in separate processes (docs/configuration.md)",
        );
    }
    if config.role == Role::Query && config.event_store.url.is_none() {
        warn(
            "config.shared_stores",
            Severity::Critical,
            "a query process reading an events table in its own data dir, which no ingest writes".into(),
            "set `[event_store] url` to the s3:// table the writer uses",
        );
    }
    if config.query.backend == QueryBackendKind::ClickHouse && config.clickhouse.url.is_none() {
        warn(
            "config.query_backend",
            Severity::Critical,
            "`[query] backend = \"clickhouse\"` without `[clickhouse] url`".into(),
            "set `[clickhouse] url`, or the backend back to delta",
        );
    }
    if config.query.memory_limit_mb == 0 {
        warn(
            "config.query_memory",
            Severity::Warning,
            "queries may use any amount of memory (`[query] memory_limit_mb = 0`)".into(),
            "set a limit (half the process's memory is a good start) so one query cannot starve ingest",
        );
    }
    if let Some(url) = &config.backup.url {
        let local = !url.contains("://") || url.starts_with("file://");
        let path = std::path::Path::new(url.strip_prefix("file://").unwrap_or(url));
        if local && path.starts_with(&config.data_dir) {
            warn(
                "config.backup_target",
                Severity::Warning,
                format!("backups go inside the data dir ({url}): one lost disk takes both"),
                "put `[backup] url` on other storage, S3 or another volume",
            );
        }
    }
    if findings.is_empty() {
        findings.push(Finding::ok("config", "no setting to correct"));
    }
    findings
}

/// Advice from measured figures; informational unless a limit is unsafe.
pub(super) fn tuning(config: &WarrenConfig, facts: &[ProcessFacts]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let query_bytes = config.query.memory_limit_mb.saturating_mul(1024 * 1024);
    if let Some(total) = machine_memory() {
        if query_bytes > total * 6 / 10 {
            findings.push(
                Finding::new(
                    "tuning.query_memory",
                    Severity::Warning,
                    format!(
                        "`[query] memory_limit_mb` allows {} of this machine's {}",
                        bytes(query_bytes),
                        bytes(total)
                    ),
                )
                .fix("keep queries to about half the memory; ingest and the page cache need the rest"),
            );
        }
    }
    for process in facts {
        let Ok(reading) = &process.metrics else { continue };
        // Only processes that answer queries take `[query]`'s memory.
        let queries = reading
            .series(names::BUILD_INFO)
            .any(|(labels, _)| labels.get("role").is_some_and(|role| role == "all" || role == "query"));
        if let (Some(limit), true) = (reading.gauge(names::PROCESS_MEMORY_LIMIT_BYTES), queries) {
            if query_bytes as f64 > limit * 0.8 {
                findings.push(
                    Finding::new(
                        "tuning.query_memory",
                        Severity::Warning,
                        format!(
                            "{}: queries may take {} of a {} memory limit",
                            process.url,
                            bytes(query_bytes),
                            bytes(limit as u64)
                        ),
                    )
                    .fix("lower `[query] memory_limit_mb` to half the limit, or the process is killed before a query fails"),
                );
            }
        }
        let batches = reading.sum(&format!("{}_count", names::INGEST_BATCH_EVENTS), |_| true);
        let events = reading.sum(&format!("{}_sum", names::INGEST_BATCH_EVENTS), |_| true);
        let lag = reading.gauge(names::INGEST_LAG_RECORDS).unwrap_or(0.0);
        if batches > 0.0 {
            let mean = events / batches;
            let full = mean >= 0.9 * config.ingest.batch_max_events as f64;
            let summary = format!(
                "{}: ingest batches average {mean:.0} events of {} allowed",
                process.url, config.ingest.batch_max_events
            );
            findings.push(if full && lag > 100_000.0 {
                Finding::new("tuning.ingest_batch", Severity::Info, summary).fix(
                    "batches are full and a backlog waits: a larger `[ingest] batch_max_events` (and \
                     `batch_max_bytes`) amortises each commit over more events",
                )
            } else {
                Finding::ok("tuning.ingest_batch", summary)
            });
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    if config.event_log.partitions < cpus {
        findings.push(Finding::new(
            "tuning.partitions",
            Severity::Info,
            format!("{} log partitions on {cpus} CPUs", config.event_log.partitions),
        ).fix("a new deployment with at least one partition per CPU spreads capture's appends (the count is fixed once the log exists)"));
    }
    findings
}

/// `MemTotal` of /proc/meminfo, bytes.
fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_hurt_are_named_with_their_fix() {
        let mut config =
            WarrenConfig { listen: "0.0.0.0:8000".into(), role: Role::Query, ..WarrenConfig::default() };
        config.event_log.retention_ignores_consumers = true;
        config.query.memory_limit_mb = 0;
        config.backup.url = Some(config.data_dir.join("backups").display().to_string());
        let findings = check_config(&config);
        let checks: Vec<&str> = findings.iter().map(|f| f.check.as_str()).collect();
        for expected in [
            "config.admin_listen",
            "config.secure_cookie",
            "config.log_retention",
            "config.shared_stores",
            "config.query_memory",
            "config.backup_target",
        ] {
            assert!(checks.contains(&expected), "{expected} missing from {checks:?}");
        }
        assert!(findings.iter().all(|f| f.fix.is_some()));
        assert!(check_config(&WarrenConfig::default()).iter().all(|f| f.severity == Severity::Ok));
    }
}
