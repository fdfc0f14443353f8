//! Session recordings as PostHog's API lists them: a project's recorded
//! sessions, newest first, or one person's; one session; its rrweb events
//! (`snapshots`), streamed chunk by chunk from the blob store as JSON
//! lines; and deleting one. Ingest writes them (`warren_ingest`), the
//! dashboard's player reads `snapshots`.

use std::io::Read;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;
use warren_core::ports::BlobStore;
use warren_core::recording::{valid_session_id, RecordingChunk, RecordingSummary};
use warren_meta::Project;

use super::auth::{Access, Caller};
use crate::{ApiError, AppState};

/// Sessions one page holds at most.
const MAX_LIMIT: u32 = 200;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    /// Only this person's sessions (the person's uuid).
    person_id: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

fn time_json(ms: i64) -> Value {
    super::time_json(ms.saturating_mul(1000))
}

fn summary_json(summary: &RecordingSummary) -> Value {
    json!({
        "id": summary.session_id,
        "distinct_id": summary.distinct_id,
        "person_id": summary.person_id,
        "start_time": time_json(summary.start_ms),
        "end_time": time_json(summary.end_ms),
        "recording_duration": summary.end_ms.saturating_sub(summary.start_ms).max(0) / 1000,
        "click_count": summary.clicks,
        "event_count": summary.events,
        "size_bytes": summary.bytes,
        "start_url": summary.first_url,
        "chunks": summary.chunks,
    })
}

fn blobs(state: &AppState) -> Result<&Arc<dyn BlobStore>, ApiError> {
    state.recordings.as_ref().ok_or_else(|| ApiError::Internal("this process keeps no recordings".into()))
}

async fn project(
    state: &AppState,
    caller: &Caller,
    project_id: &str,
    access: Access,
) -> Result<Project, ApiError> {
    let project = caller.project(state, project_id, access).await?;
    blobs(state)?;
    Ok(project)
}

pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let project = project(&state, &caller, &project_id, Access::Read("session_recording")).await?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let offset = query.offset.unwrap_or(0);
    let person = match &query.person_id {
        Some(text) => Some(
            Uuid::parse_str(text)
                .map_err(|_| ApiError::InvalidRequest("person_id is a person's uuid".into()))?,
        ),
        None => None,
    };
    // One more than asked tells whether another page follows.
    let mut found = state.meta.recordings(project.id, person, limit + 1, offset).await?;
    let has_next = found.len() > limit as usize;
    found.truncate(limit as usize);
    let results: Vec<Value> = found.iter().map(summary_json).collect();
    Ok(Json(json!({ "results": results, "has_next": has_next })))
}

/// The chunks of a session the caller may see; 404 when it has none.
async fn chunks_of(
    state: &AppState,
    project: &Project,
    session_id: &str,
) -> Result<Vec<RecordingChunk>, ApiError> {
    if !valid_session_id(session_id) {
        return Err(ApiError::NotFound);
    }
    let chunks = state.meta.recording_chunks(project.id, session_id).await?;
    if chunks.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(chunks)
}

pub(super) async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, session_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = project(&state, &caller, &project_id, Access::Read("session_recording")).await?;
    let chunks = chunks_of(&state, &project, &session_id).await?;
    let mut summary = RecordingSummary::of(&chunks).ok_or(ApiError::NotFound)?;
    let person =
        warren_meta::person_by_distinct_id(state.meta.as_ref(), project.id, &summary.distinct_id).await?;
    summary.person_id = person.map(|person| person.uuid);
    Ok(Json(summary_json(&summary)))
}

/// The session's rrweb events as JSON lines, `{"window_id", "event"}`, in
/// recording order: one chunk in memory at a time.
pub(super) async fn snapshots(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, session_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let project = project(&state, &caller, &project_id, Access::Read("session_recording")).await?;
    let chunks = chunks_of(&state, &project, &session_id).await?;
    let blobs = blobs(&state)?.clone();
    let stream =
        futures_util::stream::unfold((chunks.into_iter(), blobs), |(mut chunks, blobs)| async move {
            let chunk = chunks.next()?;
            let lines = read_chunk(blobs.as_ref(), &chunk).await;
            Some((lines, (chunks, blobs)))
        });
    Ok(([(header::CONTENT_TYPE, "application/jsonl")], Body::from_stream(stream)).into_response())
}

/// One chunk's lines, unzipped. A missing blob cuts the answer off (the
/// client sees a broken transfer, not a complete shorter recording) and is
/// logged with its key.
async fn read_chunk(blobs: &dyn BlobStore, chunk: &RecordingChunk) -> Result<Bytes, std::io::Error> {
    let missing =
        || std::io::Error::new(std::io::ErrorKind::NotFound, format!("blob {} is gone", chunk.blob_key()));
    let packed = blobs.get(&chunk.blob_key()).await.map_err(std::io::Error::other)?.ok_or_else(missing)?;
    tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        flate2::read::GzDecoder::new(packed.as_slice()).read_to_end(&mut lines)?;
        Ok(Bytes::from(lines))
    })
    .await
    .map_err(std::io::Error::other)?
}

pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, session_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let project = project(&state, &caller, &project_id, Access::Write("session_recording")).await?;
    let chunks = chunks_of(&state, &project, &session_id).await?;
    let blobs = blobs(&state)?;
    // Blobs first, as retention does: a delete cut short is finished by
    // asking again.
    for chunk in &chunks {
        blobs.delete(&chunk.blob_key()).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    state.meta.delete_recording_chunks(&chunks).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
