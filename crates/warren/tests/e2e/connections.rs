//! Connections cannot starve the server: thousands of sockets that never
//! finish a request (half say nothing, half send their headers a byte a
//! second) fill the connection cap; the excess is answered 503 at once,
//! the rest are closed when the header deadline runs out, posthog-python
//! gets its events stored all the same, and SIGTERM stops the process
//! within its deadline while sockets are still open. Also: `/metrics` on
//! an admin listener of its own.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use warren_core::ADMIN_LISTENING_LINE;
use warren_testkit::{require, TestServer, TOKEN};

use crate::expect::{assert_log_matches, parse_lines};
use crate::query::wait_for_events;
use crate::sdk::python;
use crate::{http, repo_root, BIN};

/// `[http] max_connections` of the server under test.
const CAP: usize = 1000;
/// Sockets that never finish a request, twice the cap.
const HOLDERS: usize = 2 * CAP;
/// `[http] header_read_timeout_secs`.
const HEADER_TIMEOUT_SECS: u64 = 8;
/// `[http] shutdown_timeout_secs`, below the header timeout so that the
/// deadline, not the header timeout, is what ends the sockets open at
/// SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(4);
/// Events posthog-python sends while the cap is full.
const EVENTS: usize = 100;
/// No socket of this test outlives this, whatever the server does.
const GIVE_UP: Duration = Duration::from_secs(90);
/// Sockets connected at once, well below the listen backlog.
const WAVE: usize = 100;
/// Headers a slow socket sends a byte a second; it never gets to the end.
const SLOW_HEADERS: &[u8] =
    b"POST /batch/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Pad: ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Connects and sends nothing.
    Idle,
    /// Sends [`SLOW_HEADERS`] a byte a second.
    Slow,
    /// Had a request answered, then sends nothing.
    KeepAlive,
}

/// What one socket saw.
#[derive(Debug)]
struct Seen {
    kind: Kind,
    /// Bytes the server sent, after any answer [`keep_alive`] read.
    received: Vec<u8>,
    /// Bytes of [`SLOW_HEADERS`] sent.
    sent: usize,
    /// When the server closed it; `None` if it was still open at
    /// [`GIVE_UP`].
    closed_at: Option<Instant>,
}

/// Connects `count` sockets that never complete a request, idle and slow
/// by turns, each held until the server closes it or until `give_up`.
/// They connect in waves, each once the server has accepted the last: a
/// burst beyond the listen backlog is dropped by the kernel (SYN cookies),
/// leaving sockets that only this side believes are open.
async fn hold_many(address: SocketAddr, count: usize, give_up: Instant) -> Vec<JoinHandle<Seen>> {
    let mut holders = Vec::with_capacity(count);
    while holders.len() < count {
        let wave: Vec<_> =
            (0..WAVE.min(count - holders.len())).map(|_| tokio::spawn(TcpStream::connect(address))).collect();
        for connecting in wave {
            let stream = connecting.await.expect("connecting").expect("connected");
            let kind = if holders.len() % 2 == 0 { Kind::Idle } else { Kind::Slow };
            holders.push(tokio::spawn(hold(stream, kind, give_up)));
        }
        wait_for_accepts(address.port()).await;
    }
    holders
}

/// Waits until nothing waits in the kernel's queue for the server's accept
/// on `port` (for ten seconds at most).
async fn wait_for_accepts(port: u16) {
    let until = Instant::now() + Duration::from_secs(10);
    while accept_queue(port) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Connections waiting for the server's accept on `port`: the `rx_queue`
/// of its listening socket in `/proc/net/tcp`.
fn accept_queue(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields.get(3) == Some(&"0A") && fields.get(1)?.ends_with(&local);
            let queued = fields.get(4)?.split(':').nth(1)?;
            listening.then(|| usize::from_str_radix(queued, 16).ok()).flatten()
        })
        .sum()
}

async fn hold(stream: TcpStream, kind: Kind, give_up: Instant) -> Seen {
    let mut seen = Seen { kind, received: Vec::new(), sent: 0, closed_at: None };
    let (mut reader, mut writer) = stream.into_split();
    let mut trickle = tokio::time::interval(Duration::from_secs(1));
    let mut chunk = [0u8; 4096];
    loop {
        tokio::select! {
            read = reader.read(&mut chunk) => match read {
                Ok(0) | Err(_) => {
                    seen.closed_at = Some(Instant::now());
                    break;
                }
                Ok(n) if seen.received.len() < 64 * 1024 => seen.received.extend_from_slice(&chunk[..n]),
                Ok(_) => break,
            },
            _ = trickle.tick(), if kind == Kind::Slow => {
                let byte = SLOW_HEADERS.get(seen.sent).copied().unwrap_or(b'a');
                if writer.write_all(&[byte]).await.is_ok() {
                    seen.sent += 1;
                }
            }
            () = tokio::time::sleep_until(give_up.into()) => break,
        }
    }
    seen
}

