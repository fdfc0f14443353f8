//! Person semantics (contracts/persons.md) over one batch: the persons of
//! the batch's distinct ids are loaded once, changed in memory in event
//! order, and handed back as one [`IngestCommit`]'s worth of changes.
//!
//! Everything here is deterministic — new persons get UUIDv5 ids from their
//! distinct id — so replaying log records after a crash rebuilds exactly
//! the persons the stored events already name.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};
use uuid::Uuid;
use warren_core::person::{
    is_illegal_distinct_id, person_id_for_distinct_id, IngestionWarning, Person, PersonMode, PersonOverride,
    TeamId,
};
use warren_meta::{DistinctIdAssignment, IngestCommit, MetaError, PersonMerge, PersonStore};

use crate::normalize::Event;
use crate::person_size;

/// `person_created_at` of personless events whose distinct id has no
/// person, as PostHog writes it: 1970-01-01T00:00:05Z.
const PERSONLESS_CREATED_AT_US: i64 = 5_000_000;

/// A personless event for a person older than this is `force_upgrade`.
const FORCE_UPGRADE_AFTER_US: i64 = 60_000_000;

/// What an event row says about its person.
#[derive(Debug, Clone)]
pub(crate) struct PersonOnEvent {
    pub person_id: Uuid,
    pub properties: Arc<str>,
    pub created_at_us: i64,
    pub mode: PersonMode,
}

struct Entry {
    person: Person,
    /// The properties as JSON, kept until they change: most events do not
    /// change their person.
    json: Option<Arc<str>>,
    /// Whether the batch changed the person in a way that is stored (see
    /// [`PersonChange`]); a person changed only quietly is not written.
    dirty: bool,
}

/// What an event did to its person's properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PersonChange {
    None,
    /// Only properties of [`QUIET_PROPERTIES`] the person already had took
    /// new values: the events carry them, the stored person is not
    /// rewritten for them.
    Quiet,
    /// Anything else: the person is written.
    Stored,
}

/// Properties whose new values alone do not rewrite a stored person, as
/// PostHog's ingestion does (`FILTERED_PERSON_UPDATE_PROPERTIES` with
/// `isFilteredPersonUpdateProperty` in
/// `nodejs/src/common/persons/person-property-utils.ts`, applied in
/// `BatchWritingPersonsStore.getPersonUpdateOutcome`): they follow every
/// page view, so writing them would rewrite nearly every person on nearly
/// every event. A person with a change to any other property, a property
/// it did not have, an `$unset`, a merge, an identification, or a `$set`,
/// `$identify`, `$create_alias` or `$merge_dangerously` event is written
/// whole, quiet values included. Events always carry the
/// values: their person properties come from the person as this batch
/// changed it.
const QUIET_PROPERTIES: &[&str] = &[
    "$current_url",
    "$pathname",
    "$referring_domain",
    "$referrer",
    "$screen_height",
    "$screen_width",
    "$viewport_height",
    "$viewport_width",
    "$browser",
    "$browser_version",
    "$device_type",
    "$raw_user_agent",
    "$os",
    "$os_name",
    "$os_version",
    "$geoip_postal_code",
    "$geoip_time_zone",
    "$geoip_latitude",
    "$geoip_longitude",
    "$geoip_accuracy_radius",
    "$geoip_subdivision_1_code",
    "$geoip_subdivision_1_name",
    "$geoip_subdivision_2_code",
    "$geoip_subdivision_2_name",
    "$geoip_subdivision_3_code",
    "$geoip_subdivision_3_name",
    "$geoip_city_confidence",
    "$geoip_country_confidence",
    "$geoip_postal_code_confidence",
    "$geoip_subdivision_1_confidence",
    "$geoip_subdivision_2_confidence",
];

impl Entry {
    fn json(&mut self) -> Arc<str> {
        self.json
            .get_or_insert_with(|| Value::Object(self.person.properties.clone()).to_string().into())
            .clone()
    }

    fn changed(&mut self) {
        self.change(PersonChange::Stored);
    }

    fn change(&mut self, change: PersonChange) {
        if change == PersonChange::None {
            return;
        }
        self.json = None;
        if change == PersonChange::Stored {
            self.dirty = true;
        }
        self.person.version += 1;
    }
}

