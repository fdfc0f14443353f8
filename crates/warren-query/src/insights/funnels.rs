//! Funnels: per actor, the path through the steps (the backend's funnel
//! aggregate over their events), then counts, conversion times, the
//! conversion-over-time view and the time-to-convert histogram.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::trends::breakdown_expr;
use super::{actor, has_actor, scope, Series, BREAKDOWN_OTHER};
use crate::backend::{Cell, QueryBackend};
use crate::filters;
use crate::model::{FunnelsFilter, FunnelsQuery};
use crate::plan::{Aggregate, Attribution, Column, Expr, FunnelOrder, FunnelSpec, Literal, Select, Source};
use crate::project::ProjectContext;
use crate::time::{bucket_start, day_key, label};
use crate::QueryError;

const DEFAULT_BREAKDOWN_LIMIT: usize = 25;
const SECOND_US: i64 = 1_000_000;

fn window_us(filter: &FunnelsFilter) -> Result<i64, QueryError> {
    let amount = filter.funnel_window_interval.unwrap_or(14).max(1) as i64;
    let unit = match filter.funnel_window_interval_unit.as_deref().unwrap_or("day") {
        "second" => SECOND_US,
        "minute" => 60 * SECOND_US,
        "hour" => 3_600 * SECOND_US,
        "day" => 86_400 * SECOND_US,
        "week" => 7 * 86_400 * SECOND_US,
        "month" => 30 * 86_400 * SECOND_US,
        other => return Err(QueryError::invalid(format!("unknown funnel window unit {other:?}"))),
    };
    amount.checked_mul(unit).ok_or_else(|| QueryError::invalid("funnel window is too long"))
}

fn spec_of(filter: &FunnelsFilter, steps: usize) -> Result<FunnelSpec, QueryError> {
    let order = match filter.funnel_order_type.as_deref().unwrap_or("ordered") {
        "ordered" => FunnelOrder::Ordered,
        "strict" => FunnelOrder::Strict,
        "unordered" => FunnelOrder::Unordered,
        other => {
            return Err(QueryError::invalid(format!(
                "unknown funnelOrderType {other:?} (ordered, strict, unordered)"
            )))
        }
    };
    let attribution = match filter.breakdown_attribution_type.as_deref().unwrap_or("first_touch") {
        "first_touch" => Attribution::FirstTouch,
        "last_touch" => Attribution::LastTouch,
        "all_events" => Attribution::AllEvents,
        "step" => {
            let step = filter
                .breakdown_attribution_value
                .ok_or_else(|| QueryError::invalid("step attribution needs breakdownAttributionValue"))?;
            if step >= steps {
                return Err(QueryError::invalid(format!(
                    "breakdownAttributionValue {step} is past the last step"
                )));
            }
            Attribution::Step(step)
        }
        other => return Err(QueryError::invalid(format!("unknown breakdownAttributionType {other:?}"))),
    };
    let mut exclusions = Vec::new();
    for e in &filter.exclusions {
        if e.funnel_from_step >= e.funnel_to_step || e.funnel_to_step >= steps {
            return Err(QueryError::invalid(format!(
                "exclusion between steps {} and {} is not inside the funnel's {steps} steps",
                e.funnel_from_step, e.funnel_to_step
            )));
        }
        exclusions.push((e.funnel_from_step, e.funnel_to_step));
    }
    if exclusions.len() > 31 {
        return Err(QueryError::invalid("at most 31 exclusions"));
    }
    Ok(FunnelSpec { steps, window_us: window_us(filter)?, order, exclusions, attribution })
}

/// One actor's result, read back.
struct PathRow {
    times: Vec<i64>,
    breakdown: Option<String>,
}

