//! Sign-up and log in, users, organizations and their members, projects,
//! personal API keys and the audit log.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use warren_meta::accounts::{
    validate_name, NewApiKey, NewProject, NewUser, Organization, ProjectUpdate, Role, User,
};
use warren_meta::audit::AuditFilter;
use warren_meta::Project;

use super::audit::AuditFacts;
use super::auth::{
    secure_cookie, session_cookie, session_cookie_header, validate_scopes, Access, Caller, Credential,
};
use crate::{ApiError, AppState};

/// Parses a JSON body into `T`, refusing with the parser's words.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::InvalidRequest(format!("body: {e}")))
}

/// The longest email taken (the longest address SMTP can carry). Checked
/// before an email becomes a rate-limit key, an audit actor or a lookup,
/// so a caller's text cannot make those large.
const MAX_EMAIL_BYTES: usize = 254;

/// The email as accounts are keyed on it (trimmed, lower case), refused
/// when too long to be one.
fn bounded_email(email: &str) -> Result<String, ApiError> {
    let too_long = ApiError::EmailTooLong { max: MAX_EMAIL_BYTES };
    if email.len() > MAX_EMAIL_BYTES.saturating_mul(2) {
        return Err(too_long);
    }
    let email = email.trim().to_lowercase();
    if email.len() > MAX_EMAIL_BYTES {
        return Err(too_long);
    }
    Ok(email)
}

fn id(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| ApiError::NotFound)
}

