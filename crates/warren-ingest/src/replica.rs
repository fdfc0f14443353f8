//! [`Replica`]: a second event store (the ClickHouse cluster) that ingest
//! keeps equal to the canonical one without ever waiting for it.
//!
//! While the replica is in step, each batch is written to it right after
//! the canonical store, persons before rows as for any store. A write that
//! fails leaves it behind: the batch is done once the canonical store and
//! the meta store have it, and ingest goes on without the replica. Between
//! batches — when the meta store holds every batch the canonical store
//! does — a behind replica catches up from its own offsets: the log
//! records it lacks name the events (project, uuid, time), whose rows are
//! read back from the canonical store exactly as stored, persons on events
//! included; the persons those records touched are written from the meta
//! store's present state first; then the rows, with the offsets they cover.
//! Once its offsets equal the canonical store's it is in step again. A
//! crash anywhere leaves offsets that say what it holds, so the next start
//! goes on from there.
//!
//! The log keeps its records for the replica's consumer group
//! ([`REPLICA_CONSUMER`]), so retention never deletes what the replica has
//! yet to read. If they went anyway (retention told to ignore consumers),
//! the replica cannot catch up from the log: that is reported on the job
//! board until `warren clickhouse rebuild` loads it from the canonical
//! store and moves its offsets past the gap.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warren_core::jobs::{JobBoard, Outcome};
use warren_core::metrics as names;
use warren_core::person::PersonChanges;
use warren_core::person::TeamId;
use warren_core::CapturedEvent;
use warren_log::EventLog;
use warren_meta::MetaStore;
use warren_store::{EventKey, EventRow, EventStore, StoreError};

use crate::normalize::normalize;
use crate::pipeline::{read_ranges, CONSUMER};
use crate::store_persons;
use crate::teams::Teams;
use crate::IngestError;

/// The log consumer group whose commits say what the replica holds.
pub const REPLICA_CONSUMER: &str = "ingest-replica";

/// The job-board entry of the replica's catching up.
pub const REPLICA_JOB: &str = "replica.catch_up";

/// Log records read per catch-up step, as a multiple of ingest's batch: a
/// step must cover more than a batch, or a busy ingest outruns it.
const STEP_BATCHES: usize = 2;

/// How long one call between batches may keep catching up before ingest
/// takes its next batch (at least one step always runs).
const TIME_PER_TURN: Duration = Duration::from_secs(2);

/// How long ingest waits on the replica for one batch's write before it
/// leaves the replica behind: a cluster that accepts connections but does
/// not answer must not hold ingest for its whole statement timeout. A write
/// that completes later anyway is harmless: the catch-up sends the rows
/// again and the replacing engine keeps one per uuid.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The same for one catch-up step, which writes up to two batches.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits between failed attempts, doubling from the first to the last.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(30);

/// Why a catch-up step could not run.
#[derive(Debug, thiserror::Error)]
enum CatchUpError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "partition {partition}: the replica holds records up to offset {held}, but the log now starts at \
         {start}; run `warren clickhouse rebuild` to load it from the canonical store"
    )]
    Gap { partition: u32, held: u64, start: u64 },
    #[error(
        "the log holds no records between the replica's offsets {held:?} and the canonical store's \
         {stored:?} (it was cut back or restored without the table); run `warren clickhouse rebuild`"
    )]
    NoRecords { held: Vec<u64>, stored: Vec<u64> },
    #[error("the replica did not answer within {} s", STEP_TIMEOUT.as_secs())]
    TimedOut,
}

/// What one catch-up step found.
enum Step {
    CaughtUp,
    Copied { records: usize, rows: usize, lag: u64 },
}

/// The replica and whether ingest writes it beside the canonical store.
pub(crate) struct Replica {
    store: Arc<dyn EventStore>,
    in_step: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Since when it is behind, and what catching up has copied since.
    behind_since: Option<(Instant, i64)>,
    copied: usize,
}

