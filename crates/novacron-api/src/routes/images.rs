//! `/api/v1/images`: the bases VM disks are made from. Every tenant sees them; importing and
//! deleting needs the admin role.

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::server::AppState;
use crate::service::Caller;
use crate::types::{ErrorBody, ImageImportRequest, OperationResponse};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use novacron_model::{Image, Role};

/// Images on the node.
#[utoipa::path(get, path = "/images", tag = "images",
    responses((status = 200, body = Vec<Image>), (status = 401, body = ErrorBody)))]
pub async fn list_images(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Image>>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.svc.list_images()))
}

/// Copies an image from files on the node into its image store.
#[utoipa::path(post, path = "/images", tag = "images", request_body = ImageImportRequest,
    responses((status = 202, body = OperationResponse), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn import_image(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ImageImportRequest>,
) -> Result<(StatusCode, Json<OperationResponse>), ApiError> {
    caller.require(Role::Admin)?;
    let operation = state.svc.import_image(&caller, req).await?;
    Ok((StatusCode::ACCEPTED, Json(OperationResponse { operation })))
}

/// One image.
#[utoipa::path(get, path = "/images/{name}", tag = "images",
    params(("name" = String, Path, description = "image name")),
    responses((status = 200, body = Image), (status = 404, body = ErrorBody)))]
pub async fn get_image(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Image>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.svc.get_image(&name)?))
}

/// Deletes an image that no VM uses.
#[utoipa::path(delete, path = "/images/{name}", tag = "images",
    params(("name" = String, Path, description = "image name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_image(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin)?;
    state.svc.delete_image(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
