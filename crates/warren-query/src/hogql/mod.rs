//! SQL from users (`HogQLQuery`): parsed, checked to be one read-only
//! SELECT over `events`, `persons` and `groups`, and kept as a syntax tree
//! in which dotted property access (`properties.$browser`,
//! `person.properties.email`) is still what the user wrote. Each dialect
//! rewrites that access and the ClickHouse-flavoured functions its own way
//! (`render`).

mod check;
mod tables;

use warren_store::datafusion::sql::sqlparser::ast::{Query, Statement};
use warren_store::datafusion::sql::sqlparser::dialect::GenericDialect;
use warren_store::datafusion::sql::sqlparser::parser::Parser;

pub(crate) use self::tables::resolve_tables;
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
        let Statement::Query(mut query) = statement else {
            return Err(QueryError::invalid("only SELECT queries are allowed"));
        };
        check::check(&query)?;
        let mut tables = Vec::new();
        resolve_tables(&mut query, &mut |_, table| {
            if !tables.iter().any(|t| t == table) {
                tables.push(table.to_string());
            }
            Ok(())
        })?;
        Ok(Self { query, tables })
    }

    /// Warren's tables the query reads.
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
