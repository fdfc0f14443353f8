//! Where plans run. [`QueryBackend`] is the port: it takes a plan (or a
//! checked SQL query) for one project and answers rows of [`Cell`]s, so
//! the insights above it never see an engine's types. `datafusion/` runs
//! over the Delta events table; `clickhouse` renders the same plans in
//! ClickHouse SQL and runs them on the cluster.

pub mod clickhouse;
pub mod datafusion;

use async_trait::async_trait;

use crate::hogql::SqlQuery;
use crate::plan::Select;
use crate::project::ProjectContext;
use crate::QueryError;

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// µs since the epoch; `utc` false for local (zone-less) times such
    /// as bucket starts.
    Timestamp {
        us: i64,
        utc: bool,
    },
    List(Vec<Cell>),
    Struct(Vec<(String, Cell)>),
}

impl Cell {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Cell::Int(i) => Some(*i),
            Cell::Float(f) => Some(*f as i64),
            Cell::Timestamp { us, .. } => Some(*us),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Text(t) => Some(t),
            _ => None,
        }
    }

    pub fn field(&self, name: &str) -> Option<&Cell> {
        match self {
            Cell::Struct(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, c)| c),
            _ => None,
        }
    }

    /// The value as JSON, for SQL results.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Int(i) => Value::from(*i),
            Cell::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Cell::Text(t) => Value::String(t.clone()),
            Cell::Timestamp { us, utc } => {
                let at = chrono::DateTime::from_timestamp_micros(*us).unwrap_or_default();
                Value::String(if *utc {
                    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
                } else {
                    at.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
                })
            }
            Cell::List(items) => Value::Array(items.iter().map(Cell::to_json).collect()),
            Cell::Struct(fields) => {
                Value::Object(fields.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

/// A result: column names and types, and the rows (at most the row limit;
/// `truncated` when there were more).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub types: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    pub truncated: bool,
}

#[async_trait]
pub trait QueryBackend: Send + Sync + 'static {
    /// Runs a plan over one project's data.
    async fn run(&self, project: &ProjectContext, select: &Select) -> Result<Rows, QueryError>;

    /// Runs a checked SQL query over one project's data.
    async fn run_sql(&self, project: &ProjectContext, query: &SqlQuery) -> Result<Rows, QueryError>;
}
