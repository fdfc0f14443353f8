//! Stopping the server under load. SIGKILL at random moments: every
//! acknowledged event is in the log exactly once after recovery, and nothing
//! half-written is visible. SIGTERM: requests in flight are answered, the
//! process exits 0, and again nothing acknowledged is missing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::task::JoinHandle;
use uuid::Uuid;
use warren_core::CapturedEvent;
use warren_testkit::{TestServer, TOKEN};

use crate::{http, BIN};

const ROUNDS: usize = 5;
const CLIENTS: usize = 8;
const BATCH: usize = 20;

/// What the clients sent and what the server acknowledged.
#[derive(Default, Clone)]
struct Ledger {
    sent: Arc<Mutex<HashSet<Uuid>>>,
    acked: Arc<Mutex<HashSet<Uuid>>>,
}

/// Clients sending batches of unique events until `stop`, or until the
/// server goes away under them.
fn start_clients(url: &str, round: usize, ledger: &Ledger, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    (0..CLIENTS)
        .map(|client_id| {
            let (url, ledger, stop) = (url.to_string(), ledger.clone(), stop.clone());
            tokio::spawn(async move {
                let client = http();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let uuids: Vec<Uuid> = (0..BATCH).map(|_| Uuid::now_v7()).collect();
                    let events: Vec<_> = uuids
                        .iter()
                        .map(|uuid| {
                            json!({
                                "event": "crash_test",
                                "uuid": uuid,
                                "distinct_id": format!("r{round}-c{client_id}-{}", n % 5),
                                "properties": {"round": round, "n": n, "pad": "x".repeat(200)},
                            })
                        })
                        .collect();
                    n += 1;
                    ledger.sent.lock().expect("lock").extend(uuids.iter().copied());
                    let body = json!({"api_key": TOKEN, "batch": events});
                    match client.post(format!("{url}/batch/")).json(&body).send().await {
                        Ok(response) if response.status() == 200 => {
                            ledger.acked.lock().expect("lock").extend(uuids);
                        }
                        Ok(response) => panic!("unexpected status {}", response.status()),
                        // The server went away mid-request: unacknowledged.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect()
}

async fn stop_clients(clients: Vec<JoinHandle<()>>, stop: &AtomicBool) {
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }
}

/// Every acknowledged event exactly once, nothing unsent, every record whole.
fn assert_exactly_once(log: &[CapturedEvent], ledger: &Ledger, rounds: usize) {
    let acked = ledger.acked.lock().expect("lock").clone();
    let sent = ledger.sent.lock().expect("lock").clone();
    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for event in log {
        assert!(sent.contains(&event.uuid), "the log holds an event nobody sent");
        let data: serde_json::Value = serde_json::from_str(&event.data).expect("whole record");
        assert_eq!(data["uuid"], event.uuid.to_string());
        *counts.entry(event.uuid).or_default() += 1;
    }
    let duplicated = counts.values().filter(|count| **count > 1).count();
    assert_eq!(duplicated, 0, "events stored twice");
    let lost: Vec<_> = acked.iter().filter(|uuid| !counts.contains_key(uuid)).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost, e.g. {:?}", lost.len(), lost.first());
    assert!(acked.len() > rounds * BATCH, "the test acknowledged traffic ({} events)", acked.len());
    eprintln!("{} sent, {} acknowledged, {} in the log", sent.len(), acked.len(), log.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_exactly_once() {
    let seed: u64 = rand::rng().random();
    eprintln!("crash test seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Small segments so that kills also land around segment rolls.
    let mut server = TestServer::start_with_env(BIN, &[("WARREN_EVENT_LOG__SEGMENT_BYTES", "200000")]);
    let ledger = Ledger::default();
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = start_clients(&server.url, round, &ledger, &stop);
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        server.kill();
        stop_clients(clients, &stop).await;
        server.restart();
    }
    server.stop();
    assert_exactly_once(&server.read_log(), &ledger, ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_what_is_in_flight_and_exits_cleanly() {
    let mut server = TestServer::start(BIN);
    let ledger = Ledger::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = start_clients(&server.url, 0, &ledger, &stop);
    tokio::time::sleep(Duration::from_millis(800)).await;
    // `stop` sends SIGTERM and asserts exit status 0.
    let server = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    })
    .await
    .expect("stopping");
    stop_clients(clients, &stop).await;
    assert_exactly_once(&server.read_log(), &ledger, 1);
}
