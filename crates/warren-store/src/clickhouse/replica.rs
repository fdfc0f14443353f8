//! Bringing a new or emptied server of the cluster back to its shard's data
//! (`warren clickhouse replica replace`).
//!
//! The server gets the schema's tables by the same statements the
//! migrations ran on every server. A replicated table whose replica
//! ZooKeeper still knows (a server whose disk was lost, named as before)
//! is attached to that replica rather than created; either way the
//! replica fetches every part it lacks from the other replicas. The
//! server is then synced and its tables compared with a peer's: the
//! events of its shard with a replica of the same shard (rows and
//! checksum, [`DayDigest`](crate::DayDigest)'s fingerprint), the person
//! tables — whole on every server — with any other server.

use std::time::{Duration, Instant};

use super::migrations::Hosts;
use super::{parse_count, schema, ClickHouseStore};
use crate::digest::FINGERPRINT_SQL;
use crate::StoreError;

/// How long the comparison with a peer is tried again while inserts go
/// on before the replacement counts as failed.
const SETTLE: Duration = Duration::from_secs(60);

/// The replicated tables of the schema, events first.
const REPLICATED: [&str; 4] = ["sharded_events", "persons", "person_distinct_id", "person_overrides"];

/// What a replacement reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaStep<'a> {
    /// A table attached to the replica ZooKeeper knew rather than created
    /// (each statement says `IF NOT EXISTS`: what the server has already
    /// is left as it is).
    Attached(&'a str),
    /// The server fetched every part of this table its replicas hold.
    Synced(&'a str),
    /// The comparison with the peer found the server behind or apart (as
    /// while inserts go on); it syncs and compares again.
    Apart { event_rows: u64, peer_event_rows: u64 },
}

/// What a replacement found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacedReplica {
    pub shard: String,
    pub replica: String,
    /// The peer of the same shard the events were compared with, and the
    /// rows both hold.
    pub peer: String,
    pub event_rows: u64,
    /// Rows of the person tables, on this server and on the peer.
    pub person_rows: u64,
}

impl ClickHouseStore {
    /// Gives the server at `host` (`http[s]://host:port`) the schema's
    /// tables, waits until it fetched its shard's data, and compares it
    /// with a peer. Running it again on a server in step changes nothing.
    pub async fn replace_replica(
        &self,
        host: &str,
        mut progress: impl FnMut(ReplicaStep<'_>),
    ) -> Result<ReplacedReplica, StoreError> {
        let server = self.client.host(host).await?;
        let url = &self.options.url;
        for migration in schema::migrations(&url.database, &url.cluster) {
            for operation in migration.operations.iter().filter(|op| matches!(op.on, Hosts::Every)) {
                match self.client.execute_on(host, &operation.forward, None).await {
                    Ok(_) => {}
                    // ZooKeeper knows this replica: its tables come back
                    // by attaching to it.
                    Err(StoreError::ClickHouse(message)) if message.contains("already exists") => {
                        let attach = operation.forward.replacen("CREATE TABLE", "ATTACH TABLE", 1);
                        self.client.execute_on(host, &attach, None).await?;
                        progress(ReplicaStep::Attached(&operation.description));
                    }
                    Err(other) => return Err(other),
                }
            }
        }
        self.sync(host, &mut progress).await?;
        let peer = self
            .client
            .answering_hosts()
            .await?
            .into_iter()
            .find(|other| other.shard == server.shard && other.replica != server.replica)
            .ok_or_else(|| {
                StoreError::ClickHouse(format!(
                    "no other answering replica of shard {} to copy from",
                    server.shard
                ))
            })?;
        let deadline = Instant::now() + SETTLE;
        loop {
            let (ours, theirs) = (self.local_digest(host).await?, self.local_digest(&peer.url).await?);
            if ours == theirs {
                return Ok(ReplacedReplica {
                    shard: server.shard,
                    replica: server.replica,
                    peer: peer.url,
                    event_rows: ours.0,
                    person_rows: ours.2,
                });
            }
            if Instant::now() > deadline {
                return Err(StoreError::ClickHouse(format!(
                    "{host} holds {} event rows and {} person rows, its peer {} holds {} and {} after {} s",
                    ours.0,
                    ours.2,
                    peer.url,
                    theirs.0,
                    theirs.2,
                    SETTLE.as_secs()
                )));
            }
            progress(ReplicaStep::Apart { event_rows: ours.0, peer_event_rows: theirs.0 });
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.sync(host, &mut progress).await?;
        }
    }

    /// Waits until the server at `host` fetched every part its replicas
    /// announced, table by table.
    async fn sync(&self, host: &str, progress: &mut impl FnMut(ReplicaStep<'_>)) -> Result<(), StoreError> {
        for table in REPLICATED {
            let sql = format!("SYSTEM SYNC REPLICA {}", self.table(table));
            self.client.execute_on(host, &sql, None).await?;
            progress(ReplicaStep::Synced(table));
        }
        Ok(())
    }

    /// One server's own rows: its events (one per uuid), their checksum,
    /// and the rows of its person tables.
    async fn local_digest(&self, host: &str) -> Result<(u64, u64, u64), StoreError> {
        let sql = format!(
            "SELECT count(), sum({FINGERPRINT_SQL}) FROM {} FINAL FORMAT TSV",
            self.table("sharded_events")
        );
        let text = self.client.execute_on(host, &sql, None).await?;
        let (rows, checksum) = text.trim().split_once('\t').unwrap_or_default();
        let (rows, checksum) = (parse_count(rows)?, parse_count(checksum)?);
        let mut person_rows = 0;
        for table in &REPLICATED[1..] {
            let sql = format!("SELECT count() FROM {} FORMAT TSV", self.table(table));
            person_rows += parse_count(&self.client.execute_on(host, &sql, None).await?)?;
        }
        Ok((rows, checksum, person_rows))
    }
}
