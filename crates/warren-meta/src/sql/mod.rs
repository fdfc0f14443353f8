//! [`SqlMeta`]: the meta store on SQLite or PostgreSQL through sqlx's `Any`
//! driver. The SQL is written once, in the subset both dialects share
//! (numbered `$n` parameters, `ON CONFLICT … DO UPDATE`, text for uuids and
//! JSON, 64-bit integers for times), so the two adapters cannot drift apart.

mod accounts;
mod audit;
mod dialect;
mod dump;
mod entities;
mod locks;
mod persons;
mod recordings;
mod snapshot;
mod statement;
mod tenancy;

pub use dialect::Dialect;
pub use dump::{dump_sqlite, load_sqlite, DumpCounts};

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

use uuid::Uuid;
use warren_core::person::{Group, GroupType, IngestionWarning, Person, PersonOverride, TeamId};
use warren_core::ports::{
    ConsumerOffsets, MigrationLedger, OperationJournal, OperationRecord, OperationState, PortError,
};
use warren_core::recording::{RecordingChunk, RecordingSummary};

use crate::accounts::{
    ApiKey, CreatedApiKey, Member, Membership, NewApiKey, NewProject, NewUser, Organization, ProjectUpdate,
    Role, User,
};
use crate::audit::{AuditEntry, AuditFilter};
use crate::entities::{Entity, EntityKind, EntityWrite, EventDefinition, PropertyDefinition};
use crate::MetaError;
use statement::{int, text};

/// The meta store on a SQL database.
#[derive(Debug, Clone)]
pub struct SqlMeta {
    pool: AnyPool,
    dialect: Dialect,
}

impl SqlMeta {
    /// Connects to `sqlite://PATH` (created if missing) or `postgres://…`.
    pub async fn connect(url: &str) -> Result<Self, MetaError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(url)?;
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let pool = match dialect {
            Dialect::Sqlite => {
                let url = sqlite_url_creating(url);
                options
                    // One writer at a time is SQLite's rule; more connections
                    // would only queue on its lock.
                    .max_connections(4)
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            // WAL lets readers run beside the writer; FULL
                            // makes every commit durable before it returns.
                            connection
                                .execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                                     PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY;",
                                )
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Dialect::Postgres => options.max_connections(8).connect(url).await?,
        };
        Ok(Self { pool, dialect })
    }

    /// Closes every connection; SQLite folds its write-ahead log into the
    /// database file, which then stands alone (a snapshot about to be
    /// copied, say).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn run_migrations(&self) -> Result<(), MetaError> {
        self.dialect.migrations().run(&self.pool).await?;
        Ok(())
    }

    /// sqlx's bookkeeping table beside the migrations this build carries.
    async fn migration_status_rows(&self) -> Result<Vec<crate::MigrationStatus>, MetaError> {
        use crate::{MigrationState, MigrationStatus};
        let applied = sqlx::query(
            "SELECT version, description, CAST(installed_on AS TEXT) AS installed_on,
                    CASE WHEN success THEN 1 ELSE 0 END AS success, execution_time
             FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await;
        // A store never migrated has no bookkeeping table yet (PostgreSQL's
        // undefined_table; SQLite says so in words).
        let applied = match applied {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(db))
                if db.code().as_deref() == Some("42P01") || db.message().contains("no such table") =>
            {
                Vec::new()
            }
            Err(error) => return Err(error.into()),
        };
        let mut statuses = Vec::new();
        for row in &applied {
            let version = int(row, "version")?;
            let known = self.dialect.migrations().iter().any(|m| m.version == version);
            statuses.push(MigrationStatus {
                version,
                description: text(row, "description")?,
                applied_at: Some(text(row, "installed_on")?),
                // sqlx records nanoseconds.
                execution_ms: Some(int(row, "execution_time")? as f64 / 1e6),
                state: match (int(row, "success")? != 0, known) {
                    (false, _) => MigrationState::Failed,
                    (true, true) => MigrationState::Applied,
                    (true, false) => MigrationState::Unknown,
                },
            });
        }
        for migration in self.dialect.migrations().iter() {
            if !statuses.iter().any(|s| s.version == migration.version) {
                statuses.push(MigrationStatus {
                    version: migration.version,
                    description: migration.description.to_string(),
                    applied_at: None,
                    execution_ms: None,
                    state: MigrationState::Pending,
                });
            }
        }
        statuses.sort_by_key(|s| s.version);
        Ok(statuses)
    }
}

