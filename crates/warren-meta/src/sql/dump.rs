//! [`dump_sqlite`] and [`load_sqlite`]: a SQLite meta store as a stream of
//! rows, one JSON line each, and back into an equal database.
//!
//! Backups keep the meta store this way rather than as the database file:
//! a file's index pages change all over when rows with random keys (person
//! ids) are added, while a dump lists each table's rows in insertion order
//! and leaves indexes to be rebuilt, so one day's new persons change only
//! the end of the stream — what content-defined chunks then copy. The dump
//! holds the source's own schema statements (and sqlx's migration
//! bookkeeping among its tables), so it loads whichever build wrote it.
//!
//! ```text
//! {"format":"warren-meta-dump","version":1}
//! {"create":"CREATE TABLE …"}                       every table, in the order they were made
//! {"table":"persons","columns":[…],"blob":[…]}     then per table: its columns,
//! [1,"0190…",…]                                     its rows in insertion (rowid) order,
//! {"rows":20000}                                    and their count
//! {"create":"CREATE INDEX …"}                       indexes and triggers, built after the rows
//! {"end":123456}                                    rows in all: a dump cut short never loads
//! ```

use std::io::{BufRead, Write};

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::SqlMeta;
use crate::MetaError;

const FORMAT: &str = "warren-meta-dump";
const VERSION: u32 = 1;
/// Rows handed to SQLite per statement when loading.
const LOAD_BATCH_BYTES: usize = 1024 * 1024;

/// What a dump holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpCounts {
    pub tables: u64,
    pub rows: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Header { format: String, version: u32 },
    Create { create: String },
    Table { table: String, columns: Vec<String>, blob: Vec<bool> },
    Rows { rows: u64 },
    End { end: u64 },
}

fn invalid(reason: String) -> MetaError {
    MetaError::Invalid { what: "meta store dump", reason }
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Writes the SQLite database `db` (not in use by anyone else) to `out`.
pub async fn dump_sqlite(db: &std::path::Path, out: &mut impl Write) -> Result<DumpCounts, MetaError> {
    let source = SqlMeta::connect(&format!("sqlite://{}", db.display())).await?;
    let dumped = dump_into(&source, out).await;
    source.close().await;
    dumped
}

async fn dump_into(source: &SqlMeta, out: &mut impl Write) -> Result<DumpCounts, MetaError> {
    write(out, &Line::Header { format: FORMAT.into(), version: VERSION })?;
    let objects = sqlx::query(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
    )
    .fetch_all(&source.pool)
    .await?;
    let mut tables = Vec::new();
    let mut later = Vec::new();
    for object in &objects {
        let (kind, name, sql): (String, String, String) =
            (object.try_get(0)?, object.try_get(1)?, object.try_get(2)?);
        if kind == "table" {
            write(out, &Line::Create { create: sql })?;
            tables.push(name);
        } else {
            later.push(sql);
        }
    }
    let has_sequences: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'")
            .fetch_one(&source.pool)
            .await?;
    if has_sequences > 0 {
        tables.push("sqlite_sequence".into());
    }
    let mut counts = DumpCounts::default();
    for table in &tables {
        let columns = sqlx::query("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
            .bind(table.clone())
            .fetch_all(&source.pool)
            .await?;
        let mut names = Vec::new();
        let mut blob = Vec::new();
        for column in &columns {
            names.push(column.try_get::<String, _>(0)?);
            blob.push(column.try_get::<String, _>(1)?.eq_ignore_ascii_case("BLOB"));
        }
        let values: Vec<String> = names
            .iter()
            .zip(&blob)
            .map(|(name, blob)| if *blob { format!("hex({})", quoted(name)) } else { quoted(name) })
            .collect();
        write(out, &Line::Table { table: table.clone(), columns: names, blob })?;
        let query = format!("SELECT json_array({}) FROM {} ORDER BY rowid", values.join(", "), quoted(table));
        let mut rows = sqlx::query_scalar::<_, String>(&query).fetch(&source.pool);
        let mut count = 0;
        while let Some(row) = rows.try_next().await? {
            write_row(out, &row)?;
            count += 1;
        }
        drop(rows);
        write(out, &Line::Rows { rows: count })?;
        counts.tables += 1;
        counts.rows += count;
    }
    for sql in later {
        write(out, &Line::Create { create: sql })?;
    }
    write(out, &Line::End { end: counts.rows })?;
    Ok(counts)
}

fn write(out: &mut impl Write, line: &Line) -> Result<(), MetaError> {
    serde_json::to_writer(&mut *out, line).map_err(|e| invalid(e.to_string()))?;
    write_row(out, "")
}

fn write_row(out: &mut impl Write, text: &str) -> Result<(), MetaError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|e| invalid(format!("writing: {e}")))
}

