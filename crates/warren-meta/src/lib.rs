//! The meta store: Warren's relational, transactional state.
//!
//! [`MetaStore`] is the port. [`SqlMeta`] implements it once over sqlx's
//! `Any` driver for two dialects: SQLite in WAL mode (the embedded default,
//! `sqlite://PATH`) and PostgreSQL (`postgres://…`). The queries are shared;
//! each dialect has its own versioned migrations under `migrations/<dialect>/`.
//! It holds accounts and access (users, organizations, memberships, login
//! sessions, projects, personal API keys; [`accounts`]), the audit log
//! ([`audit`]), product entities and definitions ([`entities`]), and what
//! ingest builds: persons and their distinct ids, person-id overrides,
//! groups and group types, ingestion warnings, session recordings' chunks
//! ([`Recordings`]), and the log offsets that
//! person updates cover (committed in the same transaction as the updates,
//! so replaying the log never applies an event twice).
//!
//! [`conformance`] is the one suite every dialect must pass. Nothing here
//! knows about HTTP, the event log or the event store.

pub mod accounts;
pub mod audit;
pub mod conformance;
pub mod entities;
mod error;
mod keys;
mod sql;

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use uuid::Uuid;
use warren_core::person::{Group, GroupType, IngestionWarning, Person, PersonOverride, TeamId};
use warren_core::ports::ClusterLedger;
use warren_core::recording::{RecordingChunk, RecordingSummary};

use accounts::{
    ApiKey, CreatedApiKey, Member, Membership, NewApiKey, NewProject, NewUser, Organization, ProjectUpdate,
    Role, User,
};
use audit::{AuditEntry, AuditFilter};
use entities::{Entity, EntityKind, EntityWrite, EventDefinition, PropertyDefinition};

pub use error::MetaError;
pub use sql::{dump_sqlite, load_sqlite, Dialect, DumpCounts, SqlMeta};
pub use warren_core::person::{DistinctIdAssignment, PersonMerge};
pub use warren_core::ports::{OperationRecord, OperationState};

pub type ProjectId = i64;

/// A project as capture and the API see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    /// Warren's own project, where self-monitoring writes its events.
    pub internal: bool,
    /// Whether posthog-js records sessions (the remote configuration tells it).
    pub session_recording_opt_in: bool,
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
    /// Event names seen in the batch, with their first and last times.
    pub event_definitions: Vec<EventDefinition>,
    /// Property names seen in the batch for the first time by this ingest.
    pub property_definitions: Vec<PropertyDefinition>,
    /// The recording chunks whose blobs the batch wrote.
    pub recordings: Vec<RecordingChunk>,
}

/// One schema migration as this build knows it and the store applied it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MigrationStatus {
    pub version: i64,
    pub description: String,
    /// When it was applied (the database's own text), `None` when pending.
    pub applied_at: Option<String>,
    pub execution_ms: Option<f64>,
    /// Applied but failed (PostgreSQL keeps such rows), or pending.
    pub state: MigrationState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    Applied,
    Failed,
    Pending,
    /// Applied by another build: this one does not know it.
    Unknown,
}

/// Relational state, as one trait every role trait below makes up, so the
/// embedded and scale-out deployments share every caller. A consumer that
/// needs one role takes that role's trait; `Arc<dyn MetaStore>` coerces to
/// any of them. It includes the ports the event stores take
/// ([`ClusterLedger`]): consumer offsets and the migration ledger.
pub trait MetaStore:
    MetaSchema
    + Tenancy
    + Accounts
    + AuditLog
    + Entities
    + PersonStore
    + IngestCommits
    + Recordings
    + ClusterLedger
    + 'static
{
}

impl<T> MetaStore for T where
    T: MetaSchema
        + Tenancy
        + Accounts
        + AuditLog
        + Entities
        + PersonStore
        + IngestCommits
        + Recordings
        + ClusterLedger
        + 'static
{
}

/// The meta store's own schema and health.
#[async_trait]
pub trait MetaSchema: Send + Sync {
    /// Brings the schema to the version this build expects.
    async fn migrate(&self) -> Result<(), MetaError>;

    /// Answers when the store can serve queries; for readiness checks.
    async fn ping(&self) -> Result<(), MetaError>;

    /// Every migration this build has or the store applied, by version.
    async fn migration_status(&self) -> Result<Vec<MigrationStatus>, MetaError>;

    /// Writes a consistent copy of the whole store, as of one moment, to
    /// the new SQLite file `path` while the store stays in use: what a
    /// backup holds of it.
    async fn snapshot_into(&self, path: &std::path::Path) -> Result<(), MetaError>;
}

/// Organizations and projects: who a project belongs to, and how a token finds it.
#[async_trait]
pub trait Tenancy: Send + Sync {
    /// Creates the default organization, project 1 and an API key when the
    /// store has no project yet; `None` when it already had one.
    async fn bootstrap(&self, request: BootstrapRequest) -> Result<Option<Bootstrapped>, MetaError>;