/// A project as the API shows it.
pub(crate) fn project_json(project: &Project) -> Value {
    json!({
        "id": project.id,
        "organization": project.organization_id,
        "name": project.name,
        "api_token": project.api_token,
        "timezone": project.timezone,
        "week_start_day": project.week_start_day,
        "test_account_filters": serde_json::from_str::<Value>(&project.test_account_filters).unwrap_or(json!([])),
        "internal": project.internal,
        "session_recording_opt_in": project.session_recording_opt_in,
    })
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct SignupRequest {
    email: String,
    password: String,
    /// Defaults to the part of the email before `@`.
    name: Option<String>,
    organization_name: Option<String>,
    project_name: Option<String>,
    /// IANA time zone of the first project.
    timezone: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct PasswordRequest {
    current_password: String,
    new_password: String,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct NameRequest {
    name: String,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct MemberRequest {
    email: String,
    /// owner, admin or member.
    role: Option<String>,
    /// For an email without an account: the account is created with this
    /// password, which the admin hands over. Without it such an email is
    /// refused.
    password: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct RoleRequest {
    role: String,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ProjectRequest {
    name: String,
    timezone: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ProjectUpdateRequest {
    name: Option<String>,
    timezone: Option<String>,
    /// 0: Sunday, 1: Monday.
    week_start_day: Option<i32>,
    /// PostHog property filters applied by `filterTestAccounts`.
    #[schema(value_type = Option<Vec<Object>>)]
    test_account_filters: Option<Vec<Value>>,
    /// Whether posthog-js records sessions of the project.
    session_recording_opt_in: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ApiKeyRequest {
    label: String,
    /// `"*"` or `<resource>:read|write`; all when unset.
    scopes: Option<Vec<String>>,
    /// The organization it acts for; the caller's first when unset.
    organization_id: Option<i64>,
    /// Projects it may touch; all of the organization's when empty.
    project_ids: Option<Vec<i64>>,
}

fn session_response(state: &AppState, headers: &HeaderMap, token: &str, body: Value) -> Response {
    let max_age = state.auth.session_hours.saturating_mul(3600);
    let secure = secure_cookie(&state.auth, headers);
    let mut response = (StatusCode::OK, Json(body)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie_header(Some(token), max_age, secure));
    response
}

async fn start_session(state: &AppState, user: &User) -> Result<String, ApiError> {
    let now = chrono::Utc::now().timestamp_micros();
    let ttl = i64::try_from(state.auth.session_hours.saturating_mul(3_600_000_000)).unwrap_or(i64::MAX);
    Ok(state.meta.create_login_session(user.id, now, ttl).await?)
}

async fn me_json(state: &AppState, user: &User) -> Result<Value, ApiError> {
    let memberships = state.meta.memberships(user.id).await?;
    let organizations: Vec<Value> = memberships
        .iter()
        .map(|m| json!({"id": m.organization.id, "name": m.organization.name, "role": m.role}))
        .collect();
    Ok(json!({"id": user.id, "email": user.email, "name": user.name, "organizations": organizations}))
}

/// The client's address, as the audit middleware found it.
fn source_of(facts: &Mutex<AuditFacts>) -> String {
    facts.lock().map(|facts| facts.source.clone()).unwrap_or_default()
}

/// Sign-up makes the deployment's first organization; after that it is
/// closed unless `[auth] signup` opens it, and admins add people instead
/// (a stranger reaching the server gets no organization of their own).
pub(super) async fn signup(
    State(state): State<AppState>,
    Extension(facts): Extension<Arc<Mutex<AuditFacts>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !state.auth.signup && state.meta.any_organization().await? {
        return Err(ApiError::SignupClosed);
    }
    // Each sign-up hashes a password: limited per address as log ins are.
    if let Err(retry_after_secs) = state.login_limiter.attempt(&[&format!("signup:{}", source_of(&facts))]) {
        return Err(ApiError::RateLimited { retry_after_secs });
    }
    let request: SignupRequest = parse(&body)?;
    bounded_email(&request.email)?;
    let name = request
        .name
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| request.email.split('@').next().unwrap_or_default().to_string());
    let organization_name = request.organization_name.unwrap_or_else(|| format!("{name}'s organization"));
    let project_name = request.project_name.unwrap_or_else(|| "Default project".into());
    // Every name is checked before anything is created, so a refused
    // sign-up leaves no half-made account behind.
    validate_name("name", &name)?;
    validate_name("organization_name", &organization_name)?;
    validate_name("project_name", &project_name)?;
    if let Some(timezone) = &request.timezone {
        if timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(ApiError::InvalidRequest(format!("{timezone:?} is not an IANA time zone")));
        }
    }
    let user =
        state.meta.create_user(NewUser { email: request.email, name, password: request.password }).await?;
    let organization = state.meta.create_organization(&organization_name, user.id).await?;
    let project = state
        .meta
        .create_project(NewProject {
            organization_id: organization.id,
            name: project_name,
            timezone: request.timezone,
        })
        .await?;
    if let Ok(mut facts) = facts.lock() {
        facts.identify_user(&user, "password");
        facts.organization_id = Some(organization.id);
        facts.project_id = Some(project.id);
    }
    let token = start_session(&state, &user).await?;
    let mut body = me_json(&state, &user).await?;
    body["project"] = project_json(&project);
    Ok(session_response(&state, &headers, &token, body))
}

pub(super) async fn login(
    State(state): State<AppState>,
    Extension(facts): Extension<Arc<Mutex<AuditFacts>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: LoginRequest = parse(&body)?;
    let email = bounded_email(&request.email)?;
    let limited =
        state.login_limiter.attempt(&[&format!("ip:{}", source_of(&facts)), &format!("email:{email}")]);
    // Failures name the claimed email and, when it has an account, that
    // account's first organization, so its admins see attempts on it.
    let known = state.meta.user_by_email(&email).await?;
    if let Ok(mut facts) = facts.lock() {
        facts.actor = email.clone();
        facts.credential = "password";
        if let Some(user) = &known {
            facts.user_id = Some(user.id);
        }
    }
    if let Some(user) = &known {
        let first = state.meta.memberships(user.id).await?.first().map(|m| m.organization.id);
        if let Ok(mut facts) = facts.lock() {
            facts.organization_id = first;
        }
    }
    if let Err(retry_after_secs) = limited {
        return Err(ApiError::RateLimited { retry_after_secs });
    }
    let Some(user) = state.meta.verify_login(&email, &request.password).await? else {
        if let Ok(mut facts) = facts.lock() {
            facts.action = Some("login.failed");
        }
        return Err(ApiError::InvalidCredentials);
    };
    let token = start_session(&state, &user).await?;
    let body = me_json(&state, &user).await?;
    Ok(session_response(&state, &headers, &token, body))
}

pub(super) async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.session_user()?;
    if let Some(token) = session_cookie(&headers) {
        state.meta.delete_login_session(token).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let secure = secure_cookie(&state.auth, &headers);
    response.headers_mut().insert(header::SET_COOKIE, session_cookie_header(None, 0, secure));
    Ok(response)
}

/// Changes the signed-in user's password: every session ends, and this
/// one is replaced by a new one.
pub(super) async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = caller.session_user()?.clone();
    let request: PasswordRequest = parse(&body)?;
    if state.meta.verify_login(&user.email, &request.current_password).await?.is_none() {
        return Err(ApiError::InvalidCredentials);
    }
    state.meta.set_password(user.id, &request.new_password).await?;
    let token = start_session(&state, &user).await?;
    let body = me_json(&state, &user).await?;
    Ok(session_response(&state, &headers, &token, body))
}

pub(super) async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let user = match &caller.credential {
        Credential::Session(user) => user.clone(),
        Credential::ApiKey(key) => match key.user_id {
            Some(id) => {
                caller.role_in(&state, key.organization_id).await?;
                state.meta.user(id).await?.ok_or(ApiError::InvalidApiKey)?
            }
            None => {
                return Ok(Json(
                    json!({"id": null, "email": null, "name": "bootstrap key", "organizations": [{"id": key.organization_id, "role": "owner"}]}),
                ))
            }
        },
    };
    Ok(Json(me_json(&state, &user).await?))
}

pub(super) async fn organizations(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let organizations: Vec<Value> = match &caller.credential {
        Credential::Session(user) => state
            .meta
            .memberships(user.id)
            .await?
            .into_iter()
            .map(|m| organization_json(&m.organization, m.role))
            .collect(),
        Credential::ApiKey(key) => {
            let role = caller.role_in(&state, key.organization_id).await?;
            let organization =
                state.meta.organization(key.organization_id).await?.ok_or(ApiError::NotFound)?;
            vec![organization_json(&organization, role)]
        }
    };
    Ok(Json(paginated(organizations)))
}

/// An organization as the API shows it, with the caller's role in it.
fn organization_json(organization: &Organization, role: Role) -> Value {
    json!({"id": organization.id, "name": organization.name, "created_at": organization.created_at, "membership_level": role})
}

/// PostHog's list shape.
pub(crate) fn paginated(results: Vec<Value>) -> Value {
    json!({"count": results.len(), "next": null, "previous": null, "results": results})
}

pub(super) async fn create_organization(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let user = caller.session_user()?;
    let request: NameRequest = parse(&body)?;
    let organization = state.meta.create_organization(&request.name, user.id).await?;
    caller.note_resource(organization.id);
    Ok((StatusCode::CREATED, Json(organization_json(&organization, Role::Owner))))
}

pub(super) async fn organization(
    State(state): State<AppState>,
    caller: Caller,
    Path(organization_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let organization_id = id(&organization_id)?;
    let role = caller.organization(&state, organization_id, Access::Read("organization")).await?;
    let organization = state.meta.organization(organization_id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(organization_json(&organization, role)))
}

pub(super) async fn members(
    State(state): State<AppState>,
    caller: Caller,
    Path(organization_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let organization_id = id(&organization_id)?;
    caller.organization(&state, organization_id, Access::Read("organization")).await?;
    let members = state.meta.members(organization_id).await?;
    Ok(Json(paginated(members.into_iter().map(|m| json!({"user": m.user, "level": m.role})).collect())))
}

/// The caller's role, refusing anyone below admin and keys without the
/// scope `access` or limited to some projects.
async fn require_admin(
    state: &AppState,
    caller: &Caller,
    organization_id: i64,
    access: Access,
) -> Result<Role, ApiError> {
    let role = caller.organization(state, organization_id, access).await?;
    caller.check_organization_wide()?;
    if role < Role::Admin {
        return Err(ApiError::PermissionDenied("only organization admins and owners may do this".into()));
    }
    Ok(role)
}

fn parse_role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text).map_err(ApiError::from)
}

/// Refuses role changes that would let an admin make or change owners.
/// (The store itself refuses, atomically, to leave an organization without
/// an owner.)
async fn check_role_change(
    state: &AppState,
    organization_id: i64,
    acting: Role,
    user_id: i64,
    new: Option<Role>,
) -> Result<(), ApiError> {
    if new == Some(Role::Owner) && acting < Role::Owner {
        return Err(ApiError::PermissionDenied("only owners may make owners".into()));
    }
    let current = state.meta.role(organization_id, user_id).await?;
    if current == Some(Role::Owner) && acting < Role::Owner {
        return Err(ApiError::PermissionDenied("only owners may change an owner".into()));
    }
    Ok(())
}

pub(super) async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(organization_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.session_user()?;
    let organization_id = id(&organization_id)?;
    let acting = require_admin(&state, &caller, organization_id, Access::Write("organization")).await?;
    let request: MemberRequest = parse(&body)?;
    bounded_email(&request.email)?;
    let role = parse_role(request.role.as_deref().unwrap_or("member"))?;
    let user = match (state.meta.user_by_email(&request.email).await?, request.password) {
        (Some(user), _) => user,
        (None, Some(password)) => {
            let name = request
                .name
                .unwrap_or_else(|| request.email.split('@').next().unwrap_or_default().to_string());
            validate_name("name", &name)?;
            state.meta.create_user(NewUser { email: request.email.clone(), name, password }).await?
        }
        (None, None) => {
            return Err(ApiError::InvalidRequest(format!(
                "no user has the email {:?}: give a `password` to create the account",
                request.email
            )))
        }
    };
    check_role_change(&state, organization_id, acting, user.id, Some(role)).await?;
    state.meta.set_role(organization_id, user.id, Some(role)).await?;
    caller.note_resource(user.id);
    Ok((StatusCode::CREATED, Json(json!({"user": user, "level": role}))))
}

pub(super) async fn update_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((organization_id, user_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.session_user()?;
    let (organization_id, user_id) = (id(&organization_id)?, id(&user_id)?);
    let acting = require_admin(&state, &caller, organization_id, Access::Write("organization")).await?;
    caller.note_resource(user_id);
    let request: RoleRequest = parse(&body)?;
    let role = parse_role(&request.role)?;
    state.meta.role(organization_id, user_id).await?.ok_or(ApiError::NotFound)?;
    check_role_change(&state, organization_id, acting, user_id, Some(role)).await?;
    state.meta.set_role(organization_id, user_id, Some(role)).await?;
    let user = state.meta.user(user_id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(json!({"user": user, "level": role})))
}

pub(super) async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((organization_id, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let me = caller.session_user()?.id;
    let (organization_id, user_id) = (id(&organization_id)?, id(&user_id)?);
    caller.note_resource(user_id);
    let acting = if me == user_id {
        caller.role_in(&state, organization_id).await?
    } else {
        require_admin(&state, &caller, organization_id, Access::Write("organization")).await?
    };
    state.meta.role(organization_id, user_id).await?.ok_or(ApiError::NotFound)?;
    // Leaving oneself is allowed at any role, but not as the last owner.
    let acting = if me == user_id { acting.max(Role::Owner) } else { acting };
    check_role_change(&state, organization_id, acting, user_id, None).await?;
    state.meta.set_role(organization_id, user_id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn projects(
    State(state): State<AppState>,
    caller: Caller,
    Path(organization_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let organization_id = id(&organization_id)?;
    caller.organization(&state, organization_id, Access::Read("project")).await?;
    let projects = state.meta.projects(organization_id).await?;
    let visible = projects.iter().filter(|project| match &caller.credential {
        Credential::ApiKey(key) => key.project_ids.is_empty() || key.project_ids.contains(&project.id),
        Credential::Session(_) => true,
    });
    Ok(Json(paginated(visible.map(project_json).collect())))
}

pub(super) async fn create_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(organization_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let organization_id = id(&organization_id)?;
    require_admin(&state, &caller, organization_id, Access::Write("project")).await?;
    let request: ProjectRequest = parse(&body)?;
    let project = state
        .meta
        .create_project(NewProject { organization_id, name: request.name, timezone: request.timezone })
        .await?;
    caller.note_resource(project.id);
    Ok((StatusCode::CREATED, Json(project_json(&project))))
}

pub(super) async fn project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = caller.project(&state, &project_id, Access::Read("project")).await?;
    Ok(Json(project_json(&project)))
}

pub(super) async fn update_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(project_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let project = caller.project(&state, &project_id, Access::Write("project")).await?;
    let role = caller.role_in(&state, project.organization_id).await?;
    if role < Role::Admin {
        return Err(ApiError::PermissionDenied(
            "only organization admins and owners may change a project".into(),
        ));
    }
    let request: ProjectUpdateRequest = parse(&body)?;
    let test_account_filters = match request.test_account_filters {
        Some(filters) => {
            let filters = Value::Array(filters);
            // Only filters the query engine can apply are kept.
            serde_json::from_value::<Vec<warren_query::model::PropertyFilter>>(filters.clone())
                .map_err(|e| ApiError::InvalidRequest(format!("test_account_filters: {e}")))?;
            Some(filters.to_string())
        }
        None => None,
    };
    let update = ProjectUpdate {
        name: request.name,
        timezone: request.timezone,
        week_start_day: request.week_start_day,
        test_account_filters,
        session_recording_opt_in: request.session_recording_opt_in,
    };
    let project = state.meta.update_project(project.id, update).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(project_json(&project)))
}

fn key_json(key: &warren_meta::accounts::ApiKey) -> Value {
    json!({
        "id": key.id,
        "label": key.label,
        "mask_value": key.mask,
        "scopes": key.scopes,
        "scoped_organizations": [key.organization_id],
        "scoped_teams": key.project_ids,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
    })
}

pub(super) async fn api_keys(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let user = caller.session_user()?;
    let mut keys = Vec::new();
    for membership in state.meta.memberships(user.id).await? {
        let mine = state
            .meta
            .api_keys(membership.organization.id)
            .await?
            .into_iter()
            .filter(|key| key.user_id == Some(user.id));
        keys.extend(mine.map(|key| key_json(&key)));
    }
    Ok(Json(paginated(keys)))
}

pub(super) async fn create_api_key(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let user = caller.session_user()?.clone();
    let request: ApiKeyRequest = parse(&body)?;
    let scopes = request.scopes.unwrap_or_else(|| vec!["*".into()]);
    validate_scopes(&scopes)?;
    let organization_id = match request.organization_id {
        Some(id) => id,
        None => state
            .meta
            .memberships(user.id)
            .await?
            .first()
            .map(|m| m.organization.id)
            .ok_or_else(|| ApiError::InvalidRequest("you belong to no organization".into()))?,
    };
    caller.role_in(&state, organization_id).await?;
    let project_ids = request.project_ids.unwrap_or_default();
    let projects = state.meta.projects(organization_id).await?;
    if let Some(unknown) = project_ids.iter().find(|id| !projects.iter().any(|p| p.id == **id)) {
        return Err(ApiError::InvalidRequest(format!(
            "project {unknown} is not in organization {organization_id}"
        )));
    }
    let created = state
        .meta
        .create_api_key(NewApiKey {
            organization_id,
            user_id: Some(user.id),
            label: request.label,
            scopes,
            project_ids,
        })
        .await?;
    caller.note_resource(created.key.id);
    let mut body = key_json(&created.key);
    body["value"] = Value::String(created.secret);
    Ok((StatusCode::CREATED, Json(body)))
}

pub(super) async fn revoke_api_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = caller.session_user()?.clone();
    let key_id = id(&key_id)?;
    caller.note_resource(key_id);
    for membership in state.meta.memberships(user.id).await? {
        let keys = state.meta.api_keys(membership.organization.id).await?;
        let Some(key) = keys.iter().find(|key| key.id == key_id) else { continue };
        // Admins may revoke any key of their organization (a leaked one of
        // a colleague's); members only their own.
        if key.user_id != Some(user.id) && membership.role < Role::Admin {
            return Err(ApiError::NotFound);
        }
        state.meta.revoke_api_key(membership.organization.id, key_id).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    Err(ApiError::NotFound)
}

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    user_id: Option<i64>,
    action: Option<String>,
    outcome: Option<String>,
    /// RFC 3339 or microseconds since the epoch.
    since: Option<String>,
    until: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

fn time_us(text: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    if let Ok(us) = text.parse::<i64>() {
        return Ok(Some(us));
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| Some(t.timestamp_micros()))
        .map_err(|e| ApiError::InvalidRequest(format!("{text:?} is not an RFC 3339 time: {e}")))
}

pub(super) async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    Path(organization_id): Path<String>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let organization_id = id(&organization_id)?;
    let role = caller.organization(&state, organization_id, Access::Read("organization")).await?;
    caller.check_organization_wide()?;
    if role < Role::Admin {
        return Err(ApiError::PermissionDenied(
            "only organization admins and owners may read the audit log".into(),
        ));
    }
    let filter = AuditFilter {
        user_id: query.user_id,
        action: query.action,
        outcome: query.outcome,
        since_us: time_us(query.since.as_deref())?,
        until_us: time_us(query.until.as_deref())?,
        before_id: query.before,
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
    };
    let entries = state.meta.audit_log(organization_id, &filter).await?;
    let next = (entries.len() == filter.limit as usize).then(|| entries.last().map(|e| e.id)).flatten();
    Ok(Json(json!({"results": entries, "next_before": next})))
}
