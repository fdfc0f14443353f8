//! Accounts, access control, the audit log and the product entities, end
//! to end: a new user signs up and manages every entity with a personal API
//! key; every route of the OpenAPI document refuses missing, revoked,
//! foreign and read-only credentials; actions and cohorts work in queries.

use std::time::{Duration, Instant};

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::Method;
use serde_json::{json, Value};
use warren_testkit::{TestServer, API_KEY};

use crate::{http, BIN};

/// Sign-up stays open after the first organization (it is closed by
/// default), for tests that sign strangers up.
pub(crate) const OPEN_SIGNUP: (&str, &str) = ("WARREN_AUTH__SIGNUP", "true");

/// A client of one account: a session cookie, or a key.
#[derive(Clone)]
pub(crate) struct Client {
    base: String,
    cookie: Option<String>,
    key: Option<String>,
}

/// The `warren_session=…` pair a log-in or sign-up answer sets.
pub fn session_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_string()
}

impl Client {
    pub fn anonymous(server: &TestServer) -> Self {
        Self { base: server.url.clone(), cookie: None, key: None }
    }

    /// Signed in with a session cookie (`warren_session=…`).
    pub fn with_cookie(server: &TestServer, cookie: String) -> Self {
        Self { base: server.url.clone(), cookie: Some(cookie), key: None }
    }

