//! The scale-out backend: plans rendered in ClickHouse SQL
//! (`render::clickhouse`) and run on the cluster over HTTP, answered as
//! `JSONCompact` and read back into [`Cell`]s of the same kinds the
//! DataFusion backend gives, so every insight reads both alike.
//!
//! Two things the engine does not say are recovered from the plan: which
//! outputs are instants or bucket starts (both travel as Int64 µs), and
//! the funnel, whose events arrive per person and are walked here with
//! [`crate::funnel::evaluate`].

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use warren_meta::PersonStore;
use warren_store::{ClickHouseStore, LiveCluster, StoreError};

use super::datafusion::QueryLimits;
use super::{Cell, QueryBackend, Rows};
use crate::funnel::{evaluate, FunnelEvent};
use crate::hogql::SqlQuery;
use crate::plan::{Aggregate, Column, Expr, FunnelSpec, Literal, Select, Source};
use crate::project::ProjectContext;
use crate::render::clickhouse::ClickHouseDialect;
use crate::render::Dialect;
use crate::QueryError;

pub struct ClickHouseBackend {
    cluster: Arc<LiveCluster>,
    meta: Arc<dyn PersonStore>,
    limits: QueryLimits,
    /// How long the server may work on one statement: a query the engine
    /// gave up on must not run on there.
    time_limit: Option<std::time::Duration>,
}

impl std::fmt::Debug for ClickHouseBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseBackend").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// How an output column's values read back.
#[derive(Debug, Clone)]
enum Output {
    Plain,
    /// Int64 µs of a UTC instant, or of a local wall-clock time.
    Time {
        utc: bool,
    },
    /// Per-person `[timestamp, mask, breakdown]` triples to walk.
    Funnel(FunnelSpec),
}

#[derive(Deserialize)]
struct Answer {
    meta: Vec<ColumnMeta>,
    data: Vec<Vec<Value>>,
}

#[derive(Deserialize)]
struct ColumnMeta {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

impl ClickHouseBackend {
    pub fn new(cluster: Arc<LiveCluster>, meta: Arc<dyn PersonStore>, limits: QueryLimits) -> Self {
        Self { cluster, meta, limits, time_limit: None }
    }

    /// Has the server stop a statement after `limit` (`max_execution_time`).
    pub fn with_time_limit(self, limit: std::time::Duration) -> Self {
        Self { time_limit: Some(limit), ..self }
    }

    /// The dialect that sees `project` only, in `store`'s database.
    async fn dialect(
        &self,
        store: &ClickHouseStore,
        project: &ProjectContext,
    ) -> Result<ClickHouseDialect, QueryError> {
        let groups = self.meta.groups(project.team_id).await?;
        Ok(ClickHouseDialect { database: store.database().to_string(), team_id: project.team_id, groups })
    }

    fn settings(&self, max_rows: Option<usize>) -> Vec<(&'static str, String)> {
        let mut settings = vec![
            // Outer joins leave NULL where the other side has no row, as
            // standard SQL (and DataFusion) does; joins keep every match.
            ("join_use_nulls", "1".to_string()),
            ("join_default_strictness", "ALL".to_string()),
            ("max_memory_usage", self.limits.memory_bytes.to_string()),
            // Groups are inlined into statements.
            ("max_query_size", (128u64 << 20).to_string()),
        ];
        if let Some(limit) = self.time_limit {
            settings.push(("max_execution_time", limit.as_secs().max(1).to_string()));
        }
        if let Some(rows) = max_rows {
            settings.push(("max_result_rows", (rows + 1).to_string()));
            settings.push(("result_overflow_mode", "break".to_string()));
        }
        settings
    }

