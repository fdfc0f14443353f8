//! The group-commit writer: one thread that takes every append waiting in
//! its queue, writes each partition's records with one write, makes them
//! durable with one fsync per touched partition, and only then answers.
//! Each request is all or nothing across partitions (see
//! `Writer::commit`).
//!
//! A dedicated thread rather than a task: writes and fsyncs block, and one
//! writer per log keeps offsets assignment free of locks.

use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit};
use warren_core::metrics as names;
use warren_core::unix_millis;

use super::format::{self, HEADER_LEN};
use super::partition::{create_segment, ActiveSegment, Partition};
use crate::{AppendRecord, LogError, RecordPosition};

/// How often an idle writer checks whether a segment is old enough to seal.
const IDLE_TICK: Duration = Duration::from_millis(500);
/// Stop gathering more requests into one group commit past this size.
const MAX_GROUP_BYTES: usize = 32 * 1024 * 1024;

pub(super) struct AppendRequest {
    /// Records with their partition already chosen.
    pub records: Vec<(u32, AppendRecord)>,
    pub encoded_bytes: usize,
    pub reply: oneshot::Sender<Result<Vec<RecordPosition>, LogError>>,
    /// Held until the records are durable: bounds the bytes in flight.
    pub _permit: OwnedSemaphorePermit,
}

pub(super) struct Writer {
    pub partitions: Vec<Arc<Partition>>,
    pub active: Vec<ActiveSegment>,
    pub segment_bytes: u64,
    pub segment_age: Duration,
    /// Per-partition write buffers, kept to reuse their allocations.
    pub buffers: Vec<Vec<u8>>,
    /// Partitions whose file is in an unknown state after a failed write
    /// that could not be undone; they refuse appends until a restart
    /// recovers them.
    pub broken: Vec<Option<String>>,
}

/// Where one record went, noted while encoding and applied to the shared
/// index once the bytes are durable.
struct Written {
    partition: u32,
    offset: u64,
    pos: u64,
    timestamp_ms: i64,
}

