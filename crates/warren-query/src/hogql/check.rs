//! What a user's statement may contain, whatever engine runs it: one
//! read-only query whose every clause, literal and FROM item is something
//! each backend reads the same way. Anything else is refused here, before
//! a dialect sees it, with a message that says what to change.

use std::ops::ControlFlow;

use warren_store::datafusion::sql::sqlparser::ast::{
    Expr, Query, Select, SetExpr, TableFactor, Value, ValueWithSpan, Visit, Visitor,
};

use crate::QueryError;

/// Refuses what `query` may not contain, anywhere in it.
pub(crate) fn check(query: &Query) -> Result<(), QueryError> {
    match query.visit(&mut Checker) {
        ControlFlow::Break(problem) => Err(problem),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Checker;

impl Visitor for Checker {
    type Break = QueryError;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<QueryError> {
        refuse_if(query_clause(query))
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<QueryError> {
        refuse_if(select_clause(select))
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<QueryError> {
        refuse_if(match factor {
            TableFactor::Table { args: Some(_), .. }
            | TableFactor::TableFunction { .. }
            | TableFactor::Function { .. }
            | TableFactor::UNNEST { .. }
            | TableFactor::JsonTable { .. }
            | TableFactor::OpenJsonTable { .. }
            | TableFactor::XmlTable { .. } => Some("table functions are not allowed".to_string()),
            TableFactor::Table {
                with_hints, version, partitions, json_path, sample, index_hints, ..
            } if !with_hints.is_empty()
                || version.is_some()
                || !partitions.is_empty()
                || json_path.is_some()
                || sample.is_some()
                || !index_hints.is_empty() =>
            {
                Some(format!("{factor}: table hints, versions, partitions and samples are not supported"))
            }
            TableFactor::Table { .. } | TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => None,
            other => Some(format!("{other} is not supported in FROM")),
        })
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<QueryError> {
        refuse_if(match expr {
            Expr::InUnnest { .. } => Some("IN UNNEST is not supported".to_string()),
            _ => None,
        })
    }

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<QueryError> {
        refuse_if(match &value.value {
            Value::SingleQuotedString(_) | Value::Number(..) | Value::Boolean(_) | Value::Null => None,
            other => Some(format!(
                "literal {other} is not supported: write text in single quotes, numbers, TRUE, FALSE or NULL"
            )),
        })
    }
}

fn refuse_if(problem: Option<String>) -> ControlFlow<QueryError> {
    match problem {
        Some(problem) => ControlFlow::Break(QueryError::Invalid(problem)),
        None => ControlFlow::Continue(()),
    }
}

/// A clause of `query` that is not a plain read, if any.
fn query_clause(query: &Query) -> Option<String> {
    let refused = if query.settings.is_some() {
        "SETTINGS"
    } else if query.format_clause.is_some() {
        "FORMAT"
    } else if query.for_clause.is_some() {
        "FOR XML/JSON/BROWSE"
    } else if !query.locks.is_empty() {
        "FOR UPDATE/SHARE"
    } else if !query.pipe_operators.is_empty() {
        "pipe operators"
    } else {
        return match query.body.as_ref() {
            SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::SetOperation { .. } | SetExpr::Values(_) => {
                None
            }
            _ => Some("only SELECT queries are allowed".to_string()),
        };
    };
    Some(format!("{refused} is not allowed in a query"))
}

/// A clause of `select` that writes, or that one engine would read
/// differently from another, if any.
fn select_clause(select: &Select) -> Option<String> {
    let refused = if select.into.is_some() {
        "SELECT … INTO"
    } else if !select.lateral_views.is_empty() {
        "LATERAL VIEW"
    } else if select.prewhere.is_some() {
        "PREWHERE"
    } else if !select.connect_by.is_empty() {
        "CONNECT BY"
    } else if select.value_table_mode.is_some() {
        "SELECT AS STRUCT/VALUE"
    } else if !select.optimizer_hints.is_empty() {
        "optimizer hints"
    } else if select.select_modifiers.is_some() {
        "SELECT modifiers"
    } else {
        return None;
    };
    Some(format!("{refused} is not allowed"))
}
