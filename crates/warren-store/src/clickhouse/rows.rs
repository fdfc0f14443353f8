//! [`EventRow`]s as the JSONEachRow lines ClickHouse reads and writes.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use warren_core::person::PersonMode;

use crate::{EventRow, StoreError};

/// The columns a read asks for: all of a row but the derived ones.
pub const SELECTED: &str = "uuid, event, properties, timestamp_us, team_id, distinct_id, elements_chain, \
    created_at_us, person_id, person_properties, person_created_at_us, person_mode, `$session_id`, \
    `$window_id`, `$group_0`, `$group_1`, `$group_2`, `$group_3`, `$group_4`";

/// One line, borrowing from the row when written and from the text when
/// read (where no escape forces a copy).
#[derive(Serialize, Deserialize)]
struct Line<'a> {
    uuid: Uuid,
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    properties: Cow<'a, str>,
    /// Seconds, for partitions and the sort key; written, never read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp: Option<i64>,
    timestamp_us: i64,
    team_id: i64,
    #[serde(borrow)]
    distinct_id: Cow<'a, str>,
    #[serde(borrow)]
    elements_chain: Cow<'a, str>,
    created_at_us: i64,
    person_id: Uuid,
    #[serde(borrow)]
    person_properties: Cow<'a, str>,
    person_created_at_us: i64,
    person_mode: PersonMode,
    #[serde(rename = "$session_id", borrow)]
    session_id: Cow<'a, str>,
    #[serde(rename = "$window_id", borrow)]
    window_id: Cow<'a, str>,
    #[serde(rename = "$group_0", borrow)]
    group_0: Cow<'a, str>,
    #[serde(rename = "$group_1", borrow)]
    group_1: Cow<'a, str>,
    #[serde(rename = "$group_2", borrow)]
    group_2: Cow<'a, str>,
    #[serde(rename = "$group_3", borrow)]
    group_3: Cow<'a, str>,
    #[serde(rename = "$group_4", borrow)]
    group_4: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inserted_at_us: Option<u64>,
}

/// Appends `row` as one line to `out`.
pub fn encode(row: &EventRow, inserted_at_us: u64, out: &mut String) {
    let [g0, g1, g2, g3, g4] = &row.groups;
    let line = Line {
        uuid: row.uuid,
        event: Cow::Borrowed(&row.event),
        properties: Cow::Borrowed(&row.properties),
        timestamp: Some(row.timestamp_us.div_euclid(1_000_000)),
        timestamp_us: row.timestamp_us,
        team_id: row.team_id,
        distinct_id: Cow::Borrowed(&row.distinct_id),
        elements_chain: Cow::Borrowed(&row.elements_chain),
        created_at_us: row.created_at_us,
        person_id: row.person_id,
        person_properties: Cow::Borrowed(&row.person_properties),
        person_created_at_us: row.person_created_at_us,
        person_mode: row.person_mode,
        session_id: Cow::Borrowed(&row.session_id),
        window_id: Cow::Borrowed(&row.window_id),
        group_0: Cow::Borrowed(g0),
        group_1: Cow::Borrowed(g1),
        group_2: Cow::Borrowed(g2),
        group_3: Cow::Borrowed(g3),
        group_4: Cow::Borrowed(g4),
        inserted_at_us: Some(inserted_at_us),
    };
    // Serialising plain strings and numbers into a String cannot fail.
    if let Ok(text) = serde_json::to_string(&line) {
        out.push_str(&text);
        out.push('\n');
    }
}

/// One line of a read back into a row.
pub fn decode(text: &str) -> Result<EventRow, StoreError> {
    let line: Line<'_> = serde_json::from_str(text)
        .map_err(|e| StoreError::ClickHouse(format!("an events row that does not read: {e}")))?;
    Ok(EventRow {
        uuid: line.uuid,
        event: line.event.into_owned(),
        properties: line.properties.into_owned(),
        timestamp_us: line.timestamp_us,
        team_id: line.team_id,
        distinct_id: line.distinct_id.into_owned(),
        elements_chain: line.elements_chain.into_owned(),
        created_at_us: line.created_at_us,
        person_id: line.person_id,
        person_properties: line.person_properties.into_owned(),
        person_created_at_us: line.person_created_at_us,
        person_mode: line.person_mode,
        session_id: line.session_id.into_owned(),
        window_id: line.window_id.into_owned(),
        groups: [
            line.group_0.into_owned(),
            line.group_1.into_owned(),
            line.group_2.into_owned(),
            line.group_3.into_owned(),
            line.group_4.into_owned(),
        ],
    })
}
