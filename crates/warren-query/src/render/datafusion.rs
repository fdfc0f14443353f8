//! Plans as DataFusion SQL over the Delta events table.
//!
//! Spelling choices: properties are read with `json_as_text` from
//! datafusion-functions-json; buckets come from `date_trunc` over the
//! local wall-clock time (`to_local_time` of the instant in the project's
//! zone); funnels through the `warren_funnel` aggregate
//! (`backend::datafusion::funnel`). The backend's `events` view already
//! resolves `person_id` through the project's overrides.

use std::fmt::Write as _;

use warren_store::datafusion::sql::sqlparser::ast::Expr as SqlExpr;

use super::{
    access_column, binary_operator, call_parts, one_argument, parse_rewrite, properties_column, quote_ident,
    quote_text, rewrite_expressions, Dialect,
};
use crate::hogql::{PropertyAccess, SqlQuery};
use crate::model::Interval;
use crate::plan::{Aggregate, Bucketing, Column, Expr, JoinKind, Literal, Select, Source};
use crate::QueryError;

/// The names the backend registers for this renderer's output.
pub(crate) const FUNNEL_FUNCTION: &str = "warren_funnel";
pub(crate) const EVENTS_TABLE: &str = "events";
pub(crate) const GROUPS_TABLE: &str = "groups";

#[derive(Debug, Default, Clone, Copy)]
pub struct DataFusionDialect;

impl Dialect for DataFusionDialect {
    fn render(&self, select: &Select) -> Result<String, QueryError> {
        let mut out = String::new();
        select_sql(select, &mut out)?;
        Ok(out)
    }

    fn render_sql(&self, query: &SqlQuery) -> Result<String, QueryError> {
        Ok(rewrite_expressions(query, rewrite_sql_expr)?.to_string())
    }
}

/// A user's expression in DataFusion's terms, or `None` to keep it.
fn rewrite_sql_expr(expr: &SqlExpr) -> Result<Option<SqlExpr>, QueryError> {
    let text = match expr {
        SqlExpr::CompoundIdentifier(idents) => {
            let parts: Vec<String> = idents.iter().map(|i| i.value.clone()).collect();
            let Some(access) = PropertyAccess::parse(&parts) else { return Ok(None) };
            let column = access_column(&access);
            let path: Vec<String> = access.path.iter().map(|k| quote_text(k)).collect();
            format!("json_as_text({column}, {})", path.join(", "))
        }
        SqlExpr::Function(function) => {
            let Some((name, args)) = call_parts(function) else { return Ok(None) };
            let one = |template: &str| one_argument(&name, &args, template);
            match name.as_str() {
                "count" if args.is_empty() => "count(*)".to_string(),
                "uniq" | "uniqExact" => one("count(DISTINCT {})")?,
                "toDate" => one("CAST({} AS DATE)")?,
                "toString" => one("CAST({} AS VARCHAR)")?,
                "toFloat" | "toFloat64OrNull" | "toFloatOrNull" => one("try_cast({} AS DOUBLE)")?,
                "toInt" | "toInt64OrNull" | "toIntOrNull" => one("try_cast({} AS BIGINT)")?,
                "toUnixTimestamp" => one("CAST(date_part('epoch', {}) AS BIGINT)")?,
                "toStartOfHour" => one("date_trunc('hour', {})")?,
                "toStartOfDay" => one("date_trunc('day', {})")?,
                "toMonday" | "toStartOfWeek" => one("date_trunc('week', {})")?,
                "toStartOfMonth" => one("date_trunc('month', {})")?,
                "today" if args.is_empty() => "current_date()".to_string(),
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    parse_rewrite(&text, expr).map(Some)
}

fn select_sql(select: &Select, out: &mut String) -> Result<(), QueryError> {
    out.push_str("SELECT ");
    if select.distinct {
        out.push_str("DISTINCT ");
    }
    if select.columns.is_empty() {
        return Err(QueryError::Engine("a plan selected no columns".into()));
    }
    for (i, (name, expr)) in select.columns.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        expr_sql(expr, out)?;
        let _ = write!(out, " AS {}", quote_ident(name));
    }
    out.push_str(" FROM ");
    source_sql(&select.from, out)?;
    if let Some(filter) = &select.filter {
        out.push_str(" WHERE ");
        expr_sql(filter, out)?;
    }
    if !select.group_by.is_empty() {
        out.push_str(" GROUP BY ");
        list(&select.group_by, out)?;
    }
    if !select.order_by.is_empty() {
        out.push_str(" ORDER BY ");
        for (i, (expr, ascending)) in select.order_by.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            expr_sql(expr, out)?;
            out.push_str(if *ascending { " ASC" } else { " DESC" });
        }
    }
    if let Some(limit) = select.limit {
        let _ = write!(out, " LIMIT {limit}");
    }
    Ok(())
}

fn source_sql(source: &Source, out: &mut String) -> Result<(), QueryError> {
    match source {
        Source::Events => out.push_str(EVENTS_TABLE),
        Source::Groups => out.push_str(GROUPS_TABLE),
        Source::Subquery { select, alias } => {
            out.push('(');
            select_sql(select, out)?;
            let _ = write!(out, ") AS {}", quote_ident(alias));
        }
        Source::Join { left, right, kind, on } => {
            source_sql(left, out)?;
            out.push_str(match kind {
                JoinKind::Inner => " INNER JOIN ",
                JoinKind::Left => " LEFT JOIN ",
                JoinKind::Full => " FULL OUTER JOIN ",
            });
            source_sql(right, out)?;
            out.push_str(" ON ");
            expr_sql(on, out)?;
        }
    }
    Ok(())
}

fn list(exprs: &[Expr], out: &mut String) -> Result<(), QueryError> {
    for (i, expr) in exprs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        expr_sql(expr, out)?;
    }
    Ok(())
}

