//! The one error type of the HTTP surface, and the one place it becomes an
//! HTTP answer.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use warren_core::metrics as names;
use warren_log::LogError;
use warren_query::QueryError;

/// Everything a request can be refused for. Each variant has one
/// status and one stable machine-readable code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request has no payload: send a body or a non-empty `data` parameter")]
    EmptyPayload,
    #[error("batch holds no events")]
    EmptyBatch,
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    #[error("invalid compression: {0}")]
    InvalidCompression(String),
    #[error("event has no `event` name")]
    MissingEventName,
    #[error("event has no distinct_id")]
    MissingDistinctId,
    #[error("a recording's event has no `$session_id`")]
    MissingSessionId,
    #[error("invalid `$session_id`: up to 128 letters, digits, `-` and `_`")]
    InvalidSessionId,
    #[error("a recording's event has no `$snapshot_data` array or object")]
    MissingSnapshotData,
    #[error("invalid uuid {0:?}")]
    InvalidUuid(String),
    #[error("events in one request carry different tokens")]
    MultipleTokens,
    #[error("no project token: set `api_key` or `token`")]
    MissingToken,
    #[error("invalid project token: {0}")]
    InvalidToken(&'static str),
    #[error("the token is a personal API key (phx_…); capture takes the project token (phc_…)")]
    PersonalApiKey,
    #[error("unknown project token")]
    UnknownToken,
    #[error("payload exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request body did not arrive within {secs} s")]
    BodyTimeout { secs: u64 },
    #[error("server is at capacity, retry later")]
    Overloaded,
    #[error("the server has as many connections open as it allows, retry later")]
    TooManyConnections,
    #[error("event log unavailable: {0}")]
    LogUnavailable(String),
    /// Nothing of the request was stored; the sender retries it whole.
    #[error("the event log's disk is full, retry later: {0}")]
    DiskFull(String),
    #[error("meta store unavailable: {0}")]
    MetaUnavailable(String),
    #[error("authentication required: send a personal API key as `Authorization: Bearer phx_…`")]
    NotAuthenticated,
    #[error("invalid personal API key")]
    InvalidApiKey,
    #[error("the personal API key was revoked")]
    ApiKeyRevoked,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("the email is longer than {max} bytes")]
    EmailTooLong { max: usize },
    #[error(
        "sign-up is closed on this server: ask an organization admin to add you, or have the operator \
         set `[auth] signup = true` (WARREN_AUTH__SIGNUP=true)"
    )]
    SignupClosed,
    #[error("this needs a signed-in user; personal API keys cannot do it")]
    SessionRequired,
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("{0}")]
    Query(#[from] warren_query::QueryError),
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
    detail: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::EmptyPayload
            | Self::EmptyBatch
            | Self::InvalidPayload(_)
            | Self::InvalidCompression(_)
            | Self::MissingEventName
            | Self::MissingDistinctId
            | Self::MissingSessionId
            | Self::InvalidSessionId
            | Self::MissingSnapshotData
            | Self::InvalidUuid(_)
            | Self::MultipleTokens => StatusCode::BAD_REQUEST,
            Self::MissingToken
            | Self::InvalidToken(_)
            | Self::PersonalApiKey
            | Self::UnknownToken
            | Self::NotAuthenticated
            | Self::InvalidApiKey
            | Self::ApiKeyRevoked
            | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::SessionRequired | Self::PermissionDenied(_) | Self::SignupClosed => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::InvalidRequest(_) | Self::EmailTooLong { .. } => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            Self::Query(error) => match error {
                QueryError::Invalid(_) => StatusCode::BAD_REQUEST,
                QueryError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                QueryError::MemoryLimit(_) => StatusCode::SERVICE_UNAVAILABLE,
                QueryError::Engine(_) | QueryError::Meta(_) | QueryError::Store(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Overloaded
            | Self::TooManyConnections
            | Self::LogUnavailable(_)
            | Self::DiskFull(_)
            | Self::MetaUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code clients and dashboards key on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::EmptyPayload => "empty_payload",
            Self::EmptyBatch => "empty_batch",
            Self::InvalidPayload(_) => "invalid_payload",
            Self::InvalidCompression(_) => "invalid_compression",
            Self::MissingEventName => "missing_event_name",
            Self::MissingDistinctId => "missing_distinct_id",
            Self::MissingSessionId => "missing_session_id",
            Self::InvalidSessionId => "invalid_session_id",
            Self::MissingSnapshotData => "missing_snapshot_data",
            Self::InvalidUuid(_) => "invalid_uuid",
            Self::MultipleTokens => "multiple_tokens",
            Self::MissingToken => "missing_token",
            Self::InvalidToken(_) => "invalid_token",
            Self::PersonalApiKey => "personal_api_key",
            Self::UnknownToken => "unknown_token",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::Overloaded => "overloaded",
            Self::TooManyConnections => "too_many_connections",
            Self::LogUnavailable(_) => "log_unavailable",
            Self::DiskFull(_) => "disk_full",
            Self::MetaUnavailable(_) => "meta_unavailable",
            Self::NotAuthenticated => "not_authenticated",
            Self::InvalidApiKey => "invalid_api_key",
            Self::ApiKeyRevoked => "api_key_revoked",
            Self::InvalidCredentials => "invalid_credentials",
            Self::EmailTooLong { .. } => "email_too_long",
            Self::SignupClosed => "signup_closed",
            Self::SessionRequired => "session_required",
            Self::PermissionDenied(_) => "permission_denied",
            Self::RateLimited { .. } => "rate_limited",
            Self::InvalidRequest(_) => "invalid_request",
            Self::Conflict(_) => "conflict",
            Self::NotFound => "not_found",
            Self::InvalidQuery(_) => "invalid_query",
            Self::Query(error) => error.code(),
            Self::Internal(_) => "internal_error",
        }
    }

    /// Errors of the REST API rather than of capture.
    fn is_api(&self) -> bool {
        matches!(
            self,
            Self::NotAuthenticated
                | Self::InvalidApiKey
                | Self::ApiKeyRevoked
                | Self::InvalidCredentials
                | Self::EmailTooLong { .. }
                | Self::SignupClosed
                | Self::SessionRequired
                | Self::PermissionDenied(_)
                | Self::RateLimited { .. }
                | Self::InvalidRequest(_)
                | Self::Conflict(_)
                | Self::NotFound
                | Self::InvalidQuery(_)
                | Self::Query(_)
        )
    }

    /// Seconds a client should wait before retrying, when it should.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => Some(1),
            _ => None,
        }
    }

    /// This error as a whole HTTP/1.1 response that closes the connection,
    /// for answers written straight to a socket hyper is not serving (a
    /// connection refused at the door). Same status, headers and body as
    /// [`IntoResponse`] gives.
    pub(crate) fn http1_close(&self) -> Vec<u8> {
        let status = self.status();
        let body = ErrorBody { kind: self.kind(), code: self.code(), detail: self.to_string() };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default(),
            body.len(),
        );
        if let Some(secs) = self.retry_after() {
            head.push_str(&format!("retry-after: {secs}\r\n"));
        }
        head.push_str("\r\n");
        let mut answer = head.into_bytes();
        answer.extend_from_slice(&body);
        answer
    }

    fn kind(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::TOO_MANY_REQUESTS => "throttled_error",
            status if status.is_server_error() => "server_error",
            _ => "validation_error",
        }
    }
}

/// The code an error answer carried, left on the response for the audit log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorCode(pub &'static str);

impl From<warren_meta::MetaError> for ApiError {
    fn from(error: warren_meta::MetaError) -> Self {
        use warren_meta::MetaError;
        match error {
            MetaError::Invalid { .. } => Self::InvalidRequest(error.to_string()),
            MetaError::Conflict { reason, .. } => Self::Conflict(reason),
            other => {
                tracing::warn!(error = %other, "meta store request failed");
                Self::MetaUnavailable(
                    "the meta store could not answer; the server log has the details".into(),
                )
            }
        }
    }
}

impl From<LogError> for ApiError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::Overloaded { .. } => Self::Overloaded,
            LogError::RecordTooLarge { max, .. } => Self::PayloadTooLarge { limit: max },
            LogError::Full(reason) => Self::DiskFull(reason),
            other => Self::LogUnavailable(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request refused");
        }
        let counter =
            if self.is_api() { names::API_REQUESTS_REFUSED } else { names::CAPTURE_REQUESTS_REFUSED };
        metrics::counter!(counter, "code" => self.code()).increment(1);
        let body = ErrorBody { kind: self.kind(), code: self.code(), detail: self.to_string() };
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code()));
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        response
    }
}