/// The ingestion warning of a person update dropped for its size.
///
/// PostHog bounds a person's properties too: its persons table carries a
/// check that the stored properties stay within 655,360 bytes (640 KiB, as
/// Postgres measures the JSONB column), and its ingestion pipeline answers
/// a write that breaks it by rejecting that update and recording a
/// `person_properties_size_violation` warning; the event itself goes on.
/// Warren keeps the kind, the default limit and that behaviour, measuring
/// the properties as the JSON its rows carry.
const OVERSIZED: &str = "person_properties_size_violation";

/// The persons one batch touches.
#[derive(Default)]
pub(crate) struct PersonBatch {
    /// Largest a person's properties may grow, as JSON.
    max_properties_bytes: usize,
    /// Distinct id → person, for every id the batch names (`None`: no person).
    ids: HashMap<(TeamId, String), Option<Uuid>>,
    persons: HashMap<Uuid, Entry>,
    /// Persons merged away in this batch → the person they joined.
    merged: HashMap<Uuid, Uuid>,
    moved_ids: HashSet<(TeamId, String)>,
    merges: Vec<PersonMerge>,
    overrides: Vec<PersonOverride>,
    pub warnings: Vec<IngestionWarning>,
    pub created: u64,
}

impl PersonBatch {
    /// Loads the persons of every distinct id `events` name; updates
    /// that would take a person's properties past `max_properties_bytes`
    /// are dropped.
    pub async fn load(
        meta: &dyn PersonStore,
        events: &[&Event],
        max_properties_bytes: usize,
    ) -> Result<Self, MetaError> {
        let mut wanted: HashMap<TeamId, HashSet<String>> = HashMap::new();
        for event in events {
            let ids = wanted.entry(event.team_id).or_default();
            ids.insert(event.distinct_id.clone());
            if let Some(other) = event.merge_with() {
                ids.insert(other);
            }
        }
        let mut batch = Self { max_properties_bytes, ..Self::default() };
        for (team_id, ids) in wanted {
            let ids: Vec<String> = ids.into_iter().collect();
            let lookup = meta.persons_by_distinct_ids(team_id, &ids).await?;
            for id in ids {
                let person = lookup.distinct_ids.get(&id).copied();
                batch.ids.insert((team_id, id), person);
            }
            for (uuid, person) in lookup.persons {
                batch.persons.insert(uuid, Entry { person, json: None, dirty: false });
            }
        }
        Ok(batch)
    }

    fn person_of(&self, team_id: TeamId, distinct_id: &str) -> Option<Uuid> {
        let mut person = (*self.ids.get(&(team_id, distinct_id.to_string()))?)?;
        while let Some(next) = self.merged.get(&person) {
            person = *next;
        }
        Some(person)
    }

    fn assign(&mut self, team_id: TeamId, distinct_id: &str, person: Uuid) {
        self.ids.insert((team_id, distinct_id.to_string()), Some(person));
        self.moved_ids.insert((team_id, distinct_id.to_string()));
        // Personless events of this id named its would-be person; send
        // them to the person it joined.
        let personless = person_id_for_distinct_id(team_id, distinct_id);
        if personless != person {
            self.overrides.push(PersonOverride {
                team_id,
                old_person_id: personless,
                override_person_id: person,
                version: 1,
            });
        }
    }

    fn create(&mut self, event: &Event, distinct_id: &str) -> Uuid {
        let uuid = person_id_for_distinct_id(event.team_id, distinct_id);
        let person = Person {
            uuid,
            team_id: event.team_id,
            properties: Default::default(),
            created_at_us: event.timestamp_us,
            is_identified: false,
            version: 0,
            created_by_event: Some(event.uuid),
        };
        self.persons.insert(uuid, Entry { person, json: None, dirty: true });
        self.ids.insert((event.team_id, distinct_id.to_string()), Some(uuid));
        self.moved_ids.insert((event.team_id, distinct_id.to_string()));
        self.created += 1;
        uuid
    }

    fn entry(&mut self, team_id: TeamId, uuid: Uuid) -> &mut Entry {
        // Every uuid handed out by `person_of` or `create` has an entry (the
        // loader brings each id's person with it); an empty person is only
        // a fallback that keeps a broken invariant from taking ingest down.
        self.persons.entry(uuid).or_insert_with(|| Entry {
            person: Person {
                uuid,
                team_id,
                properties: Default::default(),
                created_at_us: 0,
                is_identified: false,
                version: 0,
                created_by_event: None,
            },
            json: None,
            dirty: false,
        })
    }

