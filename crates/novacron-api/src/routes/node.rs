//! `/api/v1/node`, `/healthz`, `/metrics` and the fallback.

use crate::error::ApiError;
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
