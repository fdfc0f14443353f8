//! `warren backup` and `warren restore` end to end: events and persons
//! sent by posthog-python, backed up full and incrementally while the
//! server runs, restored into a new directory that answers as the source
//! did (session recordings included) and goes on ingesting; damaged,
//! chained, killed and S3 backups.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warren_testkit::{require, TestServer, API_KEY, TOKEN};

use crate::query::{results, send_insight_events, wait_for_events};
use crate::sdk::python;
use crate::{http, BIN};

/// Runs `warren ARGS` with `env`; its output whatever the status.
pub(crate) fn warren(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN).args(args).envs(env.iter().copied()).output().expect("run warren")
}

/// Runs `warren ARGS`, which must succeed; its stdout.
pub(crate) fn warren_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = warren(args, env);
    assert!(
        output.status.success(),
        "warren {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The last line of `--json` output, parsed.
pub(crate) fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().expect("a line")).expect("json")
}

pub(crate) fn backup_create(data_dir: &Path, to: &str, kind: &str, env: &[(&str, &str)]) -> Value {
    let data_dir = data_dir.to_str().expect("utf-8");
    json_of(&warren_ok(&["backup", "create", kind, "--to", to, "--data-dir", data_dir, "--json"], env))
}

pub(crate) fn backup_list(to: &str, env: &[(&str, &str)]) -> Value {
    json_of(&warren_ok(&["backup", "list", "--to", to, "--json"], env))
}

/// One sample of each kind of product entity (shared with the API tests).
pub(crate) fn entity_samples() -> Vec<(String, Value)> {
    let samples: Vec<Value> = serde_json::from_str(include_str!("../../../../tests/api/entity_samples.json"))
        .expect("tests/api/entity_samples.json");
    samples
        .into_iter()
        .map(|s| (s["collection"].as_str().expect("collection").to_string(), s["body"].clone()))
        .collect()
}

pub(crate) async fn create_entities(server: &TestServer) {
    for (collection, body) in entity_samples() {
        let response = http()
            .post(format!("{}/api/projects/1/{collection}/", server.url))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .expect("create");
        assert!(response.status().is_success(), "creating {collection}: {}", response.status());
    }
}

/// Everything a restore must give back, as the APIs answer it: events
/// with their persons, persons, and every kind of entity.
pub(crate) async fn answers(server: &TestServer) -> Value {
    let sql = |query: &str| json!({"kind": "HogQLQuery", "query": query});
    let mut entities = serde_json::Map::new();
    for (collection, _) in entity_samples() {
        let response = http()
            .get(format!("{}/api/projects/1/{collection}/", server.url))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("list");
        assert!(response.status().is_success(), "listing {collection}: {}", response.status());
        entities.insert(collection, response.json().await.expect("json"));
    }
    let recordings = get_json(server, "/api/projects/1/session_recordings/").await;
    let mut played = serde_json::Map::new();
    for recording in recordings["results"].as_array().expect("results") {
        let id = recording["id"].as_str().expect("id");
        let path = format!("/api/projects/1/session_recordings/{id}/snapshots/");
        let response =
            http().get(format!("{}{path}", server.url)).bearer_auth(API_KEY).send().await.expect("get");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        played.insert(id.to_string(), Value::String(response.text().await.expect("lines")));
    }
    json!({
        "recordings": recordings,
        "recorded_events": played,
        "events": results(server, sql(
            "SELECT uuid, event, distinct_id, person_id, timestamp, properties FROM events ORDER BY uuid"
        )).await,
        "persons": results(server, sql("SELECT id, properties, is_identified FROM persons ORDER BY id")).await,
        "entities": entities,
    })
}

async fn get_json(server: &TestServer, path: &str) -> Value {
    let response =
        http().get(format!("{}{path}", server.url)).bearer_auth(API_KEY).send().await.expect("get");
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().await.expect("json")
}