    fn mark_identified(&mut self, team_id: TeamId, uuid: Uuid) {
        let entry = self.entry(team_id, uuid);
        if !entry.person.is_identified {
            entry.person.is_identified = true;
            entry.changed();
        }
    }

    /// Applies one event and says what its row carries.
    pub fn apply(&mut self, event: &Event) -> PersonOnEvent {
        if !event.process_person {
            return match self.person_of(event.team_id, &event.distinct_id) {
                Some(uuid) => {
                    let created_at_us = self.entry(event.team_id, uuid).person.created_at_us;
                    let mode = if event.timestamp_us > created_at_us.saturating_add(FORCE_UPGRADE_AFTER_US) {
                        PersonMode::ForceUpgrade
                    } else {
                        PersonMode::Propertyless
                    };
                    PersonOnEvent { person_id: uuid, properties: "{}".into(), created_at_us, mode }
                }
                None => PersonOnEvent {
                    person_id: person_id_for_distinct_id(event.team_id, &event.distinct_id),
                    properties: "{}".into(),
                    created_at_us: PERSONLESS_CREATED_AT_US,
                    mode: PersonMode::Propertyless,
                },
            };
        }
        let created_before = self.created;
        let uuid = match event.merge_with().filter(|other| *other != event.distinct_id) {
            Some(other) if is_illegal_distinct_id(&other) || is_illegal_distinct_id(&event.distinct_id) => {
                let illegal =
                    if is_illegal_distinct_id(&other) { other.as_str() } else { event.distinct_id.as_str() };
                self.warnings.push(event.warning(
                    "cannot_merge_with_illegal_distinct_id",
                    json!({"illegalDistinctId": illegal, "otherDistinctId": other, "distinctId": event.distinct_id}),
                ));
                self.person_or_create(event)
            }
            Some(other) => self.identify(event, &other),
            None => self.person_or_create(event),
        };
        // A person this event created starts as {...set_once, ...set}.
        let created = self.created > created_before;
        let limit = self.max_properties_bytes;
        let entry = self.entry(event.team_id, uuid);
        let before = entry.json().len();
        let after = person_size::after_update(&entry.person.properties, before, event, !created);
        // Updates that do not grow the properties always apply, so a person
        // past a lowered limit can still be cleaned up with `$unset`.
        let oversized = after > limit && after > before;
        if !oversized {
            let change = update_properties(&mut entry.person.properties, event, !created);
            // PostHog writes the person of these events whatever they changed.
            let forced =
                matches!(event.event.as_str(), "$set" | "$identify" | "$create_alias" | "$merge_dangerously")
                    && change != PersonChange::None;
            entry.change(if forced { PersonChange::Stored } else { change });
        }
        if oversized {
            self.warnings.push(oversized_warning(event, uuid, after, limit, "the update was dropped"));
        }
        let entry = self.entry(event.team_id, uuid);
        PersonOnEvent {
            person_id: uuid,
            properties: entry.json(),
            created_at_us: entry.person.created_at_us,
            mode: PersonMode::Full,
        }
    }

    fn person_or_create(&mut self, event: &Event) -> Uuid {
        match self.person_of(event.team_id, &event.distinct_id) {
            Some(uuid) => uuid,
            None => self.create(event, &event.distinct_id),
        }
    }

    /// `$identify` / `$create_alias` / `$merge_dangerously`: joins `other`
    /// into the person of the event's distinct id.
    fn identify(&mut self, event: &Event, other: &str) -> Uuid {
        let team = event.team_id;
        let target = event.distinct_id.as_str();
        let uuid = match (self.person_of(team, target), self.person_of(team, other)) {
            (None, None) => {
                let uuid = self.create(event, target);
                self.assign(team, other, uuid);
                uuid
            }
            (Some(uuid), None) => {
                self.assign(team, other, uuid);
                uuid
            }
            (None, Some(uuid)) => {
                self.assign(team, target, uuid);
                uuid
            }
            (Some(into), Some(old)) if into == old => into,
            (Some(into), Some(old)) => {
                let allowed =
                    event.event == "$merge_dangerously" || !self.entry(team, old).person.is_identified;
                if allowed {
                    self.merge(event, old, into);
                } else {
                    self.warnings.push(event.warning(
                        "cannot_merge_already_identified",
                        json!({"sourcePersonDistinctId": other, "targetPersonDistinctId": target}),
                    ));
                }
                into
            }
        };
        self.mark_identified(team, uuid);
        uuid
    }

