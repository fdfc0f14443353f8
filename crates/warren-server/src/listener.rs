//! The HTTP/1 listener: hyper with a cap on open connections and on each
//! connection's read buffer, a deadline for every request's headers, an
//! immediate 503 for connections beyond the cap, and a stop that gives the
//! requests in flight a deadline. Written here rather than taken from
//! `axum::serve`, which offers none of these; without them, what a crowd of
//! clients (or a few that open connections and never finish a request) can
//! make Warren hold grows with the crowd.
//!
//! One timer covers every client that holds a connection without using it.
//! hyper's `header_read_timeout` starts whenever a connection waits for a
//! request head — when it opens, and again as soon as an answer has been
//! written (hyper 1.x: `Conn::poll_read_head` arms it, `State::idle` asks
//! for that read at once) — and bytes arriving do not reset it. So a client
//! that never speaks, one that sends its headers a byte at a time, and a
//! keep-alive connection idle between requests are all closed when it runs
//! out. Bodies have a deadline of their own (`capture.body_timeout_secs`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::Service;
use warren_core::config::HttpConfig;
use warren_core::metrics as names;

use crate::ApiError;

/// Refusals being written at once. Beyond, a connection over the cap is
/// closed without one, so a flood of connections cannot make the refusals
/// themselves pile up.
const REFUSALS_AT_ONCE: usize = 128;
/// How long one refusal may take, written and lingered over.
const REFUSAL_TIME: Duration = Duration::from_secs(1);
/// How long the connections cut at the shutdown deadline get to let go of
/// their sockets before [`serve`] returns.
const CUT_GRACE: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` resolves, then gives the
/// requests in flight `limits.shutdown_timeout_secs` to be answered and
/// cuts the connections still open after that.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpConfig,
    shutdown: impl Future<Output = ()>,
) {
    // The drain takes every permit back at once, counted in u32.
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let connections = Arc::new(Semaphore::new(max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let refusal: Arc<[u8]> = ApiError::TooManyConnections.http1_close().into();
    let graceful = GracefulShutdown::new();
    let (cut, _) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs.max(1)))
        .max_buf_size(limits.read_buffer_bytes.max(8192));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause, retry.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Accepting even at the cap, rather than leaving connections in the
        // kernel's queue, is what lets the excess hear "503, retry later".
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            refuse(stream, peer, &refusals, &refusal);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().call(request.map(Body::new))
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let mut cut = cut.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => {
                    if let Err(error) = ended {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                }
                // Dropping the connection closes its socket and drops the
                // request being handled; also when the sender is gone.
                _ = cut.wait_for(|cut| *cut) => {}
            }
            drop(permit);
        });
    }
    drop(listener);
    let deadline = Duration::from_secs(limits.shutdown_timeout_secs);
    if tokio::time::timeout(deadline, graceful.shutdown()).await.is_err() {
        let open = max - connections.available_permits();
        let _ = cut.send(true);
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(CUT_GRACE, connections.acquire_many(all)).await;
        tracing::warn!(
            cut = open,
            deadline_secs = limits.shutdown_timeout_secs,
            "connections still open at the shutdown deadline were cut"
        );
    }
}

/// Answers a connection over the cap with 503 `too_many_connections` and
/// closes it, in a task of its own so the accept loop never waits on a
/// client; when [`REFUSALS_AT_ONCE`] are being written already, closes it
/// without a word.
fn refuse(stream: TcpStream, peer: SocketAddr, refusals: &Arc<Semaphore>, answer: &Arc<[u8]>) {
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        metrics::counter!(names::HTTP_CONNECTIONS_REFUSED, "answer" => "none").increment(1);
        return;
    };
    metrics::counter!(names::HTTP_CONNECTIONS_REFUSED, "answer" => "503").increment(1);
    tracing::debug!(%peer, "refused a connection over the cap");
    let answer = answer.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_TIME, answer_and_close(stream, &answer)).await;
        drop(permit);
    });
}

/// Writes `answer`, tells the client nothing more comes, then reads and
/// drops what it still sends until it closes: a socket closed with input
/// unread sends a reset, which can destroy the answer before the client
/// has read it.
async fn answer_and_close(mut stream: TcpStream, answer: &[u8]) -> std::io::Result<()> {
    stream.write_all(answer).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 1024];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::sync::{oneshot, Notify};

    use super::*;

    /// Serves `/`, which answers, and `/hang`, which notifies `hanging` and
    /// never answers, with `limits` on a free port; stops when the sender is
    /// used or dropped.
    async fn start(
        limits: HttpConfig,
        hanging: Arc<Notify>,
    ) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let hang = move || async move {
            hanging.notify_one();
            std::future::pending::<()>().await
        };
        let app = Router::new().route("/", get(|| async { "ok" })).route("/hang", get(hang));
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            serve(listener, app, &limits, async {
                let _ = stopped.await;
            })
            .await;
        });
        (address, stop, served)
    }

    /// Everything the server sends until it closes the connection.
    async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
        let mut received = Vec::new();
        let read = stream.read_to_end(&mut received);
        let _ = tokio::time::timeout(Duration::from_secs(10), read).await.expect("closed in time");
        received
    }

    #[tokio::test]
    async fn a_connection_over_the_cap_is_answered_503_and_closed() {
        let limits = HttpConfig { max_connections: 1, ..HttpConfig::default() };
        let (address, stop, served) = start(limits, Arc::default()).await;
        let held = TcpStream::connect(address).await.expect("first");
        let mut over = TcpStream::connect(address).await.expect("second");
        let answer = String::from_utf8(read_to_close(&mut over).await).expect("text");
        assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{answer}");
        assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
        let body = answer.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
        let body: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(body["code"], "too_many_connections");
        drop(held);
        drop(stop);
        served.await.expect("served");
    }

    #[tokio::test]
    async fn a_connection_without_a_request_is_closed_at_the_header_deadline() {
        let limits = HttpConfig { header_read_timeout_secs: 1, ..HttpConfig::default() };
        let (address, stop, served) = start(limits, Arc::default()).await;
        let mut idle = TcpStream::connect(address).await.expect("connect");
        assert!(read_to_close(&mut idle).await.is_empty(), "closed without an answer");
        let mut kept = TcpStream::connect(address).await.expect("connect");
        kept.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("request");
        let answer = String::from_utf8(read_to_close(&mut kept).await).expect("text");
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
            "answered, then closed idle: {answer}"
        );
        drop(stop);
        served.await.expect("served");
    }

    #[tokio::test]
    async fn the_stop_cuts_connections_still_open_at_its_deadline() {
        let limits = HttpConfig { shutdown_timeout_secs: 1, ..HttpConfig::default() };
        let hanging = Arc::new(Notify::new());
        let (address, stop, served) = start(limits, hanging.clone()).await;
        let mut open = TcpStream::connect(address).await.expect("connect");
        open.write_all(b"GET /hang HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("request");
        hanging.notified().await;
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("stopped in time")
            .expect("served");
        assert!(read_to_close(&mut open).await.is_empty(), "cut without an answer");
    }
}