/// A connection whose `GET /_liveness` was answered, now idle between
/// requests.
async fn keep_alive(address: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connecting");
    stream.write_all(b"GET /_liveness HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.expect("request");
    let answer = read_until(&mut stream, b"\r\n\r\nok").await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    stream
}

/// A `POST /batch/` in flight: its headers are sent and the handler is
/// reading the body (hyper says `100 Continue` once it does), of which the
/// first `sent` bytes have been sent.
async fn in_flight(address: SocketAddr, body: &[u8], sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connecting");
    let head = format!(
        "POST /batch/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("headers");
    let continued = read_until(&mut stream, b"\r\n\r\n").await;
    assert!(continued.starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&continued));
    stream.write_all(&body[..sent]).await.expect("part of the body");
    stream
}

/// Reads until `end` has arrived, or the connection closes.
async fn read_until(stream: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        while !received.windows(end.len()).any(|window| window == end) {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), read).await;
    received
}

/// Asserts `answer` is the refusal of a connection over the cap.
fn assert_refusal(answer: &[u8]) {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not an answer: {text}"));
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503 "), "{text}");
    assert!(head.contains("\r\nconnection: close"), "{text}");
    assert!(head.contains("\r\nretry-after: 1"), "{text}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(body["code"], "too_many_connections", "{text}");
    assert_eq!(body["type"], "server_error", "{text}");
}

/// Lets this process (and the server it starts, which inherits it) open
/// `wanted` files, sockets included.
fn raise_open_files(wanted: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(hard >= wanted, "this test opens {wanted} sockets; the hard limit of open files is {hard}");
    if soft < wanted {
        setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).expect("setrlimit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_cannot_starve_the_server() {
    let Some(python) = python() else {
        require(false, "posthog-python in .venv");
        return;
    };
    raise_open_files(4 * HOLDERS as u64);
    let (cap, header_timeout) = (CAP.to_string(), HEADER_TIMEOUT_SECS.to_string());
    let shutdown_timeout = SHUTDOWN_TIMEOUT.as_secs().to_string();
    let mut server = TestServer::start_with_env(
        BIN,
        &[
            ("WARREN_HTTP__MAX_CONNECTIONS", cap.as_str()),
            ("WARREN_HTTP__HEADER_READ_TIMEOUT_SECS", header_timeout.as_str()),
            ("WARREN_HTTP__SHUTDOWN_TIMEOUT_SECS", shutdown_timeout.as_str()),
            // Only the shutdown deadline can end a stalled body early.
            ("WARREN_CAPTURE__BODY_TIMEOUT_SECS", "300"),
        ],
    );
    let address: SocketAddr = server.url.trim_start_matches("http://").parse().expect("address");

    // Twice the cap of sockets that never finish a request, and beside
    // them posthog-python, whose uploads are refused while the cap is
    // full and retried.
    let give_up = Instant::now() + GIVE_UP;
    let holders = hold_many(address, HOLDERS, give_up).await;
    let url = server.url.clone();
    let sender = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(repo_root().join("tests/sdk/python_retrying.py"))
            .args([&url, TOKEN, &EVENTS.to_string()])
            .current_dir(repo_root().join("tests/sdk"))
            .output()
            .expect("running the sender")
    });
    let mut seen = Vec::new();
    for holder in holders {
        seen.push(holder.await.expect("holder"));
    }
    let output = sender.await.expect("sender");
    assert!(output.status.success(), "posthog-python gave up: {}", String::from_utf8_lossy(&output.stderr));
    let expected = parse_lines(&output.stdout);
    assert_eq!(expected.len(), EVENTS, "the sender reported what it sent");

    // Every socket was closed by the server: those over the cap at once,
    // with the refusal when there was room to write it, and those within
    // the cap, never answered, when the header deadline ran out (the slow
    // ones while still sending).
    let open = seen.iter().filter(|s| s.closed_at.is_none()).count();
    assert_eq!(open, 0, "sockets the server never closed");
    let refused: Vec<&Seen> = seen.iter().filter(|s| !s.received.is_empty()).collect();
    for socket in &refused {
        assert_refusal(&socket.received);
    }
    assert!(!refused.is_empty(), "connections over the cap were answered 503");
    let unanswered: Vec<&Seen> = seen.iter().filter(|s| s.received.is_empty()).collect();
    assert!(unanswered.len() >= CAP - 10, "about the cap's worth was held: {}", unanswered.len());
    let slow = unanswered.iter().filter(|s| s.kind == Kind::Slow).map(|s| s.sent).max().unwrap_or(0);
    assert!(slow >= 2, "slow sockets within the cap sent {slow} bytes before being closed");
    assert!(slow < SLOW_HEADERS.len(), "and never finished their headers");
    assert!(unanswered.iter().any(|s| s.kind == Kind::Idle), "idle sockets within the cap were closed");
    eprintln!(
        "connections: of {HOLDERS} sockets, {} answered 503, {} closed without an answer",
        refused.len(),
        unanswered.len()
    );

    // A keep-alive connection idle between requests is closed too.
    let give_up = Instant::now() + GIVE_UP;
    let idle = hold(keep_alive(address).await, Kind::KeepAlive, give_up).await;
    assert!(idle.closed_at.is_some() && idle.received.is_empty(), "{idle:?}");

    // What posthog-python sent is in the events table.
    wait_for_events(&server, EVENTS as i64).await;

    // SIGTERM with sockets open: new idle and slow ones, idle keep-alive
    // ones, two requests in flight that would wait for their bodies far
    // past the deadline, and one whose body comes a second after SIGTERM.
    let give_up = Instant::now() + GIVE_UP;
    let mut held = hold_many(address, 100, give_up).await;
    for _ in 0..4 {
        held.push(tokio::spawn(hold(keep_alive(address).await, Kind::KeepAlive, give_up)));
    }
    let stalled_body = br#"{"api_key": "never", "batch": []}"#;
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(in_flight(address, stalled_body, 5).await);
    }
    let drained = serde_json::to_vec(&serde_json::json!({
        "api_key": TOKEN,
        "batch": [{"event": "drained", "distinct_id": "drain-ok"}],
    }))
    .expect("json");
    let half = drained.len() / 2;
    let mut finishing = in_flight(address, &drained, half).await;

    let signalled = Instant::now();
    let stopping = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    finishing.write_all(&drained[half..]).await.expect("the rest of the body");
    let answer = read_until(&mut finishing, b"}").await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "a request in flight is answered within the deadline: {}",
        String::from_utf8_lossy(&answer)
    );
    let server = stopping.await.expect("stopping");
    let took = signalled.elapsed();
    assert!(took >= SHUTDOWN_TIMEOUT, "the stalled requests had until the deadline ({took:?})");
    assert!(
        took < SHUTDOWN_TIMEOUT + Duration::from_secs(20),
        "the process exited soon after the deadline, not when the bodies' timeout ran out ({took:?})"
    );
    eprintln!("connections: SIGTERM to exit took {took:?} with a {SHUTDOWN_TIMEOUT:?} deadline");
    for mut stream in stalled {
        let rest = read_until(&mut stream, b"\r\n\r\n").await;
        assert!(rest.is_empty(), "a cut request gets no answer: {}", String::from_utf8_lossy(&rest));
    }
    for holder in held {
        let seen = holder.await.expect("holder");
        let closed = seen.closed_at.expect("closed by the stop");
        assert!(seen.received.is_empty(), "{seen:?}");
        if seen.kind != Kind::Slow {
            // Closed by the stop itself, not by the deadline's cut: a
            // connection between requests holds no request in flight.
            assert!(closed - signalled < SHUTDOWN_TIMEOUT, "a {:?} connection held the stop", seen.kind);
        }
    }

    // The log holds what posthog-python sent and the drained request.
    let mut log = server.read_log();
    let drained_at =
        log.iter().position(|event| event.distinct_id == "drain-ok").expect("drained event stored");
    log.remove(drained_at);
    assert_log_matches(&expected, &log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_served_on_an_admin_listener_alone() {
    let mut server = TestServer::start_with_env(BIN, &[("WARREN_HTTP__ADMIN_LISTEN", "127.0.0.1:0")]);
    let admin = server
        .banner
        .iter()
        .find_map(|line| line.strip_prefix(ADMIN_LISTENING_LINE))
        .expect("the admin listener's address is printed")
        .to_string();
    assert_ne!(admin, server.url);
    let public = http().get(format!("{}/metrics", server.url)).send().await.expect("public /metrics");
    assert_eq!(public.status(), 404, "no /metrics on the public port");
    let alive = http().get(format!("{}/_liveness", server.url)).send().await.expect("liveness");
    assert_eq!(alive.status(), 200);
    let scraped = http().get(format!("{admin}/metrics")).send().await.expect("admin /metrics");
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.expect("text");
    assert!(text.contains("warren_http_requests_total{route=\"/_liveness\""), "{text}");
    for probe in ["_liveness", "_readiness"] {
        let answer = http().get(format!("{admin}/{probe}")).send().await.expect("admin probe");
        assert_eq!(answer.status(), 200, "the admin listener answers /{probe} too");
    }
    let other = http().get(format!("{admin}/api/projects/")).send().await.expect("admin API");
    assert_eq!(other.status(), 404, "the admin listener serves /metrics and the probes alone");
    server.stop();
}
