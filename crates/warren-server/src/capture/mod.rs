//! The capture API: PostHog's event routes, from request to durable log
//! record, as the official SDKs use them: where the payload is, how it is
//! encoded, which token and clock apply, and what each answer means.

mod events;
mod lz64;
mod payload;
mod recordings;
pub(crate) mod timestamp;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use http_body_util::BodyExt;
use warren_core::event::{partition_key, CapturedEvent};
use warren_core::metrics as names;
use warren_log::AppendRecord;

use self::events::{event_token, parse_batch, validate_event, validate_token};
pub(crate) use self::payload::{decode, CaptureQuery};
use self::timestamp::EventClock;
use crate::admission::Ticket;
use crate::{ApiError, AppState};

/// What a route changes about decoding.
#[derive(Debug, Clone, Copy)]
struct RouteKind {
    /// `/e`, `/capture`, `/engage`, `/track`: base64 may be doubled.
    legacy: bool,
    /// `/engage`: an event without a name is `$identify`.
    engage: bool,
    /// `/batch` and `/s`: the larger body limit.
    batch: bool,
    /// `/s`: session recordings, `$snapshot` events only.
    recordings: bool,
}

/// Parse-time memory per JSON object, reserved from the budget up front.
const PARSE_BYTES_PER_OBJECT: usize = 64;

const ROUTES: &[(&str, RouteKind)] = &[
    ("/e", RouteKind { legacy: true, engage: false, batch: false, recordings: false }),
    ("/i/v0/e", RouteKind { legacy: false, engage: false, batch: false, recordings: false }),
    ("/track", RouteKind { legacy: true, engage: false, batch: false, recordings: false }),
    ("/engage", RouteKind { legacy: true, engage: true, batch: false, recordings: false }),
    ("/capture", RouteKind { legacy: true, engage: false, batch: false, recordings: false }),
    ("/batch", RouteKind { legacy: false, engage: false, batch: true, recordings: false }),
    ("/s", RouteKind { legacy: false, engage: false, batch: true, recordings: true }),
];

/// Whether `path` (a route pattern, without the trailing slash) is one of
/// capture's.
pub(crate) fn is_route(path: &str) -> bool {
    ROUTES.iter().any(|(route, _)| *route == path)
}

/// The capture routes, each with and without a trailing slash.
pub fn routes() -> Router<AppState> {
    let methods = MethodFilter::GET.or(MethodFilter::POST).or(MethodFilter::OPTIONS);
    let mut router = Router::new();
    for (path, kind) in ROUTES {
        let kind = *kind;
        let handler = move |state: State<AppState>, peer: ConnectInfo<SocketAddr>, request: Request<Body>| {
            capture(state, peer, kind, request)
        };
        router = router.route(path, on(methods, handler)).route(&format!("{path}/"), on(methods, handler));
    }
    router
}

async fn capture(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    kind: RouteKind,
    request: Request<Body>,
) -> Result<Response, ApiError> {
    if request.method() == axum::http::Method::OPTIONS {
        return Ok(StatusCode::OK.into_response());
    }
    let limit = if kind.batch { state.capture.max_batch_bytes } else { state.capture.max_event_bytes };
    let query = CaptureQuery::parse(request.uri().query());
    let (parts, body) = request.into_parts();
    // Held until the answer: the body, its decoded form and the records
    // built from it are all alive until the log has them.
    let (mut ticket, body) = admitted_body(&state, &parts.headers, body, limit).await?;
    metrics::histogram!(names::CAPTURE_PAYLOAD_BYTES).record(body.len() as f64);

    let mut reserve = |bytes| ticket.reserve(bytes);
    let decoded = payload::decode(&query, &parts.headers, &body, kind.legacy, limit, &mut reserve)?;
    // Parsing allocates per object; the log records take about the JSON's size.
    reserve(decoded.json.len() + decoded.objects * PARSE_BYTES_PER_OBJECT)?;
    let batch = parse_batch(&decoded.json, kind.engage)?;
    if batch.events.is_empty() {
        return Err(ApiError::EmptyBatch);
    }
    if kind.recordings {
        batch.events.iter().try_for_each(recordings::check_snapshot)?;
    }
    let events = batch.events.len() as u64;
    let result = store_batch(&state, &query, &parts.headers, peer, batch).await;
    if let Err(error) = &result {
        metrics::counter!(names::CAPTURE_EVENTS_DROPPED, "cause" => error.code()).increment(events);
    }
    result?;
    if query.beacon {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(serde_json::json!({ "status": 1 })).into_response())
}

