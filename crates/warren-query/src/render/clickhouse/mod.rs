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

//!
//! The dialect is [`ClickHouseDialect`] (here, with its quoting rules);
//! `select.rs` renders a select, its FROM, joins and the project's scoped
//! tables, `expr.rs` its expressions, and `user_sql.rs` users' SQL.

mod expr;
mod select;
mod user_sql;

use warren_core::person::Group;
/// A text literal as ClickHouse reads it (backslashes escaped too): the
/// one rule for every text this dialect prints.
pub(crate) use warren_store::clickhouse_literal as quote_text;

use super::Dialect;
use crate::hogql::SqlQuery;
use crate::plan::Select;
use crate::QueryError;

/// The prefix of the outermost select's outputs; the backend names the
/// result's columns after the plan again.
pub(crate) const OUTPUT_SCOPE: &str = "o";

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

/// A ClickHouse identifier in double quotes, backslashes and quotes
/// escaped: the one rule for every name this dialect prints.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Aggregate, BinaryOp, Column, Expr, JoinKind, PropertySource, Source};

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