/// Builds the new SQLite database `db` from the dump `input`, checking
/// every table's row count and that the dump is whole.
pub async fn load_sqlite(input: impl BufRead, db: &std::path::Path) -> Result<DumpCounts, MetaError> {
    if db.exists() {
        return Err(MetaError::Invalid { what: "meta store", reason: format!("{} exists", db.display()) });
    }
    let target = SqlMeta::connect(&format!("sqlite://{}", db.display())).await?;
    let loaded = load_into(input, &target).await;
    target.close().await;
    loaded
}

/// A table being loaded: its insert and the rows waiting for it.
struct Loading {
    insert: String,
    pending: String,
    pending_rows: u64,
    rows: u64,
}

async fn load_into(input: impl BufRead, target: &SqlMeta) -> Result<DumpCounts, MetaError> {
    let mut connection = target.pool.acquire().await?;
    // Tables are filled before anything checks references between them.
    sqlx::query("PRAGMA foreign_keys = OFF").execute(&mut *connection).await?;
    let mut tx = sqlx::Connection::begin(&mut *connection).await?;
    let mut lines = input.lines();
    let header = lines.next().transpose().map_err(|e| invalid(format!("reading: {e}")))?.unwrap_or_default();
    match serde_json::from_str(&header) {
        Ok(Line::Header { format, version }) if format == FORMAT && version == VERSION => {}
        _ => return Err(invalid(format!("not a {FORMAT} of version {VERSION}"))),
    }
    let mut counts = DumpCounts::default();
    let mut table: Option<Loading> = None;
    for line in lines {
        let line = line.map_err(|e| invalid(format!("reading: {e}")))?;
        if let Some(loading) = table.as_mut().filter(|_| line.starts_with('[')) {
            loading.pending.push(if loading.pending.is_empty() { '[' } else { ',' });
            loading.pending.push_str(&line);
            loading.pending_rows += 1;
            if loading.pending.len() >= LOAD_BATCH_BYTES {
                flush(loading, &mut tx).await?;
            }
            continue;
        }
        let parsed: Line =
            serde_json::from_str(&line).map_err(|e| invalid(format!("an unreadable line: {e}")))?;
        match parsed {
            Line::Create { create } => {
                sqlx::query(&create).execute(&mut *tx).await?;
            }
            Line::Table { table: name, columns, blob } => {
                if table.is_some() || columns.len() != blob.len() {
                    return Err(invalid(format!(
                        "table {name} starts inside another or has mismatched columns"
                    )));
                }
                let values: Vec<String> = blob
                    .iter()
                    .enumerate()
                    .map(
                        |(i, blob)| {
                            if *blob {
                                format!("unhex(value->>{i})")
                            } else {
                                format!("value->>{i}")
                            }
                        },
                    )
                    .collect();
                let names: Vec<String> = columns.iter().map(|c| quoted(c)).collect();
                let insert = format!(
                    "INSERT INTO {} ({}) SELECT {} FROM json_each($1)",
                    quoted(&name),
                    names.join(", "),
                    values.join(", ")
                );
                // Rows the schema statements made (a migration's seed
                // rows, sqlite_sequence's) give way to the dump's.
                sqlx::query(&format!("DELETE FROM {}", quoted(&name))).execute(&mut *tx).await?;
                table = Some(Loading { insert, pending: String::new(), pending_rows: 0, rows: 0 });
            }
            Line::Rows { rows } => {
                let mut loading =
                    table.take().ok_or_else(|| invalid("a row count outside a table".into()))?;
                flush(&mut loading, &mut tx).await?;
                if loading.rows != rows {
                    return Err(invalid(format!(
                        "a table holds {} rows where the dump counted {rows}",
                        loading.rows
                    )));
                }
                counts.tables += 1;
                counts.rows += rows;
            }
            Line::End { end } => {
                if table.is_some() || end != counts.rows {
                    return Err(invalid(format!(
                        "it ends with {end} rows where {} were loaded",
                        counts.rows
                    )));
                }
                tx.commit().await?;
                return Ok(counts);
            }
            Line::Header { .. } => return Err(invalid("a second header".into())),
        }
    }
    Err(invalid("it is cut short: its last line is missing".into()))
}

async fn flush(loading: &mut Loading, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), MetaError> {
    if loading.pending.is_empty() {
        return Ok(());
    }
    loading.pending.push(']');
    sqlx::query(&loading.insert).bind(std::mem::take(&mut loading.pending)).execute(&mut **tx).await?;
    loading.rows += loading.pending_rows;
    loading.pending_rows = 0;
    Ok(())
}
