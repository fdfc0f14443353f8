/// Everything that can stop an ingest batch. Every one is retried: the
/// batch is rebuilt from the stores' offsets, so nothing is lost or doubled.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Log(#[from] warren_log::LogError),
    #[error(transparent)]
    Meta(#[from] warren_meta::MetaError),
    #[error(transparent)]
    Store(#[from] warren_store::StoreError),
    /// The meta store's offsets, through their port.
    #[error(transparent)]
    Offsets(#[from] warren_core::ports::PortError),
    #[error(
        "the meta store has applied partition {partition} up to offset {applied}, but the events table \
         holds it only up to {stored}: the table was replaced or restored without the meta store; \
         restore them together"
    )]
    Diverged { partition: u32, applied: u64, stored: u64 },
}
