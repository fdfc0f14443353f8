//! Who is calling and what they may touch.
//!
//! A caller is a user signed in through the web UI (a `warren_session`
//! cookie) or a personal API key (`Authorization: Bearer phx_…`). Keys carry
//! scopes (`"*"` or `<resource>:read|write`, write implying read) and may be
//! limited to some projects; a key acts for its organization only, and only
//! while its user is still a member. Anything of another organization
//! answers 404 exactly as if it did not exist.

use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use warren_core::config::AuthConfig;
use warren_meta::accounts::{ApiKey, Role, User};
use warren_meta::Project;

use super::audit::AuditFacts;
use crate::{ApiError, AppState};

/// The cookie a login session travels in.
pub(crate) const SESSION_COOKIE: &str = "warren_session";

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read a resource kind, e.g. `Read("insight")`.
    Read(&'static str),
    /// Change a resource kind; implies reading it.
    Write(&'static str),
}

impl Access {
    fn allowed_by(self, scopes: &[String]) -> bool {
        let (resource, write) = match self {
            Access::Read(resource) => (resource, false),
            Access::Write(resource) => (resource, true),
        };
        scopes.iter().any(|scope| {
            scope == "*"
                || scope.split_once(':').is_some_and(|(r, level)| {
                    r == resource && (level == "write" || (!write && level == "read"))
                })
        })
    }
}

/// Every scope a key may be given, as `<resource>:read|write`.
pub(crate) const RESOURCES: [&str; 15] = [
    "action",
    "annotation",
    "cohort",
    "dashboard",
    "event_definition",
    "experiment",
    "feature_flag",
    "insight",
    "instance",
    "organization",
    "person",
    "project",
    "property_definition",
    "query",
    "session_recording",
];

/// Checks a key's requested scopes before it is created.
pub(crate) fn validate_scopes(scopes: &[String]) -> Result<(), ApiError> {
    for scope in scopes {
        let known = scope == "*"
            || scope.split_once(':').is_some_and(|(resource, level)| {
                RESOURCES.contains(&resource) && matches!(level, "read" | "write")
            });
        if !known {
            return Err(ApiError::InvalidRequest(format!(
                "unknown scope {scope:?}: use \"*\" or <resource>:read|write with a resource of {}",
                RESOURCES.join(", ")
            )));
        }
    }
    if scopes.is_empty() {
        return Err(ApiError::InvalidRequest("a key needs at least one scope".into()));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub(crate) enum Credential {
    Session(User),
    /// The key and, unless it is the bootstrap key, its user.
    ApiKey(ApiKey),
}

/// An authenticated caller. Extracting it refuses the request with 401
/// when there are no valid credentials, and tells the audit log who called.
pub(crate) struct Caller {
    pub credential: Credential,
    audit: Arc<Mutex<AuditFacts>>,
}

impl Caller {
    pub fn user(&self) -> Option<&User> {
        match &self.credential {
            Credential::Session(user) => Some(user),
            Credential::ApiKey(_) => None,
        }
    }

    /// The user id acting, for keys the key's owner.
    pub fn user_id(&self) -> Option<i64> {
        match &self.credential {
            Credential::Session(user) => Some(user.id),
            Credential::ApiKey(key) => key.user_id,
        }
    }

    /// Refuses API keys: managing keys and memberships needs a person at a
    /// browser, so a leaked key cannot mint more keys.
    pub fn session_user(&self) -> Result<&User, ApiError> {
        self.user().ok_or(ApiError::SessionRequired)
    }

    /// The caller's role in `organization_id`; `NotFound` when not a member
    /// (or, for a key, when the key is of another organization).
    pub async fn role_in(&self, state: &AppState, organization_id: i64) -> Result<Role, ApiError> {
        let role = self.role_unrecorded(state, organization_id).await?;
        // Filed under the organization only once the caller belongs to it,
        // so outsiders cannot write into another organization's log.
        self.note(|facts| facts.organization_id = Some(organization_id));
        Ok(role)
    }

    async fn role_unrecorded(&self, state: &AppState, organization_id: i64) -> Result<Role, ApiError> {
        match &self.credential {
            Credential::Session(user) => {
                state.meta.role(organization_id, user.id).await?.ok_or(ApiError::NotFound)
            }
            Credential::ApiKey(key) if key.organization_id == organization_id => match key.user_id {
                Some(user) => state.meta.role(organization_id, user).await?.ok_or(ApiError::InvalidApiKey),
                // The bootstrap key speaks for the deployment's operator.
                None => Ok(Role::Owner),
            },
            Credential::ApiKey(_) => Err(ApiError::NotFound),
        }
    }

    /// Checks the caller may do `access` in organization-wide terms (keys'
    /// scopes), and returns the role.
    pub async fn organization(
        &self,
        state: &AppState,
        organization_id: i64,
        access: Access,
    ) -> Result<Role, ApiError> {
        let role = self.role_in(state, organization_id).await?;
        self.check_scope(access)?;
        Ok(role)
    }

    /// The project `id` names, if the caller may do `access` in it.
    pub async fn project(&self, state: &AppState, id: &str, access: Access) -> Result<Project, ApiError> {
        let id: i64 = id.parse().map_err(|_| ApiError::NotFound)?;
        let project = state.meta.project(id).await?.ok_or(ApiError::NotFound)?;
        if let Credential::ApiKey(key) = &self.credential {
            if !key.project_ids.is_empty() && !key.project_ids.contains(&id) {
                return Err(ApiError::NotFound);
            }
        }
        self.role_in(state, project.organization_id).await?;
        self.note(|facts| facts.project_id = Some(id));
        self.check_scope(access)?;
        Ok(project)
    }

    /// Admits the deployment's operators: admins and owners of the
    /// organization holding Warren's internal project (the first one,
    /// which bootstrap made). Warren's own health and configuration are
    /// theirs to see, not every sign-up's.
    pub async fn instance_admin(&self, state: &AppState) -> Result<(), ApiError> {
        let project_id = state.instance.internal_project.unwrap_or(1);
        let project = state.meta.project(project_id).await?.ok_or(ApiError::NotFound)?;
        let role = self.role_in(state, project.organization_id).await?;
        self.check_organization_wide()?;
        self.check_scope(Access::Read("instance"))?;
        if role < Role::Admin {
            return Err(ApiError::PermissionDenied(
                "Warren's own health is for admins of the deployment's first organization".into(),
            ));
        }
        Ok(())
    }

    /// Refuses keys limited to some projects: what spans an organization
    /// (new projects, its audit log) is beyond them.
    pub fn check_organization_wide(&self) -> Result<(), ApiError> {
        match &self.credential {
            Credential::ApiKey(key) if !key.project_ids.is_empty() => Err(ApiError::PermissionDenied(
                "the key is limited to some projects; this concerns the whole organization".into(),
            )),
            _ => Ok(()),
        }
    }

    pub fn check_scope(&self, access: Access) -> Result<(), ApiError> {
        match &self.credential {
            Credential::Session(_) => Ok(()),
            Credential::ApiKey(key) if access.allowed_by(&key.scopes) => Ok(()),
            Credential::ApiKey(_) => {
                Err(ApiError::PermissionDenied(format!("the key lacks the scope {}", scope_name(access))))
            }
        }
    }

    /// Records the resource a request is about, for the audit log.
    pub fn note_resource(&self, resource: impl ToString) {
        let resource = resource.to_string();
        self.note(|facts| facts.resource = Some(resource));
    }

    fn note(&self, change: impl FnOnce(&mut AuditFacts)) {
        if let Ok(mut facts) = self.audit.lock() {
            change(&mut facts);
        }
    }
}

fn scope_name(access: Access) -> String {
    match access {
        Access::Read(resource) => format!("{resource}:read"),
        Access::Write(resource) => format!("{resource}:write"),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let audit = parts.extensions.get::<Arc<Mutex<AuditFacts>>>().cloned().unwrap_or_default();
        let credential = authenticate(state, &parts.headers, &audit).await?;
        if matches!(credential, Credential::Session(_)) && !parts.method.is_safe() {
            same_origin(&parts.headers)?;
        }
        Ok(Caller { credential, audit })
    }
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    audit: &Mutex<AuditFacts>,
) -> Result<Credential, ApiError> {
    if let Some(secret) = bearer(headers)? {
        let key = state.meta.api_key_by_secret(secret).await?.ok_or(ApiError::InvalidApiKey)?;
        if let Ok(mut facts) = audit.lock() {
            facts.identify_key(&key);
        }
        if key.revoked_at.is_some() {
            return Err(ApiError::ApiKeyRevoked);
        }
        return Ok(Credential::ApiKey(key));
    }
    if let Some(token) = session_cookie(headers) {
        let now = chrono::Utc::now().timestamp_micros();
        if let Some(user) = state.meta.user_for_session(token, now).await? {
            if let Ok(mut facts) = audit.lock() {
                facts.identify_user(&user, "session");
            }
            return Ok(Credential::Session(user));
        }
    }
    Err(ApiError::NotAuthenticated)
}

/// Cookies travel with requests other pages make, so a change made with a
/// session must come from Warren's own pages: browsers say where a request
/// comes from in `Sec-Fetch-Site` and `Origin`. (Keys are not sent by
/// browsers on their own, so they need no such check.)
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return Err(ApiError::PermissionDenied(format!(
                "a {site} request cannot use the session cookie"
            )));
        }
    }
    if let (Some(origin), Some(host)) = (text("origin"), text("host")) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin_host != host {
            return Err(ApiError::PermissionDenied(format!(
                "requests from {origin} cannot use the session cookie"
            )));
        }
    }
    Ok(())
}

fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(header) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .map(Some)
        .ok_or(ApiError::NotAuthenticated)
}

/// The session token of the request's cookie, if any.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// Whether the session cookie goes out `Secure` (over HTTPS only): always
/// when `[auth] secure_cookie` says so, and when the reverse proxy Warren
/// is configured to trust (`[auth] client_address_header`) says the client
/// came in over HTTPS (`X-Forwarded-Proto: https`, its first entry being
/// the outermost hop). Without a configured proxy the header is anyone's
/// claim and is ignored.
pub(crate) fn secure_cookie(auth: &AuthConfig, headers: &HeaderMap) -> bool {
    let forwarded_https = || {
        headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    };
    auth.secure_cookie || (auth.client_address_header.is_some() && forwarded_https())
}

/// `Set-Cookie` for a session; `None` clears it. HttpOnly keeps scripts
/// from reading it; SameSite=Lax keeps other sites from posting with it.
pub(crate) fn session_cookie_header(token: Option<&str>, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = match token {
        Some(token) => {
            format!(
                "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
            )
        }
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    // Tokens are alphanumeric, so the value is always a valid header.
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("warren_session=; Path=/; Max-Age=0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_allow_what_they_name() {
        let scopes = vec!["insight:read".to_string(), "feature_flag:write".to_string()];
        assert!(Access::Read("insight").allowed_by(&scopes));
        assert!(!Access::Write("insight").allowed_by(&scopes));
        assert!(Access::Read("feature_flag").allowed_by(&scopes), "write implies read");
        assert!(Access::Write("feature_flag").allowed_by(&scopes));
        assert!(!Access::Read("cohort").allowed_by(&scopes));
        assert!(Access::Write("cohort").allowed_by(&["*".to_string()]));
        assert!(validate_scopes(&scopes).is_ok());
        assert!(validate_scopes(&["insight:delete".to_string()]).is_err());
        assert!(validate_scopes(&[]).is_err());
    }

    #[test]
    fn sessions_only_change_things_from_the_same_origin() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("warren.example:8000"));
        assert!(same_origin(&headers).is_ok(), "no browser headers: a script");
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://warren.example:8000"));
        assert!(same_origin(&headers).is_ok());
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(same_origin(&headers).is_err(), "a sibling subdomain");
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://blog.example"));
        assert!(same_origin(&headers).is_err());
    }

    #[test]
    fn the_cookie_is_secure_when_configured_or_a_trusted_proxy_saw_https() {
        let mut headers = HeaderMap::new();
        let direct = AuthConfig::default();
        let proxied = AuthConfig { client_address_header: Some("x-forwarded-for".into()), ..direct.clone() };
        let forced = AuthConfig { secure_cookie: true, ..direct.clone() };
        assert!(!secure_cookie(&direct, &headers) && !secure_cookie(&proxied, &headers));
        assert!(secure_cookie(&forced, &headers));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS, http"));
        assert!(secure_cookie(&proxied, &headers), "the outermost hop was HTTPS");
        assert!(!secure_cookie(&direct, &headers), "no trusted proxy: the header is ignored");
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        assert!(!secure_cookie(&proxied, &headers));
        let cookie = session_cookie_header(Some("abc"), 60, true);
        assert!(cookie.to_str().is_ok_and(|c| c.ends_with("; Secure")), "{cookie:?}");
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; warren_session=abc; b=2"));
        assert_eq!(session_cookie(&headers), Some("abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("warren_session="));
        assert_eq!(session_cookie(&headers), None);
    }
}
