//! Trends: per series, a value per interval (or one for the whole range)
//! by the series' math, optionally broken down by a property with a limit
//! and "other"/"null" buckets, compared with the previous period, and
//! combined by a formula.

use std::collections::HashMap;

use chrono::{Duration, NaiveDateTime};
use serde_json::{json, Value};

use super::formula::Formula;
use super::{actor, bucket_cell, has_actor, scope, Series, BREAKDOWN_NULL, BREAKDOWN_OTHER};
use crate::backend::{Cell, QueryBackend};
use crate::model::{BreakdownFilter, Interval, TrendsQuery};
use crate::plan::{Aggregate, BinaryOp, Column, Expr, Literal, PropertySource, Select, Source};
use crate::project::ProjectContext;
use crate::time::{day_key, label, TimeRange};
use crate::QueryError;

const DEFAULT_BREAKDOWN_LIMIT: usize = 25;

/// Displays that show one number per series instead of a time series.
const TOTAL_VALUE_DISPLAYS: &[&str] =
    &["BoldNumber", "ActionsPie", "ActionsBarValue", "ActionsTable", "WorldMap"];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Math {
    Total,
    Dau,
    /// Distinct actors over a trailing window of this many days.
    Rolling(i64),
    UniqueSession,
    UniqueGroup(u8),
    Property(PropertyMath),
    PerActor(PropertyMath),
    FirstTimeForUser,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PropertyMath {
    Sum,
    Avg,
    Min,
    Max,
    Quantile(f64),
}

impl PropertyMath {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "sum" => Self::Sum,
            "avg" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            "median" => Self::Quantile(0.5),
            "p75" => Self::Quantile(0.75),
            "p90" => Self::Quantile(0.9),
            "p95" => Self::Quantile(0.95),
            "p99" => Self::Quantile(0.99),
            _ => return None,
        })
    }

    fn aggregate(self, expr: Expr) -> Expr {
        let expr = Box::new(expr);
        Expr::aggregate(match self {
            Self::Sum => Aggregate::Sum(expr),
            Self::Avg => Aggregate::Avg(expr),
            Self::Min => Aggregate::Min(expr),
            Self::Max => Aggregate::Max(expr),
            Self::Quantile(q) => Aggregate::Quantile(q, expr),
        })
    }
}

fn math_of(series: &Series) -> Result<Math, QueryError> {
    let name = series.node.math.as_deref().unwrap_or("total");
    let property = || {
        series
            .node
            .math_property
            .clone()
            .ok_or_else(|| QueryError::invalid(format!("math {name:?} needs math_property")))
    };
    Ok(match name {
        "total" => Math::Total,
        "dau" => Math::Dau,
        "weekly_active" => Math::Rolling(7),
        "monthly_active" => Math::Rolling(30),
        "unique_session" => Math::UniqueSession,
        "unique_group" => {
            let index = series
                .node
                .math_group_type_index
                .ok_or_else(|| QueryError::invalid("unique_group needs math_group_type_index"))?;
            if index > 4 {
                return Err(QueryError::invalid("math_group_type_index must be 0 to 4"));
            }
            Math::UniqueGroup(index)
        }
        "first_time_for_user" => Math::FirstTimeForUser,
        other => {
            if let Some(math) = PropertyMath::parse(other) {
                property()?;
                Math::Property(math)
            } else if let Some(math) = other.strip_suffix("_count_per_actor").and_then(PropertyMath::parse) {
                Math::PerActor(math)
            } else {
                return Err(QueryError::invalid(format!(
                    "unknown math {other:?} (use total, dau, weekly_active, monthly_active, unique_session, unique_group, sum, avg, min, max, median, p75, p90, p95, p99, *_count_per_actor, first_time_for_user)"
                )));
            }
        }
    })
}

