//! Property filters against a subject's values: the operators, and the
//! string and number forms values are compared in, as posthog-python has
//! them.

use serde_json::{Map, Value};

use super::dates::{filter_date, property_date, MICROS_PER_MILLI};
use super::definition::PropertyFilter;

/// Whether `properties` satisfy a person or group property filter, whatever
/// the filter's `type`. Relative dates are measured from `now_millis`.
pub(crate) fn match_property(
    filter: &PropertyFilter,
    properties: &Map<String, Value>,
    now_millis: i64,
) -> bool {
    property_value_matches(filter, properties.get(&filter.key), now_millis.saturating_mul(MICROS_PER_MILLI))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CohortOperator {
    In,
    NotIn,
}

impl CohortOperator {
    pub(super) fn parse(name: &str) -> Option<Self> {
        match name {
            "exact" | "in" => Some(Self::In),
            "not_in" => Some(Self::NotIn),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operator {
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
    pub(super) fn parse(name: &str) -> Option<Self> {
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

pub(super) fn property_value_matches(filter: &PropertyFilter, actual: Option<&Value>, now: i64) -> bool {
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
pub(super) fn value_text(value: &Value) -> String {
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
pub(super) fn as_number(value: &Value) -> Option<f64> {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::flags::test_support::{check, filter};

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
