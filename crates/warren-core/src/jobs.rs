//! The background jobs' board: what each job (compaction, vacuum,
//! checkpoints, retention) did last, and a short list of recent runs.
//!
//! Whoever runs a job reports it here once it ends; the System page shows
//! the board and self-monitoring turns new runs into events. It lives in
//! memory only: after a restart the board starts empty, and the runs'
//! history is kept as internal events.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::metrics as names;

/// Runs kept for self-monitoring to pick up; older ones are only counted.
const RECENT_RUNS: usize = 256;

/// How one run of a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "message")]
pub enum Outcome {
    Ok,
    Failed(String),
}

/// One finished run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRun {
    /// Increases by one per run on this board, so a reader can ask for
    /// the runs it has not seen.
    pub seq: u64,
    pub job: String,
    /// When it started, Unix milliseconds.
    pub started_ms: i64,
    pub duration_ms: f64,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What it did, for people: "rewrote 24 files into 2".
    pub detail: String,
}

/// A job's totals and its last run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSummary {
    pub job: String,
    pub runs: u64,
    pub failures: u64,
    pub last: JobRun,
    /// The last run that failed, while the job keeps failing or after it
    /// recovered.
    pub last_failure: Option<JobRun>,
}

#[derive(Debug, Default)]
struct Board {
    next_seq: u64,
    jobs: BTreeMap<String, JobSummary>,
    recent: VecDeque<JobRun>,
}

/// Shared by every task of a process; cloning shares the board.
#[derive(Debug, Clone, Default)]
pub struct JobBoard {
    board: Arc<Mutex<Board>>,
}

impl JobBoard {
    /// Records a finished run of `job`, started at `started_ms`.
    pub fn record(&self, job: &str, started_ms: i64, took: Duration, outcome: Outcome, detail: String) {
        let label = match outcome {
            Outcome::Ok => "ok",
            Outcome::Failed(_) => "failed",
        };
        metrics::counter!(names::JOB_RUNS, "job" => job.to_string(), "outcome" => label).increment(1);
        metrics::histogram!(names::JOB_SECONDS, "job" => job.to_string()).record(took.as_secs_f64());
        let Ok(mut board) = self.board.lock() else { return };
        let run = JobRun {
            seq: board.next_seq,
            job: job.to_string(),
            started_ms,
            duration_ms: took.as_secs_f64() * 1000.0,
            outcome,
            detail,
        };
        board.next_seq += 1;
        let failed = matches!(run.outcome, Outcome::Failed(_));
        match board.jobs.get_mut(job) {
            Some(summary) => {
                summary.runs += 1;
                if failed {
                    summary.failures += 1;
                    summary.last_failure = Some(run.clone());
                }
                summary.last = run.clone();
            }
            None => {
                let summary = JobSummary {
                    job: job.to_string(),
                    runs: 1,
                    failures: u64::from(failed),
                    last_failure: failed.then(|| run.clone()),
                    last: run.clone(),
                };
                board.jobs.insert(job.to_string(), summary);
            }
        }
        if board.recent.len() == RECENT_RUNS {
            board.recent.pop_front();
        }
        board.recent.push_back(run);
    }

    /// Every job that has run, by name.
    pub fn summaries(&self) -> Vec<JobSummary> {
        self.board.lock().map(|board| board.jobs.values().cloned().collect()).unwrap_or_default()
    }

    /// Recent runs with `seq >= from`, oldest first.
    pub fn runs_since(&self, from: u64) -> Vec<JobRun> {
        self.board
            .lock()
            .map(|board| board.recent.iter().filter(|run| run.seq >= from).cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_run_and_failures_per_job() {
        let board = JobBoard::default();
        board.record("store.vacuum", 1, Duration::from_millis(5), Outcome::Ok, "deleted 3 files".into());
        board.record(
            "store.vacuum",
            2,
            Duration::from_millis(7),
            Outcome::Failed("disk".into()),
            String::new(),
        );
        board.record("log.retention", 3, Duration::from_millis(1), Outcome::Ok, String::new());
        let summaries = board.summaries();
        assert_eq!(summaries.len(), 2);
        let vacuum = summaries.iter().find(|s| s.job == "store.vacuum").expect("vacuum");
        assert_eq!((vacuum.runs, vacuum.failures), (2, 1));
        assert_eq!(vacuum.last.started_ms, 2);
        assert_eq!(
            vacuum.last_failure.as_ref().map(|r| r.outcome.clone()),
            Some(Outcome::Failed("disk".into()))
        );
        let recent = board.runs_since(1);
        assert_eq!(recent.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn recent_runs_are_bounded() {
        let board = JobBoard::default();
        for i in 0..(RECENT_RUNS as i64 + 10) {
            board.record("job", i, Duration::ZERO, Outcome::Ok, String::new());
        }
        let recent = board.runs_since(0);
        assert_eq!(recent.len(), RECENT_RUNS);
        assert_eq!(recent.first().map(|r| r.seq), Some(10));
        assert_eq!(board.summaries()[0].runs, RECENT_RUNS as u64 + 10);
    }
}
