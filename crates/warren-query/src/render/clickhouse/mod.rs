//! Plans as ClickHouse SQL over the cluster's `events` Distributed table,
//! for every server from Debian's 18.16 on.
//!
//! Spelling choices, most of them forced by 18.16 (see
//! `warren_store::clickhouse::schema`):
//! - instants are Int64 µs (`timestamp_us`); a bucket start is the local
//!   wall-clock time as Int64 µs "as if UTC", built from `toDate`/`toHour`
//!   in the project's zone, so it is exact at every DST change;
//! - properties are compact JSON text read with `visitParamExtract*`
//!   (18.16 has no `JSONExtract*`). These find a key's first occurrence at
//!   any depth, so a nested object holding the same key before the
//!   top-level one is read instead of it;
//! - the events table is read `FINAL`, so a uuid written twice counts once,
//!   scoped to the project, with `person_id` resolved through the cluster's
//!   `person_overrides` by a `GLOBAL ANY LEFT JOIN`: the overrides are read
//!   once, on the server the query went to (where ingest writes them), and
//!   sent to the shards. The backend's `join_use_nulls = 1` leaves NULL
//!   where a person has no override;
//! - every select names its outputs `<scope>__<name>`: ClickHouse lets an
//!   output alias shadow a column of the same name anywhere in the query,
//!   so no output may be named like a column;
//! - joins are `USING` keys computed (as text) on each side, since 18.16
//!   joins only on column equality; other join conditions of an inner
//!   join filter the joined rows;
//! - the funnel is no aggregate here: each person's events are collected
//!   with `groupArray` and the backend runs [`crate::funnel::evaluate`]
//!   over them, the same algorithm the DataFusion aggregate wraps.

mod user_sql;

use std::fmt::Write as _;

use warren_core::person::Group;
use warren_store::clickhouse_literal as quote_text;

use super::{binary_operator, properties_column, Dialect};
use crate::hogql::SqlQuery;
use crate::model::Interval;
use crate::plan::{Aggregate, BinaryOp, Bucketing, Column, Expr, JoinKind, Literal, Select, Source};
use crate::QueryError;

/// The prefix of the outermost select's outputs; the backend names the
/// result's columns after the plan again.
pub(crate) const OUTPUT_SCOPE: &str = "o";

const US_PER_DAY: i64 = 86_400_000_000;

/// What one query may see: one project of one database.
#[derive(Debug, Clone)]
pub struct ClickHouseDialect {
    /// The database of the Distributed `events` table and of the person
    /// tables.
    pub database: String,
    pub team_id: i64,
    pub groups: Vec<Group>,
}

impl Dialect for ClickHouseDialect {
    fn render(&self, select: &Select) -> Result<String, QueryError> {
        let mut out = String::new();
        self.select_sql(select, OUTPUT_SCOPE, &mut out)?;
        Ok(out)
    }

    fn render_sql(&self, query: &SqlQuery) -> Result<String, QueryError> {
        user_sql::render_sql(self, query)
    }
}

/// The columns a select can name: `(table alias, name, spelling)`.
#[derive(Default)]
struct Inputs {
    columns: Vec<(Option<String>, String, String)>,
    /// The FROM is the events table: plan columns may be read.
    events: bool,
}

impl Inputs {
    fn find(&self, table: Option<&str>, column: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(t, c, _)| c == column && (table.is_none() || t.as_deref() == table))
            .map(|(_, _, spelled)| spelled.as_str())
    }
}

/// What an expression is rendered within.
struct Scope<'a> {
    inputs: &'a Inputs,
    /// This select's outputs: `(name, spelling)`.
    outputs: &'a [(String, String)],
}

