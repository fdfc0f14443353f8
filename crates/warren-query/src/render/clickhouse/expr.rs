//! A plan's expressions as ClickHouse SQL: columns, properties (compact
//! JSON text read with `visitParamExtract*`), operators, aggregates,
//! literals, and time buckets built in the project's zone.

use std::fmt::Write as _;

use super::select::Scope;
use super::{quote_text, ClickHouseDialect};
use crate::model::Interval;
use crate::plan::{Aggregate, BinaryOp, Bucketing, Column, Expr, Literal};
use crate::render::{binary_operator, properties_column};
use crate::QueryError;

const US_PER_DAY: i64 = 86_400_000_000;

impl ClickHouseDialect {
    pub(super) fn column_sql(&self, column: Column) -> String {
        match column {
            Column::Uuid => "toString(uuid)".into(),
            Column::Event => "event".into(),
            Column::Timestamp => "timestamp_us".into(),
            Column::TeamId => "team_id".into(),
            Column::DistinctId => "distinct_id".into(),
            Column::PersonId => self.person_id_sql(),
            Column::PersonCreatedAt => "person_created_at_us".into(),
            Column::PersonMode => "person_mode".into(),
            Column::SessionId => "`$session_id`".into(),
            Column::WindowId => "`$window_id`".into(),
            Column::ElementsChain => "elements_chain".into(),
            Column::Group(i) => format!("`$group_{i}`"),
            Column::Properties => "properties".into(),
            Column::PersonProperties => "person_properties".into(),
        }
    }

