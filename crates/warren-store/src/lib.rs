//! The event store: Warren's canonical, columnar table of events, persons
//! on events.
//!
//! [`EventStore`] is the port that ingest writes through. [`DeltaStore`] is
//! the embedded adapter: a standard Delta Lake table (partitioned by event
//! date, files sorted by team, event and time) on `file://` or `s3://`,
//! which any Delta reader can open and which [`DeltaStore::table_provider`]
//! hands to Apache DataFusion. Each append commits its rows together with
//! the event-log offsets they cover (Delta application transactions), so a
//! writer that crashes and replays never stores a row twice. Upkeep —
//! compaction of small files, checkpoints, vacuum — lives in
//! [`DeltaStore::maintain`] and reports each run to the job board. [`register_person_tables`] adds the persons,
//! person-overrides and groups tables beside it in a DataFusion session.
//! [`ClickHouseStore`] is the scale-out adapter: the same rows on a
//! sharded, replicated ClickHouse cluster, which ingest keeps equal to the
//! canonical table (a replica: it may lag, never the other way round) so
//! queries can be served from either (`warren-ops` loads an existing table
//! into it). [`LiveCluster`] is the cluster a deployment uses across
//! reshards, following the meta store's [`ReshardJournal`]; [`DayDigest`]
//! is how a cluster is compared with the Delta table, day by day.
//! [`conformance`] is the suite every adapter passes; the schema is
//! documented in `docs/schema/events.md`.
//!
//! This crate knows rows, not persons: ingest decides what a row says and
//! hands over what changed of persons; the meta store is reached only
//! through the small ports of `warren_core::ports`. [`ObjectBlobStore`]
//! is the blob store of session recordings on the same kinds of storage.

mod blobs;
mod clickhouse;
pub mod conformance;
mod delta;
mod digest;
mod error;
mod lease;
mod row;
mod session;
mod upkeep;

use std::collections::HashMap;

use async_trait::async_trait;
use warren_core::person::{PersonChanges, PersonsSnapshot};

pub use blobs::{open_object_store, ObjectBlobStore, OpenedObjectStore};
pub use clickhouse::{
    migrations, quote as clickhouse_literal, ClickHouseStore, ClickHouseStoreOptions, ClickHouseUrl,
    CopiedDay, LiveCluster, Misplaced, ReplacedReplica, ReplicaStep, ReshardJournal, ReshardPhase,
    RESHARD_JOURNAL,
};
pub use delta::{DaySummary, DeltaStore, DeltaStoreOptions, TableFile, TableFiles};
/// The Arrow and DataFusion this crate was built with, for callers that
/// query the table: one version across the workspace.
pub use deltalake::{arrow, datafusion};
pub use digest::{Cut, DayDigest};
pub use error::StoreError;
pub use lease::Lease;
pub use row::{EventKey, EventRow, GROUP_SLOTS};
pub use session::register_person_tables;
pub use upkeep::MaintenanceReport;

/// Where events are stored for queries; written only by ingest.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Stores `rows` and records, in the same atomic commit, that `writer`
    /// has written everything of each listed partition before its offset
    /// (`(partition, next offset)`). After a crash, [`EventStore::offsets`]
    /// says exactly which log records are stored.
    async fn append(
        &self,
        writer: &str,
        rows: Vec<EventRow>,
        offsets: &[(u32, u64)],
    ) -> Result<(), StoreError>;

    /// Keeps what a batch changed of persons — persons, their distinct
    /// ids, overrides — where this store's queries read them. Ingest calls
    /// it before the batch's rows are appended; a crash in between calls it
    /// again with the same changes, so doing it twice must change nothing.
    async fn write_persons(&self, changes: &PersonChanges<'_>) -> Result<(), StoreError>;

    /// `partition → next offset` that `writer` has stored, for the
    /// partitions it has written.
    async fn offsets(&self, writer: &str, partitions: u32) -> Result<HashMap<u32, u64>, StoreError>;

    /// Deletes one project's events whose time (µs since the epoch) falls
    /// in `range`; returns how many rows went. A range starting at
    /// `i64::MIN` has no lower end.
    async fn delete_events(&self, team_id: i64, range: std::ops::Range<i64>) -> Result<u64, StoreError>;

    /// Runs whatever upkeep is due (compaction, vacuum).
    async fn maintain(&self) -> Result<MaintenanceReport, StoreError>;

    /// The stored rows of these events, one per uuid, in no order; events
    /// it does not hold are absent.
    async fn read_events(&self, keys: &[EventKey]) -> Result<Vec<EventRow>, StoreError>;

    /// Writes the meta store's present state of some persons — the
    /// persons, all their distinct ids, the overrides into them, and the
    /// persons those merged away as deleted — where this store's queries
    /// read persons, replacing whatever older state it holds. For a replica
    /// that missed [`EventStore::write_persons`] calls; a store whose
    /// queries read persons from the meta store has nothing to do.
    async fn refresh_persons(&self, snapshot: &PersonsSnapshot) -> Result<(), StoreError>;
}
