//! A flag's `filters` object, typed exactly as PostHog's API and SDKs
//! exchange it, so a project can move its flags between PostHog and Warren
//! unchanged.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A flag's targeting rules, as the `filters` field of a PostHog flag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct FlagFilters {
    /// Condition sets, tried in order; the first that matches decides.
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) groups: Vec<FlagCondition>,
    #[serde(default)]
    pub(super) multivariate: Option<Multivariate>,
    /// Payload per outcome: `"true"` for a boolean flag, else the variant
    /// key. PostHog stores some as JSON values and some as JSON-encoded
    /// strings; both are handed back untouched, as PostHog does.
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) payloads: Map<String, Value>,
    /// Set when the flag targets groups (companies, projects, …) rather than
    /// persons: the group's key is bucketed instead of the distinct id.
    #[serde(default)]
    pub(super) aggregation_group_type_index: Option<i32>,
}

/// One condition set: property filters that must all match, then a rollout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct FlagCondition {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(crate) properties: Vec<PropertyFilter>,
    /// `None` means everyone who matches the properties.
    #[serde(default)]
    pub(super) rollout_percentage: Option<f64>,
    /// Forces this variant for everyone the condition matches.
    #[serde(default)]
    pub(super) variant: Option<String>,
    /// PostHog's per-condition aggregation for flags that mix person and
    /// group targeting. Absent means "as the flag"; an explicit `null` means
    /// persons, which is why this is a double option.
    #[serde(default, deserialize_with = "present_value", skip_serializing_if = "Option::is_none")]
    pub(super) aggregation_group_type_index: Option<Option<i32>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Multivariate {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) variants: Vec<Variant>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Variant {
    pub(super) key: String,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) rollout_percentage: f64,
}

/// One property filter of a condition set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PropertyFilter {
    pub(super) key: String,
    #[serde(default)]
    pub(super) value: Value,
    /// `None` means `"exact"`; see [`PropertyFilter::operator`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) operator: Option<String>,
    /// `"person"`, `"group"` or `"cohort"` (PostHog's `type`).
    #[serde(rename = "type", default = "person_kind")]
    pub(super) kind: String,
    /// For `"group"` filters: whose properties to read. Defaults to the
    /// condition's aggregation group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) group_type_index: Option<i32>,
}

fn person_kind() -> String {
    "person".to_owned()
}

/// PostHog writes `null` where a list or map is empty, so absent and `null`
/// both mean "empty" here.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Only called when the field is present, so `null` becomes `Some(None)`
/// while an absent field stays `None` through `#[serde(default)]`.
fn present_value<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Some(Option::<T>::deserialize(deserializer)?))
}

impl FlagFilters {
    /// The variants, empty for a boolean flag.
    pub(super) fn variants(&self) -> &[Variant] {
        self.multivariate.as_ref().map_or(&[], |multivariate| &multivariate.variants)
    }
}

impl FlagCondition {
    /// The group type this condition buckets and reads group filters by,
    /// `None` for persons.
    pub(super) fn aggregation(&self, flag_aggregation: Option<i32>) -> Option<i32> {
        self.aggregation_group_type_index.unwrap_or(flag_aggregation)
    }
}

impl PropertyFilter {
    /// The operator name, with PostHog's default filled in.
    pub(super) fn operator(&self) -> &str {
        self.operator.as_deref().unwrap_or("exact")
    }

    /// The cohort a `"cohort"` filter names. PostHog writes the id as a
    /// number or, from older clients, as a numeric string.
    pub(crate) fn cohort_id(&self) -> Option<i64> {
        match &self.value {
            Value::Number(number) => number.as_i64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::flags::evaluation::{evaluate_at, FlagReason, FlagSubject};
    use crate::flags::test_support::{filters, NOW_MILLIS};

    #[test]
    fn posthog_json_parses_with_nulls_and_unknown_fields() {
        let flag = filters(json!({
            "groups": [{"properties": null, "rollout_percentage": null, "variant": null, "sort_key": "x"}],
            "multivariate": null,
            "payloads": null,
            "aggregation_group_type_index": null,
            "feature_enrollment": false
        }));
        assert_eq!(flag.groups.len(), 1);
        assert!(flag.groups[0].properties.is_empty() && flag.payloads.is_empty());
        assert!(evaluate_at("any", &flag, &FlagSubject::new("x"), NOW_MILLIS).enabled);
        assert_eq!(filters(json!({})), FlagFilters::default());
        let bare: PropertyFilter = serde_json::from_value(json!({"key": "k", "value": 1})).expect("parses");
        assert_eq!((bare.kind.as_str(), bare.operator()), ("person", "exact"));
        // No condition set at all: PostHog's floor reason.
        let empty = evaluate_at("any", &FlagFilters::default(), &FlagSubject::new("x"), NOW_MILLIS);
        assert_eq!(
            (empty.enabled, empty.reason, empty.condition_index),
            (false, FlagReason::NoGroupType, None)
        );
    }
}