pub async fn run(
    query: &FunnelsQuery,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<Value, QueryError> {
    let series = Series::read(&query.series, project)?;
    if series.len() < 2 || series.len() > 31 {
        return Err(QueryError::invalid("a funnel has 2 to 31 steps"));
    }
    let filter = query.funnels_filter.clone().unwrap_or_default();
    let spec = spec_of(&filter, series.len())?;
    let interval = query.common.interval.unwrap_or_default();
    let range = super::time_range(&query.common, interval, project, backend).await?;

    let mut mask_terms = Vec::new();
    let mut any_match = Vec::new();
    for s in &series {
        mask_terms.push((s.condition.clone(), 1i64 << s.index));
        any_match.push(s.condition.clone());
    }
    for (j, e) in filter.exclusions.iter().enumerate() {
        let condition = filters::event_is(e.event.as_deref()).and(filters::all_of(&e.properties, project)?);
        mask_terms.push((condition.clone(), 1i64 << (32 + j)));
        any_match.push(condition);
    }
    let mask = mask_terms
        .into_iter()
        .map(|(condition, bit)| Expr::Case {
            branches: vec![(condition, Expr::int(bit))],
            otherwise: Box::new(Expr::int(0)),
        })
        .reduce(|a, b| a.binary(crate::plan::BinaryOp::Add, b))
        .unwrap_or(Expr::int(0));
    let breakdown_filter = query.breakdown_filter.clone().unwrap_or_default();
    let breakdown = breakdown_expr(&breakdown_filter)?;

    let mut condition =
        scope(&query.common, project, range.from_us, range.to_us)?.and(has_actor(&query.common)?);
    // Strict funnels see every event: any other event breaks a path.
    if spec.order != FunnelOrder::Strict {
        condition = condition.and(Expr::any(any_match));
    }
    let mut select = Select::from(Source::Events)
        .column("actor", actor(&query.common)?)
        .column(
            "path",
            Expr::aggregate(Aggregate::Funnel {
                spec: spec.clone(),
                timestamp: Box::new(Expr::col(Column::Timestamp)),
                steps: Box::new(mask),
                breakdown: Box::new(breakdown.clone().unwrap_or(Expr::Literal(Literal::Null))),
            }),
        )
        .filter(condition)
        .group_by(Expr::name("actor"));
    if spec.attribution == Attribution::AllEvents {
        if let Some(b) = breakdown.clone() {
            select = select.column("breakdown", b).group_by(Expr::name("breakdown"));
        }
    }
    let rows = backend.run(project, &select).await?;
    let paths: Vec<PathRow> = rows
        .rows
        .iter()
        .filter_map(|row| {
            let path = row.get(1)?;
            let times: Vec<i64> = match path.field("times")? {
                Cell::List(items) => items.iter().filter_map(Cell::as_i64).collect(),
                _ => return None,
            };
            if times.is_empty() {
                return None;
            }
            let breakdown = path.field("breakdown").and_then(Cell::as_str).map(String::from);
            Some(PathRow { times, breakdown })
        })
        .collect();

    match filter.funnel_viz_type.as_deref().unwrap_or("steps") {
        "steps" => Ok(steps_view(&series, &paths, breakdown.is_some(), &breakdown_filter)),
        "trends" => trends_view(&series, &paths, &filter, &range, project),
        "time_to_convert" => time_to_convert(&series, &paths, &filter),
        other => Err(QueryError::invalid(format!(
            "unknown funnelVizType {other:?} (steps, trends, time_to_convert)"
        ))),
    }
}

fn seconds(us: f64) -> Value {
    json!(us / SECOND_US as f64)
}

fn median(values: &mut [i64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let n = values.len();
    Some(if n % 2 == 1 { values[n / 2] as f64 } else { (values[n / 2 - 1] + values[n / 2]) as f64 / 2.0 })
}

/// Steps of one group of paths in PostHog's shape.
fn steps_of(series: &[Series], paths: &[&PathRow], breakdown: Option<&str>) -> Vec<Value> {
    series
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let reached: Vec<&&PathRow> = paths.iter().filter(|p| p.times.len() > k).collect();
            let (average, median_time) = if k == 0 {
                (Value::Null, Value::Null)
            } else {
                let mut gaps: Vec<i64> = reached.iter().map(|p| p.times[k] - p.times[k - 1]).collect();
                let average = if gaps.is_empty() {
                    Value::Null
                } else {
                    seconds(gaps.iter().sum::<i64>() as f64 / gaps.len() as f64)
                };
                (average, median(&mut gaps).map_or(Value::Null, seconds))
            };
            let mut step = json!({
                "action_id": s.event,
                "name": s.event.clone().unwrap_or_else(|| "All events".into()),
                "custom_name": s.node.custom_name,
                "order": k,
                "type": "events",
                "count": reached.len(),
                "average_conversion_time": average,
                "median_conversion_time": median_time,
            });
            if let Some(b) = breakdown {
                step["breakdown"] = json!([b]);
                step["breakdown_value"] = json!([b]);
            }
            step
        })
        .collect()
}

