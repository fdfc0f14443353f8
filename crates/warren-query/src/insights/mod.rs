//! Insights: each kind in its own module with the same shape — read the
//! query, build neutral plans, run them on a [`QueryBackend`], and assemble
//! PostHog's result shape from the rows. Nothing here knows an engine.
//! SQL (`sql`) and lists of events (`events`) answer through the same door.

mod events;
mod formula;
mod funnels;
mod lifecycle;
mod paths;
mod retention;
mod sql;
mod stickiness;
mod trends;

use serde_json::{json, Value};

use crate::backend::{Cell, QueryBackend};
use crate::filters;
use crate::model::{Common, EventsNode, Interval, Query, SeriesNode};
use crate::plan::{Aggregate, Bucketing, Column, Expr, Select, Source};
use crate::project::ProjectContext;
use crate::time::TimeRange;
use crate::QueryError;

/// PostHog's sentinels for breakdown buckets.
pub const BREAKDOWN_OTHER: &str = "$$_posthog_breakdown_other_$$";
pub const BREAKDOWN_NULL: &str = "$$_posthog_breakdown_null_$$";

/// Runs one query and answers its `results` (and, for SQL, the columns).
pub async fn run(
    query: &Query,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<Value, QueryError> {
    let results = match query {
        Query::TrendsQuery(q) => trends::run(q, project, backend).await?,
        Query::FunnelsQuery(q) => funnels::run(q, project, backend).await?,
        Query::RetentionQuery(q) => retention::run(q, project, backend).await?,
        Query::StickinessQuery(q) => stickiness::run(q, project, backend).await?,
        Query::LifecycleQuery(q) => lifecycle::run(q, project, backend).await?,
        Query::PathsQuery(q) => paths::run(q, project, backend).await?,
        Query::HogQLQuery(q) => return sql::run(q, project, backend).await,
        Query::EventsQuery(q) => return events::run(q, project, backend).await,
    };
    Ok(json!({
        "results": results,
        "timezone": project.time_zone.name(),
        "is_cached": false,
        "last_refresh": project.now.to_rfc3339(),
    }))
}

/// One series entry, read and checked.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub index: usize,
    pub event: Option<String>,
    pub node: EventsNode,
    /// The event name (or "All events") unless a custom name is set.
    pub label: String,
    /// Its own filters and the event test.
    pub condition: Expr,
}

impl Series {
    pub fn read(series: &[SeriesNode], project: &ProjectContext) -> Result<Vec<Series>, QueryError> {
        if series.is_empty() {
            return Err(QueryError::invalid("series is empty: give at least one EventsNode"));
        }
        series
            .iter()
            .enumerate()
            .map(|(index, node)| match node {
                SeriesNode::EventsNode(node) => {
                    let event = node.event.clone();
                    let label = node
                        .custom_name
                        .clone()
                        .or_else(|| node.name.clone())
                        .or_else(|| event.clone())
                        .unwrap_or_else(|| "All events".into());
                    let condition =
                        filters::event_is(event.as_deref()).and(filters::all_of(&node.properties, project)?);
                    Ok(Series { index, event, node: node.clone(), label, condition })
                }
                SeriesNode::ActionsNode(node) => {
                    let (action, matches) = crate::catalog::action(project, &node.id)?;
                    let label = node.series.custom_name.clone().unwrap_or_else(|| action.name.clone());
                    let condition = matches.and(filters::all_of(&node.series.properties, project)?);
                    // Downstream an action is a series of no single event
                    // name, labelled with the action's.
                    let events_node =
                        EventsNode { event: None, name: Some(action.name.clone()), ..node.series.clone() };
                    Ok(Series { index, event: None, node: events_node, label, condition })
                }
            })
            .collect()
    }

