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

use crate::{ClickHouseStore, DeltaStore, EventStore, StoreError};

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
) -> Result<Vec<BackfilledDay>, StoreError> {
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
                return Err(StoreError::ClickHouse(format!(
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

/// Loads the persons, distinct ids and overrides of every project with
/// events in the Delta table from the meta store, a page at a time; calls
/// `progress(team, persons loaded so far)`. Returns `(team, persons)` per
/// project. Running it again writes the same rows again, which changes
/// nothing; ingest writing persons meanwhile wins over what it loads.
pub async fn backfill_persons(
    delta: &DeltaStore,
    clickhouse: &ClickHouseStore,
    mut progress: impl FnMut(i64, u64),
) -> Result<Vec<(i64, u64)>, StoreError> {
    let mut done = Vec::new();
    for team in delta.team_ids().await? {
        let loaded = clickhouse.backfill_persons(team, |n| progress(team, n)).await?;
        done.push((team, loaded));
    }
    Ok(done)
}
