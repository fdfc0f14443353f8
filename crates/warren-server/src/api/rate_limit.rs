//! Log in attempts, limited per client address and per email, so passwords
//! cannot be guessed at speed. A fixed one-minute window per key is enough
//! for this and needs no dependency; the table is bounded so a flood of
//! distinct keys cannot grow memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked at most; past this, expired windows are dropped, then all.
const MAX_KEYS: usize = 100_000;

#[derive(Clone)]
pub(crate) struct LoginLimiter {
    per_minute: u32,
    windows: Arc<Mutex<HashMap<String, (Instant, u32)>>>,
}

impl LoginLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute: per_minute.max(1), windows: Arc::default() }
    }

    /// Counts an attempt for every key; `Err(seconds to wait)` when any of
    /// them is over the limit.
    pub fn attempt(&self, keys: &[&str]) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut windows) = self.windows.lock() else { return Ok(()) };
        if windows.len() >= MAX_KEYS {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if windows.len() >= MAX_KEYS {
                windows.clear();
            }
        }
        let mut wait = None;
        for key in keys {
            let (start, count) = windows.entry((*key).to_string()).or_insert((now, 0));
            if now.duration_since(*start) >= WINDOW {
                *start = now;
                *count = 0;
            }
            *count += 1;
            if *count > self.per_minute {
                let left = WINDOW.saturating_sub(now.duration_since(*start)).as_secs().max(1);
                wait = Some(wait.map_or(left, |w: u64| w.max(left)));
            }
        }
        wait.map_or(Ok(()), Err)
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
}
