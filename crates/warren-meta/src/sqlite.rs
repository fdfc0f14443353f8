//! [`SqliteMeta`]: the embedded meta store.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::keys::{
    generate_api_key, generate_project_token, hash_api_key, mask_api_key, validate_api_key,
    validate_project_token,
};
use crate::{BootstrapRequest, Bootstrapped, MetaError, MetaStore, Project};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The schema version this build migrates SQLite to: its newest migration.
pub static SQLITE_SCHEMA_VERSION: std::sync::LazyLock<i64> =
    std::sync::LazyLock::new(|| MIGRATIONS.iter().map(|migration| migration.version).max().unwrap_or(0));

/// SQLite in WAL mode, with full fsync on commit.
#[derive(Debug, Clone)]
pub struct SqliteMeta {
    pool: SqlitePool,
}

impl SqliteMeta {
    /// Opens (creating if needed) the database at a `sqlite://PATH` URL.
    pub async fn connect(url: &str) -> Result<Self, MetaError> {
        if !url.starts_with("sqlite:") {
            return Err(MetaError::UnsupportedUrl(url.to_string()));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        Ok(Self { pool })
    }
}

fn now_rfc3339() -> String {
    // SQLite has no timestamp type; RFC 3339 text in UTC sorts correctly.
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn project_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Project, sqlx::Error> {
    Ok(Project {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        name: row.try_get("name")?,
        api_token: row.try_get("api_token")?,
    })
}

#[async_trait]
impl MetaStore for SqliteMeta {
    async fn migrate(&self) -> Result<(), MetaError> {
        MIGRATIONS.run(&self.pool).await?;
        Ok(())
    }

    async fn bootstrap(&self, request: BootstrapRequest) -> Result<Option<Bootstrapped>, MetaError> {
        let mut tx = self.pool.begin().await?;
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projects").fetch_one(&mut *tx).await?;
        if existing > 0 {
            // Bootstrap settings only matter to a new deployment.
            return Ok(None);
        }
        let token = request.project_token.unwrap_or_else(generate_project_token);
        validate_project_token(&token)?;
        let api_key = request.api_key.unwrap_or_else(generate_api_key);
        validate_api_key(&api_key)?;
        let created_at = now_rfc3339();
        let organization_id: i64 = sqlx::query_scalar(
            "INSERT INTO organizations (name, created_at) VALUES ('Default organization', ?) RETURNING id",
        )
        .bind(&created_at)
        .fetch_one(&mut *tx)
        .await?;
        let row = sqlx::query(
            "INSERT INTO projects (id, organization_id, name, api_token, created_at)
             VALUES (1, ?, 'Default project', ?, ?)
             RETURNING id, organization_id, name, api_token",
        )
        .bind(organization_id)
        .bind(&token)
        .bind(&created_at)
        .fetch_one(&mut *tx)
        .await?;
        let project = project_from_row(&row)?;
        sqlx::query(
            "INSERT INTO personal_api_keys (organization_id, label, secure_value, mask, created_at)
             VALUES (?, 'bootstrap', ?, ?, ?)",
        )
        .bind(organization_id)
        .bind(hash_api_key(&api_key))
        .bind(mask_api_key(&api_key))
        .bind(&created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Bootstrapped { project, api_key }))
    }

    async fn ping(&self) -> Result<(), MetaError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn project_by_token(&self, token: &str) -> Result<Option<Project>, MetaError> {
        let row =
            sqlx::query("SELECT id, organization_id, name, api_token FROM projects WHERE api_token = ?")
                .bind(token)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.as_ref().map(project_from_row).transpose()?)
    }

    async fn organization_for_api_key(&self, key: &str) -> Result<Option<i64>, MetaError> {
        let organization =
            sqlx::query_scalar("SELECT organization_id FROM personal_api_keys WHERE secure_value = ?")
                .bind(hash_api_key(key))
                .fetch_optional(&self.pool)
                .await?;
        Ok(organization)
    }
}
