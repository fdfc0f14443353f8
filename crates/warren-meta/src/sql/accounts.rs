//! Users, organizations, memberships, projects, login sessions and
//! personal API keys.

use sqlx::any::AnyRow;
use sqlx::AnyPool;

use super::statement::{int, now_rfc3339, text};
use super::tenancy::{project_from_row, PROJECT_COLUMNS};
use crate::accounts::{
    validate_name, ApiKey, CreatedApiKey, Member, Membership, NewApiKey, NewProject, NewUser, Organization,
    ProjectUpdate, Role, User,
};
use crate::keys::{
    generate_api_key, generate_project_token, generate_session_token, hash_api_key, hash_password,
    mask_api_key, normalize_email, validate_password, verify_password,
};
use crate::{MetaError, Project, ProjectId};

const USER_COLUMNS: &str = "u.id, u.email, u.name, u.created_at";

fn user_from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: int(row, "id")?,
        email: text(row, "email")?,
        name: text(row, "name")?,
        created_at: text(row, "created_at")?,
    })
}

fn organization_from_row(row: &AnyRow) -> Result<Organization, sqlx::Error> {
    Ok(Organization { id: int(row, "id")?, name: text(row, "name")?, created_at: text(row, "created_at")? })
}

pub(super) fn check_timezone(timezone: &str) -> Result<(), MetaError> {
    if timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(MetaError::Invalid {
            what: "time zone",
            reason: format!("{timezone:?} is not an IANA time zone"),
        });
    }
    Ok(())
}

/// Password hashing takes tens of milliseconds of CPU and about 19 MiB:
/// off the async workers, and two at a time, so a flood of log ins queues
/// instead of taking every core and gigabytes of memory.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, MetaError> {
    static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|e| MetaError::Invalid { what: "password", reason: format!("hashing unavailable: {e}") })?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| MetaError::Invalid { what: "password", reason: format!("hashing failed: {e}") })
}

pub(super) async fn create_user(pool: &AnyPool, user: NewUser) -> Result<User, MetaError> {
    let email = normalize_email(&user.email)?;
    let name = validate_name("user name", &user.name)?;
    validate_password(&user.password)?;
    let hash = blocking(move || hash_password(&user.password)).await??;
    let row = sqlx::query(
        "INSERT INTO users (email, name, password_hash, created_at) VALUES ($1, $2, $3, $4)
         RETURNING id, email, name, created_at",
    )
    .bind(&email)
    .bind(&name)
    .bind(&hash)
    .bind(now_rfc3339())
    .fetch_one(pool)
    .await
    .map_err(|e| MetaError::conflict_or(e, "user", format!("{email} already has an account")))?;
    Ok(user_from_row(&row)?)
}

pub(super) async fn verify_login(
    pool: &AnyPool,
    email: &str,
    password: &str,
) -> Result<Option<User>, MetaError> {
    let Ok(email) = normalize_email(email) else { return Ok(None) };
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.email = $1"))
        .bind(&email)
        .fetch_optional(pool)
        .await?;
    // An unknown email costs the same hashing as a wrong password, so the
    // answer's timing does not tell which emails have accounts.
    const NO_USER_HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$QkFJbXKS1xPUJGUmZoKCYxhHQQr9T0JRsiY/1DBb3Qk";
    let hash = match &row {
        Some(row) => text(row, "password_hash")?,
        None => NO_USER_HASH.to_string(),
    };
    let password = password.to_string();
    let matches = blocking(move || verify_password(&password, &hash)).await?;
    match row {
        Some(row) if matches => Ok(Some(user_from_row(&row)?)),
        _ => Ok(None),
    }
}

pub(super) async fn user(pool: &AnyPool, id: i64) -> Result<Option<User>, MetaError> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

