//! Feature flags for the SDKs: `POST /flags` (PostHog's current answer,
//! `flags` with reasons and metadata), `POST /decide` (the legacy answer),
//! and the flag definitions SDKs poll for local evaluation
//! (`/flags/definitions`, `/api/feature_flag/local_evaluation`).
//!
//! Evaluation is [`crate::flags`]: PostHog's hashing, so a person gets
//! the same answer here as from an SDK evaluating locally, and as on
//! PostHog. Person and group properties are the stored ones overlaid with
//! those the request sends.
//!
//! `/flags` and `/decide` are called by every SDK as often as capture is,
//! so they share capture's admission budget (requests in flight and their
//! bytes): past it they are answered 503 `overloaded` as capture is.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use warren_core::metrics as names;
use warren_meta::entities::{Entity, EntityKind};
use warren_meta::Project;
use warren_query::catalog::{CohortGroup, CohortItem};
use warren_query::model::GroupOperator;

use super::auth::{Access, Caller};
use super::entities::StoredCohort;
use crate::admission::Ticket;
use crate::flags::{self, FlagFilters, FlagGroup, FlagSubject};
use crate::{ApiError, AppState};

/// What the SDKs send. posthog-python names the token `api_key`,
/// posthog-node and posthog-js `token`.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct FlagsRequest {
    token: Option<String>,
    api_key: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    distinct_id: Value,
    /// Group type → group key.
    #[serde(default)]
    #[schema(value_type = Object)]
    groups: Map<String, Value>,
    #[serde(default)]
    #[schema(value_type = Object)]
    person_properties: Map<String, Value>,
    /// Group type → properties.
    #[serde(default)]
    #[schema(value_type = Object)]
    group_properties: Map<String, Value>,
    /// Only these flags, when given (posthog-js names it `flag_keys`).
    #[serde(alias = "flag_keys")]
    flag_keys_to_evaluate: Option<Vec<String>>,
}

/// Reads an SDK's request within the admission budget: the body, then its
/// JSON in any encoding capture takes (gzip, a `data=` form, base64, lz64:
/// posthog-js sends `/flags` as a base64 form when it has no remote
/// configuration), at most capture's single-event limit. The ticket is
/// held until the answer.
async fn request(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Body,
) -> Result<(Ticket, FlagsRequest), ApiError> {
    let limit = state.capture.max_event_bytes;
    let (mut ticket, body) = crate::capture::admitted_body(state, headers, body, limit).await?;
    let query = crate::capture::CaptureQuery::parse(query);
    let json =
        crate::capture::decode(&query, headers, &body, false, limit, &mut |bytes| ticket.reserve(bytes))?
            .json;
    // The parsed request takes about as much again.
    ticket.reserve(json.len())?;
    let request = serde_json::from_slice(&json).map_err(|e| ApiError::InvalidPayload(e.to_string()))?;
    Ok((ticket, request))
}

/// A flag as stored, read for evaluation.
struct Flag {
    entity: Entity,
    key: String,
    filters: FlagFilters,
}

fn active(entity: &Entity) -> bool {
    entity.body.get("active") != Some(&Value::Bool(false))
}

/// Whether `/flags` would evaluate any flag of `project`.
pub(super) async fn has_active_flags(state: &AppState, project: &Project) -> Result<bool, ApiError> {
    Ok(flags_of(state, project).await?.iter().any(|flag| active(&flag.entity)))
}

async fn flags_of(state: &AppState, project: &Project) -> Result<Vec<Flag>, ApiError> {
    let entities = state.meta.entities(project.id, EntityKind::FeatureFlag).await?;
    Ok(entities
        .into_iter()
        .filter_map(|entity| {
            let key = entity.unique_key.clone()?;
            let filters = serde_json::from_value(entity.body.get("filters")?.clone()).ok()?;
            Some(Flag { entity, key, filters })
        })
        .collect())
}

