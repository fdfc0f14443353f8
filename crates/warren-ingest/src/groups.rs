//! Groups: `$groupidentify` upserts a group; `$groups` on any event fills
//! the row's five group slots. Group types get slots 0–4 per project in the
//! order they are first seen.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};
use warren_core::person::{Group, GroupType, TeamId, MAX_GROUP_TYPES};
use warren_meta::{IngestCommit, MetaError, PersonStore};
use warren_store::GROUP_SLOTS;

use crate::normalize::Event;

#[derive(Default)]
pub(crate) struct GroupBatch {
    types: HashMap<TeamId, HashMap<String, i32>>,
    new_types: Vec<GroupType>,
    groups: HashMap<(TeamId, i32, String), Group>,
    dirty: HashSet<(TeamId, i32, String)>,
    warned_full: HashSet<(TeamId, String)>,
    pub warnings: Vec<warren_core::person::IngestionWarning>,
}

fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::String(key) if !key.is_empty() => Some(key.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn group_identify(event: &Event) -> Option<(String, String)> {
    if event.event != "$groupidentify" {
        return None;
    }
    let group_type = event.properties.get("$group_type").and_then(Value::as_str)?.to_string();
    let key = event.properties.get("$group_key").and_then(key_text)?;
    Some((group_type, key))
}

impl GroupBatch {
    /// Loads the group types of every project in `events`, and the groups
    /// that their `$groupidentify` events name.
    pub async fn load(meta: &dyn PersonStore, events: &[&Event]) -> Result<Self, MetaError> {
        let mut batch = Self::default();
        for event in events {
            if let std::collections::hash_map::Entry::Vacant(slot) = batch.types.entry(event.team_id) {
                let types = meta.group_types(event.team_id).await?;
                slot.insert(types.into_iter().map(|t| (t.group_type, t.group_type_index)).collect());
            }
        }
        let mut wanted: HashMap<TeamId, Vec<(i32, String)>> = HashMap::new();
        for event in events {
            if let Some((group_type, key)) = group_identify(event) {
                if let Some(&index) = batch.types.get(&event.team_id).and_then(|types| types.get(&group_type))
                {
                    wanted.entry(event.team_id).or_default().push((index, key));
                }
            }
        }
        for (team_id, keys) in wanted {
            for group in meta.groups_by_keys(team_id, &keys).await? {
                batch.groups.insert((team_id, group.group_type_index, group.group_key.clone()), group);
            }
        }
        Ok(batch)
    }

    /// The slot of a group type, giving it the next free one when new.
    fn slot(&mut self, event: &Event, group_type: &str) -> Option<i32> {
        let types = self.types.entry(event.team_id).or_default();
        if let Some(&index) = types.get(group_type) {
            return Some(index);
        }
        let index = i32::try_from(types.len()).unwrap_or(i32::MAX);
        if index >= MAX_GROUP_TYPES {
            if self.warned_full.insert((event.team_id, group_type.to_string())) {
                self.warnings.push(event.warning(
                    "group_type_limit_reached",
                    json!({"groupType": group_type, "limit": MAX_GROUP_TYPES}),
                ));
            }
            return None;
        }
        types.insert(group_type.to_string(), index);
        self.new_types.push(GroupType {
            team_id: event.team_id,
            group_type: group_type.to_string(),
            group_type_index: index,
        });
        Some(index)
    }

    /// Applies `$groupidentify` and returns the row's group keys by slot.
    pub fn apply(&mut self, event: &Event) -> [String; GROUP_SLOTS] {
        if let Some((group_type, key)) = group_identify(event) {
            if let Some(index) = self.slot(event, &group_type) {
                self.upsert(event, index, key);
            }
        }
        let mut slots: [String; GROUP_SLOTS] = Default::default();
        if let Some(Value::Object(groups)) = event.properties.get("$groups") {
            for (group_type, key) in groups {
                let Some(key) = key_text(key) else { continue };
                if let Some(index) = self.slot(event, group_type) {
                    if let Some(slot) = usize::try_from(index).ok().and_then(|i| slots.get_mut(i)) {
                        *slot = key;
                    }
                }
            }
        }
        slots
    }

    fn upsert(&mut self, event: &Event, index: i32, key: String) {
        let id = (event.team_id, index, key.clone());
        let group = self.groups.entry(id.clone()).or_insert_with(|| Group {
            team_id: event.team_id,
            group_type_index: index,
            group_key: key,
            properties: Default::default(),
            created_at_us: event.timestamp_us,
            version: 0,
        });
        let mut changed = group.version == 0;
        if let Some(Value::Object(set)) = event.properties.get("$group_set") {
            for (name, value) in set {
                if group.properties.get(name) != Some(value) {
                    group.properties.insert(name.clone(), value.clone());
                    changed = true;
                }
            }
        }
        if changed {
            group.version += 1;
            self.dirty.insert(id);
        }
    }

    pub fn into_commit(self, commit: &mut IngestCommit) {
        commit.group_types = self.new_types;
        commit.groups = self.dirty.iter().filter_map(|id| self.groups.get(id).cloned()).collect();
        commit.warnings.extend(self.warnings);
    }
}
