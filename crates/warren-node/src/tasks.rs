//! [`PeriodicTasks`]: every periodic chore of a process — the event log's
//! and the audit log's retention, event-store upkeep, the internal
//! project's retention — run by one runner: on its interval, one run at a
//! time, each run's outcome on the job board under the task's name (where
//! the System page and self-monitoring read it) and in the log when it
//! fails. Work the stores do inside a run reports its own entries too
//! (`store.compact`, `clickhouse.merge`, …).

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use warren_core::jobs::{JobBoard, Outcome};

/// What one run did, for people ("deleted 3 segments"), or why it failed.
pub(crate) type RunOutcome = Result<String, String>;

/// When a task first runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstRun {
    AtStart,
    AfterOneInterval,
}

/// The running periodic tasks of a process.
pub(crate) struct PeriodicTasks {
    jobs: JobBoard,
    running: Vec<JoinHandle<()>>,
}

impl PeriodicTasks {
    pub fn new(jobs: JobBoard) -> Self {
        Self { jobs, running: Vec::new() }
    }

    /// Runs `task` every `every` until [`PeriodicTasks::stop`]; a run that
    /// outlasts the interval delays the next instead of overlapping it.
    pub fn every<F, Fut>(&mut self, name: &'static str, every: Duration, first: FirstRun, mut task: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = RunOutcome> + Send + 'static,
    {
        let jobs = self.jobs.clone();
        self.running.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            if first == FirstRun::AfterOneInterval {
                tick.tick().await;
            }
            loop {
                tick.tick().await;
                let started_ms = warren_core::unix_millis();
                let started = Instant::now();
                let (outcome, detail) = match task().await {
                    Ok(detail) => (Outcome::Ok, detail),
                    Err(error) => {
                        tracing::error!(task = name, %error, "a periodic task failed; it runs again at its next turn");
                        (Outcome::Failed(error), String::new())
                    }
                };
                jobs.record(name, started_ms, started.elapsed(), outcome, detail);
            }
        }));
    }

    /// Stops every task; a run in progress is dropped where it stands
    /// (every task is safe to stop anywhere and run again).
    pub fn stop(self) {
        for task in self.running {
            task.abort();
        }
    }
}
