//! Feature flag definitions and their evaluation, the PostHog way.
//!
//! A flag's `filters` object is stored exactly as PostHog's API and SDKs
//! exchange it ([`FlagFilters`]), so a project can move its flags between
//! PostHog and Warren unchanged. [`validate`] rejects definitions that could
//! never evaluate sensibly, and [`evaluate`] decides one flag for one person
//! (or group).
//!
//! Evaluation has to agree with PostHog bit for bit. The official server SDKs
//! download flag definitions and evaluate them *locally*, falling back to the
//! server only when they cannot decide; browsers and mobile apps always ask
//! the server. If Warren's answer differed from the SDKs' by even one
//! rollout bucket, the same person would flip between variants depending on
//! which library asked, and experiment results would be silently wrong. So the
//! bucketing hash, the variant ranges, the string forms that values are
//! compared in and the operator semantics below follow posthog-python and
//! PostHog's own flags service to the letter. Where the SDK cannot decide on
//! its own (a missing property, a numeric timestamp) it asks the server, so
//! those cases follow the server.
//!
//! The evaluator is pure: everything it needs (properties, group keys, cohort
//! membership, the current time) is handed to it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};

/// A flag's targeting rules, as the `filters` field of a PostHog flag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlagFilters {
    /// Condition sets, tried in order; the first that matches decides.
    #[serde(default, deserialize_with = "null_as_default")]
    pub groups: Vec<FlagCondition>,
    #[serde(default)]
    pub multivariate: Option<Multivariate>,
    /// Payload per outcome: `"true"` for a boolean flag, else the variant
    /// key. PostHog stores some as JSON values and some as JSON-encoded
    /// strings; both are handed back untouched, as PostHog does.
    #[serde(default, deserialize_with = "null_as_default")]
    pub payloads: Map<String, Value>,
    /// Set when the flag targets groups (companies, projects, …) rather than
    /// persons: the group's key is bucketed instead of the distinct id.
    #[serde(default)]
    pub aggregation_group_type_index: Option<i32>,
}

/// One condition set: property filters that must all match, then a rollout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlagCondition {
    #[serde(default, deserialize_with = "null_as_default")]
    pub properties: Vec<PropertyFilter>,
    /// `None` means everyone who matches the properties.
    #[serde(default)]
    pub rollout_percentage: Option<f64>,
    /// Forces this variant for everyone the condition matches.
    #[serde(default)]
    pub variant: Option<String>,
    /// PostHog's per-condition aggregation for flags that mix person and
    /// group targeting. Absent means "as the flag"; an explicit `null` means
    /// persons, which is why this is a double option.
    #[serde(default, deserialize_with = "present_value", skip_serializing_if = "Option::is_none")]
    pub aggregation_group_type_index: Option<Option<i32>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Multivariate {
    #[serde(default, deserialize_with = "null_as_default")]
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub key: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub rollout_percentage: f64,
}

/// One property filter of a condition set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertyFilter {
    pub key: String,
    #[serde(default)]
    pub value: Value,
    /// `None` means `"exact"`; see [`PropertyFilter::operator`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// `"person"`, `"group"` or `"cohort"` (PostHog's `type`).
    #[serde(rename = "type", default = "person_kind")]
    pub kind: String,
    /// For `"group"` filters: whose properties to read. Defaults to the
    /// condition's aggregation group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_type_index: Option<i32>,
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
    pub fn variants(&self) -> &[Variant] {
        self.multivariate.as_ref().map_or(&[], |multivariate| &multivariate.variants)
    }
}

impl FlagCondition {
    /// The group type this condition buckets and reads group filters by,
    /// `None` for persons.
    pub fn aggregation(&self, flag_aggregation: Option<i32>) -> Option<i32> {
        self.aggregation_group_type_index.unwrap_or(flag_aggregation)
    }
}

impl PropertyFilter {
    /// The operator name, with PostHog's default filled in.
    pub fn operator(&self) -> &str {
        self.operator.as_deref().unwrap_or("exact")
    }

    /// The cohort a `"cohort"` filter names. PostHog writes the id as a
    /// number or, from older clients, as a numeric string.
    pub fn cohort_id(&self) -> Option<i64> {
        match &self.value {
            Value::Number(number) => number.as_i64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        }
    }
}

/// Why a flag definition is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlagError {
    #[error("condition set {}: rollout_percentage {value} is not between 0 and 100", .condition + 1)]
    RolloutOutOfRange { condition: usize, value: f64 },
    #[error("variant {key:?}: rollout_percentage {value} is not between 0 and 100")]
    VariantRolloutOutOfRange { key: String, value: f64 },
    #[error("variant rollout percentages add up to {sum}, not 100")]
    VariantsDoNotSumTo100 { sum: f64 },
    #[error("a variant has an empty key")]
    EmptyVariantKey,
    #[error("variant key {key:?} is used twice")]
    DuplicateVariant { key: String },
    #[error("condition set {}: variant override {variant:?} is not a variant of this flag", .condition + 1)]
    UnknownVariant { condition: usize, variant: String },
    #[error("condition set {}: property {key:?} has unknown operator {operator:?}", .condition + 1)]
    UnknownOperator { condition: usize, key: String, operator: String },
    #[error("condition set {}: property {key:?} has an invalid regex: {message}", .condition + 1)]
    InvalidRegex { condition: usize, key: String, message: String },
    #[error("condition set {}: property {key:?} compares with {value}, not a number", .condition + 1)]
    NotANumber { condition: usize, key: String, value: String },
    #[error(
        "condition set {}: property {key:?} compares with {value}, \
         neither an ISO 8601 date nor a relative date such as \"-7d\"",
        .condition + 1
    )]
    NotADate { condition: usize, key: String, value: String },
    #[error("condition set {}: property {key:?} has unsupported type {kind:?}", .condition + 1)]
    UnsupportedPropertyType { condition: usize, key: String, kind: String },
    #[error("condition set {}: cohort filter value {value} is not a cohort id", .condition + 1)]
    InvalidCohortId { condition: usize, value: String },
    #[error("condition set {}: group property {key:?} names no group type", .condition + 1)]
    MissingGroupTypeIndex { condition: usize, key: String },
}

/// Variant percentages are often thirds written with two decimals, which do
/// not add up to exactly 100 in binary floating point.
const PERCENT_SUM_TOLERANCE: f64 = 1e-6;

/// Checks a definition before it is stored, so that evaluation never meets
/// a rule it would have to guess about.
pub fn validate(filters: &FlagFilters) -> Result<(), FlagError> {
    if let Some(multivariate) = &filters.multivariate {
        validate_variants(&multivariate.variants)?;
    }
    for (condition, set) in filters.groups.iter().enumerate() {
        if let Some(value) = set.rollout_percentage {
            if !(0.0..=100.0).contains(&value) {
                return Err(FlagError::RolloutOutOfRange { condition, value });
            }
        }
        if let Some(variant) = &set.variant {
            if !filters.variants().iter().any(|known| &known.key == variant) {
                return Err(FlagError::UnknownVariant { condition, variant: variant.clone() });
            }
        }
        let aggregation = set.aggregation(filters.aggregation_group_type_index);
        for filter in &set.properties {
            validate_filter(condition, filter, aggregation)?;
        }
    }
    Ok(())
}

