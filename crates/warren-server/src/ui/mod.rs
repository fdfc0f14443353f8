//! The web dashboard: a few pages of plain JavaScript, embedded in the
//! binary so it works with no internet access, that draw from the same
//! REST and query API everyone else uses.
//!
//! Without a valid session cookie every page but `/login` redirects
//! there, so nothing but the login page is shown to strangers; the
//! assets themselves hold no data. The pages are written without a
//! framework or chart library on purpose: they need no build step, so
//! `cargo build` alone makes a complete binary, and the charts are a few
//! SVG shapes (`assets/charts.js`).

use std::sync::LazyLock;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::AppState;

/// `(file, content type, bytes)` of every asset under `/assets/`.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.css", "text/css; charset=utf-8", include_bytes!("assets/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("assets/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_bytes!("assets/api.js")),
    ("charts.js", "text/javascript; charset=utf-8", include_bytes!("assets/charts.js")),
    ("dom.js", "text/javascript; charset=utf-8", include_bytes!("assets/dom.js")),
    ("login.js", "text/javascript; charset=utf-8", include_bytes!("assets/login.js")),
    ("overview.js", "text/javascript; charset=utf-8", include_bytes!("assets/overview.js")),
    ("events.js", "text/javascript; charset=utf-8", include_bytes!("assets/events.js")),
    ("persons.js", "text/javascript; charset=utf-8", include_bytes!("assets/persons.js")),
    ("web.js", "text/javascript; charset=utf-8", include_bytes!("assets/web.js")),
    ("recordings.js", "text/javascript; charset=utf-8", include_bytes!("assets/recordings.js")),
    // rrweb's session player, vendored from npm by `scripts/vendor-rrweb-player`.
    ("rrweb-player.js", "text/javascript; charset=utf-8", include_bytes!("vendor/rrweb-player.js")),
    ("rrweb-player.css", "text/css; charset=utf-8", include_bytes!("vendor/rrweb-player.css")),
    ("insights.js", "text/javascript; charset=utf-8", include_bytes!("assets/insights.js")),
    ("dashboards.js", "text/javascript; charset=utf-8", include_bytes!("assets/dashboards.js")),
    ("system.js", "text/javascript; charset=utf-8", include_bytes!("assets/system.js")),
    ("favicon.svg", "image/svg+xml", include_bytes!("assets/favicon.svg")),
];

const APP_PAGE: &str = include_str!("assets/app.html");
const LOGIN_PAGE: &str = include_str!("assets/login.html");

/// The pages of the app; each serves the same shell, which draws the page
/// its path names.
const PAGES: &[&str] = &[
    "/",
    "/events",
    "/persons",
    "/persons/{id}",
    "/web",
    "/recordings",
    "/recordings/{id}",
    "/insights",
    "/insights/{id}",
    "/dashboards",
    "/dashboards/{id}",
    "/system",
];

/// No inline script or style, nothing from elsewhere, never in a frame.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
     script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The recordings' pages: the player rebuilds recorded pages in a frame of
/// this document, whose `<style>` elements and `style` attributes are
/// inline styles, and whose images come from the recorded site. Scripts
/// stay as strict: rrweb never runs a recorded page's scripts.
const RECORDINGS_CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; img-src 'self' data: blob: http: https:; \
     style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

pub(crate) fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/login", get(login_page))
        .route("/assets/{file}", get(asset))
        .route("/favicon.ico", get(|| async { Redirect::permanent("/assets/favicon.svg") }));
    for page in PAGES {
        router = router.route(page, get(app_page));
    }
    router
}

fn html(body: &'static str) -> Response {
    html_with(body, CONTENT_SECURITY_POLICY)
}

fn html_with(body: &'static str, policy: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    secure(response.headers_mut(), policy);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn secure(headers: &mut HeaderMap, policy: &'static str) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

async fn signed_in(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = crate::api::session_cookie(headers) else { return false };
    let now = chrono::Utc::now().timestamp_micros();
    matches!(state.meta.user_for_session(token, now).await, Ok(Some(_)))
}

/// Where to go after logging in: a path of this site only.
fn next_of(query: Option<&str>) -> String {
    let next = query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .find(|(key, _)| key == "next")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    // Browsers drop tabs and newlines from a Location and read `\` as
    // `/`, so `/\t/evil` would leave the site: only plain paths pass.
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control());
    if local {
        next
    } else {
        "/".into()
    }
}

async fn app_page(State(state): State<AppState>, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    if signed_in(&state, &headers).await {
        // The app switches pages without reloading, except into the
        // recordings', which need their own policy (`app.js`).
        if uri.path().starts_with("/recordings") {
            return html_with(APP_PAGE, RECORDINGS_CONTENT_SECURITY_POLICY);
        }
        return html(APP_PAGE);
    }
    let here = uri.path_and_query().map_or("/", |p| p.as_str());
    let encoded: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
    Redirect::to(&format!("/login?next={encoded}")).into_response()
}

async fn login_page(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if signed_in(&state, &headers).await {
        return Redirect::to(&next_of(query.as_deref())).into_response();
    }
    html(LOGIN_PAGE)
}

/// A short hash of each asset, computed once, for revalidation.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS.iter().map(|(_, _, bytes)| format!("\"{}\"", hex::encode(&Sha256::digest(bytes)[..8]))).collect()
});

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|(name, _, _)| *name == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (_, content_type, bytes) = ASSETS[index];
    let etag = &ETAGS[index];
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut response = ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
    let headers = response.headers_mut();
    secure(headers, CONTENT_SECURITY_POLICY);
    // Revalidated on every load, so a new build's assets are used at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(next_of(Some("next=%2Fpersons%2Fabc")), "/persons/abc");
        assert_eq!(next_of(Some("next=https%3A%2F%2Fevil.example")), "/");
        assert_eq!(next_of(Some("next=%2F%2Fevil.example")), "/");
        assert_eq!(next_of(Some("next=%2F%5Cevil.example")), "/");
        assert_eq!(next_of(Some("next=%2F%09%2Fevil.example")), "/", "a tab browsers drop");
        assert_eq!(next_of(Some("next=%2F%0A%2Fevil.example")), "/", "a newline");
        assert_eq!(next_of(Some("next=%2Fevents%3Fevent%3Dx")), "/events?event=x");
        assert_eq!(next_of(None), "/");
    }

    #[test]
    fn every_page_script_is_served() {
        for (name, _, bytes) in ASSETS {
            assert!(!bytes.is_empty(), "{name} is empty");
        }
        for page in ["overview", "events", "persons", "insights", "dashboards", "system"] {
            let file = format!("{page}.js");
            assert!(ASSETS.iter().any(|(name, _, _)| *name == file), "{file} is not served");
        }
    }
}
