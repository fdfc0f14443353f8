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
    /// Something this store's engine does not do (yet).
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("{reason}")]
    Conflict { what: &'static str, reason: String },
}

impl MetaError {
    /// A unique-constraint violation as [`MetaError::Conflict`], anything
    /// else as a database error.
    pub(crate) fn conflict_or(error: sqlx::Error, what: &'static str, reason: String) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                MetaError::Conflict { what, reason }
            }
            _ => MetaError::Database(error),
        }
    }
}
