//! `/api/v1/operations`: poll or await the long actions.

use crate::error::ApiError;
use crate::routes::vms::query;
use crate::server::AppState;
use crate::service::Caller;
use crate::types::{ErrorBody, WaitQuery};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use novacron_model::{Operation, OperationId, Role};
use std::time::Duration;

/// Longest `wait`, in seconds.
pub const MAX_WAIT_SECS: u64 = 600;

/// An operation id from a path.
pub(crate) fn parse_id(id: &str) -> Result<OperationId, ApiError> {
    id.parse().map_err(|_| ApiError::BadParam {
        message: format!("operation id {id:?} is not a UUID"),
    })
}

/// One operation.
#[utoipa::path(get, path = "/operations/{id}", tag = "operations",
    params(("id" = String, Path, description = "operation id")),
    responses((status = 200, body = Operation), (status = 404, body = ErrorBody)))]
pub async fn get_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Operation>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.svc.operation(&caller, parse_id(&id)?)?))
}

/// Waits until the operation ends (or the timeout passes) and returns it.
#[utoipa::path(get, path = "/operations/{id}/wait", tag = "operations",
    params(("id" = String, Path, description = "operation id"), WaitQuery),
    responses((status = 200, body = Operation), (status = 404, body = ErrorBody)))]
pub async fn wait_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Json<Operation>, ApiError> {
    let q = query(q)?;
    caller.require(Role::Viewer)?;
    let secs = q.timeout_secs.unwrap_or(60);
    if secs > MAX_WAIT_SECS {
        return Err(ApiError::BadParam {
            message: format!("timeout_secs: at most {MAX_WAIT_SECS}, got {secs}"),
        });
    }
    let op = state
        .svc
        .wait_operation(&caller, parse_id(&id)?, Duration::from_secs(secs))
        .await?;
    Ok(Json(op))
}
