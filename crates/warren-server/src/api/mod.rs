//! The REST API under `/api/`: personal-API-key authentication and the
//! routes that use it. A project of another organization answers 404, the
//! same as one that does not exist, so ids leak nothing.

mod query;

use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use warren_meta::Project;

use crate::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/projects/{project_id}/query", post(query::run))
        .route("/api/projects/{project_id}/query/", post(query::run))
}

/// The organization whose personal API key the request carries.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<i64, ApiError> {
    let header = headers.get(axum::http::header::AUTHORIZATION).ok_or(ApiError::NotAuthenticated)?;
    let key = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or(ApiError::NotAuthenticated)?;
    state
        .meta
        .organization_for_api_key(key)
        .await
        .map_err(|e| ApiError::MetaUnavailable(e.to_string()))?
        .ok_or(ApiError::InvalidApiKey)
}

/// The project `id` names, if the caller's organization owns it.
async fn project_of(state: &AppState, headers: &HeaderMap, id: &str) -> Result<Project, ApiError> {
    let organization = authenticate(state, headers).await?;
    let id: i64 = id.parse().map_err(|_| ApiError::NotFound)?;
    match state.meta.project(id).await.map_err(|e| ApiError::MetaUnavailable(e.to_string()))? {
        Some(project) if project.organization_id == organization => Ok(project),
        _ => Err(ApiError::NotFound),
    }
}