    pub fn with_key(&self, key: &str) -> Self {
        Self { key: Some(key.to_string()), cookie: None, ..self.clone() }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = http().request(method, format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
        answer
    }
}

/// Signs up `email` and returns the signed-in client and the answer
/// (user, organizations, project with its token).
pub(crate) async fn sign_up(server: &TestServer, email: &str) -> (Client, Value) {
    let response = http()
        .post(format!("{}/api/signup/", server.url))
        .json(&json!({"email": email, "password": "a long password", "organization_name": format!("{email}'s org")}))
        .send()
        .await
        .expect("signup");
    assert_eq!(response.status().as_u16(), 200, "signup {email}");
    let cookie = session_cookie(&response);
    let body: Value = response.json().await.expect("signup body");
    (Client { base: server.url.clone(), cookie: Some(cookie), key: None }, body)
}

pub(crate) async fn new_key(session: &Client, scopes: Value) -> String {
    let key = session
        .ok(Method::POST, "/api/personal_api_keys/", Some(json!({"label": "test", "scopes": scopes})))
        .await;
    key["value"].as_str().expect("key value").to_string()
}

/// A valid body and a changed field for each kind's collection.
fn samples() -> Vec<(String, Value, Value)> {
    // Shared with the other API test binary: one body per kind, kept in one place.
    let samples: Vec<Value> = serde_json::from_str(include_str!("../../../../tests/api/entity_samples.json"))
        .expect("tests/api/entity_samples.json");
    samples
        .into_iter()
        .map(|sample| {
            let collection = sample["collection"].as_str().expect("collection").to_string();
            (collection, sample["body"].clone(), sample["change"].clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_signs_up_and_manages_every_entity() {
    signs_up_and_manages_every_entity(TestServer::start_with_env(BIN, &[OPEN_SIGNUP])).await;
}

/// The same on a PostgreSQL meta store: the whole API on the scale-out
/// dialect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_signs_up_and_manages_every_entity_on_postgresql() {
    // `shared` reports a missing PostgreSQL (and fails under CI) itself.
    let Some(postgres) = warren_testkit::services::PostgresServer::shared() else { return };
    let url = postgres.fresh_database();
    let env = [("WARREN_META_URL", url.as_str()), OPEN_SIGNUP];
    signs_up_and_manages_every_entity(TestServer::start_with_env(BIN, &env)).await;
}

async fn signs_up_and_manages_every_entity(server: TestServer) {
    let (session, signed_up) = sign_up(&server, "ada@example.com").await;
    let token = signed_up["project"]["api_token"].as_str().expect("token");
    assert!(token.starts_with("phc_"), "{signed_up}");
    let project = signed_up["project"]["id"].as_i64().expect("project id");
    let me = session.ok(Method::GET, "/api/users/@me/", None).await;
    assert_eq!(
        (me["email"].as_str(), me["organizations"][0]["role"].as_str()),
        (Some("ada@example.com"), Some("owner"))
    );
    let key = new_key(&session, json!(["*"])).await;
    assert!(key.starts_with("phx_"));
    let api = session.with_key(&key);
    assert_eq!(api.ok(Method::GET, &format!("/api/projects/{project}/"), None).await["api_token"], token);

    for (collection, body, change) in samples() {
        let base = format!("/api/projects/{project}/{collection}/");
        // Every kind but insights has required fields.
        let (status, refused) = api.call(Method::POST, &base, Some(json!({"name": 7}))).await;
        assert_eq!(
            (status, refused["code"].as_str()),
            (400, Some("invalid_request")),
            "{collection}: {refused}"
        );
        let created = api.ok(Method::POST, &base, Some(body.clone())).await;
        let id = created["id"].as_i64().unwrap_or_else(|| panic!("{collection}: {created}"));
        let item = format!("{base}{id}/");
        assert_eq!(api.ok(Method::GET, &item, None).await["id"], id);
        let changed = api.ok(Method::PATCH, &item, Some(change.clone())).await;
        for (field, value) in change.as_object().expect("object") {
            assert_eq!(&changed[field], value, "{collection}: {changed}");
        }
        for (field, value) in body.as_object().expect("object") {
            if !change.as_object().is_some_and(|c| c.contains_key(field)) {
                assert_eq!(&changed[field], value, "{collection}: PATCH keeps {field}");
            }
        }
        let listed = api.ok(Method::GET, &base, None).await;
        assert!(
            listed["results"].as_array().is_some_and(|r| r.iter().any(|e| e["id"] == id)),
            "{collection}: {listed}"
        );
        if collection != "feature_flags" {
            assert_eq!(api.call(Method::DELETE, &item, None).await.0, 204, "{collection}");
            assert_eq!(api.call(Method::GET, &item, None).await.0, 404, "{collection} deleted");
        }
    }
    // An experiment made its flag, with variants; flag keys are unique.
    let flags = api.ok(Method::GET, &format!("/api/projects/{project}/feature_flags/"), None).await;
    let made = flags["results"]
        .as_array()
        .expect("flags")
        .iter()
        .find(|f| f["key"] == "checkout-test")
        .cloned()
        .expect("experiment flag");
    assert_eq!(made["filters"]["multivariate"]["variants"].as_array().map(Vec::len), Some(2));
    let (status, body) = api
        .call(Method::POST, &format!("/api/projects/{project}/feature_flags/"), Some(samples()[5].1.clone()))
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")), "{body}");
    // Dashboards only take insights of their project.
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/projects/{project}/dashboards/"),
            Some(json!({"name": "x", "tiles": [{"insight": 999_999}]})),
        )
        .await;
    assert_eq!(status, 400);
    // A bad flag definition is refused with the reason.
    let bad = json!({"key": "split", "filters": {"groups": [{"rollout_percentage": 100}], "multivariate": {"variants": [{"key": "a", "rollout_percentage": 60}, {"key": "b", "rollout_percentage": 60}]}}});
    let (status, body) =
        api.call(Method::POST, &format!("/api/projects/{project}/feature_flags/"), Some(bad)).await;
    assert_eq!(status, 400, "{body}");

    // Logging out ends the session.
    assert_eq!(session.call(Method::POST, "/api/logout/", None).await.0, 204);
    assert_eq!(session.call(Method::GET, "/api/users/@me/", None).await.0, 401);
    let (status, body) = Client::anonymous(&server)
        .call(
            Method::POST,
            "/api/login/",
            Some(json!({"email": "ADA@example.com", "password": "a long password"})),
        )
        .await;
    assert_eq!((status, body["email"].as_str()), (200, Some("ada@example.com")), "{body}");
}

/// Path parameters filled with one account's ids.
fn fill(path: &str, project: i64, organization: i64) -> String {
    path.replace("{project_id}", &project.to_string())
        .replace("{organization_id}", &organization.to_string())
        .replace("{id}", "1")
        .replace("{user_id}", "1")
        .replace("{key_id}", "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_missing_revoked_foreign_and_read_only_credentials() {
    let server = TestServer::start_with_env(BIN, &[OPEN_SIGNUP]);
    let anonymous = Client::anonymous(&server);
    let schema = anonymous.ok(Method::GET, "/api/schema/", None).await;
    let (session, signed_up) = sign_up(&server, "owner@example.com").await;
    let project = signed_up["project"]["id"].as_i64().expect("project");
    let token = signed_up["project"]["api_token"].as_str().expect("token").to_string();
    let organization = signed_up["organizations"][0]["id"].as_i64().expect("organization");
    let full = new_key(&session, json!(["*"])).await;
    // Read access to every resource any route is scoped to.
    let scopes: std::collections::BTreeSet<String> = schema["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|operations| operations.as_object().expect("operations").values())
        .filter_map(|operation| operation["x-warren-scope"].as_str())
        .map(|scope| format!("{}:read", scope.split(':').next().unwrap_or_default()))
        .collect();
    let read_only = new_key(&session, json!(scopes)).await;
    let revoked = new_key(&session, json!(["*"])).await;
    let keys = session.ok(Method::GET, "/api/personal_api_keys/", None).await;
    let revoked_id =
        keys["results"].as_array().expect("keys").last().expect("key")["id"].as_i64().expect("id");
    assert_eq!(
        session.call(Method::DELETE, &format!("/api/personal_api_keys/{revoked_id}/"), None).await.0,
        204
    );
    let (stranger, _) = sign_up(&server, "stranger@example.com").await;
    let stranger_key = new_key(&stranger, json!(["*"])).await;

    let mut checked = 0;
    for (path, operations) in schema["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let method: Method = method.to_uppercase().parse().expect("method");
            let secured = operation["security"].as_array().is_some_and(|s| !s.is_empty());
            if !secured {
                continue;
            }
            let mut url = fill(path, project, organization);
            if path.contains("definitions") || path.contains("local_evaluation") {
                url = format!("{url}?token={token}");
            }
            let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
            let (status, answer) = anonymous.call(method.clone(), &url, body.clone()).await;
            assert_eq!(status, 401, "{method} {url} without credentials: {answer}");
            let (status, answer) =
                anonymous.with_key(&revoked).call(method.clone(), &url, body.clone()).await;
            assert_eq!(
                (status, answer["code"].as_str()),
                (401, Some("api_key_revoked")),
                "{method} {url} revoked"
            );
            let foreign =
                path.contains("{project_id}") || path.contains("{organization_id}") || url.contains("token=");
            if foreign {
                let (status, answer) =
                    anonymous.with_key(&stranger_key).call(method.clone(), &url, body.clone()).await;
                let expected =
                    if operation["security"].as_array().is_some_and(|s| s.len() == 1) { 403 } else { 404 };
                assert_eq!(status, expected, "{method} {url} with another organization's key: {answer}");
                let (status, answer) = stranger.call(method.clone(), &url, body.clone()).await;
                assert_eq!(status, 404, "{method} {url} with another organization's session: {answer}");
            }
            let writes = operation["x-warren-scope"].as_str().is_some_and(|s| s.ends_with(":write"))
                || operation["security"].as_array().is_some_and(|s| s.len() == 1);
            if writes {
                let (status, answer) =
                    anonymous.with_key(&read_only).call(method.clone(), &url, body.clone()).await;
                assert_eq!(status, 403, "{method} {url} with a read-only key: {answer}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "the sweep covered only {checked} operations");
    // The full key does what the read-only one may not.
    let flag = json!({"key": "sweep", "filters": {"groups": [{"rollout_percentage": 10}]}});
    anonymous
        .with_key(&full)
        .ok(Method::POST, &format!("/api/projects/{project}/feature_flags/"), Some(flag))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_names_who_did_what_and_log_in_is_rate_limited() {
    let server = TestServer::start_with_env(
        BIN,
        &[
            ("WARREN_AUTH__LOGIN_ATTEMPTS_PER_MINUTE", "5"),
            ("WARREN_AUTH__CLIENT_ADDRESS_HEADER", "x-forwarded-for"),
            OPEN_SIGNUP,
        ],
    );
    let (owner, signed_up) = sign_up(&server, "owner@example.com").await;
    let project = signed_up["project"]["id"].as_i64().expect("project");
    let organization = signed_up["organizations"][0]["id"].as_i64().expect("organization");
    let key = new_key(&owner, json!(["*"])).await;
    let flag = json!({"key": "audited", "filters": {"groups": [{"rollout_percentage": 10}]}});
    owner
        .with_key(&key)
        .ok(Method::POST, &format!("/api/projects/{project}/feature_flags/"), Some(flag))
        .await;
    // Behind a proxy, the address it appended is the client's.
    let proxied = http()
        .get(format!("{}/api/projects/{project}/feature_flags/", server.url))
        .bearer_auth(&key)
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.7")
        .send()
        .await
        .expect("proxied request");
    assert_eq!(proxied.status().as_u16(), 200);
    let anonymous = Client::anonymous(&server);
    let wrong = json!({"email": "owner@example.com", "password": "not the password"});
    assert_eq!(anonymous.call(Method::POST, "/api/login/", Some(wrong.clone())).await.0, 401);

    // Another site cannot act with the owner's cookie.
    let forged = http()
        .post(format!("{}/api/organizations/{organization}/members/", server.url))
        .header(COOKIE, owner.cookie.clone().expect("cookie"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"email": "evil@example.com", "password": "a long password", "role": "owner"}))
        .send()
        .await
        .expect("forged request");
    assert_eq!(forged.status().as_u16(), 403);
    // Admins create accounts for people who have none.
    owner
        .ok(
            Method::POST,
            &format!("/api/organizations/{organization}/members/"),
            Some(json!({"email": "new@example.com", "password": "handed over", "role": "member"})),
        )
        .await;
    let response = http()
        .post(format!("{}/api/login/", server.url))
        .json(&json!({"email": "new@example.com", "password": "handed over"}))
        .send()
        .await
        .expect("log in");
    assert_eq!(response.status().as_u16(), 200);
    let set_cookie = response.headers().get(SET_COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let cookie = set_cookie.split(';').next().filter(|c| !c.is_empty());
    let newcomer = Client { base: server.url.clone(), cookie: cookie.map(str::to_string), key: None };
    // The trusted proxy says the client came over HTTPS: the cookie is
    // sent back over HTTPS only.
    let over_tls = http()
        .post(format!("{}/api/login/", server.url))
        .header("x-forwarded-proto", "https")
        .json(&json!({"email": "new@example.com", "password": "handed over"}))
        .send()
        .await
        .expect("log in behind TLS");
    let set_cookie = over_tls.headers().get(SET_COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(set_cookie.ends_with("; Secure"), "behind a TLS proxy: {set_cookie}");
    // The newcomer replaces the handed-over password.
    let change = |current: &str| json!({"current_password": current, "new_password": "my own secret"});
    assert_eq!(
        newcomer.call(Method::POST, "/api/users/@me/password/", Some(change("wrong guess"))).await.0,
        401
    );
    newcomer.ok(Method::POST, "/api/users/@me/password/", Some(change("handed over"))).await;
    assert_eq!(newcomer.call(Method::GET, "/api/users/@me/", None).await.0, 401, "old sessions end");

    // A member may not read the log; the owner may, filtered.
    let (member, _) = sign_up(&server, "member@example.com").await;
    owner
        .ok(
            Method::POST,
            &format!("/api/organizations/{organization}/members/"),
            Some(json!({"email": "member@example.com", "role": "member"})),
        )
        .await;
    let audit = format!("/api/organizations/{organization}/audit_log/");
    assert_eq!(member.call(Method::GET, &audit, None).await.0, 403);
    assert_eq!(
        member
            .call(
                Method::POST,
                &format!("/api/organizations/{organization}/projects/"),
                Some(json!({"name": "x"}))
            )
            .await
            .0,
        403
    );
    let log = owner.ok(Method::GET, &audit, None).await;
    let entries = log["results"].as_array().expect("entries");
    let created =
        entries.iter().find(|e| e["action"] == "feature_flag.create").expect("flag creation audited");
    assert_eq!((created["credential"].as_str(), created["status"].as_u64()), (Some("api_key"), Some(201)));
    assert_eq!(created["project_id"], project);
    assert!(created["source"].as_str().is_some_and(|s| s.starts_with("127.")), "{created}");
    assert!(
        entries.iter().any(|e| e["action"] == "feature_flag.list" && e["source"] == "203.0.113.7"),
        "{log}"
    );
    let failed = entries.iter().find(|e| e["action"] == "login.failed").expect("failed log in audited");
    assert_eq!(
        (failed["actor"].as_str(), failed["outcome"].as_str()),
        (Some("owner@example.com"), Some("invalid_credentials"))
    );
    assert!(entries.iter().any(|e| e["action"] == "member.add" && e["credential"] == "session"));
    let text = log.to_string();
    assert!(
        !text.contains(&key) && !text.contains("a long password") && !text.contains("not the password"),
        "secrets in the audit log"
    );
    let only = owner.ok(Method::GET, &format!("{audit}?action=login.failed"), None).await;
    assert!(only["results"]
        .as_array()
        .is_some_and(|r| !r.is_empty() && r.iter().all(|e| e["action"] == "login.failed")));

    // Five attempts a minute per address: the sixth waits, even with the
    // right password.
    let started = Instant::now();
    let mut limited = None;
    for _ in 0..6 {
        let (status, body) = anonymous.call(Method::POST, "/api/login/", Some(wrong.clone())).await;
        if status == 429 {
            limited = Some(body);
            break;
        }
    }
    let limited = limited.expect("log in is rate limited");
    assert_eq!(limited["code"], "rate_limited");
    let right = json!({"email": "owner@example.com", "password": "a long password"});
    if started.elapsed() < Duration::from_secs(50) {
        assert_eq!(anonymous.call(Method::POST, "/api/login/", Some(right)).await.0, 429);
    }
}

/// By default sign-up makes only the first organization, which a started
/// server already has; strangers are refused with a code and the setting
/// that opens it, and admins add people instead. Emails are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_is_closed_by_default_after_the_first_organization() {
    let server = TestServer::start(BIN);
    let anonymous = Client::anonymous(&server);
    let stranger = json!({"email": "stranger@example.com", "password": "a long password"});
    let (status, refused) = anonymous.call(Method::POST, "/api/signup/", Some(stranger)).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("signup_closed")), "{refused}");
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("signup = true") && detail.contains("admin"), "says how to get in: {detail}");

    let credentials = server.first_start_credentials();
    let admin =
        json!({"email": credentials["dashboard_email"], "password": credentials["dashboard_password"]});
    let response =
        http().post(format!("{}/api/login/", server.url)).json(&admin).send().await.expect("log in");
    assert_eq!(response.status().as_u16(), 200);
    let cookie = session_cookie(&response);
    let owner = Client::with_cookie(&server, cookie);
    let invited = json!({"email": "stranger@example.com", "password": "handed over", "role": "member"});
    owner.ok(Method::POST, "/api/organizations/1/members/", Some(invited)).await;
    let (status, _) = anonymous
        .call(
            Method::POST,
            "/api/login/",
            Some(json!({"email": "stranger@example.com", "password": "handed over"})),
        )
        .await;
    assert_eq!(status, 200, "the admin's way in works");

    let long = format!("{}@example.com", "a".repeat(260));
    for path in ["/api/login/", "/api/signup/"] {
        let (status, body) = anonymous
            .call(Method::POST, path, Some(json!({"email": long, "password": "whatever it is"})))
            .await;
        let expected = if path == "/api/login/" { (400, "email_too_long") } else { (403, "signup_closed") };
        assert_eq!((status, body["code"].as_str().unwrap_or_default()), expected, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error() {
    let schemathesis = crate::repo_root().join(".venv/bin/schemathesis");
    if !warren_testkit::require(schemathesis.exists(), "schemathesis in .venv") {
        return;
    }
    let server = TestServer::start(BIN);
    // Path ids of the bootstrap project and organization, so generated
    // requests reach the handlers rather than stopping at 404.
    let config = server.data_dir().join("schemathesis.toml");
    std::fs::write(&config, "[parameters]\n\"path.project_id\" = 1\n\"path.organization_id\" = 1\n")
        .expect("config");
    let output = std::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/api/schema/", server.url), "--checks", "not_a_server_error"])
        .args(["--header", &format!("Authorization: Bearer {API_KEY}")])
        .args([
            "--max-examples",
            "20",
            "--generation-deterministic",
            "--request-timeout",
            "20",
            "--workers",
            "1",
        ])
        .args(["--suppress-health-check", "all", "--no-color"])
        .output()
        .expect("schemathesis");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Events of three people: two sign up on Chrome (one of them after a
/// `$pageview` of `/welcome`), one browses on Firefox.
fn story() -> Value {
    let event = |name: &str, who: &str, browser: &str, url: &str, at: &str| {
        json!({"event": name, "distinct_id": who, "timestamp": at,
               "properties": {"$browser": browser, "$current_url": url, "$set": {"browser": browser}}})
    };
    json!({"api_key": warren_testkit::TOKEN, "batch": [
        event("$pageview", "ann", "Chrome", "https://x.test/welcome", "2024-03-01T10:00:00Z"),
        event("signed up", "ann", "Chrome", "https://x.test/signup", "2024-03-01T10:05:00Z"),
        event("$pageview", "bob", "Chrome", "https://x.test/pricing", "2024-03-01T11:00:00Z"),
        event("signed up", "bob", "Chrome", "https://x.test/signup", "2024-03-02T09:00:00Z"),
        event("$pageview", "cat", "Firefox", "https://x.test/welcome", "2024-03-02T12:00:00Z"),
        event("$pageview", "cat", "Firefox", "https://x.test/about", "2024-03-03T12:00:00Z"),
    ]})
}

fn total(result: &Value) -> i64 {
    result["results"][0]["count"].as_f64().unwrap_or_else(|| panic!("no count: {result}")) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_and_cohorts_work_in_queries_and_ingest_collects_definitions() {
    let server = TestServer::start(BIN);
    let sent = http().post(format!("{}/batch/", server.url)).json(&story()).send().await.expect("batch");
    assert_eq!(sent.status().as_u16(), 200);
    crate::query::wait_for_events(&server, 6).await;
    let api = Client::anonymous(&server).with_key(API_KEY);

    // Ingest recorded the names and types it saw.
    let events = api.ok(Method::GET, "/api/projects/1/event_definitions/", None).await;
    let names: Vec<&str> =
        events["results"].as_array().expect("events").iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, ["$pageview", "signed up"]);
    let properties = api.ok(Method::GET, "/api/projects/1/property_definitions/?type=person", None).await;
    let browser = properties["results"]
        .as_array()
        .expect("properties")
        .iter()
        .find(|p| p["name"] == "browser")
        .cloned();
    let browser = browser.unwrap_or_else(|| panic!("no browser person property: {properties}"));
    assert_eq!(
        (browser["property_type"].as_str(), browser["created_at"].as_str()),
        (Some("String"), Some("2024-03-01T10:00:00+00:00"))
    );

    // "Activated": signed up, or saw a welcome page.
    let action = api
        .ok(
            Method::POST,
            "/api/projects/1/actions/",
            Some(json!({"name": "Activated", "steps": [
            {"event": "signed up"}, {"event": "$pageview", "url": "/welcome", "url_matching": "contains"}]})),
        )
        .await;
    let range = json!({"date_from": "2024-03-01", "date_to": "2024-03-03"});
    let trends = |series: Value, properties: Value| {
        json!({"query": {"kind": "TrendsQuery", "series": [series], "dateRange": range, "properties": properties,
               "trendsFilter": {"display": "BoldNumber"}}})
    };
    let by_action = api
        .ok(
            Method::POST,
            "/api/projects/1/query/",
            Some(trends(json!({"kind": "ActionsNode", "id": action["id"]}), json!([]))),
        )
        .await;
    assert_eq!(total(&by_action), 4, "two sign-ups and two welcome views: {by_action}");
    assert_eq!(by_action["results"][0]["label"], "Activated");

    // A dynamic cohort by person property, a behavioural one, a static one.
    let chrome = api
        .ok(
            Method::POST,
            "/api/projects/1/cohorts/",
            Some(json!({"name": "Chrome", "filters": {"properties": {"type": "AND", "values": [
            {"type": "person", "key": "browser", "value": "Chrome"}]}}})),
        )
        .await;
    let signed_up = api
        .ok(Method::POST, "/api/projects/1/cohorts/", Some(json!({"name": "Signed up", "filters": {"properties": {"type": "AND", "values": [
            {"type": "behavioral", "key": "signed up", "value": "performed_event", "time_value": 10, "time_interval": "year"}]}}})))
        .await;
    let (status, _) = api
        .call(
            Method::POST,
            "/api/projects/1/cohorts/",
            Some(json!({"name": "bad", "filters": {"properties": {"type": "AND", "values": [
            {"type": "behavioral", "key": "x", "value": "performed_event"}]}}})),
        )
        .await;
    assert_eq!(status, 400, "a behavioural filter needs its window");
    let chosen = api
        .ok(Method::POST, "/api/projects/1/cohorts/", Some(json!({"name": "Chosen", "is_static": true})))
        .await;
    let added = api
        .ok(
            Method::PATCH,
            &format!("/api/projects/1/cohorts/{}/add_persons_to_static_cohort/", chosen["id"]),
            Some(json!({"person_ids": ["cat", "nobody"]})),
        )
        .await;
    assert_eq!(added["count"], 1, "unknown distinct ids are skipped: {added}");

    let pageviews = json!({"kind": "EventsNode", "event": "$pageview"});
    for (cohort, operator, expected) in [
        (&chrome, "in", 2),
        (&chrome, "not_in", 2),
        (&signed_up, "in", 2),
        (&chosen, "in", 2),
        (&chosen, "not_in", 2),
    ] {
        let filter = json!([{"type": "cohort", "key": "id", "value": cohort["id"], "operator": operator}]);
        let answer =
            api.ok(Method::POST, "/api/projects/1/query/", Some(trends(pageviews.clone(), filter))).await;
        assert_eq!(total(&answer), expected, "pageviews {operator} cohort {}: {answer}", cohort["name"]);
    }
    let members =
        api.ok(Method::GET, &format!("/api/projects/1/cohorts/{}/persons/", signed_up["id"]), None).await;
    assert_eq!(members["count"], 2, "{members}");
    let (status, body) = api
        .call(
            Method::POST,
            "/api/projects/1/query/",
            Some(trends(pageviews.clone(), json!([{"type": "cohort", "key": "id", "value": 9999}]))),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_query")), "{body}");

    // Another project's cohort and action do not exist for this one.
    let other = api.ok(Method::POST, "/api/organizations/1/projects/", Some(json!({"name": "Other"}))).await;
    let other = other["id"].as_i64().expect("the other project's id");
    let theirs = |kind: &str, body: Value| {
        let api = &api;
        let path = format!("/api/projects/{other}/{kind}/");
        async move { api.ok(Method::POST, &path, Some(body)).await }
    };
    let their_cohort = theirs("cohorts", json!({"name": "Theirs", "is_static": true})).await;
    let their_action = theirs("actions", json!({"name": "Theirs", "steps": [{"event": "$pageview"}]})).await;
    for query in [
        trends(pageviews.clone(), json!([{"type": "cohort", "key": "id", "value": their_cohort["id"]}])),
        trends(json!({"kind": "ActionsNode", "id": their_action["id"]}), json!([])),
    ] {
        let (status, body) = api.call(Method::POST, "/api/projects/1/query/", Some(query)).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_query")), "{body}");
    }
}
