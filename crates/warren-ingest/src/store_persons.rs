//! What an event store that keeps persons of its own (the ClickHouse
//! cluster) needs from the meta store besides a batch's changes, read here
//! so the stores never reach the meta store: the state before a batch of
//! the persons it merges away ([`MergedBefore`]), and the present state of
//! the persons some distinct ids belong to ([`snapshot`]).

use std::collections::BTreeMap;

use uuid::Uuid;
use warren_core::person::{PersonChanges, PersonOverride, PersonsSnapshot, TeamId};
use warren_meta::{IngestCommit, MetaError, PersonStore};

/// The distinct ids of the persons a batch merges away, and the overrides
/// that point at them, as the meta store holds them before the batch.
#[derive(Debug, Default)]
pub(crate) struct MergedBefore {
    distinct_ids: Vec<(TeamId, Uuid, Vec<String>)>,
    overrides: Vec<PersonOverride>,
}

impl MergedBefore {
    /// Reads them; must run before the meta store takes `commit`.
    pub async fn load(meta: &dyn PersonStore, commit: &IngestCommit) -> Result<Self, MetaError> {
        let mut olds_per_team: BTreeMap<TeamId, Vec<Uuid>> = BTreeMap::new();
        for merge in &commit.merges {
            olds_per_team.entry(merge.team_id).or_default().push(merge.old);
        }
        let mut before = Self::default();
        for (team_id, olds) in olds_per_team {
            let ids = meta.distinct_ids_of(team_id, &olds).await?;
            before.distinct_ids.extend(ids.into_iter().map(|(old, ids)| (team_id, old, ids)));
            before.overrides.extend(meta.overrides_into(team_id, &olds).await?);
        }
        Ok(before)
    }

    /// `commit`'s changes of persons, with this state before them.
    pub fn changes<'a>(&'a self, commit: &'a IngestCommit) -> PersonChanges<'a> {
        PersonChanges {
            persons: &commit.persons,
            merges: &commit.merges,
            distinct_ids: &commit.distinct_ids,
            overrides: &commit.overrides,
            merged_distinct_ids: &self.distinct_ids,
            overrides_into_merged: &self.overrides,
        }
    }
}

/// The meta store's present state of the persons `distinct_ids` belong to:
/// the persons, all their distinct ids and the overrides into them.
pub(crate) async fn snapshot(
    meta: &dyn PersonStore,
    team_id: TeamId,
    distinct_ids: &[String],
) -> Result<PersonsSnapshot, MetaError> {
    let lookup = meta.persons_by_distinct_ids(team_id, distinct_ids).await?;
    let mut persons: Vec<_> = lookup.persons.into_values().collect();
    persons.sort_unstable_by_key(|person| person.uuid);
    let uuids: Vec<Uuid> = persons.iter().map(|person| person.uuid).collect();
    let mut ids: Vec<(Uuid, Vec<String>)> =
        meta.distinct_ids_of(team_id, &uuids).await?.into_iter().collect();
    ids.sort_unstable();
    let overrides = meta.overrides_into(team_id, &uuids).await?;
    Ok(PersonsSnapshot { team_id, persons, distinct_ids: ids, overrides })
}