    async fn answer(
        &self,
        store: &ClickHouseStore,
        sql: &str,
        max_rows: Option<usize>,
    ) -> Result<Answer, StoreError> {
        let text = store.query(&format!("{sql} FORMAT JSONCompact"), &self.settings(max_rows)).await?;
        serde_json::from_str(&text).map_err(|e| StoreError::ClickHouse(format!("unreadable answer: {e}")))
    }
}

#[async_trait]
impl QueryBackend for ClickHouseBackend {
    async fn run(&self, project: &ProjectContext, select: &Select) -> Result<Rows, QueryError> {
        // One layout for the whole query, whatever a reshard does meanwhile.
        let store = self.cluster.active().await;
        let sql = self.dialect(&store, project).await?.render(select)?;
        tracing::debug!(team_id = project.team_id, %sql, "running plan on ClickHouse");
        let answer =
            self.answer(&store, &sql, None).await.map_err(|e| QueryError::Engine(format!("{e} in {sql}")))?;
        let outputs: Vec<Output> = select.columns.iter().map(|(_, expr)| output_of(expr, select)).collect();
        let mut rows = Rows {
            columns: select.columns.iter().map(|(name, _)| name.clone()).collect(),
            types: answer.meta.iter().map(|m| m.kind.clone()).collect(),
            ..Rows::default()
        };
        for values in answer.data {
            let row = values
                .into_iter()
                .zip(&answer.meta)
                .zip(&outputs)
                .map(|((value, meta), output)| read_output(cell(&value, &meta.kind), output))
                .collect();
            rows.rows.push(row);
        }
        Ok(rows)
    }

    async fn run_sql(&self, project: &ProjectContext, query: &SqlQuery) -> Result<Rows, QueryError> {
        let store = self.cluster.active().await;
        let sql = query.render(&self.dialect(&store, project).await?)?;
        // What the server refuses in a user's SQL is theirs to fix.
        let answer = self.answer(&store, &sql, Some(self.limits.max_rows)).await.map_err(|e| match e {
            StoreError::ClickHouse(message) => QueryError::Invalid(message),
            other => QueryError::Store(other),
        })?;
        let mut rows = Rows {
            columns: answer.meta.iter().map(|m| m.name.clone()).collect(),
            types: answer.meta.iter().map(|m| m.kind.clone()).collect(),
            ..Rows::default()
        };
        for values in answer.data {
            if rows.rows.len() == self.limits.max_rows {
                rows.truncated = true;
                break;
            }
            rows.rows.push(values.iter().zip(&answer.meta).map(|(v, m)| cell(v, &m.kind)).collect());
        }
        Ok(rows)
    }
}

/// How the output `expr` of `select` reads back.
fn output_of(expr: &Expr, select: &Select) -> Output {
    match expr {
        Expr::Aggregate(Aggregate::Funnel { spec, .. }) => Output::Funnel(spec.clone()),
        other => match time_kind(other, select) {
            Some(utc) => Output::Time { utc },
            None => Output::Plain,
        },
    }
}

/// Whether `expr` is an instant (`Some(true)`), a local bucket start
/// (`Some(false)`) or neither, looking through subqueries for references.
fn time_kind(expr: &Expr, select: &Select) -> Option<bool> {
    match expr {
        Expr::Column(Column::Timestamp | Column::PersonCreatedAt) | Expr::Literal(Literal::Timestamp(_)) => {
            Some(true)
        }
        Expr::Bucket { .. } | Expr::ShiftBucket { .. } => Some(false),
        Expr::Aggregate(Aggregate::Min(inner) | Aggregate::Max(inner)) => time_kind(inner, select),
        Expr::Coalesce(exprs) => exprs.iter().find_map(|e| time_kind(e, select)),
        Expr::Case { branches, otherwise } => {
            branches.iter().find_map(|(_, v)| time_kind(v, select)).or_else(|| time_kind(otherwise, select))
        }
        // As the renderer resolves names: the source first, then this
        // select's own outputs.
        Expr::Ref { table, column } => referenced(&select.from, table.as_deref(), column).or_else(|| {
            let (_, own) = select
                .columns
                .iter()
                .find(|(name, e)| table.is_none() && name == column && !matches!(e, Expr::Ref { .. }))?;
            time_kind(own, select)
        }),
        _ => None,
    }
}

fn referenced(source: &Source, table: Option<&str>, column: &str) -> Option<bool> {
    match source {
        Source::Subquery { select, alias } if table.is_none_or(|t| t == alias) => {
            let (_, expr) = select.columns.iter().find(|(n, _)| n == column)?;
            time_kind(expr, select)
        }
        Source::Join { left, right, .. } => {
            referenced(left, table, column).or_else(|| referenced(right, table, column))
        }
        _ => None,
    }
}

fn read_output(cell: Cell, output: &Output) -> Cell {
    match (output, cell) {
        (Output::Time { utc }, Cell::Int(us)) => Cell::Timestamp { us, utc: *utc },
        (Output::Funnel(spec), Cell::List(events)) => {
            let mut events: Vec<FunnelEvent> = events
                .iter()
                .filter_map(|event| match event {
                    Cell::List(parts) => Some(FunnelEvent {
                        timestamp_us: parts.first()?.as_i64()?,
                        mask: parts.get(1).and_then(Cell::as_i64).unwrap_or(0) as u64,
                        breakdown: parts.get(2).and_then(Cell::as_str).map(String::from),
                    }),
                    _ => None,
                })
                .collect();
            match evaluate(spec, &mut events) {
                Some(path) => Cell::Struct(vec![
                    ("times".into(), Cell::List(path.times.into_iter().map(Cell::Int).collect())),
                    ("breakdown".into(), path.breakdown.map_or(Cell::Null, Cell::Text)),
                ]),
                None => Cell::Null,
            }
        }
        (_, cell) => cell,
    }
}

/// A JSON value of ClickHouse type `kind` as a cell.
fn cell(value: &Value, kind: &str) -> Cell {
    let kind = unwrap_type(kind, "Nullable(").unwrap_or(kind);
    let kind = unwrap_type(kind, "LowCardinality(").unwrap_or(kind);
    if value.is_null() {
        return Cell::Null;
    }
    if let Some(inner) = unwrap_type(kind, "Array(") {
        return match value {
            Value::Array(items) => Cell::List(items.iter().map(|v| cell(v, inner)).collect()),
            _ => Cell::Null,
        };
    }
    if let Some(inner) = unwrap_type(kind, "Tuple(") {
        let kinds = split_types(inner);
        return match value {
            Value::Array(items) => Cell::List(
                items.iter().enumerate().map(|(i, v)| cell(v, kinds.get(i).copied().unwrap_or(""))).collect(),
            ),
            _ => Cell::Null,
        };
    }
    if kind.starts_with("DateTime") {
        return value
            .as_str()
            .and_then(|text| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok())
            .map_or(Cell::Null, |at| Cell::Timestamp { us: at.and_utc().timestamp_micros(), utc: true });
    }
    match value {
        Value::Bool(b) => Cell::Bool(*b),
        Value::Number(n) if kind.starts_with("Int") || kind.starts_with("UInt") => {
            n.as_i64().map(Cell::Int).or_else(|| n.as_f64().map(Cell::Float)).unwrap_or(Cell::Null)
        }
        Value::Number(n) => n.as_f64().map_or(Cell::Null, Cell::Float),
        Value::String(text) if kind.starts_with("Float") => text.parse().map_or(Cell::Null, Cell::Float),
        Value::String(text) => Cell::Text(text.clone()),
        other => Cell::Text(other.to_string()),
    }
}

/// `Wrapper(inner)` → `inner`.
fn unwrap_type<'a>(kind: &'a str, wrapper: &str) -> Option<&'a str> {
    kind.strip_prefix(wrapper).and_then(|rest| rest.strip_suffix(')'))
}

