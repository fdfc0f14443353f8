//! A deployment in a temp dir and clients that call its router in process.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::{json, Value};
use tower::ServiceExt;
use warren_core::config::{AuthConfig, CaptureConfig};
use warren_core::person::{DistinctIdAssignment, Person};
use warren_log::{SegmentLog, SegmentLogOptions};
use warren_meta::accounts::{NewUser, Role};
use warren_meta::{Accounts, IngestCommits, MetaSchema, Tenancy};
use warren_meta::{IngestCommit, Project, SqlMeta};
use warren_server::AppState;

/// The owner `warren serve` makes on a deployment's first start.
pub const OWNER_EMAIL: &str = "owner@warren.test";
pub const OWNER_PASSWORD: &str = "the owner's password";
/// The password of every account the tests create through the API.
pub const PASSWORD: &str = "a long password";

/// Answers larger than this are a bug in the test or the handler.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// How a deployment starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Setup {
    /// Whether strangers may sign up once an organization exists
    /// (`[auth] signup`).
    pub open_signup: bool,
    /// Leave the meta store empty, as before a first start, so the first
    /// sign-up makes the first organization.
    pub empty: bool,
}

/// One deployment: its router, its meta store, and what bootstrap made.
pub struct Deployment {
    router: Router,
    pub meta: Arc<SqlMeta>,
    /// Project 1 of the default organization (absent when `empty`).
    pub project: Option<Project>,
    /// Dropped last: the log and the SQLite files live in it.
    _dir: tempfile::TempDir,
}

impl Deployment {
    /// A deployment as `warren serve` leaves a fresh data dir: the default
    /// organization, project 1, its bootstrap key and an owner who can log
    /// in ([`OWNER_EMAIL`]); sign-up closed.
    pub async fn start() -> Self {
        Self::start_with(Setup::default()).await
    }

    pub async fn start_with(setup: Setup) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = SegmentLog::open(SegmentLogOptions::new(dir.path().join("log"))).expect("event log");
        let url = format!("sqlite://{}", dir.path().join("meta.db").display());
        let meta = Arc::new(SqlMeta::connect(&url).await.expect("meta store"));
        meta.migrate().await.expect("migrate");
        let project = if setup.empty { None } else { Some(bootstrap(meta.as_ref()).await) };
        // A recorder that is not installed: the handlers' metrics go
        // nowhere, and every test can build its own without clashing over
        // the process-wide one.
        let metrics = PrometheusBuilder::new().build_recorder().handle();
        let auth = AuthConfig { signup: setup.open_signup, ..AuthConfig::default() };
        let state =
            AppState::new(Arc::new(log), meta.clone(), CaptureConfig::default(), metrics).with_auth(auth);
        let router = warren_server::router(state, false, false);
        Self { router, meta, project, _dir: dir }
    }

    /// Project 1, made by bootstrap.
    pub fn project(&self) -> &Project {
        self.project.as_ref().expect("a bootstrapped deployment")
    }

    pub fn project_id(&self) -> i64 {
        self.project().id
    }

    pub fn organization_id(&self) -> i64 {
        self.project().organization_id
    }

    /// The capture token of project 1, which `/flags` takes.
    pub fn token(&self) -> String {
        self.project().api_token.clone()
    }

    pub fn anonymous(&self) -> Client {
        Client { router: self.router.clone(), credential: Credential::None }
    }

    pub fn with_key(&self, key: &str) -> Client {
        Client { router: self.router.clone(), credential: Credential::Key(key.to_string()) }
    }

    /// Logs in, refusing to go on unless it worked.
    pub async fn log_in(&self, email: &str, password: &str) -> Client {
        let body = json!({"email": email, "password": password});
        let answer = self.anonymous().send(Method::POST, "/api/login/", Some(body)).await;
        assert_eq!(answer.status, StatusCode::OK, "log in {email}: {}", answer.body);
        Client { router: self.router.clone(), credential: Credential::Cookie(answer.session_cookie()) }
    }

    /// The owner bootstrap made, signed in.
    pub async fn owner(&self) -> Client {
        self.log_in(OWNER_EMAIL, OWNER_PASSWORD).await
    }

    /// Signs `email` up with [`PASSWORD`]; returns the signed-in client and
    /// the answer (the user, their organization, its first project).
    pub async fn sign_up(&self, email: &str) -> (Client, Value) {
        let body =
            json!({"email": email, "password": PASSWORD, "organization_name": format!("{email}'s org")});
        let answer = self.anonymous().send(Method::POST, "/api/signup/", Some(body)).await;
        assert_eq!(answer.status, StatusCode::OK, "sign up {email}: {}", answer.body);
        let client =
            Client { router: self.router.clone(), credential: Credential::Cookie(answer.session_cookie()) };
        (client, answer.body)
    }

    /// Adds `email` to the default organization with `role`, as its owner
    /// would through the API, creating the account with [`PASSWORD`]; returns
    /// the user's id and the user signed in.
    pub async fn member(&self, email: &str, role: &str) -> (i64, Client) {
        let owner = self.owner().await;
        let added = owner
            .ok(
                Method::POST,
                &format!("/api/organizations/{}/members/", self.organization_id()),
                Some(json!({"email": email, "password": PASSWORD, "role": role})),
            )
            .await;
        let id = added["user"]["id"].as_i64().expect("the member's user id");
        (id, self.log_in(email, PASSWORD).await)
    }

    /// The id of the account with this email.
    pub async fn user_id(&self, email: &str) -> i64 {
        self.meta.user_by_email(email).await.expect("meta store").expect("an account").id
    }

    /// Stores a person of project 1 with these distinct ids and
    /// properties, as ingest would have.
    pub async fn person(&self, distinct_ids: &[&str], properties: Value) -> uuid::Uuid {
        let project_id = self.project_id();
        let person = Person {
            uuid: uuid::Uuid::now_v7(),
            team_id: project_id,
            properties: properties.as_object().cloned().expect("properties are an object"),
            created_at_us: 1_700_000_000_000_000,
            is_identified: true,
            version: 0,
            created_by_event: None,
        };
        let commit = IngestCommit {
            consumer: "ingest".into(),
            distinct_ids: distinct_ids
                .iter()
                .map(|id| DistinctIdAssignment {
                    team_id: project_id,
                    distinct_id: id.to_string(),
                    person_uuid: person.uuid,
                })
                .collect(),
            persons: vec![person.clone()],
            ..IngestCommit::default()
        };
        self.meta.commit_ingest(&commit).await.expect("store the person");
        person.uuid
    }
}

