//! [`ClickHouseStore`]: the events on a ClickHouse cluster, sharded and
//! replicated, beside the canonical Delta table.
//!
//! Exactly once, without transactions: an append inserts its rows through
//! `writable_events` and waits until every shard holds them, then records
//! the offsets in the meta store. A crash between the two replays those
//! rows; the replacing engine keeps one row per uuid (uuid is in the sort
//! key, and one uuid's events land on one shard), and reads ask for
//! `FINAL`. A replica that is down misses nothing: the other replica of
//! its shard takes the insert and replication brings it up to date.
//!
//! Persons, their distinct ids and the overrides of merged persons are
//! written beside the events ([`persons`]) into tables every server named
//! in the URL holds whole. They are written to the server this process
//! prefers, and queries resolve overrides on the server they go to (a
//! `GLOBAL` join sends them to the shards): while both prefer the same
//! server, a query sees the persons of every batch ingested before it;
//! after a failover, the other replicas catch up through replication.

mod audit;
mod client;
mod copy;
mod live;
pub mod migrations;
mod persons;
mod replica;
mod rows;
mod schema;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use warren_core::config::ClickHouseConfig;
use warren_core::jobs::JobBoard;
use warren_core::person::{PersonChanges, PersonsSnapshot};
use warren_core::ports::{ClusterLedger, SystemStatus};

pub use audit::Misplaced;
use client::Client;
pub use client::{quote, ClickHouseUrl};
pub use live::{CopiedDay, LiveCluster, ReshardJournal, ReshardPhase, RESHARD_JOURNAL};
use migrations::Migrator;
pub use replica::{ReplacedReplica, ReplicaStep};

use crate::upkeep::{Job, MaintenanceReport};
use crate::{EventKey, EventRow, EventStore, StoreError};

/// Keys per read: each read is one statement listing its uuids.
const KEYS_PER_READ: usize = 5_000;

/// Where the cluster is and how long its work may take.
#[derive(Debug, Clone)]
pub struct ClickHouseStoreOptions {
    pub url: ClickHouseUrl,
    pub statement_timeout: Duration,
    pub mutation_timeout: Duration,
    pub migration_lease: Duration,
    pub merge_min_parts: usize,
    pub jobs: JobBoard,
}

impl ClickHouseStoreOptions {
    /// The options of `[clickhouse]`; `None` when it names no cluster.
    pub fn from_config(config: &ClickHouseConfig) -> Result<Option<Self>, StoreError> {
        let Some(url) = &config.url else { return Ok(None) };
        Ok(Some(Self {
            url: ClickHouseUrl::parse(url)?,
            statement_timeout: Duration::from_secs(config.statement_timeout_secs.max(1)),
            mutation_timeout: Duration::from_secs(config.mutation_timeout_secs.max(1)),
            migration_lease: Duration::from_secs(config.migration_lease_secs.max(1)),
            merge_min_parts: config.merge_min_parts.max(2),
            jobs: JobBoard::default(),
        }))
    }
}

/// The events of every project on one ClickHouse cluster.
pub struct ClickHouseStore {
    client: Client,
    /// The meta store's ports: this cluster's offsets, its migrations.
    ledger: Arc<dyn ClusterLedger>,
    options: ClickHouseStoreOptions,
    /// The last version given to person rows (see [`persons`]); read from
    /// the cluster on first use.
    last_version: tokio::sync::Mutex<Option<u64>>,
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore").field("options", &self.options).finish_non_exhaustive()
    }
}

impl ClickHouseStore {
    /// Connects and brings the schema up to date (waiting while another
    /// process migrates it).
    pub async fn open(
        options: ClickHouseStoreOptions,
        ledger: Arc<dyn ClusterLedger>,
    ) -> Result<Self, StoreError> {
        let store = Self::connect(options, ledger)?;
        let applied = store.migrator().up(|_| ControlFlow::Continue(())).await?;
        tracing::info!(
            database = %store.options.url.database,
            cluster = %store.options.url.cluster,
            migration_operations = applied,
            "ClickHouse event store open"
        );
        Ok(store)
    }