/// The top-level, comma-separated types of a tuple.
fn split_types(list: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(list[start..].trim());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_by_their_types() {
        let triple = serde_json::json!([[5, 3, null], [7, 1, "b"]]);
        assert_eq!(
            cell(&triple, "Array(Tuple(Int64, UInt64, Nullable(String)))"),
            Cell::List(vec![
                Cell::List(vec![Cell::Int(5), Cell::Int(3), Cell::Null]),
                Cell::List(vec![Cell::Int(7), Cell::Int(1), Cell::Text("b".into())]),
            ])
        );
        assert_eq!(
            cell(&serde_json::json!("2024-01-02 03:04:05"), "DateTime('UTC')"),
            Cell::Timestamp { us: 1_704_164_645_000_000, utc: true }
        );
        assert_eq!(cell(&Value::Null, "Nullable(Float64)"), Cell::Null);
        assert_eq!(cell(&serde_json::json!(2.5), "Float64"), Cell::Float(2.5));
    }

    #[test]
    fn times_are_found_through_subqueries() {
        let inner = Select::from(Source::Events)
            .column("first", Expr::aggregate(Aggregate::Min(Box::new(Expr::col(Column::Timestamp)))));
        let outer =
            Select::from(inner.into_source("firsts")).column("first", Expr::reference("firsts", "first"));
        assert_eq!(time_kind(&outer.columns[0].1, &outer), Some(true));
    }
}
