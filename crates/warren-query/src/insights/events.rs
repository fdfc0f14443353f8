//! `EventsQuery`: the newest events matching a filter, as PostHog's events
//! table asks for them. One plan fetches the stored columns; each requested
//! `select` item is then read from them here, so every backend answers
//! the same shapes.

use serde_json::{json, Map, Value};

use crate::backend::{Cell, QueryBackend};
use crate::filters;
use crate::model::EventsQuery;
use crate::plan::{BinaryOp, Column, Expr, Select, Source};
use crate::project::ProjectContext;
use crate::time;
use crate::QueryError;

/// Rows one answer holds at most; the UI pages on with `before`.
const MAX_LIMIT: u64 = 1000;
const DEFAULT_LIMIT: u64 = 100;
/// Columns one answer holds at most.
const MAX_SELECT: usize = 100;

/// The stored columns fetched for every row, in this order.
const FETCHED: [(&str, Column); 9] = [
    ("uuid", Column::Uuid),
    ("event", Column::Event),
    ("timestamp", Column::Timestamp),
    ("distinct_id", Column::DistinctId),
    ("person_id", Column::PersonId),
    ("properties", Column::Properties),
    ("person_properties", Column::PersonProperties),
    ("elements_chain", Column::ElementsChain),
    ("person_mode", Column::PersonMode),
];

/// One `select` item, read.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Star,
    Stored(usize),
    Properties,
    Person,
    Property(String),
    PersonProperty(String),
}

impl Item {
    fn parse(text: &str) -> Result<Item, QueryError> {
        let text = text.trim();
        if text == "*" {
            return Ok(Item::Star);
        }
        if text == "properties" {
            return Ok(Item::Properties);
        }
        if text == "person" {
            return Ok(Item::Person);
        }
        if let Some(key) = text.strip_prefix("person.properties.") {
            return Ok(Item::PersonProperty(key.to_string()));
        }
        if let Some(key) = text.strip_prefix("properties.") {
            return Ok(Item::Property(key.to_string()));
        }
        match FETCHED.iter().position(|(name, _)| *name == text) {
            Some(i) if FETCHED[i].0 != "person_properties" => Ok(Item::Stored(i)),
            _ => Err(QueryError::invalid(format!(
                "EventsQuery cannot select {text:?}: use *, uuid, event, timestamp, distinct_id, person_id, person, \
                 properties, properties.<key>, person.properties.<key>, elements_chain or person_mode"
            ))),
        }
    }
}

pub async fn run(
    query: &EventsQuery,
    project: &ProjectContext,
    backend: &dyn QueryBackend,
) -> Result<Value, QueryError> {
    let select: Vec<String> = if query.select.is_empty() { vec!["*".into()] } else { query.select.clone() };
    if select.len() > MAX_SELECT {
        return Err(QueryError::invalid(format!("select takes at most {MAX_SELECT} columns")));
    }
    let items = select.iter().map(|s| Item::parse(s)).collect::<Result<Vec<_>, _>>()?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(QueryError::invalid(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let ascending = match query.order_by.as_slice() {
        [] => false,
        [one] => match one.trim().to_ascii_lowercase().as_str() {
            "timestamp desc" | "-timestamp" => false,
            "timestamp asc" | "timestamp" => true,
            _ => {
                return Err(QueryError::invalid(
                    "orderBy must be [\"timestamp DESC\"] or [\"timestamp ASC\"]",
                ))
            }
        },
        _ => return Err(QueryError::invalid("orderBy takes one entry")),
    };
    let after_us = time::instant(query.after.as_deref().unwrap_or("-24h"), project, false)?;
    let before_us = match query.before.as_deref() {
        Some(text) => time::instant(text, project, true)?,
        None => time::end_of(None, project)?,
    };

    let mut condition = super::project_only(project)
        .and(Expr::col(Column::Timestamp).binary(BinaryOp::GtEq, Expr::timestamp(after_us)))
        .and(Expr::col(Column::Timestamp).binary(BinaryOp::Lt, Expr::timestamp(before_us)))
        .and(filters::event_is(query.event.as_deref()))
        .and(filters::properties(query.properties.as_ref(), project)?);
    if let Some(person) = &query.person_id {
        condition = condition.and(Expr::col(Column::PersonId).eq(Expr::text(person.clone())));
    }
    if query.filter_test_accounts == Some(true) {
        condition = condition.and(filters::all_of(&project.test_account_filters, project)?);
    }
    let mut plan = Select::from(Source::Events);
    for (name, column) in FETCHED {
        plan = plan.column(name, Expr::col(column));
    }
    let plan = plan
        .filter(condition)
        .order_by(Expr::col(Column::Timestamp), ascending)
        .order_by(Expr::col(Column::Uuid), ascending)
        .limit(limit + 1);
    let rows = backend.run(project, &plan).await?;
    let has_more = rows.rows.len() as u64 > limit;
    let results: Vec<Value> = rows
        .rows
        .iter()
        .take(limit as usize)
        .map(|row| {
            let row = Row::read(row);
            Value::Array(items.iter().map(|item| row.value_of(item)).collect())
        })
        .collect();
    Ok(json!({
        "columns": select,
        "results": results,
        "hasMore": has_more,
        "limit": limit,
        "timezone": project.time_zone.name(),
        "is_cached": false,
    }))
}

/// One fetched row, its JSON columns parsed once.
struct Row<'a> {
    cells: &'a [Cell],
    properties: Value,
    person_properties: Value,
}

fn json_object(cell: Option<&Cell>) -> Value {
    cell.and_then(Cell::as_str)
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Map::new()))
}

