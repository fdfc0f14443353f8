//! The query API end to end: events sent by posthog-python go through
//! capture and ingest, and every insight kind and SQL answer over them
//! through `POST /api/projects/1/query/` with a personal API key.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warren_testkit::{require, TestServer, API_KEY, TOKEN};

use crate::sdk::python;
use crate::{http, repo_root, BIN};

async fn query(server: &TestServer, key: Option<&str>, project: &str, body: Value) -> (u16, Value) {
    let mut request = http().post(format!("{}/api/projects/{project}/query/", server.url)).json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("query request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until SQL sees `count` events: ingest runs beside capture.
pub(crate) async fn wait_for_events(server: &TestServer, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows =
            results(server, json!({"kind": "HogQLQuery", "query": "SELECT count() FROM events"})).await;
        if rows[0][0] == json!(count) {
            return;
        }
        assert!(Instant::now() < deadline, "ingest did not finish: {rows} of {count} events");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends the events of `tests/sdk/python_insights.py` (with its merge of
/// two persons when `merge`); how many it sent.
pub(crate) fn send_insight_events(python: &std::path::Path, server: &TestServer, merge: bool) -> i64 {
    let output = Command::new(python)
        .arg(repo_root().join("tests/sdk/python_insights.py"))
        .args([&server.url, TOKEN])
        .args(merge.then_some("--with-merge"))
        .output()
        .expect("running the sender");
    assert!(output.status.success(), "sender failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().parse().expect("count")
}

/// The `results` of a query that must succeed.
pub(crate) async fn results(server: &TestServer, query_body: Value) -> Value {
    let (status, body) = query(server, Some(API_KEY), "1", json!({ "query": query_body })).await;
    assert_eq!(status, 200, "query failed: {body}");
    body["results"].clone()
}

fn data(series: &Value) -> Vec<i64> {
    series["data"].as_array().expect("data").iter().map(|v| v.as_f64().expect("number") as i64).collect()
}

const RANGE: &str = r#"{"date_from": "2024-03-01", "date_to": "2024-03-03"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_insight_kind_answers_over_sdk_events() {
    let Some(python) = python() else {
        require(false, "posthog-python in .venv");
        return;
    };
    let server = TestServer::start(BIN);
    let sent = send_insight_events(&python, &server, false);

    wait_for_events(&server, sent).await;
    let range: Value = serde_json::from_str(RANGE).expect("range");

    let trends = results(
        &server,
        json!({"kind": "TrendsQuery", "dateRange": range, "series": [
        {"kind": "EventsNode", "event": "$pageview"},
        {"kind": "EventsNode", "event": "$pageview", "math": "dau"}]}),
    )
    .await;
    assert_eq!(data(&trends[0]), [3, 2, 1], "{trends}");
    assert_eq!(data(&trends[1]), [2, 2, 1], "anon-3 and u3 are one person: {trends}");
    assert_eq!(trends[0]["days"], json!(["2024-03-01", "2024-03-02", "2024-03-03"]));

    let by_browser = results(&server, json!({"kind": "TrendsQuery", "dateRange": range,
        "series": [{"kind": "EventsNode", "event": "$pageview"}], "breakdownFilter": {"breakdown": "$browser"}})).await;
    let values: Vec<&str> = by_browser
        .as_array()
        .expect("series")
        .iter()
        .map(|s| s["breakdown_value"].as_str().expect("value"))
        .collect();
    assert_eq!(values, ["Firefox", "Chrome", "Safari"], "{by_browser}");

    let funnel = results(
        &server,
        json!({"kind": "FunnelsQuery", "dateRange": range, "series": [
        {"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signup"}]}),
    )
    .await;
    assert_eq!((funnel[0]["count"].clone(), funnel[1]["count"].clone()), (json!(3), json!(2)), "{funnel}");

    let retention = results(&server, json!({"kind": "RetentionQuery", "dateRange": {"date_to": "2024-03-03"},
        "retentionFilter": {"period": "Day", "totalIntervals": 3, "targetEntity": {"id": "$pageview", "type": "events"},
                            "returningEntity": {"id": "$pageview", "type": "events"}}})).await;
    let counts: Vec<Vec<i64>> = retention
        .as_array()
        .expect("cohorts")
        .iter()
        .map(|c| {
            c["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| v["count"].as_i64().expect("count"))
                .collect()
        })
        .collect();
    assert_eq!(counts, [vec![2, 1, 1], vec![2, 0], vec![1]], "{retention}");

    let stickiness = results(
        &server,
        json!({"kind": "StickinessQuery", "dateRange": range,
        "series": [{"kind": "EventsNode", "event": "$pageview"}]}),
    )
    .await;
    assert_eq!(data(&stickiness[0]), [1, 2, 0], "{stickiness}");

    let lifecycle = results(
        &server,
        json!({"kind": "LifecycleQuery", "dateRange": range,
        "series": [{"kind": "EventsNode", "event": "$pageview"}]}),
    )
    .await;
    let by_status: Vec<(String, Vec<i64>)> = lifecycle
        .as_array()
        .expect("statuses")
        .iter()
        .map(|s| (s["status"].as_str().expect("status").to_string(), data(s)))
        .collect();
    assert_eq!(
        by_status,
        [
            ("new".to_string(), vec![2, 1, 0]),
            ("returning".to_string(), vec![0, 1, 0]),
            ("resurrecting".to_string(), vec![0, 0, 1]),
            ("dormant".to_string(), vec![0, -1, -2]),
        ],
        "{lifecycle}"
    );

    let paths = results(&server, json!({"kind": "PathsQuery", "dateRange": range})).await;
    let edge = &paths[0];
    assert_eq!(
        (paths.as_array().map(Vec::len), &edge["source"], &edge["target"], &edge["value"]),
        (Some(1), &json!("1_/home"), &json!("2_/docs"), &json!(1)),
        "{paths}"
    );
    // Five minutes apart. The SDK sends each event in its own request and
    // capture corrects each by that request's clock skew, so the gap moves
    // by the difference in request latency (milliseconds, more under load).
    let between = edge["average_conversion_time"].as_f64().expect("time");
    assert!((between - 300_000.0).abs() <= 1_000.0, "{paths}");

    let sql = results(&server, json!({"kind": "HogQLQuery",
        "query": "SELECT person.properties.email AS email, count() AS n FROM events WHERE person.properties.email IS NOT NULL GROUP BY email"})).await;
    assert_eq!(sql, json!([["three@example.com", 2]]), "$identify and what follows carry the email");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_api_checks_keys_projects_and_queries() {
    let server = TestServer::start(BIN);
    let trends =
        json!({"query": {"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": "$pageview"}]}});
    let (status, body) = query(&server, None, "1", trends.clone()).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("not_authenticated")));
    let (status, body) = query(&server, Some("phx_not_a_real_key_at_all"), "1", trends.clone()).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_api_key")));
    for other in ["2", "nope", "-1"] {
        let (status, body) = query(&server, Some(API_KEY), other, trends.clone()).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "project {other}");
    }
    let (status, body) = query(&server, Some(API_KEY), "1", trends).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["results"][0]["data"].as_array().is_some_and(|d| d.len() == 8), "{body}");

    for (bad, wanted) in [
        (json!({"query": {"kind": "NoSuchQuery"}}), "unknown variant"),
        (json!({"nothing": 1}), "missing field `query`"),
        (json!({"query": {"kind": "HogQLQuery", "query": "DROP TABLE events"}}), "only SELECT"),
        (
            json!({"query": {"kind": "HogQLQuery", "query": "SELECT missing_column FROM events"}}),
            "missing_column",
        ),
        (
            json!({"query": {"kind": "TrendsQuery", "series": [], "dateRange": {"date_from": "-7d"}}}),
            "series is empty",
        ),
    ] {
        let (status, body) = query(&server, Some(API_KEY), "1", bad.clone()).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_query")), "{bad}: {body}");
        assert!(body["detail"].as_str().is_some_and(|d| d.contains(wanted)), "{bad}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_queries_hit_their_limits_and_the_server_stays_up() {
    let server = TestServer::start_with_env(
        BIN,
        &[("WARREN_QUERY__TIMEOUT_SECS", "5"), ("WARREN_QUERY__MEMORY_LIMIT_MB", "64")],
    );
    let sql = |sql: &str| json!({"query": {"kind": "HogQLQuery", "query": sql}});
    // Far more distinct values than 64 MiB holds: stopped by whichever
    // limit it reaches first (in a debug build, usually the time).
    let hungry = "SELECT count(DISTINCT n) FROM (SELECT unnest(range(30000000)) AS n)";
    let (status, body) = query(&server, Some(API_KEY), "1", sql(hungry)).await;
    let stopped = [(503, Some("query_memory_limit")), (504, Some("query_timeout"))];
    assert!(stopped.contains(&(status, body["code"].as_str())), "{status} {body}");

    // Ten billion rows: only the time limit ends it.
    let endless = "SELECT count(*) FROM (SELECT unnest(range(100000)) AS a) x, (SELECT unnest(range(100000)) AS b) y WHERE (a * 7 + b) % 1000003 = 5";
    let (status, body) = query(&server, Some(API_KEY), "1", sql(endless)).await;
    assert_eq!((status, body["code"].as_str()), (504, Some("query_timeout")), "{body}");

    // Capture and the query API still answer.
    let capture = http()
        .post(format!("{}/batch/", server.url))
        .json(&json!({"api_key": TOKEN, "batch": [{"event": "after", "distinct_id": "d"}]}))
        .send()
        .await
        .expect("capture");
    assert_eq!(capture.status().as_u16(), 200);
    let (status, _) = query(&server, Some(API_KEY), "1", sql("SELECT 1")).await;
    assert_eq!(status, 200);
}
