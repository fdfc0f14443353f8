//! Restore drills: a backup restored into a scratch directory and checked
//! the way its users would see it.
//!
//! When a backup is taken, [`record_answers`] asks the backup's own
//! moment — the table's version and the meta store's snapshot — a few
//! insights per project, and the manifest keeps the answers beside each
//! day's rows and checksum. [`drill`] restores the backup, compares every
//! day's rows and checksum, and asks the restored stores the same
//! insights: a backup that restores but answers differently fails.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use warren_meta::PersonStore;
use warren_query::{DataFusionBackend, ProjectContext, Query, QueryLimits};
use warren_store::{DaySummary, DeltaStore};

use super::create::META_FILE;
use super::manifest::{DayCheck, Manifest, RecordedAnswer};
use super::restore::{open_table, restore};
use super::target::BackupTarget;
use super::{Progress, Report};
use crate::OpsError;

/// The insights a drill asks each project: events and persons per event
/// name (persons after merges), daily active users over all time, and the
/// persons table.
fn drill_queries() -> Vec<(&'static str, Value)> {
    vec![
        (
            "events and persons per event",
            json!({"kind": "HogQLQuery", "query":
                "SELECT event, count(), count(DISTINCT person_id) FROM events GROUP BY event ORDER BY event"}),
        ),
        (
            "monthly events and active users",
            json!({"kind": "TrendsQuery", "interval": "month", "dateRange": {"date_from": "all"}, "series": [
                {"kind": "EventsNode", "event": null, "math": "total"},
                {"kind": "EventsNode", "event": null, "math": "dau"}
            ]}),
        ),
        (
            "persons by whether identified",
            json!({"kind": "HogQLQuery", "query":
                "SELECT is_identified, count() FROM persons GROUP BY is_identified ORDER BY is_identified"}),
        ),
    ]
}

/// The drill's insights, asked of `table` and `meta` as of `at` for every
/// project with events.
pub(crate) async fn record_answers(
    table: Arc<DeltaStore>,
    meta: Arc<dyn PersonStore>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<RecordedAnswer>, OpsError> {
    let teams = table.team_ids().await?;
    let backend = DataFusionBackend::new(table, meta, QueryLimits::default())
        .map_err(|e| OpsError::Verification(format!("starting queries: {e}")))?;
    let mut answers = Vec::new();
    for team_id in teams {
        let project = ProjectContext::new(team_id, "UTC", at)
            .map_err(|e| OpsError::Verification(format!("project {team_id}: {e}")))?;
        for (name, query) in drill_queries() {
            let parsed: Query = serde_json::from_value(query.clone())
                .map_err(|e| OpsError::Verification(format!("the drill's query {name:?}: {e}")))?;
            let answer = warren_query::run(&parsed, &project, &backend).await.map_err(|e| {
                OpsError::Verification(format!("the drill's query {name:?} on project {team_id}: {e}"))
            })?;
            answers.push(RecordedAnswer {
                team_id,
                name: name.to_string(),
                query,
                results: answer.get("results").cloned().unwrap_or(Value::Null),
            });
        }
    }
    Ok(answers)
}

/// Days as manifests keep them (`YYYY-MM-DD` → rows and checksum).
pub(crate) fn day_checks(days: Vec<DaySummary>) -> BTreeMap<String, DayCheck> {
    days.into_iter()
        .map(|day| {
            (
                day.day.format("%Y-%m-%d").to_string(),
                DayCheck { rows: day.rows, checksum: format!("{:016x}", day.checksum) },
            )
        })
        .collect()
}

/// What a drill found.
#[derive(Debug, Clone)]
pub struct DrillReport {
    pub backup: String,
    pub days: usize,
    pub events: u64,
    pub answers: usize,
}

/// Restores backup `id` into `scratch` (new or empty) and checks it: every
/// file against its checksum (the restore does that), every day's rows and
/// checksum, and the recorded insights' answers.
pub async fn drill(
    target: &BackupTarget,
    id: &str,
    scratch: &std::path::Path,
    report: &Report<'_>,
) -> Result<DrillReport, OpsError> {
    if !target.manifest(id).await?.checks_recorded {
        return Err(OpsError::Refused(format!(
            "backup {id} was taken without checks to compare with (`--no-checks`, a scheduled incremental, or an \
             older Warren): drill a full backup"
        )));
    }
    let manifest = restore(target, id, scratch, report).await?;
    report(&Progress::phase("comparing every day's rows and checksum"));
    let table = Arc::new(open_table(scratch).await?);
    check_days(&manifest, day_checks(table.day_summaries().await?))?;

    report(&Progress::phase("asking the restored stores the recorded insights"));
    let meta =
        warren_meta::SqlMeta::connect(&format!("sqlite://{}", scratch.join(META_FILE).display())).await?;
    let meta = Arc::new(meta);
    let at = chrono::DateTime::parse_from_rfc3339(&manifest.created_at)
        .map_err(|e| OpsError::Verification(format!("backup {id} has no readable time: {e}")))?
        .to_utc();
    let answers = record_answers(table, meta.clone(), at).await;
    meta.close().await;
    let answers = answers?;
    compare_answers(&manifest, &answers)?;
    Ok(DrillReport {
        backup: manifest.id.clone(),
        days: manifest.days.len(),
        events: manifest.events(),
        answers: answers.len(),
    })
}

fn check_days(manifest: &Manifest, restored: BTreeMap<String, DayCheck>) -> Result<(), OpsError> {
    let differing: Vec<String> = manifest
        .days
        .keys()
        .chain(restored.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|day| manifest.days.get(*day) != restored.get(*day))
        .map(|day| format!("{day}: backed up {:?}, restored {:?}", manifest.days.get(day), restored.get(day)))
        .collect();
    if !differing.is_empty() {
        return Err(OpsError::Verification(format!(
            "the restored events differ from backup {} on {} days: {}",
            manifest.id,
            differing.len(),
            differing.join("; ")
        )));
    }
    // The manifest's rows per day come from the table's log (each file's
    // recorded row count); the scan just read the data files themselves.
    let scanned: BTreeMap<String, u64> =
        restored.iter().map(|(day, check)| (day.clone(), check.rows)).collect();
    if scanned != manifest.events_per_day {
        return Err(OpsError::Verification(format!(
            "backup {}'s table log lists {:?} rows per day, its data files hold {scanned:?}",
            manifest.id, manifest.events_per_day
        )));
    }
    Ok(())
}

fn compare_answers(manifest: &Manifest, restored: &[RecordedAnswer]) -> Result<(), OpsError> {
    let key = |answer: &RecordedAnswer| (answer.team_id, answer.name.clone());
    let restored: BTreeMap<_, _> = restored.iter().map(|answer| (key(answer), answer)).collect();
    for recorded in &manifest.answers {
        match restored.get(&key(recorded)) {
            Some(answer) if answer.results == recorded.results => {}
            Some(answer) => {
                return Err(OpsError::Verification(format!(
                    "project {} answers {:?} differently after the restore: recorded {}, restored {}",
                    recorded.team_id, recorded.name, recorded.results, answer.results
                )))
            }
            None => {
                return Err(OpsError::Verification(format!(
                    "project {} has no answer to {:?} after the restore",
                    recorded.team_id, recorded.name
                )))
            }
        }
    }
    Ok(())
}