fn validate_variants(variants: &[Variant]) -> Result<(), FlagError> {
    let mut sum = 0.0;
    for (position, variant) in variants.iter().enumerate() {
        if variant.key.is_empty() {
            return Err(FlagError::EmptyVariantKey);
        }
        if variants[..position].iter().any(|earlier| earlier.key == variant.key) {
            return Err(FlagError::DuplicateVariant { key: variant.key.clone() });
        }
        if !(0.0..=100.0).contains(&variant.rollout_percentage) {
            return Err(FlagError::VariantRolloutOutOfRange {
                key: variant.key.clone(),
                value: variant.rollout_percentage,
            });
        }
        sum += variant.rollout_percentage;
    }
    if (sum - 100.0).abs() > PERCENT_SUM_TOLERANCE {
        return Err(FlagError::VariantsDoNotSumTo100 { sum });
    }
    Ok(())
}

fn validate_filter(
    condition: usize,
    filter: &PropertyFilter,
    aggregation: Option<i32>,
) -> Result<(), FlagError> {
    let unknown_operator = || FlagError::UnknownOperator {
        condition,
        key: filter.key.clone(),
        operator: filter.operator().to_owned(),
    };
    match filter.kind.as_str() {
        "cohort" => {
            CohortOperator::parse(filter.operator()).ok_or_else(unknown_operator)?;
            if filter.cohort_id().is_none() {
                return Err(FlagError::InvalidCohortId { condition, value: filter.value.to_string() });
            }
            Ok(())
        }
        "person" | "group" => {
            if filter.kind == "group" && filter.group_type_index.or(aggregation).is_none() {
                return Err(FlagError::MissingGroupTypeIndex { condition, key: filter.key.clone() });
            }
            let operator = Operator::parse(filter.operator()).ok_or_else(unknown_operator)?;
            validate_filter_value(condition, filter, operator)
        }
        other => Err(FlagError::UnsupportedPropertyType {
            condition,
            key: filter.key.clone(),
            kind: other.to_owned(),
        }),
    }
}

fn validate_filter_value(
    condition: usize,
    filter: &PropertyFilter,
    operator: Operator,
) -> Result<(), FlagError> {
    let key = || filter.key.clone();
    match operator {
        Operator::Regex | Operator::NotRegex => match regex::Regex::new(&value_text(&filter.value)) {
            Ok(_) => Ok(()),
            Err(error) => Err(FlagError::InvalidRegex { condition, key: key(), message: error.to_string() }),
        },
        Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte => match as_number(&filter.value) {
            Some(_) => Ok(()),
            None => Err(FlagError::NotANumber { condition, key: key(), value: filter.value.to_string() }),
        },
        Operator::IsDateBefore | Operator::IsDateAfter => {
            // Any fixed "now" will do: the question is only whether it parses.
            match filter_date(&filter.value, crate::unix_millis().saturating_mul(1000)) {
                Some(_) => Ok(()),
                None => Err(FlagError::NotADate { condition, key: key(), value: filter.value.to_string() }),
            }
        }
        _ => Ok(()),
    }
}

/// Who a flag is evaluated for.
pub struct FlagSubject<'a> {
    pub distinct_id: String,
    /// The person's properties.
    pub properties: Map<String, Value>,
    /// The groups the person acts in, by group type index.
    pub groups: BTreeMap<i32, FlagGroup>,
    /// Whether the person belongs to a cohort. A callback keeps the
    /// evaluator free of storage: cohorts are computed elsewhere.
    pub in_cohort: &'a (dyn Fn(i64) -> bool + Sync),
}

/// A group the subject acts in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlagGroup {
    pub key: String,
    pub properties: Map<String, Value>,
}

fn in_no_cohort(_cohort_id: i64) -> bool {
    false
}

impl FlagSubject<'static> {
    /// A person with no properties, no groups and no cohorts.
    pub fn new(distinct_id: impl Into<String>) -> Self {
        FlagSubject {
            distinct_id: distinct_id.into(),
            properties: Map::new(),
            groups: BTreeMap::new(),
            in_cohort: &in_no_cohort,
        }
    }
}

impl<'a> FlagSubject<'a> {
    pub fn with_properties(mut self, properties: Map<String, Value>) -> Self {
        self.properties = properties;
        self
    }

    pub fn with_group(
        mut self,
        group_type_index: i32,
        key: impl Into<String>,
        properties: Map<String, Value>,
    ) -> Self {
        self.groups.insert(group_type_index, FlagGroup { key: key.into(), properties });
        self
    }

    pub fn with_cohorts<'b>(self, in_cohort: &'b (dyn Fn(i64) -> bool + Sync)) -> FlagSubject<'b> {
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
pub enum FlagReason {
    ConditionMatch,
    NoConditionMatch,
    OutOfRolloutBound,
    NoGroupType,
}

impl FlagReason {
    pub fn code(self) -> &'static str {
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
pub struct FlagEvaluation {
    pub enabled: bool,
    pub variant: Option<String>,
    pub reason: FlagReason,
    /// The condition set the reason refers to, from 0.
    pub condition_index: Option<usize>,
    pub payload: Option<Value>,
}

impl FlagEvaluation {
    /// The flag's value as SDKs see it: the variant key, or a boolean.
    pub fn value(&self) -> Value {
        match &self.variant {
            Some(variant) if self.enabled => Value::String(variant.clone()),
            _ => Value::Bool(self.enabled),
        }
    }

