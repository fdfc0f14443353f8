//! The audit log: one entry per authenticated API call, admin action and
//! failed log in. Entries name the credential (never its secret).

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Assigned by the store; 0 in an entry being recorded.
    pub id: i64,
    pub at_us: i64,
    pub organization_id: Option<i64>,
    pub project_id: Option<i64>,
    pub user_id: Option<i64>,
    pub api_key_id: Option<i64>,
    /// The user's email, the key's mask, or what a failed log in claimed.
    pub actor: String,
    /// `session`, `api_key`, `password` (log in) or `none`.
    pub credential: String,
    /// What was done, e.g. `feature_flag.create`, `login.failed`.
    pub action: String,
    pub method: String,
    /// The route's pattern, e.g. `/api/projects/{project_id}/feature_flags/{id}`.
    pub route: String,
    /// The resource's id, when the route names one.
    pub resource: Option<String>,
    /// The client's address.
    pub source: String,
    pub status: u16,
    /// `ok`, or the error code the request was refused with.
    pub outcome: String,
}

/// Which entries of an organization to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user_id: Option<i64>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    /// Entries older than this id (the previous page's last).
    pub before_id: Option<i64>,
    pub limit: u32,
}
