//! Checks a flag definition before it is stored, so evaluation never meets a
//! rule it would have to guess about.

use super::dates::filter_date;
use super::definition::{FlagFilters, PropertyFilter, Variant};
use super::operators::{as_number, value_text, CohortOperator, Operator};

/// Why a flag definition is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum FlagError {
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
pub(crate) fn validate(filters: &FlagFilters) -> Result<(), FlagError> {
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
            match filter_date(&filter.value, warren_core::unix_millis().saturating_mul(1000)) {
                Some(_) => Ok(()),
                None => Err(FlagError::NotADate { condition, key: key(), value: filter.value.to_string() }),
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::flags::test_support::filters;

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
}
