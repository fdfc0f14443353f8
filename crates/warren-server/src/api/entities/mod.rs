//! CRUD for the product entities under `/api/projects/{id}/<collection>/`,
//! the same five routes for every kind; [`kinds`] says what each must hold.

mod kinds;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;
use warren_meta::entities::{Entity, EntityKind, EntityWrite};
use warren_meta::Project;
use warren_query::catalog::CohortDefinition;

use super::accounts::{paginated, parse};
use super::auth::{Access, Caller};
use super::{collection, spec, Endpoint};
use crate::{ApiError, AppState};

pub(crate) use kinds::{
    ActionBody, AnnotationBody, CohortBody, DashboardBody, ExperimentBody, FeatureFlagBody, InsightBody,
};

/// A stored cohort, read for use.
pub(crate) enum StoredCohort {
    /// Its members are listed (`static_cohort_people`).
    Static,
    Dynamic(CohortDefinition),
    /// Saved by a build whose rules it no longer meets: it matches nobody.
    Unreadable,
}

impl StoredCohort {
    pub fn read(cohort: &Entity) -> Self {
        if cohort.body.get("is_static") == Some(&Value::Bool(true)) {
            return StoredCohort::Static;
        }
        match cohort.body.get("filters").map(CohortDefinition::parse) {
            Some(Ok(definition)) => StoredCohort::Dynamic(definition),
            _ => StoredCohort::Unreadable,
        }
    }
}

/// Fields the server owns; a client's values for them are ignored.
const SERVER_FIELDS: [&str; 5] = ["id", "created_at", "updated_at", "created_by", "project"];

/// The JSON component describing a kind's body.
pub(crate) fn component(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Action => "ActionBody",
        EntityKind::Cohort => "CohortBody",
        EntityKind::Insight => "InsightBody",
        EntityKind::Dashboard => "DashboardBody",
        EntityKind::Annotation => "AnnotationBody",
        EntityKind::FeatureFlag => "FeatureFlagBody",
        EntityKind::Experiment => "ExperimentBody",
    }
}

/// The five routes of one kind.
pub(crate) fn endpoints(kind: EntityKind) -> Vec<Endpoint> {
    let name = kind.as_str();
    let list = format!("/api/projects/{{project_id}}/{}", collection(kind));
    let item = format!("{list}/{{id}}");
    vec![
        spec(Method::GET, list.clone(), format!("{name}.list"), format!("List {}", collection(kind)))
            .resource(name)
            .to(move |state, caller, path| list_entities(kind, state, caller, path)),
        spec(Method::POST, list, format!("{name}.create"), format!("Create a {}", name.replace('_', " ")))
            .resource(name)
            .body(component(kind))
            .to(move |state, caller, path, body| create(kind, state, caller, path, body)),
        spec(Method::GET, item.clone(), format!("{name}.read"), format!("One {}", name.replace('_', " ")))
            .resource(name)
            .to(move |state, caller, path| read(kind, state, caller, path)),
        spec(
            Method::PATCH,
            item.clone(),
            format!("{name}.update"),
            format!("Change fields of a {}", name.replace('_', " ")),
        )
        .resource(name)
        .body(component(kind))
        .to(move |state, caller, path, body| update(kind, state, caller, path, body)),
        spec(Method::DELETE, item, format!("{name}.delete"), format!("Delete a {}", name.replace('_', " ")))
            .resource(name)
            .to(move |state, caller, path| delete(kind, state, caller, path)),
    ]
}

/// An entity as the API shows it: its document with the server's fields.
pub(crate) fn entity_json(entity: &Entity) -> Value {
    let mut body = entity.body.as_object().cloned().unwrap_or_default();
    body.insert("id".into(), entity.id.into());
    body.insert("project".into(), entity.project_id.into());
    body.insert("created_at".into(), entity.created_at.clone().into());
    body.insert("updated_at".into(), entity.updated_at.clone().into());
    body.insert("created_by".into(), entity.created_by.map_or(Value::Null, |id| json!({"id": id})));
    if entity.kind == EntityKind::FeatureFlag {
        body.entry("active").or_insert(Value::Bool(true));
    }
    Value::Object(body)
}

