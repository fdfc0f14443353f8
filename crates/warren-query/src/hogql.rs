//! SQL from users (`HogQLQuery`): parsed, checked to be one read-only
//! SELECT over `events`, `persons` and `groups`, and kept as a syntax tree
//! in which dotted property access (`properties.$browser`,
//! `person.properties.email`) is still what the user wrote. Each dialect
//! rewrites that access and the ClickHouse-flavoured functions its own way
//! (`render`).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use warren_store::datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_relations, Expr, ObjectNamePart, Query, SetExpr, Statement, TableFactor,
    TableWithJoins,
};
use warren_store::datafusion::sql::sqlparser::dialect::GenericDialect;
use warren_store::datafusion::sql::sqlparser::parser::Parser;

use crate::render::Dialect;
use crate::QueryError;

/// Tables user SQL may read.
pub const TABLES: &[&str] = &["events", "persons", "groups"];

/// Longest SQL text accepted.
const MAX_SQL_BYTES: usize = 64 * 1024;

/// A checked, read-only query.
#[derive(Debug, Clone)]
pub struct SqlQuery {
    query: Box<Query>,
    tables: Vec<String>,
}

/// How a dotted name reads a property: `properties.x` on the row's own
/// properties, or `person.properties.x` on the event's person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyAccess {
    /// A table alias before `properties`, if any (`e.properties.x`).
    pub qualifier: Option<String>,
    pub person: bool,
    /// The key path: `properties.a.b` reads key `b` inside `a`.
    pub path: Vec<String>,
}

impl PropertyAccess {
    /// Recognises `[alias.]properties.k…` and `[alias.]person.properties.k…`.
    pub fn parse(parts: &[String]) -> Option<Self> {
        let at = parts.iter().position(|p| p == "properties")?;
        if at + 1 >= parts.len() {
            return None;
        }
        let (person, qualifier) = match &parts[..at] {
            [] => (false, None),
            [p] if p == "person" => (true, None),
            [q] => (false, Some(q.clone())),
            [q, p] if p == "person" => (true, Some(q.clone())),
            _ => return None,
        };
        Some(Self { qualifier, person, path: parts[at + 1..].to_vec() })
    }
}

impl SqlQuery {
    pub fn parse(sql: &str) -> Result<Self, QueryError> {
        if sql.len() > MAX_SQL_BYTES {
            return Err(QueryError::invalid(format!("SQL longer than {MAX_SQL_BYTES} bytes")));
        }
        let mut statements = Parser::parse_sql(&GenericDialect {}, sql)
            .map_err(|e| QueryError::invalid(format!("SQL syntax error: {e}")))?;
        let statement = match statements.len() {
            1 => statements.remove(0),
            0 => return Err(QueryError::invalid("no SQL statement given")),
            n => return Err(QueryError::invalid(format!("one statement at a time, got {n}"))),
        };
        let Statement::Query(query) = statement else {
            return Err(QueryError::invalid("only SELECT queries are allowed"));
        };
        check_read_only(&query)?;
        let ctes: BTreeSet<String> =
            query.with.iter().flat_map(|w| w.cte_tables.iter().map(|c| c.alias.name.value.clone())).collect();
        let mut tables = Vec::new();
        let mut problem = None;
        let _ = visit_relations(&query, |name| {
            let parts: Vec<String> = name
                .0
                .iter()
                .map(|p| match p {
                    ObjectNamePart::Identifier(ident) => ident.value.clone(),
                    other => other.to_string(),
                })
                .collect();
            match parts.as_slice() {
                [table] if TABLES.contains(&table.as_str()) => tables.push(table.clone()),
                [table] if ctes.contains(table) => {}
                _ => {
                    problem = Some(format!("unknown table {name}: queries read {}", TABLES.join(", ")));
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        if let Some(problem) = problem {
            return Err(QueryError::Invalid(problem));
        }
        Ok(Self { query, tables })
    }

    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    pub fn query(&self) -> &Query {
        &self.query
    }

    pub fn render(&self, dialect: &dyn Dialect) -> Result<String, QueryError> {
        dialect.render_sql(self)
    }
}

/// Nothing but SELECTs: no `SELECT … INTO`, no data-changing subqueries,
/// no table functions.
/// The tables of a FROM clause: no table functions, subqueries checked.
fn check_tables(from: &[TableWithJoins]) -> Result<(), QueryError> {
    for table in from {
        for factor in std::iter::once(&table.relation).chain(table.joins.iter().map(|j| &j.relation)) {
            match factor {
                TableFactor::Table { args: Some(_), .. }
                | TableFactor::TableFunction { .. }
                | TableFactor::Function { .. } => {
                    return Err(QueryError::invalid("table functions are not allowed"))
                }
                TableFactor::Derived { subquery, .. } => check_read_only(subquery)?,
                TableFactor::NestedJoin { table_with_joins, .. } => {
                    check_tables(std::slice::from_ref(table_with_joins.as_ref()))?
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn check_read_only(query: &Query) -> Result<(), QueryError> {
    fn body(set: &SetExpr) -> Result<(), QueryError> {
        match set {
            SetExpr::Select(select) => {
                if select.into.is_some() {
                    return Err(QueryError::invalid("SELECT … INTO is not allowed"));
                }
                check_tables(&select.from)
            }
            SetExpr::Query(inner) => check_read_only(inner),
            SetExpr::SetOperation { left, right, .. } => {
                body(left)?;
                body(right)
            }
            SetExpr::Values(_) => Ok(()),
            _ => Err(QueryError::invalid("only SELECT queries are allowed")),
        }
    }
    if let Some(with) = &query.with {
        for cte in &with.cte_tables {
            check_read_only(&cte.query)?;
        }
    }
    body(&query.body)?;
    let mut problem = None;
    let _ = visit_expressions(query, |expr| {
        if let Expr::Subquery(inner)
        | Expr::Exists { subquery: inner, .. }
        | Expr::InSubquery { subquery: inner, .. } = expr
        {
            if let Err(e) = check_read_only(inner) {
                problem = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    problem.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_select_over_known_tables() {
        assert!(SqlQuery::parse("SELECT event, count(*) FROM events GROUP BY event").is_ok());
        assert!(SqlQuery::parse("WITH t AS (SELECT * FROM events) SELECT count(*) FROM t").is_ok());
        for bad in [
            "DELETE FROM events",
            "SELECT 1; SELECT 2",
            "SELECT * FROM secrets",
            "SELECT * FROM read_parquet('/etc/passwd')",
            "SELECT * FROM (events JOIN LATERAL generate_series(1, 10) AS g ON true)",
            "CREATE TABLE x (a int)",
            "SELECT * FROM events WHERE",
            "COPY events TO '/tmp/x'",
            "SELECT * INTO t FROM events",
        ] {
            assert!(matches!(SqlQuery::parse(bad), Err(QueryError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn property_access_is_recognised() {
        let parts = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            PropertyAccess::parse(&parts("properties.$browser")),
            Some(PropertyAccess { qualifier: None, person: false, path: vec!["$browser".into()] })
        );
        assert_eq!(
            PropertyAccess::parse(&parts("e.person.properties.email")),
            Some(PropertyAccess { qualifier: Some("e".into()), person: true, path: vec!["email".into()] })
        );
        assert_eq!(PropertyAccess::parse(&parts("properties")), None);
    }
}
