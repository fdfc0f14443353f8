//! Users, organizations, memberships, login sessions and personal API keys:
//! who may do what. Secrets (passwords, session tokens, API keys) are only
//! ever stored hashed; the clear values exist once, when created.

use serde::Serialize;

use crate::{MetaError, ProjectId};

/// A member's power in an organization, weakest first so roles compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(text: &str) -> Result<Self, MetaError> {
        match text {
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            other => Err(MetaError::Invalid {
                what: "role",
                reason: format!("{other:?} is not one of owner, admin, member"),
            }),
        }
    }
}

/// The rule for every name a person gives (users, organizations,
/// projects, key labels): 1 to 200 characters, trimmed, no control
/// characters (PostgreSQL cannot store NUL). Returns the trimmed name.
pub fn validate_name(what: &'static str, name: &str) -> Result<String, MetaError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(MetaError::Invalid { what, reason: "name must be 1 to 200 characters".into() });
    }
    if name.chars().any(char::is_control) {
        return Err(MetaError::Invalid { what, reason: "name must not hold control characters".into() });
    }
    Ok(name.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    /// In clear; hashed with argon2 before it is stored.
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Organization {
    pub id: i64,
    pub name: String,
    pub created_at: String,
}

/// One of a user's organizations, with the user's role in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    pub organization: Organization,
    pub role: Role,
}

/// One member of an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub user: User,
    pub role: Role,
}

#[derive(Debug, Clone, Default)]
pub struct NewProject {
    pub organization_id: i64,
    pub name: String,
    /// IANA time zone; UTC when unset.
    pub timezone: Option<String>,
}

/// Fields of a project to change; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct ProjectUpdate {
    pub name: Option<String>,
    pub timezone: Option<String>,
    pub week_start_day: Option<i32>,
    /// JSON list of property filters.
    pub test_account_filters: Option<String>,
    pub session_recording_opt_in: Option<bool>,
}

/// A personal API key as it may be shown: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: i64,
    pub organization_id: i64,
    /// Empty for the key a deployment was bootstrapped with.
    pub user_id: Option<i64>,
    pub label: String,
    /// The key's start and end, to recognise it by.
    pub mask: String,
    /// `"*"`, or `"<resource>:read"` / `"<resource>:write"`.
    pub scopes: Vec<String>,
    /// The projects it may touch; empty means all of its organization's.
    pub project_ids: Vec<ProjectId>,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub organization_id: i64,
    pub user_id: Option<i64>,
    pub label: String,
    pub scopes: Vec<String>,
    pub project_ids: Vec<ProjectId>,
}

/// A created key: its record and, this once, its secret.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub secret: String,
}