    /// Connects without touching the schema (for `warren migrate`).
    pub fn connect(
        options: ClickHouseStoreOptions,
        ledger: Arc<dyn ClusterLedger>,
    ) -> Result<Self, StoreError> {
        let client = Client::new(options.url.clone(), options.statement_timeout)?;
        Ok(Self { client, ledger, options, last_version: tokio::sync::Mutex::new(None) })
    }

    /// The cluster this store writes.
    pub fn url(&self) -> &ClickHouseUrl {
        &self.options.url
    }

    /// The runner of this database's schema migrations.
    pub fn migrator(&self) -> Migrator<'_> {
        let url = &self.options.url;
        self.migrator_of(schema::migrations(&url.database, &url.cluster))
    }

    /// A runner of `migrations` on this store's cluster and meta store.
    pub fn migrator_of(&self, migrations: Vec<migrations::Migration>) -> Migrator<'_> {
        Migrator::new(
            &self.client,
            self.ledger.as_ref(),
            migrations,
            self.options.mutation_timeout,
            self.options.migration_lease,
        )
    }

    fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.options.url.database)
    }

    /// Where the meta store keeps this cluster's offsets for `writer`: a
    /// database of its own starts from nothing.
    fn consumer(&self, writer: &str) -> String {
        format!("clickhouse/{}/{writer}", self.options.url.database)
    }

    /// The database queries read: the Distributed `events` (`FINAL` for
    /// one row per uuid) and the person tables.
    pub fn database(&self) -> &str {
        &self.options.url.database
    }

    /// The version of a batch's distinct-id and override rows: the time in
    /// µs, but above every version this store used or found on the cluster
    /// when it first wrote, so a clock that steps back or two batches in
    /// one microsecond never write a lower or equal one.
    async fn next_version(&self) -> Result<u64, StoreError> {
        let mut last = self.last_version.lock().await;
        if last.is_none() {
            let sql = format!(
                "SELECT greatest((SELECT max(version) FROM {}), (SELECT max(version) FROM {})) FORMAT TSV",
                self.table(persons::DISTINCT_IDS),
                self.table(persons::OVERRIDES)
            );
            *last = Some(parse_count(&self.client.execute(&sql, None).await?)?);
        }
        let now = warren_core::unix_millis().max(0) as u64 * 1000;
        let version = now.max(last.unwrap_or(0) + 1);
        *last = Some(version);
        Ok(version)
    }

    async fn insert_persons(&self, rows: &persons::PersonRows) -> Result<(), StoreError> {
        for (table, body) in rows.inserts() {
            let sql = format!("INSERT INTO {} FORMAT JSONEachRow", self.table(table));
            self.client.execute(&sql, Some(body.to_string())).await?;
        }
        Ok(())
    }

    /// Loads one page of a project's persons as the backfill does: the
    /// meta store's versions for persons, version 0 for distinct ids and
    /// overrides, below anything ingest writes, so a batch ingested
    /// meanwhile is never undone. Loading it again changes nothing.
    pub async fn load_persons(&self, snapshot: &PersonsSnapshot) -> Result<(), StoreError> {
        self.insert_persons(&persons::rows_of_load(snapshot, 0)).await
    }

    /// How many persons of `team_id` the cluster holds, merged-away ones
    /// not counted.
    pub async fn persons_count(&self, team_id: i64) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT count() FROM (SELECT id FROM {} WHERE team_id = {team_id} GROUP BY id \
             HAVING argMax(is_deleted, version) = 0) FORMAT TSV",
            self.table(persons::PERSONS)
        );
        let text = self.client.execute(&sql, None).await?;
        parse_count(&text)
    }

    /// Runs a query with `settings` besides the defaults, on any server
    /// that answers; its output text. `readonly = 1`: the statement can
    /// neither write nor change a setting (the `settings` given here are
    /// applied by the server before the statement, as the user's profile
    /// allows).
    pub async fn query(&self, sql: &str, settings: &[(&str, String)]) -> Result<String, StoreError> {
        let mut all = vec![("readonly", "1".to_string())];
        all.extend(settings.iter().cloned());
        self.client.execute_with(sql, None, &all).await
    }

    /// Every stored row of `team_id` (of every project when `None`), one
    /// per uuid.
    pub async fn read_rows(&self, team_id: Option<i64>) -> Result<Vec<EventRow>, StoreError> {
        let filter = team_id.map(|team| format!("WHERE team_id = {team}")).unwrap_or_default();
        let sql = format!(
            "SELECT {} FROM {} FINAL {filter} FORMAT JSONEachRow",
            rows::SELECTED,
            self.table("events")
        );
        let text = self.client.execute(&sql, None).await?;
        text.lines().filter(|line| !line.trim().is_empty()).map(rows::decode).collect()
    }

    /// Log records ingest has finished (the meta store's offsets) that the
    /// cluster does not hold yet: 0 while ingest writes it beside every
    /// batch, more while it catches up after an outage.
    pub async fn records_behind(&self) -> Result<u64, StoreError> {
        let finished = self.ledger.ingest_offsets(warren_core::INGEST_CONSUMER).await?;
        let held = self.ledger.ingest_offsets(&self.consumer(warren_core::INGEST_CONSUMER)).await?;
        Ok(finished
            .iter()
            .map(|(partition, offset)| offset.saturating_sub(held.get(partition).copied().unwrap_or(0)))
            .sum())
    }

    /// What the System page shows of the cluster: how far it is behind
    /// ingest, and per server named in the URL its replicas' health
    /// (readonly, session expired, queue, delay), unfinished mutations,
    /// running merges, parts per partition and bytes on disk. A server that
    /// does not answer says why instead.
    pub async fn status(&self) -> serde_json::Value {
        let database = quote(&self.options.url.database);
        let queries = [
            ("macros", "SELECT macro, substitution FROM system.macros FORMAT JSONEachRow".to_string()),
            (
                "replicas",
                format!(
                    "SELECT table, is_leader, is_readonly, is_session_expired, queue_size, inserts_in_queue,                      merges_in_queue, absolute_delay, total_replicas, active_replicas                      FROM system.replicas WHERE database = {database} FORMAT JSONEachRow"
                ),
            ),
            (
                "mutations",
                format!(
                    "SELECT table, mutation_id, command, toString(create_time) AS created, parts_to_do, is_done                      FROM system.mutations WHERE database = {database}                      ORDER BY is_done, create_time DESC LIMIT 20 FORMAT JSONEachRow"
                ),
            ),
            (
                "merges",
                format!(
                    "SELECT table, elapsed, progress, num_parts, result_part_name, total_size_bytes_compressed                      FROM system.merges WHERE database = {database} FORMAT JSONEachRow"
                ),
            ),
            (
                "parts",
                format!(
                    "SELECT table, partition, count() AS parts, sum(rows) AS rows, sum(bytes_on_disk) AS bytes                      FROM system.parts WHERE database = {database} AND active                      GROUP BY table, partition ORDER BY table, partition FORMAT JSONEachRow"
                ),
            ),
            (
                "disk",
                "SELECT sum(bytes_on_disk) AS bytes, count() AS active_parts FROM system.parts WHERE active                  FORMAT JSONEachRow"
                    .to_string(),
            ),
        ];
        let mut hosts = Vec::new();
        for url in &self.options.url.hosts {
            let mut host = serde_json::Map::new();
            host.insert("url".into(), url.clone().into());
            for (name, sql) in &queries {
                match self.client.execute_on(url, sql, None).await {
                    Ok(text) => {
                        let rows: Vec<serde_json::Value> =
                            text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
                        host.insert((*name).into(), rows.into());
                    }
                    Err(error) => {
                        host.insert("error".into(), error.to_string().into());
                        break;
                    }
                }
            }
            host.insert("reachable".into(), (!host.contains_key("error")).into());
            hosts.push(serde_json::Value::Object(host));
        }
        let behind = self.records_behind().await;
        serde_json::json!({
            "database": self.options.url.database,
            "cluster": self.options.url.cluster,
            "records_behind": behind.as_ref().ok(),
            "records_behind_error": behind.err().map(|error| error.to_string()),
            "hosts": hosts,
        })
    }

    /// Rows (one per uuid) per UTC day, of every project.
    pub async fn rows_per_day(&self) -> Result<HashMap<NaiveDate, u64>, StoreError> {
        Ok(self.day_counts(crate::Cut::All).await?.into_iter().collect())
    }

    /// Rows (one per uuid) of one UTC day.
    pub async fn rows_of_day(&self, day: NaiveDate) -> Result<u64, StoreError> {
        self.count(&format!("toYYYYMMDD(timestamp) = {}", day.format("%Y%m%d"))).await
    }

    async fn count(&self, condition: &str) -> Result<u64, StoreError> {
        let sql = format!("SELECT count() FROM {} FINAL WHERE {condition} FORMAT TSV", self.table("events"));
        let text = self.client.execute(&sql, None).await?;
        parse_count(&text)
    }

    /// Active parts per partition of `sharded_events` on one server.
    async fn parts(&self, host: &str) -> Result<HashMap<String, u64>, StoreError> {
        let sql = format!(
            "SELECT partition_id, count() FROM system.parts \
             WHERE database = {} AND table = 'sharded_events' AND active GROUP BY partition_id FORMAT TSV",
            quote(&self.options.url.database)
        );
        let text = self.client.execute_on(host, &sql, None).await?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let (partition, count) = line.split_once('\t')?;
                Some((partition.to_string(), count.trim().parse().ok()?))
            })
            .collect())
    }

    async fn merge(&self) -> Result<MaintenanceReport, StoreError> {
        let mut report = MaintenanceReport::default();
        for host in self.client.one_host_per_shard().await? {
            // Parts still to be fetched from the other replicas would land
            // after the merge and be counted as due again: the replica
            // catches up first.
            let sync = format!("SYSTEM SYNC REPLICA {}", self.table("sharded_events"));
            self.client.execute_on(&host.url, &sync, None).await?;
            let before = self.parts(&host.url).await?;
            let due: Vec<&String> = before
                .iter()
                .filter(|(_, &parts)| parts as usize >= self.options.merge_min_parts)
                .map(|(partition, _)| partition)
                .collect();
            for partition in &due {
                let sql = format!(
                    "OPTIMIZE TABLE {} PARTITION ID {} FINAL",
                    self.table("sharded_events"),
                    quote(partition)
                );
                self.client.execute_on(&host.url, &sql, None).await?;
            }
            if due.is_empty() {
                continue;
            }
            let after = self.parts(&host.url).await?;
            for partition in due {
                report.files_compacted += before.get(partition).copied().unwrap_or(0);
                report.files_written += after.get(partition).copied().unwrap_or(0);
            }
        }
        Ok(report)
    }
}

