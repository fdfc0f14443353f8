//! The web dashboard and self-monitoring, end to end: pages need a
//! session; Warren's own health answers the deployment's admins only;
//! its metrics become events of the internal project that insights and
//! SQL read; and the whole dashboard works in a real browser (Debian's
//! Chromium driven by Playwright), with screenshots of every page.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use reqwest::Method;
use serde_json::{json, Value};
use warren_testkit::{require, TestServer, API_KEY, TOKEN};

use crate::accounts::{new_key, sign_up, Client, OPEN_SIGNUP};
use crate::{http, repo_root, BIN};

pub(crate) const ADMIN_EMAIL: &str = "admin@example.com";
pub(crate) const ADMIN_PASSWORD: &str = "correct horse battery staple";

pub(crate) fn monitored(extra: &[(&str, &str)]) -> TestServer {
    let mut env: Vec<(&str, &str)> = vec![
        ("WARREN_SELF_MONITORING__ENABLED", "true"),
        ("WARREN_SELF_MONITORING__INTERVAL_SECS", "1"),
        ("WARREN_SELF_MONITORING__SAMPLE_INTERVAL_MS", "250"),
        ("WARREN_INGEST__BATCH_MAX_WAIT_MS", "200"),
        ("WARREN_BOOTSTRAP__ADMIN_EMAIL", ADMIN_EMAIL),
        ("WARREN_BOOTSTRAP__ADMIN_PASSWORD", ADMIN_PASSWORD),
    ];
    env.extend_from_slice(extra);
    TestServer::start_with_env(BIN, &env)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("HTTP client")
}

