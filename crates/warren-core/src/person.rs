//! Persons, groups and the ids that name them, as ingest produces them and
//! the meta store keeps them (contracts/persons.md).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// A project's id; PostHog calls it `team_id`, and so do the stores.
pub type TeamId = i64;

/// JSON object of person or group properties.
pub type Properties = Map<String, Value>;

/// A person: one human behind one or more distinct ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub uuid: Uuid,
    pub team_id: TeamId,
    pub properties: Properties,
    /// Microseconds since the Unix epoch.
    pub created_at_us: i64,
    pub is_identified: bool,
    /// Grows by one with every change; replicas keep the highest.
    pub version: i64,
    /// The event that created the person.
    pub created_by_event: Option<Uuid>,
}

/// Where a merged-away person's events now belong. Events already stored
/// keep `old_person_id`; readers resolve it through this mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonOverride {
    pub team_id: TeamId,
    pub old_person_id: Uuid,
    pub override_person_id: Uuid,
    pub version: i64,
}

/// A distinct id and the person it belongs to after an ingest batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistinctIdAssignment {
    pub team_id: TeamId,
    pub distinct_id: String,
    pub person_uuid: Uuid,
}

/// Person `old` merged into person `into`: its distinct ids move, an
/// override records where its events now belong, and it is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonMerge {
    pub team_id: TeamId,
    pub old: Uuid,
    pub into: Uuid,
}

/// What one ingest batch changed of persons, and what an event store that
/// keeps persons of its own needs besides to apply it: the state before the
/// batch of the persons it merged away (ingest reads it from the meta store
/// before the batch is committed there).
#[derive(Debug, Clone, Copy, Default)]
pub struct PersonChanges<'a> {
    /// Final state of every person the batch created or changed.
    pub persons: &'a [Person],
    /// Merges in the order they happened.
    pub merges: &'a [PersonMerge],
    /// Final owner of every distinct id the batch attached or moved.
    pub distinct_ids: &'a [DistinctIdAssignment],
    /// Overrides for personless ids that joined a person with another id.
    pub overrides: &'a [PersonOverride],
    /// Before the batch: the distinct ids of each person it merged away.
    pub merged_distinct_ids: &'a [(TeamId, Uuid, Vec<String>)],
    /// Before the batch: the overrides that pointed at a person it merged
    /// away.
    pub overrides_into_merged: &'a [PersonOverride],
}

/// The present state of some persons of one project, as the meta store
/// holds it: each person, all its distinct ids and the overrides that
/// point at it. For a store that loads persons wholesale — a backfill, a
/// replica catching up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonsSnapshot {
    pub team_id: TeamId,
    pub persons: Vec<Person>,
    /// Each person's distinct ids.
    pub distinct_ids: Vec<(Uuid, Vec<String>)>,
    pub overrides: Vec<PersonOverride>,
}

/// A group (company, workspace, …) of one of a project's group types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub team_id: TeamId,
    /// 0 to 4: the slot the group type occupies in the project.
    pub group_type_index: i32,
    pub group_key: String,
    pub properties: Properties,
    pub created_at_us: i64,
    pub version: i64,
}

/// A project's group type and the slot (0–4) it maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupType {
    pub team_id: TeamId,
    pub group_type: String,
    pub group_type_index: i32,
}

/// How many group types a project may have: one per events-table slot.
pub const MAX_GROUP_TYPES: i32 = 5;

/// A problem with what a sender sent, kept per project for them to see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestionWarning {
    pub team_id: TeamId,
    /// Machine-readable kind, PostHog's names where PostHog has one.
    pub kind: String,
    /// The event that caused it.
    pub event_uuid: Option<Uuid>,
    /// Kind-specific details, as JSON.
    pub details: Value,
    pub timestamp_us: i64,
}

/// How an event relates to its person, stored on every event row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonMode {
    /// The person was created or updated by the event.
    Full,
    /// `$process_person_profile = false`: no person was touched.
    Propertyless,
    /// A personless event whose distinct id already had a person.
    ForceUpgrade,
}

impl PersonMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PersonMode::Full => "full",
            PersonMode::Propertyless => "propertyless",
            PersonMode::ForceUpgrade => "force_upgrade",
        }
    }
}

/// Namespace of the deterministic person ids (UUIDv5); fixed forever, since
/// stored events carry ids made with it.
const PERSON_ID_NAMESPACE: Uuid = Uuid::from_u128(0x8f1c_2b6e_5d4a_4c3b_9e7f_0a1b_2c3d_4e5f);

/// The person id a distinct id gets when it first needs one: a UUIDv5 of
/// `"{team_id}:{distinct_id}"`. Personless events carry it too, so they line
/// up with the person the distinct id may get later, and replaying the log
/// recreates the same ids.
pub fn person_id_for_distinct_id(team_id: TeamId, distinct_id: &str) -> Uuid {
    Uuid::new_v5(&PERSON_ID_NAMESPACE, format!("{team_id}:{distinct_id}").as_bytes())
}

/// Ids that SDKs and integrations send by mistake; merging on them would
/// join unrelated people into one person.
pub fn is_illegal_distinct_id(id: &str) -> bool {
    const CASE_INSENSITIVE: &[&str] = &[
        "anonymous",
        "guest",
        "distinctid",
        "distinct_id",
        "id",
        "not_authenticated",
        "email",
        "undefined",
        "true",
        "false",
    ];
    const CASE_SENSITIVE: &[&str] = &["[object Object]", "NaN", "None", "none", "null", "0"];
    let trimmed = id.trim();
    trimmed.is_empty()
        || CASE_SENSITIVE.contains(&trimmed)
        || CASE_INSENSITIVE.iter().any(|illegal| trimmed.eq_ignore_ascii_case(illegal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn illegal_ids_follow_the_contract() {
        for id in
            ["anonymous", "Anonymous", "GUEST", "distinct_id", "[object Object]", "NaN", "null", "0", " "]
        {
            assert!(is_illegal_distinct_id(id), "{id:?} is illegal");
        }
        for id in ["user-1", "Null", "NULL", "nan", "00", "[object object]"] {
            assert!(!is_illegal_distinct_id(id), "{id:?} is legal");
        }
    }

    #[test]
    fn person_ids_are_deterministic_per_team() {
        assert_eq!(person_id_for_distinct_id(1, "a"), person_id_for_distinct_id(1, "a"));
        assert_ne!(person_id_for_distinct_id(1, "a"), person_id_for_distinct_id(2, "a"));
        assert_eq!(person_id_for_distinct_id(1, "a").get_version_num(), 5);
    }
}
