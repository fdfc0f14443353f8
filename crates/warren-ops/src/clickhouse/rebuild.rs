//! Re-creating a cluster's tables from the canonical Delta table, one UTC
//! day (one Delta partition) at a time, and the meta store's persons
//! beside them ([`load_persons`]), so ClickHouse can be added to a running
//! deployment or rebuilt after it was lost (`warren clickhouse rebuild`).
//!
//! It keeps no state of its own: a day is done when its rows and checksum
//! on the cluster ([`DayDigest`]) equal the Delta table's. A run that is
//! stopped anywhere is finished by running it again — a day loaded halfway
//! is loaded again whole, and the replacing engine keeps one row per uuid.
//! Live ingest writing both stores at the same time only adds rows to
//! both: days are compared over the rows received before a [`Cut`] both
//! stores have passed, and a day that differs after loading is compared
//! again for a while.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use warren_core::person::{PersonsSnapshot, TeamId};
use warren_meta::PersonStore;
use warren_store::{ClickHouseStore, Cut, DayDigest, DeltaStore, EventStore};

use crate::OpsError;

/// Persons read from the meta store and loaded at a time.
const PERSONS_PAGE: u32 = 5_000;

/// Rows per insert: big enough for ClickHouse to like the parts, small
/// enough to keep the request bounded.
const CHUNK_ROWS: usize = 20_000;

/// How often, a second apart, a day that differs after loading is
/// compared again before the rebuild gives up on it.
const SETTLE_TRIES: u32 = 10;

/// What happened to one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuiltDay {
    /// The day as the Delta table and the cluster held it once verified.
    pub digest: DayDigest,
    /// Whether this run loaded it (false: the cluster had it already).
    pub loaded: bool,
    /// Time spent reading the day from Delta and inserting it into the
    /// cluster (zero when it was there already).
    pub read: Duration,
    pub insert: Duration,
}

/// Loads every day the cluster does not hold exactly as the Delta table
/// does — compared over the rows `cut` takes — and verifies each; calls
/// `progress` after each day, in order, oldest first.
pub async fn rebuild_days(
    delta: &DeltaStore,
    clickhouse: &ClickHouseStore,
    cut: Cut,
    mut progress: impl FnMut(&RebuiltDay, usize, usize),
) -> Result<Vec<RebuiltDay>, OpsError> {
    let days = delta.day_digests(None, cut).await?;
    let present = clickhouse.day_digests(None, cut).await?;
    let mut done = Vec::with_capacity(days.len());
    // A day that does not verify does not keep the rest from loading.
    let mut failed = Vec::new();
    for (index, expected) in days.iter().enumerate() {
        let there = present.iter().find(|digest| digest.day == expected.day);
        let report = if there == Some(expected) {
            RebuiltDay { digest: *expected, loaded: false, read: Duration::ZERO, insert: Duration::ZERO }
        } else {
            match load_day(delta, clickhouse, expected.day, cut).await {
                Ok(report) => report,
                Err(OpsError::Verification(why)) => {
                    failed.push(why);
                    continue;
                }
                Err(other) => return Err(other),
            }
        };
        progress(&report, index + 1, days.len());
        done.push(report);
    }
    if !failed.is_empty() {
        return Err(OpsError::Verification(format!(
            "{} of {} days do not verify: {}",
            failed.len(),
            days.len(),
            failed.join("; ")
        )));
    }
    Ok(done)
}

/// Loads one day of the Delta table into the cluster and verifies it over
/// the rows `cut` takes.
pub(crate) async fn load_day(
    delta: &DeltaStore,
    clickhouse: &ClickHouseStore,
    day: NaiveDate,
    cut: Cut,
) -> Result<RebuiltDay, OpsError> {
    let started = Instant::now();
    let condition = format!("event_date = DATE '{}'", day.format("%Y-%m-%d"));
    let mut rest = delta.read_rows(Some(&condition)).await?;
    let read = started.elapsed();
    let started = Instant::now();
    while !rest.is_empty() {
        let chunk: Vec<_> = rest.drain(..rest.len().min(CHUNK_ROWS)).collect();
        clickhouse.append("rebuild", chunk, &[]).await?;
    }
    let insert = started.elapsed();
    let digest = settled(delta, clickhouse, day, cut).await?;
    Ok(RebuiltDay { digest, loaded: true, read, insert })
}