pub(crate) async fn log_in(server: &TestServer, email: &str, password: &str) -> String {
    let response = http()
        .post(format!("{}/api/login/", server.url))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("log in");
    assert_eq!(response.status().as_u16(), 200);
    crate::accounts::session_cookie(&response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_session_and_their_assets_are_embedded() {
    let server = monitored(&[]);
    let client = no_redirects();
    for page in ["/", "/events?event=x", "/persons/abc", "/web", "/insights/new", "/system"] {
        let response = client.get(format!("{}{page}", server.url)).send().await.expect("page");
        assert_eq!(response.status().as_u16(), 303, "{page} without a session");
        let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let expected: String = form_urlencoded::byte_serialize(page.as_bytes()).collect();
        assert_eq!(location, format!("/login?next={expected}"));
    }
    let login = client.get(format!("{}/login", server.url)).send().await.expect("login page");
    assert_eq!(login.status().as_u16(), 200);
    let policy =
        login.headers().get(CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    let html = login.text().await.expect("html");
    assert!(html.contains("/assets/login.js") && !html.contains("<script>"), "no inline script");

    for (asset, kind) in
        [("app.js", "text/javascript"), ("charts.js", "text/javascript"), ("app.css", "text/css")]
    {
        let response = client.get(format!("{}/assets/{asset}", server.url)).send().await.expect("asset");
        assert_eq!(response.status().as_u16(), 200, "{asset}");
        let content_type =
            response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(content_type.starts_with(kind), "{asset}: {content_type}");
        let etag = response.headers().get("etag").cloned().expect("etag");
        let again = client
            .get(format!("{}/assets/{asset}", server.url))
            .header("if-none-match", etag)
            .send()
            .await
            .expect("asset");
        assert_eq!(again.status().as_u16(), 304, "{asset} revalidates");
    }
    let missing = client.get(format!("{}/assets/nope.js", server.url)).send().await.expect("asset");
    assert_eq!(missing.status().as_u16(), 404);

    let cookie = log_in(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let app = client
        .get(format!("{}/persons/abc", server.url))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(app.status().as_u16(), 200, "a signed-in page");
    assert!(app.text().await.expect("html").contains("/assets/app.js"));
    let back = client
        .get(format!("{}/login?next=%2Fsystem", server.url))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("login page");
    assert_eq!(back.status().as_u16(), 303, "signed in: straight on");
    assert_eq!(back.headers().get(LOCATION).and_then(|v| v.to_str().ok()), Some("/system"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_deployment_writes_a_dashboard_sign_in_that_works() {
    let server = TestServer::start(BIN);
    let credentials = server.first_start_credentials();
    let (email, password) = (&credentials["dashboard_email"], &credentials["dashboard_password"]);
    let response = http()
        .post(format!("{}/api/login/", server.url))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("log in");
    assert_eq!(response.status().as_u16(), 200, "{email} signs in with the printed password");
    let me: Value = response.json().await.expect("me");
    assert_eq!(me["organizations"][0]["id"], 1, "an owner of the deployment's organization: {me}");
    assert_eq!(me["organizations"][0]["role"], "owner");
}

/// The internal project, as the bootstrap key sees it.
async fn internal_project(admin: &Client) -> Value {
    let project = admin.ok(Method::GET, "/api/projects/1/", None).await;
    let organization = project["organization"].as_i64().expect("organization");
    let projects = admin.ok(Method::GET, &format!("/api/organizations/{organization}/projects/"), None).await;
    projects["results"]
        .as_array()
        .expect("projects")
        .iter()
        .find(|p| p["internal"] == true)
        .cloned()
        .expect("an internal project")
}

/// Runs SQL in a project until `done` accepts the rows, or 60 s pass.
async fn sql_until(admin: &Client, project: i64, sql: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = admin
            .ok(
                Method::POST,
                &format!("/api/projects/{project}/query/"),
                Some(json!({"query": {"kind": "HogQLQuery", "query": sql}})),
            )
            .await;
        let rows = answer["results"].as_array().cloned().unwrap_or_default();
        if done(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "{sql} never gave what was expected: {rows:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warren_writes_its_health_as_events_of_its_internal_project() {
    // A stranger signs up below, to be refused Warren's own state.
    let server = monitored(&[OPEN_SIGNUP]);
    let admin = Client::anonymous(&server).with_key(API_KEY);
    let internal = internal_project(&admin).await;
    let internal_id = internal["id"].as_i64().expect("id");
    assert_ne!(internal_id, 1, "its own project, beside the default one");

    let batch = json!({"api_key": TOKEN, "batch": (0..10).map(|i| json!({"event": "e", "distinct_id": format!("u{i}")})).collect::<Vec<_>>()});
    for _ in 0..5 {
        let answer = http().post(format!("{}/batch/", server.url)).json(&batch).send().await.expect("batch");
        assert_eq!(answer.status().as_u16(), 200);
    }
    for _ in 0..2 {
        let answer =
            http().post(format!("{}/batch/", server.url)).body("{not json").send().await.expect("batch");
        assert_eq!(answer.status().as_u16(), 400);
    }

    // Requests by route and status, with the counts that were made.
    let sql =
        "SELECT properties.status AS status, sum(toFloat(properties.requests)) AS requests FROM events \
               WHERE event = 'warren_http_requests' AND properties.route = '/batch' GROUP BY 1 ORDER BY 1";
    let rows = sql_until(&admin, internal_id, sql, |rows| {
        rows.iter().map(|r| r[1].as_f64().unwrap_or(0.0)).sum::<f64>() >= 7.0
    })
    .await;
    assert_eq!(rows, vec![json!(["200", 5.0]), json!(["400", 2.0])], "requests per status");

    // The same figures through an insight: events received, summed.
    let trends = json!({"query": {"kind": "TrendsQuery", "dateRange": {"date_from": "-1h"}, "interval": "hour",
        "series": [{"kind": "EventsNode", "event": "warren_ingest", "math": "sum", "math_property": "events_received"}]}});
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = admin
            .ok(Method::POST, &format!("/api/projects/{internal_id}/query/"), Some(trends.clone()))
            .await;
        let received: f64 =
            answer["results"][0]["data"].as_array().expect("data").iter().filter_map(Value::as_f64).sum();
        if received >= 50.0 {
            assert_eq!(received, 50.0, "every captured event, counted once");
            break;
        }
        assert!(Instant::now() < deadline, "warren_ingest never summed to 50: {answer}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Warren is not a person of its own project, and its events stay there.
    let persons = admin.ok(Method::GET, &format!("/api/projects/{internal_id}/persons/"), None).await;
    assert_eq!(persons["count"], 0, "{persons}");
    let own = sql_until(&admin, 1, "SELECT count() FROM events WHERE event LIKE 'warren_%'", |_| true).await;
    assert_eq!(own, vec![json!([0])], "the product project holds no internal events");
    // Job runs are events too.
    sql_until(&admin, internal_id, "SELECT properties.job FROM events WHERE event = 'warren_job'", |rows| {
        rows.iter().any(|r| r[0] == "log.retention")
    })
    .await;

    // The overview's live figures and the System page's facts.
    let health = admin.ok(Method::GET, "/api/instance/health/", None).await;
    let points = health["points"].as_array().expect("points");
    assert!(!points.is_empty());
    assert_eq!(points.last().expect("a point")["events_received_total"], 50.0);
    assert!(
        points.iter().any(|p| p["capture_p99_ms"].as_f64().is_some_and(|ms| ms > 0.0)),
        "capture latency"
    );
    assert!(health["partitions"].as_array().is_some_and(|p| !p.is_empty()), "lag per partition: {health}");
    let system = admin.ok(Method::GET, "/api/instance/system/", None).await;
    assert_eq!(system["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(system["internal_project"], internal_id);
    let migrations = system["migrations"].as_array().expect("migrations");
    assert!(migrations.len() >= 7 && migrations.iter().all(|m| m["state"] == "applied"), "{migrations:?}");
    let jobs: Vec<&str> =
        system["jobs"].as_array().expect("jobs").iter().filter_map(|j| j["job"].as_str()).collect();
    assert!(jobs.contains(&"log.retention") && jobs.contains(&"audit.retention"), "{jobs:?}");
    assert!(system["disk"]["data_dir_bytes"].as_u64().is_some_and(|b| b > 0), "{}", system["disk"]);
    let config = system["config"].to_string();
    assert!(!config.contains(API_KEY) && !config.contains(ADMIN_PASSWORD), "secrets are redacted: {config}");
    assert_eq!(system["config"]["bootstrap"]["admin_email"], ADMIN_EMAIL);

    // Only the deployment's admins see Warren's own state: outsiders get
    // 404, members 403, and so do keys without the instance scope.
    let (stranger, _) = sign_up(&server, "stranger@example.com").await;
    let owner = Client::with_cookie(&server, log_in(&server, ADMIN_EMAIL, ADMIN_PASSWORD).await);
    let member_body =
        json!({"email": "member@example.com", "password": "a member's password", "role": "member"});
    owner.ok(Method::POST, "/api/organizations/1/members/", Some(member_body)).await;
    let member =
        Client::with_cookie(&server, log_in(&server, "member@example.com", "a member's password").await);
    let narrow = Client::anonymous(&server).with_key(&new_key(&owner, json!(["query:read"])).await);
    let wide = Client::anonymous(&server).with_key(&new_key(&owner, json!(["instance:read"])).await);
    for path in ["/api/instance/health/", "/api/instance/system/"] {
        assert_eq!(stranger.call(Method::GET, path, None).await.0, 404, "{path} for an outsider");
        assert_eq!(member.call(Method::GET, path, None).await.0, 403, "{path} for a member");
        assert_eq!(narrow.call(Method::GET, path, None).await.0, 403, "{path} without instance:read");
        assert_eq!(wide.call(Method::GET, path, None).await.0, 200, "{path} with instance:read");
    }
    let audit = admin.ok(Method::GET, "/api/organizations/1/audit_log/?limit=500", None).await;
    let entries = audit["results"].as_array().expect("entries");
    let entry =
        |action: &str, status: u16| entries.iter().any(|e| e["action"] == action && e["status"] == status);
    assert!(entry("instance.system", 200), "other reads are audited");
    assert!(!entry("instance.health", 200), "the overview's polling does not fill the audit log");
    assert!(entry("instance.health", 403), "a refused poll is audited");
}

pub(crate) fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let playwright = repo_root().join("tests/sdk/node_modules/playwright-core");
    (path.exists() && playwright.exists()).then_some(path)
}

/// Where the browser test leaves its screenshots: `WARREN_TEST_ARTIFACTS`,
/// else `target/test-artifacts/` of the checkout.
fn artifacts() -> PathBuf {
    std::env::var_os("WARREN_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-artifacts"))
        .join("dashboard")
}

#[test]
fn the_dashboard_works_in_a_real_browser() {
    let Some(browser) = chromium() else {
        require(false, "Debian's chromium and playwright-core in tests/sdk/node_modules");
        return;
    };
    // With a ClickHouse cluster, so the System page shows one.
    let Some(cluster) = warren_testkit::clickhouse::ClickHouseCluster::shared() else { return };
    let url = cluster.url(&format!("warren_browser_{}", std::process::id()));
    let server = monitored(&[("WARREN_CLICKHOUSE__URL", &url)]);
    let shots = artifacts();
    let _ = std::fs::remove_dir_all(&shots);
    let output = Command::new("node")
        .arg(repo_root().join("tests/sdk/browser_dashboard.mjs"))
        .args([&server.url, ADMIN_EMAIL, ADMIN_PASSWORD, TOKEN])
        .arg(&shots)
        .env("CHROMIUM_PATH", &browser)
        .current_dir(repo_root().join("tests/sdk"))
        .output()
        .expect("running the browser test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        shots.display()
    );
    assert!(stdout.contains("all checks passed"));
    let mut pictures: Vec<String> = std::fs::read_dir(&shots)
        .expect("screenshots")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    pictures.sort();
    for page in [
        "login",
        "overview-after",
        "web-analytics",
        "events",
        "insight-trends",
        "dashboard",
        "person",
        "system",
    ] {
        assert!(
            pictures.iter().any(|p| p.contains(page) && p.ends_with(".png")),
            "no {page} screenshot: {pictures:?}"
        );
    }
    println!("screenshots: {}", shots.display());
}
