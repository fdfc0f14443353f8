//! `POST /api/projects/{id}/query/`: `{"query": {"kind": …}}` in PostHog's
//! query schema, answered in PostHog's result shapes.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use warren_core::metrics as names;
use warren_query::{ProjectContext, Query, QueryError};

use crate::{ApiError, AppState};

#[derive(Deserialize)]
struct QueryRequest {
    query: Query,
}

fn kind_of(query: &Query) -> &'static str {
    match query {
        Query::TrendsQuery(_) => "TrendsQuery",
        Query::FunnelsQuery(_) => "FunnelsQuery",
        Query::RetentionQuery(_) => "RetentionQuery",
        Query::StickinessQuery(_) => "StickinessQuery",
        Query::LifecycleQuery(_) => "LifecycleQuery",
        Query::PathsQuery(_) => "PathsQuery",
        Query::HogQLQuery(_) => "HogQLQuery",
    }
}

pub(super) async fn run(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let project = super::project_of(&state, &headers, &project_id).await?;
    let Some(engine) = state.query.clone() else {
        return Err(ApiError::NotFound);
    };
    let request: QueryRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let mut context = ProjectContext::new(project.id, &project.timezone, chrono::Utc::now())?;
    context.week_starts_monday = project.week_start_day == 1;
    context.test_account_filters = serde_json::from_str(&project.test_account_filters)
        .map_err(|e| QueryError::Engine(format!("the project's test account filters are unreadable: {e}")))?;
    let kind = kind_of(&request.query);
    let started = Instant::now();
    let result = engine.run(request.query, context).await;
    metrics::histogram!(names::QUERY_SECONDS, "kind" => kind).record(started.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) => error.code(),
    };
    metrics::counter!(names::QUERIES, "kind" => kind, "outcome" => outcome).increment(1);
    tracing::info!(project = project.id, kind, outcome, ms = started.elapsed().as_millis() as u64, "query");
    Ok(Json(result?))
}
