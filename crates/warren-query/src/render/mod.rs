//! Renderers: one per SQL dialect, each turning a [`Select`] plan into
//! text its engine runs. Everything an engine spells its own way — JSON
//! property access, time zones, interval arithmetic, the funnel aggregate —
//! is decided here and nowhere else.

pub mod clickhouse;
pub mod datafusion;

use std::ops::ControlFlow;

use warren_store::datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, Expr as SqlExpr, Function, FunctionArguments, Query,
};
use warren_store::datafusion::sql::sqlparser::dialect::GenericDialect;
use warren_store::datafusion::sql::sqlparser::parser::Parser;

use crate::hogql::{PropertyAccess, SqlQuery};
use crate::plan::{BinaryOp, PropertySource, Select};
use crate::QueryError;

/// A SQL dialect the plans (and users' SQL) can be rendered in.
pub trait Dialect: Send + Sync {
    fn render(&self, select: &Select) -> Result<String, QueryError>;

    /// Users' SQL with property access and ClickHouse-flavoured functions
    /// spelled for this engine.
    fn render_sql(&self, query: &SqlQuery) -> Result<String, QueryError>;
}

/// `'text'` with quotes doubled: the standard SQL string literal. The one
/// rule for text DataFusion reads and for text parsed back into a syntax
/// tree (users' SQL rewritten); ClickHouse's own rule, for text ClickHouse
/// reads, is `clickhouse::quote_text`.
pub(crate) fn quote_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"name"` with quotes doubled: the standard SQL identifier, for the same
/// readers as [`quote_text`]; ClickHouse's is `clickhouse::quote_ident`.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The user's query with every expression `rewrite` has a replacement for
/// replaced (`None` keeps one as written).
pub(crate) fn rewrite_expressions(
    query: &SqlQuery,
    rewrite: impl Fn(&SqlExpr) -> Result<Option<SqlExpr>, QueryError>,
) -> Result<Query, QueryError> {
    let mut query = query.query().clone();
    let mut problem = None;
    let _ = visit_expressions_mut(&mut query, |expr| {
        match rewrite(expr) {
            Ok(Some(replacement)) => *expr = replacement,
            Ok(None) => {}
            Err(e) => {
                problem = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    match problem {
        Some(problem) => Err(problem),
        None => Ok(query),
    }
}

/// A function call of the user's SQL as its name and argument texts;
/// `None` for calls a rewrite must keep as written (with `OVER`,
/// `FILTER` or `WITHIN GROUP`, which rebuilding from the arguments would
/// drop, or with a subquery for arguments).
pub(crate) fn call_parts(function: &Function) -> Option<(String, Vec<String>)> {
    if function.over.is_some() || function.filter.is_some() || !function.within_group.is_empty() {
        return None;
    }
    let args = match &function.args {
        FunctionArguments::List(list) => list.args.iter().map(|a| a.to_string()).collect(),
        FunctionArguments::None => Vec::new(),
        FunctionArguments::Subquery(_) => return None,
    };
    Some((function.name.to_string(), args))
}

/// `template` with its `{}` replaced by the one argument of `name`.
pub(crate) fn one_argument(name: &str, args: &[String], template: &str) -> Result<String, QueryError> {
    match args {
        [arg] => Ok(template.replace("{}", arg)),
        _ => Err(QueryError::invalid(format!("{name}() takes one argument"))),
    }
}

/// `text`, a rewrite of the user's `original`, parsed back to an expression.
pub(crate) fn parse_rewrite(text: &str, original: &SqlExpr) -> Result<SqlExpr, QueryError> {
    Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut parser| parser.parse_expr())
        .map_err(|e| QueryError::invalid(format!("cannot rewrite {original}: {e}")))
}

/// The operator as standard SQL spells it (both engines read it).
pub(crate) fn binary_operator(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Eq => "=",
        BinaryOp::NotEq => "<>",
        BinaryOp::Lt => "<",
        BinaryOp::LtEq => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::GtEq => ">=",
        BinaryOp::And => "AND",
        BinaryOp::Or => "OR",
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
    }
}

/// The JSON column a user's dotted property access reads, qualified by
/// its table alias when it has one.
pub(crate) fn access_column(access: &PropertyAccess) -> String {
    let column = if access.person { "person_properties" } else { "properties" };
    match &access.qualifier {
        Some(q) => format!("{}.{column}", quote_ident(q)),
        None => column.to_string(),
    }
}

/// The JSON column a property of `source` is read from.
pub(crate) fn properties_column(source: PropertySource) -> &'static str {
    match source {
        PropertySource::Event | PropertySource::Group => "properties",
        PropertySource::Person => "person_properties",
    }
}
