//! The running processes, each read over HTTP: ready or not, its clock
//! against this machine's (from the `Date` of its answer), and from its
//! `/metrics` its build, limits, ingest lag and the log's backlog. Across
//! processes: every one on the same version.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use warren_core::exposition::Reading;
use warren_core::metrics as names;

use super::{bytes, host, Finding, Severity};

/// What one process told.
#[derive(Debug, Clone)]
pub(crate) struct ProcessFacts {
    pub url: String,
    /// Whether `/_readiness` answered 200, or why not.
    pub ready: Result<(), String>,
    /// Its clock minus this machine's, seconds, when it answered.
    pub clock_skew_secs: Option<f64>,
    /// Its metrics, or why they could not be read.
    pub metrics: Result<Reading, String>,
}

impl ProcessFacts {
    pub(crate) fn version(&self) -> Option<String> {
        let reading = self.metrics.as_ref().ok()?;
        reading.series(names::BUILD_INFO).find_map(|(labels, _)| labels.get("version").cloned())
    }
}

pub(crate) async fn gather(urls: &[String], timeout: Duration) -> Vec<ProcessFacts> {
    let client = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
    let mut facts = Vec::with_capacity(urls.len());
    for url in urls {
        facts.push(gather_one(&client, url.trim_end_matches('/')).await);
    }
    facts
}

async fn gather_one(client: &reqwest::Client, url: &str) -> ProcessFacts {
    let sent = Instant::now();
    let sent_at = chrono::Utc::now();
    let answer = client.get(format!("{url}/_readiness")).send().await;
    let round_trip = sent.elapsed();
    let (ready, clock_skew_secs) = match answer {
        Ok(answer) => {
            // The Date header has whole seconds: compare it with the
            // middle of the round trip, truncated the same way.
            let skew = answer
                .headers()
                .get(reqwest::header::DATE)
                .and_then(|date| date.to_str().ok())
                .and_then(|date| chrono::DateTime::parse_from_rfc2822(date).ok())
                .map(|theirs| {
                    let ours = sent_at + round_trip / 2;
                    (theirs.timestamp() - ours.timestamp()) as f64
                });
            let ready = if answer.status().is_success() {
                Ok(())
            } else {
                Err(format!("/_readiness answered {}", answer.status()))
            };
            (ready, skew)
        }
        Err(error) => (Err(error.to_string()), None),
    };
    let metrics = match client.get(format!("{url}/metrics")).send().await {
        Ok(answer) if answer.status().is_success() => {
            answer.text().await.map(|text| Reading::parse(&text)).map_err(|e| e.to_string())
        }
        Ok(answer) if answer.status() == reqwest::StatusCode::NOT_FOUND => {
            Err("/metrics is on the admin listener (`[http] admin_listen`): give that URL too".into())
        }
        Ok(answer) => Err(format!("/metrics answered {}", answer.status())),
        Err(error) => Err(error.to_string()),
    };
    ProcessFacts { url: url.to_string(), ready, clock_skew_secs, metrics }
}

pub(super) fn check(facts: &[ProcessFacts]) -> Vec<Finding> {
    let mut findings = Vec::new();
    if facts.is_empty() {
        findings.push(Finding::new(
            "process.reachable",
            Severity::Info,
            "no process examined: the deployment is stopped, or give `--url` for each process",
        ));
    }
    for process in facts {
        findings.extend(check_one(process));
    }
    findings.extend(version_skew(facts));
    findings
}

fn check_one(process: &ProcessFacts) -> Vec<Finding> {
    let url = &process.url;
    let mut findings = vec![match &process.ready {
        Ok(()) => Finding::ok("process.reachable", format!("{url} is ready")),
        Err(error) => Finding::new("process.reachable", Severity::Critical, format!("{url} is not ready: {error}"))
            .fix("see the process's log; `/_readiness` fails while the meta store or the event log does not answer"),
    }];
    if let Some(skew) = process.clock_skew_secs {
        findings.push(clock_skew(url, skew));
    }
    let reading = match &process.metrics {
        Ok(reading) => reading,
        Err(error) => {
            if process.ready.is_ok() {
                findings.push(Finding::new("process.metrics", Severity::Warning, format!("{url}: {error}")));
            }
            return findings;
        }
    };
    let lag = reading.sum(names::INGEST_LAG_RECORDS, |_| true);
    if reading.series(names::INGEST_LAG_RECORDS).next().is_some() {
        findings.push(backlog("ingest.lag", url, "records not yet stored by ingest", lag));
    }
    // The log keeps every record until its slowest consumer has it.
    let slowest = reading
        .series(names::LOG_CONSUMER_LAG)
        .filter_map(|(labels, value)| labels.get("group").map(|group| (group.clone(), value)))
        .fold(std::collections::BTreeMap::<String, f64>::new(), |mut groups, (group, value)| {
            *groups.entry(group).or_default() += value;
            groups
        })
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((group, records)) = slowest {
        findings.push(backlog("log.backlog", url, &format!("records the log keeps for `{group}`"), records));
    }
    if let Some(replica) = reading.gauge(names::INGEST_REPLICA_LAG_RECORDS) {
        findings.push(backlog(
            "clickhouse.replica_lag",
            url,
            "records the cluster has not received",
            replica,
        ));
    }
    if let Some(limit) = reading.gauge(names::PROCESS_OPEN_FILES_LIMIT) {
        findings.push(host::open_files("limits.open_files", limit as u64, url));
    }
    if let Some(limit) = reading.gauge(names::PROCESS_MEMORY_LIMIT_BYTES) {
        findings.push(memory_limit(url, limit as u64));
    }
    findings
}

