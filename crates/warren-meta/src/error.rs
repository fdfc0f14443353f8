/// Everything that can go wrong in a meta store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("meta store unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("meta store migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported meta store URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("meta store holds a malformed {what}: {reason}")]
    Corrupt { what: &'static str, reason: String },
}
