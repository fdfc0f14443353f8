//! Differential tests: a generated story goes through capture and ingest;
//! trends, funnels and retention from Warren's query API must equal what
//! plain SQL in DuckDB computes over the same Delta table's Parquet files
//! (`tests/sdk/duckdb_reference.py`), persons resolved through the meta
//! store's overrides by the reference itself.

use std::process::Command;

use serde_json::{json, Value};
use warren_testkit::{require, TestServer, TOKEN};

use crate::query::{results, wait_for_events};
use crate::sdk::python;
use crate::{repo_root, BIN};

const FROM: &str = "2024-02-01";
const TO: &str = "2024-02-21";

fn ints(value: &Value) -> Vec<i64> {
    value.as_array().expect("array").iter().map(|v| v.as_f64().expect("number") as i64).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_match_duckdb_on_a_generated_story() {
    let Some(python) = python() else {
        require(false, "python with duckdb and deltalake in .venv");
        return;
    };
    let server = TestServer::start(BIN);
    let output = Command::new(BIN)
        .args(["generate", "--users", "400", "--days", "21", "--start", FROM, "--seed", "11"])
        .args(["--url", &server.url, "--token", TOKEN])
        .output()
        .expect("warren generate");
    assert!(output.status.success(), "generate failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let generated: i64 = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected generate output {stdout:?}"));
    assert!(generated > 4_000, "a story worth comparing: {generated} events");

    wait_for_events(&server, generated).await;

    let reference = Command::new(&python)
        .arg(repo_root().join("tests/sdk/duckdb_reference.py"))
        .arg(server.data_dir().join("events"))
        .arg(server.data_dir().join("meta.db"))
        .args([FROM, TO])
        .output()
        .expect("running DuckDB");
    assert!(reference.status.success(), "DuckDB failed: {}", String::from_utf8_lossy(&reference.stderr));
    let reference: Value = serde_json::from_slice(&reference.stdout).expect("reference JSON");

    let range = json!({"date_from": FROM, "date_to": TO});
    let trends = results(&server, json!({"kind": "TrendsQuery", "dateRange": range, "series": [
        {"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "$pageview", "math": "dau"}]})).await;
    let days: Vec<&str> =
        trends[0]["days"].as_array().expect("days").iter().map(|d| d.as_str().expect("day")).collect();
    let (totals, dau) = (ints(&trends[0]["data"]), ints(&trends[1]["data"]));
    let expected: Vec<(String, i64, i64)> = reference["trends"]
        .as_array()
        .expect("trends")
        .iter()
        .map(|r| {
            (r[0].as_str().expect("day").to_string(), r[1].as_i64().expect("n"), r[2].as_i64().expect("dau"))
        })
        .collect();
    for (day, n, u) in &expected {
        let i = days.iter().position(|d| d == day).unwrap_or_else(|| panic!("{day} missing from {days:?}"));
        assert_eq!((totals[i], dau[i]), (*n, *u), "pageviews and DAU on {day}");
    }
    assert_eq!(
        totals.iter().sum::<i64>(),
        expected.iter().map(|e| e.1).sum::<i64>(),
        "days without events are zero"
    );

    let browsers = results(&server, json!({"kind": "TrendsQuery", "dateRange": range,
        "series": [{"kind": "EventsNode", "event": "$pageview"}], "breakdownFilter": {"breakdown": "$browser"},
        "trendsFilter": {"display": "ActionsTable"}})).await;
    let ours: Vec<(String, i64)> = browsers
        .as_array()
        .expect("series")
        .iter()
        .map(|s| {
            (
                s["breakdown_value"].as_str().expect("value").to_string(),
                s["aggregated_value"].as_i64().expect("count"),
            )
        })
        .collect();
    let theirs: Vec<(String, i64)> = reference["browsers"]
        .as_array()
        .expect("browsers")
        .iter()
        .map(|r| (r[0].as_str().expect("browser").to_string(), r[1].as_i64().expect("n")))
        .collect();
    assert_eq!(ours, theirs, "pageviews by browser");

    let funnel = results(&server, json!({"kind": "FunnelsQuery", "dateRange": range, "series": [
        {"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signed_up"},
        {"kind": "EventsNode", "event": "purchase"}], "funnelsFilter": {"funnelWindowInterval": 14, "funnelWindowIntervalUnit": "day"}})).await;
    let steps: Vec<i64> =
        funnel.as_array().expect("steps").iter().map(|s| s["count"].as_i64().expect("count")).collect();
    assert_eq!(steps, ints(&reference["funnel"]), "funnel step counts");
    assert!(steps[2] > 0, "the story has buyers: {steps:?}");

    let retention = results(&server, json!({"kind": "RetentionQuery", "dateRange": {"date_to": TO},
        "retentionFilter": {"period": "Day", "totalIntervals": 14, "retentionType": "retention_recurring",
            "targetEntity": {"id": "$pageview", "type": "events"}, "returningEntity": {"id": "$pageview", "type": "events"}}})).await;
    let mut ours = Vec::new();
    for cohort in retention.as_array().expect("cohorts") {
        let day = &cohort["date"].as_str().expect("date")[..10];
        for (period, value) in cohort["values"].as_array().expect("values").iter().enumerate() {
            let count = value["count"].as_i64().expect("count");
            if count > 0 {
                ours.push((day.to_string(), period as i64, count));
            }
        }
    }
    let theirs: Vec<(String, i64, i64)> = reference["retention"]
        .as_array()
        .expect("retention")
        .iter()
        .map(|r| {
            (
                r[0].as_str().expect("day").to_string(),
                r[1].as_i64().expect("period"),
                r[2].as_i64().expect("n"),
            )
        })
        .collect();
    assert_eq!(ours, theirs, "daily retention cohorts");
}
