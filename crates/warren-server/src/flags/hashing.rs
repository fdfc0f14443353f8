//! Where a bucketing id lands: PostHog's hash, the rollout bound and the
//! variant ranges, which must agree with the SDKs' to the last bucket.

use sha1::{Digest, Sha1};

use super::definition::{FlagCondition, FlagFilters};

/// PostHog's bucketing hash: a uniform, stable number in `[0, 1]` for a flag
/// and an id. SHA-1 of `"{flag_key}.{bucketing_id}{salt}"`, the first 15 hex
/// digits read as an integer and scaled by the largest 15-digit value.
fn bucket(flag_key: &str, bucketing_id: &str, salt: &str) -> f64 {
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

pub(super) fn in_rollout(flag_key: &str, bucketing_id: &str, rollout_percentage: Option<f64>) -> bool {
    // Full rollouts skip the hash, so nobody can fall outside them by rounding.
    rollout_percentage.is_none_or(|percentage| {
        percentage == 100.0 || bucket(flag_key, bucketing_id, "") <= percentage / 100.0
    })
}

pub(super) fn choose_variant(
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::flags::evaluation::{evaluate_at, FlagReason, FlagSubject};
    use crate::flags::test_support::{filters, props, NOW_MILLIS};
    use crate::flags::validation::{validate, FlagError};

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
}
