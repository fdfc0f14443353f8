//! The group-commit writer: one thread that takes every append waiting in
//! its queue, writes each partition's records with one write, makes them
//! durable with one fsync per touched partition, and only then answers.
//!
//! A dedicated thread rather than a task: writes and fsyncs block, and one
//! writer per log keeps offsets assignment free of locks.

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

    fn commit(&mut self, group: Vec<AppendRequest>) {
        let mut touched = vec![false; self.active.len()];
        for request in &group {
            for (partition, _) in &request.records {
                touched[*partition as usize] = true;
            }
        }
        let mut failed: Vec<Option<String>> = self.broken.clone();
        for (partition, is_touched) in touched.iter().enumerate() {
            if *is_touched {
                if let Err(error) = self.roll_if_due(partition) {
                    failed[partition] = Some(error.to_string());
                }
            }
        }

        // Encode: offsets are assigned here, in queue order.
        let mut positions = Vec::with_capacity(group.len());
        let mut written = Vec::new();
        let mut next: Vec<u64> = self.active.iter().map(|active| active.next_offset).collect();
        for request in &group {
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
            positions.push(request_positions);
        }

        // Write and sync each touched partition.
        let mut records_synced = 0u64;
        for p in 0..self.active.len() {
            if !touched[p] || failed[p].is_some() {
                continue;
            }
            let active = &mut self.active[p];
            let buffer = &self.buffers[p];
            let started = Instant::now();
            let result = active.file.write_all_at(buffer, active.len).and_then(|()| active.file.sync_data());
            metrics::histogram!(names::LOG_FSYNC_SECONDS).record(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    active.len += buffer.len() as u64;
                    records_synced += next[p] - active.next_offset;
                    active.next_offset = next[p];
                }
                Err(error) => {
                    tracing::error!(partition = p, %error, "event log write failed");
                    // Cut whatever part of the write landed, durably, so the
                    // next append starts on a record boundary and no record
                    // reported as failed can come back after a crash.
                    let cut = active.file.set_len(active.len).and_then(|()| active.file.sync_data());
                    if let Err(cut) = cut {
                        tracing::error!(
                            partition = p,
                            error = %cut,
                            "could not cut a failed write; the partition refuses appends until restart"
                        );
                        self.broken[p] = Some(format!("a failed write could not be undone: {cut}"));
                    }
                    failed[p] = Some(error.to_string());
                }
            }
        }
        for buffer in &mut self.buffers {
            buffer.clear();
        }
        metrics::histogram!(names::LOG_FSYNC_BATCH_RECORDS).record(records_synced as f64);

        self.publish(&written, &failed);

        for (request, request_positions) in group.into_iter().zip(positions) {
            let failure =
                request.records.iter().find_map(|(partition, _)| failed[*partition as usize].as_ref());
            let answer = match failure {
                None => Ok(request_positions),
                Some(reason) => {
                    Err(LogError::io("appending to the event log", std::io::Error::other(reason.clone())))
                }
            };
            // The appender may have given up waiting; its records are
            // durable all the same.
            let _ = request.reply.send(answer);
        }
    }

    /// Makes durable records visible to readers.
    fn publish(&self, written: &[Written], failed: &[Option<String>]) {
        let mut by_partition: Vec<Vec<&Written>> = vec![Vec::new(); self.active.len()];
        for record in written {
            if failed[record.partition as usize].is_none() {
                by_partition[record.partition as usize].push(record);
            }
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
