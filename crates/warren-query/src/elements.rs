//! Filters on the elements an autocaptured event names (`"type":
//! "element"`), matched as regexes on the `elements_chain` column.
//!
//! posthog-js writes the chain as text: the clicked element first, then
//! each ancestor, separated by `;`. An element reads
//! `tag.classA.classB:attr__id="buy"href="/cart"nth-child="2"text="Buy"`:
//! its tag, its classes in sorted order (a class may hold `:`, as
//! `hover:underline` does), then its attributes, quotes in values written
//! `\"`. Both engines evaluate the regexes, so they keep to what Rust's
//! `regex` and ClickHouse's RE2 agree on: no `(?i)` (ClickHouse's
//! substring prefilter ignores it), case folded with `[aA]` classes.

use serde_json::Value;

use crate::error::QueryError;
use crate::filters::checked_regex;
use crate::model::PropertyFilter;
use crate::plan::{Column, Expr};

/// `key` is `tag_name`, `text`, `href` or `selector` (a CSS selector of
/// tags, classes and ids, with descendant and child combinators).
pub fn condition(f: &PropertyFilter) -> Result<Expr, QueryError> {
    let operator = f.operator.as_deref().unwrap_or("exact");
    let chain = || Box::new(Expr::col(Column::ElementsChain));
    if let "is_set" | "is_not_set" = operator {
        return Ok(Expr::RegexMatch {
            expr: chain(),
            pattern: ".".into(),
            negated: operator == "is_not_set",
        });
    }
    let values: Vec<String> = match &f.value {
        Value::Array(items) => items.iter().map(text).collect::<Result<_, _>>()?,
        other => vec![text(other)?],
    };
    if values.is_empty() {
        return Err(QueryError::invalid(format!("element filter on {:?} has an empty value list", f.key)));
    }
    let (patterns, negated) = match operator {
        "exact" | "is_not" => {
            let patterns = values.iter().map(|value| exact(&f.key, value)).collect::<Result<Vec<_>, _>>()?;
            (patterns, operator == "is_not")
        }
        "icontains" | "not_icontains" | "regex" | "not_regex" => {
            let attribute = match f.key.as_str() {
                "text" => "text",
                "href" => "href",
                other => {
                    return Err(QueryError::invalid(format!(
                        "operator {operator} on elements takes text or href, not {other:?}"
                    )))
                }
            };
            let inner = |value: &String| match operator {
                "icontains" | "not_icontains" => Ok(format!("[^\"]*{}[^\"]*", any_case(&quoted(value)))),
                // Checked alone first, so it cannot close the group around it.
                _ => checked_regex(value.clone()).map(|value| format!("(?:{value})")),
            };
            let patterns = values
                .iter()
                .map(|value| Ok(attribute_is(attribute, &inner(value)?)))
                .collect::<Result<Vec<_>, QueryError>>()?;
            (patterns, operator.starts_with("not_"))
        }
        other => {
            return Err(QueryError::invalid(format!(
            "unknown operator {other:?} for elements (use exact, is_not, icontains, not_icontains, regex, \
                 not_regex, is_set, is_not_set)"
        )))
        }
    };
    let pattern = checked_regex(patterns.join("|"))?;
    Ok(Expr::RegexMatch { expr: chain(), pattern, negated })
}

/// `text` escaped, each ASCII letter matching either case.
fn any_case(text: &str) -> String {
    text.chars()
        .map(|c| match (c.to_ascii_lowercase(), c.to_ascii_uppercase()) {
            (lower, upper) if c.is_ascii_alphabetic() => format!("[{lower}{upper}]"),
            _ => regex::escape(&c.to_string()),
        })
        .collect()
}

fn exact(key: &str, value: &str) -> Result<String, QueryError> {
    match key {
        "tag_name" => Ok(format!("(?:^|;){}(?:[.:;]|$)", regex::escape(value))),
        "text" | "href" => Ok(attribute_is(key, &regex::escape(&quoted(value)))),
        "selector" => selector(value),
        other => Err(QueryError::invalid(format!(
            "element filters take tag_name, text, href or selector, not {other:?}"
        ))),
    }
}

