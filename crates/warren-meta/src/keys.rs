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

/// Argon2id with the crate's default cost: slow on purpose, so a stolen
/// table cannot be searched quickly.
pub(crate) fn hash_password(password: &str) -> Result<String, MetaError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| MetaError::Invalid { what: "password", reason: e.to_string() })?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| MetaError::Invalid { what: "password", reason: e.to_string() })
}

pub(crate) fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .is_ok_and(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A login session's secret, as long as an API key's.
pub(crate) fn generate_session_token() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 48)
}

pub(crate) fn validate_password(password: &str) -> Result<(), MetaError> {
    let length = password.chars().count();
    if !(8..=256).contains(&length) {
        return Err(MetaError::Invalid { what: "password", reason: "must be 8 to 256 characters".into() });
    }
    if password.contains('\0') {
        return Err(MetaError::Invalid { what: "password", reason: "must not hold NUL".into() });
    }
    Ok(())
}

pub(crate) fn normalize_email(email: &str) -> Result<String, MetaError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(MetaError::Invalid {
            what: "email",
            reason: format!("{email:?} is not an email address"),
        });
    }
    Ok(email)
}
