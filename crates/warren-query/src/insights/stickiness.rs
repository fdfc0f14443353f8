//! Stickiness: how many actors did the event in exactly (or, cumulative,
//! at least) N of the range's intervals.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{actor, has_actor, scope, Series};
use crate::backend::{Cell, QueryBackend};
use crate::model::StickinessQuery;
use crate::plan::{Aggregate, Column, Expr, Select, Source};
use crate::project::ProjectContext;
use crate::time::TimeRange;
use crate::QueryError;

pub async fn run(
    query: &StickinessQuery,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<Value, QueryError> {
    let series = Series::read(&query.series, project)?;
    let interval = query.common.interval.unwrap_or_default();
    let range = super::time_range(&query.common, interval, project, backend).await?;
    let filter = query.stickiness_filter.clone().unwrap_or_default();
    let cumulative = filter.computed_as.as_deref() == Some("cumulative");
    let mut periods = vec![("current", range.clone())];
    if filter.compare == Some(true) {
        periods.push(("previous", range.previous(project)));
    }
    let mut results = Vec::new();
    for (period, range) in &periods {
        for s in &series {
            let counts = intervals_per_actor(query, s, range, project, backend).await?;
            let n = range.buckets.len();
            let mut data: Vec<u64> = (1..=n).map(|k| counts.get(&(k as i64)).copied().unwrap_or(0)).collect();
            if cumulative {
                for k in (0..n.saturating_sub(1)).rev() {
                    data[k] += data[k + 1];
                }
            }
            let name = range.interval.name();
            let mut item = json!({
                "action": s.action(),
                "label": s.label,
                "count": data.iter().sum::<u64>(),
                "data": data,
                "labels": (1..=n).map(|k| format!("{k} {name}{}", if k == 1 { "" } else { "s" })).collect::<Vec<_>>(),
                "days": (1..=n).collect::<Vec<_>>(),
                "compare": periods.len() > 1,
            });
            if periods.len() > 1 {
                item["compare_label"] = json!(period);
            }
            results.push(item);
        }
    }
    Ok(Value::Array(results))
}

/// Number of active intervals → number of actors.
async fn intervals_per_actor(
    query: &StickinessQuery,
    series: &Series,
    range: &TimeRange,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<HashMap<i64, u64>, QueryError> {
    let per_actor = Select::from(Source::Events)
        .column("actor", actor(&query.common)?)
        .column(
            "intervals",
            Expr::aggregate(Aggregate::CountDistinct(Box::new(super::bucket_of(
                project,
                range.interval,
                Expr::col(Column::Timestamp),
            )))),
        )
        .filter(scope(&query.common, project, range.from_us, range.to_us)?)
        .filter(series.condition.clone())
        .filter(has_actor(&query.common)?)
        .group_by(Expr::name("actor"));
    let select = Select::from(per_actor.into_source("per_actor"))
        .column("intervals", Expr::reference("per_actor", "intervals"))
        .column("actors", Expr::aggregate(Aggregate::CountAll))
        .group_by(Expr::reference("per_actor", "intervals"));
    let rows = backend.run(project, &select).await?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|r| Some((r.first().and_then(Cell::as_i64)?, r.get(1).and_then(Cell::as_i64)? as u64)))
        .collect())
}