    /// A project by id.
    async fn project(&self, id: ProjectId) -> Result<Option<Project>, MetaError>;

    /// The project a capture token belongs to.
    async fn project_by_token(&self, token: &str) -> Result<Option<Project>, MetaError>;

    /// Warren's internal project, created (in the deployment's first
    /// organization, named `name`) when there is none yet.
    async fn ensure_internal_project(&self, name: &str) -> Result<Project, MetaError>;

    /// Creates an organization with `owner` as its owner.
    async fn create_organization(&self, name: &str, owner: i64) -> Result<Organization, MetaError>;

    async fn organization(&self, id: i64) -> Result<Option<Organization>, MetaError>;

    /// Whether any organization exists yet (sign-up is open to the first).
    async fn any_organization(&self) -> Result<bool, MetaError>;

    /// Creates a project with a new capture token.
    async fn create_project(&self, project: NewProject) -> Result<Project, MetaError>;

    async fn projects(&self, organization_id: i64) -> Result<Vec<Project>, MetaError>;

    async fn update_project(
        &self,
        id: ProjectId,
        update: ProjectUpdate,
    ) -> Result<Option<Project>, MetaError>;
}

/// Users, their memberships and roles, log-in sessions and personal API keys.
#[async_trait]
pub trait Accounts: Send + Sync {
    // --- accounts and access ---

    /// Creates a user; [`MetaError::Conflict`] when the email has one.
    async fn create_user(&self, user: NewUser) -> Result<User, MetaError>;

    /// The user whose email and password these are.
    async fn verify_login(&self, email: &str, password: &str) -> Result<Option<User>, MetaError>;

    async fn user(&self, id: i64) -> Result<Option<User>, MetaError>;

    /// Replaces a user's password and ends all their login sessions.
    async fn set_password(&self, user_id: i64, password: &str) -> Result<(), MetaError>;

    async fn user_by_email(&self, email: &str) -> Result<Option<User>, MetaError>;

    /// The organizations a user belongs to, with the user's role in each.
    async fn memberships(&self, user_id: i64) -> Result<Vec<Membership>, MetaError>;

    /// A user's role in an organization, if a member.
    async fn role(&self, organization_id: i64, user_id: i64) -> Result<Option<Role>, MetaError>;

    async fn members(&self, organization_id: i64) -> Result<Vec<Member>, MetaError>;

    /// Adds a member or changes their role; `None` removes them. Refused
    /// ([`MetaError::Invalid`]) when it would leave the organization
    /// without an owner.
    async fn set_role(&self, organization_id: i64, user_id: i64, role: Option<Role>)
        -> Result<(), MetaError>;

    /// Starts a login session lasting `ttl_us`; returns its secret.
    async fn create_login_session(&self, user_id: i64, now_us: i64, ttl_us: i64)
        -> Result<String, MetaError>;

    /// The user of an unexpired login session.
    async fn user_for_session(&self, token: &str, now_us: i64) -> Result<Option<User>, MetaError>;

    async fn delete_login_session(&self, token: &str) -> Result<(), MetaError>;

    async fn create_api_key(&self, key: NewApiKey) -> Result<CreatedApiKey, MetaError>;

    async fn api_keys(&self, organization_id: i64) -> Result<Vec<ApiKey>, MetaError>;

    /// Revokes a key of the organization; false when it has no such key.
    async fn revoke_api_key(&self, organization_id: i64, id: i64) -> Result<bool, MetaError>;

    /// The key with this secret, revoked or not, marking it used.
    async fn api_key_by_secret(&self, secret: &str) -> Result<Option<ApiKey>, MetaError>;
}

/// Who did what: the audit log, written by the API and pruned by retention.
#[async_trait]
pub trait AuditLog: Send + Sync {
    // --- audit log ---

    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), MetaError>;

    /// An organization's audit entries, newest first.
    async fn audit_log(
        &self,
        organization_id: i64,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEntry>, MetaError>;

    /// Deletes audit entries older than `before_us`; returns how many.
    async fn prune_audit_log(&self, before_us: i64) -> Result<u64, MetaError>;
}

/// Product entities (actions, cohorts, insights, dashboards, annotations, flags, experiments), static cohorts' people, and the event and property definitions ingest collects.
#[async_trait]
pub trait Entities: Send + Sync {
    // --- product entities and definitions ---

    /// [`MetaError::Conflict`] when its unique key is taken.
    async fn create_entity(&self, entity: EntityWrite) -> Result<Entity, MetaError>;

    async fn entity(
        &self,
        project_id: ProjectId,
        kind: EntityKind,
        id: i64,
    ) -> Result<Option<Entity>, MetaError>;

    /// A project's entities of one kind, oldest first.
    async fn entities(&self, project_id: ProjectId, kind: EntityKind) -> Result<Vec<Entity>, MetaError>;

    /// Replaces an entity's key and body; `None` when there is no such one.
    async fn replace_entity(&self, id: i64, entity: EntityWrite) -> Result<Option<Entity>, MetaError>;

