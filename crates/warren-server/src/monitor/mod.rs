//! Warren watching itself.
//!
//! Every `sample_interval_ms` the [`Monitor`] reads the process's own
//! metrics (the exposition `/metrics` serves, read by
//! `warren_core::exposition`) and keeps a short history of [`HealthPoint`]s for the dashboard's overview (`health`).
//! Every `interval_secs` it turns what happened since the last time —
//! requests by route and status, latencies, lag, freshness, store size,
//! job runs — into events of the internal project (`internal`), appended
//! to the event log like any captured event, so ingest stores them and
//! every insight works on them.

mod health;
mod internal;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;
use uuid::Uuid;
use warren_core::config::SelfMonitoringConfig;
use warren_core::event::{partition_key, CapturedEvent};
use warren_core::jobs::JobBoard;
use warren_core::metrics as names;
use warren_log::AppendRecord;
use warren_meta::Project;

pub use health::{HealthPoint, PartitionLag, StatusRates};
use warren_core::exposition::Reading;

use crate::AppState;

/// Samples kept at most, whatever `history_samples` says (a day at 1 s).
const MAX_HISTORY: usize = 86_400;

/// The monitor's shared view: the history the overview reads.
#[derive(Clone)]
pub struct Monitor {
    shared: Arc<Shared>,
}

struct Shared {
    config: SelfMonitoringConfig,
    jobs: JobBoard,
    /// Who writes the internal events: the `distinct_id` they carry.
    instance: String,
    history: Mutex<VecDeque<HealthPoint>>,
    partitions: Mutex<Vec<PartitionLag>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").field("instance", &self.shared.instance).finish_non_exhaustive()
    }
}

impl Monitor {
    /// `instance` names this process in its events (e.g. `all@host:8000`).
    pub fn new(config: SelfMonitoringConfig, jobs: JobBoard, instance: String) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                jobs,
                instance,
                history: Mutex::new(VecDeque::new()),
                partitions: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn jobs(&self) -> &JobBoard {
        &self.shared.jobs
    }

    pub fn sample_interval_ms(&self) -> u64 {
        self.shared.config.sample_interval_ms.max(100)
    }

    /// The short history, oldest first.
    pub fn history(&self) -> Vec<HealthPoint> {
        self.shared.history.lock().map(|h| h.iter().cloned().collect()).unwrap_or_default()
    }

    /// The consumer groups' lag per partition at the last sample.
    pub fn partitions(&self) -> Vec<PartitionLag> {
        self.shared.partitions.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Samples and writes internal events until `stop` turns true. With
    /// `internal` unset (self-monitoring off) it only samples.
    pub async fn run(self, state: AppState, internal: Option<Project>, mut stop: watch::Receiver<bool>) {
        let sample_every = Duration::from_millis(self.sample_interval_ms());
        let emit_every = Duration::from_secs(self.shared.config.interval_secs.max(1));
        let read = |state: &AppState| {
            state.log.report_metrics();
            Reading::parse(&state.metrics.render())
        };
        let mut previous = (read(&state), Instant::now());
        let mut emitted = previous.clone();
        let mut next_run = 0u64;
        let mut tick = tokio::time::interval(sample_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let now = (read(&state), Instant::now());
            let point = HealthPoint::between(
                &previous.0,
                &now.0,
                (now.1 - previous.1).as_secs_f64(),
                warren_core::unix_millis(),
            );
            self.remember(point, health::partition_lags(&now.0));
            previous = now;
            let Some(project) = &internal else { continue };
            if previous.1 - emitted.1 < emit_every {
                continue;
            }
            let runs = self.shared.jobs.runs_since(next_run);
            next_run = runs.last().map_or(next_run, |run| run.seq + 1);
            let seconds = (previous.1 - emitted.1).as_secs_f64();
            let events = internal::events(&emitted.0, &previous.0, seconds, &runs);
            emitted = previous.clone();
            if let Err(error) = self.write(&state, project, events).await {
                // The figures of this interval are lost; the next one is
                // written afresh. Warren's own health must never stop it.
                tracing::warn!(%error, "self-monitoring could not write its events");
            }
        }
    }

    fn remember(&self, point: HealthPoint, partitions: Vec<PartitionLag>) {
        if let Ok(mut history) = self.shared.history.lock() {
            while history.len() >= self.shared.config.history_samples.clamp(1, MAX_HISTORY) {
                history.pop_front();
            }
            history.push_back(point);
        }
        if let Ok(mut lags) = self.shared.partitions.lock() {
            *lags = partitions;
        }
    }

    /// Appends the events to the log as the internal project's.
    async fn write(
        &self,
        state: &AppState,
        project: &Project,
        events: Vec<internal::InternalEvent>,
    ) -> Result<(), crate::ApiError> {
        let now = chrono::Utc::now();
        let at = crate::capture::timestamp::format(now);
        let distinct_id = &self.shared.instance;
        let key = partition_key(&project.api_token, distinct_id).into_bytes();
        let mut records = Vec::with_capacity(events.len());
        for (event, mut properties) in events {
            properties.insert("instance".into(), json!(distinct_id));
            properties.insert("$lib".into(), json!("warren"));
            // Warren is not a person: its events make no person profile.
            properties.insert("$process_person_profile".into(), Value::Bool(false));
            let uuid = Uuid::now_v7();
            let data = json!({
                "event": event,
                "distinct_id": distinct_id,
                "uuid": uuid,
                "timestamp": at,
                "properties": properties,
            });
            let captured = CapturedEvent {
                uuid,
                distinct_id: distinct_id.clone(),
                ip: "127.0.0.1".into(),
                data: data.to_string(),
                now: at.clone(),
                sent_at: None,
                token: project.api_token.clone(),
                event: event.to_string(),
                timestamp: at.clone(),
                historical_migration: false,
            };
            let value =
                serde_json::to_vec(&captured).map_err(|e| crate::ApiError::Internal(e.to_string()))?;
            records.push(AppendRecord { key: key.clone(), value, timestamp_ms: now.timestamp_millis() });
        }
        let count = records.len() as u64;
        state.log.append(records).await?;
        metrics::counter!(names::MONITOR_EVENTS).increment(count);
        Ok(())
    }
}
