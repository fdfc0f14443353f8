//! Which backups to keep: every one of the last hours, then one a day and
//! one a week, and always every backup a kept one builds on — a chain is
//! never cut under a backup that needs it. The archived log is kept from
//! the oldest kept backup's offsets on, so every kept backup can still be
//! rolled forward.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Utc};

use super::archive::prune_archive;
use super::manifest::Manifest;
use super::target::BackupTarget;
use crate::OpsError;

/// How many backups to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Every backup taken within this many hours.
    pub keep_all_hours: u64,
    /// The newest backup of each of the last this many days (UTC).
    pub keep_daily: u32,
    /// The newest backup of each of the last this many ISO weeks.
    pub keep_weekly: u32,
}

/// What retention deleted.
#[derive(Debug, Clone, Default)]
pub struct RetentionOutcome {
    pub deleted: Vec<String>,
    pub kept: usize,
    pub archive_objects_deleted: u64,
}

/// The ids of `finished` (oldest first) that `policy` keeps at `now`:
/// always the newest, and every backup a kept one depends on.
pub fn backups_to_keep(
    finished: &[Manifest],
    now: DateTime<Utc>,
    policy: RetentionPolicy,
) -> BTreeSet<String> {
    let taken: Vec<(DateTime<Utc>, &Manifest)> = finished
        .iter()
        .filter_map(|manifest| {
            Some((DateTime::parse_from_rfc3339(&manifest.created_at).ok()?.to_utc(), manifest))
        })
        .collect();
    let mut keep: BTreeSet<String> = finished.last().map(|newest| newest.id.clone()).into_iter().collect();
    let recent = i64::try_from(policy.keep_all_hours)
        .ok()
        .and_then(chrono::Duration::try_hours)
        .and_then(|hours| now.checked_sub_signed(hours))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    keep.extend(taken.iter().filter(|(at, _)| *at >= recent).map(|(_, manifest)| manifest.id.clone()));
    // The newest backup of each period: later backups overwrite earlier.
    let mut daily: BTreeMap<chrono::NaiveDate, &str> = BTreeMap::new();
    let mut weekly: BTreeMap<(i32, u32), &str> = BTreeMap::new();
    for (at, manifest) in &taken {
        daily.insert(at.date_naive(), &manifest.id);
        weekly.insert((at.iso_week().year(), at.iso_week().week()), &manifest.id);
    }
    let today = now.date_naive();
    for (day, id) in &daily {
        if (today - *day).num_days() < i64::from(policy.keep_daily) {
            keep.insert(id.to_string());
        }
    }
    let this_week = today.iso_week();
    for ((year, week), id) in &weekly {
        let Some(monday) = chrono::NaiveDate::from_isoywd_opt(*year, *week, chrono::Weekday::Mon) else {
            continue;
        };
        let this_monday =
            chrono::NaiveDate::from_isoywd_opt(this_week.year(), this_week.week(), chrono::Weekday::Mon)
                .unwrap_or(today);
        if (this_monday - monday).num_weeks() < i64::from(policy.keep_weekly) {
            keep.insert(id.to_string());
        }
    }
    let needs: BTreeMap<&str, BTreeSet<&str>> =
        finished.iter().map(|manifest| (manifest.id.as_str(), manifest.depends_on())).collect();
    let mut todo: Vec<String> = keep.iter().cloned().collect();
    while let Some(id) = todo.pop() {
        for needed in needs.get(id.as_str()).into_iter().flatten() {
            if keep.insert(needed.to_string()) {
                todo.push(needed.to_string());
            }
        }
    }
    keep
}

