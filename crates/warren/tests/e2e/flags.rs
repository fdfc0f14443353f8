//! Feature flags through the official SDKs: posthog-python and posthog-node
//! evaluate the same flags remotely (`POST /flags`, Warren decides) and
//! locally (from `/flags/definitions`, the SDK's own PostHog hashing
//! decides). Both must agree for every person and flag, which pins
//! Warren's hashing, rollouts, variants, payloads and cohorts to PostHog's.

use std::process::Command;

use reqwest::Method;
use serde_json::{json, Map, Value};
use warren_testkit::{require, TestServer, API_KEY, TOKEN};

use crate::accounts::Client;
use crate::sdk::python;
use crate::{http, repo_root, BIN};

const FLAGS: [&str; 8] =
    ["beta", "half", "split", "enterprise", "off", "germany", "company-beta", "company-half"];

async fn create_flags(api: &Client) {
    let cohort = api
        .ok(
            Method::POST,
            "/api/projects/1/cohorts/",
            Some(json!({"name": "Enterprise", "filters": {"properties": {"type": "OR", "values": [{"type": "person", "key": "plan", "value": "enterprise"}]}}})),
        )
        .await;
    let variants = json!([{"key": "control", "rollout_percentage": 34}, {"key": "test", "rollout_percentage": 33}, {"key": "other", "rollout_percentage": 33}]);
    for flag in [
        json!({"key": "beta", "filters": {"groups": [{"properties": [{"key": "email", "value": "@example.com", "operator": "icontains", "type": "person"}], "rollout_percentage": 100}], "payloads": {"true": "{\"color\": \"blue\"}"}}}),
        json!({"key": "half", "filters": {"groups": [{"properties": [], "rollout_percentage": 50}]}}),
        json!({"key": "split", "filters": {"groups": [{"properties": [], "rollout_percentage": 100}], "multivariate": {"variants": variants}, "payloads": {"test": "{\"price\": 9}"}}}),
        json!({"key": "enterprise", "filters": {"groups": [{"properties": [{"key": "id", "value": cohort["id"], "type": "cohort"}], "rollout_percentage": 100}]}}),
        json!({"key": "off", "active": false, "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]}}),
        json!({"key": "germany", "filters": {"groups": [{"properties": [{"key": "country", "value": ["DE"], "type": "person"}], "rollout_percentage": 100, "variant": "test"}, {"properties": [], "rollout_percentage": 100}], "multivariate": {"variants": variants}}}),
        // Flags of companies: properties and buckets are the group's.
        json!({"key": "company-beta", "filters": {"aggregation_group_type_index": 0, "groups": [{"properties": [{"key": "plan", "value": "enterprise", "type": "group", "group_type_index": 0}], "rollout_percentage": 100}]}}),
        json!({"key": "company-half", "filters": {"aggregation_group_type_index": 0, "groups": [{"properties": [], "rollout_percentage": 50}]}}),
    ] {
        api.ok(Method::POST, "/api/projects/1/feature_flags/", Some(flag)).await;
    }
}

/// Each person's company: twelve companies, the first three enterprise.
fn companies(ids: &[String]) -> (Value, Value) {
    let mut groups = Map::new();
    let mut properties = Map::new();
    for (i, id) in ids.iter().enumerate() {
        let company = format!("company-{}", i % 12);
        let plan = if i % 12 < 3 { "enterprise" } else { "free" };
        properties.insert(company.clone(), json!({"plan": plan}));
        groups.insert(id.clone(), json!({"company": company}));
    }
    (Value::Object(groups), json!({"company": properties}))
}

fn people() -> (Vec<String>, Map<String, Value>) {
    let ids: Vec<String> = (0..60).map(|i| format!("user-{i}")).collect();
    let mut properties = Map::new();
    for (i, id) in ids.iter().enumerate() {
        let email = if i % 2 == 0 { format!("{id}@example.com") } else { format!("{id}@other.org") };
        let plan = if i % 5 == 0 { "enterprise" } else { "free" };
        let country = if i % 7 == 0 { "DE" } else { "FR" };
        properties.insert(id.clone(), json!({"email": email, "plan": plan, "country": country}));
    }
    (ids, properties)
}

fn run_sdk(program: &str, script: &str, config: &Value) -> Value {
    let output = Command::new(program)
        .arg(repo_root().join("tests/sdk").join(script))
        .arg(config.to_string())
        .current_dir(repo_root().join("tests/sdk"))
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
}

/// The SDK's answers, checked for agreement and against the definitions.
fn check(sdk: &str, answers: &Value, ids: &[String]) {
    assert_eq!(answers["errors"], json!([]), "{sdk} reported errors");
    assert_eq!(answers["definitions_loaded"], json!(FLAGS.len()), "{sdk}");
    let (mut half, mut variants) = (0, std::collections::BTreeSet::new());
    for (i, id) in ids.iter().enumerate() {
        for flag in FLAGS {
            let remote = &answers["remote"][id][flag];
            let local = &answers["local"][id][flag];
            if flag == "off" {
                // A disabled flag is not served remotely; locally it is false.
                assert!(remote.is_null() || *remote == json!(false), "{sdk} {id} off: {remote}");
                assert_eq!(*local, json!(false), "{sdk} {id} off locally");
                continue;
            }
            assert_eq!(
                remote, local,
                "{sdk}: {id} {flag}: Warren said {remote}, the SDK's own evaluation {local}"
            );
            assert_eq!(
                answers["remote_payloads"][id][flag], answers["local_payloads"][id][flag],
                "{sdk}: {id} {flag} payload"
            );
        }
        let values = &answers["remote"][id];
        assert_eq!(values["beta"], json!(i % 2 == 0), "{sdk} {id} beta");
        assert_eq!(values["enterprise"], json!(i % 5 == 0), "{sdk} {id} enterprise");
        if i % 7 == 0 {
            assert_eq!(values["germany"], json!("test"), "{sdk} {id}: the condition's variant wins");
        }
        if i % 2 == 0 {
            assert_eq!(
                answers["remote_payloads"][id]["beta"],
                json!({"color": "blue"}),
                "{sdk} {id} payload"
            );
        }
        half += usize::from(values["half"] == json!(true));
        variants.insert(values["split"].as_str().unwrap_or_default().to_string());
    }
    assert!((15..=45).contains(&half), "{sdk}: 50% rollout gave {half} of 60");
    let by_company: std::collections::BTreeSet<String> =
        ids[..12].iter().map(|id| answers["remote"][id]["company-half"].to_string()).collect();
    assert_eq!(by_company.len(), 2, "{sdk}: a 50% company rollout splits twelve companies");
    assert_eq!(variants.into_iter().collect::<Vec<_>>(), ["control", "other", "test"], "{sdk}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdks_evaluate_flags_remotely_as_they_do_locally() {
    let Some(python) = python() else {
        require(false, "posthog-python in .venv");
        return;
    };
    let node_ready = repo_root().join("tests/sdk/node_modules/posthog-node").exists();
    if !require(node_ready, "posthog-node in tests/sdk/node_modules") {
        return;
    }
    let server = TestServer::start(BIN);
    // The group type exists once ingest has seen a group.
    let group = json!({"api_key": TOKEN, "batch": [{"event": "$groupidentify", "distinct_id": "admin",
        "properties": {"$group_type": "company", "$group_key": "company-0", "$group_set": {"plan": "enterprise"}}}]});
    assert_eq!(
        http()
            .post(format!("{}/batch/", server.url))
            .json(&group)
            .send()
            .await
            .expect("batch")
            .status()
            .as_u16(),
        200
    );
    crate::query::wait_for_events(&server, 1).await;
    let api = Client::anonymous(&server).with_key(API_KEY);
    create_flags(&api).await;
    let (ids, person_properties) = people();
    let (groups, group_properties) = companies(&ids);
    let config = json!({
        "host": server.url, "token": TOKEN, "personal_api_key": API_KEY,
        "distinct_ids": ids, "person_properties": person_properties, "flags": FLAGS,
        "groups": groups, "group_properties": group_properties,
    });
    check("posthog-python", &run_sdk(&python.to_string_lossy(), "python_flags.py", &config), &ids);
    check("posthog-node", &run_sdk("node", "node_flags.mjs", &config), &ids);

    // The legacy endpoint answers in its own shape.
    let legacy: Value = http()
        .post(format!("{}/decide/?v=3", server.url))
        .json(&json!({"token": TOKEN, "distinct_id": "user-0", "person_properties": {"email": "a@example.com"}}))
        .send()
        .await
        .expect("decide")
        .json()
        .await
        .expect("decide body");
    assert_eq!(legacy["featureFlags"]["beta"], json!(true), "{legacy}");
    assert_eq!(legacy["featureFlagPayloads"]["beta"], json!("{\"color\": \"blue\"}"), "{legacy}");
    // Definitions carry a version; an SDK holding it gets 304.
    let url = format!("{}/flags/definitions?token={TOKEN}&send_cohorts", server.url);
    let first = http().get(&url).bearer_auth(API_KEY).send().await.expect("definitions");
    let tag = first.headers().get("etag").expect("etag").clone();
    let again = http()
        .get(&url)
        .bearer_auth(API_KEY)
        .header("if-none-match", tag.clone())
        .send()
        .await
        .expect("again");
    assert_eq!(again.status().as_u16(), 304);
    let flags = api.ok(Method::GET, "/api/projects/1/feature_flags/", None).await;
    let half = flags["results"].as_array().expect("flags").iter().find(|f| f["key"] == "half").expect("half")
        ["id"]
        .clone();
    api.ok(Method::PATCH, &format!("/api/projects/1/feature_flags/{half}/"), Some(json!({"active": false})))
        .await;
    let changed =
        http().get(&url).bearer_auth(API_KEY).header("if-none-match", tag).send().await.expect("changed");
    assert_eq!(changed.status().as_u16(), 200, "a changed flag is a new version");
    // Unknown tokens and keys are refused.
    let unknown = http()
        .post(format!("{}/flags/?v=2", server.url))
        .json(&json!({"token": "phc_unknown", "distinct_id": "x"}))
        .send()
        .await
        .expect("flags");
    assert_eq!(unknown.status().as_u16(), 401);
    let definitions = http()
        .get(format!("{}/flags/definitions?token={TOKEN}", server.url))
        .bearer_auth("phx_wrong_wrong_wrong")
        .send()
        .await
        .expect("definitions");
    assert_eq!(definitions.status().as_u16(), 401);
}

/// What posthog-js asks before anything else, answered as PostHog does:
/// the remote configuration (JSON and script) that turns autocapture and
/// gzip on, and `/flags` in the base64 form it falls back to; every
/// answer, refusals included, readable by a page on another origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posthog_js_gets_its_remote_config_and_flags_in_every_encoding() {
    use base64::Engine;
    let server = TestServer::start(BIN);
    let api = Client::anonymous(&server).with_key(API_KEY);
    create_flags(&api).await;
    let client = http();
    let origin = "http://shop.example.com:8080";
    let get = |path: String| client.get(format!("{}{path}", server.url)).header("origin", origin).send();
    let cors = |response: &reqwest::Response| {
        response.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()).map(String::from)
    };

    let config = get(format!("/array/{TOKEN}/config")).await.expect("config");
    assert_eq!(config.status(), 200);
    assert_eq!(cors(&config).as_deref(), Some(origin));
    let config: Value = config.json().await.expect("config JSON");
    assert_eq!(config["autocapture_opt_out"], false, "{config}");
    assert_eq!(config["hasFeatureFlags"], true);
    assert!(config["supportedCompression"].as_array().expect("list").contains(&json!("gzip-js")));
    assert_eq!(config["sessionRecording"], false, "a project records once it opts in");

    let script = get(format!("/array/{TOKEN}/config.js")).await.expect("config.js");
    assert_eq!(script.status(), 200);
    assert!(script.headers()["content-type"].to_str().expect("ascii").starts_with("application/javascript"));
    let script = script.text().await.expect("script");
    assert!(script.contains(&format!("window._POSTHOG_REMOTE_CONFIG[\"{TOKEN}\"]")), "{script}");
    assert!(script.contains("\"autocapture_opt_out\":false"), "{script}");

    // Refusals carry CORS too, or the page sees only a network error.
    let unknown = get("/array/phc_no_such_project/config".into()).await.expect("unknown");
    assert_eq!((unknown.status().as_u16(), cors(&unknown).as_deref()), (404, Some(origin)));
    let malformed = get("/array/not%20a%20token/config.js".into()).await.expect("malformed");
    assert_eq!((malformed.status().as_u16(), cors(&malformed).as_deref()), (400, Some(origin)));
    let elsewhere = get("/static/lazy-recorder.js".into()).await.expect("unserved");
    assert_eq!((elsewhere.status().as_u16(), cors(&elsewhere).as_deref()), (404, Some(origin)));
    let body: Value = elsewhere.json().await.expect("error JSON");
    assert_eq!(body["code"], "not_found", "{body}");

    // `/flags` as posthog-js sends it without gzip: a base64 form, with
    // `flag_keys` naming the flags wanted.
    let request = json!({"token": TOKEN, "distinct_id": "user-1", "person_properties": {"email": "a@example.com"}, "flag_keys": ["beta", "off"]});
    let encoded = base64::engine::general_purpose::STANDARD.encode(request.to_string());
    let form = format!("data={}", url_escape(&encoded));
    let flags = client
        .post(format!("{}/flags/?v=2&compression=base64", server.url))
        .header("origin", origin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("flags");
    assert_eq!(flags.status(), 200);
    assert_eq!(cors(&flags).as_deref(), Some(origin));
    let flags: Value = flags.json().await.expect("flags JSON");
    assert_eq!(flags["flags"]["beta"]["enabled"], true, "{flags}");
    assert_eq!(flags["flags"]["beta"]["metadata"]["payload"], "{\"color\": \"blue\"}");
    let keys: Vec<&String> = flags["flags"].as_object().expect("flags").keys().collect();
    assert_eq!(keys, ["beta"], "only the flags asked for, and only active ones");

    // gzip, announced by nothing but its first bytes, as posthog-js sends it.
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gzip, request.to_string().as_bytes()).expect("gzip");
    let flags = client
        .post(format!("{}/flags/?v=2", server.url))
        .header("content-type", "text/plain")
        .body(gzip.finish().expect("gzip"))
        .send()
        .await
        .expect("gzip flags");
    assert_eq!(flags.status(), 200);
    let flags: Value = flags.json().await.expect("flags JSON");
    assert_eq!(flags["flags"]["beta"]["enabled"], true, "{flags}");
}

/// Percent-escapes what a form value may not hold as it is.
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
