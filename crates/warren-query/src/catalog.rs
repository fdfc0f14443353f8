//! Actions and cohorts: a project's saved definitions that queries name by
//! id (`ActionsNode` series, `{"type": "cohort"}` filters). The caller loads
//! them from the meta store into a [`Catalog`]; planning turns them into
//! plain conditions on event rows, so no backend needs to know of them.
//!
//! Cohort membership follows this engine's persons-on-events reading: a
//! person-property condition holds for the events whose stored person
//! properties match; "performed event in the last N days" is a subquery over
//! the project's events.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::filters;
use crate::model::{GroupOperator, PropertyFilter};
use crate::plan::{BinaryOp, Column, Expr, Literal, PropertySource, Select, Source};
use crate::project::ProjectContext;
use crate::QueryError;

/// Definitions a query may name, by id.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub actions: HashMap<i64, Action>,
    pub cohorts: HashMap<i64, Cohort>,
}

/// An action: any of its steps matching makes an event count.
#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    pub name: String,
    pub steps: Vec<ActionStep>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActionStep {
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
    #[serde(default)]
    pub url: Option<String>,
    /// contains (default), exact or regex, on `$current_url`.
    #[serde(default)]
    pub url_matching: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Cohort {
    /// Person uuids, as listed.
    Static(Vec<String>),
    Dynamic(CohortGroup),
}

/// A dynamic cohort's `filters`: `{"properties": {"type", "values"}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct CohortDefinition {
    pub properties: CohortGroup,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CohortGroup {
    #[serde(rename = "type")]
    pub kind: GroupOperator,
    pub values: Vec<CohortItem>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CohortItem {
    Group(CohortGroup),
    Filter(CohortFilter),
}

/// A person-property filter (`type: person`) or a behavioural one
/// (`type: behavioral`, `value: performed_event`, `key`: the event,
/// `time_value` `time_interval`s back).
#[derive(Debug, Clone, Deserialize)]
pub struct CohortFilter {
    pub key: String,
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub operator: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub negation: bool,
    #[serde(default)]
    pub time_value: Option<i64>,
    #[serde(default)]
    pub time_interval: Option<String>,
}

const MAX_DEPTH: usize = 8;

impl CohortDefinition {
    /// Reads and checks a dynamic cohort's `filters`.
    pub fn parse(filters: &Value) -> Result<Self, String> {
        let definition: CohortDefinition =
            serde_json::from_value(filters.clone()).map_err(|e| format!("filters: {e}"))?;
        check_group(&definition.properties, 0)?;
        Ok(definition)
    }
}

fn check_group(group: &CohortGroup, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("filters nest deeper than {MAX_DEPTH} groups"));
    }
    for item in &group.values {
        match item {
            CohortItem::Group(inner) => check_group(inner, depth + 1)?,
            CohortItem::Filter(filter) => match filter.kind.as_str() {
                "person" => {
                    // The query engine's filter rules are the person rules.
                    let project =
                        ProjectContext::new(0, "UTC", chrono::Utc::now()).map_err(|e| e.to_string())?;
                    filters::filter(&filter.as_property_filter(), &project).map_err(|e| e.to_string())?;
                }
                "behavioral" => {
                    if filter.value != "performed_event" {
                        return Err(format!(
                            "behavioural filter {:?}: only performed_event is supported",
                            filter.value
                        ));
                    }
                    filter.window_days()?;
                }
                other => {
                    return Err(format!(
                        "cohort filters of type {other:?} are not supported (use person or behavioral)"
                    ))
                }
            },
        }
    }
    Ok(())
}

impl CohortFilter {
    fn as_property_filter(&self) -> PropertyFilter {
        PropertyFilter {
            key: self.key.clone(),
            value: self.value.clone(),
            operator: self.operator.clone(),
            kind: "person".into(),
            group_type_index: None,
        }
    }

    fn window_days(&self) -> Result<i64, String> {
        let value = self.time_value.ok_or("a behavioural filter needs time_value")?;
        let unit = match self.time_interval.as_deref().unwrap_or("day") {
            "day" => 1,
            "week" => 7,
            "month" => 30,
            "year" => 365,
            other => return Err(format!("time_interval {other:?}: use day, week, month or year")),
        };
        if !(1..=3650).contains(&value) {
            return Err("time_value must be 1 to 3650".into());
        }
        Ok(value * unit)
    }
}

