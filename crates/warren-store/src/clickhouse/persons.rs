//! The person tables on the cluster — `persons`, `person_distinct_id`,
//! `person_overrides` — as rows of `JSONEachRow`, made from what one ingest
//! batch changed, or from a snapshot of the meta store's present state (a
//! replica catching up, the backfill).
//!
//! Every change is a new row with a higher `version`; nothing is updated
//! in place. A person keeps the meta store's version, and one merged away
//! gets a deleted row one above the version of the person it joined (which
//! took the higher of the two). Distinct ids and overrides have no version
//! in the meta store: theirs is a clock the store keeps (the time in µs,
//! never less than one above the last it used or the highest on the
//! cluster when it first wrote), so ingest, which writes persons one batch
//! after another, always writes a higher one; the backfill writes them at
//! version 0, below anything ingest writes, so a batch ingested while it
//! runs is never undone by it.
//!
//! `person_distinct_id` follows the contract's schema for lookups by
//! distinct id on the cluster; no query reads it yet (events carry their
//! person), and `is_deleted` stays 0 until persons can be deleted.
//!
//! The meta store keeps overrides one hop deep (an override never points
//! at a person merged away): when a person is merged away, whatever
//! pointed at it points at the survivor from then on. The cluster does the
//! same, with new rows, so a query resolves a stored person id with one
//! lookup.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use uuid::Uuid;
use warren_core::person::{Person, PersonChanges, PersonsSnapshot, TeamId};

/// The tables, as the insert statements name them.
pub(super) const PERSONS: &str = "persons";
pub(super) const DISTINCT_IDS: &str = "person_distinct_id";
pub(super) const OVERRIDES: &str = "person_overrides";

/// Rows for each person table, one JSON object a line.
#[derive(Debug, Default)]
pub(super) struct PersonRows {
    pub persons: String,
    pub distinct_ids: String,
    pub overrides: String,
}

impl PersonRows {
    /// `(table, rows)` for each table with rows to insert. Overrides go
    /// first and persons last: a batch stopped halfway never leaves a
    /// person deleted whose events no override sends to its survivor.
    pub fn inserts(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [(OVERRIDES, &self.overrides), (DISTINCT_IDS, &self.distinct_ids), (PERSONS, &self.persons)]
            .into_iter()
            .filter(|(_, rows)| !rows.is_empty())
            .map(|(table, rows)| (table, rows.as_str()))
    }

    fn person(&mut self, person: &Person) {
        let properties = serde_json::Value::Object(person.properties.clone()).to_string();
        push_line(
            &mut self.persons,
            &PersonLine {
                id: person.uuid,
                team_id: person.team_id,
                properties: &properties,
                created_at_us: person.created_at_us,
                is_identified: u8::from(person.is_identified),
                is_deleted: 0,
                version: person.version.max(0) as u64,
            },
        );
    }

    fn deleted_person(&mut self, team_id: TeamId, id: Uuid, version: u64) {
        push_line(
            &mut self.persons,
            &PersonLine {
                id,
                team_id,
                properties: "{}",
                created_at_us: 0,
                is_identified: 0,
                is_deleted: 1,
                version,
            },
        );
    }

    fn distinct_id(&mut self, team_id: TeamId, distinct_id: &str, person_id: Uuid, version: u64) {
        push_line(
            &mut self.distinct_ids,
            &DistinctIdLine { team_id, distinct_id, person_id, is_deleted: 0, version },
        );
    }

    fn override_(&mut self, team_id: TeamId, old_person_id: Uuid, override_person_id: Uuid, version: u64) {
        push_line(&mut self.overrides, &OverrideLine { team_id, old_person_id, override_person_id, version });
    }
}

#[derive(Serialize)]
struct PersonLine<'a> {
    id: Uuid,
    team_id: TeamId,
    properties: &'a str,
    created_at_us: i64,
    is_identified: u8,
    is_deleted: u8,
    version: u64,
}

#[derive(Serialize)]
struct DistinctIdLine<'a> {
    team_id: TeamId,
    distinct_id: &'a str,
    person_id: Uuid,
    is_deleted: u8,
    version: u64,
}

