//! The official SDKs, pinned in tests/sdk, send to a real `warren serve`.

use std::path::PathBuf;
use std::process::Command;

use warren_testkit::{require, TestServer, TOKEN};

use crate::expect::{assert_log_matches, parse_lines};
use crate::{repo_root, BIN};

pub(crate) fn python() -> Option<PathBuf> {
    let python = repo_root().join(".venv/bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import posthog, deltalake, duckdb"])
        .output()
        .is_ok_and(|out| out.status.success());
    ready.then_some(python)
}

fn node_ready() -> bool {
    let has_node = Command::new("node").arg("--version").output().is_ok_and(|out| out.status.success());
    let modules = repo_root().join("tests/sdk/node_modules");
    has_node && ["posthog-node", "lz-string", "fflate"].iter().all(|name| modules.join(name).exists())
}

/// Runs a sender script against a fresh server and checks the log.
fn run_sender(program: PathBuf, script: &str) {
    let mut server = TestServer::start(BIN);
    let output = Command::new(program)
        .arg(repo_root().join("tests/sdk").join(script))
        .args([&server.url, TOKEN])
        .current_dir(repo_root().join("tests/sdk"))
        .output()
        .expect("running the sender");
    assert!(output.status.success(), "{script} failed: {}", String::from_utf8_lossy(&output.stderr));
    let expected = parse_lines(&output.stdout);
    assert!(expected.len() > 5, "{script} reported what it sent");
    server.stop();
    assert_log_matches(&expected, &server.read_log());
}

#[test]
fn posthog_python_events_land_in_the_log_exactly() {
    let Some(python) = python() else {
        require(false, "posthog-python in .venv");
        return;
    };
    run_sender(python, "python_sdk.py");
}

#[test]
fn posthog_node_events_land_in_the_log_exactly() {
    if !require(node_ready(), "node with posthog-node in tests/sdk/node_modules") {
        return;
    }
    run_sender(PathBuf::from("node"), "node_sdk.mjs");
}

#[test]
fn posthog_js_encodings_land_in_the_log_exactly() {
    if !require(node_ready(), "node with lz-string and fflate in tests/sdk/node_modules") {
        return;
    }
    run_sender(PathBuf::from("node"), "js_encoders.mjs");
}