impl<'a> Row<'a> {
    fn read(cells: &'a [Cell]) -> Self {
        let at = |name: &str| FETCHED.iter().position(|(n, _)| *n == name).and_then(|i| cells.get(i));
        Row {
            cells,
            properties: json_object(at("properties")),
            person_properties: json_object(at("person_properties")),
        }
    }

    fn stored(&self, name: &str) -> Value {
        FETCHED
            .iter()
            .position(|(n, _)| *n == name)
            .and_then(|i| self.cells.get(i))
            .map_or(Value::Null, Cell::to_json)
    }

    fn value_of(&self, item: &Item) -> Value {
        match item {
            Item::Star => json!({
                "uuid": self.stored("uuid"),
                "event": self.stored("event"),
                "properties": self.properties,
                "timestamp": self.stored("timestamp"),
                "distinct_id": self.stored("distinct_id"),
                "person_id": self.stored("person_id"),
                "elements_chain": self.stored("elements_chain"),
                "person_mode": self.stored("person_mode"),
            }),
            Item::Stored(i) => self.cells.get(*i).map_or(Value::Null, Cell::to_json),
            Item::Properties => self.properties.clone(),
            Item::Person => json!({
                "id": self.stored("person_id"),
                "distinct_id": self.stored("distinct_id"),
                "properties": self.person_properties,
            }),
            Item::Property(key) => self.properties.get(key).cloned().unwrap_or(Value::Null),
            Item::PersonProperty(key) => self.person_properties.get(key).cloned().unwrap_or(Value::Null),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_items_are_read_or_refused() {
        assert_eq!(Item::parse("*").ok(), Some(Item::Star));
        assert_eq!(Item::parse("event").ok(), Some(Item::Stored(1)));
        assert_eq!(Item::parse("properties.$browser").ok(), Some(Item::Property("$browser".into())));
        assert_eq!(Item::parse("person.properties.email").ok(), Some(Item::PersonProperty("email".into())));
        assert!(Item::parse("person_properties").is_err(), "person carries them");
        assert!(Item::parse("count()").is_err());
    }

    #[test]
    fn rows_become_the_requested_columns() {
        let cells = vec![
            Cell::Text("u-1".into()),
            Cell::Text("$pageview".into()),
            Cell::Timestamp { us: 1_000_000, utc: true },
            Cell::Text("alice".into()),
            Cell::Text("p-1".into()),
            Cell::Text(r#"{"$browser":"Firefox","n":2}"#.into()),
            Cell::Text(r#"{"email":"a@example.com"}"#.into()),
            Cell::Text(String::new()),
            Cell::Text("full".into()),
        ];
        let row = Row::read(&cells);
        assert_eq!(row.value_of(&Item::Property("n".into())), json!(2));
        assert_eq!(row.value_of(&Item::Property("missing".into())), Value::Null);
        assert_eq!(row.value_of(&Item::PersonProperty("email".into())), json!("a@example.com"));
        let star = row.value_of(&Item::Star);
        assert_eq!(star["event"], "$pageview");
        assert_eq!(star["properties"]["$browser"], "Firefox");
        assert_eq!(star["timestamp"], "1970-01-01T00:00:01.000000Z");
        assert_eq!(row.value_of(&Item::Person)["id"], "p-1");
    }
}
