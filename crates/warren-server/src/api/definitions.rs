//! Event and property definitions: what ingest has seen, read-only.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use warren_meta::entities::PropertyKind;

use super::accounts::paginated;
use super::auth::{Access, Caller};
use super::time_json;
use crate::{ApiError, AppState};

pub(super) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = caller.project(&state, &project_id, Access::Read("event_definition")).await?;
    let definitions = state.meta.event_definitions(project.id).await?;
    Ok(Json(paginated(
        definitions
            .iter()
            .map(|d| json!({"name": d.name, "created_at": time_json(d.first_seen_us), "last_seen_at": time_json(d.last_seen_us)}))
            .collect(),
    )))
}

#[derive(Deserialize)]
pub(super) struct PropertyQuery {
    /// event, person or group.
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub(super) async fn properties(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    Query(query): Query<PropertyQuery>,
) -> Result<Json<Value>, ApiError> {
    let project = caller.project(&state, &project_id, Access::Read("property_definition")).await?;
    let wanted = query.kind.as_deref().map(PropertyKind::parse).transpose()?;
    let definitions = state.meta.property_definitions(project.id).await?;
    Ok(Json(paginated(
        definitions
            .iter()
            .filter(|d| wanted.is_none_or(|kind| d.kind == kind))
            .map(|d| {
                json!({
                    "name": d.name,
                    "type": d.kind,
                    "group_type_index": (d.group_type_index >= 0).then_some(d.group_type_index),
                    "property_type": d.property_type,
                    "is_numerical": d.property_type.as_deref() == Some("Numeric"),
                    "created_at": time_json(d.first_seen_us),
                })
            })
            .collect(),
    )))
}
