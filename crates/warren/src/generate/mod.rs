//! `warren generate`: a deterministic, realistic dataset (see `story`)
//! written through the real capture API of a running Warren (`--url`), or
//! straight into a data dir's stores (`--data-dir`), as ingest would have
//! written it: persons resolved, anonymous events already on the person
//! they later identified as.

mod story;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use chrono::NaiveDate;
use serde_json::{json, Value};
use warren_core::config::WarrenConfig;
use warren_core::person::{person_id_for_distinct_id, Person, PersonMode};
use warren_meta::{DistinctIdAssignment, IngestCommit, MetaStore};
use warren_store::{DeltaStore, EventRow, EventStore};

pub use story::{Story, StoryPerson};

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

/// Rows per Delta commit: large files, bounded memory.
const ROWS_PER_COMMIT: usize = 500_000;

pub(crate) async fn write_direct(story: &Story, config: &WarrenConfig) -> anyhow::Result<usize> {
    std::fs::create_dir_all(&config.data_dir)?;
    let meta = warren_node::adapters::open_meta(config).await?;
    warren_node::bootstrap(meta.as_ref(), config).await?;
    let store = warren_node::adapters::open_event_store(config, &Default::default()).await?;
    let mut rows = Vec::with_capacity(ROWS_PER_COMMIT);
    let mut commit = IngestCommit { consumer: "generate".into(), ..IngestCommit::default() };
    let mut written = 0;
    for i in 0..story.users {
        let person = story.person(i);
        if person.events.is_empty() {
            continue;
        }
        person_rows(&person, &mut rows);
        person_records(&person, &mut commit);
        if rows.len() >= ROWS_PER_COMMIT {
            written += flush(&store, meta.as_ref(), &mut rows, &mut commit).await?;
            eprintln!("  {written} events written");
        }
    }
    written += flush(&store, meta.as_ref(), &mut rows, &mut commit).await?;
    // Each commit wrote a file per day; compacting makes them few and large.
    let upkeep = store.maintain().await.context("compacting the events table")?;
    tracing::info!(?upkeep, "compacted the generated events");
    Ok(written)
}

async fn flush(
    store: &Arc<DeltaStore>,
    meta: &dyn MetaStore,
    rows: &mut Vec<EventRow>,
    commit: &mut IngestCommit,
) -> anyhow::Result<usize> {
    let n = rows.len();
    if n > 0 {
        store.append("generate", std::mem::take(rows), &[]).await.context("writing events")?;
    }
    meta.commit_ingest(commit).await.context("writing persons")?;
    commit.persons.clear();
    commit.distinct_ids.clear();
    Ok(n)
}

fn person_rows(person: &StoryPerson, rows: &mut Vec<EventRow>) {
    let person_id = person_id_for_distinct_id(TEAM, &person.anonymous_id);
    let created_at_us = person.first_seen.timestamp_micros();
    let mut properties = serde_json::Map::new();
    for event in &person.events {
        if let Some(Value::Object(set)) = event.properties.get("$set") {
            properties.extend(set.clone());
        }
        for key in ["$browser", "$os", "$geoip_country_code"] {
            if let Some(value) = event.properties.get(key) {
                properties
                    .entry(format!("$initial_{}", key.trim_start_matches('$')))
                    .or_insert_with(|| value.clone());
            }
        }
        let session_id =
            event.properties.get("$session_id").and_then(Value::as_str).unwrap_or("").to_string();
        rows.push(EventRow {
            uuid: event.uuid,
            event: event.event.clone(),
            properties: Value::Object(event.properties.clone()).to_string(),
            timestamp_us: event.timestamp.timestamp_micros(),
            team_id: TEAM,
            distinct_id: event.distinct_id.clone(),
            elements_chain: String::new(),
            created_at_us: event.timestamp.timestamp_micros(),
            person_id,
            person_properties: Value::Object(properties.clone()).to_string(),
            person_created_at_us: created_at_us,
            person_mode: PersonMode::Full,
            session_id,
            window_id: String::new(),
            groups: Default::default(),
        });
    }
}

fn person_records(person: &StoryPerson, commit: &mut IngestCommit) {
    let uuid = person_id_for_distinct_id(TEAM, &person.anonymous_id);
    commit.persons.push(Person {
        uuid,
        team_id: TEAM,
        properties: person.properties.clone(),
        created_at_us: person.first_seen.timestamp_micros(),
        is_identified: person.user_id.is_some(),
        version: 1,
        created_by_event: person.events.first().map(|e| e.uuid),
    });
    for distinct_id in std::iter::once(&person.anonymous_id).chain(person.user_id.as_ref()) {
        commit.distinct_ids.push(DistinctIdAssignment {
            team_id: TEAM,
            distinct_id: distinct_id.clone(),
            person_uuid: uuid,
        });
    }
}
