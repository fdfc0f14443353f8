//! Every kind of bad request gets its status and machine-readable code,
//! nothing bad reaches the log, and the server stays up throughout.

use std::io::Write;

use flate2::write::GzEncoder;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use serde_json::json;
use warren_testkit::{TestServer, TOKEN};

use crate::{http, BIN};

struct Case {
    name: &'static str,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(name: &'static str, path: &str, body: impl Into<Vec<u8>>, status: u16, code: &'static str) -> Case {
    Case { name, path: path.into(), headers: Vec::new(), body: body.into(), status, code }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("in-memory");
    encoder.finish().expect("in-memory")
}

fn batch(events: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "api_key": TOKEN, "batch": events })).expect("json")
}

fn cases() -> Vec<Case> {
    let good_event = json!({"event": "e", "distinct_id": "d"});
    let good = batch(json!([good_event]));
    let mut truncated_gzip = gzip(&good);
    truncated_gzip.truncate(truncated_gzip.len() / 2);
    let mut bomb_json =
        format!(r#"{{"api_key":"{TOKEN}","batch":[{{"event":"e","distinct_id":"d","properties":{{"pad":""#)
            .into_bytes();
    bomb_json.extend(std::iter::repeat_n(b'a', 25 * 1024 * 1024));
    bomb_json.extend_from_slice(b"\"}}]}");
    let deep = format!(
        r#"{{"api_key":"{TOKEN}","batch":[{{"event":"e","distinct_id":"d","properties":{{"x":{}{}}}}}]}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let mut non_utf8 = format!(r#"{{"api_key":"{TOKEN}","batch":[{{"event":"e"#).into_bytes();
    non_utf8.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    non_utf8.extend_from_slice(br#"","distinct_id":"d"}]}"#);

    let mut all = vec![
        case("malformed JSON", "/batch/", &good[..good.len() - 3], 400, "invalid_payload"),
        case("truncated gzip", "/batch/", truncated_gzip, 400, "invalid_compression"),
        case("gzip bomb", "/batch/", gzip(&bomb_json), 413, "payload_too_large"),
        case(
            "gzip hint, plain body",
            "/batch/?compression=gzip-js",
            good.clone(),
            400,
            "invalid_compression",
        ),
        case("lz64 hint, plain body", "/e/?compression=lz64", good.clone(), 400, "invalid_compression"),
        case(
            "missing token",
            "/batch/",
            serde_json::to_vec(&json!({"batch": [good_event]})).expect("json"),
            401,
            "missing_token",
        ),
        case(
            "personal API key as token",
            "/batch/",
            serde_json::to_vec(&json!({"api_key": "phx_personal", "batch": [good_event]})).expect("json"),
            401,
            "personal_api_key",
        ),
        case(
            "unknown token",
            "/batch/",
            serde_json::to_vec(&json!({"api_key": "phc_nobody", "batch": [good_event]})).expect("json"),
            401,
            "unknown_token",
        ),
        case(
            "overlong token",
            "/batch/",
            serde_json::to_vec(&json!({"api_key": "t".repeat(65), "batch": [good_event]})).expect("json"),
            401,
            "invalid_token",
        ),
        case(
            "mixed tokens",
            "/e/",
            serde_json::to_vec(&json!([
                {"event": "e", "properties": {"distinct_id": "d", "token": TOKEN}},
                {"event": "e", "properties": {"distinct_id": "d", "token": "phc_other"}},
            ]))
            .expect("json"),
            400,
            "multiple_tokens",
        ),
        case("missing event", "/batch/", batch(json!([{"distinct_id": "d"}])), 400, "missing_event_name"),
        case("missing distinct_id", "/batch/", batch(json!([{"event": "e"}])), 400, "missing_distinct_id"),
        case(
            "empty distinct_id",
            "/batch/",
            batch(json!([{"event": "e", "distinct_id": ""}])),
            400,
            "missing_distinct_id",
        ),
        case(
            "bad uuid",
            "/batch/",
            batch(json!([{"event": "e", "distinct_id": "d", "uuid": "not-a-uuid"}])),
            400,
            "invalid_uuid",
        ),
        case("empty batch", "/batch/", batch(json!([])), 400, "empty_batch"),
        case("oversized body", "/e/", vec![b' '; 3 * 1024 * 1024], 413, "payload_too_large"),
        case("empty body", "/batch/", Vec::new(), 400, "empty_payload"),
        case("non-UTF-8", "/batch/", non_utf8, 400, "invalid_payload"),
        case("deep nesting", "/batch/", deep, 400, "invalid_payload"),
        case("not an object", "/batch/", b"42".to_vec(), 400, "invalid_payload"),
    ];
    let mut declared = case("gzip header, plain body", "/batch/", good, 400, "invalid_compression");
    declared.headers.push(("content-encoding", "gzip"));
    all.push(declared);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_their_status_and_code() {
    let mut server = TestServer::start(BIN);
    let client = http();
    let mut failures = Vec::new();
    for case in cases() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in &case.headers {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        let response = client
            .post(format!("{}{}", server.url, case.path))
            .headers(headers)
            .body(case.body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: request failed: {e}", case.name));
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if status != case.status || body["code"] != case.code {
            failures
                .push(format!("{}: got {status} {body}, wanted {} {}", case.name, case.status, case.code));
        }
        if body["detail"].as_str().is_none_or(str::is_empty) {
            failures.push(format!("{}: no detail in {body}", case.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    let alive = client.get(format!("{}/_liveness", server.url)).send().await.expect("liveness");
    assert_eq!(alive.status(), 200, "the server survived every bad input");
    server.stop();
    assert!(server.read_log().is_empty(), "no bad request left anything in the log");
}

/// Posts JSON without a content type, as sendBeacon and many SDKs do.
async fn post(client: &reqwest::Client, url: String, body: serde_json::Value) -> reqwest::Response {
    client.post(url).body(serde_json::to_vec(&body).expect("json")).send().await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_details_cors_beacon_engage_and_skew() {
    let mut server = TestServer::start(BIN);
    let client = http();
    let url = &server.url;

    let preflight = client
        .request(reqwest::Method::OPTIONS, format!("{url}/e/"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-custom")
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), 200);
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert!(headers["access-control-allow-headers"].to_str().expect("ascii").contains("x-custom"));
    let plain_options =
        client.request(reqwest::Method::OPTIONS, format!("{url}/batch")).send().await.expect("options");
    assert_eq!(plain_options.status(), 200);

    let beacon = post(
        &client,
        format!("{url}/e/?beacon=1"),
        json!({"event": "b", "distinct_id": "beacon", "token": TOKEN}),
    )
    .await;
    assert_eq!(beacon.status(), 204);

    let engage = post(
        &client,
        format!("{url}/engage/"),
        json!({"$set": {"a": 1}, "distinct_id": "engaged", "token": TOKEN}),
    )
    .await;
    assert_eq!(engage.status(), 200);
    assert_eq!(engage.json::<serde_json::Value>().await.expect("json"), json!({"status": 1}));

    // A client whose clock is an hour fast: its timestamps move back an hour.
    let now = chrono::Utc::now();
    let fast = now + chrono::TimeDelta::hours(1);
    let skewed = post(
        &client,
        format!("{url}/batch"),
        json!({
            "api_key": TOKEN,
            "sent_at": fast.to_rfc3339(),
            "batch": [
                {"event": "skewed", "distinct_id": "s", "timestamp": fast.to_rfc3339()},
                {"event": "offset", "distinct_id": "s", "offset": 60_000},
                {"event": "perf", "distinct_id": "s"},
                {"event": "$performance_event", "distinct_id": "s"},
            ],
        }),
    )
    .await;
    assert_eq!(skewed.status(), 200);

    // Absurd clocks are answered with the server time, not a panic.
    let absurd = post(
        &client,
        format!("{url}/batch/?compression=identity"),
        json!({
            "api_key": TOKEN,
            "sent_at": "+200000-01-01T00:00:00",
            "batch": [
                {"event": "far", "distinct_id": "s", "timestamp": "-200000-01-01T00:00:00"},
                {"event": "huge_offset", "distinct_id": "s", "offset": 1e16},
            ],
        }),
    )
    .await;
    assert_eq!(absurd.status(), 200);

    let x_forwarded = client
        .post(format!("{url}/i/v0/e/"))
        .header("x-forwarded-for", "203.0.113.9, 10.0.0.1")
        .body(serde_json::to_vec(&json!({"event": "ip", "distinct_id": 7, "api_key": TOKEN})).expect("json"))
        .send()
        .await
        .expect("forwarded");
    assert_eq!(x_forwarded.status(), 200);
    server.stop();

    let log = server.read_log();
    let by_event =
        |name: &str| log.iter().find(|e| e.event == name).unwrap_or_else(|| panic!("{name} stored"));
    assert_eq!(log.len(), 8, "the $performance_event was dropped: {log:?}");
    for name in ["far", "huge_offset"] {
        let event = by_event(name);
        assert_eq!(event.timestamp, event.now, "{name} gets the server time");
    }
    assert_eq!(by_event("$identify").distinct_id, "engaged");
    let skewed = by_event("skewed");
    let corrected = chrono::DateTime::parse_from_rfc3339(&skewed.timestamp).expect("rfc3339");
    assert!(
        (corrected.with_timezone(&chrono::Utc) - now).num_seconds().abs() < 5,
        "skew removed: {skewed:?}"
    );
    let offset = by_event("offset");
    let stored_now = chrono::DateTime::parse_from_rfc3339(&offset.now).expect("rfc3339");
    let at = chrono::DateTime::parse_from_rfc3339(&offset.timestamp).expect("rfc3339");
    assert_eq!((stored_now - at).num_milliseconds(), 60_000);
    let ip = by_event("ip");
    assert_eq!((ip.ip.as_str(), ip.distinct_id.as_str()), ("203.0.113.9", "7"));
    assert_eq!(by_event("b").ip, "127.0.0.1");
}

#[test]
fn a_body_that_never_arrives_gets_408() {
    use std::io::{Read, Write as _};
    let server = TestServer::start_with_env(BIN, &[("WARREN_CAPTURE__BODY_TIMEOUT_SECS", "1")]);
    let address = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    // Promise 1000 bytes, send 10, then wait.
    stream
        .write_all(b"POST /batch/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"batch\":")
        .expect("write");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("body_timeout") {
        let read = stream.read(&mut chunk).expect("the server answers before closing");
        assert!(read > 0, "closed without an answer: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}
