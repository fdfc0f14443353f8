//! Records API calls in the audit log.
//!
//! The middleware puts an empty [`AuditFacts`] into each request; the
//! [`Caller`](super::auth::Caller) extractor and the handlers fill in who
//! called and what about; after the answer, the middleware writes one entry
//! when somebody could be named (an authenticated call, a refused key, a
//! log in). Anonymous refusals are not recorded: they name nobody and
//! would let anyone fill the log.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, State};
use axum::http::Request;
use axum::middleware::Next;
use axum::response::Response;
use warren_meta::accounts::{ApiKey, User};
use warren_meta::audit::AuditEntry;

use crate::error::ErrorCode;
use crate::AppState;

/// What a request has revealed about its caller and subject so far.
#[derive(Debug, Default, Clone)]
pub(crate) struct AuditFacts {
    pub organization_id: Option<i64>,
    pub project_id: Option<i64>,
    pub user_id: Option<i64>,
    pub api_key_id: Option<i64>,
    /// Email or key mask; empty while nobody is named.
    pub actor: String,
    pub credential: &'static str,
    pub resource: Option<String>,
    /// Overrides the route's action (log in outcomes).
    pub action: Option<&'static str>,
    /// The client's address (see [`client_address`]).
    pub source: String,
}

impl AuditFacts {
    pub fn identify_user(&mut self, user: &User, credential: &'static str) {
        self.user_id = Some(user.id);
        self.actor = user.email.clone();
        self.credential = credential;
    }

    pub fn identify_key(&mut self, key: &ApiKey) {
        self.organization_id = Some(key.organization_id);
        self.user_id = key.user_id;
        self.api_key_id = Some(key.id);
        self.actor = key.mask.clone();
        self.credential = "api_key";
    }
}

/// The client's address: the last one in the proxy's header when one is
/// configured (the proxy appends the address it saw, so earlier entries
/// are the client's own claims), else the connection's peer.
fn client_address(state: &AppState, request: &Request<Body>) -> String {
    let peer =
        request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip().to_string());
    let forwarded = state.auth.client_address_header.as_deref().and_then(|name| {
        let value = request.headers().get_all(name).iter().next_back()?.to_str().ok()?;
        let last = value.rsplit(',').next()?.trim();
        last.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string())
    });
    forwarded.or(peer).unwrap_or_default()
}

pub(crate) async fn record(
    State(state): State<AppState>,
    mut request: Request<Body>,
    next: Next,
) -> Response {
    let source = client_address(&state, &request);
    let facts = Arc::new(Mutex::new(AuditFacts { source: source.clone(), ..AuditFacts::default() }));
    request.extensions_mut().insert(facts.clone());
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_string());
    let response = next.run(request).await;
    let Some(route) = route else { return response };
    let facts = match facts.lock() {
        Ok(facts) => facts.clone(),
        Err(_) => return response,
    };
    if facts.actor.is_empty() {
        return response;
    }
    let status = response.status().as_u16();
    if status < 400 && super::is_polled(&method, &route) {
        return response;
    }
    let action = facts.action.map(str::to_string).unwrap_or_else(|| super::action_of(&method, &route));
    let outcome = response.extensions().get::<ErrorCode>().map(|code| code.0).unwrap_or("ok");
    let entry = AuditEntry {
        id: 0,
        at_us: chrono::Utc::now().timestamp_micros(),
        organization_id: facts.organization_id,
        project_id: facts.project_id,
        user_id: facts.user_id,
        api_key_id: facts.api_key_id,
        actor: facts.actor,
        credential: facts.credential.to_string(),
        action,
        method: method.to_string(),
        route,
        resource: facts.resource,
        source,
        status,
        outcome: outcome.to_string(),
    };
    // The answer is already decided; a failed audit write is loud in the
    // logs and metrics but does not turn a done change into an error.
    if let Err(error) = state.meta.record_audit(&entry).await {
        tracing::error!(%error, action = entry.action, "audit log write failed");
        metrics::counter!(warren_core::metrics::AUDIT_WRITE_FAILURES).increment(1);
    }
    response
}
