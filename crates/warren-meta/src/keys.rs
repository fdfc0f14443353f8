//! Project tokens and personal API keys: their shape, generation and hashing.

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

use warren_core::token::{check_project_token, PERSONAL_API_KEY_PREFIX};

use crate::MetaError;

/// Prefix of project tokens, as PostHog's, so SDK users recognise them.
const PROJECT_TOKEN_PREFIX: &str = "phc_";
pub(crate) fn generate_project_token() -> String {
    format!("{PROJECT_TOKEN_PREFIX}{}", Alphanumeric.sample_string(&mut rand::rng(), 40))
}

pub(crate) fn generate_api_key() -> String {
    format!("{PERSONAL_API_KEY_PREFIX}{}", Alphanumeric.sample_string(&mut rand::rng(), 40))
}

/// A project token must pass capture's rule, and no more: a token capture
/// would refuse is useless, and SDK users bring tokens of their own shape.
pub(crate) fn validate_project_token(token: &str) -> Result<(), MetaError> {
    if token.trim() != token {
        return Err(MetaError::Invalid { what: "project token", reason: "has surrounding spaces".into() });
    }
    check_project_token(token)
        .map_err(|problem| MetaError::Invalid { what: "project token", reason: problem.describe().into() })
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
