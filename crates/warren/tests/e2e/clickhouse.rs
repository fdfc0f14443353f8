//! `warren serve` with a ClickHouse cluster: what an SDK sends reaches the
//! canonical Delta table and, row for row, the 2-shard × 2-replica cluster
//! the test kit starts — across a restart of the server too.

use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use warren_core::config::ClickHouseConfig;
use warren_meta::{MetaStore, SqlMeta};
use warren_store::{ClickHouseStore, ClickHouseStoreOptions, EventRow};
use warren_testkit::clickhouse::ClickHouseCluster;
use warren_testkit::{require, TestServer, TOKEN};

use crate::ingest::wait_for_rows;
use crate::sdk::python;
use crate::{repo_root, BIN};

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

/// The cluster's rows once it holds `count`, or what it holds after a minute.
async fn cluster_rows(store: &ClickHouseStore, count: usize) -> Vec<EventRow> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let rows = store.read_rows(None).await.expect("read the cluster");
        if rows.len() >= count || std::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

fn sorted(mut rows: Vec<EventRow>) -> Vec<EventRow> {
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

    // The test reads the cluster with a meta store of its own: reading
    // needs none of the server's.
    let dir = tempfile::tempdir().expect("temp dir");
    let meta =
        SqlMeta::connect(&format!("sqlite://{}", dir.path().join("meta.db").display())).await.expect("meta");
    meta.migrate().await.expect("migrate");
    let meta: Arc<dyn MetaStore> = Arc::new(meta);
    let config = ClickHouseConfig { url: Some(url.clone()), ..ClickHouseConfig::default() };
    let options = ClickHouseStoreOptions::from_config(&config).expect("options").expect("url");
    let reader = ClickHouseStore::open(options, meta).await.expect("open the cluster");

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
