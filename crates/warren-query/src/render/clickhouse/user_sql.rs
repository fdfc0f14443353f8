//! Users' SQL on ClickHouse, made so that the statement ClickHouse runs
//! is the one Warren checked.
//!
//! The statement is parsed once (`hogql`), and everything below works on
//! that syntax tree:
//! - property access and HogQL's function names are rewritten to
//!   ClickHouse's (standard quoting in, like the user's own text);
//! - functions that reach beyond the query's own rows are refused:
//!   dictionaries, `Join` tables, `IN` over a table name, table functions
//!   spelled as scalars, settings and server files;
//! - every text literal is re-quoted for ClickHouse, which reads a
//!   backslash as an escape where standard SQL does not;
//! - the printed text is lexed both ways — as standard SQL and as
//!   ClickHouse reads it — and refused unless both see the same tokens at
//!   the same places, with identifiers ClickHouse cannot misread;
//! - only then are `events`, `persons` and `groups` replaced, in the tree,
//!   by the project's rows of each (see `resolve_tables`).
//!
//! The backend also runs the statement with `readonly = 1`, so no clause
//! could change a limit even if one got through.

use std::ops::ControlFlow;

use warren_store::datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, Ident, ObjectName, ObjectNamePart, Query, TableAlias, TableFactor, Value, ValueWithSpan,
    Visit, VisitMut, Visitor, VisitorMut,
};
use warren_store::datafusion::sql::sqlparser::dialect::{
    ClickHouseDialect as ClickHouseLexing, GenericDialect,
};
use warren_store::datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::expr::property_text;
use super::ClickHouseDialect;
use crate::hogql::{resolve_tables, PropertyAccess, SqlQuery};
use crate::render::{
    access_column, call_parts, one_argument, parse_rewrite, quote_text, rewrite_expressions,
};
use crate::QueryError;

/// Functions no user statement may call, matched without case: each reads
/// something other than the rows the statement was given (another table,
/// a dictionary, a file, a server setting) or waits on purpose.
const REFUSED_FUNCTIONS: &[&str] = &[
    "in",
    "notin",
    "nullin",
    "notnullin",
    "inignoreset",
    "notinignoreset",
    "hascolumnintable",
    "getsetting",
    "getserversetting",
    "getmacro",
    "file",
    "input",
    "sleep",
    "sleepeachrow",
    "catboostevaluate",
    "modelevaluate",
    "evalmlmethod",
    "currentuser",
    "currentprofiles",
    "currentroles",
];

/// Prefixes of refused function families: `dictGet*`, `joinGet*`,
/// `globalIn*`, and table functions some versions also accept as scalars.
const REFUSED_PREFIXES: &[&str] = &[
    "dict",
    "joinget",
    "global",
    "remote",
    "cluster",
    "url",
    "s3",
    "hdfs",
    "azureblob",
    "mysql",
    "postgresql",
    "mongodb",
    "jdbc",
    "odbc",
    "executable",
];

pub(super) fn render_sql(dialect: &ClickHouseDialect, query: &SqlQuery) -> Result<String, QueryError> {
    let mut query = rewrite_expressions(query, rewrite_sql_expr)?;
    refuse_foreign_reads(&query)?;
    let _ = VisitMut::visit(&mut query, &mut RequoteLiterals);
    verify_lexing(&query.to_string())?;
    resolve_tables(&mut query, &mut |factor, table| {
        let TableFactor::Table { name, alias, .. } = factor else { return Ok(()) };
        // An unquoted identifier prints as written: the project's rows
        // take the table's place in the tree and print there verbatim.
        *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(format!(
            "({})",
            dialect.sql_table(table)?
        )))]);
        if alias.is_none() {
            *alias =
                Some(TableAlias { explicit: true, name: Ident::new(table), columns: Vec::new(), at: None });
        }
        Ok(())
    })?;
    Ok(query.to_string())
}