    /// PostHog's `reason.description`, which SDKs copy into
    /// `$feature_flag_reason`; condition sets are numbered from 1 there.
    pub fn description(&self) -> String {
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

/// Evaluates the flag `key` for `subject` now.
pub fn evaluate(key: &str, filters: &FlagFilters, subject: &FlagSubject<'_>) -> FlagEvaluation {
    evaluate_at(key, filters, subject, crate::unix_millis())
}

/// Evaluates the flag `key` for `subject` as of `now_millis` (Unix
/// milliseconds), which only relative date filters such as `"-7d"` read.
pub fn evaluate_at(
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

/// PostHog's bucketing hash: a uniform, stable number in `[0, 1]` for a flag
/// and an id. SHA-1 of `"{flag_key}.{bucketing_id}{salt}"`, the first 15 hex
/// digits read as an integer and scaled by the largest 15-digit value.
pub fn bucket(flag_key: &str, bucketing_id: &str, salt: &str) -> f64 {
    // PostHog's server pins an empty id to 0 rather than hashing it.
    if bucketing_id.is_empty() {
        return 0.0;
    }
    let digest = Sha1::new()
        .chain_update(flag_key.as_bytes())
        .chain_update(b".")
        .chain_update(bucketing_id.as_bytes())
        .chain_update(salt.as_bytes())
        .finalize();
    // 15 hex digits are 60 bits: the first 7.5 bytes, big-endian.
    let leading = digest.iter().take(8).fold(0_u64, |acc, byte| (acc << 8) | u64::from(*byte)) >> 4;
    leading as f64 / LONG_SCALE
}

/// The largest value of 15 hex digits, rounded to `f64` as Python rounds it.
const LONG_SCALE: f64 = 0x0FFF_FFFF_FFFF_FFFF_u64 as f64;

fn in_rollout(flag_key: &str, bucketing_id: &str, rollout_percentage: Option<f64>) -> bool {
    // Full rollouts skip the hash, so nobody can fall outside them by rounding.
    rollout_percentage.is_none_or(|percentage| {
        percentage == 100.0 || bucket(flag_key, bucketing_id, "") <= percentage / 100.0
    })
}

fn choose_variant(
    flag_key: &str,
    filters: &FlagFilters,
    condition: &FlagCondition,
    bucketing_id: &str,
) -> Option<String> {
    let variants = filters.variants();
    if let Some(forced) = &condition.variant {
        if variants.iter().any(|variant| &variant.key == forced) {
            return Some(forced.clone());
        }
    }
    let hash = bucket(flag_key, bucketing_id, "variant");
    // Accumulate exactly as PostHog does, so range edges round the same way.
    let mut upper = 0.0;
    for variant in variants {
        upper += variant.rollout_percentage / 100.0;
        if hash < upper {
            return Some(variant.key.clone());
        }
    }
    None
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

/// Whether `properties` satisfy a person or group property filter, whatever
/// the filter's `type`. Relative dates are measured from `now_millis`.
pub fn match_property(filter: &PropertyFilter, properties: &Map<String, Value>, now_millis: i64) -> bool {
    property_value_matches(filter, properties.get(&filter.key), now_millis.saturating_mul(MICROS_PER_MILLI))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CohortOperator {
    In,
    NotIn,
}

impl CohortOperator {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "exact" | "in" => Some(Self::In),
            "not_in" => Some(Self::NotIn),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Exact,
    IsNot,
    IsSet,
    IsNotSet,
    Icontains,
    NotIcontains,
    StartsWith,
    NotStartsWith,
    EndsWith,
    NotEndsWith,
    Regex,
    NotRegex,
    Gt,
    Gte,
    Lt,
    Lte,
    IsDateBefore,
    IsDateAfter,
}

impl Operator {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "exact" => Self::Exact,
            "is_not" => Self::IsNot,
            "is_set" => Self::IsSet,
            "is_not_set" => Self::IsNotSet,
            "icontains" => Self::Icontains,
            "not_icontains" => Self::NotIcontains,
            "starts_with" => Self::StartsWith,
            "not_starts_with" => Self::NotStartsWith,
            "ends_with" => Self::EndsWith,
            "not_ends_with" => Self::NotEndsWith,
            "regex" => Self::Regex,
            "not_regex" => Self::NotRegex,
            "gt" => Self::Gt,
            "gte" => Self::Gte,
            "lt" => Self::Lt,
            "lte" => Self::Lte,
            "is_date_before" => Self::IsDateBefore,
            "is_date_after" => Self::IsDateAfter,
            _ => return None,
        })
    }

    /// PostHog's server answer for a property the subject does not have:
    /// the negative operators hold. SDKs cannot decide this case locally and
    /// ask the server, so the server's answer is the one to match.
    fn holds_when_missing(self) -> bool {
        matches!(
            self,
            Self::IsNot
                | Self::IsNotSet
                | Self::NotIcontains
                | Self::NotStartsWith
                | Self::NotEndsWith
                | Self::NotRegex
        )
    }
}

fn property_value_matches(filter: &PropertyFilter, actual: Option<&Value>, now: i64) -> bool {
    let Some(operator) = Operator::parse(filter.operator()) else {
        return false;
    };
    let Some(actual) = actual else {
        return operator.holds_when_missing();
    };
    let expected = &filter.value;
    match operator {
        Operator::IsSet => true,
        Operator::IsNotSet => false,
        Operator::Exact => exact_match(expected, actual),
        Operator::IsNot => !exact_match(expected, actual),
        Operator::Icontains | Operator::NotIcontains => {
            let found = lowered(actual).contains(&lowered(expected));
            found == (operator == Operator::Icontains)
        }
        Operator::StartsWith | Operator::NotStartsWith => {
            let found = lowered(actual).starts_with(&lowered(expected));
            found == (operator == Operator::StartsWith)
        }
        Operator::EndsWith | Operator::NotEndsWith => {
            let found = lowered(actual).ends_with(&lowered(expected));
            found == (operator == Operator::EndsWith)
        }
        Operator::Regex | Operator::NotRegex => {
            // An invalid pattern matches nothing either way, as in PostHog.
            match regex::Regex::new(&value_text(expected)) {
                Ok(pattern) => pattern.is_match(&value_text(actual)) == (operator == Operator::Regex),
                Err(_) => false,
            }
        }
        Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte => {
            let (Some(actual), Some(expected)) = (as_number(actual), as_number(expected)) else {
                return false;
            };
            match operator {
                Operator::Gt => actual > expected,
                Operator::Gte => actual >= expected,
                Operator::Lt => actual < expected,
                _ => actual <= expected,
            }
        }
        Operator::IsDateBefore | Operator::IsDateAfter => {
            let (Some(actual), Some(expected)) = (property_date(actual, now), filter_date(expected, now))
            else {
                return false;
            };
            if operator == Operator::IsDateBefore {
                actual < expected
            } else {
                actual > expected
            }
        }
    }
}

/// PostHog's `exact`: a filter of booleans (or `"true"`/`"false"`) compares
/// truthiness; otherwise values compare as lowercased strings, and a list
/// filter matches any of its items. An empty list matches truthy values.
fn exact_match(expected: &Value, actual: &Value) -> bool {
    if matches!(expected, Value::Array(items) if items.is_empty()) || is_boolean_like(expected) {
        return is_truthy(expected) == is_truthy(actual);
    }
    let actual = value_text(actual).to_lowercase();
    match expected {
        Value::Array(items) => items.iter().any(|item| value_text(item).to_lowercase() == actual),
        single => value_text(single).to_lowercase() == actual,
    }
}

fn is_boolean_like(value: &Value) -> bool {
    match value {
        Value::Bool(_) => true,
        Value::String(text) => matches!(text.to_lowercase().as_str(), "true" | "false"),
        Value::Array(items) => items.iter().all(is_boolean_like),
        _ => false,
    }
}

fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Bool(flag) => *flag,
        Value::String(text) => text.to_lowercase() == "true",
        Value::Array(items) => items.iter().all(is_truthy),
        _ => false,
    }
}

/// Text operators fold ASCII case only, as PostHog does.
fn lowered(value: &Value) -> String {
    value_text(value).to_ascii_lowercase()
}

/// The string a value is compared as: strings as they are, anything else as
/// compact JSON written the way posthog-python writes it (sorted keys,
/// Python's float notation), so `1.0` stays `"1.0"` and never becomes `"1"`.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => {
            let mut out = String::new();
            write_json(other, &mut out);
            out
        }
    }
}

