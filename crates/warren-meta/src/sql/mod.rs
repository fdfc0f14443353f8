//! [`SqlMeta`]: the meta store on SQLite or PostgreSQL through sqlx's `Any`
//! driver. The SQL is written once, in the subset both dialects share
//! (numbered `$n` parameters, `ON CONFLICT … DO UPDATE`, text for uuids and
//! JSON, 64-bit integers for times), so the two adapters cannot drift apart.

mod persons;
mod tenancy;

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

use uuid::Uuid;
use warren_core::person::{Group, GroupType, IngestionWarning, Person, PersonOverride, TeamId};

use crate::MetaError;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database a [`SqlMeta`] talks to, picked from the URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn from_url(url: &str) -> Result<Self, MetaError> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Dialect::Postgres)
        } else {
            Err(MetaError::UnsupportedUrl(url.to_string()))
        }
    }

    fn migrations(self) -> &'static Migrator {
        match self {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// The schema version this build migrates the dialect to: its newest
    /// migration.
    pub fn schema_version(self) -> i64 {
        static VERSIONS: LazyLock<[i64; 2]> = LazyLock::new(|| {
            let newest = |m: &Migrator| m.iter().map(|migration| migration.version).max().unwrap_or(0);
            [newest(&SQLITE_MIGRATIONS), newest(&POSTGRES_MIGRATIONS)]
        });
        VERSIONS[self as usize]
    }

    /// Most bound parameters one statement may carry; SQLite's limit is
    /// the lower.
    const fn max_parameters(self) -> usize {
        match self {
            Dialect::Sqlite => 32_000,
            Dialect::Postgres => 65_000,
        }
    }
}

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

    pub(crate) async fn run_migrations(&self) -> Result<(), MetaError> {
        self.dialect.migrations().run(&self.pool).await?;
        Ok(())
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

/// `$from, $from+1, …` for `count` parameters.
fn placeholders(from: usize, count: usize) -> String {
    (from..from + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// Rows of `width` parameters each: `($1, $2), ($3, $4), …`.
fn value_rows(width: usize, rows: usize) -> String {
    (0..rows).map(|row| format!("({})", placeholders(1 + row * width, width))).collect::<Vec<_>>().join(", ")
}

fn text(row: &AnyRow, column: &str) -> Result<String, sqlx::Error> {
    sqlx::Row::try_get::<String, _>(row, column)
}

fn int(row: &AnyRow, column: &str) -> Result<i64, sqlx::Error> {
    sqlx::Row::try_get::<i64, _>(row, column)
}

#[async_trait::async_trait]
impl crate::MetaStore for SqlMeta {
    async fn migrate(&self) -> Result<(), MetaError> {
        self.run_migrations().await
    }

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

    async fn ping(&self) -> Result<(), MetaError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn organization_for_api_key(&self, key: &str) -> Result<Option<i64>, MetaError> {
        tenancy::organization_for_api_key(&self.pool, key).await
    }

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

    async fn commit_ingest(&self, commit: &crate::IngestCommit) -> Result<(), MetaError> {
        persons::commit_ingest(&self.pool, self.dialect, commit).await
    }

    async fn ingest_offsets(&self, consumer: &str) -> Result<HashMap<u32, u64>, MetaError> {
        persons::ingest_offsets(&self.pool, consumer).await
    }

    async fn persons(
        &self,
        team_id: TeamId,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Person>, MetaError> {
        persons::persons(&self.pool, team_id, after, limit).await
    }

    async fn distinct_ids_of(&self, team_id: TeamId, person: Uuid) -> Result<Vec<String>, MetaError> {
        persons::distinct_ids_of(&self.pool, team_id, person).await
    }

    async fn person_overrides(&self, team_id: TeamId) -> Result<Vec<PersonOverride>, MetaError> {
        persons::person_overrides(&self.pool, team_id).await
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
