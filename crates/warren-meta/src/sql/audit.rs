//! The audit log.

use sqlx::any::AnyRow;
use sqlx::AnyPool;

use super::statement::{int, text};
use crate::audit::{AuditEntry, AuditFilter};
use crate::MetaError;

pub(super) async fn record(pool: &AnyPool, entry: &AuditEntry) -> Result<(), MetaError> {
    sqlx::query(
        "INSERT INTO audit_log (at_us, organization_id, project_id, user_id, api_key_id, actor, credential,
             action, method, route, resource, source, status, outcome)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(entry.at_us)
    .bind(entry.organization_id)
    .bind(entry.project_id)
    .bind(entry.user_id)
    .bind(entry.api_key_id)
    .bind(entry.actor.as_str())
    .bind(entry.credential.as_str())
    .bind(entry.action.as_str())
    .bind(entry.method.as_str())
    .bind(entry.route.as_str())
    .bind(entry.resource.as_deref())
    .bind(entry.source.as_str())
    .bind(i64::from(entry.status))
    .bind(entry.outcome.as_str())
    .execute(pool)
    .await?;
    Ok(())
}

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry, MetaError> {
    Ok(AuditEntry {
        id: int(row, "id")?,
        at_us: int(row, "at_us")?,
        organization_id: sqlx::Row::try_get(row, "organization_id")?,
        project_id: sqlx::Row::try_get(row, "project_id")?,
        user_id: sqlx::Row::try_get(row, "user_id")?,
        api_key_id: sqlx::Row::try_get(row, "api_key_id")?,
        actor: text(row, "actor")?,
        credential: text(row, "credential")?,
        action: text(row, "action")?,
        method: text(row, "method")?,
        route: text(row, "route")?,
        resource: sqlx::Row::try_get(row, "resource")?,
        source: text(row, "source")?,
        status: u16::try_from(int(row, "status")?)
            .map_err(|e| MetaError::Corrupt { what: "audit status", reason: e.to_string() })?,
        outcome: text(row, "outcome")?,
    })
}

pub(super) async fn list(
    pool: &AnyPool,
    organization_id: i64,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, MetaError> {
    // Unset filters bind NULL and match everything, so one statement serves
    // every combination.
    let rows = sqlx::query(
        "SELECT id, at_us, organization_id, project_id, user_id, api_key_id, actor, credential, action, method,
                route, resource, source, status, outcome
         FROM audit_log
         WHERE organization_id = $1
           AND ($2 IS NULL OR user_id = $2)
           AND ($3 IS NULL OR action = $3)
           AND ($4 IS NULL OR outcome = $4)
           AND ($5 IS NULL OR at_us >= $5)
           AND ($6 IS NULL OR at_us < $6)
           AND ($7 IS NULL OR id < $7)
         ORDER BY id DESC LIMIT $8",
    )
    .bind(organization_id)
    .bind(filter.user_id)
    .bind(filter.action.as_deref())
    .bind(filter.outcome.as_deref())
    .bind(filter.since_us)
    .bind(filter.until_us)
    .bind(filter.before_id)
    .bind(i64::from(filter.limit.clamp(1, 1000)))
    .fetch_all(pool)
    .await?;
    rows.iter().map(entry_from_row).collect()
}

pub(super) async fn prune(pool: &AnyPool, before_us: i64) -> Result<u64, MetaError> {
    let done = sqlx::query("DELETE FROM audit_log WHERE at_us < $1").bind(before_us).execute(pool).await?;
    Ok(done.rows_affected())
}
