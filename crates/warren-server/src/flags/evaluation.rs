//! Deciding one flag for one subject: the condition sets in order, the first
//! that matches wins, and otherwise the most telling reason it did not.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::dates::MICROS_PER_MILLI;
use super::definition::{FlagFilters, PropertyFilter};
use super::hashing::{choose_variant, in_rollout};
use super::operators::{property_value_matches, CohortOperator};

/// Who a flag is evaluated for.
pub(crate) struct FlagSubject<'a> {
    pub(crate) distinct_id: String,
    /// The person's properties.
    pub(crate) properties: Map<String, Value>,
    /// The groups the person acts in, by group type index.
    pub(crate) groups: BTreeMap<i32, FlagGroup>,
    /// Whether the person belongs to a cohort. A callback keeps the
    /// evaluator free of storage: cohorts are computed elsewhere.
    pub(crate) in_cohort: &'a (dyn Fn(i64) -> bool + Sync),
}

/// A group the subject acts in.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FlagGroup {
    pub(crate) key: String,
    pub(crate) properties: Map<String, Value>,
}

fn in_no_cohort(_cohort_id: i64) -> bool {
    false
}

impl FlagSubject<'static> {
    /// A person with no properties, no groups and no cohorts.
    pub(crate) fn new(distinct_id: impl Into<String>) -> Self {
        FlagSubject {
            distinct_id: distinct_id.into(),
            properties: Map::new(),
            groups: BTreeMap::new(),
            in_cohort: &in_no_cohort,
        }
    }
}

impl<'a> FlagSubject<'a> {
    pub(crate) fn with_properties(mut self, properties: Map<String, Value>) -> Self {
        self.properties = properties;
        self
    }

    // Only tests add groups one by one; the API fills `groups` at once.
    #[cfg(test)]
    pub(crate) fn with_group(
        mut self,
        group_type_index: i32,
        key: impl Into<String>,
        properties: Map<String, Value>,
    ) -> Self {
        self.groups.insert(group_type_index, FlagGroup { key: key.into(), properties });
        self
    }

    pub(crate) fn with_cohorts<'b>(self, in_cohort: &'b (dyn Fn(i64) -> bool + Sync)) -> FlagSubject<'b> {
        FlagSubject {
            distinct_id: self.distinct_id,
            properties: self.properties,
            groups: self.groups,
            in_cohort,
        }
    }

    /// The string hashed for rollout and variants: the distinct id, or the
    /// group's key for a group-aggregated condition. `None` when the group
    /// was not supplied, which PostHog reports as `no_group_type`.
    fn bucketing_id(&self, aggregation: Option<i32>) -> Option<&str> {
        match aggregation {
            None => Some(&self.distinct_id),
            Some(index) => {
                self.groups.get(&index).map(|group| group.key.as_str()).filter(|key| !key.is_empty())
            }
        }
    }
}

impl fmt::Debug for FlagSubject<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("FlagSubject")
            .field("distinct_id", &self.distinct_id)
            .field("properties", &self.properties)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// Why a flag evaluated as it did; the `reason.code` of `/flags?v=2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FlagReason {
    ConditionMatch,
    NoConditionMatch,
    OutOfRolloutBound,
    NoGroupType,
}

impl FlagReason {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::ConditionMatch => "condition_match",
            Self::NoConditionMatch => "no_condition_match",
            Self::OutOfRolloutBound => "out_of_rollout_bound",
            Self::NoGroupType => "no_group_type",
        }
    }

    /// PostHog reports the most telling reason among the condition sets that
    /// did not match: a set that matched but left the person out of its
    /// rollout says more than one whose properties did not match, and both
    /// say more than one that could not be evaluated for lack of a group.
    fn rank(self) -> u8 {
        match self {
            Self::NoGroupType => 1,
            Self::NoConditionMatch => 2,
            Self::OutOfRolloutBound => 3,
            Self::ConditionMatch => 4,
        }
    }
}

impl fmt::Display for FlagReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.code())
    }
}

/// One flag's outcome for one subject.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct FlagEvaluation {
    pub(crate) enabled: bool,
    pub(crate) variant: Option<String>,
    pub(crate) reason: FlagReason,
    /// The condition set the reason refers to, from 0.
    pub(crate) condition_index: Option<usize>,
    pub(crate) payload: Option<Value>,
}

impl FlagEvaluation {
    /// The flag's value as SDKs see it: the variant key, or a boolean.
    pub(crate) fn value(&self) -> Value {
        match &self.variant {
            Some(variant) if self.enabled => Value::String(variant.clone()),
            _ => Value::Bool(self.enabled),
        }
    }