    pub(super) fn list(&self, exprs: &[Expr], cx: &Scope, out: &mut String) -> Result<(), QueryError> {
        for (i, expr) in exprs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            self.expr_sql(expr, cx, out)?;
        }
        Ok(())
    }

    pub(super) fn expr_sql(&self, expr: &Expr, cx: &Scope, out: &mut String) -> Result<(), QueryError> {
        match expr {
            Expr::Column(column) => {
                if !cx.inputs.events {
                    return Err(QueryError::Engine(format!(
                        "column {column:?} read outside the events table"
                    )));
                }
                out.push_str(&self.column_sql(*column));
            }
            Expr::Property { source, key } => out.push_str(&property_text(
                properties_column(*source),
                std::slice::from_ref(key),
                quote_text,
            )),
            Expr::NumericProperty { source, key } => {
                let _ = write!(
                    out,
                    "toFloat64OrNull({})",
                    property_text(properties_column(*source), std::slice::from_ref(key), quote_text)
                );
            }
            Expr::Literal(literal) => literal_sql(literal, out),
            Expr::Ref { table, column } => {
                let spelled = cx
                    .inputs
                    .find(table.as_deref(), column)
                    .or_else(|| {
                        table
                            .is_none()
                            .then(|| cx.outputs.iter().find(|(n, _)| n == column).map(|(_, s)| s.as_str()))?
                    })
                    .ok_or_else(|| {
                        QueryError::Engine(format!(
                            "unknown column {}{column}",
                            table.as_ref().map(|t| format!("{t}.")).unwrap_or_default()
                        ))
                    })?;
                out.push_str(spelled);
            }
            Expr::Not(inner) => {
                out.push_str("(NOT ");
                self.expr_sql(inner, cx, out)?;
                out.push(')');
            }
            Expr::IsNull(inner) => {
                out.push_str("isNull(");
                self.expr_sql(inner, cx, out)?;
                out.push(')');
            }
            Expr::IsNotNull(inner) => {
                out.push_str("isNotNull(");
                self.expr_sql(inner, cx, out)?;
                out.push(')');
            }
            Expr::Binary(op, left, right) => self.binary_sql(*op, left, right, cx, out)?,
            Expr::InList { expr, list, negated } => {
                if list.is_empty() {
                    out.push_str(if *negated { "1" } else { "0" });
                    return Ok(());
                }
                out.push('(');
                self.expr_sql(expr, cx, out)?;
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
                self.expr_sql(expr, cx, out)?;
                out.push_str(" IN (");
                self.select_sql(select, "in", out)?;
                out.push_str("))");
            }
            Expr::Contains { expr, needle, negated } => {
                out.push_str("(positionCaseInsensitiveUTF8(");
                self.expr_sql(expr, cx, out)?;
                let _ = write!(out, ", {}) {} 0)", quote_text(needle), if *negated { "=" } else { ">" });
            }
            Expr::RegexMatch { expr, pattern, negated } => {
                out.push_str(if *negated { "(NOT match(" } else { "(match(" });
                self.expr_sql(expr, cx, out)?;
                let _ = write!(out, ", {}))", quote_text(pattern));
            }
            Expr::Bucket { bucketing, expr } => {
                let mut instant = String::new();
                self.expr_sql(expr, cx, &mut instant)?;
                out.push_str(&bucket_sql(bucketing, &instant));
            }
            Expr::ShiftBucket { interval, n, expr } => {
                let mut local = String::new();
                self.expr_sql(expr, cx, &mut local)?;
                out.push_str(&shift_sql(*interval, *n, &local));
            }
            Expr::Coalesce(exprs) => {
                out.push_str("coalesce(");
                self.list(exprs, cx, out)?;
                out.push(')');
            }
            Expr::Case { branches, otherwise } => {
                out.push_str("CASE");
                for (condition, value) in branches {
                    out.push_str(" WHEN ");
                    self.expr_sql(condition, cx, out)?;
                    out.push_str(" THEN ");
                    self.expr_sql(value, cx, out)?;
                }
                out.push_str(" ELSE ");
                self.expr_sql(otherwise, cx, out)?;
                out.push_str(" END");
            }
            Expr::Aggregate(aggregate) => self.aggregate_sql(aggregate, cx, out)?,
        }
        Ok(())
    }

    pub(super) fn binary_sql(
        &self,
        op: BinaryOp,
        left: &Expr,
        right: &Expr,
        cx: &Scope,
        out: &mut String,
    ) -> Result<(), QueryError> {
        out.push('(');
        self.expr_sql(left, cx, out)?;
        let _ = write!(out, " {} ", binary_operator(op));
        self.expr_sql(right, cx, out)?;
        // The table is sorted by day: a bound on the exact time is also
        // said in seconds, so whole parts and partitions are skipped.
        if let (Expr::Column(Column::Timestamp), Expr::Literal(Literal::Timestamp(us)), true) =
            (left, right, cx.inputs.events)
        {
            let bound = match op {
                BinaryOp::GtEq | BinaryOp::Gt => Some((">=", us.div_euclid(1_000_000))),
                BinaryOp::LtEq => Some(("<=", us.div_euclid(1_000_000))),
                BinaryOp::Lt => Some(("<=", (us - 1).div_euclid(1_000_000))),
                _ => None,
            };
            if let Some((operator, seconds)) = bound {
                let _ = write!(out, " AND timestamp {operator} toDateTime({}, 'UTC')", seconds.max(0));
            }
        }
        out.push(')');
        Ok(())
    }

    pub(super) fn aggregate_sql(
        &self,
        aggregate: &Aggregate,
        cx: &Scope,
        out: &mut String,
    ) -> Result<(), QueryError> {
        let call = |name: &str, arg: &Expr, out: &mut String| -> Result<(), QueryError> {
            let _ = write!(out, "{name}(");
            self.expr_sql(arg, cx, out)?;
            out.push(')');
            Ok(())
        };
        match aggregate {
            Aggregate::CountAll => out.push_str("count()"),
            Aggregate::Count(arg) => call("count", arg, out)?,
            Aggregate::CountDistinct(arg) => call("uniqExact", arg, out)?,
            Aggregate::Sum(arg) => call("sum", arg, out)?,
            Aggregate::Avg(arg) => call("avg", arg, out)?,
            Aggregate::Min(arg) => call("min", arg, out)?,
            Aggregate::Max(arg) => call("max", arg, out)?,
            Aggregate::Quantile(q, arg) => {
                // Exact, interpolated between the two nearest values, as
                // `percentile_cont`: 18.16 has no interpolating quantile.
                let mut values = String::new();
                self.expr_sql(arg, cx, &mut values)?;
                let sorted = format!("arraySort(groupArray(toFloat64({values})))");
                let position = format!("({q:?} * (length({sorted}) - 1))");
                let low = format!("{sorted}[toUInt64(floor({position})) + 1]");
                let high = format!("{sorted}[toUInt64(ceil({position})) + 1]");
                let _ = write!(
                    out,
                    "if(length({sorted}) = 0, NULL, {low} + ({position} - floor({position})) * ({high} - {low}))"
                );
            }
            Aggregate::Funnel { timestamp, steps, breakdown, .. } => {
                out.push_str("groupArray(tuple(toInt64(");
                self.expr_sql(timestamp, cx, out)?;
                out.push_str("), toUInt64(");
                self.expr_sql(steps, cx, out)?;
                out.push_str("), ");
                self.expr_sql(breakdown, cx, out)?;
                out.push_str("))");
            }
        }
        Ok(())
    }
}

