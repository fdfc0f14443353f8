//! The meta store: Warren's relational, transactional state.
//!
//! [`MetaStore`] is the port. [`SqlMeta`] implements it once over sqlx's
//! `Any` driver for two dialects: SQLite in WAL mode (the embedded default,
//! `sqlite://PATH`) and PostgreSQL (`postgres://…`). The queries are shared;
//! each dialect has its own versioned migrations under `migrations/<dialect>/`.
//! It holds tenancy (organizations, projects, personal API keys) and what
//! ingest builds: persons and their distinct ids, person-id overrides,
//! groups and group types, ingestion warnings, and the log offsets that
//! person updates cover (committed in the same transaction as the updates,
//! so replaying the log never applies an event twice).
//!
//! [`conformance`] is the one suite every dialect must pass. Nothing here
//! knows about HTTP, the event log or the event store.

pub mod conformance;
mod error;
mod keys;
mod sql;

use std::collections::HashMap;

use async_trait::async_trait;
use uuid::Uuid;
use warren_core::person::{Group, GroupType, IngestionWarning, Person, PersonOverride, TeamId};

pub use error::MetaError;
pub use sql::{Dialect, SqlMeta};

pub type ProjectId = i64;

/// A project as capture and the API see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: ProjectId,
    pub organization_id: i64,
    pub name: String,
    pub api_token: String,
    /// IANA time zone that interval buckets are in.
    pub timezone: String,
    /// 0: weeks start on Sunday; 1: on Monday.
    pub week_start_day: i32,
    /// Property filters (JSON) that `filterTestAccounts` applies.
    pub test_account_filters: String,
}

/// What a fresh deployment starts with. Fields left `None` are generated.
#[derive(Debug, Clone, Default)]
pub struct BootstrapRequest {
    pub project_token: Option<String>,
    pub api_key: Option<String>,
    /// The default project's time zone; UTC when unset.
    pub timezone: Option<String>,
}

/// The result of a bootstrap that created something: the secrets, shown once.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    pub project: Project,
    /// The personal API key in clear; only its hash is stored.
    pub api_key: String,
}

/// The persons that a set of distinct ids belong to, as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonLookup {
    /// Distinct id → person uuid, for the ids that have a person.
    pub distinct_ids: HashMap<String, Uuid>,
    pub persons: HashMap<Uuid, Person>,
}

/// A distinct id and the person it belongs to after an ingest batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistinctIdAssignment {
    pub team_id: TeamId,
    pub distinct_id: String,
    pub person_uuid: Uuid,
}

/// Person `old` merged into person `into`: its distinct ids move, an
/// override records where its events now belong, and it is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonMerge {
    pub team_id: TeamId,
    pub old: Uuid,
    pub into: Uuid,
}

/// Everything one ingest batch changes, applied in one transaction together
/// with the log offsets it covers.
#[derive(Debug, Clone, Default)]
pub struct IngestCommit {
    /// The consumer whose offsets these are (one per event log).
    pub consumer: String,
    /// `(partition, next offset)`: the batch covers everything before.
    pub offsets: Vec<(u32, u64)>,
    /// Merges in the order they happened; applied before the rows below.
    pub merges: Vec<PersonMerge>,
    /// Final state of every person the batch created or changed.
    pub persons: Vec<Person>,
    /// Final owner of every distinct id the batch attached or moved.
    pub distinct_ids: Vec<DistinctIdAssignment>,
    /// Overrides for personless ids that joined a person with another id.
    pub overrides: Vec<PersonOverride>,
    pub group_types: Vec<GroupType>,
    /// Final state of every group the batch created or changed.
    pub groups: Vec<Group>,
    pub warnings: Vec<IngestionWarning>,
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

    /// A project by id.
    async fn project(&self, id: ProjectId) -> Result<Option<Project>, MetaError>;

    /// The project a capture token belongs to.
    async fn project_by_token(&self, token: &str) -> Result<Option<Project>, MetaError>;

    /// Answers when the store can serve queries; for readiness checks.
    async fn ping(&self) -> Result<(), MetaError>;

    /// The organization a personal API key belongs to.
    async fn organization_for_api_key(&self, key: &str) -> Result<Option<i64>, MetaError>;

    /// The persons of these distinct ids (ids without one are absent).
    async fn persons_by_distinct_ids(
        &self,
        team_id: TeamId,
        distinct_ids: &[String],
    ) -> Result<PersonLookup, MetaError>;

    /// The groups with these `(group_type_index, group_key)`s that exist.
    async fn groups_by_keys(&self, team_id: TeamId, keys: &[(i32, String)]) -> Result<Vec<Group>, MetaError>;

    async fn group_types(&self, team_id: TeamId) -> Result<Vec<GroupType>, MetaError>;

    /// Applies an ingest batch and records its offsets, all or nothing.
    async fn commit_ingest(&self, commit: &IngestCommit) -> Result<(), MetaError>;

    /// `partition → next offset` that `consumer` has applied.
    async fn ingest_offsets(&self, consumer: &str) -> Result<HashMap<u32, u64>, MetaError>;

    /// A project's persons, in uuid order, `limit` at a time after `after`.
    async fn persons(
        &self,
        team_id: TeamId,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Person>, MetaError>;

    /// The distinct ids of one person, sorted.
    async fn distinct_ids_of(&self, team_id: TeamId, person: Uuid) -> Result<Vec<String>, MetaError>;

    async fn person_overrides(&self, team_id: TeamId) -> Result<Vec<PersonOverride>, MetaError>;

    async fn groups(&self, team_id: TeamId) -> Result<Vec<Group>, MetaError>;

    /// A project's ingestion warnings, newest first.
    async fn ingestion_warnings(
        &self,
        team_id: TeamId,
        limit: u32,
    ) -> Result<Vec<IngestionWarning>, MetaError>;
}

/// The person a distinct id belongs to, if any.
pub async fn person_by_distinct_id<M: MetaStore + ?Sized>(
    meta: &M,
    team_id: TeamId,
    distinct_id: &str,
) -> Result<Option<Person>, MetaError> {
    let mut lookup = meta.persons_by_distinct_ids(team_id, &[distinct_id.to_string()]).await?;
    Ok(lookup.distinct_ids.get(distinct_id).and_then(|uuid| lookup.persons.remove(uuid)))
}
