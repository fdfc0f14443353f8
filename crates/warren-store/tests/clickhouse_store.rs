//! The EventStore conformance suite against a real ClickHouse cluster (two
//! shards of two replicas on one ZooKeeper, started by the test kit), and
//! what a cluster adds: a replica lost while events are written.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use warren_core::config::ClickHouseConfig;
use warren_meta::{MetaStore, SqlMeta};
use warren_store::conformance::{sample_row, StoreFactory};
use warren_store::{ClickHouseStore, ClickHouseStoreOptions, EventRow, EventStore};
use warren_testkit::clickhouse::ClickHouseCluster;

/// A database of its own per store, on the shared cluster.
struct ClickHouseFactory {
    cluster: &'static ClickHouseCluster,
    meta: Arc<dyn MetaStore>,
    _dir: tempfile::TempDir,
    database: std::sync::Mutex<String>,
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

fn options(url: String) -> ClickHouseStoreOptions {
    let config = ClickHouseConfig { url: Some(url), merge_min_parts: 2, ..ClickHouseConfig::default() };
    ClickHouseStoreOptions::from_config(&config).expect("options").expect("a cluster is named")
}

async fn sqlite_meta(dir: &tempfile::TempDir) -> Arc<dyn MetaStore> {
    let meta =
        SqlMeta::connect(&format!("sqlite://{}", dir.path().join("meta.db").display())).await.expect("meta");
    meta.migrate().await.expect("migrate");
    Arc::new(meta)
}

impl ClickHouseFactory {
    async fn new() -> Option<Self> {
        let cluster = ClickHouseCluster::shared()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let meta = sqlite_meta(&dir).await;
        Some(Self { cluster, meta, _dir: dir, database: std::sync::Mutex::new(String::new()) })
    }

    async fn open(&self) -> ClickHouseStore {
        let database = self.database.lock().expect("lock").clone();
        ClickHouseStore::open(options(self.cluster.url(&database)), self.meta.clone()).await.expect("open")
    }
}

#[async_trait]
impl StoreFactory for ClickHouseFactory {
    type Store = ClickHouseStore;

    async fn create(&self) -> ClickHouseStore {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        *self.database.lock().expect("lock") = format!("warren_{}_{n}", std::process::id());
        self.open().await
    }

    async fn reopen(&self, store: ClickHouseStore) -> ClickHouseStore {
        drop(store);
        self.open().await
    }

    async fn rows(&self, store: &ClickHouseStore) -> Vec<EventRow> {
        store.read_rows(None).await.expect("read rows")
    }
}

mod cluster {
    use super::*;
    warren_store::event_store_conformance!(ClickHouseFactory::new().await);
}

#[test]
fn urls_must_name_a_cluster() {
    let config =
        ClickHouseConfig { url: Some("clickhouse://127.0.0.1:8123/events".into()), ..Default::default() };
    let error = ClickHouseStoreOptions::from_config(&config).expect_err("no cluster");
    assert!(error.to_string().contains("cluster="), "{error}");
    assert!(ClickHouseStoreOptions::from_config(&ClickHouseConfig::default()).expect("no url").is_none());
}

/// One replica is killed while batches are written: every batch is
/// acknowledged by the other replica of its shard, none is lost, and the
/// killed replica holds every row of its shard once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_replica_loses_nothing_and_catches_up() {
    let Some(cluster) = tokio::task::spawn_blocking(ClickHouseCluster::start).await.expect("start") else {
        return;
    };
    let cluster = Arc::new(cluster);
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        ClickHouseStore::open(options(cluster.url("warren")), sqlite_meta(&dir).await).await.expect("open");
    let victim = 1; // shard 1, replica 2
    let mut written = Vec::new();
    for batch in 0..30u64 {
        if batch == 10 {
            let cluster = cluster.clone();
            tokio::task::spawn_blocking(move || cluster.kill_node(victim)).await.expect("kill");
        }
        if batch == 20 {
            let cluster = cluster.clone();
            tokio::task::spawn_blocking(move || cluster.start_node(victim)).await.expect("restart");
        }
        let rows: Vec<EventRow> = (batch * 20..batch * 20 + 20).map(sample_row).collect();
        store
            .append("ingest", rows.clone(), &[(0, (batch + 1) * 20)])
            .await
            .expect("append with a replica down");
        written.extend(rows);
    }
    let mut stored = store.read_rows(None).await.expect("read");
    stored.sort_by_key(|row| row.uuid);
    written.sort_by_key(|row| row.uuid);
    assert_eq!(stored.len(), written.len(), "every acknowledged row is stored once");
    assert_eq!(stored, written);

    // The restarted replica catches up with its shard's other replica.
    let count = |node: usize| {
        let url = format!(
            "{}/?query=SELECT%20count()%20FROM%20warren.sharded_events%20FINAL",
            cluster.nodes[node].url()
        );
        async move { reqwest::get(url).await.expect("ask").text().await.expect("answer").trim().to_string() }
    };
    let expected = count(0).await;
    assert_ne!(expected, "0", "shard 1 holds rows");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let caught_up = count(victim).await;
        if caught_up == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the replica holds {caught_up} of {expected} rows");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