fn steps_view(
    series: &[Series],
    paths: &[PathRow],
    has_breakdown: bool,
    filter: &crate::model::BreakdownFilter,
) -> Value {
    if !has_breakdown {
        let all: Vec<&PathRow> = paths.iter().collect();
        return Value::Array(steps_of(series, &all, None));
    }
    let mut groups: HashMap<String, Vec<&PathRow>> = HashMap::new();
    for path in paths {
        let key = path.breakdown.clone().unwrap_or_else(|| super::BREAKDOWN_NULL.to_string());
        groups.entry(key).or_default().push(path);
    }
    let mut ordered: Vec<(String, Vec<&PathRow>)> = groups.into_iter().collect();
    ordered.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
    let limit = filter.breakdown_limit.unwrap_or(DEFAULT_BREAKDOWN_LIMIT).max(1);
    if ordered.len() > limit {
        let rest: Vec<&PathRow> = ordered.drain(limit..).flat_map(|(_, p)| p).collect();
        if filter.breakdown_hide_other_aggregation != Some(true) {
            ordered.push((BREAKDOWN_OTHER.to_string(), rest));
        }
    }
    Value::Array(
        ordered.iter().map(|(key, group)| Value::Array(steps_of(series, group, Some(key)))).collect(),
    )
}

fn step_bounds(series: &[Series], filter: &FunnelsFilter) -> Result<(usize, usize), QueryError> {
    let from = filter.funnel_from_step.unwrap_or(0);
    let to = filter.funnel_to_step.unwrap_or(series.len() - 1);
    if from >= to || to >= series.len() {
        return Err(QueryError::invalid(format!(
            "funnelFromStep {from} and funnelToStep {to} do not fit {} steps",
            series.len()
        )));
    }
    Ok((from, to))
}

/// Conversion over time: per interval of entering the funnel, the share
/// that went on to the last (or `funnelToStep`) step.
fn trends_view(
    series: &[Series],
    paths: &[PathRow],
    filter: &FunnelsFilter,
    range: &crate::time::TimeRange,
    project: &ProjectContext,
) -> Result<Value, QueryError> {
    let (from, to) = step_bounds(series, filter)?;
    let mut entered = vec![0u64; range.buckets.len()];
    let mut converted = vec![0u64; range.buckets.len()];
    for path in paths.iter().filter(|p| p.times.len() > from) {
        let local = project.local(path.times[0]);
        let bucket = bucket_start(local, range.interval, project.week_starts_monday);
        if let Some(i) = range.index_of(bucket) {
            entered[i] += 1;
            if path.times.len() > to {
                converted[i] += 1;
            }
        }
    }
    let data: Vec<f64> = entered
        .iter()
        .zip(&converted)
        .map(|(&e, &c)| if e == 0 { 0.0 } else { (c as f64 * 10_000.0 / e as f64).round() / 100.0 })
        .collect();
    Ok(json!([{
        "count": data.len(),
        "data": data,
        "days": range.buckets.iter().map(|b| day_key(*b, range.interval)).collect::<Vec<_>>(),
        "labels": range.buckets.iter().map(|b| label(*b, range.interval)).collect::<Vec<_>>(),
        "reached_from_step_count": entered,
        "reached_to_step_count": converted,
    }]))
}

/// The distribution of time from `funnelFromStep` to `funnelToStep`.
fn time_to_convert(
    series: &[Series],
    paths: &[PathRow],
    filter: &FunnelsFilter,
) -> Result<Value, QueryError> {
    let (from, to) = step_bounds(series, filter)?;
    let times: Vec<i64> = paths
        .iter()
        .filter(|p| p.times.len() > to)
        .map(|p| (p.times[to] - p.times[from]) / SECOND_US)
        .collect();
    if times.is_empty() {
        return Ok(json!({"bins": [], "average_conversion_time": null}));
    }
    let (min, max) = (times.iter().copied().min().unwrap_or(0), times.iter().copied().max().unwrap_or(0));
    // Sturges' rule unless the query sets a count.
    let bins = filter
        .bin_count
        .unwrap_or_else(|| ((times.len() as f64).log2().ceil() as usize + 1).min(60))
        .clamp(1, 90);
    let width = ((max - min) as f64 / bins as f64).ceil().max(1.0) as i64;
    let mut counts = vec![0u64; bins];
    for t in &times {
        let i = (((t - min) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let average = times.iter().sum::<i64>() as f64 / times.len() as f64;
    Ok(json!({
        "bins": counts.iter().enumerate().map(|(i, c)| json!([min + i as i64 * width, c])).collect::<Vec<_>>(),
        "average_conversion_time": average,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_even_and_odd_counts() {
        assert_eq!(median(&mut [3, 1, 2]), Some(2.0));
        assert_eq!(median(&mut [4, 1, 2, 3]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
