//! Retention: cohorts of actors by the interval of their start event (the
//! first ever, or every one), and how many came back with the return
//! event in each later interval.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use serde_json::{json, Value};

use super::{actor, bucket_cell, bucket_of, filters_only, has_actor, project_only, scope};
use crate::backend::QueryBackend;
use crate::filters;
use crate::model::{EntityRef, Interval, RetentionQuery};
use crate::plan::{Aggregate, BinaryOp, Column, Expr, JoinKind, Select, Source};
use crate::project::ProjectContext;
use crate::time::{shift, TimeRange};
use crate::QueryError;

const DEFAULT_INTERVALS: usize = 11;

fn event_of(entity: Option<&EntityRef>) -> Result<Expr, QueryError> {
    let Some(entity) = entity else { return Ok(filters::event_is(Some("$pageview"))) };
    match entity.kind.as_deref().unwrap_or("events") {
        "events" => {}
        other => {
            return Err(QueryError::invalid(format!(
                "retention entity type {other:?} is not supported (use events)"
            )))
        }
    }
    Ok(match &entity.id {
        Some(Value::String(name)) => filters::event_is(Some(name)),
        Some(Value::Null) | None => filters::event_is(entity.name.as_deref()),
        Some(other) => {
            return Err(QueryError::invalid(format!(
                "retention entity id must be an event name, got {other}"
            )))
        }
    })
}

fn period(name: Option<&str>) -> Result<(Interval, &'static str), QueryError> {
    Ok(match name.unwrap_or("Day") {
        "Hour" | "hour" => (Interval::Hour, "Hour"),
        "Day" | "day" => (Interval::Day, "Day"),
        "Week" | "week" => (Interval::Week, "Week"),
        "Month" | "month" => (Interval::Month, "Month"),
        other => {
            return Err(QueryError::invalid(format!(
                "unknown retention period {other:?} (Hour, Day, Week, Month)"
            )))
        }
    })
}

pub async fn run(
    query: &RetentionQuery,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<Value, QueryError> {
    let filter = &query.retention_filter;
    let (interval, period_name) = period(filter.period.as_deref())?;
    let intervals = filter.total_intervals.unwrap_or(DEFAULT_INTERVALS).clamp(1, 400);
    let first_time = match filter.retention_type.as_deref().unwrap_or("retention_recurring") {
        "retention_first_time" => true,
        "retention_recurring" | "retention" => false,
        other => return Err(QueryError::invalid(format!("unknown retention_type {other:?}"))),
    };
    // The cohorts: `intervals` intervals ending with the one holding date_to.
    let date_to = query.common.date_range.as_ref().and_then(|r| r.date_to.as_deref());
    let last = crate::time::end_of(date_to, project)?;
    let last_bucket =
        crate::time::bucket_start(project.local(last - 1), interval, project.week_starts_monday);
    let buckets: Vec<NaiveDateTime> =
        (0..intervals).rev().map(|i| shift(last_bucket, interval, -(i as i32))).collect();
    let range = TimeRange {
        from_us: project.utc_us(buckets[0]),
        to_us: project.utc_us(shift(last_bucket, interval, 1)),
        interval,
        buckets,
    };

    let target = event_of(filter.target_entity.as_ref())?;
    let returning = event_of(filter.returning_entity.as_ref().or(filter.target_entity.as_ref()))?;
    let actor = actor(&query.common)?;
    let in_range = scope(&query.common, project, range.from_us, range.to_us)?.and(has_actor(&query.common)?);

    let cohort = if first_time {
        let firsts = Select::from(Source::Events)
            .column("actor", actor.clone())
            .column("first", Expr::aggregate(Aggregate::Min(Box::new(Expr::col(Column::Timestamp)))))
            .filter(
                project_only(project)
                    .and(filters_only(&query.common, project)?)
                    .and(target)
                    .and(has_actor(&query.common)?),
            )
            .group_by(Expr::name("actor"));
        let first = Expr::reference("firsts", "first");
        Select::from(firsts.into_source("firsts"))
            .column("actor", Expr::reference("firsts", "actor"))
            .column("start", bucket_of(project, interval, first.clone()))
            .filter(first.clone().binary(BinaryOp::GtEq, Expr::timestamp(range.from_us)))
            .filter(first.binary(BinaryOp::Lt, Expr::timestamp(range.to_us)))
    } else {
        Select::from(Source::Events)
            .distinct()
            .column("actor", actor.clone())
            .column("start", bucket_of(project, interval, Expr::col(Column::Timestamp)))
            .filter(in_range.clone().and(target))
    };
    let returns = Select::from(Source::Events)
        .distinct()
        .column("actor", actor)
        .column("back", bucket_of(project, interval, Expr::col(Column::Timestamp)))
        .filter(in_range.and(returning));

    let sizes = Select::from(cohort.clone().into_source("cohort"))
        .column("start", Expr::reference("cohort", "start"))
        .column(
            "actors",
            Expr::aggregate(Aggregate::CountDistinct(Box::new(Expr::reference("cohort", "actor")))),
        )
        .group_by(Expr::reference("cohort", "start"));
    let joined = Source::Join {
        left: Box::new(cohort.into_source("cohort")),
        right: Box::new(returns.into_source("returns")),
        kind: JoinKind::Inner,
        on: Expr::reference("cohort", "actor")
            .eq(Expr::reference("returns", "actor"))
            .and(Expr::reference("returns", "back").binary(BinaryOp::Gt, Expr::reference("cohort", "start"))),
    };
    let came_back = Select::from(joined)
        .column("start", Expr::reference("cohort", "start"))
        .column("back", Expr::reference("returns", "back"))
        .column(
            "actors",
            Expr::aggregate(Aggregate::CountDistinct(Box::new(Expr::reference("cohort", "actor")))),
        )
        .group_by(Expr::reference("cohort", "start"))
        .group_by(Expr::reference("returns", "back"));

    let mut counts: HashMap<(usize, usize), u64> = HashMap::new();
    for row in backend.run(project, &sizes).await?.rows {
        if let (Some(start), Some(n)) =
            (bucket_cell(&row[0]).and_then(|b| range.index_of(b)), row[1].as_i64())
        {
            counts.insert((start, 0), n as u64);
        }
    }
    for row in backend.run(project, &came_back).await?.rows {
        let start = bucket_cell(&row[0]).and_then(|b| range.index_of(b));
        let back = bucket_cell(&row[1]).and_then(|b| range.index_of(b));
        if let (Some(start), Some(back), Some(n)) = (start, back, row[2].as_i64()) {
            counts.insert((start, back - start), n as u64);
        }
    }
    let results: Vec<Value> = range
        .buckets
        .iter()
        .enumerate()
        .map(|(i, bucket)| {
            let values: Vec<Value> = (0..intervals - i)
                .map(|p| json!({"count": counts.get(&(i, p)).copied().unwrap_or(0), "label": format!("{period_name} {p}")}))
                .collect();
            json!({
                "date": bucket.format("%Y-%m-%dT%H:%M:%S").to_string(),
                "label": format!("{period_name} {i}"),
                "values": values,
            })
        })
        .collect();
    Ok(Value::Array(results))
}