/// Validates a parsed batch and appends it to the log; returns once durable.
/// The append is all or nothing, so an error answer stored none of the
/// batch and the SDK's retry of it stores each event once; an answer lost
/// after the append (a crash, a cut connection) leaves a retry that ingest
/// drops by (project, uuid).
async fn store_batch(
    state: &AppState,
    query: &CaptureQuery,
    headers: &HeaderMap,
    peer: SocketAddr,
    batch: events::Batch<'_>,
) -> Result<(), ApiError> {
    let token = validate_token(resolve_token(&batch)?)?;
    if !state.tokens.is_known(&token).await? {
        return Err(ApiError::UnknownToken);
    }

    let now = Utc::now();
    let sent_at = batch
        .sent_at
        .as_deref()
        .and_then(timestamp::parse)
        .or_else(|| query.sent_at_ms.and_then(timestamp::sent_at_from_millis));
    if let Some(sent_at) = sent_at {
        let skew = now.signed_duration_since(sent_at).num_milliseconds() as f64 / 1000.0;
        metrics::histogram!(names::CAPTURE_CLOCK_SKEW_SECONDS).record(skew);
    }
    let now_text = timestamp::format(now);
    let sent_at_text = sent_at.map(timestamp::format);
    let ip = client_ip(headers, peer);

    let mut records = Vec::with_capacity(batch.events.len());
    let mut dropped = 0u64;
    for raw in &batch.events {
        let Some(event) = validate_event(raw)? else {
            dropped += 1;
            continue;
        };
        let (ts, unparseable) = timestamp::corrected(EventClock {
            now,
            sent_at,
            timestamp: event.timestamp.as_deref(),
            offset_ms: event.offset_ms,
            ignore_sent_at: event.ignore_sent_at,
        });
        if unparseable {
            // The raw value stays in `data`, where ingestion reports it as
            // a warning to the project.
            metrics::counter!(names::CAPTURE_TIMESTAMP_UNPARSEABLE).increment(1);
        }
        let key = partition_key(&token, &event.distinct_id);
        let captured = CapturedEvent {
            uuid: event.uuid,
            distinct_id: event.distinct_id,
            ip: ip.clone(),
            data: event.data,
            now: now_text.clone(),
            sent_at: sent_at_text.clone(),
            token: token.clone(),
            event: event.event,
            timestamp: timestamp::format(ts),
            historical_migration: batch.historical_migration,
        };
        let value = serde_json::to_vec(&captured).map_err(|e| ApiError::Internal(e.to_string()))?;
        records.push(AppendRecord { key: key.into_bytes(), value, timestamp_ms: now.timestamp_millis() });
    }
    if dropped > 0 {
        metrics::counter!(names::CAPTURE_EVENTS_DROPPED, "cause" => "performance_event").increment(dropped);
    }
    let accepted = records.len() as u64;
    state.log.append(records).await?;
    metrics::counter!(names::CAPTURE_EVENTS_RECEIVED).increment(accepted);
    Ok(())
}

/// The batch's token: the batch-level one wins, else every event must agree.
fn resolve_token(batch: &events::Batch<'_>) -> Result<Option<String>, ApiError> {
    if batch.token.is_some() {
        return Ok(batch.token.clone());
    }
    let mut found: Option<String> = None;
    for event in &batch.events {
        if let Some(token) = event_token(event).map(|token| token.trim().to_string()) {
            match &found {
                Some(existing) if *existing != token => return Err(ApiError::MultipleTokens),
                Some(_) => {}
                None => found = Some(token),
            }
        }
    }
    Ok(found)
}

