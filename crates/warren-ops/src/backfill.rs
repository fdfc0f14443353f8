//! Loading the canonical Delta table into a ClickHouse cluster, one UTC day
//! (one Delta partition) at a time, and the meta store's persons beside it
//! ([`backfill_persons`]), so ClickHouse can be added to a running
//! deployment or rebuilt from nothing.
//!
//! It keeps no state of its own: a day is done when the cluster holds at
//! least as many of its rows as the Delta table did when the day was read.
//! A run that is stopped anywhere is finished by running it again — a day
//! loaded halfway is loaded again whole, and the replacing engine keeps one
//! row per uuid. Live ingest writing both stores at the same time only
//! adds rows to both.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use warren_core::person::{PersonsSnapshot, TeamId};
use warren_meta::PersonStore;
use warren_store::{ClickHouseStore, DeltaStore, EventStore};

use crate::OpsError;

/// Persons read from the meta store and loaded at a time.
const PERSONS_PAGE: u32 = 5_000;

/// Rows per insert: big enough for ClickHouse to like the parts, small
/// enough to keep the request bounded.
const CHUNK_ROWS: usize = 20_000;

/// What happened to one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfilledDay {
    pub day: NaiveDate,
    /// The day's rows in the Delta table.
    pub rows: u64,
    /// Whether this run loaded it (false: the cluster had it already).
    pub loaded: bool,
    /// Time spent reading the day from Delta and inserting it into the
    /// cluster (zero when it was there already).
    pub read: Duration,
    pub insert: Duration,
}

/// Loads every day the cluster lacks; calls `progress` after each day,
/// in order, oldest first.
pub async fn backfill(
    delta: &DeltaStore,
    clickhouse: &ClickHouseStore,
    mut progress: impl FnMut(&BackfilledDay, usize, usize),
) -> Result<Vec<BackfilledDay>, OpsError> {
    let days = delta.rows_per_day().await?;
    let present = clickhouse.rows_per_day().await?;
    let mut done = Vec::with_capacity(days.len());
    for (index, &(day, rows)) in days.iter().enumerate() {
        let there = present.get(&day).copied().unwrap_or(0);
        let loaded = there < rows;
        let (mut read, mut insert) = (Duration::ZERO, Duration::ZERO);
        if loaded {
            let started = Instant::now();
            let condition = format!("event_date = DATE '{}'", day.format("%Y-%m-%d"));
            let mut rest = delta.read_rows(Some(&condition)).await?;
            let expected = rest.len() as u64;
            read = started.elapsed();
            let started = Instant::now();
            while !rest.is_empty() {
                let chunk: Vec<_> = rest.drain(..rest.len().min(CHUNK_ROWS)).collect();
                clickhouse.append("backfill", chunk, &[]).await?;
            }
            insert = started.elapsed();
            let now = clickhouse.rows_of_day(day).await?;
            if now < expected {
                return Err(OpsError::Verification(format!(
                    "{day}: the cluster holds {now} rows after loading the Delta table's {expected}"
                )));
            }
        }
        let report = BackfilledDay { day, rows, loaded, read, insert };
        progress(&report, index + 1, days.len());
        done.push(report);
    }
    Ok(done)
}

/// How the backfill's persons meet what the cluster holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonsLoad {
    /// Below anything ingest writes (version 0): for a cluster ingest
    /// writes beside the table while the backfill runs.
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
pub async fn backfill_persons(
    delta: &DeltaStore,
    meta: &dyn PersonStore,
    clickhouse: &ClickHouseStore,
    load: PersonsLoad,
    mut progress: impl FnMut(i64, u64),
) -> Result<Vec<(i64, u64)>, OpsError> {
    let mut done = Vec::new();
    for team in delta.team_ids().await? {
        let loaded = backfill_persons_of(meta, clickhouse, team, load, |n| progress(team, n)).await?;
        done.push((team, loaded));
    }
    Ok(done)
}

/// One project's persons, then its overrides; checks that the cluster then
/// holds as many live persons as the meta store. Returns the persons loaded.
pub async fn backfill_persons_of(
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