/// `attribute="value"` in any element, where `value` is a pattern for the
/// text between the quotes; an attribute follows the `:` that ends the
/// classes or another attribute's closing quote.
fn attribute_is(attribute: &str, value: &str) -> String {
    format!("(?:^|[:\"]){attribute}=\"{value}\"")
}

/// Quotes inside values are written escaped in the chain.
fn quoted(value: &str) -> String {
    value.replace('"', "\\\"")
}

/// One compound selector: `tag`, `.class`es and an `#id`.
#[derive(Default)]
struct Compound {
    tag: Option<String>,
    classes: Vec<String>,
    id: Option<String>,
}

/// A CSS selector as a pattern on the chain. The chain lists the clicked
/// element before its ancestors, so the selector's last compound is
/// matched first and each earlier one after it: right after (`>`, a
/// parent) or anywhere further on (a space, an ancestor).
fn selector(text: &str) -> Result<String, QueryError> {
    let mut parts: Vec<(Compound, bool)> = Vec::new();
    let mut child = false;
    for token in text.replace('>', " > ").split_whitespace() {
        if token == ">" {
            child = true;
            continue;
        }
        parts.push((compound(token)?, child));
        child = false;
    }
    if parts.is_empty() || child {
        return Err(QueryError::invalid(format!("selector {text:?} is empty or ends with a combinator")));
    }
    let mut pattern = String::from("(?:^|;)");
    let mut joins_parent = false;
    for (i, (part, is_child)) in parts.iter().rev().enumerate() {
        if i > 0 && !joins_parent {
            // Past any number of elements between.
            pattern.push_str("(?:[^;]*;)*");
        }
        pattern.push_str(&element(part));
        joins_parent = *is_child;
    }
    Ok(pattern)
}

fn compound(token: &str) -> Result<Compound, QueryError> {
    let mut part = Compound::default();
    let unsupported =
        || QueryError::invalid(format!("selector part {token:?}: only tags, .classes and #ids are matched"));
    let mut rest = token;
    let name_end = |s: &str| s.find(['.', '#']).unwrap_or(s.len());
    let end = name_end(rest);
    if end > 0 {
        let tag = &rest[..end];
        if tag != "*" {
            // The chain has tags as the DOM names them in HTML: lowercase.
            part.tag = Some(name(tag).ok_or_else(unsupported)?.to_ascii_lowercase());
        }
        rest = &rest[end..];
    }
    while let Some(marker) = rest.chars().next() {
        let after = &rest[1..];
        let end = name_end(after);
        let value = name(&after[..end]).ok_or_else(unsupported)?;
        match marker {
            '.' => part.classes.push(value),
            _ => part.id = Some(value),
        }
        rest = &after[end..];
    }
    part.classes.sort();
    Ok(part)
}

/// A tag, class or id name, refused when it holds what a selector would
/// use for attributes or pseudo-classes (not matched here).
fn name(text: &str) -> Option<String> {
    let valid = !text.is_empty() && text.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_');
    valid.then(|| text.to_string())
}

/// One whole element of the chain, its `;` included, with `part`'s tag,
/// classes (sorted, as the chain has them, others between) and id.
fn element(part: &Compound) -> String {
    let mut pattern = match &part.tag {
        Some(tag) => regex::escape(tag),
        None => "[^;.:]*".into(),
    };
    // A class runs to the next `.`, or to the `:` that starts the
    // attributes, `:key="` (a class holds neither `=` nor `"`).
    const CLASS: &str = r#"(?:\.[^;.:"=]+(?::[^;.:"=]+)*)"#;
    const ATTRIBUTES: &str = r#":[^;.:"=]+="[^;]*"#;
    for class in &part.classes {
        pattern.push_str(&format!("{CLASS}*\\.{}", regex::escape(class)));
    }
    pattern.push_str(&format!("{CLASS}*"));
    match &part.id {
        // The id may be the first attribute (an element without classes).
        Some(id) => pattern.push_str(&format!(":(?:[^;]*\")?attr__id=\"{}\"[^;]*", regex::escape(id))),
        None => pattern.push_str(&format!("(?:{ATTRIBUTES})?")),
    }
    pattern.push_str("(?:;|$)");
    pattern
}

