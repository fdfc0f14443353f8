//! `warren generate`: a deterministic, realistic dataset (see `story`)
//! written through the real capture API of a running Warren (`--url`), or
//! into a stopped Warren's data dir (`--data-dir`): into its event log as
//! capture writes it, then through ingest's own code into its stores.

mod story;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use chrono::NaiveDate;
use serde_json::{json, Value};
use warren_core::config::WarrenConfig;
use warren_core::event::{partition_key, CapturedEvent};
use warren_log::{AppendRecord, EventLog};
use warren_store::EventStore;

pub use story::{Story, StoryEvent};

const TEAM: i64 = 1;

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// People in the story.
    #[arg(long, default_value_t = 1_000)]
    users: usize,
    /// Days the story spans.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// First day (UTC, YYYY-MM-DD); `days` before today when unset.
    #[arg(long)]
    start: Option<NaiveDate>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of people who sign up in their first session.
    #[arg(long, default_value_t = 0.4)]
    signup_rate: f64,
    /// Share of those who buy within ten days.
    #[arg(long, default_value_t = 0.3)]
    purchase_rate: f64,
    /// Send through the capture API of the Warren at this URL.
    #[arg(long, conflicts_with = "data_dir")]
    url: Option<String>,
    /// Project token for `--url`.
    #[arg(long, requires = "url")]
    token: Option<String>,
    /// Write straight into the stores of this data dir (Warren stopped).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl GenerateArgs {
    pub fn story(&self) -> Story {
        let start = self
            .start
            .unwrap_or_else(|| (chrono::Utc::now() - chrono::Duration::days(self.days as i64)).date_naive());
        Story {
            seed: self.seed,
            users: self.users,
            days: self.days.max(1),
            start,
            signup_rate: self.signup_rate,
            purchase_rate: self.purchase_rate,
        }
    }
}

pub async fn run(config_file: Option<PathBuf>, args: GenerateArgs) -> anyhow::Result<()> {
    let story = args.story();
    let started = Instant::now();
    let events = match (&args.url, &args.data_dir) {
        (Some(url), None) => {
            let token = args.token.clone().context("--url needs --token, the project token")?;
            send(&story, url, &token).await?
        }
        (None, Some(dir)) => {
            let mut config = crate::config::load(config_file.as_deref())?;
            config.data_dir = dir.clone();
            write_direct(&story, &config).await?
        }
        _ => bail!("say where the data goes: --url (with --token) or --data-dir"),
    };
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "generated {events} events of {} people over {} days from {} (seed {}) in {seconds:.1} s",
        story.users, story.days, story.start, story.seed
    );
    Ok(())
}

/// PostHog `/batch/` requests of about this many events.
const BATCH: usize = 500;

async fn send(story: &Story, url: &str, token: &str) -> anyhow::Result<usize> {
    let client = reqwest::Client::new();
    let endpoint = format!("{}/batch/", url.trim_end_matches('/'));
    let mut batch: Vec<Value> = Vec::with_capacity(BATCH);
    let mut sent = 0;
    for i in 0..story.users {
        for event in story.person(i).events {
            batch.push(json!({
                "event": event.event,
                "distinct_id": event.distinct_id,
                "uuid": event.uuid,
                "timestamp": event.timestamp.to_rfc3339(),
                "properties": event.properties,
            }));
            if batch.len() == BATCH {
                sent += post(&client, &endpoint, token, &mut batch).await?;
            }
        }
    }
    sent += post(&client, &endpoint, token, &mut batch).await?;
    Ok(sent)
}

async fn post(
    client: &reqwest::Client,
    endpoint: &str,
    token: &str,
    batch: &mut Vec<Value>,
) -> anyhow::Result<usize> {
    if batch.is_empty() {
        return Ok(0);
    }
    let body = json!({"api_key": token, "batch": batch, "sent_at": chrono::Utc::now().to_rfc3339()});
    // Overload answers 503: wait and send the same batch again.
    for attempt in 0..20 {
        let response = client
            .post(endpoint)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("posting to {endpoint}"))?;
        match response.status().as_u16() {
            200 => {
                let n = batch.len();
                batch.clear();
                return Ok(n);
            }
            503 => tokio::time::sleep(std::time::Duration::from_millis(100 << attempt.min(5))).await,
            status => bail!("{endpoint} answered {status}: {}", response.text().await.unwrap_or_default()),
        }
    }
    bail!("{endpoint} stayed overloaded")
}

/// Log records appended at a time: bounded memory.
const RECORDS_PER_APPEND: usize = 10_000;

/// Writes the story into a stopped Warren's data dir as a running one
/// would have stored it: each event appended to the event log as capture
/// appends it, then ingested by ingest's own code — persons resolved and
/// merged, rows built and written — and the table compacted.
pub(crate) async fn write_direct(story: &Story, config: &WarrenConfig) -> anyhow::Result<usize> {
    std::fs::create_dir_all(&config.data_dir)?;
    let log = Arc::new(warren_node::adapters::open_log(config, false).await?);
    let meta = warren_node::adapters::open_meta(config).await?;
    warren_node::bootstrap(meta.as_ref(), config).await?;
    let token = meta.project(TEAM).await?.context("the deployment has no project 1")?.api_token;
    let store = warren_node::adapters::open_event_store(config, &Default::default()).await?;
    let mut records = Vec::with_capacity(RECORDS_PER_APPEND);
    let mut appended = 0;
    for i in 0..story.users {
        for event in story.person(i).events {
            records.push(record(&token, event)?);
            if records.len() == RECORDS_PER_APPEND {
                appended += records.len();
                log.append(std::mem::take(&mut records)).await.context("appending to the event log")?;
            }
        }
    }
    appended += records.len();
    if !records.is_empty() {
        log.append(records).await.context("appending to the event log")?;
    }
    eprintln!("  {appended} events in the event log; ingesting them");
    warren_ingest::Ingester::new(log.clone(), meta, store.clone(), config.ingest.clone())
        .with_recordings(warren_node::adapters::open_recording_blobs(config)?)
        .catch_up()
        .await
        .context("ingesting the generated events")?;
    // Each batch wrote a file per day; compacting makes them few and large.
    let upkeep = store.maintain().await.context("compacting the events table")?;
    tracing::info!(?upkeep, "compacted the generated events");
    log.close().await.context("closing the event log")?;
    Ok(appended)
}

/// The log record capture would have appended for `event`, received at its
/// own time and marked as a historical import.
fn record(token: &str, event: StoryEvent) -> anyhow::Result<AppendRecord> {
    let at = event.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let data = json!({
        "event": event.event,
        "distinct_id": event.distinct_id,
        "uuid": event.uuid,
        "timestamp": at,
        "properties": event.properties,
    });
    let captured = CapturedEvent {
        uuid: event.uuid,
        distinct_id: event.distinct_id,
        ip: "127.0.0.1".into(),
        data: data.to_string(),
        now: at.clone(),
        sent_at: None,
        token: token.to_string(),
        event: event.event,
        timestamp: at,
        historical_migration: true,
    };
    Ok(AppendRecord {
        key: partition_key(token, &captured.distinct_id).into_bytes(),
        value: serde_json::to_vec(&captured)?,
        timestamp_ms: event.timestamp.timestamp_millis(),
    })
}
