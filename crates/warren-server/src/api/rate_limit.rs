//! Log in and sign-up attempts, limited per client address and per email,
//! so passwords cannot be guessed at speed. A fixed one-minute window per
//! key is enough for this and needs no dependency.
//!
//! The table is bounded, and a flood of distinct keys must not be a way to
//! wipe a victim's count: when it is full, expired windows go first, then
//! the windows with the fewest attempts, oldest first. A key near or over
//! its limit is the last to go, so pushing it out takes more attempts per
//! key than it has, for a whole table's worth of keys, within one window.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked at most (a key is at most an address or a 254-byte email,
/// so this is some tens of MiB at worst).
const MAX_KEYS: usize = 100_000;
/// A full table drops its expired windows at most this often: the sweep
/// walks every key, and under a flood the table stays full.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(crate) struct LoginLimiter {
    per_minute: u32,
    max_keys: usize,
    table: Arc<Mutex<Table>>,
}

struct Window {
    start: Instant,
    count: u32,
}

#[derive(Default)]
struct Table {
    windows: HashMap<Arc<str>, Window>,
    /// Eviction order: fewest attempts first, then the oldest window.
    order: BTreeSet<(u32, Instant, Arc<str>)>,
    swept: Option<Instant>,
}

impl Table {
    /// Counts an attempt of `key` at `now`; its window's start and count.
    fn hit(&mut self, key: &str, now: Instant, max_keys: usize) -> (Instant, u32) {
        let (key, window) = match self.windows.get_key_value(key) {
            Some((key, window)) => (key.clone(), Window { start: window.start, count: window.count }),
            None => {
                self.make_room(now, max_keys);
                (Arc::from(key), Window { start: now, count: 0 })
            }
        };
        self.order.remove(&(window.count, window.start, key.clone()));
        let window = if now.duration_since(window.start) >= WINDOW {
            Window { start: now, count: 1 }
        } else {
            Window { start: window.start, count: window.count.saturating_add(1) }
        };
        self.order.insert((window.count, window.start, key.clone()));
        let answer = (window.start, window.count);
        self.windows.insert(key, window);
        answer
    }

    /// Leaves room for one more key.
    fn make_room(&mut self, now: Instant, max_keys: usize) {
        if self.windows.len() < max_keys {
            return;
        }
        if self.swept.is_none_or(|at| now.duration_since(at) >= SWEEP_EVERY) {
            self.swept = Some(now);
            self.windows.retain(|_, window| now.duration_since(window.start) < WINDOW);
            self.order.retain(|(_, start, _)| now.duration_since(*start) < WINDOW);
        }
        while self.windows.len() >= max_keys.max(1) {
            let Some((_, _, key)) = self.order.pop_first() else { break };
            self.windows.remove(&key);
        }
    }
}

impl LoginLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, MAX_KEYS)
    }

    fn with_capacity(per_minute: u32, max_keys: usize) -> Self {
        Self { per_minute: per_minute.max(1), max_keys, table: Arc::default() }
    }

    /// Counts an attempt for every key; `Err(seconds to wait)` when any of
    /// them is over the limit.
    pub fn attempt(&self, keys: &[&str]) -> Result<(), u64> {
        self.attempt_at(keys, Instant::now())
    }

    fn attempt_at(&self, keys: &[&str], now: Instant) -> Result<(), u64> {
        let Ok(mut table) = self.table.lock() else { return Ok(()) };
        let mut wait = None;
        for key in keys {
            // A refused client adds no new keys: its attempts would
            // otherwise fill the table for free.
            if wait.is_some() && !table.windows.contains_key(*key) {
                continue;
            }
            let (start, count) = table.hit(key, now, self.max_keys);
            if count > self.per_minute {
                let left = WINDOW.saturating_sub(now.duration_since(start)).as_secs().max(1);
                wait = Some(wait.map_or(left, |w: u64| w.max(left)));
            }
        }
        wait.map_or(Ok(()), Err)
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.table.lock().map(|table| table.windows.len()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_over_the_limit_wait() {
        let limiter = LoginLimiter::new(3);
        for _ in 0..3 {
            assert!(limiter.attempt(&["ip:1", "email:a"]).is_ok());
        }
        let wait = limiter.attempt(&["ip:1", "email:b"]).expect_err("limited by address");
        assert!((1..=60).contains(&wait));
        assert!(limiter.attempt(&["ip:2", "email:a"]).is_err(), "limited by email from another address");
        assert!(limiter.attempt(&["ip:3", "email:c"]).is_ok());
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_at_the_cap_and_cannot_reset_a_victim() {
        let limiter = LoginLimiter::with_capacity(5, 100);
        let start = Instant::now();
        for _ in 0..4 {
            assert!(limiter.attempt_at(&["ip:guesser", "email:victim"], start).is_ok());
        }
        for i in 0..10_000 {
            let (ip, email) = (format!("ip:flood-{i}"), format!("email:flood-{i}"));
            let _ = limiter.attempt_at(&[&ip, &email], start + Duration::from_millis(1 + i / 1000));
            assert!(limiter.keys() <= 100, "the table grew past its cap: {}", limiter.keys());
        }
        assert_eq!(limiter.keys(), 100);
        let later = start + Duration::from_secs(20);
        assert!(limiter.attempt_at(&["ip:another", "email:victim"], later).is_ok(), "the fifth attempt");
        assert!(
            limiter.attempt_at(&["ip:yet-another", "email:victim"], later).is_err(),
            "the victim's earlier failures still count after the flood"
        );
    }

    #[test]
    fn a_full_table_drops_expired_windows_first() {
        let limiter = LoginLimiter::with_capacity(2, 10);
        let start = Instant::now();
        for _ in 0..3 {
            let _ = limiter.attempt_at(&["email:stale"], start);
        }
        for i in 0..9 {
            let _ = limiter.attempt_at(&[&format!("email:fresh-{i}")], start + WINDOW);
        }
        assert_eq!(limiter.keys(), 10);
        let now = start + WINDOW + Duration::from_secs(1);
        assert!(limiter.attempt_at(&["email:newcomer"], now).is_ok());
        assert_eq!(limiter.keys(), 10);
        for i in 0..9 {
            let key = format!("email:fresh-{i}");
            assert!(limiter.attempt_at(&[&key], now).is_ok());
            assert!(limiter.attempt_at(&[&key], now).is_err(), "{key} kept its count");
        }
    }

    #[test]
    fn a_refused_client_adds_no_keys() {
        let limiter = LoginLimiter::with_capacity(1, 1000);
        let now = Instant::now();
        assert!(limiter.attempt_at(&["ip:1", "email:0"], now).is_ok());
        for i in 1..100 {
            assert!(limiter.attempt_at(&["ip:1", &format!("email:{i}")], now).is_err());
        }
        assert_eq!(limiter.keys(), 2);
    }
}