#[derive(Serialize)]
struct OverrideLine {
    team_id: TeamId,
    old_person_id: Uuid,
    override_person_id: Uuid,
    version: u64,
}

fn push_line(out: &mut String, line: &impl Serialize) {
    // Serialising plain strings and numbers into a String cannot fail.
    if let Ok(text) = serde_json::to_string(line) {
        out.push_str(&text);
        out.push('\n');
    }
}

/// The rows that take the cluster from the state before `changes` to the
/// one after; `version` is the batch's (see the module text).
pub(super) fn rows_of_changes(changes: &PersonChanges<'_>, version: u64) -> PersonRows {
    let merged: HashMap<Uuid, Uuid> = changes.merges.iter().map(|m| (m.old, m.into)).collect();
    let resolve = |mut uuid: Uuid| {
        // A merge chain is no longer than the batch's merges.
        for _ in 0..=merged.len() {
            match merged.get(&uuid) {
                Some(next) => uuid = *next,
                None => break,
            }
        }
        uuid
    };
    let final_version: HashMap<Uuid, i64> = changes.persons.iter().map(|p| (p.uuid, p.version)).collect();

    let mut rows = PersonRows::default();
    for person in changes.persons {
        rows.person(person);
    }
    for merge in changes.merges {
        let survivor_version = final_version.get(&resolve(merge.old)).map(|v| v.max(&0) + 1);
        // The survivor is always among the batch's persons; were it not,
        // the deletion must still win over every row of the person.
        rows.deleted_person(merge.team_id, merge.old, survivor_version.map_or(version, |v| v as u64));
    }

    // Distinct ids: those the merged-away persons had before the batch
    // move to their survivor; the batch's own say last.
    let mut distinct_ids: BTreeMap<(TeamId, String), Uuid> = BTreeMap::new();
    let mut overrides: BTreeMap<(TeamId, Uuid), Uuid> = BTreeMap::new();
    for (team_id, old, ids) in changes.merged_distinct_ids {
        for id in ids {
            distinct_ids.insert((*team_id, id.clone()), resolve(*old));
        }
    }
    for merge in changes.merges {
        overrides.insert((merge.team_id, merge.old), resolve(merge.old));
    }
    for o in changes.overrides_into_merged {
        overrides.insert((o.team_id, o.old_person_id), resolve(o.override_person_id));
    }
    for assignment in changes.distinct_ids {
        distinct_ids.insert((assignment.team_id, assignment.distinct_id.clone()), assignment.person_uuid);
    }
    for o in changes.overrides {
        overrides.insert((o.team_id, o.old_person_id), o.override_person_id);
    }
    for ((team_id, distinct_id), person) in &distinct_ids {
        rows.distinct_id(*team_id, distinct_id, *person, version);
    }
    for ((team_id, old), new) in overrides {
        if old != new {
            rows.override_(team_id, old, new, version);
        }
    }
    rows
}

/// The rows of `snapshot` at `version` (the store's clock), with a deleted
/// row for each person merged into one of its persons, so they replace
/// whatever the cluster kept of them. For a cluster that missed batches:
/// the state it missed is the present one, and a merged-away person never
/// lives again.
pub(super) fn rows_of_snapshot(snapshot: &PersonsSnapshot, version: u64) -> PersonRows {
    let mut rows = rows_of_load(snapshot, version);
    for o in &snapshot.overrides {
        rows.deleted_person(snapshot.team_id, o.old_person_id, version);
    }
    rows
}

/// The rows of `snapshot` as the backfill loads them: distinct ids and
/// overrides at `version` (0 for the backfill, see the module text).
pub(super) fn rows_of_load(snapshot: &PersonsSnapshot, version: u64) -> PersonRows {
    let team_id = snapshot.team_id;
    let mut rows = PersonRows::default();
    for person in &snapshot.persons {
        rows.person(person);
    }
    for (person, ids) in &snapshot.distinct_ids {
        for id in ids {
            rows.distinct_id(team_id, id, *person, version);
        }
    }
    for o in &snapshot.overrides {
        rows.override_(team_id, o.old_person_id, o.override_person_id, version);
    }
    rows
}
