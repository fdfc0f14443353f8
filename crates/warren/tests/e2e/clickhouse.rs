//! `warren serve` with a ClickHouse cluster: what an SDK sends reaches the
//! canonical Delta table and, row for row, the 2-shard × 2-replica cluster
//! the test kit starts — across a restart of the server and an outage of
//! the whole cluster too — and every insight kind answers from the cluster
//! as it does from Delta.

use std::process::Command;
use std::sync::Arc;

use serde_json::{json, Value};
use warren_core::config::ClickHouseConfig;
use warren_meta::{MetaStore, SqlMeta};
use warren_store::{ClickHouseStore, ClickHouseStoreOptions, Cut, EventRow, EventStore};
use warren_testkit::clickhouse::ClickHouseCluster;
use warren_testkit::{require, TestServer, TOKEN};

use crate::ingest::wait_for_rows;
use crate::query::{results, send_insight_events, wait_for_events};
use crate::sdk::python;
use crate::{repo_root, BIN};
use warren_meta::MetaSchema;

fn send_with_python(python: &std::path::Path, url: &str) -> usize {
    let output = Command::new(python)
        .arg(repo_root().join("tests/sdk/python_persons.py"))
        .args([url, TOKEN])
        .output()
        .expect("running the sender");
    assert!(output.status.success(), "sender failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok())
        .count()
}

/// The cluster's rows (of project 1) once it holds `count`, or what it
/// holds after a minute.
async fn cluster_rows(store: &ClickHouseStore, count: usize) -> Vec<EventRow> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let rows = store.read_rows(Some(1)).await.expect("read the cluster");
        if rows.len() >= count || std::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// A reader of the cluster at `url`, with a meta store of its own: reading
/// needs none of the server's. The directory holds that meta store.
pub(crate) async fn cluster_reader(url: &str) -> (ClickHouseStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let meta =
        SqlMeta::connect(&format!("sqlite://{}", dir.path().join("meta.db").display())).await.expect("meta");
    meta.migrate().await.expect("migrate");
    let meta: Arc<dyn MetaStore> = Arc::new(meta);
    let config = ClickHouseConfig { url: Some(url.to_string()), ..ClickHouseConfig::default() };
    let options = ClickHouseStoreOptions::from_config(&config).expect("options").expect("url");
    (ClickHouseStore::open(options, meta).await.expect("open the cluster"), dir)
}

pub(crate) fn sorted(mut rows: Vec<EventRow>) -> Vec<EventRow> {
    rows.sort_by_key(|row| row.uuid);
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_events_reach_the_cluster_as_they_reach_delta() {
    let Some(python) = python() else {
        require(false, "posthog-python in .venv");
        return;
    };
    let Some(cluster) = ClickHouseCluster::shared() else { return };
    let url = cluster.url(&format!("warren_e2e_{}", std::process::id()));
    let mut server = TestServer::start_with_env(BIN, &[("WARREN_CLICKHOUSE__URL", &url)]);
    let (reader, _meta) = cluster_reader(&url).await;

    let first = send_with_python(&python, &server.url);
    let delta = wait_for_rows(server.data_dir(), first).await;
    assert_eq!(delta.len(), first, "Delta holds every event");
    let clickhouse = cluster_rows(&reader, first).await;
    assert_eq!(sorted(clickhouse), sorted(delta), "the cluster holds the same rows as Delta");

    server.stop();
    server.restart();
    let second = send_with_python(&python, &server.url);
    let delta = wait_for_rows(server.data_dir(), first + second).await;
    assert_eq!(delta.len(), first + second);
    let clickhouse = cluster_rows(&reader, first + second).await;
    assert_eq!(sorted(clickhouse), sorted(delta), "after a restart, still row for row");
}

/// One query of every kind over the events of `tests/sdk/python_insights.py`
/// with its merge, and SQL over the persons the merge leaves.
fn insight_queries() -> Vec<Value> {
    let range = json!({"date_from": "2024-03-01", "date_to": "2024-03-03"});
    let pageviews = json!([{"kind": "EventsNode", "event": "$pageview"}]);
    vec![
        json!({"kind": "TrendsQuery", "dateRange": range, "series": [
            {"kind": "EventsNode", "event": "$pageview"},
            {"kind": "EventsNode", "event": "$pageview", "math": "dau"},
            {"kind": "EventsNode", "event": "$pageview", "math": "weekly_active"}]}),
        json!({"kind": "TrendsQuery", "dateRange": range, "interval": "hour", "series": pageviews,
               "breakdownFilter": {"breakdown": "$browser"}}),
        json!({"kind": "FunnelsQuery", "dateRange": range, "series": [
            {"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signup"}]}),
        json!({"kind": "FunnelsQuery", "dateRange": range, "funnelsFilter": {"funnelVizType": "trends"},
               "series": [{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signup"}]}),
        json!({"kind": "RetentionQuery", "dateRange": {"date_to": "2024-03-03"},
               "retentionFilter": {"period": "Day", "totalIntervals": 3,
                                   "targetEntity": {"id": "$pageview", "type": "events"},
                                   "returningEntity": {"id": "$pageview", "type": "events"}}}),
        json!({"kind": "StickinessQuery", "dateRange": range, "series": pageviews}),
        json!({"kind": "LifecycleQuery", "dateRange": range, "series": pageviews}),
        json!({"kind": "PathsQuery", "dateRange": range}),
        json!({"kind": "EventsQuery", "after": "2024-03-01", "before": "2024-03-04",
               "select": ["uuid", "event", "timestamp", "distinct_id", "person_id", "properties.$browser"]}),
        json!({"kind": "HogQLQuery", "query": "SELECT person.properties.email AS email, count() AS n FROM events \
               WHERE person.properties.email IS NOT NULL GROUP BY email ORDER BY email"}),
        json!({"kind": "HogQLQuery", "query": MERGED_PERSONS}),
        json!({"kind": "HogQLQuery", "query": "SELECT id, properties FROM persons ORDER BY id"}),
        element_filters(),
    ]
}

/// Every query of [`insight_queries`] answered by `server` (answering
/// from a cluster) equals its answer from Delta once the server is
/// restarted on the Delta backend and counts `events` there.
pub(crate) async fn answers_as_from_delta(server: &mut TestServer, events: i64) {
    let mut from_cluster = Vec::new();
    for query in insight_queries() {
        from_cluster.push(results(server, query).await);
    }
    server.stop();
    server.set_env("WARREN_QUERY__BACKEND", "delta");
    server.restart();
    wait_for_events(server, events).await;
    for (query, clickhouse) in insight_queries().into_iter().zip(from_cluster) {
        let delta = results(server, query.clone()).await;
        assert_eq!(clickhouse, delta, "{query} answers from the cluster as from Delta");
    }
}

/// Two clicks as posthog-js describes their elements.
fn clicks() -> Vec<Value> {
    let click = |chain: &str, at: &str| json!({"event": "$autocapture", "distinct_id": "u1", "timestamp": at, "properties": {"$elements_chain": chain}});
    vec![
        click(
            r#"button.buy.hover:underline:attr__class="buy hover:underline"nth-child="1"nth-of-type="1"text="Checkout now";div.cart:nth-child="1"nth-of-type="1";body"#,
            "2024-03-02T12:30:00Z",
        ),
        click(
            r#"a:attr__href="/checkout"href="/checkout"nth-child="2"nth-of-type="1"text="Go to checkout";body"#,
            "2024-03-02T12:31:00Z",
        ),
    ]
}

/// Clicks by CSS selector, by text in any case (longer than ClickHouse's
/// regex prefilter reads case-blind) and by tag: 1, 2 and 1 of them.
fn element_filters() -> Value {
    let clicks = |key: &str, operator: &str, value: &str| {
        json!({"kind": "EventsNode", "event": "$autocapture",
               "properties": [{"type": "element", "key": key, "operator": operator, "value": value}]})
    };
    json!({"kind": "TrendsQuery", "dateRange": {"date_from": "2024-03-01", "date_to": "2024-03-03"}, "series": [
        clicks("selector", "exact", "div > button.buy"),
        clicks("text", "icontains", "CHECKOUT"),
        clicks("tag_name", "exact", "a")]})
}

/// The persons of the merged distinct ids' events.
const MERGED_PERSONS: &str = "SELECT count(DISTINCT person_id) AS persons, count() AS events FROM events \
                              WHERE distinct_id IN ('anon-4', 'u4')";

/// `[query] backend = "clickhouse"`: the server answers from the cluster,
/// and each answer equals the one the same server gives from Delta — with
/// a merge among the events, so the cluster resolves merged persons too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_insight_kind_answers_from_the_cluster_as_from_delta() {
    let Some(python) = python() else {
        require(false, "posthog-python in .venv");
        return;
    };
    let Some(cluster) = ClickHouseCluster::shared() else { return };
    let url = cluster.url(&format!("warren_insights_{}", std::process::id()));
    let mut server = TestServer::start_with_env(
        BIN,
        &[("WARREN_CLICKHOUSE__URL", &url), ("WARREN_QUERY__BACKEND", "clickhouse")],
    );
    let sent = send_insight_events(&python, &server, true) + capture(&server, clicks()).await as i64;
    // Counted by the cluster itself.
    wait_for_events(&server, sent).await;
    let by_elements = results(&server, element_filters()).await;
    let totals: Vec<f64> = by_elements
        .as_array()
        .expect("series")
        .iter()
        .map(|series| series["count"].as_f64().expect("count"))
        .collect();
    assert_eq!(totals, [1.0, 2.0, 1.0], "clicks found by their elements on the cluster: {by_elements}");
    // anon-4's first event is stored with the person merged away, so the
    // answers below hold only if the cluster resolves it.
    let stored = crate::ingest::wait_until_rows(server.data_dir(), |rows| {
        ["anon-4", "u4"].iter().all(|id| rows.iter().any(|r| r.distinct_id == *id))
    })
    .await;
    let person_of = |id: &str| stored.iter().find(|r| r.distinct_id == id).map(|r| r.person_id);
    assert_ne!(person_of("anon-4"), person_of("u4"), "the merge happened after anon-4's event was stored");
    answers_as_from_delta(&mut server, sent).await;
    let merged = results(&server, json!({"kind": "HogQLQuery", "query": MERGED_PERSONS})).await;
    assert_eq!(merged, json!([[1, 4]]), "the merge joined anon-4's events to u4's person");
}

/// `warren clickhouse rebuild`, killed after its first day and run again,
/// leaves the cluster holding the Delta table row for row, and the meta
/// store's persons; `warren clickhouse verify` then finds every day equal,
/// finds a changed row (which a rebuild repairs) and a row on the wrong
/// shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_rebuild_finishes_when_run_again_and_verify_finds_what_differs() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let Some(cluster) = ClickHouseCluster::shared() else { return };
    let data = tempfile::tempdir().expect("data dir");
    let generated = Command::new(BIN)
        .args(["generate", "--users", "300", "--days", "6", "--start", "2024-03-01", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("run warren generate");
    assert!(generated.status.success(), "generate: {}", String::from_utf8_lossy(&generated.stderr));
    let database = format!("warren_rebuild_{}", std::process::id());
    let url = cluster.url(&database);
    let chore = |name: &str| {
        let mut command = Command::new(BIN);
        command
            .args(["clickhouse", name, "--data-dir"])
            .arg(data.path())
            .env("WARREN_CLICKHOUSE__URL", &url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };

    // The first run is killed once it reports its first day.
    let mut first = chore("rebuild").spawn().expect("start the rebuild");
    let mut lines = BufReader::new(first.stdout.take().expect("stdout")).lines();
    let first_day = loop {
        let line = lines.next().expect("the rebuild reports a day before it ends").expect("read");
        if line.starts_with("1/") {
            break line;
        }
    };
    first.kill().expect("kill the rebuild");
    let _ = first.wait();
    assert!(first_day.contains("loaded"), "{first_day}");

    let second = chore("rebuild").output().expect("run the rebuild again");
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{said}\n{}", String::from_utf8_lossy(&second.stderr));
    assert!(said.lines().any(|l| l.starts_with("1/") && l.contains("already there, verified")), "{said}");
    let total =
        first_day.split_once('/').and_then(|(_, rest)| rest.split_once(' ')).map(|(n, _)| n.to_string());
    let total = total.expect("1/N names the days");
    assert!(said.contains(&format!("done: {total} days")), "{said}");

    let table = crate::ingest::open_table(data.path()).await;
    let delta = table.read_rows(None).await.expect("read Delta");
    assert!(delta.len() > 1000, "a dataset worth loading: {}", delta.len());
    let mut received: Vec<i64> = delta.iter().map(|row| row.created_at_us).collect();
    received.sort_unstable();
    let (reader, _meta) = cluster_reader(&url).await;
    let loaded = reader.read_rows(None).await.expect("read the cluster");
    assert_eq!(sorted(loaded.clone()), sorted(delta), "the cluster holds the Delta table row for row");

    // The persons came with them.
    let persons: u64 = said
        .lines()
        .find_map(|l| l.strip_prefix("project 1: ")?.strip_suffix(" persons loaded")?.parse().ok())
        .unwrap_or_else(|| panic!("no persons reported: {said}"));
    assert!(persons >= 300, "one person per generated user at least: {said}");
    assert_eq!(reader.persons_count(1).await.expect("count the cluster's persons"), persons);

    let verified = chore("verify").output().expect("run verify");
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{said}\n{}", String::from_utf8_lossy(&verified.stderr));
    assert!(said.contains(&format!("verified: {total} days equal, every row on its shard")), "{said}");

    // A window of received times and the rows received before a moment
    // read alike on both sides: what a reshard's last comparison takes.
    let third = |k: usize| received[received.len() * k / 3];
    let window = Cut::ReceivedBetween(third(1), third(2));
    let ours = table.day_digests(None, window).await.expect("Delta's window");
    assert_eq!(reader.day_digests(None, window).await.expect("the cluster's window"), ours);
    let taken: u64 = ours.iter().map(|digest| digest.rows).sum();
    assert!(taken > 0 && taken < received.len() as u64, "the window takes some rows: {taken}");
    let before = Cut::ReceivedBefore(third(2));
    let counted = table.day_counts(before).await.expect("Delta's counts");
    assert_eq!(reader.day_counts(before).await.expect("the cluster's counts"), counted);
    let earlier: u64 = table
        .day_digests(None, Cut::ReceivedBefore(third(1)))
        .await
        .expect("earlier")
        .iter()
        .map(|d| d.rows)
        .sum();
    assert_eq!(counted.iter().map(|(_, rows)| rows).sum::<u64>(), earlier + taken, "counts add up");

    // A row whose properties the cluster holds otherwise: the day's count
    // is right, its checksum is not, until a rebuild loads the day again.
    let mut changed = sorted(loaded)[0].clone();
    let day = chrono::DateTime::from_timestamp_micros(changed.timestamp_us).expect("time").date_naive();
    changed.properties = r#"{"tampered":true}"#.to_string();
    reader.append("test", vec![changed.clone()], &[]).await.expect("change a row");
    let verified = chore("verify").output().expect("run verify");
    let said = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(verified.status.code(), Some(1), "{said}");
    let line = said.lines().find(|l| l.starts_with(&day.to_string())).unwrap_or_default();
    assert!(line.contains("DIFFERS"), "{said}");
    assert_eq!(said.matches("DIFFERS").count(), 1, "{said}");
    let rebuilt = chore("rebuild").output().expect("rebuild");
    assert!(rebuilt.status.success(), "{}", String::from_utf8_lossy(&rebuilt.stderr));
    assert!(chore("verify").output().expect("run verify").status.success(), "the rebuild repaired the day");

    // The same row copied onto the other shard's table, as a hand-made
    // layout change would leave it.
    let ask = |node: usize, sql: String, body: Option<String>| {
        let url = cluster.nodes[node].url();
        async move {
            let request = reqwest::Client::new().post(&url);
            let request = match body {
                Some(body) => request.query(&[("query", sql)]).body(body),
                None => request.body(sql),
            };
            let answer = request.send().await.expect("ask the server");
            assert!(answer.status().is_success(), "{:?}", answer.text().await);
            answer.text().await.expect("answer")
        }
    };
    let select = format!(
        "SELECT * FROM {database}.sharded_events FINAL WHERE uuid = '{}' FORMAT JSONEachRow",
        changed.uuid
    );
    // Nodes 0 and 2 are the first replicas of shards 1 and 2.
    let (holder, other) = if ask(0, select.clone(), None).await.trim().is_empty() { (2, 0) } else { (0, 2) };
    let row = ask(holder, select, None).await;
    assert!(!row.trim().is_empty(), "the row is on one of the shards");
    ask(other, format!("INSERT INTO {database}.sharded_events FORMAT JSONEachRow"), Some(row)).await;
    let verified = chore("verify").output().expect("run verify");
    let said = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(verified.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("shard {}", other / 2 + 1)) && said.contains("1 rows belong on another shard"),
        "{said}"
    );
}

/// The System page's facts include the cluster: every server with its
/// shard and replica, and healthy replicas of the events table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_page_shows_the_cluster() {
    use crate::accounts::Client;
    use crate::dashboard::{log_in, monitored, ADMIN_EMAIL, ADMIN_PASSWORD};

    let Some(cluster) = ClickHouseCluster::shared() else { return };
    let url = cluster.url(&format!("warren_system_{}", std::process::id()));
    let server = monitored(&[("WARREN_CLICKHOUSE__URL", &url)]);
    let admin = Client::with_cookie(&server, log_in(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await);
    let system = admin.ok(reqwest::Method::GET, "/api/instance/system/", None).await;
    let status = &system["clickhouse"];
    assert_eq!(status["cluster"], "warren", "{status}");
    let hosts = status["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 4, "{status}");
    let mut places: Vec<String> = hosts
        .iter()
        .map(|host| {
            assert_eq!(host["reachable"], true, "{host}");
            let replica = host["replicas"]
                .as_array()
                .expect("replicas")
                .iter()
                .find(|r| r["table"] == "sharded_events");
            let replica = replica.unwrap_or_else(|| panic!("no events replica on {host}"));
            assert_eq!(replica["is_readonly"], 0, "{replica}");
            assert_eq!(replica["total_replicas"], 2, "{replica}");
            let macro_value = |name: &str| {
                host["macros"]
                    .as_array()
                    .and_then(|m| m.iter().find(|m| m["macro"] == name))
                    .map(|m| m["substitution"].clone())
            };
            format!(
                "{}/{}",
                macro_value("shard").unwrap_or_default(),
                macro_value("replica").unwrap_or_default()
            )
        })
        .collect();
    places.sort();
    assert_eq!(places, vec!["\"1\"/\"s1r1\"", "\"1\"/\"s1r2\"", "\"2\"/\"s2r1\"", "\"2\"/\"s2r2\""]);
    // The configuration shown has the cluster's URL, its password hidden.
    assert!(
        system["config"]["clickhouse"]["url"].as_str().is_some_and(|u| u.contains("cluster=warren")),
        "{system}"
    );
}

/// `warren migrate` shows, applies and rolls back the cluster's schema,
/// operation by operation, beside the meta store's migrations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warren_migrate_drives_the_cluster_schema() {
    let Some(cluster) = ClickHouseCluster::shared() else { return };
    let data = tempfile::tempdir().expect("data dir");
    let database = format!("warren_migrate_{}", std::process::id());
    let url = cluster.url(&database);
    let migrate = |args: &[&str]| {
        let output = Command::new(BIN)
            .arg("migrate")
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .env("WARREN_CLICKHOUSE__URL", &url)
            .output()
            .expect("run warren migrate");
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "migrate {args:?}: {said}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        said
    };
    let ops = |said: &str, state: &str| said.lines().filter(|l| l.ends_with(&format!(": {state}"))).count();

    let before = migrate(&["status"]);
    assert!(before.contains("store migrations: Pending"), "the meta store's own: {before}");
    assert!(before.contains("`warren migrate up` first"), "{before}");

    let up = migrate(&["up"]);
    assert!(up.contains("clickhouse: 7 operations applied"), "{up}");
    let after = migrate(&["status"]);
    assert_eq!(ops(&after, "completed"), 7, "{after}");
    assert!(!after.contains("Pending"), "{after}");
    assert!(migrate(&["up"]).contains("clickhouse: 0 operations applied"), "nothing left");

    let exists = || {
        let url = format!("{}/?query=EXISTS%20TABLE%20{database}.sharded_events", cluster.nodes[3].url());
        async move { reqwest::get(url).await.expect("ask").text().await.expect("answer").trim().to_string() }
    };
    assert_eq!(exists().await, "1");
    let down = migrate(&["down", "--to", "0"]);
    assert!(down.contains("clickhouse: 7 operations rolled back"), "{down}");
    assert_eq!(exists().await, "0", "rolled back on every server");
    assert_eq!(ops(&migrate(&["status"]), "rolled_back"), 7);

    // The doctor and the upgrade check see the cluster's schema behind.
    let examine = |args: &[&str]| {
        let mut command = Command::new(BIN);
        command.args(args).args(["--json", "--timeout-secs", "30", "--data-dir"]).arg(data.path());
        command.env("WARREN_CLICKHOUSE__URL", &url);
        crate::doctor::report_of(command).1
    };
    let severity =
        |report: &serde_json::Value, check: &str| crate::doctor::finding(report, check)["severity"].clone();
    assert_eq!(severity(&examine(&["doctor"]), "clickhouse.schema"), "warning");
    assert_eq!(
        severity(&examine(&["upgrade", "check"]), "upgrade.clickhouse"),
        "info",
        "tables only, no mutation"
    );

    assert!(migrate(&["up"]).contains("clickhouse: 7 operations applied"));
    assert_eq!(exists().await, "1");
    assert_eq!(severity(&examine(&["doctor"]), "clickhouse.schema"), "ok");
}

/// `warren migrate up`, SIGKILLed as soon as it reports its first
/// operation done (the next one under way), leaves its lock behind; run
/// again once the lock's lease has run out, it finishes every operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_migration_finishes_when_run_again() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let Some(cluster) = ClickHouseCluster::shared() else { return };
    let data = tempfile::tempdir().expect("data dir");
    let database = format!("warren_migrate_killed_{}", std::process::id());
    let url = cluster.url(&database);
    let migrate = |action: &str| {
        let mut command = Command::new(BIN);
        command
            .args(["migrate", action, "--data-dir"])
            .arg(data.path())
            .env("WARREN_CLICKHOUSE__URL", &url)
            .env("WARREN_CLICKHOUSE__MIGRATION_LEASE_SECS", "2")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let states = || {
        let status = migrate("status").output().expect("warren migrate status");
        assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
        let said = String::from_utf8_lossy(&status.stdout).to_string();
        let after_cluster = said.split_once("clickhouse (").map(|(_, rest)| rest.to_string());
        let lines = after_cluster.unwrap_or_else(|| panic!("no cluster in {said}"));
        lines
            .lines()
            .skip(1)
            .filter_map(|l| l.rsplit_once(": ").map(|(_, s)| s.to_string()))
            .collect::<Vec<_>>()
    };

    let mut first = migrate("up").spawn().expect("start warren migrate up");
    let mut lines = BufReader::new(first.stdout.take().expect("stdout")).lines();
    loop {
        let line = lines.next().expect("an operation is reported before the run ends").expect("read");
        if line.ends_with(": completed") {
            break;
        }
    }
    first.kill().expect("SIGKILL warren migrate");
    let _ = first.wait();
    let killed = states();
    assert!(killed.len() >= 6, "every operation is listed: {killed:?}");
    assert_eq!(killed[0], "completed", "{killed:?}");
    assert!(killed.iter().any(|s| s != "completed"), "killed before the end: {killed:?}");

    let second = migrate("up").output().expect("run warren migrate up again");
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{said}\n{}", String::from_utf8_lossy(&second.stderr));
    let after = states();
    assert!(after.iter().all(|s| s == "completed"), "{after:?}\n{said}");
    for table in
        ["sharded_events", "events", "writable_events", "persons", "person_distinct_id", "person_overrides"]
    {
        for node in &cluster.nodes {
            let answer = reqwest::Client::new()
                .post(node.url())
                .body(format!("EXISTS TABLE {database}.{table}"))
                .send()
                .await
                .expect("ask");
            assert_eq!(answer.text().await.expect("answer").trim(), "1", "{table} on {}", node.url());
        }
    }
}

/// Members and visitors of the outage test: each member is identified
/// with its visitor's id during the outage, merging two persons the
/// cluster knew before it.
const OUTAGE_PEOPLE: usize = 20;
/// How long every server of the cluster stays down.
const OUTAGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Delta's rows of project 1 (not the server's own events) once it holds
/// `count`, or once they stop growing.
async fn project_rows(server: &TestServer, count: usize) -> Vec<EventRow> {
    let ours = |rows: &[EventRow]| rows.iter().filter(|row| row.team_id == 1).count();
    let rows = crate::ingest::wait_until_rows(server.data_dir(), |rows| ours(rows) >= count).await;
    rows.into_iter().filter(|row| row.team_id == 1).collect()
}

/// Posts `events` to `/batch/` and asserts they were acknowledged.
async fn capture(server: &TestServer, events: Vec<Value>) -> usize {
    let count = events.len();
    let response = crate::http()
        .post(format!("{}/batch/", server.url))
        .json(&json!({"api_key": TOKEN, "batch": events}))
        .send()
        .await
        .expect("post a batch");
    assert_eq!(response.status().as_u16(), 200, "capture answered {}", response.status());
    count
}

fn pageview(distinct_id: &str, extra: Value) -> Value {
    json!({"event": "$pageview", "distinct_id": distinct_id, "properties": extra})
}

/// Every ClickHouse server stopped for a minute under load: ingest goes
/// on filling Delta, the lag shows on `/metrics` and the System page, and
/// once the servers are back the cluster catches up by itself — row for
/// row equal to Delta, with the persons merged during the outage resolved
/// on the cluster as on Delta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_outage_under_load_never_stops_ingest_and_the_cluster_catches_up() {
    use crate::accounts::Client;
    use crate::dashboard::{log_in, monitored, ADMIN_EMAIL, ADMIN_PASSWORD};
    use crate::durability::metric;
    use std::time::{Duration, Instant};

    let Some(python) = python() else {
        require(false, "posthog-python in .venv");
        return;
    };
    // A cluster of its own: every server of it is stopped.
    let Some(cluster) = ClickHouseCluster::start() else { return };
    let url = cluster.url("warren_outage");
    let mut server = monitored(&[("WARREN_CLICKHOUSE__URL", &url), ("WARREN_QUERY__BACKEND", "clickhouse")]);
    let admin = Client::with_cookie(&server, log_in(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await);
    let (reader, _meta) = cluster_reader(&url).await;

    // Before: a person per visitor and per member, on both stores.
    let mut sent = 0;
    let before: Vec<Value> = (0..OUTAGE_PEOPLE)
        .flat_map(|i| {
            [
                pageview(&format!("visitor-{i}"), json!({})),
                pageview(&format!("member-{i}"), json!({"$set": {"plan": "free"}})),
            ]
        })
        .collect();
    sent += capture(&server, before).await;
    let delta = project_rows(&server, sent).await;
    assert_eq!(sorted(cluster_rows(&reader, sent).await), sorted(delta), "in step before the outage");

    for node in 0..cluster.nodes.len() {
        cluster.kill_node(node);
    }
    let down = Instant::now();
    // The merges, then load until the minute is over, and the official
    // SDK's persons too.
    let identify: Vec<Value> = (0..OUTAGE_PEOPLE)
        .map(|i| {
            json!({"event": "$identify", "distinct_id": format!("member-{i}"), "properties": {
                "$anon_distinct_id": format!("visitor-{i}"), "$set": {"email": format!("m{i}@example.com")}}})
        })
        .collect();
    sent += capture(&server, identify).await;
    sent += send_with_python(&python, &server.url);
    let mut round = 0;
    while down.elapsed() < OUTAGE {
        let load: Vec<Value> = (0..100)
            .map(|k| match k % 4 {
                0 => pageview(&format!("visitor-{}", k % OUTAGE_PEOPLE), json!({"round": round})),
                1 => pageview(&format!("member-{}", k % OUTAGE_PEOPLE), json!({"round": round})),
                _ => pageview(&format!("load-{round}-{k}"), json!({"$set": {"round": round}})),
            })
            .collect();
        sent += capture(&server, load).await;
        round += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delta = project_rows(&server, sent).await;
    assert_eq!(delta.len(), sent, "ingest stored every event while the cluster was down");
    let lag = metric(&server, "warren_ingest_replica_lag_records").await;
    assert!(lag > 0.0, "the lag is a metric: {lag}");
    let system = admin.ok(reqwest::Method::GET, "/api/instance/system/", None).await;
    let behind = system["clickhouse"]["records_behind"].as_u64().unwrap_or(0);
    assert!(behind > 0, "the System page shows the lag: {}", system["clickhouse"]);

    for node in 0..cluster.nodes.len() {
        cluster.start_node(node);
    }
    // Caught up by itself, row for row.
    let deadline = Instant::now() + Duration::from_secs(300);
    let caught_up = loop {
        let rows = reader.read_rows(Some(1)).await.unwrap_or_default();
        if rows.len() >= sent || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(sorted(caught_up), sorted(delta), "the cluster caught up with Delta row for row");
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&server, "warren_ingest_replica_lag_records").await > 0.0 {
        assert!(Instant::now() < deadline, "the lag metric goes back to 0");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let system = admin.ok(reqwest::Method::GET, "/api/instance/system/", None).await;
    assert_eq!(system["clickhouse"]["records_behind"], 0, "{}", system["clickhouse"]);
    let job = system["jobs"].as_array().and_then(|jobs| jobs.iter().find(|j| j["job"] == "replica.catch_up"));
    let job = job.unwrap_or_else(|| panic!("no catch-up on the job board: {}", system["jobs"]));
    assert_eq!(job["last"]["outcome"], "ok", "{job}");
    assert!(job["failures"].as_u64().unwrap_or(0) > 0, "the outage is on the board: {job}");

    // Persons merged during the outage resolve on the cluster as on Delta.
    let persons = [
        json!({"kind": "HogQLQuery", "query": "SELECT distinct_id, count(DISTINCT person_id) AS persons, count() AS n \
               FROM events GROUP BY distinct_id ORDER BY distinct_id"}),
        json!({"kind": "HogQLQuery", "query": "SELECT count(DISTINCT person_id) FROM events \
               WHERE distinct_id IN ('visitor-3', 'member-3')"}),
        json!({"kind": "HogQLQuery", "query": "SELECT id, properties FROM persons ORDER BY id"}),
    ];
    let mut from_cluster = Vec::new();
    for query in &persons {
        from_cluster.push(results(&server, query.clone()).await);
    }
    assert_eq!(from_cluster[1], json!([[1]]), "visitor-3 and member-3 are one person on the cluster");
    server.stop();
    server.set_env("WARREN_QUERY__BACKEND", "delta");
    server.restart();
    for (query, clickhouse) in persons.into_iter().zip(from_cluster) {
        assert_eq!(
            clickhouse,
            results(&server, query.clone()).await,
            "{query} answers from the cluster as from Delta"
        );
    }
}

/// A cluster added to a deployment whose log no longer holds its first
/// records (retention told to ignore consumers): ingest cannot catch the
/// cluster up from the log and says to run the backfill, on the job board,
/// instead of skipping the gap; `warren clickhouse backfill`, run beside
/// the server, loads what the log lost and moves the cluster's offsets, and
/// ingest takes it from there, row for row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_the_log_cannot_catch_up_waits_for_the_backfill() {
    use crate::dashboard::{ADMIN_EMAIL, ADMIN_PASSWORD};
    use crate::durability::job_detail;
    use std::time::Duration;

    let Some(cluster) = ClickHouseCluster::shared() else { return };
    let url = cluster.url(&format!("warren_gap_{}", std::process::id()));
    let mut server = TestServer::start_with_env(
        BIN,
        &[
            ("WARREN_BOOTSTRAP__ADMIN_EMAIL", ADMIN_EMAIL),
            ("WARREN_BOOTSTRAP__ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("WARREN_INGEST__BATCH_MAX_WAIT_MS", "200"),
            ("WARREN_EVENT_LOG__SEGMENT_AGE_SECS", "1"),
            ("WARREN_EVENT_LOG__RETENTION_AGE_SECS", "4"),
            ("WARREN_EVENT_LOG__RETENTION_INTERVAL_SECS", "1"),
            ("WARREN_EVENT_LOG__RETENTION_IGNORES_CONSUMERS", "true"),
        ],
    );
    // Two waves a segment apart, so the first one's segments are sealed
    // and deleted once ingest stored them.
    let wave = |n: usize, from: usize| -> Vec<Value> {
        (from..from + n).map(|i| pageview(&format!("person-{}", i % 30), json!({"i": i}))).collect()
    };
    let mut sent = capture(&server, wave(200, 0)).await;
    project_rows(&server, sent).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sent += capture(&server, wave(200, sent)).await;
    project_rows(&server, sent).await;
    job_detail(&server, "log.retention", |summary| {
        let detail = summary["last"]["detail"].as_str().unwrap_or_default();
        detail.strip_prefix("deleted ").and_then(|rest| rest.split(' ').next()).is_some_and(|n| n != "0")
    })
    .await;

    // The cluster arrives; retention keeps what it needs from now on.
    server.stop();
    server.set_env("WARREN_CLICKHOUSE__URL", &url);
    server.set_env("WARREN_EVENT_LOG__RETENTION_IGNORES_CONSUMERS", "false");
    server.restart();
    job_detail(&server, "replica.catch_up", |summary| {
        summary["last"]["message"].as_str().is_some_and(|m| m.contains("run `warren clickhouse rebuild`"))
    })
    .await;
    let (reader, _meta) = cluster_reader(&url).await;
    assert!(
        reader.read_rows(Some(1)).await.expect("read the cluster").is_empty(),
        "nothing skipped over the gap"
    );

    // By its former name, which stays an alias of `rebuild`.
    let backfill = Command::new(BIN)
        .args(["clickhouse", "backfill", "--data-dir"])
        .arg(server.data_dir())
        .env("WARREN_CLICKHOUSE__URL", &url)
        .output()
        .expect("run the backfill");
    let said = String::from_utf8_lossy(&backfill.stdout);
    assert!(backfill.status.success(), "{said}\n{}", String::from_utf8_lossy(&backfill.stderr));
    assert!(said.contains("ingest catches it up from there"), "{said}");
    sent += capture(&server, wave(100, sent)).await;
    let delta = project_rows(&server, sent).await;
    assert_eq!(delta.len(), sent);
    assert_eq!(
        sorted(cluster_rows(&reader, sent).await),
        sorted(delta),
        "the cluster caught up after the backfill"
    );
}
