//! `/api/v1/node`, `/api/v1/node/dwcp-flags`, `/healthz`, `/metrics` and the fallback.

use crate::dwcp_flags::{DwcpFlags, DwcpFlagsResponse};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::server::AppState;
use crate::service::{Caller, ServiceError};
use crate::types::{ErrorBody, NodeInfo};
use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use novacron_model::Role;

/// Facts about the node and the caller's VM counts.
#[utoipa::path(get, path = "/node", tag = "node",
    responses((status = 200, body = NodeInfo), (status = 401, body = ErrorBody)))]
pub async fn node_info(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<NodeInfo>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.svc.node_info(&caller)))
}

/// The node's DWCP feature flags and which components they turn on here (admin).
#[utoipa::path(get, path = "/node/dwcp-flags", tag = "node",
    responses((status = 200, body = DwcpFlagsResponse), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get_dwcp_flags(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<DwcpFlagsResponse>, ApiError> {
    caller.require(Role::Admin)?;
    Ok(Json(state.svc.dwcp_flags()?))
}

/// Replaces the node's DWCP feature flags (admin): migration streams that start from now on
/// use them, and a node started with a flags file has the file rewritten (503, and nothing
/// changed, when it cannot be). Unknown keys are refused.
#[utoipa::path(put, path = "/node/dwcp-flags", tag = "node", request_body = DwcpFlags,
    responses((status = 200, body = DwcpFlagsResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn put_dwcp_flags(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(flags): ApiJson<DwcpFlags>,
) -> Result<Json<DwcpFlagsResponse>, ApiError> {
    caller.require(Role::Admin)?;
    Ok(Json(state.svc.put_dwcp_flags(&caller, flags).await?))
}

/// Liveness: `ok` while the daemon answers.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Prometheus metrics in the text exposition format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let node = state.svc.metrics();
    let body = state.metrics.encode(&node);
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// Any path the API does not have: 404 naming it, with the JSON error body.
pub async fn not_found(uri: Uri) -> ApiError {
    ServiceError::NotFound {
        kind: "path",
        key: uri.path().to_owned(),
    }
    .into()
}
