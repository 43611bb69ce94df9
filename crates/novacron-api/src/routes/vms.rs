//! `/api/v1/vms`: create, list, show, act on and delete the caller's VMs.

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiJsonOrDefault};
use crate::server::AppState;
use crate::service::Caller;
use crate::types::{
    ConsoleQuery, DEFAULT_PAGE, ErrorBody, MAX_PAGE, OperationResponse, VmAction, VmDeleteQuery,
    VmListQuery, VmListResponse, VmStopRequest,
};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use novacron_model::{Role, Vm, VmSpec};

/// Most console lines one request returns.
pub const MAX_CONSOLE_LINES: usize = 10_000;

/// Maps a query-string rejection to a JSON error.
pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|e| ApiError::BadParam {
        message: e.body_text(),
    })
}

/// The caller's VMs, one page at a time, sorted by name.
#[utoipa::path(get, path = "/vms", tag = "vms", params(VmListQuery),
    responses((status = 200, body = VmListResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list_vms(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<VmListQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let q = query(q)?;
    caller.require(Role::Viewer)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadParam {
            message: format!("limit: must be between 1 and {MAX_PAGE}, got {limit}"),
        });
    }
    let body = state.svc.list_vms_json(&caller, q.after.as_deref(), limit);
    Ok(([(CONTENT_TYPE, "application/json")], body))
}

/// Creates a VM (stopped) with a root disk made from its image.
#[utoipa::path(post, path = "/vms", tag = "vms", request_body = VmSpec,
    responses((status = 201, body = Vm), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_vm(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(spec): ApiJson<VmSpec>,
) -> Result<(StatusCode, Json<Vm>), ApiError> {
    caller.require(Role::Operator)?;
    let vm = state.svc.create_vm(&caller, spec).await?;
    Ok((StatusCode::CREATED, Json(vm)))
}

/// One VM, by id or name.
#[utoipa::path(get, path = "/vms/{vm}", tag = "vms",
    params(("vm" = String, Path, description = "VM id or name")),
    responses((status = 200, body = Vm), (status = 404, body = ErrorBody)))]
pub async fn get_vm(
    State(state): State<AppState>,
    caller: Caller,
    Path(vm): Path<String>,
) -> Result<Json<Vm>, ApiError> {
    caller.require(Role::Viewer)?;
    Ok(Json(state.svc.get_vm(&caller, &vm)?))
}

/// Deletes a VM and its disks. A VM with a QEMU process is refused (409) unless `force`.
#[utoipa::path(delete, path = "/vms/{vm}", tag = "vms",
    params(("vm" = String, Path, description = "VM id or name"), VmDeleteQuery),
    responses((status = 202, body = OperationResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn delete_vm(
    State(state): State<AppState>,
    caller: Caller,
    Path(vm): Path<String>,
    q: Result<Query<VmDeleteQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<OperationResponse>), ApiError> {
    let q = query(q)?;
    caller.require(Role::Operator)?;
    let operation = state.svc.delete_vm(&caller, &vm, q.force).await?;
    Ok((StatusCode::ACCEPTED, Json(OperationResponse { operation })))
}

async fn act(
    state: &AppState,
    caller: &Caller,
    vm: &str,
    action: VmAction,
) -> Result<(StatusCode, Json<OperationResponse>), ApiError> {
    caller.require(Role::Operator)?;
    let operation = state.svc.vm_action(caller, vm, action).await?;
    Ok((StatusCode::ACCEPTED, Json(OperationResponse { operation })))
}

/// Starts QEMU and boots the VM.
#[utoipa::path(post, path = "/vms/{vm}/start", tag = "vms",
    params(("vm" = String, Path, description = "VM id or name")),
    responses((status = 202, body = OperationResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn start_vm(
    State(state): State<AppState>,
    caller: Caller,
    Path(vm): Path<String>,
) -> Result<(StatusCode, Json<OperationResponse>), ApiError> {
    act(&state, &caller, &vm, VmAction::Start).await
}

/// Powers the VM down: ACPI request, then forced after the timeout.
#[utoipa::path(post, path = "/vms/{vm}/stop", tag = "vms", request_body(content = Option<VmStopRequest>),
    params(("vm" = String, Path, description = "VM id or name")),
    responses((status = 202, body = OperationResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn stop_vm(
    State(state): State<AppState>,
    caller: Caller,
    Path(vm): Path<String>,
    ApiJsonOrDefault(req): ApiJsonOrDefault<VmStopRequest>,
) -> Result<(StatusCode, Json<OperationResponse>), ApiError> {
    act(&state, &caller, &vm, VmAction::Stop(req)).await
}

/// Stops the VM's vCPUs.
#[utoipa::path(post, path = "/vms/{vm}/pause", tag = "vms",
    params(("vm" = String, Path, description = "VM id or name")),
    responses((status = 202, body = OperationResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn pause_vm(
    State(state): State<AppState>,
    caller: Caller,
    Path(vm): Path<String>,
) -> Result<(StatusCode, Json<OperationResponse>), ApiError> {
    act(&state, &caller, &vm, VmAction::Pause).await
}

/// Restarts the vCPUs of a paused VM.
#[utoipa::path(post, path = "/vms/{vm}/resume", tag = "vms",
    params(("vm" = String, Path, description = "VM id or name")),
    responses((status = 202, body = OperationResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn resume_vm(
    State(state): State<AppState>,
    caller: Caller,
    Path(vm): Path<String>,
) -> Result<(StatusCode, Json<OperationResponse>), ApiError> {
    act(&state, &caller, &vm, VmAction::Resume).await
}

/// Resets the guest; QEMU keeps running.
#[utoipa::path(post, path = "/vms/{vm}/restart", tag = "vms",
    params(("vm" = String, Path, description = "VM id or name")),
    responses((status = 202, body = OperationResponse), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn restart_vm(
    State(state): State<AppState>,
    caller: Caller,
    Path(vm): Path<String>,
) -> Result<(StatusCode, Json<OperationResponse>), ApiError> {
    act(&state, &caller, &vm, VmAction::Restart).await
}

/// The last lines of the VM's serial console, as text.
#[utoipa::path(get, path = "/vms/{vm}/console", tag = "vms",
    params(("vm" = String, Path, description = "VM id or name"), ConsoleQuery),
    responses((status = 200, body = String, content_type = "text/plain"),
        (status = 404, body = ErrorBody)))]
pub async fn console(
    State(state): State<AppState>,
    caller: Caller,
    Path(vm): Path<String>,
    q: Result<Query<ConsoleQuery>, QueryRejection>,
) -> Result<String, ApiError> {
    let q = query(q)?;
    caller.require(Role::Viewer)?;
    let lines = q.lines.unwrap_or(100);
    if lines > MAX_CONSOLE_LINES {
        return Err(ApiError::BadParam {
            message: format!("lines: at most {MAX_CONSOLE_LINES}, got {lines}"),
        });
    }
    Ok(state.svc.console(&caller, &vm, lines).await?)
}