/// posthog-js from npm in Chromium, on a page of another origin, with its
/// defaults: remote configuration, flags, autocapture and events all
/// answered (tests/sdk/browser_posthog_js.mjs), and every event it sent
/// in Warren's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posthog_js_in_a_browser_gets_config_flags_and_autocapture() {
    // With the configuration's gzip, with posthog-js's compression off, and
    // with XMLHttpRequest instead of fetch.
    const MODES: [&str; 3] = ["gzip", "uncompressed", "xhr"];
    let browser = crate::dashboard::chromium();
    let modules = repo_root().join("tests/sdk/node_modules/posthog-js");
    if !require(
        browser.is_some() && modules.exists(),
        "chromium, playwright-core and posthog-js in tests/sdk",
    ) {
        return;
    }
    use crate::dashboard::{ADMIN_EMAIL, ADMIN_PASSWORD};
    let mut server = TestServer::start_with_env(
        BIN,
        &[
            ("WARREN_BOOTSTRAP__ADMIN_EMAIL", ADMIN_EMAIL),
            ("WARREN_BOOTSTRAP__ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
    );
    let api = crate::accounts::Client::anonymous(&server).with_key(warren_testkit::API_KEY);
    let recording_on = serde_json::json!({"session_recording_opt_in": true});
    api.ok(reqwest::Method::PATCH, "/api/projects/1/", Some(recording_on)).await;
    for flag in [
        serde_json::json!({"key": "new-checkout", "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]}}),
        serde_json::json!({"key": "checkout-variant", "filters": {"groups": [{"properties": [], "rollout_percentage": 100}],
            "multivariate": {"variants": [{"key": "control", "rollout_percentage": 0}, {"key": "test", "rollout_percentage": 100}]},
            "payloads": {"test": "{\"price\": 9}"}}}),
    ] {
        api.ok(reqwest::Method::POST, "/api/projects/1/feature_flags/", Some(flag)).await;
    }

    let mut stdout = String::new();
    for mode in MODES {
        let script = repo_root().join("tests/sdk/browser_posthog_js.mjs");
        let mut command = Command::new("node");
        command
            .arg(script)
            .args([&server.url, TOKEN, "new-checkout", mode])
            .current_dir(repo_root().join("tests/sdk"));
        command.env("CHROMIUM_PATH", browser.clone().expect("checked"));
        let output =
            tokio::task::spawn_blocking(move || command.output()).await.expect("join").expect("node");
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        println!("{out}");
        assert!(
            output.status.success(),
            "posthog-js in the browser ({mode}): {out}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(out.contains("all checks passed"));
        stdout.push_str(&out);
    }

    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    let (recorded, sent): (Vec<_>, Vec<_>) =
        lines.into_iter().partition(|line| line.get("recording").is_some());
    let recorded: Vec<(String, i64)> = recorded
        .iter()
        .map(|line| {
            (
                line["recording"].as_str().expect("session id").to_string(),
                line["events"].as_i64().expect("count"),
            )
        })
        .collect();
    let runs = MODES.len() as i64;
    assert_eq!(recorded.len() as i64, runs, "one recorded session per run of the page");
    recordings_are_listed_and_played_back(&server, &api, &recorded, browser.as_deref().expect("checked"))
        .await;
    assert!(sent.iter().any(|event| event["event"] == "$autocapture"), "{sent:?}");
    // The click is found by its elements, as PostHog's element filters
    // find it: by CSS selector, tag, text, or not at all.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let clicks = serde_json::json!({"kind": "HogQLQuery", "query": "SELECT count() FROM events WHERE event = '$autocapture'"});
    // Two clicks per run of the page: the purchase and the receipt.
    while crate::query::results(&server, clicks.clone()).await[0][0] != 2 * runs {
        assert!(std::time::Instant::now() < deadline, "the click was not ingested");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Each run of the page is one session, and its pageviews carry its id
    // (what the dashboard's web analytics count sessions by).
    let sessions = serde_json::json!({"kind": "HogQLQuery", "query": "SELECT count(DISTINCT properties.$session_id), \
        min(toUnixTimestamp(timestamp)) BETWEEN 1700000000 AND 4000000000 FROM events WHERE event = '$pageview' AND timestamp >= now() - INTERVAL 24 HOUR"});
    assert_eq!(crate::query::results(&server, sessions).await, serde_json::json!([[runs, true]]));

    // Per run of the page, one click on the purchase and one on the receipt.
    for (key, operator, value, expected) in [
        ("selector", "exact", "button.buy-button", runs),
        ("selector", "exact", "body button#buy", runs),
        ("selector", "exact", ".missing", 0),
        ("tag_name", "exact", "button", 2 * runs),
        ("text", "exact", "Buy now", runs),
        ("text", "icontains", "buy", runs),
        ("text", "is_not", "Buy now", runs),
        ("selector", "exact", "#reveal", runs),
    ] {
        let trends = serde_json::json!({"kind": "TrendsQuery", "dateRange": {"date_from": "-1d"},
            "series": [{"kind": "EventsNode", "event": "$autocapture",
                "properties": [{"type": "element", "key": key, "operator": operator, "value": value}]}]});
        let results = crate::query::results(&server, trends).await;
        let total: f64 = results[0]["data"].as_array().expect("data").iter().filter_map(|v| v.as_f64()).sum();
        assert_eq!(total as i64, expected, "clicks whose {key} {operator} {value:?}: {results}");
    }

    // posthog-js sends on its own schedule; what the page printed was sent
    // and answered 200, so it is in the log once the server has stopped.
    server.stop();
    let log = server.read_log();
    // Sent by sendBeacon as each run left its page.
    let left = log.iter().filter(|record| record.event == "$pageleave").count();
    assert_eq!(left as i64, runs, "a $pageleave per run of the page");
    for event in &sent {
        let uuid = event["uuid"].as_str().expect("uuid");
        let stored: Vec<_> = log.iter().filter(|record| record.uuid.to_string() == uuid).collect();
        assert_eq!(stored.len(), 1, "{event} is in the log once");
        assert_eq!(stored[0].event, event["event"].as_str().expect("name"));
        if stored[0].event == "checkout started" {
            assert!(
                stored[0].data.contains("acme"),
                "events after group() carry the group: {}",
                stored[0].data
            );
        }
        if stored[0].event == "$autocapture" {
            assert!(
                stored[0].data.contains("buy-button") || stored[0].data.contains(r#"attr__id=\"reveal\""#),
                "the click's elements are stored: {}",
                stored[0].data
            );
        }
    }
}

/// The sessions the page recorded, through the API (listed for the project
/// and for the person who bought, with their rrweb events unpacked) and in
/// the dashboard's player.
async fn recordings_are_listed_and_played_back(
    server: &TestServer,
    api: &crate::accounts::Client,
    recorded: &[(String, i64)],
    browser: &std::path::Path,
) {
    use reqwest::Method;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    // Every rrweb event each page sent to /s/ (and was answered 200 for).
    let listed = loop {
        let list = api.ok(Method::GET, "/api/projects/1/session_recordings/", None).await;
        let stored: Vec<(String, i64)> = list["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| (r["id"].as_str().expect("id").into(), r["event_count"].as_i64().expect("count")))
            .collect();
        if recorded.iter().all(|sent| stored.contains(sent)) {
            break list;
        }
        assert!(std::time::Instant::now() < deadline, "the recordings were not ingested: {list}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let results = listed["results"].as_array().expect("results");
    assert_eq!(results.len(), recorded.len(), "{listed}");
    for recording in results {
        assert!(
            recording["start_url"].as_str().is_some_and(|url| url.starts_with("http://127.0.0.1:")),
            "{recording}"
        );
        assert!(recording["event_count"].as_i64() > Some(2), "{recording}");
        assert!(recording["click_count"].as_i64() >= Some(2), "two clicks per page: {recording}");
    }

    // Every run identified the same buyer: their sessions are the person's.
    let buyer =
        api.ok(Method::GET, "/api/projects/1/persons/?distinct_id=browser-buyer%40example.com", None).await;
    let person = buyer["results"][0]["id"].as_str().expect("the buyer").to_string();
    let theirs =
        api.ok(Method::GET, &format!("/api/projects/1/session_recordings/?person_id={person}"), None).await;
    assert_eq!(theirs["results"].as_array().map(Vec::len), Some(recorded.len()), "{theirs}");

    // The rrweb events come back plain, posthog-js's packing undone.
    let session = &recorded[0].0;
    let one = api.ok(Method::GET, &format!("/api/projects/1/session_recordings/{session}/"), None).await;
    assert_eq!(one["id"], session.as_str());
    let snapshots = crate::http()
        .get(format!("{}/api/projects/1/session_recordings/{session}/snapshots/", server.url))
        .bearer_auth(warren_testkit::API_KEY)
        .send()
        .await
        .expect("snapshots");
    assert_eq!(snapshots.status(), 200);
    let text = snapshots.text().await.expect("lines");
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("line")["event"].clone())
        .collect();
    assert!(
        events.iter().any(|event| event["type"] == 2 && event["data"]["node"].is_object()),
        "a full snapshot"
    );
    assert!(events.iter().all(|event| event.get("cv").is_none()), "nothing left packed");
    assert!(
        events.iter().any(
            |event| event["type"] == 3 && event["data"]["adds"].to_string().contains("Thanks for buying")
        ),
        "the receipt's mutation"
    );
    let (missing, _) =
        api.call(Method::GET, "/api/projects/1/session_recordings/no-such-session/", None).await;
    assert_eq!(missing, 404);

    let shots = std::env::var_os("WARREN_TEST_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-artifacts"))
        .join("recordings");
    let output = Command::new("node")
        .arg(repo_root().join("tests/sdk/browser_recording_player.mjs"))
        .args([server.url.as_str(), crate::dashboard::ADMIN_EMAIL, crate::dashboard::ADMIN_PASSWORD, session])
        .arg(&shots)
        .env("CHROMIUM_PATH", browser)
        .current_dir(repo_root().join("tests/sdk"))
        .output()
        .expect("running the player test");
    let out = String::from_utf8_lossy(&output.stdout);
    println!("{out}");
    assert!(
        output.status.success() && out.contains("all checks passed"),
        "the recording in the dashboard's player (screenshots in {}): {out}\n{}",
        shots.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(shots.join("recording-later-frame.png").exists());
}
