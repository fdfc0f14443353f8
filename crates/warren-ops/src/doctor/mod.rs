//! `warren doctor`: checks a deployment, running or stopped, and says what
//! is wrong and how to fix it. Each check reads; none changes anything.
//!
//! The checks come in four groups, one module each: the configuration and
//! tuning advice from measured figures (`settings`), the machine under the
//! data dir (`host`: free space, fsync latency, limits), the stores
//! (`stores`: reachable, at the schema this build expects, backups fresh),
//! and the running processes (`processes`: ready, ingest lag and log
//! backlog, clock and version skew, read from their `/metrics`).

mod host;
pub(crate) mod processes;
mod settings;
pub(crate) mod stores;

use std::time::Duration;

pub(crate) use host::remove_leftovers;
use serde::Serialize;
use warren_core::config::WarrenConfig;

/// How much a finding matters. Ordered: the report's worst decides the
/// command's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Checked and fine.
    Ok,
    /// Worth knowing; nothing to do now.
    Info,
    /// Will hurt if left: fix it soon.
    Warning,
    /// Broken now, or data is at risk.
    Critical,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The check, as `area.what` (`disk.space`, `meta.schema`).
    pub check: String,
    pub severity: Severity,
    /// What was found, with its figures.
    pub summary: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn new(check: impl Into<String>, severity: Severity, summary: impl Into<String>) -> Self {
        Self { check: check.into(), severity, summary: summary.into(), fix: None }
    }

    pub fn ok(check: impl Into<String>, summary: impl Into<String>) -> Self {
        Self::new(check, Severity::Ok, summary)
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// Everything the doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub warren_version: String,
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst severity found.
    pub fn worst(&self) -> Severity {
        self.findings.iter().map(|f| f.severity).max().unwrap_or(Severity::Ok)
    }
}

/// What to examine: the configuration, and the URLs of the processes
/// that run it (none for a stopped deployment).
#[derive(Debug, Clone)]
pub struct Examination<'a> {
    pub config: &'a WarrenConfig,
    pub processes: Vec<String>,
    /// How long one store or process may take to answer.
    pub timeout: Duration,
}

/// Runs every check; never fails — what could not be checked is itself a
/// finding.
pub async fn examine(exam: &Examination<'_>) -> Report {
    let config = exam.config;
    let mut findings = settings::check_config(config);
    findings.extend(host::check_data_dir(&config.data_dir));
    findings.extend(host::check_limits());
    findings.extend(stores::check(config, exam.timeout).await);
    let facts = processes::gather(&exam.processes, exam.timeout).await;
    findings.extend(processes::check(&facts));
    findings.extend(settings::tuning(config, &facts));
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.check.cmp(&b.check)));
    Report { warren_version: env!("CARGO_PKG_VERSION").to_string(), findings }
}

/// Bytes for people: `1.5 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
