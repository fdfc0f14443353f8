//! Recently stored events by (project, uuid), to drop an event a client sent
//! twice: a retried batch that had in fact been stored, because the process
//! died after the log made it durable but before capture answered, or the
//! answer never reached the sender. Capture's appends are all or nothing,
//! so a request answered with an error leaves nothing to deduplicate.
//!
//! The window is the last `capacity` events ingest stored, not a span of
//! time: memory stays bounded under any rate. The pipeline refills it from
//! the log on start, so a retry that arrives after a restart is still
//! caught. Keyed by project as well as uuid: two projects may carry the
//! same uuid (one sender mirroring into both), and neither loses its event.

use std::collections::{HashSet, VecDeque};

use uuid::Uuid;
use warren_core::person::TeamId;

type Key = (TeamId, Uuid);

pub(crate) struct RecentUuids {
    seen: HashSet<Key>,
    order: VecDeque<Key>,
    capacity: usize,
}

impl RecentUuids {
    pub fn new(capacity: usize) -> Self {
        Self { seen: HashSet::new(), order: VecDeque::new(), capacity }
    }

    pub fn contains(&self, team: TeamId, uuid: Uuid) -> bool {
        self.seen.contains(&(team, uuid))
    }

    /// Records `uuid` of `team`; `false` when it was already there.
    pub fn insert(&mut self, team: TeamId, uuid: Uuid) -> bool {
        if self.capacity == 0 {
            return true;
        }
        let key = (team, uuid);
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_up_to_capacity() {
        let mut recent = RecentUuids::new(2);
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        assert!(recent.insert(1, a));
        assert!(!recent.insert(1, a), "a duplicate is caught");
        assert!(recent.insert(1, b));
        assert!(recent.insert(1, c), "c pushes a out");
        assert!(recent.insert(1, a), "a was forgotten");
        assert!(!recent.insert(1, c));
    }

    #[test]
    fn the_same_uuid_in_another_project_is_not_a_duplicate() {
        let mut recent = RecentUuids::new(10);
        let uuid = Uuid::from_u128(7);
        assert!(recent.insert(1, uuid));
        assert!(!recent.contains(2, uuid));
        assert!(recent.insert(2, uuid));
        assert!(recent.contains(1, uuid) && recent.contains(2, uuid));
    }
}
