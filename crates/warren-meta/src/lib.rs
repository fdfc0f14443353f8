//! The meta store: Warren's relational, transactional state.
//!
//! [`MetaStore`] is the port; [`SqliteMeta`] is the embedded adapter (SQLite
//! in WAL mode through sqlx, schema changed only by the versioned migrations
//! under `migrations/<dialect>/`). Today it holds the tenancy skeleton that
//! capture and the API need: organizations, projects with their capture
//! tokens, and personal API keys. Persons, groups and product entities join
//! it later, as does a PostgreSQL adapter behind the same trait.
//!
//! Nothing here knows about HTTP or the event log.

mod error;
mod keys;
mod sqlite;

use async_trait::async_trait;

pub use error::MetaError;
pub use sqlite::{SqliteMeta, SQLITE_SCHEMA_VERSION};

pub type ProjectId = i64;

/// A project as capture and the API see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: ProjectId,
    pub organization_id: i64,
    pub name: String,
    pub api_token: String,
}

/// What a fresh deployment starts with. Fields left `None` are generated.
#[derive(Debug, Clone, Default)]
pub struct BootstrapRequest {
    pub project_token: Option<String>,
    pub api_key: Option<String>,
}

/// The result of a bootstrap that created something: the secrets, shown once.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    pub project: Project,
    /// The personal API key in clear; only its hash is stored.
    pub api_key: String,
}

/// Relational state behind one trait, so the embedded and scale-out
/// deployments share every caller.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Brings the schema to the version this build expects.
    async fn migrate(&self) -> Result<(), MetaError>;

    /// Creates the default organization, project 1 and an API key when the
    /// store has no project yet; `None` when it already had one.
    async fn bootstrap(&self, request: BootstrapRequest) -> Result<Option<Bootstrapped>, MetaError>;

    /// The project a capture token belongs to.
    async fn project_by_token(&self, token: &str) -> Result<Option<Project>, MetaError>;

    /// Answers when the store can serve queries; for readiness checks.
    async fn ping(&self) -> Result<(), MetaError>;

    /// The organization a personal API key belongs to.
    async fn organization_for_api_key(&self, key: &str) -> Result<Option<i64>, MetaError>;
}