fn parse_count(text: &str) -> Result<u64, StoreError> {
    text.trim().parse().map_err(|_| StoreError::ClickHouse(format!("a count that is no number: {text:?}")))
}

#[async_trait]
impl EventStore for ClickHouseStore {
    async fn append(
        &self,
        writer: &str,
        rows: Vec<EventRow>,
        offsets: &[(u32, u64)],
    ) -> Result<(), StoreError> {
        if !rows.is_empty() {
            let inserted_at_us = warren_core::unix_millis().max(0) as u64 * 1000;
            let mut body = String::with_capacity(rows.len() * 512);
            for row in &rows {
                rows::encode(row, inserted_at_us, &mut body);
            }
            let sql = format!("INSERT INTO {} FORMAT JSONEachRow", self.table("writable_events"));
            self.client.execute(&sql, Some(body)).await?;
        }
        if !offsets.is_empty() {
            self.ledger.commit_offsets(&self.consumer(writer), offsets).await?;
        }
        Ok(())
    }

    async fn write_persons(&self, changes: &PersonChanges<'_>) -> Result<(), StoreError> {
        let rows = persons::rows_of_changes(changes, self.next_version().await?);
        self.insert_persons(&rows).await
    }

    async fn offsets(&self, writer: &str, partitions: u32) -> Result<HashMap<u32, u64>, StoreError> {
        let mut offsets = self.ledger.ingest_offsets(&self.consumer(writer)).await?;
        offsets.retain(|partition, _| *partition < partitions);
        Ok(offsets)
    }

