//! Property filters (`{"key", "value", "operator", "type"}`) and series
//! events as plan expressions.

use serde_json::Value;

use crate::model::{GroupOperator, Properties, PropertyFilter, PropertyGroup, PropertyGroupItem};
use crate::plan::{BinaryOp, Column, Expr, Literal, PropertySource, Select, Source};
use crate::project::ProjectContext;
use crate::QueryError;

/// The condition a list of filters makes (all must hold).
pub fn all_of(filters: &[PropertyFilter], project: &ProjectContext) -> Result<Expr, QueryError> {
    Ok(Expr::all(filters.iter().map(|f| filter(f, project)).collect::<Result<Vec<_>, _>>()?))
}

pub fn properties(properties: Option<&Properties>, project: &ProjectContext) -> Result<Expr, QueryError> {
    match properties {
        None => Ok(Expr::all([])),
        Some(Properties::List(list)) => all_of(list, project),
        Some(Properties::Group(group)) => property_group(group, project),
    }
}

fn property_group(group: &PropertyGroup, project: &ProjectContext) -> Result<Expr, QueryError> {
    let parts = group
        .values
        .iter()
        .map(|item| match item {
            PropertyGroupItem::Group(inner) => property_group(inner, project),
            PropertyGroupItem::Filter(f) => filter(f, project),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match group.kind {
        GroupOperator::And => Expr::all(parts),
        GroupOperator::Or if parts.is_empty() => Expr::all([]),
        GroupOperator::Or => Expr::any(parts),
    })
}

/// `event = name`, or true for "all events" (a null event).
pub fn event_is(event: Option<&str>) -> Expr {
    match event {
        Some(name) => Expr::col(Column::Event).eq(Expr::text(name)),
        None => Expr::all([]),
    }
}

/// One filter as a condition on an event row.
pub fn filter(f: &PropertyFilter, project: &ProjectContext) -> Result<Expr, QueryError> {
    match f.kind.as_str() {
        "cohort" => {
            let within = crate::catalog::cohort(project, &f.value)?;
            Ok(match f.operator.as_deref() {
                Some("not_in") => crate::catalog::not(within),
                _ => within,
            })
        }
        "event" => condition(Target::Property(PropertySource::Event, &f.key), f),
        "person" => condition(Target::Property(PropertySource::Person, &f.key), f),
        "group" => {
            let index = f.group_type_index.ok_or_else(|| {
                QueryError::invalid(format!("group property filter on {:?} needs group_type_index", f.key))
            })?;
            if index > 4 {
                return Err(QueryError::invalid("group_type_index must be 0 to 4"));
            }
            // The groups whose properties match, by key.
            let matching = Select::from(Source::Groups)
                .column("group_key", Expr::name("group_key"))
                .filter(Expr::name("group_type_index").eq(Expr::int(index as i64)))
                .filter(condition(Target::Property(PropertySource::Group, &f.key), f)?);
            Ok(Expr::InSelect { expr: Box::new(Expr::col(Column::Group(index))), select: Box::new(matching) })
        }
        "event_metadata" => {
            let column = match f.key.as_str() {
                "distinct_id" => Column::DistinctId,
                "event" => Column::Event,
                "person_id" => Column::PersonId,
                "$session_id" => Column::SessionId,
                "$window_id" => Column::WindowId,
                other => {
                    return Err(QueryError::invalid(format!("event_metadata filter on unknown field {other:?}")))
                }
            };
            condition(Target::Column(column), f)
        }
        "element" => crate::elements::condition(f),
        other => Err(QueryError::invalid(format!(
            "property filters of type {other:?} are not supported (use event, person, group, element, event_metadata or cohort)"
        ))),
    }
}

#[derive(Clone, Copy)]
enum Target<'a> {
    Property(PropertySource, &'a str),
    Column(Column),
}

impl Target<'_> {
    fn text(self) -> Expr {
        match self {
            Target::Property(source, key) => Expr::Property { source, key: key.to_string() },
            Target::Column(column) => Expr::col(column),
        }
    }

    fn number(self) -> Expr {
        match self {
            Target::Property(source, key) => Expr::NumericProperty { source, key: key.to_string() },
            Target::Column(column) => Expr::col(column),
        }
    }
}