    /// PostHog's `reason.description`, which SDKs copy into
    /// `$feature_flag_reason`; condition sets are numbered from 1 there.
    pub(crate) fn description(&self) -> String {
        match self.reason {
            FlagReason::ConditionMatch => {
                format!("Matched condition set {}", self.condition_index.unwrap_or(0) + 1)
            }
            FlagReason::NoConditionMatch => "No matching condition set".to_owned(),
            FlagReason::OutOfRolloutBound => "Out of rollout bound".to_owned(),
            FlagReason::NoGroupType => "No group type".to_owned(),
        }
    }
}

/// Evaluates the flag `key` for `subject` as of `now_millis` (Unix
/// milliseconds), which only relative date filters such as `"-7d"` read.
pub(crate) fn evaluate_at(
    key: &str,
    filters: &FlagFilters,
    subject: &FlagSubject<'_>,
    now_millis: i64,
) -> FlagEvaluation {
    let now = now_millis.saturating_mul(MICROS_PER_MILLI);
    // With no condition set at all PostHog still answers no_group_type,
    // the floor of its ranking; keep that so the reasons agree.
    let mut reason = FlagReason::NoGroupType;
    let mut reason_index = None;
    for (index, condition) in filters.groups.iter().enumerate() {
        let aggregation = condition.aggregation(filters.aggregation_group_type_index);
        let outcome = match subject.bucketing_id(aggregation) {
            None => FlagReason::NoGroupType,
            Some(bucketing_id) => {
                if !condition
                    .properties
                    .iter()
                    .all(|filter| filter_matches(filter, aggregation, subject, now))
                {
                    FlagReason::NoConditionMatch
                } else if !in_rollout(key, bucketing_id, condition.rollout_percentage) {
                    FlagReason::OutOfRolloutBound
                } else {
                    let variant = choose_variant(key, filters, condition, bucketing_id);
                    let payload = filters.payloads.get(variant.as_deref().unwrap_or("true")).cloned();
                    return FlagEvaluation {
                        enabled: true,
                        variant,
                        reason: FlagReason::ConditionMatch,
                        condition_index: Some(index),
                        payload,
                    };
                }
            }
        };
        // Ties go to the later set, as in PostHog.
        if outcome.rank() >= reason.rank() {
            reason = outcome;
            reason_index = Some(index);
        }
    }
    FlagEvaluation { enabled: false, variant: None, reason, condition_index: reason_index, payload: None }
}