fn clock_skew(url: &str, skew: f64) -> Finding {
    const CHECK: &str = "clock.skew";
    let summary = format!("{url}'s clock is {skew:+.0} s from this machine's");
    // The Date header counts whole seconds, and answers take time.
    let fix = "run NTP (chrony or systemd-timesyncd) on every machine: capture corrects SDK clocks \
               against its own, and ingest orders persons' updates by it";
    if skew.abs() > 30.0 {
        Finding::new(CHECK, Severity::Critical, summary).fix(fix)
    } else if skew.abs() > 2.0 {
        Finding::new(CHECK, Severity::Warning, summary).fix(fix)
    } else {
        Finding::ok(CHECK, summary)
    }
}

fn backlog(check: &str, url: &str, what: &str, records: f64) -> Finding {
    let summary = format!("{url}: {records:.0} {what}");
    let fix = "if it keeps growing, ingest cannot keep up: see `warren_ingest_stage_duration_seconds` \
               for the slow stage, and the tuning advice below";
    if records > 1_000_000.0 {
        Finding::new(check, Severity::Critical, summary).fix(fix)
    } else if records > 100_000.0 {
        Finding::new(check, Severity::Warning, summary).fix(fix)
    } else {
        Finding::ok(check, summary)
    }
}

fn memory_limit(url: &str, limit: u64) -> Finding {
    const CHECK: &str = "limits.memory";
    let summary = format!("{url}: memory limit {}", bytes(limit));
    if limit < 1024 * 1024 * 1024 {
        Finding::new(CHECK, Severity::Warning, summary)
            .fix("give Warren at least 1 GiB; ingest's batches and queries are held in memory")
    } else {
        Finding::ok(CHECK, summary)
    }
}

/// Every process on one version; a rollout in progress shows here.
fn version_skew(facts: &[ProcessFacts]) -> Option<Finding> {
    const CHECK: &str = "version.skew";
    let versions: BTreeSet<String> = facts.iter().filter_map(ProcessFacts::version).collect();
    let mine = env!("CARGO_PKG_VERSION");
    match versions.len() {
        0 => None,
        1 => {
            let theirs = versions.into_iter().next().unwrap_or_default();
            Some(if theirs == mine {
                Finding::ok(CHECK, format!("every process runs {theirs}"))
            } else {
                Finding::new(
                    CHECK,
                    Severity::Info,
                    format!("every process runs {theirs}; this doctor is {mine}"),
                )
            })
        }
        _ => {
            let each: Vec<String> =
                facts.iter().filter_map(|f| f.version().map(|v| format!("{} runs {v}", f.url))).collect();
            Some(
                Finding::new(CHECK, Severity::Warning, format!("processes disagree: {}", each.join(", ")))
                    .fix("finish the rollout: every role of a deployment should run one version"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(url: &str, exposition: &str, skew: Option<f64>) -> ProcessFacts {
        ProcessFacts {
            url: url.into(),
            ready: Ok(()),
            clock_skew_secs: skew,
            metrics: Ok(Reading::parse(exposition)),
        }
    }

    #[test]
    fn two_versions_are_a_rollout_left_half_done() {
        let old = process("http://a", "warren_build_info{version=\"0.0.9\",role=\"capture\"} 1\n", Some(0.0));
        let new = process("http://b", "warren_build_info{version=\"0.1.0\",role=\"query\"} 1\n", Some(1.0));
        let findings = check(&[old, new]);
        let skew = findings.iter().find(|f| f.check == "version.skew").expect("a version finding");
        assert_eq!(skew.severity, Severity::Warning);
        assert!(skew.summary.contains("http://a runs 0.0.9") && skew.summary.contains("http://b runs 0.1.0"));
    }

    #[test]
    fn lag_limits_and_backlog_are_read_from_metrics() {
        let exposition = "warren_ingest_lag_records 2500000\n\
                          warren_log_consumer_lag_records{group=\"ingest\",partition=\"0\"} 150000\n\
                          warren_log_consumer_lag_records{group=\"ingest\",partition=\"1\"} 1000\n\
                          warren_process_open_files_limit 1024\n\
                          warren_process_memory_limit_bytes 536870912\n";
        let findings = check(&[process("http://a", exposition, None)]);
        let severity = |check: &str| findings.iter().find(|f| f.check == check).map(|f| f.severity);
        assert_eq!(severity("ingest.lag"), Some(Severity::Critical));
        assert_eq!(severity("log.backlog"), Some(Severity::Warning));
        assert_eq!(severity("limits.open_files"), Some(Severity::Warning));
        assert_eq!(severity("limits.memory"), Some(Severity::Warning));
    }
}