/// SQLite opens read-write-create only when asked in the URL.
fn sqlite_url_creating(url: &str) -> String {
    if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

#[async_trait::async_trait]
impl crate::MetaSchema for SqlMeta {
    async fn migrate(&self) -> Result<(), MetaError> {
        self.run_migrations().await
    }

    async fn ping(&self) -> Result<(), MetaError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migration_status(&self) -> Result<Vec<crate::MigrationStatus>, MetaError> {
        self.migration_status_rows().await
    }

    async fn snapshot_into(&self, path: &std::path::Path) -> Result<(), MetaError> {
        match self.dialect {
            Dialect::Sqlite => snapshot::sqlite(&self.pool, path).await,
            Dialect::Postgres => snapshot::postgres(self, path).await,
        }
    }
}

#[async_trait::async_trait]
impl crate::Tenancy for SqlMeta {
    async fn bootstrap(
        &self,
        request: crate::BootstrapRequest,
    ) -> Result<Option<crate::Bootstrapped>, MetaError> {
        tenancy::bootstrap(&self.pool, self.dialect, request).await
    }

    async fn project(&self, id: crate::ProjectId) -> Result<Option<crate::Project>, MetaError> {
        tenancy::project(&self.pool, id).await
    }

    async fn project_by_token(&self, token: &str) -> Result<Option<crate::Project>, MetaError> {
        tenancy::project_by_token(&self.pool, token).await
    }

    async fn ensure_internal_project(&self, name: &str) -> Result<crate::Project, MetaError> {
        tenancy::ensure_internal_project(&self.pool, name).await
    }

    async fn create_organization(&self, name: &str, owner: i64) -> Result<Organization, MetaError> {
        accounts::create_organization(&self.pool, name, owner).await
    }

    async fn organization(&self, id: i64) -> Result<Option<Organization>, MetaError> {
        accounts::organization(&self.pool, id).await
    }

    async fn any_organization(&self) -> Result<bool, MetaError> {
        accounts::any_organization(&self.pool).await
    }

    async fn create_project(&self, project: NewProject) -> Result<crate::Project, MetaError> {
        accounts::create_project(&self.pool, project).await
    }

    async fn projects(&self, organization_id: i64) -> Result<Vec<crate::Project>, MetaError> {
        accounts::projects(&self.pool, organization_id).await
    }

    async fn update_project(
        &self,
        id: crate::ProjectId,
        update: ProjectUpdate,
    ) -> Result<Option<crate::Project>, MetaError> {
        accounts::update_project(&self.pool, id, update).await
    }
}

#[async_trait::async_trait]
impl crate::Accounts for SqlMeta {
    async fn create_user(&self, user: NewUser) -> Result<User, MetaError> {
        accounts::create_user(&self.pool, user).await
    }

    async fn verify_login(&self, email: &str, password: &str) -> Result<Option<User>, MetaError> {
        accounts::verify_login(&self.pool, email, password).await
    }

    async fn user(&self, id: i64) -> Result<Option<User>, MetaError> {
        accounts::user(&self.pool, id).await
    }

    async fn set_password(&self, user_id: i64, password: &str) -> Result<(), MetaError> {
        accounts::set_password(&self.pool, user_id, password).await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>, MetaError> {
        accounts::user_by_email(&self.pool, email).await
    }

    async fn memberships(&self, user_id: i64) -> Result<Vec<Membership>, MetaError> {
        accounts::memberships(&self.pool, user_id).await
    }

    async fn role(&self, organization_id: i64, user_id: i64) -> Result<Option<Role>, MetaError> {
        accounts::role(&self.pool, organization_id, user_id).await
    }

    async fn members(&self, organization_id: i64) -> Result<Vec<Member>, MetaError> {
        accounts::members(&self.pool, organization_id).await
    }

    async fn set_role(
        &self,
        organization_id: i64,
        user_id: i64,
        role: Option<Role>,
    ) -> Result<(), MetaError> {
        accounts::set_role(&self.pool, organization_id, user_id, role).await
    }

    async fn create_login_session(
        &self,
        user_id: i64,
        now_us: i64,
        ttl_us: i64,
    ) -> Result<String, MetaError> {
        accounts::create_login_session(&self.pool, user_id, now_us, ttl_us).await
    }

    async fn user_for_session(&self, token: &str, now_us: i64) -> Result<Option<User>, MetaError> {
        accounts::user_for_session(&self.pool, token, now_us).await
    }

    async fn delete_login_session(&self, token: &str) -> Result<(), MetaError> {
        accounts::delete_login_session(&self.pool, token).await
    }

    async fn create_api_key(&self, key: NewApiKey) -> Result<CreatedApiKey, MetaError> {
        accounts::create_api_key(&self.pool, key).await
    }

    async fn api_keys(&self, organization_id: i64) -> Result<Vec<ApiKey>, MetaError> {
        accounts::api_keys(&self.pool, organization_id).await
    }

    async fn revoke_api_key(&self, organization_id: i64, id: i64) -> Result<bool, MetaError> {
        accounts::revoke_api_key(&self.pool, organization_id, id).await
    }

    async fn api_key_by_secret(&self, secret: &str) -> Result<Option<ApiKey>, MetaError> {
        accounts::api_key_by_secret(&self.pool, secret).await
    }
}

#[async_trait::async_trait]
impl crate::AuditLog for SqlMeta {
    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), MetaError> {
        audit::record(&self.pool, entry).await
    }

    async fn audit_log(
        &self,
        organization_id: i64,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEntry>, MetaError> {
        audit::list(&self.pool, organization_id, filter).await
    }

    async fn prune_audit_log(&self, before_us: i64) -> Result<u64, MetaError> {
        audit::prune(&self.pool, before_us).await
    }
}

#[async_trait::async_trait]
impl crate::Entities for SqlMeta {
    async fn create_entity(&self, entity: EntityWrite) -> Result<Entity, MetaError> {
        entities::create_entity(&self.pool, entity).await
    }

    async fn entity(
        &self,
        project_id: crate::ProjectId,
        kind: EntityKind,
        id: i64,
    ) -> Result<Option<Entity>, MetaError> {
        entities::entity(&self.pool, project_id, kind, id).await
    }

    async fn entities(
        &self,
        project_id: crate::ProjectId,
        kind: EntityKind,
    ) -> Result<Vec<Entity>, MetaError> {
        entities::entities(&self.pool, project_id, kind).await
    }

    async fn replace_entity(&self, id: i64, entity: EntityWrite) -> Result<Option<Entity>, MetaError> {
        entities::replace_entity(&self.pool, id, entity).await
    }

    async fn delete_entity(
        &self,
        project_id: crate::ProjectId,
        kind: EntityKind,
        id: i64,
    ) -> Result<bool, MetaError> {
        entities::delete_entity(&self.pool, project_id, kind, id).await
    }

    async fn set_cohort_people(
        &self,
        project_id: crate::ProjectId,
        cohort_id: i64,
        people: &[Uuid],
    ) -> Result<(), MetaError> {
        entities::set_cohort_people(&self.pool, self.dialect, project_id, cohort_id, people).await
    }

    async fn cohort_people(
        &self,
        project_id: crate::ProjectId,
        cohort_id: i64,
    ) -> Result<Vec<Uuid>, MetaError> {
        entities::cohort_people(&self.pool, project_id, cohort_id).await
    }

    async fn in_static_cohort(
        &self,
        project_id: crate::ProjectId,
        cohort_id: i64,
        person: Uuid,
    ) -> Result<bool, MetaError> {
        entities::in_static_cohort(&self.pool, project_id, cohort_id, person).await
    }

    async fn event_definitions(&self, team_id: TeamId) -> Result<Vec<EventDefinition>, MetaError> {
        entities::event_definitions(&self.pool, team_id).await
    }

    async fn property_definitions(&self, team_id: TeamId) -> Result<Vec<PropertyDefinition>, MetaError> {
        entities::property_definitions(&self.pool, team_id).await
    }
}

#[async_trait::async_trait]
impl crate::PersonStore for SqlMeta {
    async fn persons_by_distinct_ids(
        &self,
        team_id: TeamId,
        distinct_ids: &[String],
    ) -> Result<crate::PersonLookup, MetaError> {
        persons::persons_by_distinct_ids(&self.pool, self.dialect, team_id, distinct_ids).await
    }

    async fn groups_by_keys(&self, team_id: TeamId, keys: &[(i32, String)]) -> Result<Vec<Group>, MetaError> {
        persons::groups_by_keys(&self.pool, self.dialect, team_id, keys).await
    }

    async fn group_types(&self, team_id: TeamId) -> Result<Vec<GroupType>, MetaError> {
        persons::group_types(&self.pool, team_id).await
    }

    async fn persons(
        &self,
        team_id: TeamId,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Person>, MetaError> {
        persons::persons(&self.pool, team_id, after, limit).await
    }

    async fn search_persons(
        &self,
        team_id: TeamId,
        search: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Person>, MetaError> {
        persons::search_persons(&self.pool, self.dialect, team_id, search, limit, offset).await
    }

    async fn count_persons(&self, team_id: TeamId) -> Result<u64, MetaError> {
        persons::count_persons(&self.pool, team_id).await
    }

    async fn person(&self, team_id: TeamId, uuid: Uuid) -> Result<Option<Person>, MetaError> {
        persons::person(&self.pool, team_id, uuid).await
    }

    async fn existing_persons(&self, team_id: TeamId, uuids: &[Uuid]) -> Result<HashSet<Uuid>, MetaError> {
        persons::existing_persons(&self.pool, self.dialect, team_id, uuids).await
    }

    async fn distinct_ids_of(
        &self,
        team_id: TeamId,
        persons: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<String>>, MetaError> {
        persons::distinct_ids_of(&self.pool, self.dialect, team_id, persons).await
    }

    async fn person_overrides(&self, team_id: TeamId) -> Result<Vec<PersonOverride>, MetaError> {
        persons::person_overrides(&self.pool, team_id).await
    }

    async fn overrides_into(
        &self,
        team_id: TeamId,
        persons: &[Uuid],
    ) -> Result<Vec<PersonOverride>, MetaError> {
        persons::overrides_into(&self.pool, self.dialect, team_id, persons).await
    }

    async fn groups(&self, team_id: TeamId) -> Result<Vec<Group>, MetaError> {
        persons::groups(&self.pool, team_id).await
    }

    async fn ingestion_warnings(
        &self,
        team_id: TeamId,
        limit: u32,
    ) -> Result<Vec<IngestionWarning>, MetaError> {
        persons::ingestion_warnings(&self.pool, team_id, limit).await
    }
}

#[async_trait::async_trait]
impl crate::IngestCommits for SqlMeta {
    async fn commit_ingest(&self, commit: &crate::IngestCommit) -> Result<(), MetaError> {
        persons::commit_ingest(&self.pool, self.dialect, commit).await
    }
}

#[async_trait::async_trait]
impl crate::Recordings for SqlMeta {
    async fn recordings(
        &self,
        team_id: TeamId,
        person: Option<Uuid>,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<RecordingSummary>, MetaError> {
        recordings::recordings(&self.pool, team_id, person, limit, offset).await
    }

    async fn recording_chunks(
        &self,
        team_id: TeamId,
        session_id: &str,
    ) -> Result<Vec<RecordingChunk>, MetaError> {
        recordings::recording_chunks(&self.pool, team_id, session_id).await
    }

    async fn expired_recording_chunks(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<RecordingChunk>, MetaError> {
        recordings::expired_chunks(&self.pool, before_ms, limit).await
    }

    async fn delete_recording_chunks(&self, chunks: &[RecordingChunk]) -> Result<(), MetaError> {
        recordings::delete_chunks(&self.pool, chunks).await
    }
}

#[async_trait::async_trait]
impl ConsumerOffsets for SqlMeta {
    async fn ingest_offsets(&self, consumer: &str) -> Result<HashMap<u32, u64>, PortError> {
        persons::ingest_offsets(&self.pool, consumer).await.map_err(PortError::new)
    }

    async fn commit_offsets(&self, consumer: &str, offsets: &[(u32, u64)]) -> Result<(), PortError> {
        let commit = crate::IngestCommit {
            consumer: consumer.to_string(),
            offsets: offsets.to_vec(),
            ..Default::default()
        };
        persons::commit_ingest(&self.pool, self.dialect, &commit).await.map_err(PortError::new)
    }
}

#[async_trait::async_trait]
impl OperationJournal for SqlMeta {
    async fn read_journal(&self, name: &str) -> Result<Option<serde_json::Value>, PortError> {
        locks::read_journal(&self.pool, name).await.map_err(PortError::new)
    }

    async fn write_journal(&self, name: &str, document: &serde_json::Value) -> Result<(), PortError> {
        locks::write_journal(&self.pool, name, document).await.map_err(PortError::new)
    }
}

#[async_trait::async_trait]
impl MigrationLedger for SqlMeta {
    async fn migration_operations(&self, scope: &str) -> Result<Vec<OperationRecord>, PortError> {
        locks::operations(&self.pool, scope).await.map_err(PortError::new)
    }

    async fn record_operation(
        &self,
        scope: &str,
        version: u32,
        operation: u32,
        state: OperationState,
        error: Option<&str>,
    ) -> Result<(), PortError> {
        locks::record_operation(&self.pool, scope, version, operation, state, error)
            .await
            .map_err(PortError::new)
    }

    async fn acquire_lock(
        &self,
        name: &str,
        holder: &str,
        lease_ms: i64,
    ) -> Result<Result<(), String>, PortError> {
        locks::acquire(&self.pool, name, holder, lease_ms).await.map_err(PortError::new)
    }

    async fn release_lock(&self, name: &str, holder: &str) -> Result<(), PortError> {
        locks::release(&self.pool, name, holder).await.map_err(PortError::new)
    }
}
