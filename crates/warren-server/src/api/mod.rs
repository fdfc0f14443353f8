//! The REST API under `/api/`, and the feature-flag endpoints the SDKs call.
//!
//! [`endpoints`] is the one table of routes: the router, the OpenAPI
//! document (`/api/schema/`), the audit log's action names and the
//! authorization sweep in the tests all come from it, so a route cannot be
//! served without being described. Every route but sign-up, log in and the
//! schema needs a caller ([`auth::Caller`]); anything of another
//! organization answers 404, the same as what does not exist.

mod accounts;
mod audit;
mod auth;
mod definitions;
mod entities;
mod flags;
mod instance;
mod openapi;
mod persons;
mod query;
mod rate_limit;
mod recordings;
mod remote_config;

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use warren_meta::entities::EntityKind;

use crate::AppState;

pub(crate) use auth::session_cookie;
pub(crate) use rate_limit::LoginLimiter;

/// Who may call a route, for the OpenAPI document and the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    /// Anyone: sign-up, log in, the schema.
    Public,
    /// A signed-in user or a personal API key.
    Caller,
    /// A signed-in user only (keys get 403).
    Session,
    /// The SDKs, with a project token.
    ProjectToken,
}

/// One route of the API.
pub(crate) struct Endpoint {
    pub method: Method,
    /// axum's pattern, without the trailing slash (both are served).
    pub path: String,
    /// The audit log's name for what it does, e.g. `feature_flag.create`.
    pub action: String,
    pub summary: String,
    pub guard: Guard,
    /// Component name of the JSON body it takes, if any.
    pub body: Option<&'static str>,
    /// Whether the route changes state (a read-only key may not call it).
    pub writes: bool,
    /// The resource a key's scope must name, for scoped routes.
    pub resource: Option<&'static str>,
    /// A read the dashboard repeats every few seconds: its successful
    /// answers are not audited (refusals still are).
    pub polled: bool,
    handler: MethodRouter<AppState>,
}

struct Spec {
    method: Method,
    path: String,
    action: String,
    summary: String,
    guard: Guard,
    body: Option<&'static str>,
    resource: Option<&'static str>,
    read_only: bool,
    polled: bool,
}

fn spec(
    method: Method,
    path: impl Into<String>,
    action: impl Into<String>,
    summary: impl Into<String>,
) -> Spec {
    Spec {
        method,
        path: path.into(),
        action: action.into(),
        summary: summary.into(),
        guard: Guard::Caller,
        body: None,
        resource: None,
        read_only: false,
        polled: false,
    }
}

impl Spec {
    fn guard(mut self, guard: Guard) -> Self {
        self.guard = guard;
        self
    }

    fn body(mut self, component: &'static str) -> Self {
        self.body = Some(component);
        self
    }

    fn resource(mut self, resource: &'static str) -> Self {
        self.resource = Some(resource);
        self
    }

    /// A POST that only reads (a query).
    fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// A read the dashboard repeats; see [`Endpoint::polled`].
    fn polled(mut self) -> Self {
        self.polled = true;
        self
    }

    fn to<H, T>(self, handler: H) -> Endpoint
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = match self.method {
            Method::GET => MethodFilter::GET,
            Method::POST => MethodFilter::POST,
            Method::PATCH => MethodFilter::PATCH,
            Method::PUT => MethodFilter::PUT,
            _ => MethodFilter::DELETE,
        };
        let writes = self.method != Method::GET
            && !self.read_only
            && self.guard != Guard::ProjectToken
            && self.guard != Guard::Public;
        Endpoint {
            method: self.method,
            path: self.path,
            action: self.action,
            summary: self.summary,
            guard: self.guard,
            body: self.body,
            writes,
            resource: self.resource,
            polled: self.polled,
            handler: if self.guard == Guard::ProjectToken {
                on(filter, handler).layer(crate::sdk_cors())
            } else {
                on(filter, handler)
            },
        }
    }
}

/// An instant (µs since the epoch) as the API writes times: RFC 3339, or
/// null when out of range.
pub(crate) fn time_json(us: i64) -> serde_json::Value {
    chrono::DateTime::from_timestamp_micros(us)
        .map_or(serde_json::Value::Null, |t| serde_json::Value::String(t.to_rfc3339()))
}

/// Collection path segment of each entity kind, as PostHog names them.
pub(crate) fn collection(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Action => "actions",
        EntityKind::Cohort => "cohorts",
        EntityKind::Insight => "insights",
        EntityKind::Dashboard => "dashboards",
        EntityKind::Annotation => "annotations",
        EntityKind::FeatureFlag => "feature_flags",
        EntityKind::Experiment => "experiments",
    }
}

