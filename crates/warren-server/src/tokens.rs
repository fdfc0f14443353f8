//! Which project tokens exist, cached in front of the meta store so capture
//! does not query it per request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use warren_meta::Tenancy;

use crate::ApiError;

/// Known tokens are cached for long; unknown ones briefly, so a token
/// created elsewhere becomes usable soon while a flood of bad tokens does
/// not reach the meta store per request.
const KNOWN_TTL: Duration = Duration::from_secs(300);
const UNKNOWN_TTL: Duration = Duration::from_secs(5);
/// Bounds the cache under a flood of distinct bad tokens.
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone)]
pub(crate) struct TokenCache {
    meta: Arc<dyn Tenancy>,
    entries: Arc<RwLock<HashMap<String, (bool, Instant)>>>,
}

impl TokenCache {
    pub(crate) fn new(meta: Arc<dyn Tenancy>) -> Self {
        Self { meta, entries: Arc::default() }
    }

    pub(crate) async fn is_known(&self, token: &str) -> Result<bool, ApiError> {
        let cached = {
            let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            entries.get(token).copied()
        };
        if let Some((known, at)) = cached {
            let ttl = if known { KNOWN_TTL } else { UNKNOWN_TTL };
            if at.elapsed() < ttl {
                return Ok(known);
            }
        }
        let known = self
            .meta
            .project_by_token(token)
            .await
            .map_err(|e| ApiError::MetaUnavailable(e.to_string()))?
            .is_some();
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (known, _)| *known);
        }
        entries.insert(token.to_string(), (known, Instant::now()));
        Ok(known)
    }
}