fn text(value: &Value) -> Result<String, QueryError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(QueryError::invalid(format!("element filter value {other} is not text"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As posthog-js 1.449 writes it: classes sorted, `attr__id` and
    /// `attr_id`, attributes sorted, a Tailwind class holding `:`, quotes
    /// in a value escaped.
    const CHAIN: &str = r#"button.buy-button.hover:underline.primary:attr__class="buy-button primary hover:underline"attr__id="buy"attr_id="buy"nth-child="2"nth-of-type="1"text="Buy \"now\"";div.cart:attr__class="cart"nth-child="1"nth-of-type="1";a:attr__href="/shop"href="/shop"nth-child="3"nth-of-type="1";body:nth-child="2"nth-of-type="1";html"#;

    fn matches(key: &str, operator: &str, value: &str) -> bool {
        let filter = PropertyFilter {
            key: key.into(),
            value: Value::String(value.into()),
            operator: Some(operator.into()),
            kind: "element".into(),
            group_type_index: None,
        };
        let Expr::RegexMatch { pattern, negated, .. } = condition(&filter).expect("a filter") else {
            panic!("a regex")
        };
        regex::Regex::new(&pattern).expect("valid").is_match(CHAIN) != negated
    }

    #[test]
    fn an_id_matches_as_the_first_attribute_too() {
        let chain = r#"button:attr__id="reveal"attr_id="reveal"nth-child="3"nth-of-type="2"text="Show";body:nth-child="2""#;
        let pattern = regex::Regex::new(&selector("#reveal").expect("selector")).expect("regex");
        assert!(pattern.is_match(chain));
        let pattern = regex::Regex::new(&selector("body > button#reveal").expect("selector")).expect("regex");
        assert!(pattern.is_match(chain));
        let pattern = regex::Regex::new(&selector("#eveal").expect("selector")).expect("regex");
        assert!(!pattern.is_match(chain));
    }

    #[test]
    fn selectors_match_the_element_and_its_ancestors() {
        for selector in [
            "button",
            "BUTTON",
            ".buy-button",
            ".primary",
            "button.primary.buy-button",
            "#buy",
            "div > button",
            "a button",
            "body .buy-button",
            "div.cart > .primary#buy",
            "html body",
        ] {
            assert!(matches("selector", "exact", selector), "{selector}");
        }
        for selector in [
            "span",
            ".missing",
            ".hover",
            ".buy",
            "#other",
            "#bu",
            "a > button",
            "button div",
            "button.primary.missing",
            "html > button",
            ".nth-child",
        ] {
            assert!(!matches("selector", "exact", selector), "{selector}");
        }
        assert!(matches("selector", "is_not", ".missing"));
        let filter = |value: &str| PropertyFilter {
            key: "selector".into(),
            value: Value::String(value.into()),
            operator: None,
            kind: "element".into(),
            group_type_index: None,
        };
        assert!(condition(&filter("a[href]")).is_err(), "attribute selectors are refused, not misread");
        assert!(condition(&filter("div >")).is_err());
    }

    #[test]
    fn tags_texts_and_links_match_whole_values_or_parts() {
        assert!(matches("tag_name", "exact", "button"));
        assert!(matches("tag_name", "exact", "a"));
        assert!(!matches("tag_name", "exact", "butto"));
        assert!(matches("text", "exact", r#"Buy "now""#));
        assert!(!matches("text", "exact", "Buy"));
        assert!(matches("text", "icontains", "BUY"));
        assert!(matches("text", "icontains", r#""NOW""#));
        assert!(matches("text", "regex", "Buy ..(now|later).."));
        assert!(matches("href", "icontains", "SHOP"));
        assert!(matches("text", "not_icontains", "sell"));
        assert!(matches("href", "exact", "/shop"));
        assert!(!matches("href", "exact", "/sho"));
        assert!(matches("tag_name", "is_set", ""));
    }

    #[test]
    fn a_regex_cannot_reach_outside_its_attribute() {
        let filter = |value: &str| PropertyFilter {
            key: "text".into(),
            value: Value::String(value.into()),
            operator: Some("regex".into()),
            kind: "element".into(),
            group_type_index: None,
        };
        assert!(condition(&filter("a)|(?:b")).is_err());
        assert!(condition(&filter("Buy(")).is_err());
        let no_value = PropertyFilter { value: Value::Null, operator: Some("is_set".into()), ..filter("") };
        assert!(condition(&no_value).is_ok(), "is_set needs no value");
    }
}
