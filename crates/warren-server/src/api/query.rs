//! `POST /api/projects/{id}/query/`: `{"query": {"kind": …}}` in PostHog's
//! query schema, answered in PostHog's result shapes. Saved actions and
//! cohorts the query names come from the meta store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use warren_core::metrics as names;
use warren_meta::entities::EntityKind;
use warren_meta::Project;
use warren_query::catalog::{Action, Catalog, Cohort};
use warren_query::{ProjectContext, Query, QueryError};

use super::auth::{Access, Caller};
use super::entities::StoredCohort;
use crate::{ApiError, AppState};

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct QueryRequest {
    /// A `TrendsQuery`, `FunnelsQuery`, `RetentionQuery`, `StickinessQuery`,
    /// `LifecycleQuery`, `PathsQuery`, `HogQLQuery` or `EventsQuery`.
    #[schema(value_type = Object)]
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
        Query::EventsQuery(_) => "EventsQuery",
    }
}

/// The project's actions and cohorts, as the query engine reads them.
/// Entities that no longer parse (saved by an older build) are left out,
/// so a query naming one gets "does not exist" rather than a failure.
pub(crate) async fn catalog(state: &AppState, project: &Project) -> Result<Arc<Catalog>, ApiError> {
    let mut actions = HashMap::new();
    for entity in state.meta.entities(project.id, EntityKind::Action).await? {
        if let Ok(action) = serde_json::from_value::<Action>(entity.body) {
            actions.insert(entity.id, action);
        }
    }
    let mut cohorts = HashMap::new();
    for entity in state.meta.entities(project.id, EntityKind::Cohort).await? {
        match StoredCohort::read(&entity) {
            StoredCohort::Static => {
                let people = state.meta.cohort_people(project.id, entity.id).await?;
                cohorts.insert(entity.id, Cohort::Static(people.iter().map(ToString::to_string).collect()));
            }
            StoredCohort::Dynamic(definition) => {
                cohorts.insert(entity.id, Cohort::Dynamic(definition.properties));
            }
            StoredCohort::Unreadable => {}
        }
    }
    Ok(Arc::new(Catalog { actions, cohorts }))
}

fn context(project: &Project, catalog: Arc<Catalog>) -> Result<ProjectContext, ApiError> {
    let mut context = ProjectContext::new(project.id, &project.timezone, chrono::Utc::now())?;
    context.week_starts_monday = project.week_start_day == 1;
    context.test_account_filters = serde_json::from_str(&project.test_account_filters)
        .map_err(|e| QueryError::Engine(format!("the project's test account filters are unreadable: {e}")))?;
    context.catalog = catalog;
    Ok(context)
}

/// The persons in a dynamic cohort, computed over the event store.
pub(crate) async fn cohort_members(
    state: &AppState,
    project: &Project,
    catalog: Arc<Catalog>,
    cohort: i64,
) -> Result<Vec<String>, ApiError> {
    let engine = state.query.clone().ok_or(ApiError::NotFound)?;
    Ok(engine.cohort_members(context(project, catalog)?, cohort, 10_000).await?)
}

pub(super) async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let project = caller.project(&state, &project_id, Access::Read("query")).await?;
    let Some(engine) = state.query.clone() else {
        return Err(ApiError::NotFound);
    };
    let request: QueryRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let context = context(&project, catalog(&state, &project).await?)?;
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
