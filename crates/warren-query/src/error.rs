use std::time::Duration;

/// Why a query gave no answer. `Invalid` is the asker's mistake (HTTP 400);
/// the limits are theirs too but worth telling apart; the rest are ours.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Invalid(String),
    #[error("query exceeded the time limit of {} s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("query exceeded the memory limit: {0}")]
    MemoryLimit(String),
    #[error("query engine failed: {0}")]
    Engine(String),
    #[error("meta store: {0}")]
    Meta(#[from] warren_meta::MetaError),
    #[error("event store: {0}")]
    Store(#[from] warren_store::StoreError),
}

impl QueryError {
    pub fn invalid(message: impl Into<String>) -> Self {
        QueryError::Invalid(message.into())
    }

    /// A stable machine-readable code for the API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::Invalid(_) => "invalid_query",
            QueryError::Timeout(_) => "query_timeout",
            QueryError::MemoryLimit(_) => "query_memory_limit",
            QueryError::Engine(_) | QueryError::Meta(_) | QueryError::Store(_) => "query_failed",
        }
    }
}