fn filter_matches(
    filter: &PropertyFilter,
    aggregation: Option<i32>,
    subject: &FlagSubject<'_>,
    now: i64,
) -> bool {
    match filter.kind.as_str() {
        "cohort" => {
            let (Some(operator), Some(cohort_id)) =
                (CohortOperator::parse(filter.operator()), filter.cohort_id())
            else {
                return false;
            };
            (subject.in_cohort)(cohort_id) != (operator == CohortOperator::NotIn)
        }
        "person" => property_value_matches(filter, subject.properties.get(&filter.key), now),
        "group" => {
            let group = filter.group_type_index.or(aggregation).and_then(|index| subject.groups.get(&index));
            property_value_matches(filter, group.and_then(|group| group.properties.get(&filter.key)), now)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::flags::test_support::{filters, props, NOW_MILLIS};
    use crate::flags::validate;

    #[test]
    fn boolean_payload_and_reasons() {
        let flag = filters(json!({
            "groups": [
                {"properties": [{"key": "plan", "value": ["pro"], "type": "person"}]},
                {"properties": [], "rollout_percentage": 0},
                {"properties": [{"key": "plan", "value": "team", "operator": "exact", "type": "person"}]}
            ],
            "payloads": {"true": 42}
        }));
        let pro = FlagSubject::new("p").with_properties(props(json!({"plan": "PRO"})));
        let result = evaluate_at("f", &flag, &pro, NOW_MILLIS);
        assert_eq!((result.enabled, result.payload.clone()), (true, Some(json!(42))));
        assert_eq!(result.value(), json!(true));
        // Out of rollout outranks a later property mismatch.
        let free = FlagSubject::new("q").with_properties(props(json!({"plan": "free"})));
        let result = evaluate_at("f", &flag, &free, NOW_MILLIS);
        assert_eq!((result.enabled, result.payload.clone()), (false, None));
        assert_eq!((result.reason, result.condition_index), (FlagReason::OutOfRolloutBound, Some(1)));
        assert_eq!(result.description(), "Out of rollout bound");
        assert_eq!(result.value(), json!(false));
        // Among equal reasons the last condition set is reported.
        let only_props = filters(json!({"groups": [
            {"properties": [{"key": "plan", "value": "a", "type": "person"}]},
            {"properties": [{"key": "plan", "value": "b", "type": "person"}]}
        ]}));
        let result = evaluate_at("f", &only_props, &free, NOW_MILLIS);
        assert_eq!((result.reason, result.condition_index), (FlagReason::NoConditionMatch, Some(1)));
        assert_eq!(result.description(), "No matching condition set");
        assert_eq!(serde_json::to_value(result.reason).expect("serializes"), json!("no_condition_match"));
    }

    #[test]
    fn group_aggregated_flag() {
        let flag = filters(json!({
            "aggregation_group_type_index": 0,
            "groups": [{
                "properties": [
                    {"key": "plan", "value": "enterprise", "type": "group", "group_type_index": 0}
                ],
                "rollout_percentage": 95
            }]
        }));
        let person_only = FlagSubject::new("user-1");
        let result = evaluate_at("org-flag", &flag, &person_only, NOW_MILLIS);
        assert_eq!((result.enabled, result.reason), (false, FlagReason::NoGroupType));
        assert_eq!(result.condition_index, Some(0));
        assert_eq!(result.description(), "No group type");
        // "acme" hashes to 0.9276 for "org-flag": inside 95 %, whoever the person is.
        let member = FlagSubject::new("user-2").with_group(0, "acme", props(json!({"plan": "Enterprise"})));
        assert!(evaluate_at("org-flag", &flag, &member, NOW_MILLIS).enabled);
        let small = FlagSubject::new("user-2").with_group(0, "acme", props(json!({"plan": "free"})));
        assert_eq!(evaluate_at("org-flag", &flag, &small, NOW_MILLIS).reason, FlagReason::NoConditionMatch);
        let unnamed = FlagSubject::new("user-2").with_group(0, "", props(json!({"plan": "enterprise"})));
        assert_eq!(evaluate_at("org-flag", &flag, &unnamed, NOW_MILLIS).reason, FlagReason::NoGroupType);
        let mut lower = flag.clone();
        lower.groups[0].rollout_percentage = Some(92.0);
        assert_eq!(
            evaluate_at("org-flag", &lower, &member, NOW_MILLIS).reason,
            FlagReason::OutOfRolloutBound
        );
        assert_eq!(validate(&flag), Ok(()));
    }

    #[test]
    fn mixed_targeting_conditions_pick_their_own_aggregation() {
        let flag = filters(json!({
            "groups": [
                {"properties": [{"key": "plan", "value": "pro", "type": "group", "group_type_index": 1}],
                 "aggregation_group_type_index": 1},
                {"properties": [
                    {"key": "email", "value": "staff", "operator": "icontains", "type": "person"}
                 ], "aggregation_group_type_index": null}
            ]
        }));
        assert_eq!(flag.groups[0].aggregation(None), Some(1));
        assert_eq!(flag.groups[1].aggregation(Some(1)), None);
        let staff = FlagSubject::new("s").with_properties(props(json!({"email": "staff@x.io"})));
        let result = evaluate_at("mixed", &flag, &staff, NOW_MILLIS);
        assert_eq!((result.enabled, result.condition_index), (true, Some(1)));
        let outsider = FlagSubject::new("o");
        let result = evaluate_at("mixed", &flag, &outsider, NOW_MILLIS);
        // A person condition that ran outranks a group condition that could not.
        assert_eq!((result.reason, result.condition_index), (FlagReason::NoConditionMatch, Some(1)));
        let round_trip = serde_json::to_value(&flag).expect("serializes");
        assert_eq!(round_trip["groups"][1]["aggregation_group_type_index"], Value::Null);
        assert!(round_trip["groups"][1]
            .as_object()
            .expect("object")
            .contains_key("aggregation_group_type_index"));
        assert_eq!(serde_json::from_value::<FlagFilters>(round_trip).expect("parses"), flag);
    }

    #[test]
    fn cohort_filters_ask_the_caller() {
        let flag = filters(json!({"groups": [{"properties": [
            {"key": "id", "value": 7, "type": "cohort"},
            {"key": "id", "value": "9", "operator": "not_in", "type": "cohort"}
        ]}]}));
        let members = |cohort: i64| cohort == 7;
        let subject = FlagSubject::new("c").with_cohorts(&members);
        assert!(evaluate_at("cohorts", &flag, &subject, NOW_MILLIS).enabled);
        let everywhere = |_: i64| true;
        let subject = FlagSubject::new("c").with_cohorts(&everywhere);
        assert!(!evaluate_at("cohorts", &flag, &subject, NOW_MILLIS).enabled);
        assert!(!evaluate_at("cohorts", &flag, &FlagSubject::new("c"), NOW_MILLIS).enabled);
        assert_eq!(validate(&flag), Ok(()));
    }
}