fn column_name(column: Column) -> String {
    match column {
        Column::Uuid => "uuid".into(),
        Column::Event => "event".into(),
        Column::Timestamp => "timestamp".into(),
        Column::TeamId => "team_id".into(),
        Column::DistinctId => "distinct_id".into(),
        Column::PersonId => "person_id".into(),
        Column::PersonCreatedAt => "person_created_at".into(),
        Column::PersonMode => "person_mode".into(),
        Column::SessionId => quote_ident("$session_id"),
        Column::WindowId => quote_ident("$window_id"),
        Column::ElementsChain => "elements_chain".into(),
        Column::Group(i) => quote_ident(&format!("$group_{i}")),
        Column::Properties => "properties".into(),
        Column::PersonProperties => "person_properties".into(),
    }
}

fn literal_sql(literal: &Literal, out: &mut String) {
    match literal {
        Literal::Null => out.push_str("NULL"),
        Literal::Bool(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
        Literal::Int(i) => {
            let _ = write!(out, "{i}");
        }
        // `{:?}` keeps a decimal point, so the literal stays a float.
        Literal::Float(f) if f.is_finite() => {
            let _ = write!(out, "CAST({f:?} AS DOUBLE)");
        }
        Literal::Float(_) => out.push_str("NULL"),
        Literal::Text(t) => out.push_str(&quote_text(t)),
        Literal::Timestamp(us) => {
            let _ = write!(out, "arrow_cast({us}, 'Timestamp(Microsecond, Some(\"UTC\"))')");
        }
    }
}

fn bucket_sql(bucketing: &Bucketing, expr: &Expr, out: &mut String) -> Result<(), QueryError> {
    let mut local = String::from("to_local_time(arrow_cast(");
    expr_sql(expr, &mut local)?;
    let _ = write!(
        local,
        ", {}))",
        quote_text(&format!("Timestamp(Microsecond, Some(\"{}\"))", bucketing.time_zone))
    );
    match (bucketing.interval, bucketing.week_starts_monday) {
        // date_trunc's weeks start on Monday; a Sunday week is the Monday
        // week of the next day, one day earlier.
        (Interval::Week, false) => {
            let _ = write!(out, "(date_trunc('week', {local} + INTERVAL '1 day') - INTERVAL '1 day')");
        }
        (interval, _) => {
            let _ = write!(out, "date_trunc('{}', {local})", interval.name());
        }
    }
    Ok(())
}

/// `%` and `_` are LIKE's wildcards; a needle means them literally.
fn like_pattern(needle: &str) -> String {
    let mut escaped = String::with_capacity(needle.len() + 2);
    escaped.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

fn expr_sql(expr: &Expr, out: &mut String) -> Result<(), QueryError> {
    match expr {
        Expr::Column(column) => out.push_str(&column_name(*column)),
        Expr::Property { source, key } => {
            let _ = write!(out, "json_as_text({}, {})", properties_column(*source), quote_text(key));
        }
        Expr::NumericProperty { source, key } => {
            let _ = write!(
                out,
                "try_cast(json_as_text({}, {}) AS DOUBLE)",
                properties_column(*source),
                quote_text(key)
            );
        }
        Expr::Literal(literal) => literal_sql(literal, out),
        Expr::Ref { table, column } => {
            if let Some(table) = table {
                let _ = write!(out, "{}.", quote_ident(table));
            }
            out.push_str(&quote_ident(column));
        }
        Expr::Not(inner) => {
            out.push_str("(NOT ");
            expr_sql(inner, out)?;
            out.push(')');
        }
        Expr::IsNull(inner) => {
            out.push('(');
            expr_sql(inner, out)?;
            out.push_str(" IS NULL)");
        }
        Expr::IsNotNull(inner) => {
            out.push('(');
            expr_sql(inner, out)?;
            out.push_str(" IS NOT NULL)");
        }
        Expr::Binary(op, left, right) => {
            out.push('(');
            expr_sql(left, out)?;
            let _ = write!(out, " {} ", binary_operator(*op));
            expr_sql(right, out)?;
            out.push(')');
        }
        Expr::InList { expr, list, negated } => {
            out.push('(');
            expr_sql(expr, out)?;
            out.push_str(if *negated { " NOT IN (" } else { " IN (" });
            for (i, literal) in list.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                literal_sql(literal, out);
            }
            out.push_str("))");
        }
        Expr::InSelect { expr, select } => {
            out.push('(');
            expr_sql(expr, out)?;
            out.push_str(" IN (");
            select_sql(select, out)?;
            out.push_str("))");
        }
        Expr::Contains { expr, needle, negated } => {
            out.push('(');
            expr_sql(expr, out)?;
            out.push_str(if *negated { " NOT ILIKE " } else { " ILIKE " });
            out.push_str(&quote_text(&like_pattern(needle)));
            out.push(')');
        }
        Expr::RegexMatch { expr, pattern, negated } => {
            out.push('(');
            expr_sql(expr, out)?;
            out.push_str(if *negated { " !~ " } else { " ~ " });
            out.push_str(&quote_text(pattern));
            out.push(')');
        }
        Expr::Bucket { bucketing, expr } => bucket_sql(bucketing, expr, out)?,
        Expr::ShiftBucket { interval, n, expr } => {
            out.push('(');
            expr_sql(expr, out)?;
            let sign = if *n < 0 { '-' } else { '+' };
            let _ = write!(out, " {sign} INTERVAL '{} {}')", n.unsigned_abs(), interval.name());
        }
        Expr::Coalesce(exprs) => {
            out.push_str("coalesce(");
            list(exprs, out)?;
            out.push(')');
        }
        Expr::Case { branches, otherwise } => {
            out.push_str("CASE");
            for (condition, value) in branches {
                out.push_str(" WHEN ");
                expr_sql(condition, out)?;
                out.push_str(" THEN ");
                expr_sql(value, out)?;
            }
            out.push_str(" ELSE ");
            expr_sql(otherwise, out)?;
            out.push_str(" END");
        }
        Expr::Aggregate(aggregate) => aggregate_sql(aggregate, out)?,
    }
    Ok(())
}

fn aggregate_sql(aggregate: &Aggregate, out: &mut String) -> Result<(), QueryError> {
    let call = |name: &str, arg: &Expr, out: &mut String| -> Result<(), QueryError> {
        let _ = write!(out, "{name}(");
        expr_sql(arg, out)?;
        out.push(')');
        Ok(())
    };
    match aggregate {
        Aggregate::CountAll => out.push_str("count(*)"),
        Aggregate::Count(arg) => call("count", arg, out)?,
        Aggregate::CountDistinct(arg) => {
            out.push_str("count(DISTINCT ");
            expr_sql(arg, out)?;
            out.push(')');
        }
        Aggregate::Sum(arg) => call("sum", arg, out)?,
        Aggregate::Avg(arg) => call("avg", arg, out)?,
        Aggregate::Min(arg) => call("min", arg, out)?,
        Aggregate::Max(arg) => call("max", arg, out)?,
        Aggregate::Quantile(q, arg) => {
            let _ = write!(out, "percentile_cont({q:?}) WITHIN GROUP (ORDER BY ");
            expr_sql(arg, out)?;
            out.push(')');
        }
        Aggregate::Funnel { spec, timestamp, steps, breakdown } => {
            let _ = write!(out, "{FUNNEL_FUNCTION}(");
            expr_sql(timestamp, out)?;
            out.push_str(", ");
            expr_sql(steps, out)?;
            out.push_str(", ");
            expr_sql(breakdown, out)?;
            let spec = serde_json::to_string(spec).map_err(|e| QueryError::Engine(e.to_string()))?;
            let _ = write!(out, ", {})", quote_text(&spec));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PropertySource;

    #[test]
    fn text_is_quoted_and_like_wildcards_are_literal() {
        let select = Select::from(Source::Events).column("n", Expr::aggregate(Aggregate::CountAll)).filter(
            Expr::Contains {
                expr: Box::new(Expr::Property { source: PropertySource::Event, key: "it's".into() }),
                needle: "50%_off".into(),
                negated: false,
            },
        );
        let sql = DataFusionDialect.render(&select).unwrap_or_default();
        assert!(sql.contains(r"json_as_text(properties, 'it''s') ILIKE '%50\%\_off%'"), "{sql}");
    }
}
