//! Live migration: `POST /vms/{vm}/migrate`, `POST /operations/{id}/cancel`, and the
//! calls between nodes under `/peer/migrations`.

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::migration::{
    PeerImageAnswer, PeerImageOffer, PeerNode, PeerPrepareRequest, PeerPrepareResponse,
    VmMigrateRequest,
};
use crate::routes::operations::parse_id;
use crate::server::AppState;
use crate::service::Caller;
use crate::types::{ErrorBody, OperationResponse};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use novacron_model::{Image, Operation, Role, Vm};

/// Moves a running VM to a peer node while it keeps running. The operation carries the
/// migration's progress and, on failure, why; the VM then runs here as before.
#[utoipa::path(post, path = "/vms/{vm}/migrate", tag = "vms", request_body = VmMigrateRequest,
    params(("vm" = String, Path, description = "VM id or name")),
    responses((status = 202, body = OperationResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn migrate_vm(
    State(state): State<AppState>,
    caller: Caller,
    Path(vm): Path<String>,
    ApiJson(req): ApiJson<VmMigrateRequest>,
) -> Result<(StatusCode, Json<OperationResponse>), ApiError> {
    caller.require(Role::Operator)?;
    let operation = state.svc.migrate_vm(&caller, &vm, req).await?;
    Ok((StatusCode::ACCEPTED, Json(OperationResponse { operation })))
}

/// Asks a running operation to stop (a migration: the VM stays where it was). Returns the
/// operation as it is; wait on it for the end.
#[utoipa::path(post, path = "/operations/{id}/cancel", tag = "operations",
    params(("id" = String, Path, description = "operation id")),
    responses((status = 202, body = Operation), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn cancel_operation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Operation>), ApiError> {
    caller.require(Role::Operator)?;
    let op = state.svc.cancel_operation(&caller, parse_id(&id)?).await?;
    Ok((StatusCode::ACCEPTED, Json(op)))
}

/// Between nodes: the image of a VM about to migrate here. The answer says whether this node
/// holds it already or where to send its files.
#[utoipa::path(post, path = "/peer/migrations/{id}/image", tag = "peer",
    request_body = PeerImageOffer, security(()),
    params(("id" = String, Path, description = "migration (source operation) id")),
    responses((status = 200, body = PeerImageAnswer), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn peer_image_offer(
    State(state): State<AppState>,
    peer: PeerNode,
    Path(id): Path<String>,
    ApiJson(offer): ApiJson<PeerImageOffer>,
) -> Result<Json<PeerImageAnswer>, ApiError> {
    let answer = state
        .svc
        .peer_image_offer(&peer, parse_id(&id)?, offer)
        .await?;
    Ok(Json(answer))
}

/// Between nodes: the image's files were sent; verify them and keep the image here.
#[utoipa::path(post, path = "/peer/migrations/{id}/image/commit", tag = "peer", security(()),
    params(("id" = String, Path, description = "migration (source operation) id")),
    responses((status = 200, body = Image), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn peer_image_commit(
    State(state): State<AppState>,
    peer: PeerNode,
    Path(id): Path<String>,
) -> Result<Json<Image>, ApiError> {
    Ok(Json(
        state.svc.peer_image_commit(&peer, parse_id(&id)?).await?,
    ))
}

/// Between nodes: prepare to receive a VM (record, disks, QEMU waiting for the stream).
#[utoipa::path(post, path = "/peer/migrations", tag = "peer", request_body = PeerPrepareRequest,
    security(()),
    responses((status = 201, body = PeerPrepareResponse), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn peer_prepare(
    State(state): State<AppState>,
    peer: PeerNode,
    ApiJson(req): ApiJson<PeerPrepareRequest>,
) -> Result<(StatusCode, Json<PeerPrepareResponse>), ApiError> {
    let ready = state.svc.peer_prepare(&peer, req).await?;
    Ok((StatusCode::CREATED, Json(ready)))
}

/// Between nodes: the source has sent everything; run the guest here. Idempotent: a commit
/// repeated, while the first waits or after the migration ended, gets the first one's outcome.
#[utoipa::path(post, path = "/peer/migrations/{id}/commit", tag = "peer", security(()),
    params(("id" = String, Path, description = "migration (source operation) id")),
    responses((status = 200, body = Vm,
        headers(("Server-Timing" = String, description = "guest-running;dur=MS, commit;dur=MS: from the commit's arrival to the guest running, and to the answer"))),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn peer_commit(
    State(state): State<AppState>,
    peer: PeerNode,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let committed = state.svc.peer_commit(&peer, parse_id(&id)?).await?;
    let mut answer = Json(committed.vm).into_response();
    if let (Some(running), Some(answered)) = (committed.running_after, committed.answered_after)
        && let Ok(value) =
            HeaderValue::from_str(&crate::migration::server_timing(running, answered))
    {
        answer.headers_mut().insert(
            HeaderName::from_static(crate::migration::SERVER_TIMING),
            value,
        );
    }
    Ok(answer)
}

/// Between nodes: drop a prepared migration and all it created here; 409 when it was
/// committed (the guest runs here).
#[utoipa::path(delete, path = "/peer/migrations/{id}", tag = "peer", security(()),
    params(("id" = String, Path, description = "migration (source operation) id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn peer_abort(
    State(state): State<AppState>,
    peer: PeerNode,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.svc.peer_abort(&peer, parse_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
