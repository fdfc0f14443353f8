//! Session recordings' chunks: written with ingest's offsets, listed per
//! project or person, and found by age for retention.

use std::collections::HashMap;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Transaction};
use uuid::Uuid;
use warren_core::person::TeamId;
use warren_core::recording::{RecordingChunk, RecordingSummary};

use super::persons::chunks;
use super::statement::{int, placeholders, text, value_rows};
use super::Dialect;
use crate::MetaError;

const CHUNK_COLUMNS: &str =
    "team_id, session_id, chunk, distinct_id, first_ms, last_ms, events, bytes, clicks, first_url";

/// Writes `recordings`' rows, replacing rows of the same chunk: a batch
/// replayed after a crash names its chunks as it did the first time.
pub(super) async fn upsert_chunks(
    tx: &mut Transaction<'_, Any>,
    dialect: Dialect,
    recordings: &[RecordingChunk],
) -> Result<(), MetaError> {
    for batch in chunks(dialect, recordings, 10) {
        let sql = format!(
            "INSERT INTO recording_chunks ({CHUNK_COLUMNS}) VALUES {}
             ON CONFLICT (team_id, session_id, chunk) DO UPDATE SET distinct_id = excluded.distinct_id,
                 first_ms = excluded.first_ms, last_ms = excluded.last_ms, events = excluded.events,
                 bytes = excluded.bytes, clicks = excluded.clicks, first_url = excluded.first_url",
            value_rows(10, batch.len())
        );
        let mut query: Query<'_, Any, AnyArguments<'_>> = sqlx::query(&sql);
        for chunk in batch {
            query = query
                .bind(chunk.team_id)
                .bind(&chunk.session_id)
                .bind(&chunk.chunk)
                .bind(&chunk.distinct_id)
                .bind(chunk.first_ms)
                .bind(chunk.last_ms)
                .bind(chunk.events)
                .bind(chunk.bytes)
                .bind(chunk.clicks)
                .bind(chunk.first_url.as_deref());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

fn chunk_of(row: &AnyRow) -> Result<RecordingChunk, sqlx::Error> {
    Ok(RecordingChunk {
        team_id: int(row, "team_id")?,
        session_id: text(row, "session_id")?,
        chunk: text(row, "chunk")?,
        distinct_id: text(row, "distinct_id")?,
        first_ms: int(row, "first_ms")?,
        last_ms: int(row, "last_ms")?,
        events: int(row, "events")?,
        bytes: int(row, "bytes")?,
        clicks: int(row, "clicks")?,
        first_url: sqlx::Row::try_get::<Option<String>, _>(row, "first_url")?,
    })
}

/// A project's recorded sessions, newest first; with `person`, only the
/// sessions any of whose chunks were sent by one of the person's distinct
/// ids.
pub(super) async fn recordings(
    pool: &AnyPool,
    team_id: TeamId,
    person: Option<Uuid>,
    limit: u32,
    offset: u32,
) -> Result<Vec<RecordingSummary>, MetaError> {
    let by_person = if person.is_some() {
        "AND session_id IN (SELECT c.session_id FROM recording_chunks c JOIN person_distinct_ids d
             ON d.team_id = c.team_id AND d.distinct_id = c.distinct_id
             WHERE c.team_id = $1 AND d.person_uuid = $4)"
    } else {
        ""
    };
    // PostgreSQL sums BIGINT as NUMERIC; the casts keep one row reader.
    let sql = format!(
        "SELECT session_id, MIN(first_ms) AS start_ms, MAX(last_ms) AS end_ms,
             CAST(SUM(events) AS BIGINT) AS events, CAST(SUM(bytes) AS BIGINT) AS bytes,
             CAST(SUM(clicks) AS BIGINT) AS clicks, COUNT(*) AS chunks
         FROM recording_chunks WHERE team_id = $1 {by_person}
         GROUP BY session_id ORDER BY start_ms DESC, session_id LIMIT $2 OFFSET $3"
    );
    let mut query = sqlx::query(&sql).bind(team_id).bind(i64::from(limit)).bind(i64::from(offset));
    if let Some(person) = person {
        query = query.bind(person.to_string());
    }
    let rows = query.fetch_all(pool).await?;
    let mut summaries = Vec::with_capacity(rows.len());
    for row in &rows {
        summaries.push(RecordingSummary {
            session_id: text(row, "session_id")?,
            distinct_id: String::new(),
            person_id: None,
            start_ms: int(row, "start_ms")?,
            end_ms: int(row, "end_ms")?,
            events: int(row, "events")?,
            bytes: int(row, "bytes")?,
            clicks: int(row, "clicks")?,
            first_url: None,
            chunks: int(row, "chunks")?,
        });
    }
    fill_first_chunks(pool, team_id, &mut summaries).await?;
    Ok(summaries)
}

/// Each session's distinct id (and its person) and first address, from the
/// session's earliest chunks.
async fn fill_first_chunks(
    pool: &AnyPool,
    team_id: TeamId,
    summaries: &mut [RecordingSummary],
) -> Result<(), MetaError> {
    if summaries.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT c.session_id, c.distinct_id, c.first_url, d.person_uuid FROM recording_chunks c
         LEFT JOIN person_distinct_ids d ON d.team_id = c.team_id AND d.distinct_id = c.distinct_id
         WHERE c.team_id = $1 AND c.session_id IN ({})
         ORDER BY c.first_ms, c.chunk",
        placeholders(2, summaries.len())
    );
    let mut query = sqlx::query(&sql).bind(team_id);
    for summary in summaries.iter() {
        query = query.bind(summary.session_id.clone());
    }
    let mut first: HashMap<String, (String, Option<String>, Option<Uuid>)> = HashMap::new();
    for row in query.fetch_all(pool).await? {
        let session = text(&row, "session_id")?;
        let url = sqlx::Row::try_get::<Option<String>, _>(&row, "first_url")?;
        let entry = first.entry(session).or_insert_with(|| {
            let person = sqlx::Row::try_get::<Option<String>, _>(&row, "person_uuid")
                .ok()
                .flatten()
                .and_then(|text| Uuid::parse_str(&text).ok());
            (text(&row, "distinct_id").unwrap_or_default(), None, person)
        });
        if entry.1.is_none() {
            entry.1 = url;
        }
    }
    for summary in summaries {
        if let Some((distinct_id, url, person)) = first.remove(&summary.session_id) {
            (summary.distinct_id, summary.first_url, summary.person_id) = (distinct_id, url, person);
        }
    }
    Ok(())
}

/// One session's chunks in the order they were recorded.
pub(super) async fn recording_chunks(
    pool: &AnyPool,
    team_id: TeamId,
    session_id: &str,
) -> Result<Vec<RecordingChunk>, MetaError> {
    let sql = format!(
        "SELECT {CHUNK_COLUMNS} FROM recording_chunks WHERE team_id = $1 AND session_id = $2
         ORDER BY first_ms, chunk"
    );
    let rows = sqlx::query(&sql).bind(team_id).bind(session_id).fetch_all(pool).await?;
    Ok(rows.iter().map(chunk_of).collect::<Result<_, _>>()?)
}

/// Up to `limit` chunks, of any project, whose last event is older than
/// `before_ms`, oldest first.
pub(super) async fn expired_chunks(
    pool: &AnyPool,
    before_ms: i64,
    limit: u32,
) -> Result<Vec<RecordingChunk>, MetaError> {
    let sql =
        format!("SELECT {CHUNK_COLUMNS} FROM recording_chunks WHERE last_ms < $1 ORDER BY last_ms LIMIT $2");
    let rows = sqlx::query(&sql).bind(before_ms).bind(i64::from(limit)).fetch_all(pool).await?;
    Ok(rows.iter().map(chunk_of).collect::<Result<_, _>>()?)
}

/// Forgets `chunks` (their blobs are deleted first, by the caller).
pub(super) async fn delete_chunks(pool: &AnyPool, chunks: &[RecordingChunk]) -> Result<(), MetaError> {
    let mut tx = pool.begin().await?;
    for chunk in chunks {
        sqlx::query("DELETE FROM recording_chunks WHERE team_id = $1 AND session_id = $2 AND chunk = $3")
            .bind(chunk.team_id)
            .bind(&chunk.session_id)
            .bind(&chunk.chunk)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
