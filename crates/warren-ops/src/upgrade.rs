//! `warren upgrade check`: run by the new binary against the existing
//! deployment before it serves, it says what the upgrade will change and
//! refuses what is unsafe. Nothing is changed.
//!
//! - the meta store's migrations this build will apply, and any it does
//!   not know (a newer build ran here: a downgrade, refused);
//! - the ClickHouse cluster's pending operations, marking those that
//!   rewrite data and so run long on a large cluster;
//! - configuration keys this build does not know (renamed or removed),
//!   with the nearest known key: `serve` refuses to start on them;
//! - a backup from the last day to go back to;
//! - running processes on a newer version than this build (a downgrade).

use std::time::Duration;

use warren_core::config::WarrenConfig;
use warren_core::ports::OperationState;
use warren_meta::{MetaSchema, MigrationState};

use crate::doctor::{processes, stores, Finding, Report, Severity};

/// What to check.
#[derive(Debug, Clone)]
pub struct UpgradeInputs<'a> {
    /// The configuration, without the keys in `unknown_keys`.
    pub config: &'a WarrenConfig,
    /// Keys of the configuration file this build does not know.
    pub unknown_keys: &'a [String],
    /// Running processes of the deployment.
    pub processes: &'a [String],
    pub timeout: Duration,
}

pub async fn check(inputs: &UpgradeInputs<'_>) -> Report {
    let mut findings = config_keys(inputs.unknown_keys);
    let (reachable, meta) = stores::connect_meta(inputs.config, inputs.timeout).await;
    if reachable.severity == Severity::Critical {
        findings.push(reachable);
    }
    if let Some(meta) = &meta {
        findings.push(match meta.migration_status().await {
            Ok(migrations) => meta_migrations(&migrations),
            Err(error) => Finding::new(
                "upgrade.meta",
                Severity::Critical,
                format!("cannot read the migrations: {error}"),
            ),
        });
        if let Some(operations) =
            stores::clickhouse_operations(inputs.config, meta.clone(), inputs.timeout).await
        {
            findings.push(match operations {
                Ok(operations) => clickhouse_operations(&operations),
                // The check the upgrade hangs on, whatever the cause.
                Err(finding) => Finding { check: "upgrade.clickhouse".into(), ..finding },
            });
        }
        meta.close().await;
    }
    // A backup to go back to is advice: the upgrade is not refused for it.
    let mut backup = stores::backups(inputs.config, inputs.timeout, chrono::Duration::hours(24)).await;
    backup.severity = backup.severity.min(Severity::Warning);
    findings.push(backup);
    let facts = processes::gather(inputs.processes, inputs.timeout).await;
    findings.extend(running_versions(&facts));
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.check.cmp(&b.check)));
    Report { warren_version: env!("CARGO_PKG_VERSION").to_string(), findings }
}

fn config_keys(unknown: &[String]) -> Vec<Finding> {
    if unknown.is_empty() {
        return vec![Finding::ok("upgrade.config", "every configuration key is known to this build")];
    }
    let known = known_keys();
    unknown
        .iter()
        .map(|key| {
            let nearest = known
                .iter()
                .map(|candidate| (strsim::levenshtein(key, candidate), candidate))
                .min()
                .filter(|(distance, _)| *distance <= key.len() / 2);
            let fix = match nearest {
                Some((_, candidate)) => format!("renamed? use `{candidate}`, or remove the key"),
                None => "remove the key: this build has no such setting".to_string(),
            };
            Finding::new(
                "upgrade.config",
                Severity::Critical,
                format!(
                    "`{key}` is not a setting of {}: `warren serve` refuses to start",
                    env!("CARGO_PKG_VERSION")
                ),
            )
            .fix(fix)
        })
        .collect()
}

/// Every setting's dotted path (`event_log.partitions`).
fn known_keys() -> Vec<String> {
    let mut keys = Vec::new();
    let defaults = serde_json::to_value(WarrenConfig::default()).unwrap_or_default();
    walk_known(&defaults, "", &mut keys);
    keys
}

fn walk_known(value: &serde_json::Value, prefix: &str, keys: &mut Vec<String>) {
    if let serde_json::Value::Object(map) = value {
        for (key, value) in map {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            keys.push(path.clone());
            walk_known(value, &path, keys);
        }
    }
}

/// Removes from `file` (a configuration file as JSON) every key this build
/// does not know, and returns their dotted paths. A map whose default is
/// empty (`storage_options`) takes any key.
pub fn remove_unknown_keys(file: &mut serde_json::Value) -> Vec<String> {
    let defaults = serde_json::to_value(WarrenConfig::default()).unwrap_or_default();
    let mut unknown = Vec::new();
    prune(file, &defaults, "", &mut unknown);
    unknown
}

