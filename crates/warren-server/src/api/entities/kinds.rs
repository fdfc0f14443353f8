//! What each kind of entity must hold. Bodies are kept as the client sent
//! them (PostHog's shapes carry many optional fields a UI may rely on), but
//! each must parse as its typed shape below and pass its checks first;
//! the same types describe the bodies in the OpenAPI document.

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use warren_meta::entities::EntityKind;

use crate::flags::{self, FlagFilters};
use crate::ApiError;

fn invalid(kind: EntityKind, reason: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidRequest(format!("{}: {reason}", kind.as_str()))
}

fn typed<T: serde::de::DeserializeOwned>(kind: EntityKind, body: &Value) -> Result<T, ApiError> {
    serde_json::from_value(body.clone()).map_err(|e| invalid(kind, e))
}

fn check_text(kind: EntityKind, field: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.trim().is_empty() || text.chars().count() > max {
        return Err(invalid(kind, format!("`{field}` must be 1 to {max} characters")));
    }
    Ok(())
}

#[derive(Deserialize, ToSchema)]
#[allow(
    dead_code,
    reason = "fields are parsed to check the shape and describe it in the schema; the stored body is the client's JSON"
)]
pub(crate) struct ActionBody {
    name: String,
    description: Option<String>,
    /// Any step matching makes the event count as the action.
    steps: Vec<ActionStep>,
}