    async fn delete_events(&self, team_id: i64, range: std::ops::Range<i64>) -> Result<u64, StoreError> {
        let job = Job::start(&self.options.jobs, "clickhouse.delete");
        let result = async {
            let mut condition = format!("team_id = {team_id} AND timestamp_us < {}", range.end);
            if range.start != i64::MIN {
                condition.push_str(&format!(" AND timestamp_us >= {}", range.start));
            }
            let deleted = self.count(&condition).await?;
            if deleted == 0 {
                return Ok(0);
            }
            // Submitted on one replica per shard; replication carries it.
            for host in self.client.one_host_per_shard().await? {
                let sql = format!("ALTER TABLE {} DELETE WHERE {condition}", self.table("sharded_events"));
                self.client.execute_on(&host.url, &sql, None).await?;
            }
            migrations::await_mutations(
                &self.client,
                &self.options.url.database,
                self.options.mutation_timeout,
            )
            .await?;
            Ok(deleted)
        }
        .await;
        job.finish(result, |deleted| format!("{deleted} events of project {team_id} deleted"))
    }

    async fn read_events(&self, keys: &[EventKey]) -> Result<Vec<EventRow>, StoreError> {
        let mut rows = Vec::with_capacity(keys.len());
        for slice in keys.chunks(KEYS_PER_READ) {
            let teams: BTreeSet<i64> = slice.iter().map(|key| key.team_id).collect();
            let uuids: BTreeSet<String> = slice.iter().map(|key| quote(&key.uuid.to_string())).collect();
            let wanted: HashSet<(i64, uuid::Uuid)> =
                slice.iter().map(|key| (key.team_id, key.uuid)).collect();
            let sql = format!(
                "SELECT {} FROM {} FINAL WHERE team_id IN ({}) AND uuid IN ({}) FORMAT JSONEachRow",
                rows::SELECTED,
                self.table("events"),
                teams.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
                uuids.into_iter().collect::<Vec<_>>().join(", "),
            );
            let text = self.client.execute(&sql, None).await?;
            for line in text.lines().filter(|line| !line.trim().is_empty()) {
                let row = rows::decode(line)?;
                if wanted.contains(&(row.team_id, row.uuid)) {
                    rows.push(row);
                }
            }
        }
        Ok(rows)
    }

    async fn refresh_persons(&self, snapshot: &PersonsSnapshot) -> Result<(), StoreError> {
        let rows = persons::rows_of_snapshot(snapshot, self.next_version().await?);
        self.insert_persons(&rows).await
    }

    async fn maintain(&self) -> Result<MaintenanceReport, StoreError> {
        let job = Job::start(&self.options.jobs, "clickhouse.merge");
        let result = self.merge().await;
        job.finish(result, |report| {
            format!("{} parts merged into {}", report.files_compacted, report.files_written)
        })
    }
}

#[async_trait]
impl SystemStatus for ClickHouseStore {
    async fn system_status(&self) -> serde_json::Value {
        self.status().await
    }
}