/// Every route, once.
pub(crate) fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let mut all = vec![
        spec(M::GET, "/api/schema", "schema.read", "This OpenAPI document")
            .guard(Guard::Public)
            .to(openapi::serve),
        spec(
            M::POST,
            "/api/signup",
            "signup",
            "Create a user, an organization and its first project; signs in (see `[auth] signup`)",
        )
        .guard(Guard::Public)
        .body("SignupRequest")
        .to(accounts::signup),
        spec(M::POST, "/api/login", "login", "Sign in with email and password (sets the session cookie)")
            .guard(Guard::Public)
            .body("LoginRequest")
            .to(accounts::login),
        spec(M::POST, "/api/logout", "logout", "End the session").guard(Guard::Session).to(accounts::logout),
        spec(M::GET, "/api/users/@me", "user.read", "The signed-in user and their organizations")
            .to(accounts::me),
        spec(
            M::POST,
            "/api/users/@me/password",
            "user.password",
            "Change one's password; other sessions end",
        )
        .guard(Guard::Session)
        .body("PasswordRequest")
        .to(accounts::change_password),
        spec(M::GET, "/api/organizations", "organization.list", "The caller's organizations")
            .to(accounts::organizations),
        spec(
            M::POST,
            "/api/organizations",
            "organization.create",
            "Create an organization owned by the caller",
        )
        .guard(Guard::Session)
        .body("NameRequest")
        .to(accounts::create_organization),
        spec(M::GET, "/api/organizations/{organization_id}", "organization.read", "One organization")
            .resource("organization")
            .to(accounts::organization),
        spec(
            M::GET,
            "/api/organizations/{organization_id}/members",
            "member.list",
            "Members and their roles",
        )
        .resource("organization")
        .to(accounts::members),
        spec(
            M::POST,
            "/api/organizations/{organization_id}/members",
            "member.add",
            "Add a user by email (admins)",
        )
        .guard(Guard::Session)
        .body("MemberRequest")
        .to(accounts::add_member),
        spec(
            M::PATCH,
            "/api/organizations/{organization_id}/members/{user_id}",
            "member.update",
            "Change a role (admins)",
        )
        .guard(Guard::Session)
        .body("RoleRequest")
        .to(accounts::update_member),
        spec(
            M::DELETE,
            "/api/organizations/{organization_id}/members/{user_id}",
            "member.remove",
            "Remove a member (admins, or oneself)",
        )
        .guard(Guard::Session)
        .to(accounts::remove_member),
        spec(
            M::GET,
            "/api/organizations/{organization_id}/projects",
            "project.list",
            "The organization's projects",
        )
        .resource("project")
        .to(accounts::projects),
        spec(
            M::POST,
            "/api/organizations/{organization_id}/projects",
            "project.create",
            "Create a project (admins)",
        )
        .resource("project")
        .body("ProjectRequest")
        .to(accounts::create_project),
        spec(
            M::GET,
            "/api/organizations/{organization_id}/audit_log",
            "audit_log.list",
            "The audit log, newest first (admins)",
        )
        .resource("organization")
        .to(accounts::audit_log),
        spec(M::GET, "/api/projects/{project_id}", "project.read", "One project, with its capture token")
            .resource("project")
            .to(accounts::project),
        spec(
            M::PATCH,
            "/api/projects/{project_id}",
            "project.update",
            "Change a project's name or settings (admins)",
        )
        .resource("project")
        .body("ProjectUpdateRequest")
        .to(accounts::update_project),
        spec(M::GET, "/api/personal_api_keys", "personal_api_key.list", "The signed-in user's keys")
            .guard(Guard::Session)
            .to(accounts::api_keys),
        spec(
            M::POST,
            "/api/personal_api_keys",
            "personal_api_key.create",
            "Create a key; its value is shown once",
        )
        .guard(Guard::Session)
        .body("ApiKeyRequest")
        .to(accounts::create_api_key),
        spec(M::DELETE, "/api/personal_api_keys/{key_id}", "personal_api_key.revoke", "Revoke a key")
            .guard(Guard::Session)
            .to(accounts::revoke_api_key),
        spec(M::POST, "/api/projects/{project_id}/query", "query.run", "Run an insight or SQL query")
            .resource("query")
            .read_only()
            .body("QueryRequest")
            .to(query::run),
        spec(
            M::GET,
            "/api/projects/{project_id}/persons",
            "person.list",
            "Persons, newest first; `search` finds them",
        )
        .resource("person")
        .to(persons::list),
        spec(
            M::GET,
            "/api/projects/{project_id}/persons/{uuid}",
            "person.read",
            "One person and their distinct ids",
        )
        .resource("person")
        .to(persons::one),
        spec(
            M::GET,
            "/api/projects/{project_id}/session_recordings",
            "session_recording.list",
            "Recorded sessions, newest first; `person_id` keeps one person's",
        )
        .resource("session_recording")
        .to(recordings::list),
        spec(
            M::GET,
            "/api/projects/{project_id}/session_recordings/{session_id}",
            "session_recording.read",
            "One recorded session",
        )
        .resource("session_recording")
        .to(recordings::one),
        spec(
            M::GET,
            "/api/projects/{project_id}/session_recordings/{session_id}/snapshots",
            "session_recording.snapshots",
            "A recorded session's rrweb events, as JSON lines `{\"window_id\", \"event\"}`",
        )
        .resource("session_recording")
        .to(recordings::snapshots),
        spec(
            M::DELETE,
            "/api/projects/{project_id}/session_recordings/{session_id}",
            "session_recording.delete",
            "Delete a recorded session",
        )
        .resource("session_recording")
        .to(recordings::delete),
        spec(
            M::GET,
            "/api/projects/{project_id}/ingestion_warnings",
            "ingestion_warning.list",
            "Problems ingest found in the project's events, newest first",
        )
        .resource("project")
        .to(persons::ingestion_warnings),
        spec(
            M::GET,
            "/api/instance/health",
            "instance.health",
            "Warren's live health: recent samples and consumer lag (the deployment's admins)",
        )
        .resource("instance")
        .polled()
        .to(instance::health),
        spec(
            M::GET,
            "/api/instance/system",
            "instance.system",
            "Version, configuration, migrations, background jobs and disk (the deployment's admins)",
        )
        .resource("instance")
        .to(instance::system),
        spec(
            M::GET,
            "/api/projects/{project_id}/event_definitions",
            "event_definition.list",
            "Event names ingest has seen",
        )
        .resource("event_definition")
        .to(definitions::events),
        spec(
            M::GET,
            "/api/projects/{project_id}/property_definitions",
            "property_definition.list",
            "Property names and types ingest has seen",
        )
        .resource("property_definition")
        .to(definitions::properties),
        spec(
            M::PATCH,
            "/api/projects/{project_id}/cohorts/{id}/add_persons_to_static_cohort",
            "cohort.add_persons",
            "Add persons (by uuid or distinct id) to a static cohort",
        )
        .resource("cohort")
        .body("StaticCohortPersons")
        .to(entities::add_persons_to_static_cohort),
        spec(
            M::GET,
            "/api/projects/{project_id}/cohorts/{id}/persons",
            "cohort.persons",
            "The persons in a cohort",
        )
        .resource("cohort")
        .to(entities::cohort_persons),
        spec(
            M::GET,
            "/api/projects/{project_id}/feature_flags/local_evaluation",
            "feature_flag.definitions",
            "Flag definitions for SDKs' local evaluation",
        )
        .resource("feature_flag")
        .to(flags::local_evaluation),
        spec(
            M::GET,
            "/api/feature_flag/local_evaluation",
            "feature_flag.definitions",
            "Flag definitions of the project of `token`, for SDKs' local evaluation",
        )
        .resource("feature_flag")
        .to(flags::definitions),
        spec(
            M::GET,
            "/flags/definitions",
            "feature_flag.definitions",
            "Flag definitions of the project of `token`, for SDKs' local evaluation",
        )
        .resource("feature_flag")
        .to(flags::definitions),
        spec(M::POST, "/flags", "flags.evaluate", "Evaluate flags for a distinct id (SDKs)")
            .guard(Guard::ProjectToken)
            .body("FlagsRequest")
            .to(flags::evaluate),
        spec(M::POST, "/decide", "flags.decide", "Evaluate flags, legacy answer (SDKs)")
            .guard(Guard::ProjectToken)
            .body("FlagsRequest")
            .to(flags::decide),
        spec(
            M::GET,
            "/array/{token}/config",
            "sdk.remote_config",
            "The remote configuration posthog-js loads first",
        )
        .guard(Guard::ProjectToken)
        .to(remote_config::config),
        spec(
            M::GET,
            "/array/{token}/config.js",
            "sdk.remote_config_js",
            "The remote configuration as the script posthog-js loads first",
        )
        .guard(Guard::ProjectToken)
        .to(remote_config::config_js),
    ];
    for kind in EntityKind::ALL {
        all.extend(entities::endpoints(kind));
    }
    all
}

