//! Start-up, bootstrap, configuration, metrics and clean shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;
use warren_testkit::{TestServer, TOKEN};

use crate::{http, BIN};

#[test]
fn version_prints() {
    let output = Command::new(BIN).arg("version").output().expect("run");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("warren "), "{text}");
    assert!(text.contains("event log segment format 1"), "{text}");
    assert!(text.contains("meta store schema (sqlite) 10"), "{text}");
    assert!(text.contains("meta store schema (postgres) 9"), "{text}");
}

/// Starts `warren serve` on `dir` and returns its stdout up to the
/// listening line, then stops it with SIGTERM.
fn first_lines(dir: &std::path::Path, env: &[(&str, &str)]) -> Vec<String> {
    first_lines_with(dir, env, &[])
}

fn first_lines_with(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Vec<String> {
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .env("WARREN_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start");
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let line = line.expect("line");
        let done = line.starts_with(warren_core::LISTENING_LINE);
        lines.push(line);
        if done {
            break;
        }
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM");
    assert!(child.wait().expect("wait").success(), "SIGTERM exits 0");
    lines
}

#[test]
fn first_start_writes_the_secrets_once_to_an_owner_only_file_and_config_comes_from_the_environment() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let first = first_lines(dir.path(), &[("WARREN_EVENT_LOG__PARTITIONS", "3")]);
    let file = dir.path().join(warren_core::FIRST_START_CREDENTIALS);
    let text = first.join("\n");
    assert!(text.contains(&file.display().to_string()), "the file's path is printed: {text}");
    let credentials = warren_testkit::read_credentials(&file);
    assert!(credentials["project_token"].starts_with("phc_"), "{credentials:?}");
    assert!(credentials["personal_api_key"].starts_with("phx_"), "{credentials:?}");
    assert_eq!(credentials["dashboard_email"], "admin@warren.local");
    for secret in credentials.values().filter(|value| !value.contains('@')) {
        assert!(!text.contains(secret.as_str()), "a secret was printed: {text}");
    }
    let mode = std::fs::metadata(&file).expect("credentials file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    let written = std::fs::read(&file).expect("credentials");
    let second = first_lines(dir.path(), &[]);
    assert!(!second.iter().any(|l| l.contains(warren_core::FIRST_START_CREDENTIALS)), "once: {second:?}");
    assert_eq!(std::fs::read(&file).expect("credentials"), written, "a restart leaves the file alone");
    let meta = std::fs::read_to_string(dir.path().join("log/log.json")).expect("log meta");
    let meta: serde_json::Value = serde_json::from_str(&meta).expect("json");
    assert_eq!(meta["partitions"], 3, "WARREN_EVENT_LOG__PARTITIONS applied at creation");
}

#[test]
fn a_broken_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("warren.toml");
    std::fs::write(&config, "[event_log]\npartitions = \"many\"\n").expect("write");
    let output = Command::new(BIN)
        .args(["--config"])
        .arg(&config)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("partitions"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_events_and_log_work() {
    let mut server = TestServer::start(BIN);
    let client = http();
    let body = json!({"api_key": TOKEN, "batch": [
        {"event": "a", "distinct_id": "m1"}, {"event": "b", "distinct_id": "m2"},
        {"event": "$performance_event", "distinct_id": "m3"},
    ]});
    let response = client.post(format!("{}/batch/", server.url)).json(&body).send().await.expect("send");
    assert_eq!(response.status(), 200);
    let ready = client.get(format!("{}/_readiness", server.url)).send().await.expect("readiness");
    assert_eq!((ready.status().as_u16(), ready.text().await.expect("text").as_str()), (200, "ok"));
    let bad = client.post(format!("{}/batch/", server.url)).body("{").send().await.expect("send");
    assert_eq!(bad.status(), 400);
    let text = client
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let value = |needle: &str| -> f64 {
        text.lines()
            .find(|line| line.starts_with(needle))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
    };
    assert_eq!(value("warren_capture_events_received_total"), 2.0);
    assert_eq!(value("warren_capture_events_dropped_total{cause=\"performance_event\"}"), 1.0);
    assert_eq!(value("warren_capture_requests_refused_total{code=\"invalid_payload\"}"), 1.0);
    assert!(text.contains("warren_http_requests_total{route=\"/batch\",method=\"POST\",status=\"200\"} 1"));
    assert!(value("warren_log_fsync_duration_seconds_count") >= 1.0);
    assert!(value("warren_log_append_duration_seconds_count") >= 1.0);
    assert!(value("warren_capture_payload_bytes_count") >= 2.0);
    assert!(value("warren_log_partition_bytes{partition=\"0\"}") >= 40.0);
    assert!(text.contains("warren_log_partition_segments{partition="));
    assert!(text.contains("warren_http_request_duration_seconds_bucket"));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_log_stops_the_start_until_repair_is_asked_for() {
    let mut server = TestServer::start(BIN);
    let events: Vec<_> =
        (0..200).map(|i| json!({"event": "e", "distinct_id": "one", "properties": {"i": i}})).collect();
    for chunk in events.chunks(10) {
        let body = json!({"api_key": TOKEN, "batch": chunk});
        let response = http().post(format!("{}/batch/", server.url)).json(&body).send().await.expect("send");
        assert_eq!(response.status(), 200);
    }
    server.stop();
    let segment = std::fs::read_dir(server.data_dir().join("log/partitions"))
        .expect("partitions")
        .flat_map(|partition| std::fs::read_dir(partition.expect("entry").path()).expect("dir"))
        .map(|entry| entry.expect("entry").path())
        .max_by_key(|path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&segment, bytes).expect("write");

    let refused = Command::new(BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert!(!refused.status.success(), "a corrupt log must not be served");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("corrupt") && stderr.contains("--repair"), "{stderr}");

    first_lines_with(server.data_dir(), &[], &["--repair"]);
    let kept = server.read_log().len();
    assert!((190..200).contains(&kept), "repair kept every intact record ({kept} of 200)");
}

/// A start held up by a store that does not answer (here a "cluster"
/// that accepts connections and never replies) still stops on SIGTERM,
/// cleanly and at once, instead of after the store's timeout.
#[test]
fn sigterm_while_the_stores_open_stops_the_start() {
    let dir = tempfile::tempdir().expect("dir");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("clickhouse://{}/warren?cluster=silent", silent.local_addr().expect("address"));
    let child = Command::new(BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("WARREN_CLICKHOUSE__URL", &url)
        .env("WARREN_LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    // Once the process has connected to the cluster, it is past the
    // point where its signal handlers are installed and waiting on it.
    let (_held, _) = silent.accept().expect("the process connects to the cluster");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM");
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "SIGTERM during start exits 0: {output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains(warren_core::LISTENING_LINE), "it never served: {stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("stopped before serving"), "{stderr}");
}
