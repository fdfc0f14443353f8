//! Other stores' migration state: operations and the locks that keep one
//! runner at a time; and the journals of long operations.

use sqlx::AnyPool;
use warren_core::ports::{OperationRecord, OperationState};

use super::statement::{int, text};
use crate::MetaError;

pub(super) async fn operations(pool: &AnyPool, scope: &str) -> Result<Vec<OperationRecord>, MetaError> {
    let rows = sqlx::query(
        "SELECT version, operation, state, error, updated_at_ms FROM store_migration_operations
         WHERE scope = $1 ORDER BY version, operation",
    )
    .bind(scope)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let state = text(row, "state")?;
            let number = |column: &str| -> Result<u32, MetaError> {
                u32::try_from(int(row, column)?)
                    .map_err(|e| MetaError::Corrupt { what: "migration operation", reason: e.to_string() })
            };
            Ok(OperationRecord {
                version: number("version")?,
                operation: number("operation")?,
                state: OperationState::parse(&state)
                    .ok_or(MetaError::Corrupt { what: "migration operation state", reason: state })?,
                error: sqlx::Row::try_get(row, "error")?,
                updated_at_ms: int(row, "updated_at_ms")?,
            })
        })
        .collect()
}

pub(super) async fn record_operation(
    pool: &AnyPool,
    scope: &str,
    version: u32,
    operation: u32,
    state: OperationState,
    error: Option<&str>,
) -> Result<(), MetaError> {
    sqlx::query(
        "INSERT INTO store_migration_operations (scope, version, operation, state, error, updated_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (scope, version, operation) DO UPDATE
         SET state = excluded.state, error = excluded.error, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(scope)
    .bind(i64::from(version))
    .bind(i64::from(operation))
    .bind(state.as_str())
    .bind(error)
    .bind(warren_core::unix_millis())
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn acquire(
    pool: &AnyPool,
    name: &str,
    holder: &str,
    lease_ms: i64,
) -> Result<Result<(), String>, MetaError> {
    let now = warren_core::unix_millis();
    // One statement, so two runners racing cannot both win.
    sqlx::query(
        "INSERT INTO store_locks (name, holder, expires_at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms
         WHERE store_locks.holder = excluded.holder OR store_locks.expires_at_ms < $4",
    )
    .bind(name)
    .bind(holder)
    .bind(now.saturating_add(lease_ms.max(1)))
    .bind(now)
    .execute(pool)
    .await?;
    let row = sqlx::query("SELECT holder, expires_at_ms FROM store_locks WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await?;
    let (owner, expires) = (text(&row, "holder")?, int(&row, "expires_at_ms")?);
    if owner == holder {
        Ok(Ok(()))
    } else {
        Ok(Err(format!("{owner} (its lease runs out in {} s)", (expires - now).max(0) / 1000)))
    }
}

pub(super) async fn release(pool: &AnyPool, name: &str, holder: &str) -> Result<(), MetaError> {
    sqlx::query("DELETE FROM store_locks WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn read_journal(pool: &AnyPool, name: &str) -> Result<Option<serde_json::Value>, MetaError> {
    let row = sqlx::query("SELECT document FROM operation_journals WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let document = text(&row, "document")?;
    serde_json::from_str(&document)
        .map(Some)
        .map_err(|e| MetaError::Corrupt { what: "operation journal", reason: e.to_string() })
}

pub(super) async fn write_journal(
    pool: &AnyPool,
    name: &str,
    document: &serde_json::Value,
) -> Result<(), MetaError> {
    sqlx::query(
        "INSERT INTO operation_journals (name, document, updated_at_ms) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET document = excluded.document, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(name)
    .bind(document.to_string())
    .bind(warren_core::unix_millis())
    .execute(pool)
    .await?;
    Ok(())
}
