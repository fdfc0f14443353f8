//! Ingest end to end: SDK events reach the Delta events table with their
//! persons, an independent Delta reader sees the same rows, and SIGKILL at
//! random moments during capture and ingestion, with senders retrying every
//! failed request as the SDKs do, loses and doubles nothing.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use uuid::Uuid;
use warren_core::config::EventStoreConfig;
use warren_core::person::PersonMode;
use warren_store::{DeltaStore, DeltaStoreOptions, EventRow};
use warren_testkit::{require, TestServer, TOKEN};

use crate::durability::{start_senders, stop_senders, MakeBatch, Tally, Target};
use crate::sdk::python;
use crate::{repo_root, BIN};
use warren_meta::PersonStore;

pub(crate) async fn open_table(data_dir: &Path) -> DeltaStore {
    let options = DeltaStoreOptions::from_config(&EventStoreConfig::default(), data_dir).expect("options");
    DeltaStore::open(options).await.expect("open the events table")
}

/// Rows of the table once it holds at least `count`, within a minute.
pub(crate) async fn wait_for_rows(data_dir: &Path, count: usize) -> Vec<EventRow> {
    wait_until_rows(data_dir, |rows| rows.len() >= count).await
}

/// Rows of the table once `done` says they are all there, or once the
/// table has stopped growing for a minute.
pub(crate) async fn wait_until_rows(data_dir: &Path, done: impl Fn(&[EventRow]) -> bool) -> Vec<EventRow> {
    let table = open_table(data_dir).await;
    // Ingest may be slow on a loaded machine; give up only when it stops
    // making progress.
    let mut progress = (0, Instant::now());
    loop {
        let rows = table.read_rows(None).await.expect("read rows");
        if rows.len() > progress.0 {
            progress = (rows.len(), Instant::now());
        }
        if done(&rows) || progress.1.elapsed() > Duration::from_secs(60) {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posthog_python_persons_reach_the_events_table() {
    let Some(python) = python() else {
        require(false, "posthog-python in .venv");
        return;
    };
    let mut server = TestServer::start(BIN);
    let output = Command::new(&python)
        .arg(repo_root().join("tests/sdk/python_persons.py"))
        .args([&server.url, TOKEN])
        .output()
        .expect("running the sender");
    assert!(output.status.success(), "sender failed: {}", String::from_utf8_lossy(&output.stderr));
    let sent: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("sender line"))
        .collect();
    assert_eq!(sent.len(), 9);

    let rows = wait_for_rows(server.data_dir(), sent.len()).await;
    let by_uuid: HashMap<String, &EventRow> = rows.iter().map(|row| (row.uuid.to_string(), row)).collect();
    assert_eq!(by_uuid.len(), sent.len(), "every event is stored once: {rows:?}");
    let row = |event: &str| {
        let uuid = sent.iter().find(|s| s["event"] == event).expect("sent")["uuid"].as_str().expect("uuid");
        by_uuid[uuid]
    };
    // anon-1, user-1 and user-1-alias are one person from the first event on.
    let person = row("$pageview").person_id;
    for event in ["$set", "$identify", "$create_alias", "$set_once", "$groupidentify", "purchase"] {
        assert_eq!(row(event).person_id, person, "{event} carries the one person");
        assert_eq!(row(event).person_mode, PersonMode::Full);
    }
    let properties: Value = serde_json::from_str(&row("purchase").person_properties).expect("json");
    assert_eq!(properties["email"], "one@example.com");
    assert_eq!(properties["plan"], "pro", "set via the alias, not overwritten by set_once");
    assert_eq!(properties["first"], "yes");
    assert_eq!(properties["$initial_browser"], "Firefox");
    let early: Value = serde_json::from_str(&row("$pageview").person_properties).expect("json");
    assert!(early.get("email").is_none(), "person_properties are as of each event");
    assert_eq!(row("purchase").groups[0], "acme");
    assert_eq!(row("bot_ping").person_mode, PersonMode::Propertyless);
    assert_eq!(row("bot_ping").person_properties, "{}");
    assert_eq!(row("purchase").event, "purchase");

    // An independent Delta reader sees the same rows.
    let table = server.data_dir().join("events");
    let output = Command::new(&python)
        .arg(repo_root().join("tests/sdk/read_delta.py"))
        .arg(&table)
        .output()
        .expect("running the Delta reader");
    assert!(output.status.success(), "read_delta.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let read: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("reader line"))
        .collect();
    assert_eq!(read.len(), rows.len(), "the independent reader sees every row");
    for theirs in &read {
        let ours = by_uuid[theirs["uuid"].as_str().expect("uuid")];
        assert_eq!(theirs["event"], ours.event.as_str());
        assert_eq!(theirs["distinct_id"], ours.distinct_id.as_str());
        assert_eq!(theirs["person_id"], ours.person_id.to_string());
        assert_eq!(theirs["person_properties"], ours.person_properties.as_str());
        assert_eq!(theirs["properties"], ours.properties.as_str());
        assert_eq!(theirs["timestamp"], ours.timestamp_us);
        assert_eq!(theirs["person_created_at"], ours.person_created_at_us);
        assert_eq!(theirs["team_id"], 1);
        assert_eq!(theirs["$group_0"], ours.groups[0].as_str());
        let date = chrono::DateTime::from_timestamp_micros(ours.timestamp_us).expect("time").date_naive();
        assert_eq!(theirs["event_date"], date.to_string(), "partitioned by event date");
    }
    server.stop();
}

const ROUNDS: usize = 4;
const CLIENTS: usize = 4;
const BATCH: usize = 50;
const USERS: usize = 40;

/// Batches of events, a tenth of them `$identify`, each with its own uuid.
fn identify_and_steps() -> MakeBatch {
    Arc::new(|client_id, n| {
        (0..BATCH)
            .map(|i| {
                let uuid = Uuid::now_v7();
                let user = (n * BATCH + i + client_id * 7) % USERS;
                if i.is_multiple_of(10) {
                    json!({"event": "$identify", "uuid": uuid, "distinct_id": format!("user-{user}"),
                        "properties": {"$anon_distinct_id": format!("anon-{user}"), "$set": {"n": n}}})
                } else {
                    json!({"event": "step", "uuid": uuid, "distinct_id": format!("anon-{user}"),
                        "properties": {"n": n, "$set": {"last_step": n}}})
                }
            })
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingestion_loses_and_doubles_nothing() {
    let seed: u64 = rand::rng().random();
    eprintln!("ingest crash test seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Small batches so kills land between and inside many commits.
    let env = [("WARREN_INGEST__BATCH_MAX_EVENTS", "300"), ("WARREN_INGEST__BATCH_MAX_WAIT_MS", "100")];
    let mut server = TestServer::start_with_env(BIN, &env);
    // The senders run through every kill: a request cut off by one is sent
    // again, with the same uuids, to the restarted server.
    let target = Target::new(&server.url);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders = start_senders(&target, CLIENTS, &identify_and_steps(), &tally, &stop);
    for _ in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(400..1500))).await;
        server.kill();
        server.restart();
        target.set(&server.url);
        // Sometimes kill again while ingest is catching up on its own.
        if rng.random_bool(0.5) {
            tokio::time::sleep(Duration::from_millis(rng.random_range(50..600))).await;
            server.kill();
            server.restart();
            target.set(&server.url);
        }
    }
    stop_senders(senders, &stop).await;
    let tally = Arc::try_unwrap(tally).ok().expect("senders are done").into_inner().expect("lock");
    let acked = tally.acked;
    assert!(acked.len() > ROUNDS * BATCH, "the test acknowledged traffic ({})", acked.len());
    assert_eq!(acked, tally.sent, "every request was retried until acknowledged");
    assert!(tally.retries > 0, "the kills cut requests off, and they were sent again");
    // Not a count: events stored but never acknowledged (a kill cut the
    // answer off) would make up for acknowledged ones still to come.
    let rows = wait_until_rows(server.data_dir(), |rows| {
        let stored: HashSet<Uuid> = rows.iter().map(|row| row.uuid).collect();
        acked.iter().all(|uuid| stored.contains(uuid))
    })
    .await;
    server.stop();

    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for row in &rows {
        *counts.entry(row.uuid).or_default() += 1;
    }
    let doubled = counts.values().filter(|count| **count > 1).count();
    assert_eq!(doubled, 0, "rows stored twice; seed {seed}");
    let lost: HashSet<Uuid> = acked.iter().filter(|uuid| !counts.contains_key(uuid)).copied().collect();
    let log = server.read_log();
    if !lost.is_empty() {
        // Whether the log lost them or ingest did not store them.
        let in_log = log.iter().filter(|event| lost.contains(&event.uuid)).count();
        panic!(
            "{} acknowledged events (of {}) missing from the table, {in_log} of them in the event log; seed {seed}",
            lost.len(),
            acked.len()
        );
    }
    // A kill between a write and its answer leaves an event in the log that
    // the retry appends again: the table must still hold it once.
    let resent = log.len() - log.iter().map(|event| event.uuid).collect::<HashSet<_>>().len();
    eprintln!("{} retries, {resent} events in the log twice, each stored once", tally.retries);

    // Every row, through the overrides, names its distinct id's person.
    let meta_url = format!("sqlite://{}", server.data_dir().join("meta.db").display());
    let meta = warren_meta::SqlMeta::connect(&meta_url).await.expect("meta");
    let overrides: HashMap<Uuid, Uuid> = meta
        .person_overrides(1)
        .await
        .expect("overrides")
        .into_iter()
        .map(|o| (o.old_person_id, o.override_person_id))
        .collect();
    let ids: Vec<String> =
        rows.iter().map(|row| row.distinct_id.clone()).collect::<HashSet<_>>().into_iter().collect();
    let lookup = meta.persons_by_distinct_ids(1, &ids).await.expect("persons");
    for row in &rows {
        let resolved = overrides.get(&row.person_id).copied().unwrap_or(row.person_id);
        assert_eq!(Some(&resolved), lookup.distinct_ids.get(&row.distinct_id), "row of {}", row.distinct_id);
    }
    for user in 0..USERS {
        let (user_id, anon_id) = (format!("user-{user}"), format!("anon-{user}"));
        if let (Some(a), Some(b)) = (lookup.distinct_ids.get(&user_id), lookup.distinct_ids.get(&anon_id)) {
            assert_eq!(a, b, "{user_id} and {anon_id} were identified as one person");
        }
    }
    eprintln!("{} acknowledged, {} rows", acked.len(), rows.len());
}