impl ClickHouseDialect {
    fn select_sql(&self, select: &Select, scope: &str, out: &mut String) -> Result<(), QueryError> {
        if select.columns.is_empty() {
            return Err(QueryError::Engine("a plan selected no columns".into()));
        }
        let mut from = String::new();
        let mut residual = Vec::new();
        let inputs = self.source_sql(&select.from, &mut from, &mut residual)?;
        let outputs: Vec<(String, String)> =
            select.columns.iter().map(|(name, _)| (name.clone(), scoped(scope, name))).collect();
        let cx = Scope { inputs: &inputs, outputs: &outputs };

        out.push_str("SELECT ");
        if select.distinct {
            out.push_str("DISTINCT ");
        }
        for (i, ((_, expr), (_, alias))) in select.columns.iter().zip(&outputs).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            self.expr_sql(expr, &cx, out)?;
            let _ = write!(out, " AS {alias}");
        }
        out.push_str(" FROM ");
        out.push_str(&from);
        let mut conditions = Vec::new();
        if inputs.events {
            conditions.push(format!("team_id = {}", self.team_id));
        }
        for condition in residual.iter().chain(&select.filter) {
            let mut text = String::new();
            self.expr_sql(condition, &cx, &mut text)?;
            conditions.push(text);
        }
        if !conditions.is_empty() {
            let _ = write!(out, " WHERE {}", conditions.join(" AND "));
        }
        if !select.group_by.is_empty() {
            out.push_str(" GROUP BY ");
            self.list(&select.group_by, &cx, out)?;
        }
        if !select.order_by.is_empty() {
            out.push_str(" ORDER BY ");
            for (i, (expr, ascending)) in select.order_by.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                self.expr_sql(expr, &cx, out)?;
                out.push_str(if *ascending { " ASC" } else { " DESC" });
            }
        }
        if let Some(limit) = select.limit {
            let _ = write!(out, " LIMIT {limit}");
        }
        Ok(())
    }

    /// Writes the FROM clause; answers what it provides. Join conditions
    /// that are no key equality land in `residual`, for the WHERE clause.
    fn source_sql(
        &self,
        source: &Source,
        out: &mut String,
        residual: &mut Vec<Expr>,
    ) -> Result<Inputs, QueryError> {
        match source {
            Source::Events => {
                out.push_str(&self.events_sql());
                Ok(Inputs { columns: Vec::new(), events: true })
            }
            Source::Groups => {
                out.push('(');
                self.groups_sql(out);
                out.push(')');
                let columns = ["group_type_index", "group_key", "properties"]
                    .iter()
                    .map(|c| (None, c.to_string(), c.to_string()))
                    .collect();
                Ok(Inputs { columns, events: false })
            }
            Source::Subquery { select, alias } => {
                out.push('(');
                self.select_sql(select, alias, out)?;
                let _ = write!(out, ") AS {}", quote_ident(alias));
                Ok(subquery_inputs(select, alias))
            }
            Source::Join { left, right, kind, on } => self.join_sql(left, right, *kind, on, out, residual),
        }
    }

    fn join_sql(
        &self,
        left: &Source,
        right: &Source,
        kind: JoinKind,
        on: &Expr,
        out: &mut String,
        residual: &mut Vec<Expr>,
    ) -> Result<Inputs, QueryError> {
        let (
            Source::Subquery { select: left, alias: left_alias },
            Source::Subquery { select: right, alias: right_alias },
        ) = (left, right)
        else {
            return Err(QueryError::Engine("ClickHouse joins subqueries only".into()));
        };
        let mut left_keys = Vec::new();
        let mut right_keys = Vec::new();
        for condition in conjuncts(on) {
            let key = match condition {
                Expr::Binary(BinaryOp::Eq, a, b) => {
                    let (ta, tb) = (tables_of(a), tables_of(b));
                    let only = |tables: &[String], alias: &str| {
                        !tables.is_empty() && tables.iter().all(|t| t == alias)
                    };
                    if only(&ta, left_alias) && only(&tb, right_alias) {
                        Some((a.as_ref(), b.as_ref()))
                    } else if only(&ta, right_alias) && only(&tb, left_alias) {
                        Some((b.as_ref(), a.as_ref()))
                    } else {
                        None
                    }
                }
                _ => None,
            };
            match key {
                Some((l, r)) => {
                    left_keys.push(l.clone());
                    right_keys.push(r.clone());
                }
                None if kind == JoinKind::Inner => residual.push(condition.clone()),
                None => {
                    return Err(QueryError::Engine(format!(
                        "ClickHouse outer joins need key equalities only, not {condition:?}"
                    )))
                }
            }
        }
        if left_keys.is_empty() {
            return Err(QueryError::Engine("a join without key equalities".into()));
        }
        let mut inputs = subquery_inputs(left, left_alias);
        inputs.columns.extend(subquery_inputs(right, right_alias).columns);
        // The join sits in a subquery naming its columns: 18.16 types an
        // expression over an outer join's columns as if no side could be
        // missing, and fails on the NULLs; one level up they are Nullable.
        let columns: Vec<&str> = inputs.columns.iter().map(|(_, _, spelled)| spelled.as_str()).collect();
        let _ = write!(out, "(SELECT {} FROM ", columns.join(", "));
        self.join_side(left, left_alias, &left_keys, out)?;
        out.push_str(match kind {
            JoinKind::Inner => " INNER JOIN ",
            JoinKind::Left => " LEFT OUTER JOIN ",
            JoinKind::Full => " FULL OUTER JOIN ",
        });
        self.join_side(right, right_alias, &right_keys, out)?;
        let keys: Vec<String> = (0..left_keys.len()).map(join_key).collect();
        let _ = write!(out, " USING ({}))", keys.join(", "));
        Ok(inputs)
    }

    /// One side of a join: its select, and the keys computed over it.
    fn join_side(
        &self,
        select: &Select,
        alias: &str,
        keys: &[Expr],
        out: &mut String,
    ) -> Result<(), QueryError> {
        let inputs = subquery_inputs(select, alias);
        let cx = Scope { inputs: &inputs, outputs: &[] };
        // Keys compare as text: `USING` wants one type on both sides, and
        // the two sides' expressions may differ in width or nullability.
        out.push_str("(SELECT *");
        for (i, key) in keys.iter().enumerate() {
            out.push_str(", toString(");
            self.expr_sql(key, &cx, out)?;
            let _ = write!(out, ") AS {}", join_key(i));
        }
        out.push_str(" FROM (");
        self.select_sql(select, alias, out)?;
        let _ = write!(out, ")) AS {}", quote_ident(alias));
        Ok(())
    }

    fn groups_sql(&self, out: &mut String) {
        if self.groups.is_empty() {
            out.push_str(
                "SELECT toInt32(0) AS group_type_index, '' AS group_key, '' AS properties FROM system.one WHERE 0",
            );
            return;
        }
        out.push_str(
            "SELECT toInt32(tupleElement(g, 1)) AS group_type_index, tupleElement(g, 2) AS group_key, \
             tupleElement(g, 3) AS properties FROM (SELECT arrayJoin([",
        );
        for (i, group) in self.groups.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let properties = serde_json::Value::Object(group.properties.clone()).to_string();
            let _ = write!(
                out,
                "tuple({}, {}, {})",
                group.group_type_index,
                quote_text(&group.group_key),
                quote_text(&properties)
            );
        }
        out.push_str("]) AS g)");
    }

    /// The project's rows of a table user SQL names, with its columns.
    fn sql_table(&self, table: &str) -> Result<String, QueryError> {
        match table {
            "events" => Ok(format!(
                "SELECT toString(uuid) AS uuid, event, properties, timestamp, team_id, distinct_id, elements_chain, \
                 toDateTime(intDiv(created_at_us, 1000000), 'UTC') AS created_at, {person} AS person_id, \
                 person_properties, toDateTime(intDiv(person_created_at_us, 1000000), 'UTC') AS person_created_at, \
                 person_mode, `$session_id`, `$window_id`, `$group_0`, `$group_1`, `$group_2`, `$group_3`, `$group_4` \
                 FROM (SELECT uuid, event, properties, timestamp, team_id, distinct_id, elements_chain, \
                 created_at_us, person_id, person_properties, person_created_at_us, person_mode, `$session_id`, \
                 `$window_id`, `$group_0`, `$group_1`, `$group_2`, `$group_3`, `$group_4`, warren_override \
                 FROM {events} WHERE team_id = {team})",
                person = self.person_id_sql(),
                events = self.events_sql(),
                team = self.team_id
            )),
            "groups" => {
                let mut out = String::new();
                self.groups_sql(&mut out);
                Ok(out)
            }
            // The newest row of each person, merged-away ones left out;
            // the inner names differ from the columns, which an alias of
            // the same name would shadow inside the aggregates.
            "persons" => Ok(format!(
                "SELECT toString(pid) AS id, team AS team_id, p_properties AS properties, \
                 toDateTime(intDiv(p_created_at_us, 1000000), 'UTC') AS created_at, \
                 p_is_identified AS is_identified, toInt64(p_version) AS version \
                 FROM (SELECT id AS pid, team_id AS team, argMax(properties, version) AS p_properties, \
                 argMax(created_at_us, version) AS p_created_at_us, \
                 argMax(is_identified, version) AS p_is_identified, max(version) AS p_version \
                 FROM {database}.persons WHERE team_id = {team} GROUP BY pid, team \
                 HAVING argMax(is_deleted, version) = 0)",
                database = self.database,
                team = self.team_id
            )),
            other => Err(QueryError::invalid(format!("unknown table {other}"))),
        }
    }

    /// The events table, one row per uuid, beside the person each row's
    /// stored person was merged into (`warren_override`), if any.
    fn events_sql(&self) -> String {
        format!(
            "{database}.events FINAL GLOBAL ANY LEFT JOIN (SELECT old_person_id AS person_id, \
             toString(argMax(override_person_id, version)) AS warren_override \
             FROM {database}.person_overrides WHERE team_id = {team} GROUP BY old_person_id) USING person_id",
            database = self.database,
            team = self.team_id
        )
    }

    /// The stored person id, or the one it was merged into.
    fn person_id_sql(&self) -> String {
        "ifNull(warren_override, toString(person_id))".into()
    }

    fn column_sql(&self, column: Column) -> String {
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

    fn list(&self, exprs: &[Expr], cx: &Scope, out: &mut String) -> Result<(), QueryError> {
        for (i, expr) in exprs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            self.expr_sql(expr, cx, out)?;
        }
        Ok(())
    }

    fn expr_sql(&self, expr: &Expr, cx: &Scope, out: &mut String) -> Result<(), QueryError> {
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

    fn binary_sql(
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

    fn aggregate_sql(&self, aggregate: &Aggregate, cx: &Scope, out: &mut String) -> Result<(), QueryError> {
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

/// The outputs of `select` as seen from outside the subquery `alias`.
fn subquery_inputs(select: &Select, alias: &str) -> Inputs {
    let columns = select
        .columns
        .iter()
        .map(|(name, _)| (Some(alias.to_string()), name.clone(), scoped(alias, name)))
        .collect();
    Inputs { columns, events: false }
}

fn scoped(scope: &str, name: &str) -> String {
    quote_ident(&format!("{scope}__{name}"))
}

fn join_key(i: usize) -> String {
    format!("warren_join_key_{i}")
}

fn conjuncts(expr: &Expr) -> Vec<&Expr> {
    match expr {
        Expr::Binary(BinaryOp::And, a, b) => {
            let mut all = conjuncts(a);
            all.extend(conjuncts(b));
            all
        }
        other => vec![other],
    }
}

/// The subquery aliases an expression's references name.
fn tables_of(expr: &Expr) -> Vec<String> {
    let mut tables = Vec::new();
    collect_tables(expr, &mut tables);
    tables
}

fn collect_tables(expr: &Expr, tables: &mut Vec<String>) {
    match expr {
        Expr::Ref { table: Some(t), .. } => tables.push(t.clone()),
        Expr::Not(e) | Expr::IsNull(e) | Expr::IsNotNull(e) => collect_tables(e, tables),
        Expr::Binary(_, a, b) => {
            collect_tables(a, tables);
            collect_tables(b, tables);
        }
        Expr::InList { expr, .. }
        | Expr::Contains { expr, .. }
        | Expr::RegexMatch { expr, .. }
        | Expr::Bucket { expr, .. }
        | Expr::ShiftBucket { expr, .. } => collect_tables(expr, tables),
        Expr::Coalesce(exprs) => exprs.iter().for_each(|e| collect_tables(e, tables)),
        // Anything else keeps the equality out of the join keys.
        _ => tables.push(String::new()),
    }
}

/// A property at `path` of the JSON text in `column`, as text: strings
/// unquoted, other values in their JSON spelling, null when missing or
/// JSON null.
fn property_text(column: &str, path: &[String], quote_text: fn(&str) -> String) -> String {
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

/// A ClickHouse identifier in double quotes.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PropertySource;

    fn dialect() -> ClickHouseDialect {
        ClickHouseDialect { database: "warren".into(), team_id: 7, groups: Vec::new() }
    }

    #[test]
    fn events_are_scoped_deduplicated_and_persons_resolved() {
        let select = Select::from(Source::Events)
            .column("person", Expr::col(Column::PersonId))
            .filter(Expr::col(Column::Timestamp).binary(BinaryOp::Lt, Expr::timestamp(2_000_000)));
        let sql = dialect().render(&select).unwrap_or_default();
        assert!(sql.contains("FROM warren.events FINAL GLOBAL ANY LEFT JOIN"), "{sql}");
        assert!(sql.contains("FROM warren.person_overrides WHERE team_id = 7"), "{sql}");
        assert!(sql.contains("USING person_id WHERE team_id = 7"), "{sql}");
        assert!(sql.contains("ifNull(warren_override, toString(person_id)) AS \"o__person\""), "{sql}");
        assert!(
            sql.contains("timestamp_us < toInt64(2000000) AND timestamp <= toDateTime(1, 'UTC')"),
            "{sql}"
        );
    }

    #[test]
    fn text_escapes_backslashes_and_quotes() {
        let select = Select::from(Source::Events).column("n", Expr::aggregate(Aggregate::CountAll)).filter(
            Expr::Contains {
                expr: Box::new(Expr::Property { source: PropertySource::Event, key: "it's".into() }),
                needle: r"a\b".into(),
                negated: false,
            },
        );
        let sql = dialect().render(&select).unwrap_or_default();
        assert!(sql.contains(r"visitParamExtractRaw(properties, 'it\'s')"), "{sql}");
        assert!(sql.contains(r"'a\\b') > 0"), "{sql}");
    }

    #[test]
    fn outer_join_conditions_become_keys_and_inner_ones_may_filter() {
        let side = |alias: &str| {
            Select::from(Source::Events)
                .column("person", Expr::col(Column::PersonId))
                .column("at", Expr::col(Column::Timestamp))
                .into_source(alias)
        };
        let join = |kind| Source::Join {
            left: Box::new(side("l")),
            right: Box::new(side("r")),
            kind,
            on: Expr::reference("l", "person")
                .eq(Expr::reference("r", "person"))
                .and(Expr::reference("r", "at").binary(BinaryOp::Gt, Expr::reference("l", "at"))),
        };
        let select = |kind| Select::from(join(kind)).column("n", Expr::aggregate(Aggregate::CountAll));
        let sql = dialect().render(&select(JoinKind::Inner)).unwrap_or_default();
        assert!(sql.contains("USING (warren_join_key_0)"), "{sql}");
        assert!(sql.contains("WHERE (\"r__at\" > \"l__at\")"), "{sql}");
        assert!(dialect().render(&select(JoinKind::Full)).is_err());
    }
}
