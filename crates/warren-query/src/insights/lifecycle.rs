//! Lifecycle: per interval, active persons split into new (created in that
//! interval), returning (active in the previous one too) and resurrecting
//! (not), and the dormant ones (active before, not now) as negative counts.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{bucket_cell, bucket_of, has_actor, scope, Series};
use crate::backend::QueryBackend;
use crate::model::LifecycleQuery;
use crate::plan::{Aggregate, Column, Expr, JoinKind, Select, Source};
use crate::project::ProjectContext;
use crate::time::{day_key, label, shift};
use crate::QueryError;

const STATUSES: [&str; 4] = ["new", "returning", "resurrecting", "dormant"];

pub async fn run(
    query: &LifecycleQuery,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<Value, QueryError> {
    if query.common.aggregation_group_type_index.is_some() {
        return Err(QueryError::invalid("lifecycle counts persons; aggregation by groups is not supported"));
    }
    let series = Series::read(&query.series, project)?;
    let [series] = series.as_slice() else {
        return Err(QueryError::invalid("lifecycle takes exactly one series"));
    };
    let interval = query.common.interval.unwrap_or_default();
    let range = super::time_range(&query.common, interval, project, backend).await?;
    let Some(first) = range.buckets.first() else { return Ok(json!([])) };
    // One interval before the range, to know who was active just before.
    let from_us = project.utc_us(shift(*first, interval, -1));

    let active = Select::from(Source::Events)
        .column("person", Expr::col(Column::PersonId))
        .column("bucket", bucket_of(project, interval, Expr::col(Column::Timestamp)))
        .column(
            "created",
            Expr::aggregate(Aggregate::Min(Box::new(bucket_of(
                project,
                interval,
                Expr::col(Column::PersonCreatedAt),
            )))),
        )
        .filter(scope(&query.common, project, from_us, range.to_us)?)
        .filter(series.condition.clone())
        .filter(has_actor(&query.common)?)
        .group_by(Expr::name("person"))
        .group_by(Expr::name("bucket"));
    let next_of_previous =
        Expr::ShiftBucket { interval, n: 1, expr: Box::new(Expr::reference("previous", "bucket")) };
    let joined = Source::Join {
        left: Box::new(active.clone().into_source("current")),
        right: Box::new(active.into_source("previous")),
        kind: JoinKind::Full,
        on: Expr::reference("current", "person")
            .eq(Expr::reference("previous", "person"))
            .and(Expr::reference("current", "bucket").eq(next_of_previous.clone())),
    };
    let status = Expr::Case {
        branches: vec![
            (Expr::IsNull(Box::new(Expr::reference("current", "person"))), Expr::text("dormant")),
            (
                Expr::reference("current", "created").eq(Expr::reference("current", "bucket")),
                Expr::text("new"),
            ),
            (Expr::IsNotNull(Box::new(Expr::reference("previous", "person"))), Expr::text("returning")),
        ],
        otherwise: Box::new(Expr::text("resurrecting")),
    };
    let classified = Select::from(joined)
        .column("bucket", Expr::Coalesce(vec![Expr::reference("current", "bucket"), next_of_previous]))
        .column("status", status);
    let select = Select::from(classified.into_source("classified"))
        .column("bucket", Expr::reference("classified", "bucket"))
        .column("status", Expr::reference("classified", "status"))
        .column("persons", Expr::aggregate(Aggregate::CountAll))
        .group_by(Expr::reference("classified", "bucket"))
        .group_by(Expr::reference("classified", "status"));
    let rows = backend.run(project, &select).await?;
    let mut counts: HashMap<(&str, usize), i64> = HashMap::new();
    for row in &rows.rows {
        let (Some(i), Some(status), Some(n)) =
            (bucket_cell(&row[0]).and_then(|b| range.index_of(b)), row[1].as_str(), row[2].as_i64())
        else {
            continue;
        };
        if let Some(status) = STATUSES.iter().find(|s| **s == status) {
            counts.insert((status, i), if *status == "dormant" { -n } else { n });
        }
    }
    let labels: Vec<String> = range.buckets.iter().map(|b| label(*b, interval)).collect();
    let days: Vec<String> = range.buckets.iter().map(|b| day_key(*b, interval)).collect();
    Ok(Value::Array(
        STATUSES
            .iter()
            .map(|status| {
                let data: Vec<i64> = (0..range.buckets.len())
                    .map(|i| counts.get(&(*status, i)).copied().unwrap_or(0))
                    .collect();
                json!({
                    "action": series.action(),
                    "label": format!("{} - {status}", series.label),
                    "status": status,
                    "count": data.iter().sum::<i64>(),
                    "data": data,
                    "labels": labels,
                    "days": days,
                })
            })
            .collect(),
    ))
}
