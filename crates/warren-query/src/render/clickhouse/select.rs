//! A plan's select as ClickHouse SQL: its outputs, its FROM — the
//! project's scoped tables, subqueries and joins (on keys computed on each
//! side, as 18.16 joins only on column equality) — and its clauses.

use std::fmt::Write as _;

use super::{quote_ident, quote_text, ClickHouseDialect};
use crate::plan::{BinaryOp, Expr, JoinKind, Select, Source};
use crate::QueryError;

/// The columns a select can name: `(table alias, name, spelling)`.
#[derive(Default)]
pub(super) struct Inputs {
    pub columns: Vec<(Option<String>, String, String)>,
    /// The FROM is the events table: plan columns may be read.
    pub events: bool,
}

impl Inputs {
    pub(super) fn find(&self, table: Option<&str>, column: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(t, c, _)| c == column && (table.is_none() || t.as_deref() == table))
            .map(|(_, _, spelled)| spelled.as_str())
    }
}

/// What an expression is rendered within.
pub(super) struct Scope<'a> {
    pub inputs: &'a Inputs,
    /// This select's outputs: `(name, spelling)`.
    pub outputs: &'a [(String, String)],
}

impl ClickHouseDialect {
    pub(super) fn select_sql(
        &self,
        select: &Select,
        scope: &str,
        out: &mut String,
    ) -> Result<(), QueryError> {
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
    pub(super) fn source_sql(
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

    pub(super) fn join_sql(
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
    pub(super) fn join_side(
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

    pub(super) fn groups_sql(&self, out: &mut String) {
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
    pub(super) fn sql_table(&self, table: &str) -> Result<String, QueryError> {
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
    pub(super) fn events_sql(&self) -> String {
        format!(
            "{database}.events FINAL GLOBAL ANY LEFT JOIN (SELECT old_person_id AS person_id, \
             toString(argMax(override_person_id, version)) AS warren_override \
             FROM {database}.person_overrides WHERE team_id = {team} GROUP BY old_person_id) USING person_id",
            database = self.database,
            team = self.team_id
        )
    }

    /// The stored person id, or the one it was merged into.
    pub(super) fn person_id_sql(&self) -> String {
        "ifNull(warren_override, toString(person_id))".into()
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