fn id_of(id: &Value) -> Option<i64> {
    id.as_i64().or_else(|| id.as_str().and_then(|s| s.parse().ok()))
}

/// The condition an event meets when it counts as action `id`, and the action.
pub(crate) fn action<'a>(project: &'a ProjectContext, id: &Value) -> Result<(&'a Action, Expr), QueryError> {
    let action = id_of(id)
        .and_then(|id| project.catalog.actions.get(&id))
        .ok_or_else(|| QueryError::invalid(format!("action {id} does not exist in this project")))?;
    let steps = action
        .steps
        .iter()
        .map(|step| {
            let mut condition =
                filters::event_is(step.event.as_deref()).and(filters::all_of(&step.properties, project)?);
            if let Some(url) = &step.url {
                let current_url =
                    Expr::Property { source: PropertySource::Event, key: "$current_url".into() };
                condition = condition.and(match step.url_matching.as_deref().unwrap_or("contains") {
                    "exact" => current_url.eq(Expr::text(url)),
                    "regex" => {
                        Expr::RegexMatch { expr: Box::new(current_url), pattern: url.clone(), negated: false }
                    }
                    _ => Expr::Contains { expr: Box::new(current_url), needle: url.clone(), negated: false },
                });
            }
            Ok(condition)
        })
        .collect::<Result<Vec<_>, QueryError>>()?;
    Ok((action, Expr::any(steps)))
}

/// The condition an event meets when its person is in cohort `id`.
pub(crate) fn cohort(project: &ProjectContext, id: &Value) -> Result<Expr, QueryError> {
    let cohort = id_of(id)
        .and_then(|id| project.catalog.cohorts.get(&id))
        .ok_or_else(|| QueryError::invalid(format!("cohort {id} does not exist in this project")))?;
    match cohort {
        Cohort::Static(people) if people.is_empty() => Ok(Expr::Literal(Literal::Bool(false))),
        Cohort::Static(people) => Ok(Expr::InList {
            expr: Box::new(Expr::col(Column::PersonId)),
            list: people.iter().cloned().map(Literal::Text).collect(),
            negated: false,
        }),
        Cohort::Dynamic(group) => cohort_group(project, group),
    }
}

fn cohort_group(project: &ProjectContext, group: &CohortGroup) -> Result<Expr, QueryError> {
    let parts = group
        .values
        .iter()
        .map(|item| match item {
            CohortItem::Group(inner) => cohort_group(project, inner),
            CohortItem::Filter(filter) if filter.kind == "behavioral" => {
                let days = filter.window_days().map_err(QueryError::invalid)?;
                let since = project.now.timestamp_micros() - days * 86_400_000_000;
                let performed = Select::from(Source::Events)
                    .column("person_id", Expr::col(Column::PersonId))
                    .filter(Expr::col(Column::TeamId).eq(Expr::int(project.team_id)))
                    .filter(filters::event_is(Some(&filter.key)))
                    .filter(Expr::col(Column::Timestamp).binary(BinaryOp::GtEq, Expr::timestamp(since)));
                let within = Expr::InSelect {
                    expr: Box::new(Expr::col(Column::PersonId)),
                    select: Box::new(performed),
                };
                Ok(if filter.negation { not(within) } else { within })
            }
            CohortItem::Filter(filter) => {
                let condition = filters::filter(&filter.as_property_filter(), project)?;
                Ok(if filter.negation { not(condition) } else { condition })
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match group.kind {
        GroupOperator::And => Expr::all(parts),
        // An empty "any of" matches nobody, as in flag evaluation.
        GroupOperator::Or if parts.is_empty() => Expr::Literal(Literal::Bool(false)),
        GroupOperator::Or => Expr::any(parts),
    })
}

/// Negation where an unknown (a missing property, SQL NULL) counts as "does
/// not hold", so the person is in the negated set, as flags evaluate it.
pub(crate) fn not(condition: Expr) -> Expr {
    Expr::Not(Box::new(Expr::Coalesce(vec![condition, Expr::Literal(Literal::Bool(false))])))
}