fn object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match parse::<Value>(body)? {
        Value::Object(mut fields) => {
            for field in SERVER_FIELDS {
                fields.remove(field);
            }
            Ok(fields)
        }
        _ => Err(ApiError::InvalidRequest("the body must be a JSON object".into())),
    }
}

fn entity_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound)
}

/// Checks a body and what it refers to, and makes it storable.
async fn prepare(
    state: &AppState,
    project: &Project,
    kind: EntityKind,
    body: Map<String, Value>,
    created_by: Option<i64>,
) -> Result<EntityWrite, ApiError> {
    let body = Value::Object(body);
    let checked = kinds::check(kind, &body)?;
    for insight in &checked.insights {
        if state.meta.entity(project.id, EntityKind::Insight, *insight).await?.is_none() {
            return Err(ApiError::InvalidRequest(format!(
                "dashboard tile: insight {insight} does not exist in this project"
            )));
        }
    }
    if let Some((flag_key, variants)) = &checked.experiment_flag {
        ensure_experiment_flag(state, project, flag_key, variants, created_by).await?;
    }
    Ok(EntityWrite { project_id: project.id, kind, unique_key: checked.unique_key, body, created_by })
}

/// An experiment splits users with a multivariate flag: an existing one
/// must have variants; a missing one is created (control and test, half
/// each, unless the experiment lists its variants).
async fn ensure_experiment_flag(
    state: &AppState,
    project: &Project,
    key: &str,
    variants: &[Value],
    created_by: Option<i64>,
) -> Result<(), ApiError> {
    let flags = state.meta.entities(project.id, EntityKind::FeatureFlag).await?;
    if let Some(flag) = flags.iter().find(|flag| flag.unique_key.as_deref() == Some(key)) {
        let has_variants =
            flag.body["filters"]["multivariate"]["variants"].as_array().is_some_and(|v| v.len() >= 2);
        if !has_variants {
            return Err(ApiError::InvalidRequest(format!(
                "feature flag {key:?} has no variants; an experiment needs a multivariate flag"
            )));
        }
        return Ok(());
    }
    let variants = if variants.is_empty() {
        json!([{"key": "control", "rollout_percentage": 50}, {"key": "test", "rollout_percentage": 50}])
    } else {
        Value::Array(variants.to_vec())
    };
    let mut body = Map::new();
    body.insert("key".into(), key.into());
    body.insert("name".into(), format!("Experiment flag {key}").into());
    body.insert("filters".into(), json!({"groups": [{"properties": [], "rollout_percentage": 100}], "multivariate": {"variants": variants}}));
    let write = Box::pin(prepare(state, project, EntityKind::FeatureFlag, body, created_by)).await?;
    state.meta.create_entity(write).await?;
    Ok(())
}

async fn list_entities(
    kind: EntityKind,
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = caller.project(&state, &project_id, Access::Read(kind.as_str())).await?;
    let entities = state.meta.entities(project.id, kind).await?;
    Ok(Json(paginated(entities.iter().map(entity_json).collect())))
}

async fn create(
    kind: EntityKind,
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let project = caller.project(&state, &project_id, Access::Write(kind.as_str())).await?;
    if kind == EntityKind::Experiment {
        // An experiment creates its flag when missing, which a key may
        // only do with the right to write flags.
        caller.check_scope(Access::Write("feature_flag"))?;
    }
    let write = prepare(&state, &project, kind, object(&body)?, caller.user_id()).await?;
    let entity = state.meta.create_entity(write).await?;
    caller.note_resource(entity.id);
    Ok((StatusCode::CREATED, Json(entity_json(&entity))))
}

async fn read(
    kind: EntityKind,
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = caller.project(&state, &project_id, Access::Read(kind.as_str())).await?;
    let id = entity_id(&id)?;
    caller.note_resource(id);
    let entity = state.meta.entity(project.id, kind, id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(entity_json(&entity)))
}