impl Replica {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store, in_step: false, retry_at: None, backoff: FIRST_RETRY, behind_since: None, copied: 0 }
    }

    /// Whether ingest writes each batch to it.
    pub fn in_step(&self) -> bool {
        self.in_step
    }

    /// Before ingest resumes: in step when it holds what the canonical
    /// store holds (`stored`, per partition), behind otherwise.
    pub async fn resume(&mut self, stored: &[u64]) -> Result<(), IngestError> {
        let held = self.held(stored.len() as u32).await?;
        self.in_step = holds_all(&held, stored);
        if self.in_step {
            metrics::gauge!(names::INGEST_REPLICA_LAG_RECORDS).set(0.0);
        } else {
            let lag = lag(&held, stored);
            tracing::warn!(lag, "the replica is behind the canonical store; it catches up between batches");
            metrics::gauge!(names::INGEST_REPLICA_LAG_RECORDS).set(lag as f64);
            self.mark_behind();
        }
        Ok(())
    }

    /// Writes a batch's changes of persons, when in step.
    pub async fn write_persons(&mut self, changes: &PersonChanges<'_>, jobs: &JobBoard) {
        if self.in_step {
            let written = tokio::time::timeout(WRITE_TIMEOUT, self.store.write_persons(changes)).await;
            self.after_write(written, jobs);
        }
    }

    /// Appends a batch's rows with the offsets they cover, when in step.
    pub async fn append(&mut self, rows: Vec<EventRow>, offsets: &[(u32, u64)], jobs: &JobBoard) {
        if self.in_step {
            let written =
                tokio::time::timeout(WRITE_TIMEOUT, self.store.append(CONSUMER, rows, offsets)).await;
            self.after_write(written, jobs);
        }
    }

    fn after_write(
        &mut self,
        written: Result<Result<(), StoreError>, tokio::time::error::Elapsed>,
        jobs: &JobBoard,
    ) {
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => self.fell_behind(&error, jobs),
            Err(_) => self.fell_behind(
                &format!("the replica did not answer within {} s", WRITE_TIMEOUT.as_secs()),
                jobs,
            ),
        }
    }

    /// A write to it failed: ingest goes on without it until it caught up.
    fn fell_behind(&mut self, error: &dyn std::fmt::Display, jobs: &JobBoard) {
        metrics::counter!(names::INGEST_REPLICA_FAILURES).increment(1);
        tracing::error!(%error, "writing the replica failed; ingest goes on, the replica catches up when it can");
        jobs.record(
            REPLICA_JOB,
            warren_core::unix_millis(),
            Duration::ZERO,
            Outcome::Failed(format!("the replica fell behind: {error}")),
            "ingest goes on with the canonical store; the replica catches up by itself".into(),
        );
        self.in_step = false;
        self.mark_behind();
        self.retry_at = Some(Instant::now() + self.backoff);
    }

    fn mark_behind(&mut self) {
        if self.behind_since.is_none() {
            self.behind_since = Some((Instant::now(), warren_core::unix_millis()));
            self.copied = 0;
        }
    }

    async fn held(&self, partitions: u32) -> Result<Vec<u64>, StoreError> {
        let held = self.store.offsets(CONSUMER, partitions).await?;
        Ok((0..partitions).map(|p| held.get(&p).copied().unwrap_or(0)).collect())
    }

    /// Between batches: when behind and due, catches up for a while.
    /// `stored` is what the canonical store holds, which the meta store
    /// holds too at this point. Failures wait and are tried again.
    #[allow(clippy::too_many_arguments)] // the ingester's parts it borrows
    pub async fn catch_up(
        &mut self,
        log: &dyn EventLog,
        meta: &dyn MetaStore,
        canonical: &dyn EventStore,
        teams: &mut Teams,
        stored: &[u64],
        batch_max_events: usize,
        jobs: &JobBoard,
    ) {
        if self.in_step || self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let started = Instant::now();
        let max = batch_max_events.max(1).saturating_mul(STEP_BATCHES);
        loop {
            let step =
                tokio::time::timeout(STEP_TIMEOUT, self.step(log, meta, canonical, teams, stored, max));
            match step.await.unwrap_or(Err(CatchUpError::TimedOut)) {
                Ok(Step::CaughtUp) => {
                    self.caught_up(jobs);
                    return;
                }
                Ok(Step::Copied { records, rows, lag }) => {
                    self.copied += rows;
                    self.backoff = FIRST_RETRY;
                    self.retry_at = None;
                    metrics::gauge!(names::INGEST_REPLICA_LAG_RECORDS).set(lag as f64);
                    tracing::info!(records, rows, lag, "replica catching up");
                }
                Err(error) => {
                    metrics::counter!(names::INGEST_REPLICA_FAILURES).increment(1);
                    tracing::warn!(%error, retry_in_secs = self.backoff.as_secs(), "the replica cannot catch up yet");
                    jobs.record(
                        REPLICA_JOB,
                        warren_core::unix_millis(),
                        started.elapsed(),
                        Outcome::Failed(error.to_string()),
                        format!("{} rows copied since it fell behind", self.copied),
                    );
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(LAST_RETRY);
                    return;
                }
            }
            if started.elapsed() >= TIME_PER_TURN {
                return;
            }
        }
    }

    fn caught_up(&mut self, jobs: &JobBoard) {
        self.in_step = true;
        self.backoff = FIRST_RETRY;
        self.retry_at = None;
        metrics::gauge!(names::INGEST_REPLICA_LAG_RECORDS).set(0.0);
        let (since, since_ms) =
            self.behind_since.take().unwrap_or((Instant::now(), warren_core::unix_millis()));
        let detail = format!("in step again: {} rows copied", self.copied);
        tracing::info!(rows = self.copied, behind_secs = since.elapsed().as_secs(), "the replica caught up");
        jobs.record(REPLICA_JOB, since_ms, since.elapsed(), Outcome::Ok, detail);
    }

    /// Copies at most `max` of the records the replica lacks.
    async fn step(
        &mut self,
        log: &dyn EventLog,
        meta: &dyn MetaStore,
        canonical: &dyn EventStore,
        teams: &mut Teams,
        stored: &[u64],
        max: usize,
    ) -> Result<Step, CatchUpError> {
        let held = self.held(stored.len() as u32).await?;
        if holds_all(&held, stored) {
            return Ok(Step::CaughtUp);
        }
        // Known before the replica is reached, so it shows during an outage.
        metrics::gauge!(names::INGEST_REPLICA_LAG_RECORDS).set(lag(&held, stored) as f64);
        for (partition, (held, stored)) in held.iter().zip(stored).enumerate() {
            let start = log.watermarks(partition as u32).await.map_err(IngestError::from)?.start;
            if held < stored && *held < start {
                return Err(CatchUpError::Gap { partition: partition as u32, held: *held, start });
            }
        }
        let mut next = held.clone();
        let records = read_ranges(log, &mut next, stored, max).await?;
        if records.is_empty() {
            return Err(CatchUpError::NoRecords { held, stored: stored.to_vec() });
        }

        let mut keys = Vec::with_capacity(records.len());
        let mut touched: BTreeMap<TeamId, HashSet<String>> = BTreeMap::new();
        let mut unknown = HashSet::new();
        for record in &records {
            // What ingest could not decode or place it did not store.
            let Ok(captured) = serde_json::from_slice::<CapturedEvent>(&record.value) else { continue };
            // Recordings are blobs, never rows.
            if captured.event == warren_core::recording::SNAPSHOT_EVENT {
                continue;
            }
            let Some(team_id) = teams.of(&captured.token, &mut unknown).await? else { continue };
            let (event, _) = normalize(captured, team_id, record.timestamp_ms);
            let ids = touched.entry(team_id).or_default();
            if let Some(other) = event.merge_with() {
                ids.insert(other);
            }
            ids.insert(event.distinct_id.clone());
            keys.push(EventKey { team_id, uuid: event.uuid, timestamp_us: event.timestamp_us });
        }
        let rows = canonical.read_events(&keys).await?;
        for (team_id, ids) in touched {
            let ids: Vec<String> = ids.into_iter().collect();
            let present = store_persons::snapshot(meta, team_id, &ids).await.map_err(IngestError::from)?;
            self.store.refresh_persons(&present).await?;
        }
        let offsets: Vec<(u32, u64)> = next
            .iter()
            .zip(&held)
            .enumerate()
            .filter(|(_, (next, held))| next > held)
            .map(|(partition, (next, _))| (partition as u32, *next))
            .collect();
        let row_count = rows.len();
        self.store.append(CONSUMER, rows, &offsets).await?;
        for (partition, offset) in &offsets {
            log.commit(REPLICA_CONSUMER, *partition, *offset).await.map_err(IngestError::from)?;
        }
        Ok(Step::Copied { records: records.len(), rows: row_count, lag: lag(&next, stored) })
    }
}

/// Whether `held` reaches `stored` in every partition.
fn holds_all(held: &[u64], stored: &[u64]) -> bool {
    held.iter().zip(stored).all(|(held, stored)| held >= stored)
}

/// Records in `stored` beyond `held`, over all partitions.
fn lag(held: &[u64], stored: &[u64]) -> u64 {
    held.iter().zip(stored).map(|(held, stored)| stored.saturating_sub(*held)).sum()
}