/// A user's expression in ClickHouse's terms, or `None` to keep it: most
/// of what users write is ClickHouse already. The rewrite is parsed back
/// into the syntax tree, so its literals and names are quoted the standard
/// way (`crate::render::quote_text`), as in the user's own text;
/// [`RequoteLiterals`] spells every literal for ClickHouse afterwards.
fn rewrite_sql_expr(expr: &SqlExpr) -> Result<Option<SqlExpr>, QueryError> {
    let text = match expr {
        SqlExpr::CompoundIdentifier(idents) => {
            let parts: Vec<String> = idents.iter().map(|i| i.value.clone()).collect();
            let Some(access) = PropertyAccess::parse(&parts) else { return Ok(None) };
            let column = access_column(&access);
            property_text(&column, &access.path, quote_text)
        }
        SqlExpr::Function(function) => {
            let Some((name, args)) = call_parts(function) else { return Ok(None) };
            // HogQL's names for ClickHouse functions; text in, so the
            // `OrNull` forms read a property's text.
            match name.as_str() {
                "toFloat" | "toFloatOrNull" => one_argument(&name, &args, "toFloat64OrNull(toString({}))")?,
                "toInt" | "toIntOrNull" => one_argument(&name, &args, "toInt64OrNull(toString({}))")?,
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    parse_rewrite(&text, expr).map(Some)
}

/// Refuses refused functions, and `x IN (name)`, which ClickHouse reads
/// as membership in the table `name`.
fn refuse_foreign_reads(query: &Query) -> Result<(), QueryError> {
    struct Foreign;
    impl Visitor for Foreign {
        type Break = QueryError;

        fn pre_visit_expr(&mut self, expr: &SqlExpr) -> ControlFlow<QueryError> {
            match expr {
                SqlExpr::Function(function) => {
                    let name = match function.name.0.as_slice() {
                        [ObjectNamePart::Identifier(ident)] => ident.value.to_lowercase(),
                        _ => {
                            return ControlFlow::Break(QueryError::invalid(format!(
                                "function {}: qualified function names are not allowed",
                                function.name
                            )))
                        }
                    };
                    if REFUSED_FUNCTIONS.contains(&name.as_str())
                        || REFUSED_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
                    {
                        return ControlFlow::Break(QueryError::invalid(format!(
                            "function {} is not allowed: it reads outside the project's rows",
                            function.name
                        )));
                    }
                }
                SqlExpr::InList { list, .. } if matches!(list.as_slice(), [only] if names_something(only)) => {
                    return ControlFlow::Break(QueryError::invalid(
                        "IN (name) reads a table on ClickHouse: write IN (SELECT …) or a list of values",
                    ));
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    match query.visit(&mut Foreign) {
        ControlFlow::Break(problem) => Err(problem),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Whether `expr` is a bare (possibly parenthesised) name.
fn names_something(expr: &SqlExpr) -> bool {
    match expr {
        SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_) => true,
        SqlExpr::Nested(inner) => names_something(inner),
        _ => false,
    }
}

/// Spells each text literal so ClickHouse reads the text standard SQL
/// meant: a backslash doubled (quotes are doubled when printed, which
/// ClickHouse reads too).
struct RequoteLiterals;

impl VisitorMut for RequoteLiterals {
    type Break = ();

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        if let Value::SingleQuotedString(text) = &mut value.value {
            if text.contains('\\') {
                *text = text.replace('\\', "\\\\");
            }
        }
        ControlFlow::Continue(())
    }
}

/// Refuses `sql` unless ClickHouse's lexing and standard SQL's find the
/// same tokens at the same places, and every identifier is one ClickHouse
/// reads as written: plain ASCII words, or quoted names without
/// backslashes or control characters.
fn verify_lexing(sql: &str) -> Result<(), QueryError> {
    let lex = |dialect: &dyn warren_store::datafusion::sql::sqlparser::dialect::Dialect| {
        Tokenizer::new(dialect, sql)
            .tokenize_with_location()
            .map_err(|e| QueryError::invalid(format!("ClickHouse would read this SQL differently: {e}")))
    };
    let standard = lex(&GenericDialect {})?;
    let clickhouse = lex(&ClickHouseLexing {})?;
    let same_place = |(a, b): (&TokenWithSpan, &TokenWithSpan)| {
        a.span == b.span && std::mem::discriminant(&a.token) == std::mem::discriminant(&b.token)
    };
    if standard.len() != clickhouse.len() || !standard.iter().zip(&clickhouse).all(same_place) {
        return Err(QueryError::invalid(
            "ClickHouse would read this SQL differently: check quotes and backslashes",
        ));
    }
    for token in &standard {
        let Token::Word(word) = &token.token else { continue };
        let readable = match word.quote_style {
            None => word.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            Some('"' | '`') => !word.value.chars().any(|c| c == '\\' || c.is_control()),
            Some(_) => false,
        };
        if !readable {
            return Err(QueryError::invalid(format!(
                "identifier {} is not allowed here: quote names with \" and leave out backslashes",
                word
            )));
        }
    }
    Ok(())
}