/// A payload as the SDKs take it: JSON text. Stored strings are taken to
/// be that text already (PostHog's UI stores them so); other values are
/// encoded.
fn payload_text(payload: &Value) -> Value {
    match payload {
        Value::Null => Value::Null,
        Value::String(text) => Value::String(text.clone()),
        other => Value::String(other.to_string()),
    }
}

/// Whether `properties` satisfy a cohort of person-property filters.
fn in_cohort_group(group: &CohortGroup, properties: &Map<String, Value>, now_ms: i64) -> bool {
    let mut results = group.values.iter().map(|item| match item {
        CohortItem::Group(inner) => in_cohort_group(inner, properties, now_ms),
        CohortItem::Filter(filter) if filter.kind == "person" => {
            let as_flag_filter = json!({"key": filter.key, "value": filter.value, "operator": filter.operator, "type": "person"});
            let matched = serde_json::from_value::<flags::PropertyFilter>(as_flag_filter)
                .is_ok_and(|f| flags::match_property(&f, properties, now_ms));
            matched != filter.negation
        }
        // Behavioural cohorts need the event store; PostHog refuses them
        // in flags too.
        CohortItem::Filter(_) => false,
    });
    match group.kind {
        GroupOperator::And => results.all(|r| r),
        GroupOperator::Or => results.any(|r| r),
    }
}

async fn evaluate_request(
    state: &AppState,
    request: FlagsRequest,
) -> Result<(Project, Vec<(Flag, flags::FlagEvaluation)>), ApiError> {
    let token = request.token.or(request.api_key).ok_or(ApiError::MissingToken)?;
    let project = state.meta.project_by_token(&token).await?.ok_or(ApiError::UnknownToken)?;
    let distinct_id = match &request.distinct_id {
        Value::String(id) if !id.is_empty() => id.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(ApiError::MissingDistinctId),
    };
    let mut wanted = flags_of(state, &project).await?;
    wanted.retain(|flag| active(&flag.entity));
    if let Some(keys) = &request.flag_keys_to_evaluate {
        let keys: HashSet<&str> = keys.iter().map(String::as_str).collect();
        wanted.retain(|flag| keys.contains(flag.key.as_str()));
    }

    let person = warren_meta::person_by_distinct_id(state.meta.as_ref(), project.id, &distinct_id).await?;
    let mut properties = person.as_ref().map(|p| p.properties.clone()).unwrap_or_default();
    properties.extend(request.person_properties);
    properties.entry("distinct_id").or_insert_with(|| Value::String(distinct_id.clone()));

    let group_types: HashMap<String, i32> = state
        .meta
        .group_types(project.id)
        .await?
        .into_iter()
        .map(|t| (t.group_type, t.group_type_index))
        .collect();
    let mut keys = Vec::new();
    for (group_type, key) in &request.groups {
        let Some(index) = group_types.get(group_type) else { continue };
        let key = match key {
            Value::String(key) => key.clone(),
            other => other.to_string(),
        };
        keys.push((*index, key, group_type.clone()));
    }
    let stored = state
        .meta
        .groups_by_keys(project.id, &keys.iter().map(|(i, k, _)| (*i, k.clone())).collect::<Vec<_>>())
        .await?;
    let mut groups = BTreeMap::new();
    for (index, key, group_type) in keys {
        let mut properties = stored
            .iter()
            .find(|g| g.group_type_index == index && g.group_key == key)
            .map(|g| g.properties.clone())
            .unwrap_or_default();
        if let Some(Value::Object(sent)) = request.group_properties.get(&group_type) {
            properties.extend(sent.clone());
        }
        groups.insert(index, FlagGroup { key, properties });
    }

    let cohorts =
        cohorts_for(state, &project, wanted.iter().map(|f| &f.filters), person.as_ref().map(|p| p.uuid))
            .await?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let in_cohort = |id: i64| match cohorts.get(&id) {
        Some(Membership::Static(member)) => *member,
        Some(Membership::Dynamic(group)) => in_cohort_group(group, &properties, now_ms),
        None => false,
    };
    let subject = FlagSubject::new(distinct_id.clone()).with_properties(properties.clone());
    let subject = FlagSubject { groups, ..subject };
    let subject = subject.with_cohorts(&in_cohort);
    let results = wanted
        .into_iter()
        .map(|flag| {
            let evaluation = flags::evaluate_at(&flag.key, &flag.filters, &subject, now_ms);
            (flag, evaluation)
        })
        .collect();
    Ok((project, results))
}