/// The breakdown value of a row: the property, with missing and empty
/// both reading as the null sentinel. Funnels break down the same way.
pub(crate) fn breakdown_expr(filter: &BreakdownFilter) -> Result<Option<Expr>, QueryError> {
    let Some(breakdown) = &filter.breakdown else { return Ok(None) };
    let key = match breakdown {
        Value::String(key) => key.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.len() == 1 => match &items[0] {
            Value::String(key) => key.clone(),
            other => other.to_string(),
        },
        Value::Null => return Ok(None),
        other => {
            return Err(QueryError::invalid(format!("breakdown must be one property name, got {other}")))
        }
    };
    let value = match filter.breakdown_type.as_deref().unwrap_or("event") {
        "event" => Expr::Property { source: PropertySource::Event, key },
        "person" => Expr::Property { source: PropertySource::Person, key },
        "event_metadata" => match key.as_str() {
            "distinct_id" => Expr::col(Column::DistinctId),
            "event" => Expr::col(Column::Event),
            "$session_id" => Expr::col(Column::SessionId),
            other => {
                return Err(QueryError::invalid(format!("cannot break down by event metadata {other:?}")))
            }
        },
        other => {
            return Err(QueryError::invalid(format!(
                "breakdown_type {other:?} is not supported (use event, person or event_metadata)"
            )))
        }
    };
    Ok(Some(null_as_sentinel(value)))
}

fn null_as_sentinel(value: Expr) -> Expr {
    Expr::Case {
        branches: vec![(
            Expr::IsNull(Box::new(value.clone())).or(value.clone().eq(Expr::text(""))),
            Expr::text(BREAKDOWN_NULL),
        )],
        otherwise: Box::new(value),
    }
}

/// One computed series: values per (breakdown, bucket).
struct Computed {
    /// Breakdown values in display order (one `None` without breakdown).
    keys: Vec<Option<String>>,
    values: HashMap<(Option<String>, Option<NaiveDateTime>), f64>,
}

