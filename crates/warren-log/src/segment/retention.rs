//! Retention: deleting whole sealed segments by size and age.

use std::fs;
use std::time::Duration;

use warren_core::metrics as names;

use super::SegmentLog;
use crate::LogError;

/// What retention may delete. Sealed segments go oldest first; the active
/// segment is never deleted.
#[derive(Debug, Clone, Default)]
pub struct RetentionPolicy {
    /// Keep each partition at or under this many bytes.
    pub max_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this.
    pub max_age: Option<Duration>,
    /// Delete even records some consumer group has not committed yet, the
    /// log's expected consumers included: what they had not read is lost
    /// to them, and the report counts it.
    pub ignore_consumers: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: u64,
    pub bytes_deleted: u64,
    /// Segments that were due but held back for a consumer group.
    pub segments_held: u64,
    /// Offsets deleted that some consumer group had not committed; only
    /// ever non-zero when the policy ignores consumers.
    pub records_unconsumed: u64,
}

impl SegmentLog {
    /// Deletes the sealed segments the policy no longer keeps, as of `now_ms`.
    pub fn apply_retention(
        &self,
        policy: &RetentionPolicy,
        now_ms: i64,
    ) -> Result<RetentionReport, LogError> {
        let mut report = RetentionReport::default();
        for partition in &self.partitions {
            let needed = self.offsets.lowest_needed(partition.id);
            let doomed = {
                let mut segments = partition.segments();
                let mut total: u64 = segments.iter().map(|segment| segment.len).sum();
                let mut count = 0;
                for segment in segments.iter().take(segments.len().saturating_sub(1)) {
                    let too_big = policy.max_bytes.is_some_and(|max| total > max);
                    let newest = segment.index.max_timestamp().unwrap_or(segment.created_ms);
                    let too_old = policy.max_age.is_some_and(|age| {
                        now_ms.saturating_sub(newest) > i64::try_from(age.as_millis()).unwrap_or(i64::MAX)
                    });
                    if !(too_big || too_old) {
                        break;
                    }
                    if !policy.ignore_consumers && needed.is_some_and(|needed| segment.next_offset > needed) {
                        report.segments_held += 1;
                        break;
                    }
                    total -= segment.len;
                    count += 1;
                }
                segments.drain(..count).collect::<Vec<_>>()
            };
            for segment in doomed {
                fs::remove_file(&segment.path)
                    .map_err(|e| LogError::io(format!("deleting {}", segment.path.display()), e))?;
                let unconsumed = needed
                    .map(|needed| segment.next_offset.saturating_sub(needed.max(segment.base_offset)))
                    .unwrap_or(0);
                if unconsumed > 0 {
                    tracing::warn!(
                        partition = partition.id,
                        path = %segment.path.display(),
                        first_offset = segment.base_offset,
                        last_offset = segment.next_offset.saturating_sub(1),
                        unconsumed,
                        "retention deleted records a consumer group had not committed \
                         (event_log.retention_ignores_consumers)"
                    );
                } else {
                    tracing::info!(
                        partition = partition.id,
                        path = %segment.path.display(),
                        last_offset = segment.next_offset.saturating_sub(1),
                        "retention deleted a segment"
                    );
                }
                report.segments_deleted += 1;
                report.bytes_deleted += segment.len;
                report.records_unconsumed += unconsumed;
            }
        }
        metrics::counter!(names::LOG_SEGMENTS_DELETED).increment(report.segments_deleted);
        Ok(report)
    }
}
