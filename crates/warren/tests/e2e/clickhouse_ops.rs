//! The cluster's chores on clusters of their own: `warren clickhouse
//! reshard` moves a 2-shard cluster to 3 shards while posthog-python keeps
//! sending, killed halfway and run again; `warren clickhouse replica
//! replace` brings a replica whose disk was wiped back to its shard.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use warren_testkit::clickhouse::ClickHouseCluster;
use warren_testkit::{require, TestServer, TOKEN};

use crate::clickhouse::{answers_as_from_delta, cluster_reader, sorted};
use crate::ingest::wait_for_rows;
use crate::query::wait_for_events;
use crate::sdk::python;
use crate::{repo_root, BIN};

/// `tests/sdk/python_days.py`: `count` events over six days, in an order
/// fixed by `seed`, sent to `url`; with `count` 0, events until
/// [`sent`] closes the sender's standard input.
fn send_days(python: &Path, url: &str, count: u32, seed: u32) -> Child {
    Command::new(python)
        .arg(repo_root().join("tests/sdk/python_days.py"))
        .args([url, TOKEN, &count.to_string(), "6", &seed.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the sender")
}

/// What a sender sent, once it is done (told to stop, if it sends until
/// then).
fn sent(mut sender: Child) -> i64 {
    drop(sender.stdin.take());
    let output = sender.wait_with_output().expect("wait for the sender");
    assert!(output.status.success(), "sender failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().parse().expect("a count")
}

/// `warren clickhouse <args>` on the stores of `data_dir`, the
/// configuration naming `url`.
fn chore(data_dir: &Path, url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("clickhouse")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("WARREN_CLICKHOUSE__URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs a chore to its end; what it printed, after checking it succeeded.
fn succeeds(mut command: Command) -> String {
    let output = command.output().expect("run warren clickhouse");
    let said = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{said}\n{}", String::from_utf8_lossy(&output.stderr));
    said
}

/// One statement on one server, over HTTP.
async fn ask(cluster: &ClickHouseCluster, node: usize, sql: &str) -> String {
    let answer = reqwest::Client::new()
        .post(cluster.nodes[node].url())
        .body(sql.to_string())
        .send()
        .await
        .expect("ask the server");
    assert!(answer.status().is_success(), "{sql}: {:?}", answer.text().await);
    answer.text().await.expect("answer").trim().to_string()
}

/// The reshard moves every event once, each onto the shard its key names,
/// while events keep arriving — on days it has copied already too; a run
/// killed halfway is finished by running it again; the running server
/// follows the switch without a restart, and answers every insight as the
/// Delta table does once the old layout is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reshard_killed_halfway_moves_every_event_once_while_events_arrive() {
    let Some(python) = python() else {
        require(false, "posthog-python in .venv");
        return;
    };
    let Some(before) = ClickHouseCluster::start_shaped(2, 1) else { return };
    let Some(after) = ClickHouseCluster::start_shaped(3, 1) else { return };
    let (source, target) = (before.url("warren_two_shards"), after.url("warren_three_shards"));
    let mut server = TestServer::start_with_env(
        BIN,
        &[("WARREN_CLICKHOUSE__URL", &source), ("WARREN_QUERY__BACKEND", "clickhouse")],
    );
    let history = sent(send_days(&python, &server.url, 2000, 1));
    // Counted by the two-shard layout.
    wait_for_events(&server, history).await;

    // posthog-python keeps sending events of the same six days while the
    // reshard runs, and after it switched.
    let mut stream = send_days(&python, &server.url, 0, 2);
    // A day a batch, so the first run is killed between days.
    let mut first = chore(server.data_dir(), &source, &["reshard", "--to", &target, "--batch-rows", "1"])
        .spawn()
        .expect("start the reshard");
    let mut lines = BufReader::new(first.stdout.take().expect("stdout")).lines();
    let first_day = loop {
        let line = lines.next().expect("the reshard reports a day before it ends").expect("read");
        if line.starts_with("1/") {
            break line;
        }
    };
    first.kill().expect("kill the reshard");
    let _ = first.wait();
    assert!(first_day.contains("verified"), "{first_day}");

    // The rest go in one batch.
    let said = succeeds(chore(server.data_dir(), &source, &["reshard", "--to", &target]));
    assert!(said.contains("(1 done before)"), "the second run goes on after the first day: {said}");
    assert!(said.contains("verified: 6 days equal to the Delta table, every row on its shard"), "{said}");
    assert!(said.contains("switched"), "{said}");
    assert!(stream.try_wait().expect("the sender").is_none(), "still sending at the switch");
    // Past the next look every process takes at the journal, events
    // reach the new layout alone.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let total = history + sent(stream);
    assert!(total > 2000, "the sender sent while the reshard ran");

    // The server, never restarted, counts from the three-shard layout.
    wait_for_events(&server, total).await;
    let delta = wait_for_rows(server.data_dir(), total as usize).await;
    assert_eq!(delta.len() as i64, total, "every event sent is in the Delta table once");
    let (reader, _meta) = cluster_reader(&target).await;
    let moved = reader.read_rows(None).await.expect("read the new layout");
    assert_eq!(sorted(moved), sorted(delta), "the new layout holds the Delta table row for row");
    for node in 0..3 {
        let held: u64 = ask(&after, node, "SELECT count() FROM warren_three_shards.sharded_events")
            .await
            .parse()
            .expect("a count");
        assert!(held > 0, "shard {} holds its share", node + 1);
    }
    // The configuration still names the old layout: chores follow the
    // journal to the new one.
    let verified = succeeds(chore(server.data_dir(), &source, &["verify"]));
    assert!(verified.contains("warren_three_shards"), "{verified}");
    assert!(verified.contains("verified: 6 days equal, every row on its shard"), "{verified}");
    let status = succeeds(chore(server.data_dir(), &source, &["reshard", "--status"]));
    assert!(status.contains("phase: switched"), "{status}");

    // The old layout goes; queries do not need it.
    succeeds(chore(server.data_dir(), &source, &["reshard", "--drop-source"]));
    let databases = "SELECT count() FROM system.databases WHERE name = 'warren_two_shards'";
    assert_eq!(ask(&before, 0, databases).await, "0", "the old layout's database is gone");
    answers_as_from_delta(&mut server, total).await;
}

/// A replica whose server lost its disk, and a new server in another's
/// place, come back to their shards while posthog-python keeps sending:
/// the command attaches the first's tables to the replicas ZooKeeper still
/// knows and creates the second's, waits until they fetched their shard's
/// parts, and compares them with the other replica. A run killed halfway
/// is finished by running it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_replica_is_brought_back_to_its_shard_and_verified() {
    let Some(python) = python() else {
        require(false, "posthog-python in .venv");
        return;
    };
    let Some(cluster) = ClickHouseCluster::start() else { return };
    let url = cluster.url("warren_replace");
    let server = TestServer::start_with_env(
        BIN,
        &[("WARREN_CLICKHOUSE__URL", &url), ("WARREN_QUERY__BACKEND", "clickhouse")],
    );
    let history = sent(send_days(&python, &server.url, 1000, 3));
    wait_for_events(&server, history).await;
    let count = |node: usize| {
        let cluster = &cluster;
        async move { ask(cluster, node, "SELECT count() FROM warren_replace.sharded_events FINAL").await }
    };
    assert_ne!(count(0).await, "0", "shard 1 holds events");
    assert_ne!(count(2).await, "0", "shard 2 holds events");

    // Node 1 is shard 1's second replica.
    cluster.wipe_node(1);
    let databases = "SELECT count() FROM system.databases WHERE name = 'warren_replace'";
    assert_eq!(ask(&cluster, 1, databases).await, "0", "the disk is gone");
    let stream = send_days(&python, &server.url, 0, 4);
    let host = |node: usize| format!("127.0.0.1:{}", cluster.nodes[node].http_port);
    let replace =
        |node: usize| chore(server.data_dir(), &url, &["replica", "replace", "--host", &host(node)]);
    let mut first = replace(1).spawn().expect("start the replacement");
    let mut lines = BufReader::new(first.stdout.take().expect("stdout")).lines();
    loop {
        let line = lines.next().expect("the replacement attaches a table before it ends").expect("read");
        if line.starts_with("attached to the replica ZooKeeper knew") {
            break;
        }
    }
    first.kill().expect("kill the replacement");
    let _ = first.wait();
    let said = succeeds(replace(1));
    assert!(said.contains("event rows of its peer") && said.contains("(same checksum)"), "{said}");

    // Node 3 is shard 2's second replica; a new server takes its place.
    cluster.replace_node(3);
    let said = succeeds(replace(3));
    assert!(!said.contains("attached"), "a new replica's tables are created: {said}");
    assert!(said.contains("shard 2 replica s2r2-new holds the"), "{said}");

    let total = history + sent(stream);
    assert!(total > history, "the sender sent while the replica was replaced");
    wait_for_events(&server, total).await;
    // Run again on a replica in step, it changes nothing, and finds every
    // event of its shard there.
    for (node, peer) in [(1, 0), (3, 2)] {
        let again = succeeds(replace(node));
        assert!(!again.contains("attached"), "{again}");
        let held = count(peer).await;
        assert!(again.contains(&format!("holds the {held} event rows of its peer")), "{again}");
        assert_eq!(count(node).await, held, "node {node} holds its shard's events again");
    }
    assert!(succeeds(chore(server.data_dir(), &url, &["verify"])).contains("verified: 6 days equal"));
}