fn write_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => out.push_str(&number_text(number)),
        Value::String(text) => out.push_str(&Value::String(text.clone()).to_string()),
        Value::Array(items) => {
            out.push('[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(fields) => {
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            out.push('{');
            for (position, key) in keys.into_iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(field) = fields.get(key) {
                    write_json(field, out);
                }
            }
            out.push('}');
        }
    }
}

fn number_text(number: &serde_json::Number) -> String {
    if let Some(integer) = number.as_i64() {
        integer.to_string()
    } else if let Some(integer) = number.as_u64() {
        integer.to_string()
    } else {
        python_float_text(number.as_f64().unwrap_or(0.0))
    }
}

/// A float as posthog-python prints it: positional notation for decimal
/// exponents from -5 to 15 (with `.0` on whole numbers), else
/// `{mantissa}e{sign}{exponent}` with an unpadded exponent.
fn python_float_text(value: f64) -> String {
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if value == 0.0 || (-5..=15).contains(&exponent) {
        let positional = format!("{value}");
        if positional.contains('.') {
            positional
        } else {
            format!("{positional}.0")
        }
    } else if exponent >= 0 {
        format!("{mantissa}e+{exponent}")
    } else {
        format!("{mantissa}e{exponent}")
    }
}

/// A finite number, from a JSON number or a plainly written numeric string
/// (no spaces, no `inf`/`nan`), as posthog-python accepts them.
fn as_number(value: &Value) -> Option<f64> {
    let number = match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) if is_plain_decimal(text) => text.parse().ok(),
        _ => None,
    };
    number.filter(|number| number.is_finite())
}

/// `[+-]?(digits[.digits*] | .digits)([eE][+-]?digits)?`
fn is_plain_decimal(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut at = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let digits_from =
        |at: usize| bytes[at.min(bytes.len())..].iter().take_while(|b| b.is_ascii_digit()).count();
    let whole = digits_from(at);
    at += whole;
    let mut fraction = 0;
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        fraction = digits_from(at);
        at += fraction;
    }
    if whole == 0 && fraction == 0 {
        return false;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exponent = digits_from(at);
        if exponent == 0 {
            return false;
        }
        at += exponent;
    }
    at == bytes.len()
}

// Dates are compared as microseconds since the Unix epoch, in UTC: Python's
// datetime precision, and naive values count as UTC in posthog-python.

const MICROS_PER_MILLI: i64 = 1_000;
const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SECOND;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// The date a filter compares with: relative (`"-7d"`) or absolute.
fn filter_date(value: &Value, now: i64) -> Option<i64> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        _ => return None,
    };
    relative_date(&text, now).or_else(|| parse_datetime(&text, now))
}

/// The date a property holds. Strings are read as posthog-python reads them;
/// what it cannot read (numbers, numeric strings) it leaves to the server,
/// which reads them as Unix timestamps in seconds.
fn property_date(value: &Value, now: i64) -> Option<i64> {
    match value {
        Value::String(text) => {
            parse_datetime(text, now).or_else(|| text.parse::<f64>().ok().and_then(timestamp_seconds))
        }
        Value::Number(number) => number.as_f64().and_then(timestamp_seconds),
        _ => None,
    }
}

fn timestamp_seconds(seconds: f64) -> Option<i64> {
    if !seconds.is_finite() {
        return None;
    }
    let whole = seconds.floor();
    // Python's datetime cannot go beyond year 9999 either; stay well inside i64.
    if whole.abs() > 253_402_300_800.0 {
        return None;
    }
    // The server keeps sub-second parts only for positive remainders.
    let fraction = seconds % 1.0;
    let nanos = if fraction > 0.0 { (fraction * 1e9).round() as i64 } else { 0 };
    Some(whole as i64 * MICROS_PER_SECOND + nanos / 1_000)
}

/// `-?{n}{h|d|w|m|y}` with n below 10 000, counted back from `now`; the sign
/// is optional because PostHog always means the past.
fn relative_date(text: &str, now: i64) -> Option<i64> {
    let body = text.strip_prefix('-').unwrap_or(text);
    let unit = *body.as_bytes().last()?;
    if !unit.is_ascii_lowercase() {
        return None;
    }
    let digits = &body[..body.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More than four significant digits is at least 10 000, which PostHog
    // refuses; checking first keeps huge numbers from overflowing the parse.
    if digits.trim_start_matches('0').len() > 4 {
        return None;
    }
    let amount: i64 = digits.parse().ok()?;
    if amount >= 10_000 {
        return None;
    }
    match unit {
        b'h' => now.checked_sub(amount * MICROS_PER_HOUR),
        b'd' => now.checked_sub(amount * MICROS_PER_DAY),
        b'w' => now.checked_sub(amount * 7 * MICROS_PER_DAY),
        b'm' => shift_calendar(now, |date| date.minus_months(amount)),
        b'y' => shift_calendar(now, |date| date.minus_years(amount)),
        _ => None,
    }
}

fn shift_calendar(instant: i64, shift: impl FnOnce(CivilDate) -> Option<CivilDate>) -> Option<i64> {
    let days = instant.div_euclid(MICROS_PER_DAY);
    let time_of_day = instant.rem_euclid(MICROS_PER_DAY);
    let shifted = shift(CivilDate::from_days(days))?;
    Some(shifted.to_days() * MICROS_PER_DAY + time_of_day)
}

/// Reads a date string as posthog-python does: `Z` and ` UTC` suffixes mean
/// UTC, a bare four-digit year means today's month and day in that year, and
/// the rest is ISO 8601 as Python's `datetime.fromisoformat` takes it.
fn parse_datetime(raw: &str, now: i64) -> Option<i64> {
    let text = raw.trim();
    let mut owned;
    if let Some(stripped) = text.strip_suffix('Z') {
        owned = format!("{stripped}+00:00");
    } else if text.len() >= 4
        && text.is_char_boundary(text.len() - 4)
        && text[text.len() - 4..].eq_ignore_ascii_case(" utc")
    {
        owned = format!("{}+00:00", &text[..text.len() - 4]);
    } else if text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()) {
        let today = CivilDate::from_days(now.div_euclid(MICROS_PER_DAY));
        let date = CivilDate::new(text.parse().ok()?, today.month, today.day)?;
        return Some(date.to_days() * MICROS_PER_DAY);
    } else {
        owned = text.to_owned();
    }
    // Python drops the space in "2024-01-01 10:00 +02:00".
    let bytes = owned.as_bytes();
    let n = bytes.len();
    if n >= 7
        && bytes[n - 7] == b' '
        && matches!(bytes[n - 6], b'+' | b'-')
        && bytes[n - 5].is_ascii_digit()
        && bytes[n - 4].is_ascii_digit()
        && bytes[n - 3] == b':'
        && bytes[n - 2].is_ascii_digit()
        && bytes[n - 1].is_ascii_digit()
    {
        owned.remove(n - 7);
    }
    parse_iso_datetime(&owned)
}

