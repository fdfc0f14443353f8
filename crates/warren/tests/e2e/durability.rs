//! Nothing acknowledged is dropped: senders that retry every failed request
//! with the same uuids, as the SDKs do, end with each event stored once
//! through a full disk; retention keeps what ingest has not committed, even
//! before its first commit; and retention told to ignore consumers has its
//! loss reported, not passed over.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use uuid::Uuid;
use warren_testkit::{require, TestServer, TOKEN};

use crate::accounts::Client;
use crate::dashboard::{log_in, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::ingest::{wait_for_rows, wait_until_rows};
use crate::{http, BIN};

/// Where the server listens now: a restart moves it to another port.
#[derive(Clone)]
pub(crate) struct Target(Arc<Mutex<String>>);

impl Target {
    pub fn new(url: &str) -> Self {
        Self(Arc::new(Mutex::new(url.to_string())))
    }

    pub fn set(&self, url: &str) {
        *self.0.lock().expect("lock") = url.to_string();
    }

    fn get(&self) -> String {
        self.0.lock().expect("lock").clone()
    }
}

/// What the senders sent and what they were answered.
#[derive(Default)]
pub(crate) struct Tally {
    pub sent: HashSet<Uuid>,
    pub acked: HashSet<Uuid>,
    /// Requests sent again after a failure.
    pub retries: u64,
    /// Error answers by status and code.
    pub refused: HashMap<(u16, String), u64>,
}

/// The events of a sender's `n`th batch; each carries its `uuid`.
pub(crate) type MakeBatch = Arc<dyn Fn(usize, usize) -> Vec<Value> + Send + Sync>;

/// Senders posting batches to `/batch/` until `stop`. Each request is sent
/// again, unchanged, after every failure (no answer, or a 5xx) until it is
/// acknowledged; a stopped sender first finishes the batch in hand.
pub(crate) fn start_senders(
    target: &Target,
    senders: usize,
    make: &MakeBatch,
    tally: &Arc<Mutex<Tally>>,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    (0..senders)
        .map(|sender| {
            let (target, make, tally, stop) = (target.clone(), make.clone(), tally.clone(), stop.clone());
            tokio::spawn(async move {
                let client = http();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let events = make(sender, n);
                    n += 1;
                    let uuids: Vec<Uuid> = events
                        .iter()
                        .map(|event| event["uuid"].as_str().and_then(|u| u.parse().ok()).expect("a uuid"))
                        .collect();
                    tally.lock().expect("lock").sent.extend(uuids.iter().copied());
                    let body = json!({"api_key": TOKEN, "batch": events});
                    loop {
                        let url = target.get();
                        match client.post(format!("{url}/batch/")).json(&body).send().await {
                            Ok(response) if response.status() == 200 => {
                                tally.lock().expect("lock").acked.extend(uuids);
                                break;
                            }
                            Ok(response) => {
                                let status = response.status().as_u16();
                                let answer: Value = response.json().await.unwrap_or_default();
                                let code = answer["code"].as_str().unwrap_or_default().to_string();
                                assert!(status >= 500, "a sender does not retry {status} {code}");
                                *tally.lock().expect("lock").refused.entry((status, code)).or_default() += 1;
                            }
                            // Killed, restarting, or the connection was cut.
                            Err(_) => {}
                        }
                        tally.lock().expect("lock").retries += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect()
}

/// Stops the senders once each has its batch in hand acknowledged; a
/// sender that cannot get it acknowledged within two minutes fails the
/// test rather than holding it forever.
pub(crate) async fn stop_senders(senders: Vec<JoinHandle<()>>, stop: &AtomicBool) {
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        tokio::time::timeout(Duration::from_secs(120), sender)
            .await
            .expect("a sender's last batch was never acknowledged")
            .expect("sender");
    }
}

/// Waits for `done` over the tally, or panics after `limit`.
async fn until(tally: &Arc<Mutex<Tally>>, limit: Duration, what: &str, done: impl Fn(&Tally) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        if done(&tally.lock().expect("lock")) {
            return;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every event of `uuids` is in `rows` exactly once, and nothing else is.
fn assert_stored_once(rows: &[warren_store::EventRow], uuids: &HashSet<Uuid>) {
    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for row in rows {
        *counts.entry(row.uuid).or_default() += 1;
    }
    let doubled = counts.values().filter(|count| **count > 1).count();
    assert_eq!(doubled, 0, "rows stored twice");
    let lost = uuids.iter().filter(|uuid| !counts.contains_key(uuid)).count();
    assert_eq!(lost, 0, "acknowledged events missing from the table (of {})", uuids.len());
    assert_eq!(counts.len(), uuids.len(), "the table holds only what was sent");
}

/// A small tmpfs over the server's `log/` directory, holding what the log
/// had; unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// `None` (a loud skip, or a failure under CI) where mounting is not
    /// allowed. The server must be stopped.
    fn over_log(data_dir: &Path, size: &str) -> Option<Self> {
        let dir = data_dir.join("log");
        let aside = data_dir.join("log.before");
        std::fs::rename(&dir, &aside).expect("move the log aside");
        std::fs::create_dir(&dir).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|status| status.success());
        if !require(mounted, "root, to mount a small tmpfs for the event log") {
            return None;
        }
        copy_tree(&aside, &dir);
        Some(Self { dir })
    }

    /// Gives the disk `size` in all, room the log cannot have taken yet
    /// whatever it wrote while the disk was being filled.
    fn grow(&self, size: &str) {
        let grown = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .is_ok_and(|status| status.success());
        assert!(grown, "remount the log's tmpfs with size={size}");
    }

    /// Writes a file until the disk refuses more.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        // The last, partial block: the disk has no byte left.
        while file.write_all(&block[..512]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a failed test may still have the server holding files there.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn batch_of(size: usize) -> MakeBatch {
    Arc::new(move |sender, n| {
        (0..size)
            .map(|i| {
                json!({
                    "event": "durable",
                    "uuid": Uuid::new_v4(),
                    "distinct_id": format!("s{sender}-{}", (n * size + i) % 13),
                    "properties": {"n": n, "i": i, "pad": "d".repeat(300)},
                })
            })
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_with_503_and_retried_requests_are_stored_once() {
    let env = [
        // Small segments, so that new ones are made while the disk is full.
        ("WARREN_EVENT_LOG__SEGMENT_BYTES", "65536"),
        ("WARREN_INGEST__BATCH_MAX_WAIT_MS", "100"),
    ];
    let mut server = TestServer::start_with_env(BIN, &env);
    server.stop();
    let Some(disk) = SmallDisk::over_log(server.data_dir(), "8m") else { return };
    server.restart();

    let target = Target::new(&server.url);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders = start_senders(&target, 4, &batch_of(20), &tally, &stop);
    let minute = Duration::from_secs(60);
    until(&tally, minute, "acknowledged traffic", |t| t.acked.len() >= 400).await;

    let filler = disk.fill();
    until(&tally, minute, "refusals while the disk is full", |t| t.refused.values().sum::<u64>() >= 20).await;
    let acked_while_full = tally.lock().expect("lock").acked.len();
    // The log races the filler for the last free bytes, so removing the
    // filler alone may give back too little: the disk grows as well.
    std::fs::remove_file(filler).expect("free the disk");
    disk.grow("64m");
    until(&tally, minute, "acknowledgements once there is room", |t| t.acked.len() >= acked_while_full + 400)
        .await;
    stop_senders(senders, &stop).await;

    let tally = Arc::try_unwrap(tally).ok().expect("senders are done").into_inner().expect("lock");
    assert_eq!(tally.acked, tally.sent, "every request was retried until acknowledged");
    let codes: Vec<_> = tally.refused.keys().collect();
    assert!(codes.iter().all(|(status, code)| *status == 503 && code == "disk_full"), "{codes:?}");
    let rows = wait_until_rows(server.data_dir(), |rows| rows.len() >= tally.acked.len()).await;
    assert_stored_once(&rows, &tally.acked);
    server.stop();
    // A refused request left nothing in the log: its retry is no duplicate.
    let log = server.read_log();
    let distinct: HashSet<Uuid> = log.iter().map(|event| event.uuid).collect();
    assert_eq!(distinct.len(), log.len(), "the log holds an event twice");
    eprintln!(
        "full disk: {} events acknowledged, {} retries, refusals {:?}",
        tally.acked.len(),
        tally.retries,
        tally.refused
    );
    drop(disk);
}

/// Settings under which a sealed segment is due for deletion a second
/// after its last record, and retention runs every second.
const EAGER_RETENTION: [(&str, &str); 3] = [
    ("WARREN_EVENT_LOG__SEGMENT_AGE_SECS", "1"),
    ("WARREN_EVENT_LOG__RETENTION_AGE_SECS", "1"),
    ("WARREN_EVENT_LOG__RETENTION_INTERVAL_SECS", "1"),
];

/// A capture-only server (nothing ingests, so nothing is committed) with
/// eager retention, and the events it acknowledged.
async fn capture_only(extra: &[(&str, &str)]) -> (TestServer, HashSet<Uuid>) {
    let mut env: Vec<(&str, &str)> = EAGER_RETENTION.to_vec();
    env.extend([
        ("WARREN_ROLE", "capture"),
        ("WARREN_BOOTSTRAP__ADMIN_EMAIL", ADMIN_EMAIL),
        ("WARREN_BOOTSTRAP__ADMIN_PASSWORD", ADMIN_PASSWORD),
    ]);
    env.extend_from_slice(extra);
    let server = TestServer::start_with_env(BIN, &env);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders = start_senders(&Target::new(&server.url), 2, &batch_of(50), &tally, &stop);
    until(&tally, Duration::from_secs(60), "acknowledged traffic", |t| t.acked.len() >= 500).await;
    stop_senders(senders, &stop).await;
    let acked = tally.lock().expect("lock").acked.clone();
    (server, acked)
}

/// The `detail` of the job's last run, once `done` accepts it.
pub(crate) async fn job_detail(server: &TestServer, job: &str, done: impl Fn(&Value) -> bool) -> Value {
    let admin = Client::with_cookie(server, log_in(server, ADMIN_EMAIL, ADMIN_PASSWORD).await);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let system = admin.ok(Method::GET, "/api/instance/system/", None).await;
        let found = system["jobs"].as_array().and_then(|jobs| jobs.iter().find(|j| j["job"] == job)).cloned();
        if let Some(summary) = found.filter(|summary| done(summary)) {
            return summary;
        }
        assert!(Instant::now() < deadline, "job {job} never ran as expected: {}", system["jobs"]);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The value of a metric series (the sum over its labels), 0 when absent.
pub(crate) async fn metric(server: &TestServer, name: &str) -> f64 {
    let text = http().get(format!("{}/metrics", server.url)).send().await.expect("metrics");
    let text = text.text().await.expect("text");
    text.lines()
        .filter(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|line| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_what_ingest_never_committed() {
    let (mut server, acked) = capture_only(&[]).await;
    // Retention runs with the events' segments sealed and due, and holds them.
    job_detail(&server, "log.retention", |summary| {
        let detail = summary["last"]["detail"].as_str().unwrap_or_default();
        detail.starts_with("deleted 0 segments") && !detail.contains("kept 0 ")
    })
    .await;
    assert_eq!(metric(&server, "warren_log_segments_deleted_total").await, 0.0);
    server.stop();

    server.set_env("WARREN_ROLE", "all");
    server.restart();
    let rows = wait_for_rows(server.data_dir(), acked.len()).await;
    assert_stored_once(&rows, &acked);
    assert_eq!(metric(&server, "warren_ingest_events_lost_to_retention_total").await, 0.0);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_told_to_ignore_consumers_deletes_and_ingest_reports_the_loss() {
    let ignore = [("WARREN_EVENT_LOG__RETENTION_IGNORES_CONSUMERS", "true")];
    let (mut server, acked) = capture_only(&ignore).await;
    // Every sealed segment goes; each partition keeps only its empty active one.
    job_detail(&server, "log.retention", |summary| {
        summary["last"]["detail"].as_str().is_some_and(|d| d.contains("records ingest had not stored"))
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&server, "warren_log_partition_bytes").await > 40.0 * 8.0 {
        assert!(Instant::now() < deadline, "retention never deleted every record");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    server.stop();

    server.set_env("WARREN_ROLE", "all");
    server.restart();
    let gap = job_detail(&server, "ingest.retention_gap", |summary| {
        summary["failures"].as_u64().is_some_and(|failures| failures > 0)
    })
    .await;
    assert!(gap["last"]["message"].as_str().is_some_and(|m| m.contains("deleted by retention")), "{gap}");
    // Offsets are dense here, so the count is exact: every acknowledged event.
    let lost = metric(&server, "warren_ingest_events_lost_to_retention_total").await;
    assert_eq!(lost, acked.len() as f64, "the loss is counted");
    server.stop();
}