/// The day's digest once the cluster's equals the Delta table's over the
/// rows `cut` takes, compared a few times a second apart (ingest may still
/// be writing rows the cut takes); a verification error naming both when
/// it never does.
pub async fn settled(
    delta: &DeltaStore,
    clickhouse: &ClickHouseStore,
    day: NaiveDate,
    cut: Cut,
) -> Result<DayDigest, OpsError> {
    let mut tries = 0;
    loop {
        let expected = delta.day_digests(Some(day), cut).await?.pop();
        let held = clickhouse.day_digests(Some(day), cut).await?.pop();
        if expected == held {
            return Ok(expected.unwrap_or(DayDigest { day, rows: 0, checksum: 0 }));
        }
        tries += 1;
        if tries == SETTLE_TRIES {
            let rows = |digest: Option<DayDigest>| digest.map_or(0, |d| d.rows);
            let what = if rows(held) == rows(expected) {
                "the same number of rows with other content".to_string()
            } else {
                format!("{} rows against the Delta table's {}", rows(held), rows(expected))
            };
            return Err(OpsError::Verification(format!("{day}: the cluster holds {what}")));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How the loaded persons meet what the cluster holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonsLoad {
    /// Below anything ingest writes (version 0): for a cluster ingest
    /// writes beside the table while the rebuild runs.
    BelowIngest,
    /// Replacing what the cluster holds (the store's clock, persons merged
    /// away deleted): for a cluster ingest does not write — one behind the
    /// table, whose persons may be older than the meta store's.
    Replace,
}

/// Loads the persons, distinct ids and overrides of every project with
/// events in the Delta table from the meta store, a page at a time; calls
/// `progress(team, persons loaded so far)`. Returns `(team, persons)` per
/// project. Running it again writes the same rows again, which changes
/// nothing.
pub async fn load_persons(
    delta: &DeltaStore,
    meta: &dyn PersonStore,
    clickhouse: &ClickHouseStore,
    load: PersonsLoad,
    mut progress: impl FnMut(i64, u64),
) -> Result<Vec<(i64, u64)>, OpsError> {
    let mut done = Vec::new();
    for team in delta.team_ids().await? {
        let loaded = load_persons_of(meta, clickhouse, team, load, |n| progress(team, n)).await?;
        done.push((team, loaded));
    }
    Ok(done)
}

/// One project's persons, then its overrides; checks that the cluster then
/// holds as many live persons as the meta store. Returns the persons loaded.
pub async fn load_persons_of(
    meta: &dyn PersonStore,
    clickhouse: &ClickHouseStore,
    team_id: TeamId,
    load: PersonsLoad,
    mut progress: impl FnMut(u64),
) -> Result<u64, OpsError> {
    let write = |snapshot: PersonsSnapshot| async move {
        match load {
            PersonsLoad::BelowIngest => clickhouse.load_persons(&snapshot).await,
            PersonsLoad::Replace => clickhouse.refresh_persons(&snapshot).await,
        }
    };
    let mut after = None;
    let mut loaded = 0u64;
    loop {
        let persons = meta.persons(team_id, after, PERSONS_PAGE).await?;
        let Some(last) = persons.last() else { break };
        after = Some(last.uuid);
        let uuids: Vec<_> = persons.iter().map(|p| p.uuid).collect();
        let distinct_ids = meta.distinct_ids_of(team_id, &uuids).await?.into_iter().collect();
        loaded += persons.len() as u64;
        write(PersonsSnapshot { team_id, persons, distinct_ids, overrides: Vec::new() }).await?;
        progress(loaded);
    }
    let overrides = meta.person_overrides(team_id).await?;
    write(PersonsSnapshot { team_id, overrides, ..PersonsSnapshot::default() }).await?;
    // Ingest writes the cluster before the meta store, so counted in that
    // order the two agree unless a batch is between its two writes: a few
    // tries let it finish.
    let mut tries = 0;
    loop {
        let expected = meta.count_persons(team_id).await?;
        let held = clickhouse.persons_count(team_id).await?;
        if held == expected {
            return Ok(loaded);
        }
        tries += 1;
        if tries == 5 {
            return Err(OpsError::Verification(format!(
                "project {team_id}: the cluster holds {held} persons, the meta store {expected}"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
