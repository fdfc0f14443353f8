//! Paths: each person's events split into sessions at 30-minute gaps,
//! consecutive repeats collapsed, cut to a start and end point and a step
//! limit; the edges between consecutive steps counted.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::{has_actor, scope};
use crate::backend::QueryBackend;
use crate::model::PathsQuery;
use crate::plan::{Column, Expr, PropertySource, Select, Source};
use crate::project::ProjectContext;
use crate::QueryError;

const SESSION_GAP_US: i64 = 30 * 60 * 1_000_000;
const DEFAULT_STEPS: usize = 5;
const DEFAULT_EDGES: usize = 50;

pub async fn run(
    query: &PathsQuery,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<Value, QueryError> {
    let filter = &query.paths_filter;
    let steps = filter.step_limit.unwrap_or(DEFAULT_STEPS).clamp(2, 20);
    let edge_limit = filter.edge_limit.unwrap_or(DEFAULT_EDGES).clamp(1, 10_000);
    let types: Vec<&str> = if filter.include_event_types.is_empty() {
        vec!["$pageview"]
    } else {
        filter.include_event_types.iter().map(String::as_str).collect()
    };
    let mut kinds = Vec::new();
    for kind in &types {
        kinds.push(match *kind {
            "$pageview" => Expr::col(Column::Event).eq(Expr::text("$pageview")),
            "$screen" => Expr::col(Column::Event).eq(Expr::text("$screen")),
            "custom_event" => Expr::Not(Box::new(Expr::InList {
                expr: Box::new(Expr::col(Column::Event)),
                list: vec![
                    crate::plan::Literal::Text("$pageview".into()),
                    crate::plan::Literal::Text("$screen".into()),
                ],
                negated: false,
            }))
            .and(Expr::Not(Box::new(Expr::Contains {
                expr: Box::new(Expr::col(Column::Event)),
                needle: "$".into(),
                negated: false,
            }))),
            other => {
                return Err(QueryError::invalid(format!(
                    "unknown includeEventTypes entry {other:?} ($pageview, $screen, custom_event)"
                )))
            }
        });
    }
    let name = Expr::Case {
        branches: vec![
            (
                Expr::col(Column::Event).eq(Expr::text("$pageview")),
                Expr::Property { source: PropertySource::Event, key: "$current_url".into() },
            ),
            (
                Expr::col(Column::Event).eq(Expr::text("$screen")),
                Expr::Property { source: PropertySource::Event, key: "$screen_name".into() },
            ),
        ],
        otherwise: Box::new(Expr::col(Column::Event)),
    };
    let interval = query.common.interval.unwrap_or_default();
    let range = super::time_range(&query.common, interval, project, backend).await?;
    let select = Select::from(Source::Events)
        .column("actor", Expr::col(Column::PersonId))
        .column("at", Expr::col(Column::Timestamp))
        .column("name", name)
        .filter(scope(&query.common, project, range.from_us, range.to_us)?)
        .filter(has_actor(&query.common)?)
        .filter(Expr::any(kinds))
        .order_by(Expr::name("actor"), true)
        .order_by(Expr::name("at"), true);
    let rows = backend.run(project, &select).await?;

    // (from, to) → (count, total µs between)
    let mut edges: HashMap<(String, String), (u64, i64)> = HashMap::new();
    let mut session: Vec<(i64, String)> = Vec::new();
    let mut current: Option<String> = None;
    let mut flush = |session: &mut Vec<(i64, String)>| {
        for ((from_i, from), (to_i, to)) in
            path_of(session, filter.start_point.as_deref(), filter.end_point.as_deref(), steps)
        {
            let edge = edges
                .entry((format!("{}_{}", from_i + 1, from.1), format!("{}_{}", to_i + 1, to.1)))
                .or_default();
            edge.0 += 1;
            edge.1 += to.0 - from.0;
        }
        session.clear();
    };
    for row in &rows.rows {
        let (Some(actor), Some(at), Some(step)) = (row[0].as_str(), row[1].as_i64(), row[2].as_str()) else {
            continue;
        };
        let gap = session.last().is_some_and(|(last, _)| at - last > SESSION_GAP_US);
        if current.as_deref() != Some(actor) || gap {
            flush(&mut session);
            current = Some(actor.to_string());
        }
        if session.last().map(|(_, s)| s.as_str()) != Some(step) {
            session.push((at, step.to_string()));
        }
    }
    flush(&mut session);
    let mut edges: Vec<((String, String), (u64, i64))> = edges.into_iter().collect();
    edges.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then_with(|| a.0.cmp(&b.0)));
    edges.truncate(edge_limit);
    Ok(Value::Array(
        edges
            .into_iter()
            .map(|((source, target), (count, total))| {
                json!({
                    "source": source,
                    "target": target,
                    "value": count,
                    "average_conversion_time": total as f64 / count as f64 / 1_000.0,
                })
            })
            .collect(),
    ))
}

type Step<'a> = (usize, &'a (i64, String));

/// The consecutive step pairs of one session after cutting it to the start
/// point, the end point and the step limit.
fn path_of<'a>(
    session: &'a [(i64, String)],
    start: Option<&str>,
    end: Option<&str>,
    steps: usize,
) -> Vec<(Step<'a>, Step<'a>)> {
    let from = match start {
        Some(start) => match session.iter().position(|(_, s)| s == start) {
            Some(i) => i,
            None => return Vec::new(),
        },
        None => 0,
    };
    let mut path = &session[from..];
    if let Some(end) = end {
        match path.iter().position(|(_, s)| s == end) {
            Some(i) => path = &path[..=i],
            None => return Vec::new(),
        }
        if path.len() > steps {
            path = &path[path.len() - steps..];
        }
    }
    let path = &path[..path.len().min(steps)];
    path.iter().enumerate().zip(path.iter().enumerate().skip(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(names: &[&str]) -> Vec<(i64, String)> {
        names.iter().enumerate().map(|(i, n)| (i as i64, n.to_string())).collect()
    }

    #[test]
    fn start_end_and_limit_cut_the_session() {
        let s = session(&["a", "b", "c", "d"]);
        let names = |pairs: Vec<(Step<'_>, Step<'_>)>| {
            pairs.iter().map(|(a, b)| format!("{}>{}", a.1 .1, b.1 .1)).collect::<Vec<_>>()
        };
        assert_eq!(names(path_of(&s, None, None, 3)), ["a>b", "b>c"]);
        assert_eq!(names(path_of(&s, Some("b"), None, 5)), ["b>c", "c>d"]);
        assert_eq!(names(path_of(&s, None, Some("c"), 5)), ["a>b", "b>c"]);
        assert!(path_of(&s, Some("x"), None, 5).is_empty());
    }
}
