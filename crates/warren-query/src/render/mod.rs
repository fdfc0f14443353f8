//! Renderers: one per SQL dialect, each turning a [`Select`] plan into
//! text its engine runs. Everything an engine spells its own way — JSON
//! property access, time zones, interval arithmetic, the funnel aggregate —
//! is decided here and nowhere else.

pub mod datafusion;

use crate::hogql::SqlQuery;
use crate::plan::Select;
use crate::QueryError;

/// A SQL dialect the plans (and users' SQL) can be rendered in.
pub trait Dialect: Send + Sync {
    fn render(&self, select: &Select) -> Result<String, QueryError>;

    /// Users' SQL with property access and ClickHouse-flavoured functions
    /// spelled for this engine.
    fn render_sql(&self, query: &SqlQuery) -> Result<String, QueryError>;
}

/// `'text'` with quotes doubled: the standard SQL string literal.
pub(crate) fn quote_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"name"` with quotes doubled: the standard SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