/// What the audit log needs of each route: its action and whether it is
/// polled, by method and path.
static AUDITED: LazyLock<HashMap<(Method, String), (String, bool)>> = LazyLock::new(|| {
    endpoints()
        .into_iter()
        .map(|endpoint| ((endpoint.method, endpoint.path), (endpoint.action, endpoint.polled)))
        .collect()
});

/// The audit action of a request that reached `route`.
pub(crate) fn action_of(method: &Method, route: &str) -> String {
    let route = route.trim_end_matches('/');
    AUDITED
        .get(&(method.clone(), route.to_string()))
        .map(|(action, _)| action.clone())
        .unwrap_or_else(|| format!("{} {route}", method.as_str().to_lowercase()))
}

/// Whether `route` is a polled read (see [`Endpoint::polled`]).
pub(crate) fn is_polled(method: &Method, route: &str) -> bool {
    let route = route.trim_end_matches('/');
    AUDITED.get(&(method.clone(), route.to_string())).is_some_and(|(_, polled)| *polled)
}

pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for endpoint in endpoints() {
        router = router
            .route(&endpoint.path, endpoint.handler.clone())
            .route(&format!("{}/", endpoint.path), endpoint.handler);
    }
    router.layer(axum::middleware::from_fn_with_state(state.clone(), audit::record))
}