pub(super) async fn set_password(pool: &AnyPool, user_id: i64, password: &str) -> Result<(), MetaError> {
    validate_password(password)?;
    let password = password.to_string();
    let hash = blocking(move || hash_password(&password)).await??;
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(user_id)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM login_sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn user_by_email(pool: &AnyPool, email: &str) -> Result<Option<User>, MetaError> {
    let Ok(email) = normalize_email(email) else { return Ok(None) };
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users u WHERE u.email = $1"))
        .bind(email)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

pub(super) async fn create_organization(
    pool: &AnyPool,
    name: &str,
    owner: i64,
) -> Result<Organization, MetaError> {
    let name = validate_name("organization name", name)?;
    let now = now_rfc3339();
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "INSERT INTO organizations (name, created_at) VALUES ($1, $2) RETURNING id, name, created_at",
    )
    .bind(&name)
    .bind(&now)
    .fetch_one(&mut *tx)
    .await?;
    let organization = organization_from_row(&row)?;
    sqlx::query(
        "INSERT INTO memberships (organization_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(organization.id)
    .bind(owner)
    .bind(Role::Owner.as_str())
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(organization)
}

pub(super) async fn organization(pool: &AnyPool, id: i64) -> Result<Option<Organization>, MetaError> {
    let row = sqlx::query("SELECT id, name, created_at FROM organizations WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(organization_from_row).transpose()?)
}

pub(super) async fn any_organization(pool: &AnyPool) -> Result<bool, MetaError> {
    let row = sqlx::query("SELECT id FROM organizations LIMIT 1").fetch_optional(pool).await?;
    Ok(row.is_some())
}

pub(super) async fn memberships(pool: &AnyPool, user_id: i64) -> Result<Vec<Membership>, MetaError> {
    let rows = sqlx::query(
        "SELECT o.id, o.name, o.created_at, m.role FROM memberships m
         JOIN organizations o ON o.id = m.organization_id WHERE m.user_id = $1 ORDER BY o.id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Membership {
                organization: organization_from_row(row)?,
                role: Role::parse(&text(row, "role")?)?,
            })
        })
        .collect()
}

pub(super) async fn role(
    pool: &AnyPool,
    organization_id: i64,
    user_id: i64,
) -> Result<Option<Role>, MetaError> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE organization_id = $1 AND user_id = $2")
            .bind(organization_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    role.as_deref().map(Role::parse).transpose()
}

pub(super) async fn members(pool: &AnyPool, organization_id: i64) -> Result<Vec<Member>, MetaError> {
    let rows = sqlx::query(&format!(
        "SELECT {USER_COLUMNS}, m.role FROM memberships m JOIN users u ON u.id = m.user_id
         WHERE m.organization_id = $1 ORDER BY u.id"
    ))
    .bind(organization_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| Ok(Member { user: user_from_row(row)?, role: Role::parse(&text(row, "role")?)? }))
        .collect()
}

pub(super) async fn set_role(
    pool: &AnyPool,
    organization_id: i64,
    user_id: i64,
    role: Option<Role>,
) -> Result<(), MetaError> {
    let mut tx = pool.begin().await?;
    // Writing the organization's row first serializes role changes of one
    // organization (a row lock in PostgreSQL, the write lock in SQLite), so
    // two owners demoting each other cannot both see another owner left.
    sqlx::query("UPDATE organizations SET name = name WHERE id = $1")
        .bind(organization_id)
        .execute(&mut *tx)
        .await?;
    match role {
        Some(role) => {
            sqlx::query(
                "INSERT INTO memberships (organization_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (organization_id, user_id) DO UPDATE SET role = excluded.role",
            )
            .bind(organization_id)
            .bind(user_id)
            .bind(role.as_str())
            .bind(now_rfc3339())
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM memberships WHERE organization_id = $1 AND user_id = $2")
                .bind(organization_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
    }
    let owners: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE organization_id = $1 AND role = 'owner'")
            .bind(organization_id)
            .fetch_one(&mut *tx)
            .await?;
    if owners == 0 {
        // Dropping the transaction rolls the change back.
        return Err(MetaError::Invalid {
            what: "membership",
            reason: "an organization keeps at least one owner".into(),
        });
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn create_project(pool: &AnyPool, project: NewProject) -> Result<Project, MetaError> {
    let name = validate_name("project name", &project.name)?;
    let timezone = project.timezone.unwrap_or_else(|| "UTC".into());
    check_timezone(&timezone)?;
    let row = sqlx::query(&format!(
        "INSERT INTO projects (organization_id, name, api_token, created_at, timezone)
         VALUES ($1, $2, $3, $4, $5) RETURNING {PROJECT_COLUMNS}"
    ))
    .bind(project.organization_id)
    .bind(&name)
    .bind(generate_project_token())
    .bind(now_rfc3339())
    .bind(&timezone)
    .fetch_one(pool)
    .await?;
    Ok(project_from_row(&row)?)
}

pub(super) async fn projects(pool: &AnyPool, organization_id: i64) -> Result<Vec<Project>, MetaError> {
    let rows = sqlx::query(&format!(
        "SELECT {PROJECT_COLUMNS} FROM projects WHERE organization_id = $1 ORDER BY id"
    ))
    .bind(organization_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(project_from_row).collect::<Result<_, _>>()?)
}

pub(super) async fn update_project(
    pool: &AnyPool,
    id: ProjectId,
    update: ProjectUpdate,
) -> Result<Option<Project>, MetaError> {
    let name = update.name.as_deref().map(|name| validate_name("project name", name)).transpose()?;
    if let Some(timezone) = &update.timezone {
        check_timezone(timezone)?;
    }
    if let Some(day) = update.week_start_day {
        if !(0..=1).contains(&day) {
            return Err(MetaError::Invalid {
                what: "week start day",
                reason: "0 (Sunday) or 1 (Monday)".into(),
            });
        }
    }
    let row = sqlx::query(&format!(
        "UPDATE projects SET name = COALESCE($2, name), timezone = COALESCE($3, timezone),
             week_start_day = COALESCE($4, week_start_day),
             test_account_filters = COALESCE($5, test_account_filters),
             session_recording_opt_in = COALESCE($6, session_recording_opt_in)
         WHERE id = $1 RETURNING {PROJECT_COLUMNS}"
    ))
    .bind(id)
    .bind(name)
    .bind(update.timezone)
    .bind(update.week_start_day.map(i64::from))
    .bind(update.test_account_filters)
    .bind(update.session_recording_opt_in.map(i64::from))
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(project_from_row).transpose()?)
}

pub(super) async fn create_login_session(
    pool: &AnyPool,
    user_id: i64,
    now_us: i64,
    ttl_us: i64,
) -> Result<String, MetaError> {
    let token = generate_session_token();
    sqlx::query("INSERT INTO login_sessions (secure_value, user_id, created_at_us, expires_at_us) VALUES ($1, $2, $3, $4)")
        .bind(hash_api_key(&token))
        .bind(user_id)
        .bind(now_us)
        .bind(now_us.saturating_add(ttl_us))
        .execute(pool)
        .await?;
    // Expired sessions are swept here rather than by a job: logins are rare.
    sqlx::query("DELETE FROM login_sessions WHERE expires_at_us < $1").bind(now_us).execute(pool).await?;
    Ok(token)
}

pub(super) async fn user_for_session(
    pool: &AnyPool,
    token: &str,
    now_us: i64,
) -> Result<Option<User>, MetaError> {
    let row = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM login_sessions s JOIN users u ON u.id = s.user_id
         WHERE s.secure_value = $1 AND s.expires_at_us > $2"
    ))
    .bind(hash_api_key(token))
    .bind(now_us)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(user_from_row).transpose()?)
}

pub(super) async fn delete_login_session(pool: &AnyPool, token: &str) -> Result<(), MetaError> {
    sqlx::query("DELETE FROM login_sessions WHERE secure_value = $1")
        .bind(hash_api_key(token))
        .execute(pool)
        .await?;
    Ok(())
}

const KEY_COLUMNS: &str =
    "id, organization_id, user_id, label, mask, scopes, project_ids, created_at, revoked_at, last_used_at";

fn json_list<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> Result<Vec<T>, MetaError> {
    let value = text(row, column)?;
    serde_json::from_str(&value)
        .map_err(|e| MetaError::Corrupt { what: "API key", reason: format!("{column}: {e}") })
}

fn key_from_row(row: &AnyRow) -> Result<ApiKey, MetaError> {
    Ok(ApiKey {
        id: int(row, "id")?,
        organization_id: int(row, "organization_id")?,
        user_id: sqlx::Row::try_get(row, "user_id")?,
        label: text(row, "label")?,
        mask: text(row, "mask")?,
        scopes: json_list(row, "scopes")?,
        project_ids: json_list(row, "project_ids")?,
        created_at: text(row, "created_at")?,
        revoked_at: sqlx::Row::try_get(row, "revoked_at")?,
        last_used_at: sqlx::Row::try_get(row, "last_used_at")?,
    })
}

pub(super) async fn create_api_key(pool: &AnyPool, key: NewApiKey) -> Result<CreatedApiKey, MetaError> {
    let label = validate_name("API key label", &key.label)?;
    let secret = generate_api_key();
    let row = sqlx::query(&format!(
        "INSERT INTO personal_api_keys (organization_id, user_id, label, secure_value, mask, scopes, project_ids, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {KEY_COLUMNS}"
    ))
    .bind(key.organization_id)
    .bind(key.user_id)
    .bind(&label)
    .bind(hash_api_key(&secret))
    .bind(mask_api_key(&secret))
    .bind(serde_json::Value::from(key.scopes).to_string())
    .bind(serde_json::Value::from(key.project_ids).to_string())
    .bind(now_rfc3339())
    .fetch_one(pool)
    .await?;
    Ok(CreatedApiKey { key: key_from_row(&row)?, secret })
}

pub(super) async fn api_keys(pool: &AnyPool, organization_id: i64) -> Result<Vec<ApiKey>, MetaError> {
    let rows = sqlx::query(&format!(
        "SELECT {KEY_COLUMNS} FROM personal_api_keys WHERE organization_id = $1 ORDER BY id"
    ))
    .bind(organization_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(key_from_row).collect()
}

pub(super) async fn revoke_api_key(pool: &AnyPool, organization_id: i64, id: i64) -> Result<bool, MetaError> {
    let done = sqlx::query(
        "UPDATE personal_api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE organization_id = $1 AND id = $2",
    )
    .bind(organization_id)
    .bind(id)
    .bind(now_rfc3339())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn api_key_by_secret(pool: &AnyPool, secret: &str) -> Result<Option<ApiKey>, MetaError> {
    let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM personal_api_keys WHERE secure_value = $1"))
        .bind(hash_api_key(secret))
        .fetch_optional(pool)
        .await?;
    let Some(key) = row.as_ref().map(key_from_row).transpose()? else { return Ok(None) };
    // Last use is kept to the minute: a write per request would make every
    // read a write.
    let now = chrono::Utc::now();
    let stale = (now - chrono::Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if key.revoked_at.is_none() && key.last_used_at.as_deref().is_none_or(|used| used < stale.as_str()) {
        sqlx::query("UPDATE personal_api_keys SET last_used_at = $2 WHERE id = $1")
            .bind(key.id)
            .bind(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .execute(pool)
            .await?;
    }
    Ok(Some(key))
}