async fn update(
    kind: EntityKind,
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let project = caller.project(&state, &project_id, Access::Write(kind.as_str())).await?;
    if kind == EntityKind::Experiment {
        caller.check_scope(Access::Write("feature_flag"))?;
    }
    let id = entity_id(&id)?;
    caller.note_resource(id);
    let current = state.meta.entity(project.id, kind, id).await?.ok_or(ApiError::NotFound)?;
    // PATCH replaces the fields it names and keeps the others.
    let mut merged = current.body.as_object().cloned().unwrap_or_default();
    merged.extend(object(&body)?);
    let write = prepare(&state, &project, kind, merged, current.created_by).await?;
    let entity = state.meta.replace_entity(id, write).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(entity_json(&entity)))
}

async fn delete(
    kind: EntityKind,
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let project = caller.project(&state, &project_id, Access::Write(kind.as_str())).await?;
    let id = entity_id(&id)?;
    caller.note_resource(id);
    if state.meta.delete_entity(project.id, kind, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct StaticCohortPersons {
    /// Distinct ids or person uuids of the project; an entry is taken as a
    /// distinct id when it is one, and entries naming no person are skipped.
    person_ids: Vec<String>,
}

async fn cohort_of(
    state: &AppState,
    caller: &Caller,
    project_id: &str,
    id: &str,
    access: Access,
) -> Result<(Project, Entity), ApiError> {
    let project = caller.project(state, project_id, access).await?;
    let id = entity_id(id)?;
    caller.note_resource(id);
    let cohort = state.meta.entity(project.id, EntityKind::Cohort, id).await?.ok_or(ApiError::NotFound)?;
    Ok((project, cohort))
}

pub(super) async fn add_persons_to_static_cohort(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (project, cohort) = cohort_of(&state, &caller, &project_id, &id, Access::Write("cohort")).await?;
    if !matches!(StoredCohort::read(&cohort), StoredCohort::Static) {
        return Err(ApiError::InvalidRequest("only static cohorts take a list of persons".into()));
    }
    let request: StaticCohortPersons = parse(&body)?;
    if request.person_ids.len() > 100_000 {
        return Err(ApiError::InvalidRequest("add at most 100,000 persons at a time".into()));
    }
    let mut people = state.meta.cohort_people(project.id, cohort.id).await?;
    // Distinct ids first: SDKs make anonymous distinct ids that are UUIDs
    // (posthog-js's are v7), so the shape of an entry does not say which it is.
    let found = state.meta.persons_by_distinct_ids(project.id, &request.person_ids).await?;
    people.extend(found.distinct_ids.values().copied());
    let uuids: Vec<Uuid> = request
        .person_ids
        .iter()
        .filter(|id| !found.distinct_ids.contains_key(*id))
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect();
    people.extend(state.meta.existing_persons(project.id, &uuids).await?);
    state.meta.set_cohort_people(project.id, cohort.id, &people).await?;
    let count = state.meta.cohort_people(project.id, cohort.id).await?.len();
    Ok(Json(json!({"id": cohort.id, "count": count})))
}

pub(super) async fn cohort_persons(
    State(state): State<AppState>,
    caller: Caller,
    Path((project_id, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (project, cohort) = cohort_of(&state, &caller, &project_id, &id, Access::Read("cohort")).await?;
    let members: Vec<Value> = if matches!(StoredCohort::read(&cohort), StoredCohort::Static) {
        state
            .meta
            .cohort_people(project.id, cohort.id)
            .await?
            .into_iter()
            .map(|uuid| json!({"uuid": uuid}))
            .collect()
    } else {
        let catalog = crate::api::query::catalog(&state, &project).await?;
        let persons = crate::api::query::cohort_members(&state, &project, catalog, cohort.id).await?;
        persons.into_iter().map(|uuid| json!({"uuid": uuid})).collect()
    };
    Ok(Json(paginated(members)))
}