/// Admits a request to the budget of requests in flight and their bytes
/// (capture's, which the SDKs' flag routes share), then reads its body, at
/// most `limit` bytes. The ticket holds the body's share until dropped; a
/// refused body is read and dropped, so the client hears its 503.
pub(crate) async fn admitted_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<(Ticket, Bytes), ApiError> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    let ticket = match state.admission.admit(announced.unwrap_or(limit).min(limit)) {
        Ok(ticket) => ticket,
        Err(refused) => {
            // Dropping a body as it arrives costs no memory.
            discard_body(body, state.capture.body_timeout_secs).await;
            return Err(refused);
        }
    };
    let body = read_body(body, announced, limit, state.capture.body_timeout_secs).await?;
    Ok((ticket, body))
}

/// How much of a refused body is read and dropped so that the client hears
/// the answer; past this the connection is closed instead.
const MAX_DISCARD_BYTES: usize = 64 * 1024 * 1024;

/// Reads the body, up to `limit` bytes. An oversized body is read to its end
/// and dropped (within [`MAX_DISCARD_BYTES`]) so the client gets its 413
/// rather than a reset connection.
async fn read_body(
    mut body: Body,
    announced: Option<usize>,
    limit: usize,
    timeout_secs: u64,
) -> Result<Bytes, ApiError> {
    let read = async {
        // Sized once when the length is known, instead of doubling its way there.
        let mut collected = BytesMut::with_capacity(announced.unwrap_or(0).min(limit));
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::InvalidPayload(format!("could not read the body: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            if collected.len() + data.len() > limit {
                discard(&mut body).await;
                return Err(ApiError::PayloadTooLarge { limit });
            }
            collected.extend_from_slice(&data);
        }
        Ok(collected.freeze())
    };
    tokio::time::timeout(Duration::from_secs(timeout_secs), read)
        .await
        .unwrap_or(Err(ApiError::BodyTimeout { secs: timeout_secs }))
}

/// Reads and drops a body the server will not use, within the timeout.
async fn discard_body(mut body: Body, timeout_secs: u64) {
    let _ = tokio::time::timeout(Duration::from_secs(timeout_secs), discard(&mut body)).await;
}

async fn discard(body: &mut Body) {
    let mut dropped = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        dropped += frame.data_ref().map_or(0, |data| data.len());
        if dropped > MAX_DISCARD_BYTES {
            break;
        }
    }
}

/// The first `X-Forwarded-For` address, else the peer.
fn client_ip(headers: &HeaderMap, peer: SocketAddr) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(|ip| ip.trim().to_string())
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| peer.ip().to_string())
}

#[cfg(test)]
mod tests {
    use axum::http::{header, HeaderMap, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    /// Runs the whole decoding path: payload, shapes, validation.
    fn decode_everything(query: &str, content_type: Option<&'static str>, body: &[u8]) {
        let mut headers = HeaderMap::new();
        if let Some(value) = content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        }
        let query = CaptureQuery::parse(Some(query));
        let body = Bytes::copy_from_slice(body);
        let mut unlimited = |_| Ok(());
        if let Ok(decoded) = payload::decode(&query, &headers, &body, true, 1 << 20, &mut unlimited) {
            if let Ok(batch) = parse_batch(&decoded.json, true) {
                let _ = resolve_token(&batch).map(validate_token);
                for raw in &batch.events {
                    let _ = validate_event(raw);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            hint in prop_oneof![Just(""), Just("compression=gzip-js"), Just("compression=lz64"), Just("compression=base64")],
            form in any::<bool>(),
        ) {
            let content_type = form.then_some("application/x-www-form-urlencoded");
            decode_everything(hint, content_type, &body);
        }

        #[test]
        fn arbitrary_json_shaped_text_never_panics(body in r#"[\[\]{}",:a-z0-9 \\$_-]{0,512}"#) {
            decode_everything("", None, body.as_bytes());
        }
    }
}
