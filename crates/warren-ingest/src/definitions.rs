//! Event and property definitions: which event names and property names a
//! project has seen, and the type of each property's first value, for the
//! API's pickers. Collected per batch and committed with it.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use warren_core::person::TeamId;
use warren_meta::entities::{EventDefinition, PropertyDefinition, PropertyKind};

use crate::normalize::Event;

/// Longest event or property name recorded; longer ones (and names with
/// NUL, which PostgreSQL cannot store as text) are left out, so one odd
/// event cannot stop a batch's commit.
const MAX_NAME_CHARS: usize = 400;

fn recordable(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_CHARS && !name.contains('\0')
}

/// Property names remembered as already stored, so each batch writes only
/// new ones; past this many the memory is dropped and rebuilt (a few
/// redundant, harmless upserts).
const MAX_KNOWN: usize = 200_000;

type PropertyId = (TeamId, PropertyKind, String);

#[derive(Default)]
pub(crate) struct Definitions {
    /// Keyed by project and kind, so a lookup borrows the name instead of
    /// allocating a key for every property of every event.
    known: HashMap<(TeamId, PropertyKind), HashSet<String>>,
    known_count: usize,
}

/// What one batch saw.
#[derive(Default)]
pub(crate) struct BatchDefinitions {
    pub events: Vec<EventDefinition>,
    pub properties: Vec<PropertyDefinition>,
}

/// PostHog's property types: numbers, booleans, date-times (ISO text), and
/// everything else as text.
fn property_type(value: &Value) -> Option<&'static str> {
    match value {
        Value::Null => None,
        Value::Number(_) => Some("Numeric"),
        Value::Bool(_) => Some("Boolean"),
        Value::String(text) if looks_like_date_time(text) => Some("DateTime"),
        _ => Some("String"),
    }
}

fn looks_like_date_time(text: &str) -> bool {
    text.len() >= 10
        && text.as_bytes().get(4) == Some(&b'-')
        && (chrono::DateTime::parse_from_rfc3339(text).is_ok()
            || chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok())
}

impl Definitions {
    pub fn collect(&self, events: &[&Event]) -> BatchDefinitions {
        let mut names: BTreeMap<(TeamId, &str), (i64, i64)> = BTreeMap::new();
        let mut properties: BTreeMap<PropertyId, PropertyDefinition> = BTreeMap::new();
        for event in events.iter().filter(|event| recordable(&event.event)) {
            let seen = names
                .entry((event.team_id, event.event.as_str()))
                .or_insert((event.timestamp_us, event.timestamp_us));
            seen.0 = seen.0.min(event.timestamp_us);
            seen.1 = seen.1.max(event.timestamp_us);
            let person = event.set.iter().chain(event.set_once.iter());
            let sources = event
                .properties
                .iter()
                .filter(|(key, _)| !matches!(key.as_str(), "$set" | "$set_once" | "$unset"))
                .map(|p| (PropertyKind::Event, p))
                .chain(person.map(|p| (PropertyKind::Person, p)))
                .filter(|(_, (name, _))| recordable(name));
            for (kind, (name, value)) in sources {
                if self.known.get(&(event.team_id, kind)).is_some_and(|names| names.contains(name.as_str())) {
                    continue;
                }
                let id = (event.team_id, kind, name.clone());
                if let Some(seen) = properties.get_mut(&id) {
                    seen.first_seen_us = seen.first_seen_us.min(event.timestamp_us);
                    continue;
                }
                properties.insert(
                    id,
                    PropertyDefinition {
                        team_id: event.team_id,
                        kind,
                        group_type_index: -1,
                        name: name.clone(),
                        property_type: property_type(value).map(str::to_string),
                        first_seen_us: event.timestamp_us,
                    },
                );
            }
        }
        BatchDefinitions {
            events: names
                .into_iter()
                .map(|((team_id, name), (first, last))| EventDefinition {
                    team_id,
                    name: name.to_string(),
                    first_seen_us: first,
                    last_seen_us: last,
                })
                .collect(),
            properties: properties.into_values().collect(),
        }
    }

    /// Remembers a committed batch's properties.
    pub fn committed(&mut self, properties: &[PropertyDefinition]) {
        if self.known_count + properties.len() > MAX_KNOWN {
            self.known.clear();
            self.known_count = 0;
        }
        for property in properties {
            if self.known.entry((property.team_id, property.kind)).or_default().insert(property.name.clone())
            {
                self.known_count += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_follow_the_first_value() {
        assert_eq!(property_type(&Value::from(3)), Some("Numeric"));
        assert_eq!(property_type(&Value::from(true)), Some("Boolean"));
        assert_eq!(property_type(&Value::from("2024-01-02T03:04:05Z")), Some("DateTime"));
        assert_eq!(property_type(&Value::from("2024-01-02")), Some("DateTime"));
        assert_eq!(property_type(&Value::from("Chrome")), Some("String"));
        assert_eq!(property_type(&Value::Null), None);
    }

    #[test]
    fn names_a_database_cannot_index_are_left_out() {
        assert!(recordable("$pageview"));
        assert!(!recordable("a\0b"));
        assert!(!recordable(&"x".repeat(401)));
        assert!(!recordable(""));
    }
}