enum Membership {
    Static(bool),
    Dynamic(CohortGroup),
}

/// The cohorts the flags name, with what membership needs.
async fn cohorts_for<'a>(
    state: &AppState,
    project: &Project,
    filters: impl Iterator<Item = &'a FlagFilters>,
    person: Option<Uuid>,
) -> Result<HashMap<i64, Membership>, ApiError> {
    let ids: HashSet<i64> = filters
        .flat_map(|f| f.groups.iter())
        .flat_map(|condition| condition.properties.iter())
        .filter_map(flags::PropertyFilter::cohort_id)
        .collect();
    let mut cohorts = HashMap::new();
    for id in ids {
        let Some(cohort) = state.meta.entity(project.id, EntityKind::Cohort, id).await? else { continue };
        match StoredCohort::read(&cohort) {
            StoredCohort::Static => {
                let member = match person {
                    Some(uuid) => state.meta.in_static_cohort(project.id, id, uuid).await?,
                    None => false,
                };
                cohorts.insert(id, Membership::Static(member));
            }
            StoredCohort::Dynamic(definition) => {
                cohorts.insert(id, Membership::Dynamic(definition.properties));
            }
            StoredCohort::Unreadable => {}
        }
    }
    Ok(cohorts)
}

fn record(flag: &Flag, evaluation: &flags::FlagEvaluation) -> Value {
    json!({
        "key": flag.key,
        "enabled": evaluation.enabled,
        "variant": evaluation.variant,
        "reason": {
            "code": evaluation.reason.code(),
            "condition_index": evaluation.condition_index,
            "description": evaluation.description(),
        },
        "metadata": {
            "id": flag.entity.id,
            "version": 1,
            "payload": evaluation.payload.as_ref().filter(|_| evaluation.enabled).map(payload_text),
            "description": flag.entity.body.get("name"),
        },
    })
}

fn legacy(results: &[(Flag, flags::FlagEvaluation)]) -> (Map<String, Value>, Map<String, Value>) {
    let mut values = Map::new();
    let mut payloads = Map::new();
    for (flag, evaluation) in results {
        values.insert(flag.key.clone(), evaluation.value());
        if let Some(payload) = evaluation.payload.as_ref().filter(|_| evaluation.enabled) {
            payloads.insert(flag.key.clone(), payload_text(payload));
        }
    }
    (values, payloads)
}

pub(super) async fn evaluate(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (_ticket, request) = request(&state, &headers, query.as_deref(), body).await?;
    let (_, results) = evaluate_request(&state, request).await?;
    metrics::counter!(names::FLAG_REQUESTS, "endpoint" => "flags").increment(1);
    let flags: Map<String, Value> =
        results.iter().map(|(flag, evaluation)| (flag.key.clone(), record(flag, evaluation))).collect();
    let (values, payloads) = legacy(&results);
    Ok(Json(json!({
        "flags": flags,
        "featureFlags": values,
        "featureFlagPayloads": payloads,
        "errorsWhileComputingFlags": false,
        "requestId": Uuid::now_v7(),
    })))
}

pub(super) async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let (_ticket, request) = request(&state, &headers, query.as_deref(), body).await?;
    let (project, results) = evaluate_request(&state, request).await?;
    metrics::counter!(names::FLAG_REQUESTS, "endpoint" => "decide").increment(1);
    let (values, payloads) = legacy(&results);
    Ok(Json(json!({
        "featureFlags": values,
        "featureFlagPayloads": payloads,
        "errorsWhileComputingFlags": false,
        "config": {"enable_collect_everything": true},
        "isAuthenticated": false,
        "supportedCompression": ["gzip", "gzip-js"],
        "sessionRecording": super::remote_config::session_recording(&project),
        "siteApps": [],
    })))
}