    /// PostHog's `action` object for this series.
    pub fn action(&self) -> Value {
        json!({
            "id": self.event,
            "type": "events",
            "order": self.index,
            "name": self.event.clone().unwrap_or_else(|| "All events".into()),
            "custom_name": self.node.custom_name,
            "math": self.node.math,
            "math_property": self.node.math_property,
            "properties": [],
        })
    }
}

/// The conditions every event of a query must meet: the project, the time
/// range, the query's property filters, and test-account filters if asked.
pub(crate) fn scope(
    common: &Common,
    project: &ProjectContext,
    from_us: i64,
    to_us: i64,
) -> Result<Expr, QueryError> {
    Ok(project_only(project)
        .and(Expr::col(Column::Timestamp).binary(crate::plan::BinaryOp::GtEq, Expr::timestamp(from_us)))
        .and(Expr::col(Column::Timestamp).binary(crate::plan::BinaryOp::Lt, Expr::timestamp(to_us)))
        .and(filters_only(common, project)?))
}

/// The query's property filters and, if asked, the test-account filters.
pub(crate) fn filters_only(common: &Common, project: &ProjectContext) -> Result<Expr, QueryError> {
    let mut condition = filters::properties(common.properties.as_ref(), project)?;
    if common.filter_test_accounts == Some(true) {
        condition = condition.and(filters::all_of(&project.test_account_filters, project)?);
    }
    Ok(condition)
}

/// Only the project; for questions about all time (first-ever events).
pub(crate) fn project_only(project: &ProjectContext) -> Expr {
    Expr::col(Column::TeamId).eq(Expr::int(project.team_id))
}

pub(crate) fn bucketing(project: &ProjectContext, interval: Interval) -> Bucketing {
    Bucketing {
        interval,
        time_zone: project.time_zone.name().to_string(),
        week_starts_monday: project.week_starts_monday,
    }
}

pub(crate) fn bucket_of(project: &ProjectContext, interval: Interval, expr: Expr) -> Expr {
    Expr::Bucket { bucketing: bucketing(project, interval), expr: Box::new(expr) }
}

/// Whom an insight counts: persons, or groups of one type.
pub(crate) fn actor(common: &Common) -> Result<Expr, QueryError> {
    match common.aggregation_group_type_index {
        None => Ok(Expr::col(Column::PersonId)),
        Some(i) if i < 5 => Ok(Expr::col(Column::Group(i))),
        Some(_) => Err(QueryError::invalid("aggregation_group_type_index must be 0 to 4")),
    }
}

/// Rows without an actor do not count: personless events when counting
/// persons, events without a group when counting groups.
pub(crate) fn has_actor(common: &Common) -> Result<Expr, QueryError> {
    Ok(match common.aggregation_group_type_index {
        None => {
            Expr::col(Column::PersonMode).binary(crate::plan::BinaryOp::NotEq, Expr::text("propertyless"))
        }
        Some(_) => actor(common)?.binary(crate::plan::BinaryOp::NotEq, Expr::text("")),
    })
}

/// The time range a query asks for, with "all" resolved from the data.
pub(crate) async fn time_range(
    common: &Common,
    interval: Interval,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<TimeRange, QueryError> {
    let wants_all = common.date_range.as_ref().and_then(|r| r.date_from.as_deref()) == Some("all");
    let earliest = if wants_all {
        let select = Select::from(Source::Events)
            .column("first", Expr::aggregate(Aggregate::Min(Box::new(Expr::col(Column::Timestamp)))))
            .filter(project_only(project));
        let rows = backend.run(project, &select).await?;
        rows.rows.first().and_then(|r| r.first()).and_then(Cell::as_i64)
    } else {
        None
    };
    TimeRange::resolve(common.date_range.as_ref(), interval, project, earliest)
}

/// A local bucket start read back from a row.
pub(crate) fn bucket_cell(cell: &Cell) -> Option<chrono::NaiveDateTime> {
    match cell {
        Cell::Timestamp { us, .. } => chrono::DateTime::from_timestamp_micros(*us).map(|t| t.naive_utc()),
        _ => None,
    }
}