impl Writer {
    pub fn run(mut self, queue: Receiver<AppendRequest>) {
        let mut last_age_check = Instant::now();
        loop {
            // Partitions without traffic are sealed by age here, whether or
            // not the others keep the writer busy.
            if last_age_check.elapsed() >= IDLE_TICK {
                self.seal_aged_segments();
                last_age_check = Instant::now();
            }
            let first = match queue.recv_timeout(IDLE_TICK) {
                Ok(request) => request,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut group_bytes = first.encoded_bytes;
            let mut group = vec![first];
            while group_bytes < MAX_GROUP_BYTES {
                match queue.try_recv() {
                    Ok(request) => {
                        group_bytes += request.encoded_bytes;
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
        tracing::debug!("event log writer stopped");
    }

    fn seal_aged_segments(&mut self) {
        for partition in 0..self.active.len() {
            if let Err(error) = self.roll_if_due(partition) {
                tracing::error!(partition, %error, "could not seal an aged segment");
            }
        }
    }

    /// Seals the active segment when it is full or old, and opens a new one.
    fn roll_if_due(&mut self, partition: usize) -> Result<(), LogError> {
        let active = &self.active[partition];
        let now = unix_millis();
        let full = active.len >= self.segment_bytes;
        let age_ms = i64::try_from(self.segment_age.as_millis()).unwrap_or(i64::MAX);
        let old = now.saturating_sub(active.created_ms) >= age_ms;
        if !active.has_records() || !(full || old) {
            return Ok(());
        }
        let shared = &self.partitions[partition];
        let (segment, fresh) = create_segment(&shared.dir, shared.id, active.next_offset, now)?;
        shared.segments().push(segment);
        self.active[partition] = fresh;
        Ok(())
    }

    /// Writes a group of requests, each all or nothing: a request is
    /// answered `Ok` only when every one of its records is durable, and a
    /// request answered with an error leaves no record behind, so the
    /// sender's retry of the whole batch cannot store any of it twice.
    /// When a partition fails, everything this group wrote is cut back and
    /// the requests that do not touch a failed partition are written again
    /// without it; each round drops at least one partition, so this ends.
    fn commit(&mut self, group: Vec<AppendRequest>) {
        let mut failed: Vec<Option<Failure>> =
            self.broken.iter().map(|broken| broken.clone().map(Failure::other)).collect();
        let mut touched = vec![false; self.active.len()];
        for request in &group {
            for (partition, _) in &request.records {
                touched[*partition as usize] = true;
            }
        }
        for (partition, is_touched) in touched.iter().enumerate() {
            if *is_touched && failed[partition].is_none() {
                if let Err(error) = self.roll_if_due(partition) {
                    failed[partition] = Some(Failure::from_log(&error));
                }
            }
        }
        let positions = loop {
            let admitted: Vec<bool> = group
                .iter()
                .map(|request| request.records.iter().all(|(p, _)| failed[*p as usize].is_none()))
                .collect();
            if let Some(positions) = self.write_round(&group, &admitted, &mut failed) {
                break positions;
            }
        };
        for (request, request_positions) in group.into_iter().zip(positions) {
            let answer = match request_positions {
                Some(request_positions) => Ok(request_positions),
                None => {
                    let failure = request.records.iter().find_map(|(p, _)| failed[*p as usize].as_ref());
                    Err(failure.map_or(LogError::Closed, Failure::to_error))
                }
            };
            // The appender may have given up waiting; its records are
            // durable all the same.
            let _ = request.reply.send(answer);
        }
    }

    /// Encodes, writes and syncs the admitted requests. `None` when a
    /// partition failed: it is marked in `failed`, and every partition of
    /// the round has been cut back to where it was.
    fn write_round(
        &mut self,
        group: &[AppendRequest],
        admitted: &[bool],
        failed: &mut [Option<Failure>],
    ) -> Option<Vec<Option<Vec<RecordPosition>>>> {
        // Encode: offsets are assigned here, in queue order.
        let mut positions = Vec::with_capacity(group.len());
        let mut written = Vec::new();
        let mut next: Vec<u64> = self.active.iter().map(|active| active.next_offset).collect();
        for (request, admitted) in group.iter().zip(admitted) {
            if !admitted {
                positions.push(None);
                continue;
            }
            let mut request_positions = Vec::with_capacity(request.records.len());
            for (partition, record) in &request.records {
                let p = *partition as usize;
                let buffer = &mut self.buffers[p];
                let pos = self.active[p].len + buffer.len() as u64;
                format::encode_record(buffer, next[p], record.timestamp_ms, &record.key, &record.value);
                written.push(Written {
                    partition: *partition,
                    offset: next[p],
                    pos,
                    timestamp_ms: record.timestamp_ms,
                });
                request_positions.push(RecordPosition { partition: *partition, offset: next[p] });
                next[p] += 1;
            }
            positions.push(Some(request_positions));
        }

        // Write every partition first and sync after, so that a failure
        // usually costs no fsync to undo.
        let round: Vec<usize> = (0..self.active.len()).filter(|p| !self.buffers[*p].is_empty()).collect();
        let mut attempted = Vec::with_capacity(round.len());
        let mut failure = None;
        for &p in &round {
            attempted.push(p);
            let active = &self.active[p];
            if let Err(error) = active.file.write_all_at(&self.buffers[p], active.len) {
                failure = Some((p, error));
                break;
            }
        }
        if failure.is_none() {
            for &p in &round {
                let started = Instant::now();
                let result = self.active[p].file.sync_data();
                metrics::histogram!(names::LOG_FSYNC_SECONDS).record(started.elapsed().as_secs_f64());
                if let Err(error) = result {
                    failure = Some((p, error));
                    break;
                }
            }
        }
        let grown: Vec<u64> = self.buffers.iter().map(|buffer| buffer.len() as u64).collect();
        for buffer in &mut self.buffers {
            buffer.clear();
        }
        if let Some((p, error)) = failure {
            tracing::error!(partition = p, %error, "event log write failed");
            failed[p] = Some(Failure::from_io(&error));
            self.cut_back(&attempted, failed);
            return None;
        }

        let mut records_synced = 0u64;
        for &p in &round {
            let active = &mut self.active[p];
            records_synced += next[p] - active.next_offset;
            active.len += grown[p];
            active.next_offset = next[p];
        }
        metrics::histogram!(names::LOG_FSYNC_BATCH_RECORDS).record(records_synced as f64);
        self.publish(&written);
        Some(positions)
    }

    /// Cuts each partition back to its last answered length, durably, so the
    /// next append starts on a record boundary and no record of a failed
    /// request can come back after a crash. A partition that cannot be cut
    /// refuses appends until a restart recovers it.
    fn cut_back(&mut self, partitions: &[usize], failed: &mut [Option<Failure>]) {
        for &p in partitions {
            let active = &self.active[p];
            let cut = active.file.set_len(active.len).and_then(|()| active.file.sync_data());
            if let Err(error) = cut {
                tracing::error!(
                    partition = p,
                    %error,
                    "could not cut a failed write; the partition refuses appends until restart"
                );
                let reason = format!("a failed write could not be undone: {error}");
                failed[p] = Some(Failure::other(reason.clone()));
                self.broken[p] = Some(reason);
            }
        }
    }

    /// Makes durable records visible to readers.
    fn publish(&self, written: &[Written]) {
        let mut by_partition: Vec<Vec<&Written>> = vec![Vec::new(); self.active.len()];
        for record in written {
            by_partition[record.partition as usize].push(record);
        }
        for (p, records) in by_partition.iter().enumerate() {
            if records.is_empty() {
                continue;
            }
            let mut segments = self.partitions[p].segments();
            let Some(segment) = segments.last_mut() else {
                continue;
            };
            for record in records {
                segment.index.observe(record.offset, record.pos, record.timestamp_ms);
            }
            segment.len = self.active[p].len;
            segment.next_offset = self.active[p].next_offset;
            debug_assert!(segment.len >= HEADER_LEN);
        }
    }
}

/// Why a partition refused a group's records.
#[derive(Debug, Clone)]
struct Failure {
    reason: String,
    /// Out of space or quota: the operator frees space, the sender retries.
    full: bool,
}

impl Failure {
    fn other(reason: String) -> Self {
        Self { reason, full: false }
    }

    fn from_io(error: &std::io::Error) -> Self {
        let full = matches!(error.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded);
        Self { reason: error.to_string(), full }
    }

    fn from_log(error: &LogError) -> Self {
        match error {
            LogError::Io { source, .. } => Self { reason: error.to_string(), ..Self::from_io(source) },
            other => Self::other(other.to_string()),
        }
    }

    fn to_error(&self) -> LogError {
        if self.full {
            LogError::Full(self.reason.clone())
        } else {
            LogError::io("appending to the event log", std::io::Error::other(self.reason.clone()))
        }
    }
}
