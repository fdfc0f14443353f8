//! Persons as PostHog's persons API shows them: a project's persons,
//! newest first, searched by distinct id, uuid or property text, or the
//! one with a distinct id; one person with their distinct ids; and the
//! project's ingestion warnings.
//! A person's events come from the query API (`EventsQuery` with
//! `personId`).

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;
use warren_core::person::Person;

use super::auth::{Access, Caller};
use super::time_json;
use crate::{ApiError, AppState};

/// Persons one page holds at most.
const MAX_LIMIT: u32 = 500;

#[derive(Deserialize)]
pub(super) struct PersonsQuery {
    search: Option<String>,
    /// The one person with exactly this distinct id.
    distinct_id: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

/// Persons as the API shows them, each with its distinct ids.
async fn persons_json(state: &AppState, team_id: i64, persons: &[Person]) -> Result<Vec<Value>, ApiError> {
    let uuids: Vec<Uuid> = persons.iter().map(|p| p.uuid).collect();
    let mut ids = state.meta.distinct_ids_of(team_id, &uuids).await?;
    Ok(persons
        .iter()
        .map(|person| {
            json!({
                "id": person.uuid,
                "uuid": person.uuid,
                "distinct_ids": ids.remove(&person.uuid).unwrap_or_default(),
                "properties": person.properties,
                "is_identified": person.is_identified,
                "created_at": time_json(person.created_at_us),
            })
        })
        .collect())
}

pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Query(query): Query<PersonsQuery>,
) -> Result<Json<Value>, ApiError> {
    let project = caller.project(&state, &project_id, Access::Read("person")).await?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidRequest(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let offset = query.offset.unwrap_or(0);
    if query.search.as_ref().is_some_and(|s| s.len() > 400) {
        return Err(ApiError::InvalidRequest("search is at most 400 bytes".into()));
    }
    let count = state.meta.count_persons(project.id).await?;
    if let Some(distinct_id) = &query.distinct_id {
        let found = warren_meta::person_by_distinct_id(state.meta.as_ref(), project.id, distinct_id).await?;
        let results = persons_json(&state, project.id, found.as_slice()).await?;
        return Ok(Json(json!({"results": results, "count": count, "next": null})));
    }
    // One more than asked tells whether another page follows.
    let mut persons =
        state.meta.search_persons(project.id, query.search.as_deref(), limit + 1, offset).await?;
    let more = persons.len() > limit as usize;
    persons.truncate(limit as usize);
    let next = more.then(|| {
        let mut url =
            format!("/api/projects/{}/persons/?limit={limit}&offset={}", project.id, offset + limit);
        if let Some(search) = &query.search {
            let encoded: String = form_urlencoded::byte_serialize(search.as_bytes()).collect();
            url.push_str(&format!("&search={encoded}"));
        }
        url
    });
    Ok(Json(json!({
        "results": persons_json(&state, project.id, &persons).await?,
        "count": count,
        "next": next,
    })))
}

pub(super) async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, uuid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = caller.project(&state, &project_id, Access::Read("person")).await?;
    let uuid = Uuid::parse_str(&uuid).map_err(|_| ApiError::NotFound)?;
    caller.note_resource(uuid);
    let person = state.meta.person(project.id, uuid).await?.ok_or(ApiError::NotFound)?;
    let mut shown = persons_json(&state, project.id, std::slice::from_ref(&person)).await?;
    Ok(Json(shown.pop().unwrap_or(Value::Null)))
}

#[derive(Deserialize)]
pub(super) struct WarningsQuery {
    limit: Option<u32>,
}

pub(super) async fn ingestion_warnings(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Query(query): Query<WarningsQuery>,
) -> Result<Json<Value>, ApiError> {
    let project = caller.project(&state, &project_id, Access::Read("project")).await?;
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    let warnings = state.meta.ingestion_warnings(project.id, limit).await?;
    let results: Vec<Value> = warnings
        .iter()
        .map(|w| {
            json!({
                "type": w.kind,
                "event_uuid": w.event_uuid,
                "details": w.details,
                "timestamp": time_json(w.timestamp_us),
            })
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}