/// Python 3.11's `datetime.fromisoformat`: a date (`YYYY-MM-DD` or
/// `YYYYMMDD`), then optionally any one separator character and a time
/// (`HH[:MM[:SS[.f…]]]`, colons optional), then optionally `Z` or an offset.
fn parse_iso_datetime(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let (date, date_len) = if bytes.get(4) == Some(&b'-') {
        if bytes.get(7) != Some(&b'-') {
            return None;
        }
        (CivilDate::new(digits(bytes, 0, 4)?, digits(bytes, 5, 2)?, digits(bytes, 8, 2)?)?, 10)
    } else {
        (CivilDate::new(digits(bytes, 0, 4)?, digits(bytes, 4, 2)?, digits(bytes, 6, 2)?)?, 8)
    };
    let day_start = date.to_days() * MICROS_PER_DAY;
    let rest = text.get(date_len..)?;
    let mut chars = rest.chars();
    let Some(_separator) = chars.next() else {
        return Some(day_start);
    };
    let time = chars.as_str();
    let offset_at = time.find(['+', '-', 'Z']).unwrap_or(time.len());
    let (clock, zone) = time.split_at(offset_at);
    let time_of_day = parse_clock(clock)?;
    if time_of_day >= MICROS_PER_DAY {
        return None;
    }
    let offset = match zone.as_bytes().first() {
        None => 0,
        Some(b'Z') if zone.len() == 1 => 0,
        Some(b'+') => parse_clock(&zone[1..])?,
        Some(b'-') => -parse_clock(&zone[1..])?,
        _ => return None,
    };
    if offset.abs() >= MICROS_PER_DAY {
        return None;
    }
    Some(day_start + time_of_day - offset)
}

/// `HH[:MM[:SS[.f…]]]` or `HH[MM[SS[.f…]]]` as microseconds; fractions may
/// use `.` or `,` and are cut to microseconds.
fn parse_clock(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let extended = bytes.get(2) == Some(&b':');
    let mut parts = [0_i64; 3];
    let mut at = 0;
    let mut count = 0;
    while count < 3 && at < bytes.len() {
        if count > 0 && extended {
            if bytes.get(at) != Some(&b':') {
                break;
            }
            at += 1;
        }
        parts[count] = digits(bytes, at, 2)?;
        at += 2;
        count += 1;
        if matches!(bytes.get(at), Some(b'.' | b',')) {
            break;
        }
    }
    if count == 0 {
        return None;
    }
    let mut micros = 0;
    if matches!(bytes.get(at), Some(b'.' | b',')) {
        // Fractions need whole seconds before them.
        if count != 3 {
            return None;
        }
        let fraction = &bytes[at + 1..];
        if fraction.is_empty() || !fraction.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for position in 0..6 {
            micros = micros * 10 + fraction.get(position).map_or(0, |digit| i64::from(digit - b'0'));
        }
        at = bytes.len();
    }
    if at != bytes.len() {
        return None;
    }
    let [hours, minutes, seconds] = parts;
    if hours > 23 || minutes > 59 || seconds > 59 {
        return None;
    }
    Some(hours * MICROS_PER_HOUR + minutes * 60 * MICROS_PER_SECOND + seconds * MICROS_PER_SECOND + micros)
}

/// `len` ASCII digits at `at`, as a number.
fn digits(bytes: &[u8], at: usize, len: usize) -> Option<i64> {
    let slice = bytes.get(at..at + len)?;
    slice.iter().try_fold(0_i64, |acc, byte| byte.is_ascii_digit().then(|| acc * 10 + i64::from(byte - b'0')))
}

/// A proleptic Gregorian date within Python's datetime range (years 1–9999).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CivilDate {
    year: i64,
    month: i64,
    day: i64,
}

impl CivilDate {
    fn new(year: i64, month: i64, day: i64) -> Option<Self> {
        let valid = (1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day);
        valid.then_some(CivilDate { year, month, day })
    }

