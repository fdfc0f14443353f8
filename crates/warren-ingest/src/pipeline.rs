//! [`Ingester`]: the consume → resolve → commit loop and its recovery.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;
use warren_core::config::IngestConfig;
use warren_core::jobs::{JobBoard, Outcome};
use warren_core::metrics as names;
use warren_core::person::{IngestionWarning, TeamId};
use warren_core::ports::BlobStore;
use warren_core::recording::SNAPSHOT_EVENT;
use warren_core::CapturedEvent;
use warren_log::{EventLog, LogError, LogRecord};
use warren_meta::{IngestCommit, MetaStore};
use warren_store::{EventRow, EventStore, GROUP_SLOTS};

use crate::dedup::RecentUuids;
use crate::definitions::Definitions;
use crate::groups::GroupBatch;
use crate::normalize::{normalize, Event};
use crate::persons::{PersonBatch, PersonOnEvent};
use crate::recordings::RecordingBatch;
use crate::replica::{Replica, REPLICA_CONSUMER};
use crate::store_persons::MergedBefore;
use crate::teams::Teams;
use crate::IngestError;

/// The consumer name under which ingest records its offsets: the log's
/// consumer group, the event store's writer and the meta store's consumer.
pub const CONSUMER: &str = warren_core::INGEST_CONSUMER;

/// Pause after a failed batch before it is rebuilt and retried.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The job-board entry under which ingest reports records the log deleted
/// before ingest stored them.
pub const RETENTION_GAP_JOB: &str = "ingest.retention_gap";

/// Consumes the event log into the event store.
pub struct Ingester {
    log: Arc<dyn EventLog>,
    meta: Arc<dyn MetaStore>,
    store: Arc<dyn EventStore>,
    config: IngestConfig,
    teams: Teams,
    recent: RecentUuids,
    /// For [`Ingester::catch_up`]: the offsets at which to stop.
    stop_at: Option<Vec<u64>>,
    definitions: Definitions,
    jobs: JobBoard,
    /// Per partition, the offset up to which a retention gap was reported,
    /// so a batch retried over the same gap does not count it twice.
    gap_reported: Vec<u64>,
    replica: Option<Replica>,
    /// Where session recordings' blobs go; without one they are dropped.
    blobs: Option<Arc<dyn BlobStore>>,
}

/// A log record, decoded.
struct Item {
    partition: u32,
    offset: u64,
    received_ms: i64,
    event: Event,
    /// `false` for records the event store already holds: their person
    /// updates are replayed, their rows are not written again.
    store: bool,
}

impl Ingester {
    pub fn new(
        log: Arc<dyn EventLog>,
        meta: Arc<dyn MetaStore>,
        store: Arc<dyn EventStore>,
        config: IngestConfig,
    ) -> Self {
        let recent = RecentUuids::new(config.dedup_window_events);
        let teams = Teams::new(meta.clone());
        Self {
            log,
            meta,
            store,
            config,
            teams,
            recent,
            stop_at: None,
            definitions: Definitions::default(),
            jobs: JobBoard::default(),
            gap_reported: Vec::new(),
            replica: None,
            blobs: None,
        }
    }

    /// Stores session recordings' blobs in `blobs`; an ingester without a
    /// blob store drops `$snapshot` records (counted as
    /// `outcome="recording_dropped"`).
    pub fn with_recordings(mut self, blobs: Arc<dyn BlobStore>) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// Keeps `replica` equal to the event store, written beside it while
    /// in step and catching up by itself after an outage (see
    /// [`crate::replica`]); a replica that fails never stops ingest.
    pub fn with_replica(mut self, replica: Arc<dyn EventStore>) -> Self {
        self.replica = Some(Replica::new(replica));
        self
    }

    /// Where records lost to retention are reported, beside the metric and
    /// the log line: the board the System page and self-monitoring read.
    pub fn with_jobs(mut self, jobs: JobBoard) -> Self {
        self.jobs = jobs;
        self
    }

