//! `/api/v1/tenants` and `/api/v1/tokens` (admin only).

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::server::AppState;
use crate::service::{Caller, ServiceError};
use crate::types::{
    ErrorBody, TenantPutRequest, TenantResponse, TokenCreateRequest, TokenCreateResponse,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use novacron_model::Role;

/// Longest token label, in characters.
pub const MAX_LABEL: usize = 200;

/// All tenants with their quota and use.
#[utoipa::path(get, path = "/tenants", tag = "tenants",
    responses((status = 200, body = Vec<TenantResponse>), (status = 403, body = ErrorBody)))]
pub async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TenantResponse>>, ApiError> {
    caller.require(Role::Admin)?;
    Ok(Json(state.svc.list_tenants()))
}

/// Creates a tenant, or sets its quota.
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = TenantPutRequest,
    responses((status = 200, body = TenantResponse), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn put_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<TenantPutRequest>,
) -> Result<Json<TenantResponse>, ApiError> {
    caller.require(Role::Admin)?;
    Ok(Json(state.svc.put_tenant(req).await?))
}

/// Issues a token for a tenant; the secret is in this answer only.
#[utoipa::path(post, path = "/tokens", tag = "tenants", request_body = TokenCreateRequest,
    responses((status = 201, body = TokenCreateResponse), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<TokenCreateRequest>,
) -> Result<(StatusCode, Json<TokenCreateResponse>), ApiError> {
    caller.require(Role::Admin)?;
    if req.label.chars().count() > MAX_LABEL {
        return Err(ServiceError::Invalid {
            field: "label".to_owned(),
            message: format!("at most {MAX_LABEL} characters"),
        }
        .into());
    }
    Ok((
        StatusCode::CREATED,
        Json(state.svc.create_token(req).await?),
    ))
}