/// Deletes the scheduled backups on `target` that `policy` does not keep,
/// newest first (a backup's dependants are newer than it), then each
/// log's archive that no kept backup needs. Backups taken by hand are
/// never deleted, nor anything they need.
pub async fn apply_retention(
    target: &BackupTarget,
    policy: RetentionPolicy,
    now: DateTime<Utc>,
) -> Result<RetentionOutcome, OpsError> {
    let listing = target.list().await?;
    let scheduled: Vec<Manifest> = listing.finished.iter().filter(|m| m.scheduled).cloned().collect();
    let mut keep = backups_to_keep(&scheduled, now, policy);
    keep.extend(by_hand_and_what_they_need(&listing.finished));
    let mut outcome = RetentionOutcome { kept: keep.len(), ..RetentionOutcome::default() };
    for manifest in listing.finished.iter().rev().filter(|manifest| !keep.contains(&manifest.id)) {
        outcome.deleted.extend(target.delete(&manifest.id, false).await?);
    }
    // Scheduled backups decide how far back each log's archive goes.
    let mut keep_from: BTreeMap<&str, BTreeMap<u32, u64>> = BTreeMap::new();
    let kept = scheduled.iter().filter(|manifest| keep.contains(&manifest.id));
    for manifest in kept {
        let Some(log_id) = manifest.log_id.as_deref() else { continue };
        let oldest = keep_from.entry(log_id).or_default();
        for partition in 0..manifest.log_partitions {
            let offset = manifest.ingest_offsets.get(&partition).copied().unwrap_or(0);
            let entry = oldest.entry(partition).or_insert(offset);
            *entry = (*entry).min(offset);
        }
    }
    for (log_id, from) in keep_from {
        outcome.archive_objects_deleted += prune_archive(target, log_id, &from).await?;
    }
    Ok(outcome)
}

/// The backups taken by hand and every backup they build on.
fn by_hand_and_what_they_need(finished: &[Manifest]) -> BTreeSet<String> {
    finished
        .iter()
        .filter(|manifest| !manifest.scheduled)
        .flat_map(|manifest| {
            let needed = manifest.depends_on().into_iter().map(str::to_string);
            std::iter::once(manifest.id.clone()).chain(needed)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::{BackupKind, FileEntry, MANIFEST_FORMAT};

    /// A backup taken `hours_ago` before `now`, storing one file of its
    /// own and listing `parent`'s.
    fn backup(now: DateTime<Utc>, hours_ago: i64, parent: Option<&Manifest>) -> Manifest {
        let at = now - chrono::Duration::hours(hours_ago);
        let id = at.format("%Y%m%dT%H%M%S%.3fZ").to_string();
        let own = FileEntry {
            path: id.clone(),
            size: 1,
            sha256: String::new(),
            stored_in: id.clone(),
            chunks: vec![],
        };
        let mut files = parent.map(|parent| parent.files.clone()).unwrap_or_default();
        files.push(own);
        Manifest {
            format: MANIFEST_FORMAT,
            id,
            kind: if parent.is_some() { BackupKind::Incremental } else { BackupKind::Full },
            parent: parent.map(|parent| parent.id.clone()),
            created_at: at.to_rfc3339(),
            warren_version: String::new(),
            table_version: 0,
            log_partitions: 1,
            log_id: None,
            scheduled: true,
            ingest_offsets: BTreeMap::new(),
            events_per_day: BTreeMap::new(),
            checks_recorded: false,
            days: BTreeMap::new(),
            answers: Vec::new(),
            files,
        }
    }

    #[test]
    fn keeps_recent_daily_and_weekly_backups_and_every_chain_they_need() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z").expect("test setup").to_utc();
        let policy = RetentionPolicy { keep_all_hours: 6, keep_daily: 3, keep_weekly: 2 };
        // A full backup a day for 30 days, each followed by an
        // incremental an hour later.
        let mut finished = Vec::new();
        for day in (0..30).rev() {
            let full = backup(now, day * 24 + 2, None);
            let incremental = backup(now, day * 24 + 1, Some(&full));
            finished.extend([full, incremental]);
        }
        let keep = backups_to_keep(&finished, now, policy);
        let kept: Vec<&Manifest> = finished.iter().filter(|m| keep.contains(&m.id)).collect();
        // Today's pair (within 6 hours); the newest of the two days before,
        // with their fulls; the newest of last week, with its full.
        assert_eq!(kept.len(), 8, "{keep:?}");
        for manifest in &kept {
            for needed in manifest.depends_on() {
                assert!(keep.contains(needed), "{} is kept without {needed}", manifest.id);
            }
        }
        assert!(keep.contains(&finished.last().expect("test setup").id));
        assert!(!keep.contains(&finished[0].id), "a month-old backup is kept");
    }

    #[test]
    fn the_newest_backup_is_kept_however_old() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z").expect("test setup").to_utc();
        let finished = vec![backup(now, 24 * 100, None), backup(now, 24 * 90, None)];
        let none = RetentionPolicy { keep_all_hours: 0, keep_daily: 0, keep_weekly: 0 };
        let keep = backups_to_keep(&finished, now, none);
        assert_eq!(keep.into_iter().collect::<Vec<_>>(), vec![finished[1].id.clone()]);
    }
}