/// A property at `path` of the JSON text in `column`, as text: strings
/// unquoted, other values in their JSON spelling, null when missing or
/// JSON null.
pub(super) fn property_text(column: &str, path: &[String], quote_text: fn(&str) -> String) -> String {
    let (last, parents) = path.split_last().map(|(l, p)| (l.as_str(), p)).unwrap_or(("", &[]));
    let object = parents
        .iter()
        .fold(column.to_string(), |json, key| format!("visitParamExtractRaw({json}, {})", quote_text(key)));
    let raw = format!("visitParamExtractRaw({object}, {})", quote_text(last));
    format!(
        "multiIf({raw} = '' OR {raw} = 'null', NULL, startsWith({raw}, '\"'), visitParamExtractString({object}, {}), {raw})",
        quote_text(last)
    )
}

/// The local start of the bucket the instant `us` (Int64 µs, UTC) falls
/// in, as wall-clock µs.
fn bucket_sql(bucketing: &Bucketing, us: &str) -> String {
    let zone = quote_text(&bucketing.time_zone);
    let instant = format!("toDateTime(intDiv({us}, 1000000))");
    let day = format!("toDate({instant}, {zone})");
    let days = |date: String| format!("(toInt64(toUInt32({date})) * {US_PER_DAY})");
    match (bucketing.interval, bucketing.week_starts_monday) {
        (Interval::Hour, _) => format!("({} + toInt64(toHour({instant}, {zone})) * 3600000000)", days(day)),
        (Interval::Day, _) => days(day),
        (Interval::Week, true) => days(format!("toMonday({day})")),
        // A Sunday week is the Monday week of the next day, a day earlier.
        (Interval::Week, false) => days(format!("(toMonday({day} + 1) - 1)")),
        (Interval::Month, _) => days(format!("toStartOfMonth({day})")),
    }
}

/// A wall-clock bucket start `local` moved by `n` intervals.
fn shift_sql(interval: Interval, n: i32, local: &str) -> String {
    let n = i64::from(n);
    match interval {
        Interval::Hour => format!("({local} + {})", n * 3_600_000_000),
        Interval::Day => format!("({local} + {})", n * US_PER_DAY),
        Interval::Week => format!("({local} + {})", n * 7 * US_PER_DAY),
        Interval::Month => format!(
            "(toInt64(toUnixTimestamp(addMonths(toDateTime(intDiv({local}, 1000000), 'UTC'), {n}))) * 1000000)"
        ),
    }
}

fn literal_sql(literal: &Literal, out: &mut String) {
    match literal {
        Literal::Null => out.push_str("NULL"),
        Literal::Bool(b) => out.push_str(if *b { "1" } else { "0" }),
        Literal::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Literal::Float(f) if f.is_finite() => {
            let _ = write!(out, "toFloat64({f:?})");
        }
        Literal::Float(_) => out.push_str("NULL"),
        Literal::Text(t) => out.push_str(&quote_text(t)),
        Literal::Timestamp(us) => {
            let _ = write!(out, "toInt64({us})");
        }
    }
}