/// Definitions of a project's flags, in the shape SDKs evaluate locally:
/// payloads as JSON text, and the person-property cohorts the flags name
/// (static cohorts are left out, so SDKs ask the server for those flags).
async fn definitions_of(state: &AppState, project: &Project) -> Result<Value, ApiError> {
    metrics::counter!(names::FLAG_REQUESTS, "endpoint" => "definitions").increment(1);
    let flags = flags_of(state, project).await?;
    let mut cohort_ids = HashSet::new();
    let definitions: Vec<Value> = flags
        .iter()
        .map(|flag| {
            cohort_ids.extend(flag.filters.groups.iter().flat_map(|c| c.properties.iter()).filter_map(flags::PropertyFilter::cohort_id));
            let mut filters = flag.entity.body.get("filters").cloned().unwrap_or_else(|| json!({}));
            if let Some(Value::Object(payloads)) = filters.get_mut("payloads") {
                for payload in payloads.values_mut() {
                    *payload = payload_text(payload);
                }
            }
            json!({
                "id": flag.entity.id,
                "team_id": project.id,
                "key": flag.key,
                "name": flag.entity.body.get("name"),
                "active": active(&flag.entity),
                "deleted": false,
                "filters": filters,
                "ensure_experience_continuity": flag.entity.body.get("ensure_experience_continuity").cloned().unwrap_or(Value::Bool(false)),
            })
        })
        .collect();
    let mut cohorts = Map::new();
    for id in cohort_ids {
        let Some(cohort) = state.meta.entity(project.id, EntityKind::Cohort, id).await? else { continue };
        let person_only = matches!(
            StoredCohort::read(&cohort),
            StoredCohort::Dynamic(definition) if person_only(&definition.properties)
        );
        if person_only {
            cohorts.insert(id.to_string(), cohort.body["filters"]["properties"].clone());
        }
    }
    let group_type_mapping: Map<String, Value> = state
        .meta
        .group_types(project.id)
        .await?
        .into_iter()
        .map(|t| (t.group_type_index.to_string(), Value::String(t.group_type)))
        .collect();
    Ok(json!({"flags": definitions, "group_type_mapping": group_type_mapping, "cohorts": cohorts}))
}

fn person_only(group: &CohortGroup) -> bool {
    group.values.iter().all(|item| match item {
        CohortItem::Group(inner) => person_only(inner),
        CohortItem::Filter(filter) => filter.kind == "person",
    })
}

#[derive(Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
}

/// The definitions with an `ETag`; `304 Not Modified` when the SDK's
/// `If-None-Match` names the same version, as SDKs poll every 30 s or so.
fn definitions_answer(definitions: Value, headers: &HeaderMap) -> Response {
    let body = definitions.to_string();
    let tag = format!("\"{}\"", &hex::encode(Sha256::digest(body.as_bytes()))[..32]);
    let unchanged = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(tag.as_str());
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// `GET /flags/definitions?token=…` and `/api/feature_flag/local_evaluation?token=…`.
pub(super) async fn definitions(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    let token = query.token.ok_or(ApiError::MissingToken)?;
    let project = state.meta.project_by_token(&token).await?.ok_or(ApiError::NotFound)?;
    let project = caller.project(&state, &project.id.to_string(), Access::Read("feature_flag")).await?;
    Ok(definitions_answer(definitions_of(&state, &project).await?, &headers))
}

/// `GET /api/projects/{id}/feature_flags/local_evaluation`.
pub(super) async fn local_evaluation(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(project_id): Path<String>,
) -> Result<Response, ApiError> {
    let project = caller.project(&state, &project_id, Access::Read("feature_flag")).await?;
    Ok(definitions_answer(definitions_of(&state, &project).await?, &headers))
}