fn prune(value: &mut serde_json::Value, known: &serde_json::Value, prefix: &str, unknown: &mut Vec<String>) {
    let (serde_json::Value::Object(map), serde_json::Value::Object(known)) = (value, known) else { return };
    if known.is_empty() {
        return;
    }
    map.retain(|key, value| {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match known.get(key) {
            Some(known) => {
                prune(value, known, &path, unknown);
                true
            }
            None => {
                unknown.push(path);
                false
            }
        }
    });
}

fn meta_migrations(migrations: &[warren_meta::MigrationStatus]) -> Finding {
    const CHECK: &str = "upgrade.meta";
    let unknown = stores::migrations_in(migrations, MigrationState::Unknown);
    let pending = stores::migrations_in(migrations, MigrationState::Pending);
    if !unknown.is_empty() {
        Finding::new(
            CHECK,
            Severity::Critical,
            format!(
                "refusing a downgrade: the meta store has migrations {} does not know: {}",
                env!("CARGO_PKG_VERSION"),
                unknown.join(", ")
            ),
        )
        .fix("run the version that applied them, or restore a backup taken before them")
    } else if pending.is_empty() {
        Finding::ok(CHECK, "the meta store's schema is already this build's")
    } else {
        Finding::new(
            CHECK,
            Severity::Info,
            format!("the meta store migrates at the next start: {}", pending.join(", ")),
        )
        .fix("quick schema changes, applied by `warren serve` or `warren migrate up`")
    }
}

fn clickhouse_operations(operations: &[warren_store::migrations::OperationStatus]) -> Finding {
    const CHECK: &str = "upgrade.clickhouse";
    let pending: Vec<_> = operations.iter().filter(|op| op.state != OperationState::Completed).collect();
    let long: Vec<String> = pending
        .iter()
        .filter(|op| op.rewrites_data)
        .map(|op| format!("{} {} #{} {}", op.version, op.migration, op.operation, op.description))
        .collect();
    if pending.is_empty() {
        Finding::ok(CHECK, "the cluster's schema is already this build's")
    } else if long.is_empty() {
        Finding::new(
            CHECK,
            Severity::Info,
            format!("{} cluster operations to apply, none rewrites data", pending.len()),
        )
        .fix("`warren migrate up` before the rollout")
    } else {
        Finding::new(
            CHECK,
            Severity::Warning,
            format!("{} cluster operations to apply; these rewrite data and run long: {}", pending.len(), long.join(", ")),
        )
        .fix("run `warren migrate up` ahead of the rollout (it resumes if stopped) and follow it with `warren migrate status`")
    }
}

/// A process newer than this build means the upgrade is a downgrade.
fn running_versions(facts: &[processes::ProcessFacts]) -> Vec<Finding> {
    let mine = version_numbers(env!("CARGO_PKG_VERSION"));
    facts
        .iter()
        .filter_map(|process| process.version().map(|version| (process, version)))
        .map(|(process, theirs)| {
            if version_numbers(&theirs) > mine {
                Finding::new(
                    "upgrade.version",
                    Severity::Critical,
                    format!(
                        "refusing a downgrade: {} runs {theirs}, newer than {}",
                        process.url,
                        env!("CARGO_PKG_VERSION")
                    ),
                )
                .fix("use a build at least as new as the running one")
            } else {
                Finding::ok("upgrade.version", format!("{} runs {theirs}", process.url))
            }
        })
        .collect()
}

fn version_numbers(version: &str) -> Vec<u64> {
    version.split(['.', '-', '+']).map_while(|part| part.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_found_at_any_depth_and_maps_take_any_key() {
        let mut file = serde_json::json!({
            "listen": "0.0.0.0:8000",
            "old_setting": 1,
            "event_log": {"partitions": 4, "segment_size": 10},
            "event_store": {"storage_options": {"aws_region": "eu"}},
        });
        let unknown = remove_unknown_keys(&mut file);
        assert_eq!(unknown, ["event_log.segment_size", "old_setting"]);
        assert_eq!(file["event_log"], serde_json::json!({"partitions": 4}));
        assert_eq!(file["event_store"]["storage_options"]["aws_region"], "eu");
        let findings = config_keys(&unknown);
        assert_eq!(
            findings[0].fix.as_deref(),
            Some("renamed? use `event_log.segment_bytes`, or remove the key")
        );
        assert!(findings.iter().all(|f| f.severity == Severity::Critical));
    }

    #[test]
    fn versions_compare_by_number() {
        assert!(version_numbers("0.10.0") > version_numbers("0.9.3"));
        assert!(version_numbers("1.0.0-rc1") == version_numbers("1.0.0"));
    }
}