    /// Ingests everything the log holds when called, then returns; for
    /// tools and tests. Failures are returned, not retried.
    pub async fn catch_up(mut self) -> Result<(), IngestError> {
        let mut ends = Vec::new();
        for partition in 0..self.log.partitions() {
            ends.push(self.log.watermarks(partition).await?.end);
        }
        self.stop_at = Some(ends);
        let (_keep, mut never) = watch::channel(false);
        self.consume(&mut never).await
    }

    fn caught_up(&self, next: &[u64]) -> bool {
        self.stop_at.as_ref().is_some_and(|ends| next.iter().zip(ends).all(|(next, end)| next >= end))
    }

    /// Runs until `shutdown` turns true, finishing the batch in hand.
    /// Failures are logged and retried from the stores' offsets.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.consume(&mut shutdown).await {
                Ok(()) => return,
                Err(error) => {
                    metrics::counter!(names::INGEST_BATCH_FAILURES).increment(1);
                    tracing::error!(%error, "ingest batch failed; resuming from the committed offsets");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_PAUSE) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }

    async fn consume(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<(), IngestError> {
        let partitions = self.log.partitions();
        let stored = self.store.offsets(CONSUMER, partitions).await?;
        let applied = self.meta.ingest_offsets(CONSUMER).await?;
        let mut next = Vec::with_capacity(partitions as usize);
        let mut stored_next = Vec::with_capacity(partitions as usize);
        for partition in 0..partitions {
            let in_store = stored.get(&partition).copied().unwrap_or(0);
            // Person updates are committed after rows, so the meta store's
            // offset is never ahead; start there and replay up to the store's.
            let in_meta = applied.get(&partition).copied().unwrap_or(0);
            if in_meta > in_store {
                return Err(IngestError::Diverged { partition, applied: in_meta, stored: in_store });
            }
            let start = self.log.watermarks(partition).await?.start;
            if in_meta < start {
                self.report_retention_gap(partition, in_meta, start, in_store);
            }
            next.push(in_meta.max(start));
            stored_next.push(in_store);
        }
        tracing::info!(?next, ?stored_next, "ingest resuming");
        // Before the replay: its person updates reach the replica only if
        // the replica holds the rows they are about.
        if let Some(replica) = &mut self.replica {
            replica.resume(&stored_next).await?;
        }
        self.remember_recent(&next).await?;
        while next.iter().zip(&stored_next).any(|(next, stored)| next < stored) {
            // The batch whose rows were stored but whose person updates were
            // not: replay exactly its records, so persons come out as the
            // stored rows say. It never held more than a batch; a longer gap
            // (a meta store reset beside its table) is replayed a batch at a
            // time so memory stays bounded.
            let records =
                read_ranges(self.log.as_ref(), &mut next, &stored_next, self.config.batch_max_events).await?;
            if records.is_empty() {
                // Nothing left to read below the table's offsets.
                next.clone_from(&stored_next);
                break;
            }
            self.process(records, &mut stored_next).await?;
        }
        loop {
            // Between batches the meta store holds all the event store
            // holds: the replica may catch up to it.
            if let Some(replica) = &mut self.replica {
                let (log, meta, store) = (self.log.as_ref(), self.meta.as_ref(), self.store.as_ref());
                let max = self.config.batch_max_events;
                replica.catch_up(log, meta, store, &mut self.teams, &stored_next, max, &self.jobs).await;
            }
            let records = self.gather(&mut next, shutdown).await?;
            if !records.is_empty() {
                self.process(records, &mut stored_next).await?;
            }
            self.report_lag(&next).await;
            if *shutdown.borrow() || self.caught_up(&next) {
                return Ok(());
            }
        }
    }

    /// Refills the dedup window with the events of the records just before
    /// `next`, so a re-sent event is caught across restarts too. A retry
    /// has the same key as what it repeats, so it lands in the same
    /// partition: each partition refills its share of the window.
    async fn remember_recent(&mut self, next: &[u64]) -> Result<(), IngestError> {
        #[derive(serde::Deserialize)]
        struct Id {
            uuid: uuid::Uuid,
            token: String,
        }
        let share = (self.config.dedup_window_events / next.len().max(1)) as u64;
        let mut unknown = HashSet::new();
        for (partition, until) in next.iter().enumerate() {
            let partition = partition as u32;
            let mut from = until.saturating_sub(share).max(self.log.watermarks(partition).await?.start);
            while from < *until {
                let records = self.log.read(partition, from, 10_000).await?;
                let Some(last) = records.last().map(|r| r.offset) else { break };
                for record in records.iter().filter(|r| r.offset < *until) {
                    let Ok(id) = serde_json::from_slice::<Id>(&record.value) else { continue };
                    if let Some(team) = self.teams.of(&id.token, &mut unknown).await? {
                        self.recent.insert(team, id.uuid);
                    }
                }
                from = last + 1;
            }
        }
        Ok(())
    }

    /// Records `from..to` of `partition` were deleted from the log before
    /// ingest read them; rows up to `stored` are in the table already and
    /// lost only their person updates. Only retention told to ignore
    /// consumers deletes such records, and the loss is never passed over
    /// silently: it is counted, logged and put on the job board, where the
    /// System page and self-monitoring show it.
    fn report_retention_gap(&mut self, partition: u32, from: u64, to: u64, stored: u64) {
        let index = partition as usize;
        if self.gap_reported.len() <= index {
            self.gap_reported.resize(index + 1, 0);
        }
        let from = from.max(self.gap_reported[index]);
        if from >= to {
            return;
        }
        self.gap_reported[index] = to;
        // Offsets may skip values (a repaired segment), so these are upper bounds.
        let lost = to.saturating_sub(from.max(stored));
        let persons_not_applied = to.min(stored).saturating_sub(from);
        metrics::counter!(names::INGEST_EVENTS_LOST_TO_RETENTION, "partition" => partition.to_string())
            .increment(lost);
        tracing::warn!(
            partition,
            from,
            to,
            lost,
            persons_not_applied,
            "the event log deleted records before ingest stored them (event_log.retention_ignores_consumers); \
             ingest goes on from the log's first record"
        );
        let message = format!(
            "partition {partition}: offsets {from}..{to} were deleted by retention before ingest read them; \
             up to {lost} events are lost"
        );
        let detail =
            format!("{lost} events lost, {persons_not_applied} stored events without person updates");
        self.jobs.record(
            RETENTION_GAP_JOB,
            warren_core::unix_millis(),
            Duration::ZERO,
            Outcome::Failed(message),
            detail,
        );
    }

    /// Reads until the batch is full, its first record has waited long
    /// enough, or shutdown is asked for.
    async fn gather(
        &mut self,
        next: &mut [u64],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Vec<LogRecord>, IngestError> {
        let max = self.config.batch_max_events.max(1);
        let wait = Duration::from_millis(self.config.batch_max_wait_ms);
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(1));
        // Each partition gets a share per round, so a busy one cannot
        // starve the rest.
        let share = (max / next.len().max(1)).max(100);
        let mut batch = Vec::new();
        let max_bytes = self.config.batch_max_bytes.max(1);
        let mut bytes = 0usize;
        let mut first_at: Option<Instant> = None;
        let started = Instant::now();
        // A replica catching up gets its turn between batches, idle or not.
        let replica_waits = self.replica.as_ref().is_some_and(|replica| !replica.in_step());
        loop {
            let mut progressed = false;
            for (partition, offset) in next.iter_mut().enumerate() {
                let room = max.saturating_sub(batch.len());
                if room == 0 {
                    break;
                }
                let partition = partition as u32;
                let records = match self.log.read(partition, *offset, share.min(room)).await {
                    Err(LogError::OffsetOutOfRange { start, .. }) if start > *offset => {
                        // Everything before `offset` is stored: the whole gap is lost.
                        self.report_retention_gap(partition, *offset, start, *offset);
                        *offset = start;
                        continue;
                    }
                    other => other?,
                };
                // Whole records up to the byte budget (at least one per
                // batch); the rest are read again by the next batch.
                for record in records {
                    if bytes >= max_bytes && !batch.is_empty() {
                        break;
                    }
                    *offset = record.offset + 1;
                    progressed = true;
                    bytes += record.value.len();
                    batch.push(record);
                }
                if bytes >= max_bytes {
                    break;
                }
            }
            if first_at.is_none() && !batch.is_empty() {
                first_at = Some(Instant::now());
            }
            let waited = first_at.is_some_and(|at| at.elapsed() >= wait)
                || (replica_waits && started.elapsed() >= wait);
            if batch.len() >= max
                || bytes >= max_bytes
                || waited
                || *shutdown.borrow()
                || self.caught_up(next)
            {
                return Ok(batch);
            }
            if !progressed {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    async fn decode(
        &mut self,
        records: Vec<LogRecord>,
        stored_next: &[u64],
        warnings: &mut Vec<IngestionWarning>,
        recordings: &mut RecordingBatch,
    ) -> Result<Vec<Item>, IngestError> {
        let mut items = Vec::with_capacity(records.len());
        let mut unknown = HashSet::new();
        let mut in_batch = HashSet::new();
        for record in records {
            let store = record.offset >= stored_next.get(record.partition as usize).copied().unwrap_or(0);
            let captured: CapturedEvent = match serde_json::from_slice(&record.value) {
                Ok(captured) => captured,
                Err(error) => {
                    // Capture wrote it, so this is a bug or a foreign
                    // producer; there is no project to warn.
                    tracing::warn!(partition = record.partition, offset = record.offset, %error, "undecodable log record");
                    metrics::counter!(names::INGEST_EVENTS, "outcome" => "invalid").increment(1);
                    continue;
                }
            };
            let Some(team_id) = self.teams.of(&captured.token, &mut unknown).await? else {
                metrics::counter!(names::INGEST_EVENTS, "outcome" => "unknown_token").increment(1);
                continue;
            };
            // The window learns a batch's uuids only once the batch is
            // committed, so a failed batch is not mistaken for duplicates
            // when it is retried.
            if self.recent.contains(team_id, captured.uuid) || !in_batch.insert((team_id, captured.uuid)) {
                metrics::counter!(names::INGEST_EVENTS, "outcome" => "duplicate").increment(1);
                continue;
            }
            if captured.event == SNAPSHOT_EVENT {
                // Written again when replayed below the table's offsets:
                // the meta store's rows of a replayed batch were lost.
                match self.blobs {
                    Some(_) => {
                        let at = (record.partition, record.offset, record.timestamp_ms);
                        recordings.add(team_id, at, &captured, warnings)
                    }
                    None => {
                        metrics::counter!(names::INGEST_EVENTS, "outcome" => "recording_dropped").increment(1)
                    }
                }
                continue;
            }
            let (event, event_warnings) = normalize(captured, team_id, record.timestamp_ms);
            warnings.extend(event_warnings);
            items.push(Item {
                partition: record.partition,
                offset: record.offset,
                received_ms: record.timestamp_ms,
                event,
                store,
            });
        }
        Ok(in_receive_order(items))
    }

    async fn process(&mut self, records: Vec<LogRecord>, stored_next: &mut [u64]) -> Result<(), IngestError> {
        let started = Instant::now();
        let mut offsets: BTreeMap<u32, u64> = BTreeMap::new();
        for record in &records {
            let next = offsets.entry(record.partition).or_default();
            *next = (*next).max(record.offset + 1);
        }
        let record_count = records.len();
        let oldest_received_ms = records.iter().map(|record| record.timestamp_ms).min();
        let mut warnings = Vec::new();
        let mut recordings = RecordingBatch::default();
        let items = self.decode(records, stored_next, &mut warnings, &mut recordings).await?;
        let mut uuids: Vec<(TeamId, uuid::Uuid)> =
            items.iter().map(|item| (item.event.team_id, item.event.uuid)).collect();
        uuids.append(&mut recordings.uuids);
        let events: Vec<&Event> = items.iter().map(|item| &item.event).collect();
        let definitions = self.definitions.collect(&events);
        let mut persons =
            PersonBatch::load(self.meta.as_ref(), &events, self.config.max_person_properties_bytes).await?;
        let mut groups = GroupBatch::load(self.meta.as_ref(), &events).await?;
        let mut rows = Vec::with_capacity(items.len());
        for item in items {
            let person = persons.apply(&item.event);
            let group_keys = groups.apply(&item.event);
            if item.store {
                rows.push(row(item.event, person, group_keys));
            }
        }
        let resolved = Instant::now();

        let created = persons.created;
        let merged = persons.merges();
        let mut commit = IngestCommit {
            consumer: CONSUMER.to_string(),
            offsets: offsets.iter().map(|(p, n)| (*p, *n)).collect(),
            warnings,
            event_definitions: definitions.events,
            property_definitions: definitions.properties,
            ..IngestCommit::default()
        };
        persons.into_commit(&mut commit);
        groups.into_commit(&mut commit);
        // Blobs before anything commits: a crash after this point replays
        // the batch, which writes the same blobs again.
        if let (Some(blobs), false) = (&self.blobs, recordings.is_empty()) {
            commit.recordings = recordings.write(blobs.as_ref()).await?;
        }

        let to_store: Vec<(u32, u64)> = offsets
            .iter()
            .filter(|(partition, next)| **next > stored_next.get(**partition as usize).copied().unwrap_or(0))
            .map(|(partition, next)| (*partition, *next))
            .collect();
        let row_count = rows.len();
        // Before the rows: a query that sees them must see their persons.
        let before = MergedBefore::load(self.meta.as_ref(), &commit).await?;
        let changes = before.changes(&commit);
        self.store.write_persons(&changes).await?;
        if let Some(replica) = &mut self.replica {
            replica.write_persons(&changes, &self.jobs).await;
        }
        if !to_store.is_empty() {
            // The canonical store first: the replica may lag it, never
            // the other way round.
            let copy = self.replica.as_ref().filter(|replica| replica.in_step()).map(|_| rows.clone());
            self.store.append(CONSUMER, rows, &to_store).await?;
            if let (Some(replica), Some(rows)) = (self.replica.as_mut(), copy) {
                replica.append(rows, &to_store, &self.jobs).await;
            }
            for (partition, next) in &to_store {
                if let Some(slot) = stored_next.get_mut(*partition as usize) {
                    *slot = *next;
                }
            }
            // Queries see the rows from this commit on.
            if let Some(oldest) = oldest_received_ms {
                let seconds = (warren_core::unix_millis() - oldest).max(0) as f64 / 1000.0;
                metrics::gauge!(names::INGEST_FRESHNESS_SECONDS).set(seconds);
            }
        }
        let stored = Instant::now();

        for warning in &commit.warnings {
            metrics::counter!(names::INGEST_WARNINGS, "kind" => warning.kind.clone()).increment(1);
        }
        self.meta.commit_ingest(&commit).await?;
        self.definitions.committed(&commit.property_definitions);
        for (team, uuid) in uuids {
            self.recent.insert(team, uuid);
        }
        let replica_in_step = self.replica.as_ref().is_some_and(Replica::in_step);
        for (partition, next) in &offsets {
            self.log.commit(CONSUMER, *partition, *next).await?;
            if replica_in_step {
                self.log.commit(REPLICA_CONSUMER, *partition, *next).await?;
            }
        }
        let done = Instant::now();

        metrics::counter!(names::INGEST_EVENTS, "outcome" => "stored").increment(row_count as u64);
        metrics::counter!(names::INGEST_PERSONS_CREATED).increment(created);
        metrics::counter!(names::INGEST_PERSONS_MERGED).increment(merged as u64);
        metrics::histogram!(names::INGEST_BATCH_EVENTS).record(record_count as f64);
        metrics::histogram!(names::INGEST_STAGE_SECONDS, "stage" => "persons")
            .record((resolved - started).as_secs_f64());
        metrics::histogram!(names::INGEST_STAGE_SECONDS, "stage" => "store")
            .record((stored - resolved).as_secs_f64());
        metrics::histogram!(names::INGEST_STAGE_SECONDS, "stage" => "meta")
            .record((done - stored).as_secs_f64());
        tracing::debug!(
            records = record_count,
            rows = row_count,
            seconds = (done - started).as_secs_f64(),
            "ingested a batch"
        );
        Ok(())
    }

    async fn report_lag(&self, next: &[u64]) {
        let mut lag = 0u64;
        for (partition, offset) in next.iter().enumerate() {
            if let Ok(marks) = self.log.watermarks(partition as u32).await {
                lag += marks.end.saturating_sub(*offset);
            }
        }
        metrics::gauge!(names::INGEST_LAG_RECORDS).set(lag as f64);
    }
}

/// The records of each partition from `next` up to `until`, at most `max`
/// of them, advancing `next`.
pub(crate) async fn read_ranges(
    log: &dyn EventLog,
    next: &mut [u64],
    until: &[u64],
    max: usize,
) -> Result<Vec<LogRecord>, IngestError> {
    let max = max.max(1);
    let mut batch = Vec::new();
    for (partition, (from, until)) in next.iter_mut().zip(until).enumerate() {
        while *from < *until && batch.len() < max {
            let room = max - batch.len();
            let wanted = usize::try_from(*until - *from).unwrap_or(usize::MAX).min(room);
            let records = log.read(partition as u32, *from, wanted).await?;
            let Some(last) = records.last().map(|r| r.offset) else { break };
            batch.extend(records.into_iter().filter(|r| r.offset < *until));
            *from = (last + 1).min(*until);
        }
    }
    Ok(batch)
}

/// Each partition's records in log order, partitions interleaved by the
/// time capture received them: a merge of sorted runs, never a reordering
/// within a partition (the order of one person's events).
fn in_receive_order(items: Vec<Item>) -> Vec<Item> {
    let mut runs: BTreeMap<u32, std::collections::VecDeque<Item>> = BTreeMap::new();
    for item in items {
        runs.entry(item.partition).or_default().push_back(item);
    }
    for run in runs.values_mut() {
        run.make_contiguous().sort_by_key(|item| item.offset);
    }
    let mut heads: std::collections::BinaryHeap<std::cmp::Reverse<(i64, u32)>> = runs
        .iter()
        .filter_map(|(partition, run)| {
            run.front().map(|head| std::cmp::Reverse((head.received_ms, *partition)))
        })
        .collect();
    let mut ordered = Vec::new();
    while let Some(std::cmp::Reverse((_, partition))) = heads.pop() {
        let Some(run) = runs.get_mut(&partition) else { continue };
        if let Some(item) = run.pop_front() {
            ordered.push(item);
        }
        if let Some(head) = run.front() {
            heads.push(std::cmp::Reverse((head.received_ms, partition)));
        }
    }
    ordered
}

fn text_property(event: &Event, key: &str) -> String {
    match event.properties.get(key) {
        Some(Value::String(text)) => text.clone(),
        _ => String::new(),
    }
}

fn row(event: Event, person: PersonOnEvent, groups: [String; GROUP_SLOTS]) -> EventRow {
    let session_id = text_property(&event, "$session_id");
    let window_id = text_property(&event, "$window_id");
    EventRow {
        uuid: event.uuid,
        properties: Value::Object(event.properties).to_string(),
        event: event.event,
        timestamp_us: event.timestamp_us,
        team_id: event.team_id,
        distinct_id: event.distinct_id,
        elements_chain: event.elements_chain,
        created_at_us: event.created_at_us,
        person_id: person.person_id,
        person_properties: person.properties.to_string(),
        person_created_at_us: person.created_at_us,
        person_mode: person.mode,
        session_id,
        window_id,
        groups,
    }
}