    async fn delete_entity(
        &self,
        project_id: ProjectId,
        kind: EntityKind,
        id: i64,
    ) -> Result<bool, MetaError>;

    /// Replaces a static cohort's members.
    async fn set_cohort_people(
        &self,
        project_id: ProjectId,
        cohort_id: i64,
        people: &[Uuid],
    ) -> Result<(), MetaError>;

    async fn cohort_people(&self, project_id: ProjectId, cohort_id: i64) -> Result<Vec<Uuid>, MetaError>;

    /// Whether a person is in a static cohort.
    async fn in_static_cohort(
        &self,
        project_id: ProjectId,
        cohort_id: i64,
        person: Uuid,
    ) -> Result<bool, MetaError>;

    async fn event_definitions(&self, team_id: TeamId) -> Result<Vec<EventDefinition>, MetaError>;

    async fn property_definitions(&self, team_id: TeamId) -> Result<Vec<PropertyDefinition>, MetaError>;
}

/// Persons, their distinct ids and overrides, groups, and ingestion warnings, as ingest left them: what queries, the API and ingest read.
#[async_trait]
pub trait PersonStore: Send + Sync {
    /// The persons of these distinct ids (ids without one are absent).
    async fn persons_by_distinct_ids(
        &self,
        team_id: TeamId,
        distinct_ids: &[String],
    ) -> Result<PersonLookup, MetaError>;

    /// The groups with these `(group_type_index, group_key)`s that exist.
    async fn groups_by_keys(&self, team_id: TeamId, keys: &[(i32, String)]) -> Result<Vec<Group>, MetaError>;

    async fn group_types(&self, team_id: TeamId) -> Result<Vec<GroupType>, MetaError>;

    /// A project's persons, in uuid order, `limit` at a time after `after`.
    async fn persons(
        &self,
        team_id: TeamId,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Person>, MetaError>;

    /// A project's persons, newest first: all of them, or those whose uuid
    /// is `search`, or one of whose distinct ids starts with it, or whose
    /// `email` or `name` property starts with it ignoring case (ASCII case
    /// only on SQLite). Each test is a range over an index. `key=value`
    /// also finds the persons whose property `key` is `value` as text (a
    /// string, or a number as written), which reads every person.
    async fn search_persons(
        &self,
        team_id: TeamId,
        search: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Person>, MetaError>;

    /// How many persons a project has.
    async fn count_persons(&self, team_id: TeamId) -> Result<u64, MetaError>;

    /// One person by uuid.
    async fn person(&self, team_id: TeamId, uuid: Uuid) -> Result<Option<Person>, MetaError>;

    /// Which of these uuids are persons of the project.
    async fn existing_persons(&self, team_id: TeamId, uuids: &[Uuid]) -> Result<HashSet<Uuid>, MetaError>;

    /// The distinct ids of each of these persons, sorted (empty for an
    /// unknown person).
    async fn distinct_ids_of(
        &self,
        team_id: TeamId,
        persons: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<String>>, MetaError>;

    async fn person_overrides(&self, team_id: TeamId) -> Result<Vec<PersonOverride>, MetaError>;

    /// The overrides that point at one of these persons, by old person id.
    async fn overrides_into(
        &self,
        team_id: TeamId,
        persons: &[Uuid],
    ) -> Result<Vec<PersonOverride>, MetaError>;

    async fn groups(&self, team_id: TeamId) -> Result<Vec<Group>, MetaError>;

    /// A project's ingestion warnings, newest first.
    async fn ingestion_warnings(
        &self,
        team_id: TeamId,
        limit: u32,
    ) -> Result<Vec<IngestionWarning>, MetaError>;
}

/// Where ingest commits each batch's changes with the log offsets they cover.
#[async_trait]
pub trait IngestCommits: Send + Sync {
    /// Applies an ingest batch and records its offsets, all or nothing.
    async fn commit_ingest(&self, commit: &IngestCommit) -> Result<(), MetaError>;
}

/// Session recordings' chunks, as ingest commits them
/// ([`IngestCommit::recordings`]); the blobs are in the blob store.
#[async_trait]
pub trait Recordings: Send + Sync {
    /// A project's recorded sessions, newest first, `limit` from `offset`;
    /// with `person`, only those the person's distinct ids sent.
    async fn recordings(
        &self,
        team_id: TeamId,
        person: Option<Uuid>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<RecordingSummary>, MetaError>;

    /// One session's chunks in recording order (none for an unknown one).
    async fn recording_chunks(
        &self,
        team_id: TeamId,
        session_id: &str,
    ) -> Result<Vec<RecordingChunk>, MetaError>;

    /// Up to `limit` chunks of any project whose last event is older than
    /// `before_ms`, oldest first: what retention deletes next.
    async fn expired_recording_chunks(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<RecordingChunk>, MetaError>;

    /// Forgets `chunks`, whose blobs the caller has deleted.
    async fn delete_recording_chunks(&self, chunks: &[RecordingChunk]) -> Result<(), MetaError>;
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