#[derive(Deserialize, ToSchema)]
#[allow(
    dead_code,
    reason = "fields are parsed to check the shape and describe it in the schema; the stored body is the client's JSON"
)]
pub(crate) struct ActionStep {
    /// Event name; any event when unset.
    event: Option<String>,
    /// Property filters the event must match.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    properties: Vec<Value>,
    /// `$current_url` matcher.
    url: Option<String>,
    /// contains (default), exact or regex.
    url_matching: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[allow(
    dead_code,
    reason = "fields are parsed to check the shape and describe it in the schema; the stored body is the client's JSON"
)]
pub(crate) struct CohortBody {
    name: String,
    description: Option<String>,
    /// Static cohorts hold a list of persons; dynamic ones a definition.
    #[serde(default)]
    is_static: bool,
    /// `{"properties": {"type": "AND"|"OR", "values": [...]}}` of person
    /// property filters and behavioural filters.
    #[schema(value_type = Option<Object>)]
    filters: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[allow(
    dead_code,
    reason = "fields are parsed to check the shape and describe it in the schema; the stored body is the client's JSON"
)]
pub(crate) struct InsightBody {
    name: Option<String>,
    description: Option<String>,
    /// An `InsightVizNode` around a query, or a query (`TrendsQuery`, …).
    #[schema(value_type = Option<Object>)]
    query: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[allow(
    dead_code,
    reason = "fields are parsed to check the shape and describe it in the schema; the stored body is the client's JSON"
)]
pub(crate) struct DashboardBody {
    name: String,
    description: Option<String>,
    #[serde(default)]
    pinned: bool,
    #[serde(default)]
    tiles: Vec<DashboardTile>,
}

#[derive(Deserialize, ToSchema)]
#[allow(
    dead_code,
    reason = "fields are parsed to check the shape and describe it in the schema; the stored body is the client's JSON"
)]
pub(crate) struct DashboardTile {
    /// A saved insight's id, or
    insight: Option<i64>,
    /// a text tile `{"body": "…"}`.
    #[schema(value_type = Option<Object>)]
    text: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[allow(
    dead_code,
    reason = "fields are parsed to check the shape and describe it in the schema; the stored body is the client's JSON"
)]
pub(crate) struct AnnotationBody {
    content: String,
    /// RFC 3339 time the note is about.
    date_marker: String,
    /// project (default) or organization.
    scope: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[allow(
    dead_code,
    reason = "fields are parsed to check the shape and describe it in the schema; the stored body is the client's JSON"
)]
pub(crate) struct FeatureFlagBody {
    /// Letters, digits, `-` and `_`; unique in the project.
    key: String,
    /// What the flag is for.
    name: Option<String>,
    active: Option<bool>,
    /// PostHog's `filters`: `groups` of conditions with rollout
    /// percentages, `multivariate` variants, `payloads`,
    /// `aggregation_group_type_index`.
    #[schema(value_type = Object)]
    filters: Value,
    ensure_experience_continuity: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[allow(
    dead_code,
    reason = "fields are parsed to check the shape and describe it in the schema; the stored body is the client's JSON"
)]
pub(crate) struct ExperimentBody {
    name: String,
    description: Option<String>,
    /// The multivariate flag that splits users; created when missing.
    feature_flag_key: String,
    /// `{"feature_flag_variants": [{"key", "rollout_percentage"}]}`.
    #[schema(value_type = Option<Object>)]
    parameters: Option<Value>,
    /// Insight queries that measure it.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    metrics: Vec<Value>,
    start_date: Option<String>,
    end_date: Option<String>,
}

/// What a valid body implies for storage and follow-up checks.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    /// The flag key, kept unique by the store.
    pub unique_key: Option<String>,
    /// Dashboard tiles' insight ids, which must exist in the project.
    pub insights: Vec<i64>,
    /// An experiment's flag key and the variants it asks for.
    pub experiment_flag: Option<(String, Vec<Value>)>,
}

fn check_rfc3339(kind: EntityKind, field: &str, text: &str) -> Result<(), ApiError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|_| ())
        .map_err(|e| invalid(kind, format!("`{field}` {text:?} is not an RFC 3339 time: {e}")))
}

/// Checks a body of `kind`.
pub(crate) fn check(kind: EntityKind, body: &Value) -> Result<Checked, ApiError> {
    let mut checked = Checked::default();
    match kind {
        EntityKind::Action => {
            let action: ActionBody = typed(kind, body)?;
            check_text(kind, "name", &action.name, 400)?;
            if action.steps.is_empty() || action.steps.len() > 50 {
                return Err(invalid(kind, "`steps` must hold 1 to 50 steps"));
            }
            for step in &action.steps {
                let filters = Value::Array(step.properties.clone());
                serde_json::from_value::<Vec<warren_query::model::PropertyFilter>>(filters)
                    .map_err(|e| invalid(kind, format!("step properties: {e}")))?;
                match (step.url_matching.as_deref().unwrap_or("contains"), &step.url) {
                    ("regex", Some(url)) => {
                        regex::Regex::new(url).map_err(|e| invalid(kind, format!("step url regex: {e}")))?;
                    }
                    ("contains" | "exact" | "regex", _) => {}
                    (other, _) => {
                        return Err(invalid(
                            kind,
                            format!("url_matching {other:?}: use contains, exact or regex"),
                        ))
                    }
                }
            }
        }
        EntityKind::Cohort => {
            let cohort: CohortBody = typed(kind, body)?;
            check_text(kind, "name", &cohort.name, 400)?;
            match (&cohort.filters, cohort.is_static) {
                (Some(filters), false) => {
                    warren_query::catalog::CohortDefinition::parse(filters).map_err(|e| invalid(kind, e))?;
                }
                (None, false) => return Err(invalid(kind, "a dynamic cohort needs `filters`")),
                (_, true) => {}
            }
        }
        EntityKind::Insight => {
            let insight: InsightBody = typed(kind, body)?;
            if let Some(query) = &insight.query {
                let inner = match query.get("kind").and_then(Value::as_str) {
                    Some("InsightVizNode" | "DataVisualizationNode" | "DataTableNode") => {
                        query.get("source").ok_or_else(|| invalid(kind, "the query node has no `source`"))?
                    }
                    _ => query,
                };
                serde_json::from_value::<warren_query::Query>(inner.clone())
                    .map_err(|e| invalid(kind, format!("query: {e}")))?;
            }
        }
        EntityKind::Dashboard => {
            let dashboard: DashboardBody = typed(kind, body)?;
            check_text(kind, "name", &dashboard.name, 400)?;
            for tile in &dashboard.tiles {
                match (tile.insight, &tile.text) {
                    (Some(insight), None) => checked.insights.push(insight),
                    (None, Some(text)) if text.get("body").is_some_and(Value::is_string) => {}
                    _ => {
                        return Err(invalid(
                            kind,
                            "a tile is `{\"insight\": id}` or `{\"text\": {\"body\": \"…\"}}`",
                        ))
                    }
                }
            }
        }
        EntityKind::Annotation => {
            let annotation: AnnotationBody = typed(kind, body)?;
            check_text(kind, "content", &annotation.content, 4000)?;
            check_rfc3339(kind, "date_marker", &annotation.date_marker)?;
            if let Some(scope) = annotation.scope.as_deref() {
                if !matches!(scope, "project" | "organization") {
                    return Err(invalid(kind, format!("scope {scope:?}: use project or organization")));
                }
            }
        }
        EntityKind::FeatureFlag => {
            let flag: FeatureFlagBody = typed(kind, body)?;
            let valid_key = !flag.key.is_empty()
                && flag.key.len() <= 400
                && flag.key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_key {
                return Err(invalid(kind, "`key` must be 1 to 400 letters, digits, `-` or `_`"));
            }
            let filters: FlagFilters =
                serde_json::from_value(flag.filters).map_err(|e| invalid(kind, format!("filters: {e}")))?;
            flags::validate(&filters).map_err(|e| invalid(kind, e))?;
            checked.unique_key = Some(flag.key);
        }
        EntityKind::Experiment => {
            let experiment: ExperimentBody = typed(kind, body)?;
            check_text(kind, "name", &experiment.name, 400)?;
            for (field, date) in [("start_date", &experiment.start_date), ("end_date", &experiment.end_date)]
            {
                if let Some(date) = date {
                    check_rfc3339(kind, field, date)?;
                }
            }
            let variants = experiment
                .parameters
                .as_ref()
                .and_then(|p| p.get("feature_flag_variants"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            checked.experiment_flag = Some((experiment.feature_flag_key, variants));
        }
    }
    Ok(checked)
}