    /// Days since 1970-01-01, by Howard Hinnant's era arithmetic: years are
    /// counted from March so the leap day falls at the end.
    fn to_days(self) -> i64 {
        let year = if self.month <= 2 { self.year - 1 } else { self.year };
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let month_from_march = (self.month + 9) % 12;
        let day_of_year = (153 * month_from_march + 2) / 5 + self.day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    fn from_days(days: i64) -> Self {
        let shifted = days + 719_468;
        let era = shifted.div_euclid(146_097);
        let day_of_era = shifted - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        CivilDate { year, month, day }
    }

    /// posthog-python steps back one month at a time and clamps the day at
    /// each step, so March 31, 2023 minus two months is January 28 (clamped
    /// in February), not January 31.
    fn minus_months(self, months: i64) -> Option<Self> {
        let current = self.year * 12 + self.month - 1;
        let target = current - months;
        let mut day = self.day;
        for index in (target..current).rev() {
            if day <= 28 {
                break;
            }
            day = day.min(days_in_month(index.div_euclid(12), index.rem_euclid(12) + 1));
        }
        CivilDate::new(target.div_euclid(12), target.rem_euclid(12) + 1, day)
    }

    fn minus_years(self, years: i64) -> Option<Self> {
        let leap_day = self.month == 2 && self.day == 29;
        let day = if years > 0 && leap_day { 28 } else { self.day };
        CivilDate::new(self.year - years, self.month, day)
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn filters(value: Value) -> FlagFilters {
        serde_json::from_value(value).expect("valid filters")
    }

    fn filter(key: &str, operator: &str, value: Value) -> PropertyFilter {
        PropertyFilter {
            key: key.to_owned(),
            value,
            operator: Some(operator.to_owned()),
            kind: "person".to_owned(),
            group_type_index: None,
        }
    }

    /// 2024-03-31T12:00:00Z, a date that exercises month clamping.
    const NOW_MILLIS: i64 = 1_711_886_400_000;

    fn check(filter: &PropertyFilter, properties: Value) -> bool {
        match_property(filter, &props(properties), NOW_MILLIS)
    }

    #[test]
    fn hash_matches_posthog_for_known_inputs() {
        // From Python: int(sha1(f"{key}.{id}{salt}").hexdigest()[:15], 16) / 0xFFFFFFFFFFFFFFF
        assert_eq!(bucket("simple-flag", "user-1", ""), 0.7371322536090543);
        assert_eq!(bucket("simple-flag", "user-1", "variant"), 0.4211875370594937);
        assert_eq!(bucket("beta-feature", "distinct_id_1", ""), 0.9933344589089698);
        assert_eq!(bucket("multivariate-flag", "user_a", "variant"), 0.45521493591174816);
        assert_eq!(bucket("org-flag", "acme", ""), 0.9276310284510765);
        assert_eq!(bucket("ünïcode", "ユーザー", ""), 0.4394740264593413);
        assert_eq!(bucket("flag", "", ""), 0.0);
    }

    #[test]
    fn rollout_boundaries() {
        let none = filters(json!({"groups": [{"properties": [], "rollout_percentage": 0}]}));
        let all = filters(json!({"groups": [{"properties": [], "rollout_percentage": 100}]}));
        let unset = filters(json!({"groups": [{"properties": []}]}));
        for n in 0..1000 {
            let subject = FlagSubject::new(format!("user-{n}"));
            let off = evaluate_at("rollout", &none, &subject, NOW_MILLIS);
            assert!(!off.enabled);
            assert_eq!((off.reason, off.condition_index), (FlagReason::OutOfRolloutBound, Some(0)));
            assert!(evaluate_at("rollout", &all, &subject, NOW_MILLIS).enabled);
            assert!(evaluate_at("rollout", &unset, &subject, NOW_MILLIS).enabled);
        }
        // user-1 hashes to 0.73713… for "simple-flag": the bound is inclusive.
        let at = |percentage: f64| {
            let flag = filters(json!({"groups": [{"rollout_percentage": percentage}]}));
            evaluate_at("simple-flag", &flag, &FlagSubject::new("user-1"), NOW_MILLIS).enabled
        };
        assert!(at(73.72));
        assert!(!at(73.71));
    }

    #[test]
    fn variants_follow_their_percentages() {
        let flag = filters(json!({
            "groups": [{"properties": [], "rollout_percentage": 100}],
            "multivariate": {"variants": [
                {"key": "control", "rollout_percentage": 20},
                {"key": "test", "rollout_percentage": 30},
                {"key": "other", "name": "Other", "rollout_percentage": 50}
            ]}
        }));
        let mut counts: BTreeMap<String, i32> = BTreeMap::new();
        for n in 0..10_000 {
            let result = evaluate_at("split", &flag, &FlagSubject::new(format!("id-{n}")), NOW_MILLIS);
            *counts.entry(result.variant.expect("a variant")).or_insert(0) += 1;
        }
        // The first few, as posthog-python's get_matching_variant assigns them.
        let first: Vec<Option<String>> = (0..8)
            .map(|n| evaluate_at("split", &flag, &FlagSubject::new(format!("id-{n}")), NOW_MILLIS).variant)
            .collect();
        let expected = ["control", "other", "other", "other", "other", "test", "other", "other"];
        assert_eq!(first, expected.map(|key| Some(key.to_owned())));
        for (key, expected) in [("control", 2_000), ("test", 3_000), ("other", 5_000)] {
            let count = counts[key];
            assert!((count - expected).abs() < 250, "{key}: {count}");
        }
    }

    #[test]
    fn variant_choice_matches_posthog() {
        // "multivariate-flag"/"user_a" hashes to 0.4552 with the variant salt.
        let flag = filters(json!({
            "groups": [{"rollout_percentage": 100}],
            "multivariate": {"variants": [
                {"key": "first", "rollout_percentage": 45},
                {"key": "second", "rollout_percentage": 55}
            ]},
            "payloads": {"second": "{\"color\": \"blue\"}", "first": {"n": 1}}
        }));
        let result = evaluate_at("multivariate-flag", &flag, &FlagSubject::new("user_a"), NOW_MILLIS);
        assert_eq!(result.variant.as_deref(), Some("second"));
        assert_eq!(result.value(), json!("second"));
        // Payloads come back exactly as stored, encoded strings included.
        assert_eq!(result.payload, Some(json!("{\"color\": \"blue\"}")));
        assert_eq!(result.reason, FlagReason::ConditionMatch);
        assert_eq!(result.description(), "Matched condition set 1");
    }

    #[test]
    fn condition_variant_override_wins_when_valid() {
        let flag = filters(json!({
            "groups": [
                {"properties": [
                    {"key": "email", "value": "@vip.com", "operator": "icontains", "type": "person"}
                 ], "rollout_percentage": 100, "variant": "test"},
                {"rollout_percentage": 100, "variant": "missing"}
            ],
            "multivariate": {"variants": [
                {"key": "control", "rollout_percentage": 100},
                {"key": "test", "rollout_percentage": 0}
            ]}
        }));
        let vip = FlagSubject::new("a").with_properties(props(json!({"email": "Jo@VIP.com"})));
        let result = evaluate_at("override", &flag, &vip, NOW_MILLIS);
        assert_eq!((result.variant.as_deref(), result.condition_index), (Some("test"), Some(0)));
        // An override naming no variant falls back to the hash.
        let other = evaluate_at("override", &flag, &FlagSubject::new("b"), NOW_MILLIS);
        assert_eq!((other.variant.as_deref(), other.condition_index), (Some("control"), Some(1)));
        assert_eq!(other.description(), "Matched condition set 2");
        assert!(matches!(validate(&flag), Err(FlagError::UnknownVariant { condition: 1, .. })));
    }

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
    fn exact_and_is_not() {
        let exact = filter("plan", "exact", json!("Pro"));
        assert!(check(&exact, json!({"plan": "pro"})));
        assert!(!check(&exact, json!({"plan": "pro plus"})));
        assert!(!check(&exact, json!({})));
        let any = filter("country", "exact", json!(["US", "CA"]));
        assert!(check(&any, json!({"country": "ca"})));
        assert!(!check(&any, json!({"country": "de"})));
        // Numbers compare by their string form, floats in Python's notation.
        assert!(check(&filter("n", "exact", json!("5")), json!({"n": 5})));
        assert!(check(&filter("n", "exact", json!(["1.0"])), json!({"n": 1.0})));
        assert!(!check(&filter("n", "exact", json!("1")), json!({"n": 1.0})));
        assert!(check(&filter("n", "exact", json!("1e+16")), json!({"n": 1e16})));
        assert!(check(&filter("n", "exact", json!("0.00001")), json!({"n": 1e-5})));
        assert!(check(&filter("n", "exact", json!("1e-6")), json!({"n": 1e-6})));
        assert!(check(
            &filter("o", "exact", json!("{\"a\":[1,null],\"b\":\"x\"}")),
            json!({"o": {"b": "x", "a": [1, null]}})
        ));
        // Boolean filters compare truthiness.
        assert!(check(&filter("beta", "exact", json!(["true"])), json!({"beta": true})));
        assert!(check(&filter("beta", "exact", json!(true)), json!({"beta": "TRUE"})));
        assert!(check(&filter("beta", "exact", json!(false)), json!({"beta": "no"})));
        assert!(!check(&filter("beta", "exact", json!(true)), json!({"beta": "yes"})));
        assert!(check(&filter("beta", "exact", json!([])), json!({"beta": true})));
        assert!(!check(&filter("beta", "exact", json!([])), json!({"beta": "us"})));
        let is_not = filter("plan", "is_not", json!(["free", "trial"]));
        assert!(check(&is_not, json!({"plan": "pro"})));
        assert!(!check(&is_not, json!({"plan": "FREE"})));
        assert!(check(&is_not, json!({})));
        assert!(check(&filter("plan", "is_not", json!("x")), json!({"plan": null})));
        // A filter without an operator is exact.
        let mut bare = filter("plan", "exact", json!("pro"));
        bare.operator = None;
        assert!(check(&bare, json!({"plan": "PRO"})));
    }

    #[test]
    fn set_and_not_set() {
        let is_set = filter("email", "is_set", json!("is_set"));
        let is_not_set = filter("email", "is_not_set", json!("is_not_set"));
        assert!(check(&is_set, json!({"email": null})));
        assert!(!check(&is_set, json!({})));
        assert!(check(&is_not_set, json!({})));
        assert!(!check(&is_not_set, json!({"email": ""})));
    }

    #[test]
    fn text_operators() {
        let contains = filter("email", "icontains", json!("@Example.COM"));
        assert!(check(&contains, json!({"email": "jo@example.com"})));
        assert!(!check(&contains, json!({"email": "jo@other.com"})));
        assert!(!check(&contains, json!({})));
        assert!(check(&filter("n", "icontains", json!(3)), json!({"n": 323})));
        let not_contains = filter("email", "not_icontains", json!("example"));
        assert!(check(&not_contains, json!({"email": "jo@other.com"})));
        assert!(!check(&not_contains, json!({"email": "jo@EXAMPLE.com"})));
        assert!(check(&not_contains, json!({})));
        // Only ASCII case folds.
        assert!(!check(&filter("name", "icontains", json!("É")), json!({"name": "é"})));
        assert!(check(&filter("url", "starts_with", json!("HTTPS://")), json!({"url": "https://x"})));
        assert!(check(&filter("url", "not_starts_with", json!("http:")), json!({"url": "https://x"})));
        assert!(check(&filter("url", "ends_with", json!(".IO")), json!({"url": "a.io"})));
        assert!(!check(&filter("url", "not_ends_with", json!(".io")), json!({"url": "a.io"})));
    }

    #[test]
    fn regex_operators() {
        let regex = filter("email", "regex", json!(r"^\w+@example\.com$"));
        assert!(check(&regex, json!({"email": "jo@example.com"})));
        assert!(!check(&regex, json!({"email": "jo@example.comx"})));
        assert!(!check(&regex, json!({})));
        // Unanchored search, like Python's re.search.
        assert!(check(&filter("v", "regex", json!("b+")), json!({"v": "abbc"})));
        assert!(check(&filter("v", "regex", json!("^nu")), json!({"v": null})));
        let not_regex = filter("email", "not_regex", json!("example"));
        assert!(check(&not_regex, json!({"email": "jo@other.com"})));
        assert!(!check(&not_regex, json!({"email": "jo@example.com"})));
        assert!(check(&not_regex, json!({})));
        // An invalid pattern matches nothing, negated or not.
        assert!(!check(&filter("v", "regex", json!("(")), json!({"v": "("})));
        assert!(!check(&filter("v", "not_regex", json!("(")), json!({"v": "x"})));
    }

    #[test]
    fn numeric_operators() {
        let gt = filter("age", "gt", json!(18));
        assert!(check(&gt, json!({"age": 19})));
        assert!(check(&gt, json!({"age": "18.5"})));
        assert!(!check(&gt, json!({"age": 18})));
        assert!(!check(&gt, json!({"age": "nineteen"})));
        assert!(!check(&gt, json!({"age": "inf"})));
        assert!(!check(&gt, json!({"age": true})));
        assert!(!check(&gt, json!({"age": null})));
        assert!(!check(&gt, json!({})));
        assert!(check(&filter("age", "gte", json!("18")), json!({"age": 18})));
        assert!(check(&filter("age", "lt", json!("1e2")), json!({"age": "99"})));
        assert!(!check(&filter("age", "lt", json!(100)), json!({"age": "100"})));
        assert!(check(&filter("age", "lte", json!(100)), json!({"age": "+100."})));
        // Strings compare as numbers, never as text: "10" > "9".
        assert!(check(&filter("v", "gt", json!("9")), json!({"v": "10"})));
        assert!(!check(&filter("v", "gt", json!("abc")), json!({"v": "abd"})));
    }

    #[test]
    fn date_operators() {
        let before = filter("signup", "is_date_before", json!("2024-01-15"));
        assert!(check(&before, json!({"signup": "2024-01-14T23:59:59.999999Z"})));
        assert!(!check(&before, json!({"signup": "2024-01-15"})));
        assert!(check(&before, json!({"signup": "2024-01-15T01:00:00+02:00"})));
        assert!(check(&before, json!({"signup": "2024-01-15 01:00 +02:00"})));
        assert!(!check(&before, json!({"signup": "2024-01-15 01:00 UTC"})));
        assert!(check(&before, json!({"signup": "20240114"})));
        // Numbers and numeric strings are Unix seconds.
        assert!(check(&before, json!({"signup": 1_705_276_799})));
        assert!(!check(&before, json!({"signup": "1705276800"})));
        assert!(!check(&before, json!({"signup": "not a date"})));
        assert!(!check(&before, json!({"signup": null})));
        assert!(!check(&before, json!({})));
        let after = filter("seen", "is_date_after", json!("-7d"));
        assert!(check(&after, json!({"seen": "2024-03-25T00:00:00Z"})));
        assert!(!check(&after, json!({"seen": "2024-03-24T11:59:59Z"})));
        assert!(check(&filter("seen", "is_date_after", json!("2h")), json!({"seen": "2024-03-31T10:30:00"})));
        assert!(check(&filter("seen", "is_date_after", json!("-1w")), json!({"seen": "2024-03-25"})));
        // Months clamp step by step: March 31 - 1 month is February 29 (2024 is a leap year)
        // and - 2 months is January 29, not January 31.
        assert!(check(&filter("d", "is_date_before", json!("-1m")), json!({"d": "2024-02-29T11:59:59Z"})));
        assert!(!check(&filter("d", "is_date_before", json!("-1m")), json!({"d": "2024-02-29T12:00:00Z"})));
        assert!(check(&filter("d", "is_date_after", json!("-2m")), json!({"d": "2024-01-29T12:00:01Z"})));
        assert!(!check(&filter("d", "is_date_after", json!("-2m")), json!({"d": "2024-01-29T12:00:00Z"})));
        assert!(check(&filter("d", "is_date_after", json!("-1y")), json!({"d": "2023-03-31T12:00:01Z"})));
        // A bare year means today's month and day in that year.
        assert!(check(&filter("d", "is_date_before", json!("2020")), json!({"d": "2020-03-30"})));
        assert!(!check(&filter("d", "is_date_before", json!("-10000d")), json!({"d": "1900-01-01"})));
    }

    #[test]
    fn iso_parsing_follows_python() {
        let at = |text: &str| parse_iso_datetime(text);
        let midnight = at("2024-01-01").expect("date");
        assert_eq!(midnight, 1_704_067_200 * MICROS_PER_SECOND);
        assert_eq!(at("20240101"), Some(midnight));
        assert_eq!(at("2024-01-01x10:00"), Some(midnight + 10 * MICROS_PER_HOUR));
        assert_eq!(at("2024-01-01 10"), Some(midnight + 10 * MICROS_PER_HOUR));
        assert_eq!(at("2024-01-01T1000"), Some(midnight + 10 * MICROS_PER_HOUR));
        assert_eq!(at("2024-01-01T10:00:00,5"), Some(midnight + 10 * MICROS_PER_HOUR + 500_000));
        assert_eq!(at("2024-01-01T10:00:00.1234567"), Some(midnight + 10 * MICROS_PER_HOUR + 123_456));
        assert_eq!(
            at("2024-01-01T10:00+0530"),
            Some(midnight + 10 * MICROS_PER_HOUR - 330 * 60 * MICROS_PER_SECOND)
        );
        assert_eq!(at("2024-01-01T10:00-05"), Some(midnight + 15 * MICROS_PER_HOUR));
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(0));
        for bad in
            ["2024-1-01", "2024-01-01T24:00", "2024-02-30", "0000-01-01", "2024-01-01T10:00z", "2024-01-01T"]
        {
            assert_eq!(at(bad), None, "{bad}");
        }
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

    #[test]
    fn validation_errors() {
        let check = |value: Value| validate(&filters(value));
        assert_eq!(check(json!({"groups": [{"rollout_percentage": 50}]})), Ok(()));
        assert!(matches!(
            check(json!({"groups": [{"rollout_percentage": 101}]})),
            Err(FlagError::RolloutOutOfRange { condition: 0, .. })
        ));
        assert!(matches!(
            check(json!({"groups": [{}, {"rollout_percentage": -1}]})),
            Err(FlagError::RolloutOutOfRange { condition: 1, .. })
        ));
        let variants = |list: Value| json!({"groups": [{}], "multivariate": {"variants": list}});
        assert_eq!(
            check(variants(json!([
                {"key": "a", "rollout_percentage": 33.33},
                {"key": "b", "rollout_percentage": 33.33},
                {"key": "c", "rollout_percentage": 33.34}
            ]))),
            Ok(())
        );
        assert!(matches!(
            check(variants(
                json!([{"key": "a", "rollout_percentage": 50}, {"key": "b", "rollout_percentage": 40}])
            )),
            Err(FlagError::VariantsDoNotSumTo100 { .. })
        ));
        assert!(matches!(check(variants(json!([]))), Err(FlagError::VariantsDoNotSumTo100 { .. })));
        assert!(matches!(
            check(variants(
                json!([{"key": "a", "rollout_percentage": 150}, {"key": "b", "rollout_percentage": -50}])
            )),
            Err(FlagError::VariantRolloutOutOfRange { .. })
        ));
        assert_eq!(
            check(variants(
                json!([{"key": "a", "rollout_percentage": 50}, {"key": "a", "rollout_percentage": 50}])
            )),
            Err(FlagError::DuplicateVariant { key: "a".to_owned() })
        );
        assert_eq!(
            check(variants(json!([{"key": "", "rollout_percentage": 100}]))),
            Err(FlagError::EmptyVariantKey)
        );
        assert!(matches!(
            check(json!({"groups": [{"variant": "x"}]})),
            Err(FlagError::UnknownVariant { condition: 0, .. })
        ));
        let one = |property: Value| check(json!({"groups": [{"properties": [property]}]}));
        assert!(matches!(
            one(json!({"key": "k", "value": 1, "operator": "semver_gt", "type": "person"})),
            Err(FlagError::UnknownOperator { .. })
        ));
        assert!(matches!(
            one(json!({"key": "k", "value": "(", "operator": "regex", "type": "person"})),
            Err(FlagError::InvalidRegex { .. })
        ));
        assert!(matches!(
            one(json!({"key": "k", "value": "(?=x)", "operator": "not_regex", "type": "person"})),
            Err(FlagError::InvalidRegex { .. })
        ));
        assert_eq!(
            one(json!({"key": "k", "value": "^a.*z$", "operator": "regex", "type": "person"})),
            Ok(())
        );
        assert!(matches!(
            one(json!({"key": "k", "value": "ten", "operator": "gt", "type": "person"})),
            Err(FlagError::NotANumber { .. })
        ));
        assert!(matches!(
            one(json!({"key": "k", "value": "last week", "operator": "is_date_after", "type": "person"})),
            Err(FlagError::NotADate { .. })
        ));
        assert_eq!(
            one(json!({"key": "k", "value": "-30d", "operator": "is_date_after", "type": "person"})),
            Ok(())
        );
        assert!(matches!(
            one(json!({"key": "other-flag", "value": true, "operator": "flag_evaluates_to", "type": "flag"})),
            Err(FlagError::UnsupportedPropertyType { .. })
        ));
        assert!(matches!(
            one(json!({"key": "id", "value": "seven", "type": "cohort"})),
            Err(FlagError::InvalidCohortId { .. })
        ));
        assert!(matches!(
            one(json!({"key": "id", "value": 7, "operator": "gt", "type": "cohort"})),
            Err(FlagError::UnknownOperator { .. })
        ));
        assert!(matches!(
            one(json!({"key": "plan", "value": "pro", "type": "group"})),
            Err(FlagError::MissingGroupTypeIndex { .. })
        ));
        let message =
            check(json!({"groups": [{}, {"rollout_percentage": 120}]})).expect_err("invalid").to_string();
        assert_eq!(message, "condition set 2: rollout_percentage 120 is not between 0 and 100");
    }

    #[test]
    fn python_float_notation() {
        for (value, text) in [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1.5e-5, "0.000015"),
            (1e-6, "1e-6"),
            (1.25e-7, "1.25e-7"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e20, "1.2345e+20"),
            (123.456, "123.456"),
        ] {
            assert_eq!(python_float_text(value), text);
        }
    }
}
