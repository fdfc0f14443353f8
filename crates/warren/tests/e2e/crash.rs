//! SIGKILL at random moments under load: every acknowledged event is in the
//! log exactly once after recovery, and nothing half-written is visible.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;
use warren_testkit::{TestServer, TOKEN};

use crate::{http, BIN};

const ROUNDS: usize = 5;
const CLIENTS: usize = 8;
const BATCH: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_exactly_once() {
    let seed: u64 = rand::rng().random();
    eprintln!("crash test seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Small segments so that kills also land around segment rolls.
    let mut server = TestServer::start_with_env(BIN, &[("WARREN_EVENT_LOG__SEGMENT_BYTES", "200000")]);
    let acked: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let sent: Arc<Mutex<HashSet<Uuid>>> = Arc::default();

    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for client_id in 0..CLIENTS {
            let url = server.url.clone();
            let (acked, sent, stop) = (acked.clone(), sent.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
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
                    sent.lock().expect("lock").extend(uuids.iter().copied());
                    let body = json!({"api_key": TOKEN, "batch": events});
                    let response = client.post(format!("{url}/batch/")).json(&body).send().await;
                    match response {
                        Ok(response) if response.status() == 200 => {
                            acked.lock().expect("lock").extend(uuids);
                        }
                        Ok(response) => panic!("unexpected status {}", response.status()),
                        // The server died mid-request: this batch is unacknowledged.
                        Err(_) => break,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.await.expect("client task");
        }
        server.restart();
    }
    server.stop();

    let log = server.read_log();
    let acked = acked.lock().expect("lock").clone();
    let sent = sent.lock().expect("lock").clone();
    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for event in &log {
        assert!(sent.contains(&event.uuid), "the log holds an event nobody sent");
        let data: serde_json::Value = serde_json::from_str(&event.data).expect("whole record");
        assert_eq!(data["uuid"], event.uuid.to_string());
        *counts.entry(event.uuid).or_default() += 1;
    }
    let duplicated = counts.values().filter(|count| **count > 1).count();
    assert_eq!(duplicated, 0, "events stored twice");
    let lost: Vec<_> = acked.iter().filter(|uuid| !counts.contains_key(uuid)).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost, e.g. {:?}", lost.len(), lost.first());
    assert!(acked.len() > ROUNDS * BATCH, "the test acknowledged traffic ({} events)", acked.len());
    eprintln!("crash test: {} sent, {} acknowledged, {} in the log", sent.len(), acked.len(), log.len());
}
