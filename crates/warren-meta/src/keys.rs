//! Project tokens and personal API keys: their shape, generation and hashing.

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

use crate::MetaError;

/// Prefix of project tokens, as PostHog's, so SDK users recognise them.
const PROJECT_TOKEN_PREFIX: &str = "phc_";
/// Prefix of personal API keys; capture refuses tokens that carry it.
pub(crate) const API_KEY_PREFIX: &str = "phx_";

pub fn generate_project_token() -> String {
    format!("{PROJECT_TOKEN_PREFIX}{}", Alphanumeric.sample_string(&mut rand::rng(), 40))
}

pub fn generate_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", Alphanumeric.sample_string(&mut rand::rng(), 40))
}

/// The capture token rules: 1-64 printable ASCII characters, and not a
/// personal API key.
pub fn validate_project_token(token: &str) -> Result<(), MetaError> {
    let invalid = |reason: &str| MetaError::Invalid { what: "project token", reason: reason.into() };
    if token.is_empty() || token.len() > 64 {
        return Err(invalid("must be 1 to 64 characters"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("must be printable ASCII without spaces"));
    }
    if token.starts_with(API_KEY_PREFIX) {
        return Err(invalid("starts with phx_, which marks a personal API key"));
    }
    Ok(())
}

pub(crate) fn validate_api_key(key: &str) -> Result<(), MetaError> {
    if key.len() < 16 || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(MetaError::Invalid {
            what: "personal API key",
            reason: "must be 16 to 128 printable ASCII characters".into(),
        });
    }
    Ok(())
}

pub(crate) fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// What may be shown of a key after creation: its start and end.
pub(crate) fn mask_api_key(key: &str) -> String {
    let head: String = key.chars().take(8).collect();
    let tail: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{head}…{tail}")
}
