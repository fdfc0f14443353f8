//! The remote configuration posthog-js fetches before anything else:
//! `GET /array/{token}/config` (JSON) and `/array/{token}/config.js` (a
//! script that hands the same JSON to the SDK).
//!
//! posthog-js turns on what the answer names and nothing else: without a
//! boolean `autocapture_opt_out` autocapture stays off, without
//! `supportedCompression` it sends every request uncompressed, and it
//! falls back to identified-only person profiles. So the answer names
//! every field the SDK reads, each set to what Warren serves: autocapture
//! and gzip on; session recording as the project's
//! `session_recording_opt_in` says (sent to `/s/`); surveys, heatmaps and
//! the other features Warren has no endpoint for, off.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use warren_meta::Project;

use crate::{ApiError, AppState};

/// Browsers may keep an answer this long: a page load needs no request,
/// and a changed flag list reaches them within five minutes.
const CACHE_CONTROL: &str = "public, max-age=300";

pub(super) async fn config(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let config = remote_config(&state, &token).await?;
    Ok(([(header::CACHE_CONTROL, CACHE_CONTROL)], axum::Json(config)).into_response())
}

pub(super) async fn config_js(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let config = remote_config(&state, &token).await?;
    // The token is checked to be `[A-Za-z0-9_-]`, and both are written as
    // JSON, which is JavaScript: nothing in them can end the script.
    let script = format!(
        "(function() {{\n  window._POSTHOG_REMOTE_CONFIG = window._POSTHOG_REMOTE_CONFIG || {{}};\n  \
         window._POSTHOG_REMOTE_CONFIG[{token}] = {{\n    config: {config},\n    siteApps: []\n  }};\n}})();\n",
        token = Value::String(token.clone()),
    );
    let headers = [
        (header::CONTENT_TYPE, "application/javascript; charset=utf-8"),
        (header::CACHE_CONTROL, CACHE_CONTROL),
    ];
    Ok((headers, script).into_response())
}

/// The project of a token as the path carries it: a malformed token is a
/// 400 and an unknown one a 404, as PostHog answers.
async fn project(state: &AppState, token: &str) -> Result<Project, ApiError> {
    let well_formed = !token.is_empty()
        && token.len() <= 200
        && token.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if !well_formed {
        return Err(ApiError::InvalidRequest("a project token is letters, digits, `_` and `-`".into()));
    }
    // Every page load of every site asks: made-up tokens stop at the cache.
    if !state.tokens.is_known(token).await? {
        return Err(ApiError::NotFound);
    }
    state.meta.project_by_token(token).await?.ok_or(ApiError::NotFound)
}

/// What posthog-js is told about recording the project's sessions. Any
/// object turns recording on; the SDK's defaults (no sampling, no minimum
/// duration, no linked flag) record every session.
pub(super) fn session_recording(project: &Project) -> Value {
    match project.session_recording_opt_in {
        true => json!({"endpoint": "/s/", "consoleLogRecordingEnabled": false, "recorderVersion": "v2"}),
        false => json!(false),
    }
}

/// The configuration of the project of `token`.
async fn remote_config(state: &AppState, token: &str) -> Result<Value, ApiError> {
    let project = project(state, token).await?;
    let has_flags = super::flags::has_active_flags(state, &project).await?;
    let recording = session_recording(&project);
    Ok(json!({
        "token": token,
        "supportedCompression": ["gzip", "gzip-js"],
        // `false` spares the SDK its first flags request.
        "hasFeatureFlags": has_flags,
        "autocapture_opt_out": false,
        // `$elements_chain` as one string, which Warren stores as it is.
        "elementsChainAsString": true,
        "analytics": {"endpoint": "/i/v0/e/"},
        "defaultIdentifiedOnly": true,
        "sessionRecording": recording,
        "capturePerformance": false,
        "captureDeadClicks": false,
        "heatmaps": false,
        "surveys": false,
        "autocaptureExceptions": false,
        "errorTracking": {"autocaptureExceptions": false, "suppressionRules": []},
        "siteApps": [],
    }))
}
