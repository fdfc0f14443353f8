//! What every adapter's upkeep shares: the report of one round, and the
//! job-board entry each of its jobs leaves.

use std::time::Instant;

use warren_core::jobs::{JobBoard, Outcome};

/// What one round of upkeep did. Files are the adapter's units of storage:
/// a Delta table's data files, a ClickHouse table's parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Files merged into bigger ones.
    pub files_compacted: u64,
    /// Files those merges wrote.
    pub files_written: u64,
    /// Files no longer in the table that were deleted.
    pub files_vacuumed: u64,
}

/// One run of an upkeep job, reported to the job board when it ends.
pub(crate) struct Job<'a> {
    board: &'a JobBoard,
    name: &'static str,
    started_ms: i64,
    started: Instant,
}

impl<'a> Job<'a> {
    pub(crate) fn start(board: &'a JobBoard, name: &'static str) -> Self {
        Self { board, name, started_ms: warren_core::unix_millis(), started: Instant::now() }
    }

    /// Reports the result, described by `detail` when it succeeded.
    pub(crate) fn finish<T, E: std::fmt::Display>(
        self,
        result: Result<T, E>,
        detail: impl FnOnce(&T) -> String,
    ) -> Result<T, E> {
        let (outcome, text) = match &result {
            Ok(value) => (Outcome::Ok, detail(value)),
            Err(error) => (Outcome::Failed(error.to_string()), String::new()),
        };
        self.board.record(self.name, self.started_ms, self.started.elapsed(), outcome, text);
        result
    }
}
