//! Snapshots of the meta store as one SQLite file, whichever engine holds
//! it, so every backup carries the same kind of file and reads it with
//! the same code.
//!
//! SQLite copies itself (`VACUUM INTO`: one read transaction, writers carry
//! on). PostgreSQL is copied table by table inside one `REPEATABLE READ,
//! READ ONLY` transaction — every table as of the same moment, writers
//! carrying on — into a new SQLite store of this build's schema; its
//! sequences go along where SQLite keeps one (tables with AUTOINCREMENT:
//! entities and the audit log, whose deleted ids must stay unused).
//! Both engines share table and column names and hold only integers and
//! text, which is what makes the copy a plain one.

use futures_util::TryStreamExt;
use sqlx::{AnyPool, Row};

use super::{Dialect, SqlMeta};
use crate::{MetaError, MetaSchema, MigrationState};

pub(super) async fn sqlite(pool: &AnyPool, path: &std::path::Path) -> Result<(), MetaError> {
    sqlx::query("VACUUM INTO ?").bind(utf8(path)?.to_string()).execute(pool).await?;
    Ok(())
}

pub(super) async fn postgres(source: &SqlMeta, path: &std::path::Path) -> Result<(), MetaError> {
    let behind: Vec<_> = source
        .migration_status()
        .await?
        .into_iter()
        .filter(|status| status.state != MigrationState::Applied)
        .map(|status| status.version)
        .collect();
    if !behind.is_empty() {
        return Err(MetaError::Invalid {
            what: "meta store",
            reason: format!("migrations {behind:?} are not applied: run `warren migrate up` first"),
        });
    }
    if path.exists() {
        return Err(MetaError::Invalid {
            what: "snapshot path",
            reason: format!("{} exists", path.display()),
        });
    }
    let copied = copy_into(source, path).await;
    if copied.is_err() {
        let _ = std::fs::remove_file(path);
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    copied
}

async fn copy_into(source: &SqlMeta, path: &std::path::Path) -> Result<(), MetaError> {
    let target = SqlMeta::connect(&format!("sqlite://{}", utf8(path)?)).await?;
    debug_assert_eq!(target.dialect, Dialect::Sqlite);
    target.migrate().await?;
    let mut connection = target.pool.acquire().await?;
    // Tables are filled in any order: references hold once all are.
    sqlx::query("PRAGMA foreign_keys = OFF").execute(&mut *connection).await?;
    let tables: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' ORDER BY rowid",
    )
    .fetch_all(&mut *connection)
    .await?
    .iter()
    .map(|row| row.try_get::<String, _>(0))
    .collect::<Result<_, _>>()?;

    let mut reader = source.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *reader).await?;
    let mut writer = sqlx::Connection::begin(&mut *connection).await?;
    for table in &tables {
        let columns: Vec<(String, bool)> = sqlx::query("SELECT name, type FROM pragma_table_info($1)")
            .bind(table.clone())
            .fetch_all(&mut *writer)
            .await?
            .iter()
            // SQLite's rule for integer affinity: the declared type names INT.
            .map(|row| {
                Ok((
                    row.try_get::<String, _>(0)?,
                    row.try_get::<String, _>(1)?.to_uppercase().contains("INT"),
                ))
            })
            .collect::<Result<_, sqlx::Error>>()?;
        let select = columns
            .iter()
            .map(|(name, integer)| {
                format!("CAST(\"{name}\" AS {}) AS \"{name}\"", if *integer { "BIGINT" } else { "TEXT" })
            })
            .collect::<Vec<_>>()
            .join(", ");
        let names = columns.iter().map(|(name, _)| format!("\"{name}\"")).collect::<Vec<_>>().join(", ");
        let marks = (1..=columns.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let insert = format!("INSERT INTO \"{table}\" ({names}) VALUES ({marks})");
        // Tables the migrations fill (the internal project's settings,
        // say) are replaced by the source's rows.
        sqlx::query(&format!("DELETE FROM \"{table}\"")).execute(&mut *writer).await?;
        let query = format!("SELECT {select} FROM \"{table}\"");
        let mut rows = sqlx::query(&query).fetch(&mut *reader);
        // Rows stream from one connection into the other.
        while let Some(row) = rows.try_next().await? {
            let mut statement = sqlx::query(&insert);
            for (i, (_, integer)) in columns.iter().enumerate() {
                statement = if *integer {
                    statement.bind(row.try_get::<Option<i64>, _>(i)?)
                } else {
                    statement.bind(row.try_get::<Option<String>, _>(i)?)
                };
            }
            statement.execute(&mut *writer).await?;
        }
    }
    // Where each sequence stands: ids of deleted rows are not handed out again.
    let sequences = sqlx::query(
        "SELECT CAST(sequencename AS TEXT), CAST(last_value AS BIGINT) FROM pg_sequences \
         WHERE schemaname = current_schema() AND last_value IS NOT NULL",
    )
    .fetch_all(&mut *reader)
    .await?;
    for row in sequences {
        let (sequence, last): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
        let Some(table) = sequence.strip_suffix("_id_seq") else { continue };
        sqlx::query("UPDATE sqlite_sequence SET seq = MAX(seq, $1) WHERE name = $2")
            .bind(last)
            .bind(table.to_string())
            .execute(&mut *writer)
            .await?;
        // A table whose every row was deleted has no entry yet.
        sqlx::query(
            "INSERT INTO sqlite_sequence (name, seq) SELECT $2, $1 \
             WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = $2) \
             AND EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $2 AND sql LIKE '%AUTOINCREMENT%')",
        )
        .bind(last)
        .bind(table.to_string())
        .execute(&mut *writer)
        .await?;
    }
    reader.rollback().await?;
    writer.commit().await?;
    // Back to the pool before it closes, which waits for every connection.
    drop(connection);
    target.close().await;
    Ok(())
}

fn utf8(path: &std::path::Path) -> Result<&str, MetaError> {
    path.to_str().ok_or_else(|| MetaError::Invalid {
        what: "snapshot path",
        reason: format!("{} is not UTF-8", path.display()),
    })
}
