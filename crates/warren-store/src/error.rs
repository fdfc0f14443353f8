/// Everything that can go wrong in an event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Delta table error: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    #[error("building the Arrow batch failed: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    #[error("reading the table's files: {0}")]
    Files(#[from] deltalake::ObjectStoreError),
    #[error("query failed: {0}")]
    Query(#[from] deltalake::datafusion::error::DataFusionError),
    #[error("unsupported storage URL {url:?}: {reason}")]
    UnsupportedUrl { url: String, reason: String },
    #[error("invalid event store option: {0}")]
    Invalid(String),
    #[error("ClickHouse: {0}")]
    ClickHouse(String),
    #[error("ClickHouse server {host} does not answer: {reason}")]
    Unreachable { host: String, reason: String },
    /// A lock of the meta store is held by another process.
    #[error("{0}")]
    Busy(String),
    /// The meta store behind a port (offsets, the migration ledger).
    #[error("meta store: {0}")]
    Ledger(#[from] warren_core::ports::PortError),
}
