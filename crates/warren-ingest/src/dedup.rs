//! Recently stored event uuids, to drop an event a client sent twice (a
//! retried batch that had in fact been stored). Bounded: the oldest uuid
//! is forgotten when a new one arrives at capacity.

use std::collections::{HashSet, VecDeque};

use uuid::Uuid;

pub(crate) struct RecentUuids {
    seen: HashSet<u128>,
    order: VecDeque<u128>,
    capacity: usize,
}

impl RecentUuids {
    pub fn new(capacity: usize) -> Self {
        Self { seen: HashSet::new(), order: VecDeque::new(), capacity }
    }

    pub fn contains(&self, uuid: Uuid) -> bool {
        self.seen.contains(&uuid.as_u128())
    }

    /// Records `uuid`; `false` when it was already there.
    pub fn insert(&mut self, uuid: Uuid) -> bool {
        if self.capacity == 0 {
            return true;
        }
        let key = uuid.as_u128();
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
        assert!(recent.insert(a));
        assert!(!recent.insert(a), "a duplicate is caught");
        assert!(recent.insert(b));
        assert!(recent.insert(c), "c pushes a out");
        assert!(recent.insert(a), "a was forgotten");
        assert!(!recent.insert(c));
    }
}
