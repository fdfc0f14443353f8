//! What the flag tests share: building filters and properties from JSON,
//! and one fixed "now" so relative dates do not drift.

use serde_json::{Map, Value};

use super::{match_property, FlagFilters, PropertyFilter};

pub(super) fn props(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

pub(super) fn filters(value: Value) -> FlagFilters {
    serde_json::from_value(value).expect("valid filters")
}

pub(super) fn filter(key: &str, operator: &str, value: Value) -> PropertyFilter {
    PropertyFilter {
        key: key.to_owned(),
        value,
        operator: Some(operator.to_owned()),
        kind: "person".to_owned(),
        group_type_index: None,
    }
}

/// 2024-03-31T12:00:00Z, a date that exercises month clamping.
pub(super) const NOW_MILLIS: i64 = 1_711_886_400_000;

pub(super) fn check(filter: &PropertyFilter, properties: Value) -> bool {
    match_property(filter, &props(properties), NOW_MILLIS)
}
