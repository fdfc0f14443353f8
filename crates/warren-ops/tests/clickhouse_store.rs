//! The EventStore conformance suite against a real ClickHouse cluster (two
//! shards of two replicas on one ZooKeeper, started by the test kit), with
//! the meta store on SQLite as its ledger, and what a cluster adds: a
//! replica lost while events are written, the migration runner, persons
//! and their backfill.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use warren_core::config::ClickHouseConfig;
use warren_meta::MetaSchema;
use warren_meta::{MetaStore, SqlMeta};
use warren_ops::clickhouse::rebuild::{load_persons_of, PersonsLoad};
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

/// Migrations a test can stop halfway: a replicated table, rows, and a
/// mutation over them.
fn test_migrations(db: &str) -> Vec<warren_store::migrations::Migration> {
    use warren_store::migrations::{Hosts, Migration, Operation};
    let op =
        |description: &str, on: Hosts, forward: String, rollback: Option<String>, awaits_mutations: bool| {
            Operation { description: description.into(), on, forward, rollback, awaits_mutations }
        };
    vec![
        Migration {
            version: 1,
            name: "a table",
            operations: vec![
                op(
                    "database",
                    Hosts::Every,
                    format!("CREATE DATABASE IF NOT EXISTS {db}"),
                    Some(format!("DROP DATABASE IF EXISTS {db}")),
                    false,
                ),
                op(
                    "table",
                    Hosts::Every,
                    format!(
                        "CREATE TABLE IF NOT EXISTS {db}.t (n UInt64, s String) \
                         ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{db}.t', '{{replica}}') ORDER BY n"
                    ),
                    Some(format!("DROP TABLE IF EXISTS {db}.t")),
                    false,
                ),
            ],
        },
        Migration {
            version: 2,
            name: "rows, then a mutation",
            operations: vec![
                // The same block again is deduplicated by the replicated table.
                op(
                    "rows",
                    Hosts::OnePerShard,
                    format!("INSERT INTO {db}.t SELECT number, '' FROM system.numbers LIMIT 1000"),
                    None,
                    false,
                ),
                op(
                    "mark them",
                    Hosts::OnePerShard,
                    format!("ALTER TABLE {db}.t UPDATE s = 'done' WHERE s = ''"),
                    Some(format!("ALTER TABLE {db}.t UPDATE s = '' WHERE s = 'done'")),
                    true,
                ),
            ],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_resume_where_they_stopped_and_roll_back() {
    use std::ops::ControlFlow;
    use warren_meta::OperationState::{Completed, NotStarted, RolledBack, Running};

    let Some(cluster) = ClickHouseCluster::shared() else { return };
    let db = format!("warren_migrations_{}", std::process::id());
    let dir = tempfile::tempdir().expect("temp dir");
    let meta = sqlite_meta(&dir).await;
    let mut opts = options(cluster.url(&db));
    opts.mutation_timeout = std::time::Duration::from_secs(5);
    let store = ClickHouseStore::connect(opts, meta.clone()).expect("connect");
    let runner = store.migrator_of(test_migrations(&db));
    let states =
        || async { runner.status().await.expect("status").iter().map(|op| op.state).collect::<Vec<_>>() };
    let ask = |sql: String| {
        let url = cluster.nodes[0].url();
        async move {
            let answer = reqwest::Client::new().post(url).body(sql).send().await.expect("ask");
            answer.text().await.expect("answer").trim().to_string()
        }
    };
    assert_eq!(states().await, vec![NotStarted; 4]);

    // Stopped after its second operation: the next run starts at the third.
    let mut seen = 0;
    let done = runner.up(|_| {
        seen += 1;
        if seen == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(done.await.expect("up"), 2);
    assert_eq!(states().await, vec![Completed, Completed, NotStarted, NotStarted]);

    // Killed while inserting: the operation is still marked running.
    meta.record_operation(&format!("clickhouse/{db}"), 2, 0, Running, None).await.expect("record");
    // Another runner's lock is waited for, then given up on.
    let lock = format!("migrate:clickhouse/{db}");
    meta.acquire_lock(&lock, "someone-else", 60_000).await.expect("lock").expect("free");
    let refused = runner.up(|_| ControlFlow::Continue(())).await.expect_err("locked");
    assert!(refused.to_string().contains("someone-else"), "{refused}");
    meta.release_lock(&lock, "someone-else").await.expect("release");

    assert_eq!(runner.up(|_| ControlFlow::Continue(())).await.expect("resume"), 2);
    assert_eq!(states().await, vec![Completed; 4]);
    let rows = format!("SELECT count(), countIf(s = 'done') FROM cluster('warren', {db}, t) FORMAT TSV");
    assert_eq!(ask(rows.clone()).await, "2000\t2000", "1000 rows per shard, inserted once, all marked");
    assert_eq!(runner.up(|_| ControlFlow::Continue(())).await.expect("again"), 0, "nothing left to do");

    // Down to version 1 undoes the mutation (the rows have no rollback).
    assert_eq!(runner.down(1, |_| ControlFlow::Continue(())).await.expect("down"), 2);
    assert_eq!(states().await, vec![Completed, Completed, RolledBack, RolledBack]);
    assert_eq!(ask(rows.clone()).await, "2000\t0");
    // Down to nothing drops it all; up makes it again.
    assert_eq!(runner.down(0, |_| ControlFlow::Continue(())).await.expect("down"), 2);
    assert_eq!(ask(format!("EXISTS TABLE {db}.t")).await, "0");
    assert_eq!(runner.up(|_| ControlFlow::Continue(())).await.expect("up"), 4);
    assert_eq!(states().await, vec![Completed; 4]);
}

/// Persons follow ingest onto the cluster: a merge deletes the person
/// merged away, moves its distinct ids to the survivor and points the
/// overrides that named it at the survivor; a batch written twice (a
/// replay) changes nothing; the backfill loads the same state from the
/// meta store into an empty database, and brings a cluster that missed a
/// merge to the meta store's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persons_follow_merges_and_the_backfill_loads_the_same() {
    use uuid::Uuid;
    use warren_core::person::{DistinctIdAssignment, PersonChanges, PersonMerge};
    use warren_core::person::{Person, PersonOverride};
    use warren_meta::IngestCommit;

    let Some(cluster) = ClickHouseCluster::shared() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let meta = sqlite_meta(&dir).await;
    let db = format!("warren_persons_{}", std::process::id());
    let store = ClickHouseStore::open(options(cluster.url(&db)), meta.clone()).await.expect("open");
    let team = 1;
    let id = |n: u128| Uuid::from_u128(n);
    let person = |n: u128, version: i64| Person {
        uuid: id(n),
        team_id: team,
        properties: serde_json::json!({"n": n as u64}).as_object().cloned().unwrap_or_default(),
        created_at_us: n as i64,
        is_identified: false,
        version,
        created_by_event: None,
    };
    let assign = |distinct_id: &str, n: u128| DistinctIdAssignment {
        team_id: team,
        distinct_id: distinct_id.into(),
        person_uuid: id(n),
    };
    // Person 1 (ids a1, a2) with a personless id's events (person 9)
    // joined to it; person 2 (id b).
    let personless =
        PersonOverride { team_id: team, old_person_id: id(9), override_person_id: id(1), version: 1 };
    let first = IngestCommit {
        consumer: "ingest".into(),
        persons: vec![person(1, 1), person(2, 1)],
        distinct_ids: vec![assign("a1", 1), assign("a2", 1), assign("b", 2)],
        overrides: vec![personless.clone()],
        ..IngestCommit::default()
    };
    let changes = PersonChanges {
        persons: &first.persons,
        distinct_ids: &first.distinct_ids,
        overrides: &first.overrides,
        ..PersonChanges::default()
    };
    store.write_persons(&changes).await.expect("first batch");
    meta.commit_ingest(&first).await.expect("commit the first batch");
    // Person 1 merges into person 2; the batch is written twice. Ingest
    // hands over what person 1 had before the batch.
    let second = IngestCommit {
        consumer: "ingest".into(),
        merges: vec![PersonMerge { team_id: team, old: id(1), into: id(2) }],
        persons: vec![person(2, 2)],
        ..IngestCommit::default()
    };
    let before = [(team, id(1), vec!["a1".to_string(), "a2".to_string()])];
    let changes = PersonChanges {
        persons: &second.persons,
        merges: &second.merges,
        merged_distinct_ids: &before,
        overrides_into_merged: std::slice::from_ref(&personless),
        ..PersonChanges::default()
    };
    store.write_persons(&changes).await.expect("second batch");
    store.write_persons(&changes).await.expect("second batch, replayed");
    meta.commit_ingest(&second).await.expect("commit the second batch");

    let (p1, p2, p9) = (id(1), id(2), id(9));
    let expected = vec![
        format!("{p2}\t2\n"),
        format!("a1\t{p2}\na2\t{p2}\nb\t{p2}\n"),
        format!("{p1}\t{p2}\n{p9}\t{p2}\n"),
    ];
    assert_eq!(person_tables(&store, team).await, expected);
    assert_eq!(store.persons_count(team).await.expect("count"), 1);

    let fresh = ClickHouseStore::open(options(cluster.url(&format!("{db}_backfilled"))), meta.clone())
        .await
        .expect("open");
    let loaded = load_persons_of(meta.as_ref(), &fresh, team, PersonsLoad::BelowIngest, |_| {})
        .await
        .expect("backfill");
    assert_eq!(loaded, 1);
    assert_eq!(person_tables(&fresh, team).await, expected, "the backfill loads what ingest wrote");

    // The cluster misses a batch (as behind a log gap): person 2 merges
    // into a new person 3 in the meta store only. The backfill, replacing
    // what the cluster holds, leaves it where the meta store is.
    let missed = IngestCommit {
        consumer: "ingest".into(),
        merges: vec![PersonMerge { team_id: team, old: id(2), into: id(3) }],
        persons: vec![person(3, 3)],
        distinct_ids: vec![assign("c", 3)],
        ..IngestCommit::default()
    };
    meta.commit_ingest(&missed).await.expect("commit the missed batch");
    let loaded =
        load_persons_of(meta.as_ref(), &store, team, PersonsLoad::Replace, |_| {}).await.expect("backfill");
    assert_eq!(loaded, 1);
    let p3 = id(3);
    let tables = person_tables(&store, team).await;
    assert!(tables[0].starts_with(&format!("{p3}\t")) && tables[0].lines().count() == 1, "{tables:?}");
    assert_eq!(tables[1], format!("a1\t{p3}\na2\t{p3}\nb\t{p3}\nc\t{p3}\n"));
    assert_eq!(tables[2], format!("{p1}\t{p3}\n{p2}\t{p3}\n{p9}\t{p3}\n"));
    assert_eq!(store.persons_count(team).await.expect("count"), 1);

    // Batches written back to back: the later one wins, however close.
    for person in [7, 8] {
        let moved = [assign("b", person)];
        store
            .write_persons(&PersonChanges { distinct_ids: &moved, ..PersonChanges::default() })
            .await
            .expect("move b");
    }
    let owner = store
        .query(
            &format!(
                "SELECT toString(argMax(person_id, version)) FROM {}.person_distinct_id \
                 WHERE team_id = {team} AND distinct_id = 'b' FORMAT TSV",
                store.database()
            ),
            &[],
        )
        .await
        .expect("b's owner");
    assert_eq!(owner.trim(), id(8).to_string());
}

/// The newest state of each person table: live persons with their
/// versions, distinct ids with their persons, overrides.
async fn person_tables(store: &ClickHouseStore, team: i64) -> Vec<String> {
    let database = store.database();
    let queries = [
        format!(
            "SELECT toString(id), max(version) FROM {database}.persons WHERE team_id = {team} \
             GROUP BY id HAVING argMax(is_deleted, version) = 0 ORDER BY id FORMAT TSV"
        ),
        format!(
            "SELECT distinct_id, toString(argMax(person_id, version)) FROM {database}.person_distinct_id \
             WHERE team_id = {team} GROUP BY distinct_id ORDER BY distinct_id FORMAT TSV"
        ),
        format!(
            "SELECT toString(old_person_id), toString(argMax(override_person_id, version)) \
             FROM {database}.person_overrides WHERE team_id = {team} \
             GROUP BY old_person_id ORDER BY old_person_id FORMAT TSV"
        ),
    ];
    let mut answers = Vec::new();
    for sql in queries {
        answers.push(store.query(&sql, &[]).await.expect("read the person tables"));
    }
    answers
}

/// `clickhouses://`: the cluster over HTTPS, its certificate trusted
/// through `ca=`; without it, the system's authorities refuse the
/// certificate, and the error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_reaches_the_cluster_with_its_authority_and_not_without() {
    let Some(cluster) = ClickHouseCluster::shared() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let meta = sqlite_meta(&dir).await;
    let url = cluster.https_url(&format!("warren_https_{}", std::process::id()));
    let store = ClickHouseStore::open(options(url.clone()), meta.clone()).await.expect("open over HTTPS");
    let mut rows: Vec<EventRow> = (0..50).map(sample_row).collect();
    store.append("ingest", rows.clone(), &[(0, 50)]).await.expect("append over HTTPS");
    let mut stored = store.read_rows(None).await.expect("read over HTTPS");
    stored.sort_by_key(|row| row.uuid);
    rows.sort_by_key(|row| row.uuid);
    assert_eq!(stored, rows);

    let untrusted = url.split("&ca=").next().expect("the URL").to_string();
    let store = ClickHouseStore::connect(options(untrusted), meta).expect("connect");
    let error = store.query("SELECT 1", &[]).await.expect_err("an authority the system does not know");
    assert!(error.to_string().to_lowercase().contains("certificate"), "{error}");
}
