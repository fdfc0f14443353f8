//! How large a person's properties are, as the compact JSON every one of
//! the person's later rows carries, and how large an update would make
//! them, counted from the keys it touches alone: a person near the limit
//! is not serialised again for each event that would change it.

use std::collections::HashMap;
use std::io;

use serde::Serialize;
use serde_json::Value;
use warren_core::person::Properties;

use crate::normalize::Event;

/// Bytes of `value` as compact JSON, counted without building the text.
pub(crate) fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Strings and JSON values always serialise, and the counter never fails.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Bytes one `"key":value` member takes inside an object.
fn member_len(key: &str, value: &Value) -> usize {
    json_len(key) + 1 + json_len(value)
}

/// Bytes of an object whose members take `members` bytes together.
fn object_len(members: usize, count: usize) -> usize {
    2 + members + count.saturating_sub(1)
}

/// Bytes the members of an object of `len` bytes and `count` members take.
fn members_of(len: usize, count: usize) -> usize {
    len.saturating_sub(2 + count.saturating_sub(1))
}

/// The JSON length of `properties` (now `len` bytes) once `event`'s
/// `$set_once`, `$set` and, when `unset`, `$unset` are applied, in that
/// order, as `update_properties` applies them.
pub(crate) fn after_update(properties: &Properties, len: usize, event: &Event, unset: bool) -> usize {
    // Each touched key's value afterwards; `None`: absent.
    let mut touched: HashMap<&str, Option<&Value>> = HashMap::new();
    for (key, value) in &event.set_once {
        if !properties.contains_key(key) {
            touched.insert(key, Some(value));
        }
    }
    for (key, value) in &event.set {
        touched.insert(key, Some(value));
    }
    if unset {
        for key in &event.unset {
            touched.insert(key, None);
        }
    }
    let mut members = members_of(len, properties.len());
    let mut count = properties.len();
    for (key, after) in touched {
        if let Some(before) = properties.get(key) {
            members = members.saturating_sub(member_len(key, before));
            count -= 1;
        }
        if let Some(after) = after {
            members += member_len(key, after);
            count += 1;
        }
    }
    object_len(members, count)
}

/// The JSON length of `into` (now `len` bytes) once `old`'s properties
/// join it, `into`'s winning where both have a key.
pub(crate) fn after_merge(into: &Properties, len: usize, old: &Properties) -> usize {
    let mut members = members_of(len, into.len());
    let mut count = into.len();
    for (key, value) in old {
        if !into.contains_key(key) {
            members += member_len(key, value);
            count += 1;
        }
    }
    object_len(members, count)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Properties {
        value.as_object().cloned().unwrap_or_default()
    }

    fn event(set_once: Value, set: Value, unset: &[&str]) -> Event {
        Event {
            team_id: 1,
            uuid: uuid::Uuid::nil(),
            event: "e".into(),
            distinct_id: "u".into(),
            properties: Properties::new(),
            timestamp_us: 0,
            created_at_us: 0,
            elements_chain: String::new(),
            process_person: true,
            set: object(set),
            set_once: object(set_once),
            unset: unset.iter().map(|key| key.to_string()).collect(),
        }
    }

    /// What applying the update and serialising gives.
    fn applied(properties: &Properties, event: &Event, unset: bool) -> usize {
        let mut after = properties.clone();
        for (key, value) in &event.set_once {
            after.entry(key.clone()).or_insert_with(|| value.clone());
        }
        after.extend(event.set.clone());
        if unset {
            for key in &event.unset {
                after.remove(key);
            }
        }
        Value::Object(after).to_string().len()
    }

    #[test]
    fn updates_are_measured_exactly() {
        let people =
            [json!({}), json!({"a": 1}), json!({"a": "x\"y\\z", "é": [1, 2.5, null], "nested": {"k": "v"}})];
        let updates = [
            event(json!({}), json!({}), &[]),
            event(json!({"a": 2, "new": "n"}), json!({}), &[]),
            event(json!({}), json!({"a": {"deep": "\u{1}"}, "b": true}), &["missing"]),
            event(json!({"c": 1}), json!({"c": 2}), &["c", "a"]),
            event(json!({}), json!({}), &["a", "é", "nested"]),
        ];
        for person in &people {
            let properties = object(person.clone());
            let len = Value::Object(properties.clone()).to_string().len();
            for update in &updates {
                for unset in [true, false] {
                    assert_eq!(
                        after_update(&properties, len, update, unset),
                        applied(&properties, update, unset),
                        "{person} with {:?} / {:?} / {:?}",
                        update.set_once,
                        update.set,
                        update.unset
                    );
                }
            }
        }
    }

    #[test]
    fn merges_are_measured_exactly() {
        let into = object(json!({"p": "b", "r": [1, 2]}));
        let old = object(json!({"p": "a", "q": "a\"b"}));
        let len = Value::Object(into.clone()).to_string().len();
        let mut merged = old.clone();
        merged.extend(into.clone());
        assert_eq!(after_merge(&into, len, &old), Value::Object(merged).to_string().len());
        assert_eq!(after_merge(&Properties::new(), 2, &old), Value::Object(old.clone()).to_string().len());
    }
}
