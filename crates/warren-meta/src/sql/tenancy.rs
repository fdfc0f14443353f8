//! Organizations, projects and personal API keys.

use sqlx::any::AnyRow;
use sqlx::AnyPool;

use super::dialect::Dialect;
use super::statement::{int, now_rfc3339, text};
use crate::keys::{
    generate_api_key, generate_project_token, hash_api_key, mask_api_key, validate_api_key,
    validate_project_token,
};
use crate::{BootstrapRequest, Bootstrapped, MetaError, Project};

pub(super) const PROJECT_COLUMNS: &str =
    "id, organization_id, name, api_token, timezone, week_start_day, test_account_filters, internal, session_recording_opt_in";

pub(super) fn project_from_row(row: &AnyRow) -> Result<Project, sqlx::Error> {
    Ok(Project {
        id: int(row, "id")?,
        organization_id: int(row, "organization_id")?,
        name: text(row, "name")?,
        api_token: text(row, "api_token")?,
        timezone: text(row, "timezone")?,
        week_start_day: int(row, "week_start_day")? as i32,
        test_account_filters: text(row, "test_account_filters")?,
        internal: int(row, "internal")? != 0,
        session_recording_opt_in: int(row, "session_recording_opt_in")? != 0,
    })
}

pub(super) async fn bootstrap(
    pool: &AnyPool,
    dialect: Dialect,
    request: BootstrapRequest,
) -> Result<Option<Bootstrapped>, MetaError> {
    let mut tx = pool.begin().await?;
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projects").fetch_one(&mut *tx).await?;
    if existing > 0 {
        // Bootstrap settings only matter to a new deployment.
        return Ok(None);
    }
    let token = request.project_token.unwrap_or_else(generate_project_token);
    validate_project_token(&token)?;
    let api_key = request.api_key.unwrap_or_else(generate_api_key);
    validate_api_key(&api_key)?;
    // Every check before the first write: a transaction dropped after a
    // write keeps SQLite's write lock until its connection is next used.
    let timezone = request.timezone.unwrap_or_else(|| "UTC".into());
    super::accounts::check_timezone(&timezone)?;
    let created_at = now_rfc3339();
    let organization_id: i64 = sqlx::query_scalar(
        "INSERT INTO organizations (name, created_at) VALUES ('Default organization', $1) RETURNING id",
    )
    .bind(&created_at)
    .fetch_one(&mut *tx)
    .await?;
    let row = sqlx::query(&format!(
        "INSERT INTO projects (id, organization_id, name, api_token, created_at, timezone)
         VALUES (1, $1, 'Default project', $2, $3, $4)
         RETURNING {PROJECT_COLUMNS}"
    ))
    .bind(organization_id)
    .bind(&token)
    .bind(&created_at)
    .bind(&timezone)
    .fetch_one(&mut *tx)
    .await?;
    if dialect == Dialect::Postgres {
        // Project 1 was given its id; the sequence must not hand it out again.
        sqlx::query("SELECT setval(pg_get_serial_sequence('projects', 'id'), 1)").execute(&mut *tx).await?;
    }
    let project = project_from_row(&row)?;
    sqlx::query(
        "INSERT INTO personal_api_keys (organization_id, label, secure_value, mask, created_at)
         VALUES ($1, 'bootstrap', $2, $3, $4)",
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

pub(super) async fn project_by_token(pool: &AnyPool, token: &str) -> Result<Option<Project>, MetaError> {
    let row = sqlx::query(&format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE api_token = $1"))
        .bind(token)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(project_from_row).transpose()?)
}

pub(super) async fn project(pool: &AnyPool, id: i64) -> Result<Option<Project>, MetaError> {
    let row = sqlx::query(&format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(project_from_row).transpose()?)
}

/// The internal project, created in the deployment's first organization
/// (the one bootstrap made) when there is none yet. A unique index keeps
/// it one: processes starting together all end up with the same.
pub(super) async fn ensure_internal_project(pool: &AnyPool, name: &str) -> Result<Project, MetaError> {
    let select = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE internal = 1");
    if let Some(row) = sqlx::query(&select).fetch_optional(pool).await? {
        return Ok(project_from_row(&row)?);
    }
    let organization_id: Option<i64> =
        sqlx::query_scalar("SELECT MIN(id) FROM organizations").fetch_one(pool).await?;
    let organization_id = organization_id.ok_or(MetaError::Invalid {
        what: "internal project",
        reason: "the deployment has no organization yet; bootstrap it first".into(),
    })?;
    sqlx::query(
        "INSERT INTO projects (organization_id, name, api_token, created_at, internal)
         VALUES ($1, $2, $3, $4, 1) ON CONFLICT DO NOTHING",
    )
    .bind(organization_id)
    .bind(name)
    .bind(generate_project_token())
    .bind(now_rfc3339())
    .execute(pool)
    .await?;
    let row = sqlx::query(&select).fetch_one(pool).await?;
    Ok(project_from_row(&row)?)
}