    /// Person `old` joins `into`: `into`'s properties win, the earlier
    /// creation time stays, and `old` is gone. When the properties together
    /// would be too large, `into` keeps its own alone.
    fn merge(&mut self, event: &Event, old: Uuid, into: Uuid) {
        let team_id = event.team_id;
        let Some(old_entry) = self.persons.remove(&old) else { return };
        let limit = self.max_properties_bytes;
        let target = self.entry(team_id, into);
        let before = target.json().len();
        let after = person_size::after_merge(&target.person.properties, before, &old_entry.person.properties);
        let oversized = after > limit && after > before;
        if !oversized {
            let mut properties = old_entry.person.properties;
            properties.extend(std::mem::take(&mut target.person.properties));
            target.person.properties = properties;
        }
        target.person.created_at_us = target.person.created_at_us.min(old_entry.person.created_at_us);
        target.person.version = target.person.version.max(old_entry.person.version);
        target.changed();
        self.merged.insert(old, into);
        self.merges.push(PersonMerge { team_id, old, into });
        if oversized {
            let dropped = "the merged person's properties were dropped";
            self.warnings.push(oversized_warning(event, into, after, limit, dropped));
        }
    }

    pub fn merges(&self) -> usize {
        self.merges.len()
    }

    /// The batch's changes, ready for the meta store.
    pub fn into_commit(self, commit: &mut IngestCommit) {
        let resolve = |mut uuid: Uuid| {
            while let Some(next) = self.merged.get(&uuid) {
                uuid = *next;
            }
            uuid
        };
        commit.merges = self.merges.clone();
        commit.persons =
            self.persons.values().filter(|entry| entry.dirty).map(|entry| entry.person.clone()).collect();
        commit.distinct_ids = self
            .moved_ids
            .iter()
            .filter_map(|(team_id, distinct_id)| {
                let person = (*self.ids.get(&(*team_id, distinct_id.clone()))?)?;
                Some(DistinctIdAssignment {
                    team_id: *team_id,
                    distinct_id: distinct_id.clone(),
                    person_uuid: resolve(person),
                })
            })
            .collect();
        // The last word per personless id; one statement writes them all.
        let mut overrides: HashMap<(TeamId, Uuid), PersonOverride> = HashMap::new();
        for o in &self.overrides {
            let resolved = PersonOverride { override_person_id: resolve(o.override_person_id), ..o.clone() };
            if resolved.old_person_id != resolved.override_person_id {
                overrides.insert((o.team_id, o.old_person_id), resolved);
            }
        }
        commit.overrides = overrides.into_values().collect();
        commit.warnings.extend(self.warnings);
    }
}

fn oversized_warning(event: &Event, person: Uuid, size: usize, limit: usize, what: &str) -> IngestionWarning {
    event.warning(
        OVERSIZED,
        json!({
            "personId": person,
            "distinctId": event.distinct_id,
            "sizeBytes": size,
            "limitBytes": limit,
            "message": format!("the person's properties would exceed the size limit; {what}"),
        }),
    )
}

/// `$set_once`, then `$set`, then (unless the person is new) `$unset`;
/// whether anything changed.
fn update_properties(
    properties: &mut warren_core::person::Properties,
    event: &Event,
    unset: bool,
) -> PersonChange {
    let mut change = PersonChange::None;
    for (key, value) in &event.set_once {
        if !properties.contains_key(key) {
            properties.insert(key.clone(), value.clone());
            change = PersonChange::Stored;
        }
    }
    for (key, value) in &event.set {
        change = change.max(match properties.get(key) {
            Some(old) if old == value => continue,
            Some(_) if QUIET_PROPERTIES.contains(&key.as_str()) => PersonChange::Quiet,
            _ => PersonChange::Stored,
        });
        properties.insert(key.clone(), value.clone());
    }
    if unset {
        for key in &event.unset {
            if properties.remove(key).is_some() {
                change = PersonChange::Stored;
            }
        }
    }
    change
}