fn condition(target: Target<'_>, f: &PropertyFilter) -> Result<Expr, QueryError> {
    let operator = f.operator.as_deref().unwrap_or("exact");
    let values = || -> Result<Vec<Literal>, QueryError> {
        let list = match &f.value {
            Value::Array(items) => items.iter().map(text_of).collect::<Result<Vec<_>, _>>()?,
            other => vec![text_of(other)?],
        };
        if list.is_empty() {
            return Err(QueryError::invalid(format!("filter on {:?} has an empty value list", f.key)));
        }
        Ok(list.into_iter().map(Literal::Text).collect())
    };
    let single = || -> Result<String, QueryError> {
        match &f.value {
            Value::Array(items) if items.len() == 1 => text_of(&items[0]),
            Value::Array(_) => {
                Err(QueryError::invalid(format!("operator {operator} on {:?} takes one value", f.key)))
            }
            other => text_of(other),
        }
    };
    let number = || -> Result<Expr, QueryError> {
        let text = single()?;
        let value: f64 = text.parse().map_err(|_| {
            QueryError::invalid(format!("operator {operator} on {:?} needs a number, got {text:?}", f.key))
        })?;
        Ok(Expr::Literal(Literal::Float(value)))
    };
    Ok(match operator {
        "exact" => Expr::InList { expr: Box::new(target.text()), list: values()?, negated: false },
        "is_not" => Expr::IsNull(Box::new(target.text()))
            .or(Expr::InList { expr: Box::new(target.text()), list: values()?, negated: true }),
        "icontains" => Expr::Contains { expr: Box::new(target.text()), needle: single()?, negated: false },
        "not_icontains" => Expr::IsNull(Box::new(target.text()))
            .or(Expr::Contains { expr: Box::new(target.text()), needle: single()?, negated: true }),
        "regex" => Expr::RegexMatch { expr: Box::new(target.text()), pattern: checked_regex(single()?)?, negated: false },
        "not_regex" => Expr::IsNull(Box::new(target.text()))
            .or(Expr::RegexMatch { expr: Box::new(target.text()), pattern: checked_regex(single()?)?, negated: true }),
        "gt" => target.number().binary(BinaryOp::Gt, number()?),
        "gte" => target.number().binary(BinaryOp::GtEq, number()?),
        "lt" => target.number().binary(BinaryOp::Lt, number()?),
        "lte" => target.number().binary(BinaryOp::LtEq, number()?),
        "is_set" => Expr::IsNotNull(Box::new(target.text())),
        "is_not_set" => Expr::IsNull(Box::new(target.text())),
        other => {
            return Err(QueryError::invalid(format!(
                "unknown operator {other:?} (use exact, is_not, icontains, not_icontains, regex, not_regex, gt, gte, lt, lte, is_set, is_not_set)"
            )))
        }
    })
}

/// Filter values compare as the text a property reads as.
fn text_of(value: &Value) -> Result<String, QueryError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err(QueryError::invalid("filter value is null; use is_set or is_not_set")),
        other => Err(QueryError::invalid(format!("filter value {other} is not a string, number or boolean"))),
    }
}

/// Regexes are checked here so a bad one is the asker's 400 rather than an
/// engine failure. The `regex` crate's syntax is DataFusion's and close to
/// ClickHouse's RE2.
pub(crate) fn checked_regex(pattern: String) -> Result<String, QueryError> {
    regex::RegexBuilder::new(&pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| QueryError::invalid(format!("invalid regex {pattern:?}: {e}")))?;
    Ok(pattern)
}
