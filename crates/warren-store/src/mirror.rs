//! [`MirroredStore`]: the canonical store with a replica written beside it,
//! as ingest sees them — one store.
//!
//! The replica is written first and the canonical store second, and the
//! canonical store's offsets are the ones that count. A crash between the
//! two replays the batch into both: the canonical store takes it once
//! (its offsets did not move), and the replica keeps one row per uuid
//! (ClickHouse's replacing engine). The other order would leave rows in
//! the canonical store that the replica never gets.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use warren_meta::IngestCommit;

use crate::{EventRow, EventStore, MaintenanceReport, StoreError};

pub struct MirroredStore {
    canonical: Arc<dyn EventStore>,
    replica: Arc<dyn EventStore>,
}

impl MirroredStore {
    pub fn new(canonical: Arc<dyn EventStore>, replica: Arc<dyn EventStore>) -> Self {
        Self { canonical, replica }
    }
}

#[async_trait]
impl EventStore for MirroredStore {
    async fn append(
        &self,
        writer: &str,
        rows: Vec<EventRow>,
        offsets: &[(u32, u64)],
    ) -> Result<(), StoreError> {
        self.replica.append(writer, rows.clone(), offsets).await?;
        self.canonical.append(writer, rows, offsets).await
    }

    async fn write_persons(&self, commit: &IngestCommit) -> Result<(), StoreError> {
        self.replica.write_persons(commit).await?;
        self.canonical.write_persons(commit).await
    }

    async fn offsets(&self, writer: &str, partitions: u32) -> Result<HashMap<u32, u64>, StoreError> {
        self.canonical.offsets(writer, partitions).await
    }

    /// Deletes from both; answers the canonical store's count.
    async fn delete_events(&self, team_id: i64, range: std::ops::Range<i64>) -> Result<u64, StoreError> {
        self.replica.delete_events(team_id, range.clone()).await?;
        self.canonical.delete_events(team_id, range).await
    }

    /// Upkeep of both, summed; the canonical store's runs even when the
    /// replica's fails.
    async fn maintain(&self) -> Result<MaintenanceReport, StoreError> {
        let replica = self.replica.maintain().await;
        let canonical = self.canonical.maintain().await?;
        let replica = replica?;
        Ok(MaintenanceReport {
            files_compacted: canonical.files_compacted + replica.files_compacted,
            files_written: canonical.files_written + replica.files_written,
            files_vacuumed: canonical.files_vacuumed + replica.files_vacuumed,
        })
    }
}
