//! More load than the server has room for: the excess is answered 503 with
//! a retry hint, memory stays bounded, and what was acknowledged is stored.

use std::collections::HashSet;

use serde_json::json;
use warren_testkit::{TestServer, TOKEN};

use crate::{http, BIN};

const CLIENTS: usize = 32;
const REQUESTS_PER_CLIENT: usize = 4;
const BATCH: usize = 500;

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse::<f64>().ok()).expect("number") / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_with_503_and_memory_stays_bounded() {
    let mut server = TestServer::start_with_env(
        BIN,
        &[
            ("WARREN_CAPTURE__MAX_INFLIGHT_BYTES", "8000000"),
            ("WARREN_CAPTURE__MAX_CONCURRENT_REQUESTS", "12"),
            ("WARREN_EVENT_LOG__MAX_PENDING_BYTES", "2000000"),
            ("WARREN_EVENT_LOG__APPEND_TIMEOUT_MS", "20"),
        ],
    );
    let mut tasks = Vec::new();
    for client_id in 0..CLIENTS {
        let url = server.url.clone();
        tasks.push(tokio::spawn(async move {
            let client = http();
            let mut outcomes = Vec::new();
            for request in 0..REQUESTS_PER_CLIENT {
                let events: Vec<_> = (0..BATCH)
                    .map(|i| {
                        json!({
                            "event": "load",
                            "distinct_id": format!("c{client_id}-{}", i % 10),
                            "properties": {"request": request, "i": i, "pad": "p".repeat(900)},
                        })
                    })
                    .collect();
                let body = json!({"api_key": TOKEN, "batch": events});
                let response = client.post(format!("{url}/batch/")).json(&body).send().await.expect("send");
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let answer: serde_json::Value = response.json().await.unwrap_or_default();
                outcomes.push((status, retry_after, answer["code"].as_str().unwrap_or("").to_string()));
            }
            outcomes
        }));
    }
    let mut accepted = 0;
    let mut refused = 0;
    for task in tasks {
        for (status, retry_after, code) in task.await.expect("client") {
            match status {
                200 => accepted += 1,
                503 => {
                    assert!(retry_after, "a 503 says when to retry");
                    assert_eq!(code, "overloaded");
                    refused += 1;
                }
                other => panic!("unexpected status {other} ({code})"),
            }
        }
    }
    assert!(refused > 0, "the load exceeded the budget, so some requests were refused");
    assert!(accepted > 0, "and some got through");
    let rss = peak_rss_mib(server.pid());
    assert!(rss < 300.0, "peak RSS {rss:.0} MiB under overload");
    let alive = http().get(format!("{}/_liveness", server.url)).send().await.expect("liveness");
    assert_eq!(alive.status(), 200);
    server.stop();

    let log = server.read_log();
    assert_eq!(log.len(), accepted * BATCH, "every accepted batch is stored, nothing else");
    let distinct: HashSet<_> = log.iter().map(|event| event.uuid).collect();
    assert_eq!(distinct.len(), log.len());
    eprintln!("overload: {accepted} requests accepted, {refused} refused, peak RSS {rss:.0} MiB");
}

/// Opens a request on raw TCP that announces `length` body bytes and sends
/// one: the server admits it, then waits for the rest, holding its share
/// of the budget until the connection is dropped.
async fn holding(server: &TestServer, path: &str, length: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let address = server.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.expect("send the head");
    stream
}

/// Posts `body` to `path` until the answer's status is `want` (the holder
/// may not be admitted yet), and returns that answer's code and whether it
/// said when to retry.
async fn until_status(
    server: &TestServer,
    path: &str,
    body: &serde_json::Value,
    want: u16,
) -> (String, bool) {
    let started = std::time::Instant::now();
    loop {
        let response = http().post(format!("{}{path}", server.url)).json(body).send().await.expect("send");
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key("retry-after");
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if status == want {
            return (answer["code"].as_str().unwrap_or_default().to_string(), retry_after);
        }
        assert!(started.elapsed().as_secs() < 10, "{path} never answered {want}: {status} {answer}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The SDKs' `/flags` and `/decide` share capture's budget: while capture
/// holds all its bytes they are answered 503 `overloaded` as capture is;
/// flag requests in flight hold request slots capture then lacks; and once
/// the holders are gone every route answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_requests_share_captures_admission_budget() {
    let server = TestServer::start_with_env(
        BIN,
        &[("WARREN_CAPTURE__MAX_CONCURRENT_REQUESTS", "2"), ("WARREN_CAPTURE__MAX_INFLIGHT_BYTES", "100000")],
    );
    let flags = json!({"token": TOKEN, "distinct_id": "u1"});
    let batch = json!({"api_key": TOKEN, "batch": [{"event": "e", "distinct_id": "u1"}]});

    let capture = holding(&server, "/batch/", 100_000).await;
    for path in ["/flags/", "/decide/"] {
        let (code, retry_after) = until_status(&server, path, &flags, 503).await;
        assert_eq!(
            (code.as_str(), retry_after),
            ("overloaded", true),
            "{path} while capture holds the bytes"
        );
    }
    drop(capture);
    until_status(&server, "/flags/", &flags, 200).await;

    let first = holding(&server, "/flags/", 100).await;
    let second = holding(&server, "/decide/", 100).await;
    let (code, retry_after) = until_status(&server, "/batch/", &batch, 503).await;
    assert_eq!((code.as_str(), retry_after), ("overloaded", true), "capture while flag calls hold the slots");
    drop((first, second));
    until_status(&server, "/batch/", &batch, 200).await;
    until_status(&server, "/decide/", &flags, 200).await;
}