pub async fn run(
    query: &TrendsQuery,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<Value, QueryError> {
    let series = Series::read(&query.series, project)?;
    let interval = query.common.interval.unwrap_or_default();
    let range = super::time_range(&query.common, interval, project, backend).await?;
    let display =
        query.trends_filter.as_ref().and_then(|f| f.display.as_deref()).unwrap_or("ActionsLineGraph");
    let total_value = TOTAL_VALUE_DISPLAYS.contains(&display);
    let cumulative = display == "ActionsLineGraphCumulative";
    let breakdown_filter = query.breakdown_filter.clone().unwrap_or_default();
    let breakdown = breakdown_expr(&breakdown_filter)?;
    let formula = match query.trends_filter.as_ref().and_then(|f| f.formula.as_deref()) {
        Some(text) if !text.trim().is_empty() => Some(Formula::parse(text, series.len())?),
        _ => None,
    };
    let compare = query.compare_filter.as_ref().and_then(|c| c.compare) == Some(true);

    let mut periods = vec![("current", range.clone())];
    if compare {
        periods.push(("previous", range.previous(project)));
    }
    let mut results = Vec::new();
    for (period, range) in &periods {
        let mut computed = Vec::new();
        for s in &series {
            let math = math_of(s)?;
            let keys = match &breakdown {
                Some(value) => {
                    Some(top_values(query, s, value, &breakdown_filter, range, project, backend).await?)
                }
                None => None,
            };
            computed.push(
                compute(query, s, math, range, breakdown.as_ref(), keys, total_value, project, backend)
                    .await?,
            );
        }
        let compare_label = compare.then_some(*period);
        match &formula {
            Some(formula) => results.extend(formula_results(
                formula,
                &computed,
                range,
                total_value,
                cumulative,
                compare_label,
            )),
            None => {
                for (s, c) in series.iter().zip(&computed) {
                    results.extend(series_results(
                        s,
                        c,
                        range,
                        total_value,
                        cumulative,
                        compare_label,
                        &breakdown_filter,
                    ));
                }
            }
        }
    }
    Ok(Value::Array(results))
}

/// The breakdown values shown: the `limit` most frequent, then "other"
/// when more exist (unless hidden).
async fn top_values(
    query: &TrendsQuery,
    series: &Series,
    value: &Expr,
    filter: &BreakdownFilter,
    range: &TimeRange,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<Vec<Option<String>>, QueryError> {
    let limit = filter.breakdown_limit.unwrap_or(DEFAULT_BREAKDOWN_LIMIT).max(1);
    let mut select = Select::from(Source::Events)
        .column("value", value.clone())
        .column("n", Expr::aggregate(Aggregate::CountAll))
        .filter(scope(&query.common, project, range.from_us, range.to_us)?)
        .filter(series.condition.clone())
        .group_by(Expr::name("value"))
        .order_by(Expr::name("n"), false)
        .order_by(Expr::name("value"), true);
    select.limit = Some(limit as u64 + 1);
    let rows = backend.run(project, &select).await?;
    let mut keys: Vec<Option<String>> =
        rows.rows.iter().take(limit).map(|r| r.first().and_then(Cell::as_str).map(String::from)).collect();
    if rows.rows.len() > limit && filter.breakdown_hide_other_aggregation != Some(true) {
        keys.push(Some(BREAKDOWN_OTHER.to_string()));
    }
    Ok(keys)
}

/// A breakdown value folded into the shown ones: kept, or "other".
fn folded(value: &Expr, keys: &[Option<String>]) -> Expr {
    let shown: Vec<Literal> =
        keys.iter().flatten().filter(|k| *k != BREAKDOWN_OTHER).map(|k| Literal::Text(k.clone())).collect();
    if shown.is_empty() {
        return Expr::text(BREAKDOWN_OTHER);
    }
    Expr::Case {
        branches: vec![(
            Expr::InList { expr: Box::new(value.clone()), list: shown, negated: false },
            value.clone(),
        )],
        otherwise: Box::new(Expr::text(BREAKDOWN_OTHER)),
    }
}

#[allow(clippy::too_many_arguments)]
async fn compute(
    query: &TrendsQuery,
    series: &Series,
    math: Math,
    range: &TimeRange,
    breakdown: Option<&Expr>,
    keys: Option<Vec<Option<String>>>,
    total_value: bool,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<Computed, QueryError> {
    let interval = range.interval;
    let bucket = |expr: Expr| super::bucket_of(project, interval, expr);
    let breakdown = match (breakdown, &keys) {
        (Some(value), Some(keys)) => Some(folded(value, keys)),
        _ => None,
    };
    let hidden_other = keys.as_ref().is_some_and(|k| !k.iter().flatten().any(|k| k == BREAKDOWN_OTHER));
    let actor = actor(&query.common)?;
    let mut condition =
        scope(&query.common, project, range.from_us, range.to_us)?.and(series.condition.clone());
    let counts_actors =
        matches!(math, Math::Dau | Math::Rolling(_) | Math::PerActor(_) | Math::FirstTimeForUser);
    if counts_actors {
        condition = condition.and(has_actor(&query.common)?);
    }
    if hidden_other {
        if let Some(b) = &breakdown {
            condition = condition.and(b.clone().binary(BinaryOp::NotEq, Expr::text(BREAKDOWN_OTHER)));
        }
    }

    // Grouping columns: the bucket (time series only) and the breakdown.
    let with_keys = |mut select: Select, bucket_expr: Option<Expr>, breakdown_expr: Option<Expr>| {
        if let Some(b) = bucket_expr {
            select = select.column("bucket", b).group_by(Expr::name("bucket"));
        }
        if let Some(b) = breakdown_expr {
            select = select.column("breakdown", b).group_by(Expr::name("breakdown"));
        }
        select
    };
    let time_bucket = (!total_value).then(|| bucket(Expr::col(Column::Timestamp)));

    // One aggregate over the matching events, per bucket and breakdown.
    let simple = |value: Expr, condition: Expr| {
        with_keys(Select::from(Source::Events).column("value", value), time_bucket.clone(), breakdown.clone())
            .filter(condition)
    };
    let select = match math {
        Math::Total => simple(Expr::aggregate(Aggregate::CountAll), condition),
        Math::Dau => simple(Expr::aggregate(Aggregate::CountDistinct(Box::new(actor.clone()))), condition),
        Math::UniqueSession => {
            let session = Expr::col(Column::SessionId);
            let condition = condition.and(session.clone().binary(BinaryOp::NotEq, Expr::text("")));
            simple(Expr::aggregate(Aggregate::CountDistinct(Box::new(session))), condition)
        }
        Math::UniqueGroup(i) => {
            let group = Expr::col(Column::Group(i));
            let condition = condition.and(group.clone().binary(BinaryOp::NotEq, Expr::text("")));
            simple(Expr::aggregate(Aggregate::CountDistinct(Box::new(group))), condition)
        }
        Math::Property(p) => {
            let key = series.node.math_property.clone().unwrap_or_default();
            simple(p.aggregate(Expr::NumericProperty { source: PropertySource::Event, key }), condition)
        }
        Math::PerActor(p) => {
            let inner = with_keys(
                Select::from(Source::Events)
                    .column("actor", actor.clone())
                    .column("n", Expr::aggregate(Aggregate::CountAll))
                    .group_by(Expr::name("actor")),
                time_bucket.clone(),
                breakdown.clone(),
            )
            .filter(condition);
            let outer_bucket = (!total_value).then(|| Expr::reference("per_actor", "bucket"));
            let outer_breakdown = breakdown.as_ref().map(|_| Expr::reference("per_actor", "breakdown"));
            with_keys(
                Select::from(inner.into_source("per_actor"))
                    .column("value", p.aggregate(Expr::reference("per_actor", "n"))),
                outer_bucket,
                outer_breakdown,
            )
        }
        Math::FirstTimeForUser => {
            if breakdown.is_some() {
                return Err(QueryError::invalid("first_time_for_user cannot be broken down yet"));
            }
            let ever = super::project_only(project)
                .and(series.condition.clone())
                .and(super::filters_only(&query.common, project)?)
                .and(has_actor(&query.common)?);
            let firsts = Select::from(Source::Events)
                .column("actor", actor.clone())
                .column("first", Expr::aggregate(Aggregate::Min(Box::new(Expr::col(Column::Timestamp)))))
                .filter(ever)
                .group_by(Expr::name("actor"));
            let first = Expr::reference("firsts", "first");
            let mut outer = Select::from(firsts.into_source("firsts"))
                .column("value", Expr::aggregate(Aggregate::CountAll))
                .filter(first.clone().binary(BinaryOp::GtEq, Expr::timestamp(range.from_us)))
                .filter(first.clone().binary(BinaryOp::Lt, Expr::timestamp(range.to_us)));
            if !total_value {
                outer = outer.column("bucket", bucket(first)).group_by(Expr::name("bucket"));
            }
            outer
        }
        Math::Rolling(days) => {
            return rolling(query, series, days, range, breakdown, keys, total_value, project, backend).await
        }
    };

    let rows = backend.run(project, &select).await?;
    let position = |name: &str| select.columns.iter().position(|(n, _)| n == name);
    let (value_at, bucket_at, breakdown_at) = (position("value"), position("bucket"), position("breakdown"));
    let mut values = HashMap::new();
    for row in &rows.rows {
        let value = value_at.and_then(|i| row[i].as_f64()).unwrap_or(0.0);
        let bucket = bucket_at.and_then(|i| bucket_cell(&row[i]));
        let key = breakdown_at.and_then(|i| row[i].as_str().map(String::from));
        values.insert((key, bucket), value);
    }
    Ok(Computed { keys: keys.unwrap_or_else(|| vec![None]), values })
}

/// Weekly/monthly active: distinct actors over the trailing `days` days
/// ending with each interval, from the actors active per day.
#[allow(clippy::too_many_arguments)]
async fn rolling(
    query: &TrendsQuery,
    series: &Series,
    days: i64,
    range: &TimeRange,
    breakdown: Option<Expr>,
    keys: Option<Vec<Option<String>>>,
    total_value: bool,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<Computed, QueryError> {
    if matches!(range.interval, Interval::Week | Interval::Month) && !total_value {
        return Err(QueryError::invalid("weekly_active and monthly_active need an hour or day interval"));
    }
    let lookback = days * 86_400_000_000;
    let mut select = Select::from(Source::Events)
        .distinct()
        .column("actor", actor(&query.common)?)
        .column("day", super::bucket_of(project, Interval::Day, Expr::col(Column::Timestamp)))
        .filter(scope(&query.common, project, range.from_us - lookback, range.to_us)?)
        .filter(series.condition.clone())
        .filter(has_actor(&query.common)?);
    if let Some(b) = breakdown {
        select = select.column("breakdown", b);
    }
    let rows = backend.run(project, &select).await?;
    // day → breakdown → actors
    let mut active: HashMap<(Option<String>, NaiveDateTime), Vec<String>> = HashMap::new();
    for row in &rows.rows {
        let (Some(actor), Some(day)) = (row[0].as_str(), bucket_cell(&row[1])) else { continue };
        let key = row.get(2).and_then(Cell::as_str).map(String::from);
        active.entry((key, day)).or_default().push(actor.to_string());
    }
    let keys = keys.unwrap_or_else(|| vec![None]);
    let mut values = HashMap::new();
    let ends: Vec<(Option<NaiveDateTime>, NaiveDateTime)> = if total_value {
        vec![(
            None,
            range.buckets.last().map(|b| crate::time::shift(*b, range.interval, 1)).unwrap_or_default(),
        )]
    } else {
        range.buckets.iter().map(|b| (Some(*b), crate::time::shift(*b, range.interval, 1))).collect()
    };
    for key in &keys {
        for (bucket, end) in &ends {
            let mut seen = std::collections::HashSet::new();
            let last_day = (*end - Duration::microseconds(1)).date().and_hms_opt(0, 0, 0).unwrap_or_default();
            for back in 0..days {
                let day = last_day - Duration::days(back);
                if let Some(actors) = active.get(&(key.clone(), day)) {
                    seen.extend(actors.iter().map(String::as_str));
                }
            }
            values.insert((key.clone(), *bucket), seen.len() as f64);
        }
    }
    Ok(Computed { keys, values })
}

fn time_axis(range: &TimeRange) -> (Vec<String>, Vec<String>) {
    (
        range.buckets.iter().map(|b| label(*b, range.interval)).collect(),
        range.buckets.iter().map(|b| day_key(*b, range.interval)).collect(),
    )
}

fn data_of(computed: &Computed, key: &Option<String>, range: &TimeRange, cumulative: bool) -> Vec<f64> {
    let mut running = 0.0;
    range
        .buckets
        .iter()
        .map(|b| {
            let v = computed.values.get(&(key.clone(), Some(*b))).copied().unwrap_or(0.0);
            if cumulative {
                running += v;
                running
            } else {
                v
            }
        })
        .collect()
}

fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

fn series_results(
    series: &Series,
    computed: &Computed,
    range: &TimeRange,
    total_value: bool,
    cumulative: bool,
    compare_label: Option<&str>,
    breakdown: &BreakdownFilter,
) -> Vec<Value> {
    let (labels, days) = time_axis(range);
    computed
        .keys
        .iter()
        .map(|key| {
            let label = match key {
                Some(k) => format!("{} - {}", series.label, k),
                None => series.label.clone(),
            };
            let mut item = json!({
                "action": series.action(),
                "label": label,
                "compare": compare_label.is_some(),
            });
            if let Some(c) = compare_label {
                item["compare_label"] = json!(c);
            }
            if breakdown.breakdown.is_some() {
                item["breakdown_value"] = json!(key);
            }
            if total_value {
                let v = computed.values.get(&(key.clone(), None)).copied().unwrap_or(0.0);
                item["aggregated_value"] = number(v);
                item["count"] = number(v);
            } else {
                let data = data_of(computed, key, range, cumulative);
                item["count"] =
                    number(if cumulative { data.last().copied().unwrap_or(0.0) } else { data.iter().sum() });
                item["data"] = Value::Array(data.into_iter().map(number).collect());
                item["labels"] = json!(labels);
                item["days"] = json!(days);
            }
            item
        })
        .collect()
}

fn formula_results(
    formula: &Formula,
    computed: &[Computed],
    range: &TimeRange,
    total_value: bool,
    cumulative: bool,
    compare_label: Option<&str>,
) -> Vec<Value> {
    let (labels, days) = time_axis(range);
    let keys = computed.first().map(|c| c.keys.clone()).unwrap_or_default();
    keys.iter()
        .map(|key| {
            let at = |bucket: Option<NaiveDateTime>| {
                let inputs: Vec<f64> = computed
                    .iter()
                    .map(|c| c.values.get(&(key.clone(), bucket)).copied().unwrap_or(0.0))
                    .collect();
                formula.evaluate(&inputs)
            };
            let mut item = json!({
                "action": null,
                "label": format!("Formula ({})", formula.text()),
                "compare": compare_label.is_some(),
            });
            if let Some(c) = compare_label {
                item["compare_label"] = json!(c);
            }
            if key.is_some() {
                item["breakdown_value"] = json!(key);
            }
            if total_value {
                let v = at(None);
                item["aggregated_value"] = number(v);
                item["count"] = number(v);
            } else {
                let mut running = 0.0;
                let data: Vec<f64> = range
                    .buckets
                    .iter()
                    .map(|b| {
                        let v = at(Some(*b));
                        running += v;
                        if cumulative {
                            running
                        } else {
                            v
                        }
                    })
                    .collect();
                item["count"] = number(if cumulative { running } else { data.iter().sum() });
                item["data"] = Value::Array(data.into_iter().map(number).collect());
                item["labels"] = json!(labels);
                item["days"] = json!(days);
            }
            item
        })
        .collect()
}