/// Sends `count` rrweb events of `session` to `/s/`, as posthog-js does,
/// and waits until the session holds `total` of them.
pub(crate) async fn send_recording(server: &TestServer, session: &str, count: usize, total: usize) {
    let start = 1_796_000_000_000i64 + total as i64 * 1000;
    let rrweb: Vec<Value> = (0..count)
        .map(|i| match i {
            0 => json!({"type": 4, "timestamp": start, "data": {"href": "https://shop.test/", "width": 800, "height": 600}}),
            _ => json!({"type": 3, "timestamp": start + i as i64, "data": {"source": 1, "positions": [{"x": i, "y": i, "id": 1, "timeOffset": 0}]}}),
        })
        .collect();
    let batch = json!([{"event": "$snapshot", "properties": {"distinct_id": "recorded-person", "token": TOKEN,
        "$session_id": session, "$window_id": "window-1", "$snapshot_data": rrweb}}]);
    let response = http().post(format!("{}/s/", server.url)).json(&batch).send().await.expect("send");
    assert_eq!(response.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let one = http()
            .get(format!("{}/api/projects/1/session_recordings/{session}/", server.url))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("get");
        if one.status().is_success()
            && one.json::<Value>().await.expect("json")["event_count"] == json!(total)
        {
            return;
        }
        assert!(Instant::now() < deadline, "the recording of {session} was not ingested");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn send_pageviews(server: &TestServer, distinct_id: &str, count: usize) {
    let batch: Vec<Value> = (0..count)
        .map(|i| json!({"event": "$pageview", "distinct_id": distinct_id, "properties": {"i": i}}))
        .collect();
    let response = http()
        .post(format!("{}/batch/", server.url))
        .json(&json!({"api_key": TOKEN, "batch": batch}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
}

pub(crate) async fn count(server: &TestServer) -> i64 {
    let rows = results(server, json!({"kind": "HogQLQuery", "query": "SELECT count() FROM events"})).await;
    rows[0][0].as_i64().expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_answers_as_the_source_did_and_ingest_goes_on() {
    let Some(python) = python() else {
        require(false, "posthog-python in .venv");
        return;
    };
    let server = TestServer::start(BIN);
    let sent = send_insight_events(&python, &server, true);
    create_entities(&server).await;
    send_recording(&server, "session-before-the-full-backup", 20, 20).await;
    wait_for_events(&server, sent).await;
    let backups = tempfile::tempdir().expect("dir");
    let to = backups.path().to_str().expect("utf-8");

    let full = backup_create(server.data_dir(), to, "--full", &[]);
    assert_eq!(full["events"], json!(sent), "{full}");
    let at_full = answers(&server).await;

    send_pageviews(&server, "after-the-full-backup", 40).await;
    // A second chunk of the session, and a new one.
    send_recording(&server, "session-before-the-full-backup", 5, 25).await;
    send_recording(&server, "session-after-the-full-backup", 7, 7).await;
    wait_for_events(&server, sent + 40).await;
    let incremental = backup_create(server.data_dir(), to, "--incremental", &[]);
    assert_eq!(incremental["events"], json!(sent + 40), "{incremental}");
    assert_eq!(incremental["parent"], full["id"]);
    let copied = incremental["copied_bytes"].as_u64().expect("bytes");
    assert!(
        copied < full["copied_bytes"].as_u64().expect("bytes"),
        "the incremental copies only what is new: {incremental} after {full}"
    );
    let at_incremental = answers(&server).await;
    let listed = backup_list(to, &[]);
    assert_eq!(listed["backups"].as_array().expect("backups").len(), 2, "{listed}");
    assert_eq!(listed["unfinished"], json!([]));

    // Each backup restores into a new directory and answers as the source
    // did when it was taken.
    for (backup, expected) in [(&full, &at_full), (&incremental, &at_incremental)] {
        let dir = tempfile::tempdir().expect("dir");
        let id = backup["id"].as_str().expect("id");
        let data_dir = dir.path().to_str().expect("utf-8");
        warren_ok(&["restore", id, "--from", to, "--data-dir", data_dir], &[]);
        let refused = warren(&["restore", id, "--from", to, "--data-dir", data_dir], &[]);
        assert!(!refused.status.success(), "a restore never overwrites a directory in use");
        let restored = TestServer::start_in(BIN, dir, &[]);
        assert_eq!(&answers(&restored).await, expected, "backup {id} restored");
    }

    // Ingest goes on in the restored deployment: new events land once each,
    // after every restored one.
    let dir = tempfile::tempdir().expect("dir");
    let id = incremental["id"].as_str().expect("id");
    warren_ok(&["restore", id, "--from", to, "--data-dir", dir.path().to_str().expect("utf-8")], &[]);
    let restored = TestServer::start_in(BIN, dir, &[]);
    send_pageviews(&restored, "after-the-restore", 25).await;
    wait_for_events(&restored, sent + 40 + 25).await;
    let distinct =
        results(&restored, json!({"kind": "HogQLQuery", "query": "SELECT count(DISTINCT uuid) FROM events"}))
            .await;
    assert_eq!(distinct[0][0], json!(sent + 40 + 25), "no event twice");

    // One flipped byte in a file the incremental shares with the full
    // backup: verifying the incremental names that file.
    let stored = walk(&backups.path().join(full["id"].as_str().expect("id")).join("files/events"))
        .into_iter()
        .find(|path| path.extension().is_some_and(|ext| ext == "parquet"))
        .expect("a data file in the full backup");
    let mut bytes = std::fs::read(&stored).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&stored, bytes).expect("write");
    let verify = warren(&["backup", "verify", id, "--to", to], &[]);
    assert!(!verify.status.success(), "a damaged backup fails verification");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    let name = stored.file_name().expect("name").to_str().expect("utf-8");
    assert!(stderr.contains(name), "the damaged file is named: {stderr}");

    // The full backup holds files the incremental needs.
    let full_id = full["id"].as_str().expect("id");
    let refused = warren(&["backup", "delete", full_id, "--to", to], &[]);
    assert!(!refused.status.success(), "deleting a chain's base alone is refused");
    assert!(String::from_utf8_lossy(&refused.stderr).contains(id), "the dependant is named");
    warren_ok(&["backup", "delete", full_id, "--to", to, "--with-dependants"], &[]);
    assert_eq!(backup_list(to, &[])["backups"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backup_is_never_listed_and_the_next_run_completes() {
    let server = TestServer::start(BIN);
    for batch in 0..10 {
        send_pageviews(&server, &format!("sender-{batch}"), 100).await;
    }
    wait_for_events(&server, 1000).await;
    let backups = tempfile::tempdir().expect("dir");
    let to = backups.path().to_str().expect("utf-8");
    let data_dir = server.data_dir().to_str().expect("utf-8");
    // Slowed down so it is still copying when it is killed.
    let mut slow = Command::new(BIN)
        .args(["backup", "create", "--to", to, "--data-dir", data_dir, "--max-mib-per-sec", "0.02"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the backup");
    let deadline = Instant::now() + Duration::from_secs(60);
    while walk(backups.path()).is_empty() {
        assert!(Instant::now() < deadline, "the backup never began copying");
        assert!(slow.try_wait().expect("status").is_none(), "the slowed backup ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    slow.kill().expect("SIGKILL");
    slow.wait().expect("wait");
    let listed = backup_list(to, &[]);
    assert_eq!(listed["backups"], json!([]), "a killed backup is not listed: {listed}");
    assert_eq!(listed["unfinished"].as_array().expect("unfinished").len(), 1, "{listed}");

    let done = backup_create(server.data_dir(), to, "--full", &[]);
    assert_eq!(done["events"], json!(1000));
    let listed = backup_list(to, &[]);
    assert_eq!(listed["backups"].as_array().expect("backups").len(), 1, "{listed}");
    assert_eq!(listed["unfinished"], json!([]), "the next run removed what the killed one left");
    warren_ok(&["backup", "verify", done["id"].as_str().expect("id"), "--to", to], &[]);

    // A directory a restore did not finish is never served.
    let half = tempfile::tempdir().expect("dir");
    std::fs::write(half.path().join(warren_core::RESTORING_MARKER), "an id").expect("marker");
    let refused = warren(
        &["serve", "--data-dir", half.path().to_str().expect("utf-8"), "--listen", "127.0.0.1:0"],
        &[],
    );
    assert!(!refused.status.success(), "a half-restored directory is refused");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("run `warren restore` again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_on_s3_restore_like_backups_in_a_directory() {
    let Some(garage) = warren_testkit::services::GarageServer::shared() else { return };
    let server = TestServer::start(BIN);
    send_pageviews(&server, "s3", 30).await;
    wait_for_events(&server, 30).await;
    let (to, env) = s3_target(garage);
    let full = backup_create(server.data_dir(), &to, "--full", &env);
    send_pageviews(&server, "s3", 10).await;
    wait_for_events(&server, 40).await;
    let incremental = backup_create(server.data_dir(), &to, "--incremental", &env);
    assert_eq!(incremental["parent"], full["id"]);
    let expected = answers(&server).await;
    let id = incremental["id"].as_str().expect("id");
    warren_ok(&["backup", "verify", id, "--to", &to], &env);
    let dir = tempfile::tempdir().expect("dir");
    warren_ok(&["restore", id, "--from", &to, "--data-dir", dir.path().to_str().expect("utf-8")], &env);
    let restored = TestServer::start_in(BIN, dir, &[]);
    assert_eq!(answers(&restored).await, expected);
    assert_eq!(count(&restored).await, 40);
}

/// A new prefix of Garage's bucket to keep backups under, and the settings
/// that reach it.
pub(crate) fn s3_target(
    garage: &warren_testkit::services::GarageServer,
) -> (String, Vec<(&'static str, &str)>) {
    let env = vec![
        ("WARREN_BACKUP__STORAGE_OPTIONS__AWS_ENDPOINT", garage.endpoint.as_str()),
        ("WARREN_BACKUP__STORAGE_OPTIONS__AWS_REGION", garage.region.as_str()),
        ("WARREN_BACKUP__STORAGE_OPTIONS__AWS_ACCESS_KEY_ID", garage.access_key_id.as_str()),
        ("WARREN_BACKUP__STORAGE_OPTIONS__AWS_SECRET_ACCESS_KEY", garage.secret_access_key.as_str()),
        ("WARREN_BACKUP__STORAGE_OPTIONS__AWS_ALLOW_HTTP", "true"),
    ];
    (format!("s3://{}/{}/backups", garage.bucket, uuid::Uuid::new_v4()), env)
}

/// Every file under `dir`, recursively.
pub(crate) fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
