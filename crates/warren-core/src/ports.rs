//! Small ports that let crates meet without depending on each other. The
//! event stores need these from the meta store: where a consumer's offsets
//! stand ([`ConsumerOffsets`]) and the ledger of another store's schema
//! migrations with its lock ([`MigrationLedger`]); `warren-meta`
//! implements both, and a store takes a [`ClusterLedger`]. Long operations
//! keep their progress in an [`OperationJournal`]. The System page shows
//! what a scale-out store says of itself ([`SystemStatus`]) without the
//! server reaching the store. Session recordings' blobs go to a
//! [`BlobStore`], written by ingest and read by the API.

use std::collections::HashMap;

use async_trait::async_trait;

/// A port's failure, as the adapter behind it described it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PortError(Box<dyn std::error::Error + Send + Sync>);

impl PortError {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(error))
    }
}

/// `partition → next offset` per consumer: what a consumer of the event
/// log has stored, kept where it survives the consumer.
#[async_trait]
pub trait ConsumerOffsets: Send + Sync {
    /// `partition → next offset` that `consumer` has committed.
    async fn ingest_offsets(&self, consumer: &str) -> Result<HashMap<u32, u64>, PortError>;

    /// Records that `consumer` holds everything before each offset of
    /// `offsets` (`(partition, next offset)`), replacing what it had.
    async fn commit_offsets(&self, consumer: &str, offsets: &[(u32, u64)]) -> Result<(), PortError>;
}

/// Where one operation of another store's migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    NotStarted,
    Running,
    Completed,
    Errored,
    RolledBack,
}

impl OperationState {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::NotStarted => "not_started",
            OperationState::Running => "running",
            OperationState::Completed => "completed",
            OperationState::Errored => "errored",
            OperationState::RolledBack => "rolled_back",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::NotStarted, Self::Running, Self::Completed, Self::Errored, Self::RolledBack]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// One recorded operation: `(version, operation)` of a migration of
/// `scope` (e.g. `clickhouse/warren`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OperationRecord {
    pub version: u32,
    pub operation: u32,
    pub state: OperationState,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub updated_at_ms: i64,
}

/// The record of another store's schema migrations, operation by
/// operation, and the lease that lets one process at a time run them.
#[async_trait]
pub trait MigrationLedger: Send + Sync {
    /// Every recorded operation of `scope`'s migrations, in order.
    async fn migration_operations(&self, scope: &str) -> Result<Vec<OperationRecord>, PortError>;

    /// Records where one operation stands (replacing what was recorded).
    async fn record_operation(
        &self,
        scope: &str,
        version: u32,
        operation: u32,
        state: OperationState,
        error: Option<&str>,
    ) -> Result<(), PortError>;

    /// Takes the lock `name` for `holder` until `lease_ms` from now: when
    /// it is free, expired, or already `holder`'s (which renews it).
    /// Answers whether `holder` has it, and who else does when not.
    async fn acquire_lock(
        &self,
        name: &str,
        holder: &str,
        lease_ms: i64,
    ) -> Result<Result<(), String>, PortError>;

    /// Gives up `holder`'s lock `name`; another holder's stays.
    async fn release_lock(&self, name: &str, holder: &str) -> Result<(), PortError>;
}

/// Where long operations keep how far they got, so one killed anywhere
/// goes on from there, and where the processes that must follow one (ingest
/// writing both layouts of a cluster during a reshard) read it: one JSON
/// document per operation name.
#[async_trait]
pub trait OperationJournal: Send + Sync {
    /// The document of `name`, or `None` when none was written.
    async fn read_journal(&self, name: &str) -> Result<Option<serde_json::Value>, PortError>;

    /// Replaces the document of `name`, durably.
    async fn write_journal(&self, name: &str, document: &serde_json::Value) -> Result<(), PortError>;
}

/// The ports a store on a cluster of its own needs.
pub trait ClusterLedger: ConsumerOffsets + MigrationLedger + OperationJournal {}

impl<T: ConsumerOffsets + MigrationLedger + OperationJournal + ?Sized> ClusterLedger for T {}

/// What a component says of its own state for the System page: servers,
/// replication, lag, as JSON the dashboard reads.
#[async_trait]
pub trait SystemStatus: Send + Sync {
    async fn system_status(&self) -> serde_json::Value;
}

/// Whole objects by key: where session recordings keep their blobs. The
/// adapter (a directory or an S3 bucket) is picked from a URL.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Writes `bytes` at `key`, replacing what was there, durably.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), PortError>;

    /// The bytes at `key`, or `None` when there are none.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError>;

    /// Removes `key`; a key that is not there is not an error.
    async fn delete(&self, key: &str) -> Result<(), PortError>;
}