/// What `warren serve` does to a new meta store: bootstrap, then make the
/// dashboard's first owner.
async fn bootstrap(meta: &SqlMeta) -> Project {
    let made = meta.bootstrap(Default::default()).await.expect("bootstrap").expect("a new deployment");
    let owner = meta
        .create_user(NewUser {
            email: OWNER_EMAIL.into(),
            name: "owner".into(),
            password: OWNER_PASSWORD.into(),
        })
        .await
        .expect("owner");
    meta.set_role(made.project.organization_id, owner.id, Some(Role::Owner)).await.expect("owner role");
    made.project
}

#[derive(Clone)]
enum Credential {
    None,
    /// `warren_session=…`, as a browser sends it back.
    Cookie(String),
    /// A personal API key, sent as `Authorization: Bearer`.
    Key(String),
}

/// One caller of a deployment.
#[derive(Clone)]
pub struct Client {
    router: Router,
    credential: Credential,
}

/// A response, its body parsed as JSON (`null` when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `warren_session=…` pair the answer sets.
    pub fn session_cookie(&self) -> String {
        self.headers
            .get(header::SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .filter(|pair| pair.starts_with("warren_session=") && pair.len() > "warren_session=".len())
            .unwrap_or_else(|| panic!("no session cookie in {:?}", self.headers))
            .to_string()
    }

    /// The error code of a refusal.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

impl Client {
    /// The same caller with a personal API key instead of its session.
    pub fn with_key(&self, key: &str) -> Client {
        Client { router: self.router.clone(), credential: Credential::Key(key.to_string()) }
    }

    /// Sends `request` with this caller's credential.
    pub async fn request(&self, mut request: Request<Body>) -> Answer {
        let headers = request.headers_mut();
        match &self.credential {
            Credential::None => {}
            Credential::Cookie(cookie) => {
                headers.insert(header::COOKIE, cookie.parse().expect("cookie header"));
            }
            Credential::Key(key) => {
                headers.insert(header::AUTHORIZATION, format!("Bearer {key}").parse().expect("key header"));
            }
        }
        let response = self.router.clone().oneshot(request).await.expect("the router always answers");
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_ANSWER_BYTES).await.expect("the answer's body");
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// Sends `method path` with `body` as JSON.
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.request(json_request(method, path, body)).await
    }

    /// The JSON of a call that must succeed.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let answer = self.send(method.clone(), path, body).await;
        assert!(answer.status.is_success(), "{method} {path}: {} {}", answer.status, answer.body);
        answer.body
    }

    /// Asserts `method path` is refused with `status` and the error `code`;
    /// returns the refusal's body.
    pub async fn refused(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
        code: &str,
    ) -> Value {
        let answer = self.send(method.clone(), path, body).await;
        assert_eq!((answer.status, answer.code()), (status, code), "{method} {path}: {}", answer.body);
        answer.body
    }

    /// Creates a personal API key with `scopes` (this caller must be
    /// signed in); returns its secret.
    pub async fn new_key(&self, scopes: Value) -> String {
        self.new_key_with(json!({"label": "test", "scopes": scopes})).await
    }

    /// Creates a personal API key from the whole request body.
    pub async fn new_key_with(&self, request: Value) -> String {
        let created = self.ok(Method::POST, "/api/personal_api_keys/", Some(request)).await;
        created["value"].as_str().expect("the key's value").to_string()
    }
}

/// A request with a JSON body (or none).
pub fn json_request(method: Method, path: &str, body: Option<Value>) -> Request<Body> {
    let builder = Request::builder().method(method).uri(path).header(header::HOST, "warren.test");
    let request = match body {
        Some(body) => {
            builder.header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string()))
        }
        None => builder.body(Body::empty()),
    };
    request.expect("a valid request")
}
