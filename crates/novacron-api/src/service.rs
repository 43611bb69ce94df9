//! The seam between HTTP and the node: handlers call a [`NodeService`] and map its answer.
//! The node daemon implements it over the store and QEMU; tests implement it in memory.

use crate::dwcp_flags::{DwcpFlags, DwcpFlagsResponse};
use crate::migration::{
    PeerCommitted, PeerImageAnswer, PeerImageOffer, PeerNode, PeerPrepareRequest,
    PeerPrepareResponse, VmMigrateRequest,
};
use crate::types::{
    ImageImportRequest, NodeInfo, TenantPutRequest, TenantResponse, TokenCreateRequest,
    TokenCreateResponse, VmAction,
};
use novacron_model::{Event, Image, Name, Operation, OperationId, Role, TokenId, Vm, VmSpec};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::broadcast;

/// A boxed future, so that [`NodeService`] can be used as `dyn NodeService`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who is calling: what their bearer token resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's id (safe to log).
    pub token: TokenId,
    /// The tenant the token acts for.
    pub tenant: Name,
    /// What it may do.
    pub role: Role,
}

/// What a service call can fail with. Each variant maps to one HTTP status in
/// [`crate::ApiError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// No such thing, or not the caller's to see.
    #[error("{kind} {key:?} not found")]
    NotFound {
        /// What was looked for (`vm`, `image`, `operation`, `tenant`).
        kind: &'static str,
        /// The id or name given.
        key: String,
    },
    /// A thing with that name exists already.
    #[error("{kind} {key:?} already exists")]
    AlreadyExists {
        /// What (`vm`, `image`, `tenant`).
        kind: &'static str,
        /// Its name.
        key: String,
    },
    /// A field is out of range or inconsistent.
    #[error("{field}: {message}")]
    Invalid {
        /// The request field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The request conflicts with the current state (delete while running, start twice...).
    #[error("{0}")]
    Conflict(String),
    /// The tenant's quota does not allow it.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The node cannot do it now (QEMU missing, disk full...).
    #[error("{0}")]
    Unavailable(String),
    /// A fault inside the node; details are in its log.
    #[error("{0}")]
    Internal(String),
}

/// Everything the API asks of the node. Authorization by role happens in the API layer;
/// tenant isolation happens here: every call gets the [`Caller`] and must act only on its
/// tenant's VMs, answering [`ServiceError::NotFound`] for anyone else's.
pub trait NodeService: Send + Sync + 'static {
    /// Resolves a bearer token, `None` if it is unknown.
    fn authenticate(&self, token: &str) -> Option<Caller>;

    /// Facts about the node, and the caller's VM counts.
    fn node_info(&self, caller: &Caller) -> NodeInfo;

    /// The caller's VMs, sorted by name.
    fn list_vms(&self, caller: &Caller) -> Vec<Vm>;

    /// One page of the caller's VMs as the JSON of a
    /// [`VmListResponse`](crate::types::VmListResponse). Listing is the hottest call, so an
    /// implementation may serve it from a cache it renews when VMs change.
    fn list_vms_json(&self, caller: &Caller, after: Option<&str>, limit: usize) -> bytes::Bytes {
        crate::types::VmListResponse::page_json(&self.list_vms(caller), after, limit)
    }

    /// One of the caller's VMs by id or name.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] when it is not the caller's.
    fn get_vm(&self, caller: &Caller, vm: &str) -> Result<Vm, ServiceError>;

    /// Creates a VM (stopped) with its root disk.
    fn create_vm(&self, caller: &Caller, spec: VmSpec) -> BoxFuture<'_, Result<Vm, ServiceError>>;

    /// Starts an action on a VM; the returned operation tracks it.
    fn vm_action(
        &self,
        caller: &Caller,
        vm: &str,
        action: VmAction,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>>;

    /// Deletes a VM and its disks; running VMs only with `force`.
    fn delete_vm(
        &self,
        caller: &Caller,
        vm: &str,
        force: bool,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>>;

    /// The last `lines` lines of a VM's serial console.
    fn console(
        &self,
        caller: &Caller,
        vm: &str,
        lines: usize,
    ) -> BoxFuture<'_, Result<String, ServiceError>>;

    /// Images on the node (every tenant sees them).
    fn list_images(&self) -> Vec<Image>;

    /// One image.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`].
    fn get_image(&self, name: &str) -> Result<Image, ServiceError>;

    /// Starts copying an image into the node's store.
    fn import_image(
        &self,
        caller: &Caller,
        req: ImageImportRequest,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>>;

    /// Deletes an image no VM uses.
    fn delete_image(&self, name: &str) -> BoxFuture<'_, Result<(), ServiceError>>;

    /// One of the caller's operations.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] when it is not the caller's.
    fn operation(&self, caller: &Caller, id: OperationId) -> Result<Operation, ServiceError>;

    /// Waits until the operation ends or `timeout` passes, then returns it as it is.
    fn wait_operation(
        &self,
        caller: &Caller,
        id: OperationId,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>>;

    /// All events from now on; the API passes on those of the caller's tenant and node-wide
    /// ones.
    fn subscribe(&self) -> broadcast::Receiver<Event>;

    /// All tenants with their use.
    fn list_tenants(&self) -> Vec<TenantResponse>;

    /// Creates a tenant or sets its quota.
    fn put_tenant(
        &self,
        req: TenantPutRequest,
    ) -> BoxFuture<'_, Result<TenantResponse, ServiceError>>;

    /// Issues a token.
    fn create_token(
        &self,
        req: TokenCreateRequest,
    ) -> BoxFuture<'_, Result<TokenCreateResponse, ServiceError>>;

    /// What Prometheus should see of the node now.
    fn metrics(&self) -> NodeMetrics;

    /// Starts moving one of the caller's running VMs to a peer node.
    fn migrate_vm(
        &self,
        _caller: &Caller,
        _vm: &str,
        _req: VmMigrateRequest,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>> {
        Box::pin(async { Err(not_migrating()) })
    }

    /// Asks a running operation of the caller's to stop; returns it as it is then.
    fn cancel_operation(
        &self,
        caller: &Caller,
        id: OperationId,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>> {
        let op = self.operation(caller, id);
        Box::pin(async move {
            let op = op?;
            Err(ServiceError::Conflict(format!(
                "operation {} ({}) cannot be cancelled",
                op.id, op.kind
            )))
        })
    }

    /// This node's DWCP feature flags and what they turn on for it.
    ///
    /// # Errors
    /// [`ServiceError::Unavailable`] when the node takes no part in migrations.
    fn dwcp_flags(&self) -> Result<DwcpFlagsResponse, ServiceError> {
        Err(not_migrating())
    }

    /// Replaces this node's DWCP feature flags (and the file they came from, if any) for
    /// every migration stream that starts from now on; `caller` is named in the node's log.
    fn put_dwcp_flags(
        &self,
        _caller: &Caller,
        _flags: DwcpFlags,
    ) -> BoxFuture<'_, Result<DwcpFlagsResponse, ServiceError>> {
        Box::pin(async { Err(not_migrating()) })
    }

    /// Destination side: answers whether the image of a VM `peer` is about to migrate here
    /// must be sent, and if so where.
    fn peer_image_offer(
        &self,
        _peer: &PeerNode,
        _migration: OperationId,
        _offer: PeerImageOffer,
    ) -> BoxFuture<'_, Result<PeerImageAnswer, ServiceError>> {
        Box::pin(async { Err(not_migrating()) })
    }

    /// Destination side: the source has sent the image's files; verify and keep the image.
    fn peer_image_commit(
        &self,
        _peer: &PeerNode,
        _migration: OperationId,
    ) -> BoxFuture<'_, Result<Image, ServiceError>> {
        Box::pin(async { Err(not_migrating()) })
    }

    /// Destination side: prepares to receive a VM from `peer`.
    fn peer_prepare(
        &self,
        _peer: &PeerNode,
        _req: PeerPrepareRequest,
    ) -> BoxFuture<'_, Result<PeerPrepareResponse, ServiceError>> {
        Box::pin(async { Err(not_migrating()) })
    }

    /// Destination side: the source has sent everything; start the guest here. A commit
    /// repeated gets the first one's outcome.
    fn peer_commit(
        &self,
        _peer: &PeerNode,
        _migration: OperationId,
    ) -> BoxFuture<'_, Result<PeerCommitted, ServiceError>> {
        Box::pin(async { Err(not_migrating()) })
    }

    /// Destination side: drop a prepared migration and everything it created. Idempotent;
    /// refused once the migration was committed.
    fn peer_abort(
        &self,
        _peer: &PeerNode,
        _migration: OperationId,
    ) -> BoxFuture<'_, Result<(), ServiceError>> {
        Box::pin(async { Err(not_migrating()) })
    }
}

fn not_migrating() -> ServiceError {
    ServiceError::Unavailable("this node does not take part in live migrations".to_owned())
}

/// Node figures exported at `/metrics` beside the API's own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeMetrics {
    /// VMs of every tenant by state: `(state, count)`.
    pub vms_by_state: Vec<(novacron_model::VmState, u64)>,
    /// One entry per running QEMU process.
    pub processes: Vec<ProcessMetrics>,
    /// One entry per migration leaving the node now.
    pub migrations: Vec<MigrationMetrics>,
    /// Migrations ended since the daemon started: `(direction, result, count)` with direction
    /// `out` or `in` and result `succeeded` or `failed`.
    pub migrations_ended: Vec<(&'static str, &'static str, u64)>,
    /// DWCP components this node uses under its feature flags: `(component, on)` with the
    /// component's flag name (`hde`, `pba`, `multistream`, `dedup_store`). Empty when the
    /// node takes no part in migrations.
    pub dwcp_features: Vec<(&'static str, bool)>,
    /// Whether the DWCP kill switch is on; `None` when the node takes no part in migrations.
    pub dwcp_kill_switch: Option<bool>,
}

/// A migration under way, as Prometheus sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct MigrationMetrics {
    /// VM id.
    pub vm: String,
    /// VM name.
    pub name: String,
    /// Tenant.
    pub tenant: String,
    /// Node it moves to.
    pub target: String,
    /// Where it is.
    pub progress: novacron_model::MigrationProgress,
}

/// Resource use of one VM's QEMU process.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessMetrics {
    /// VM id.
    pub vm: String,
    /// VM name.
    pub name: String,
    /// Tenant.
    pub tenant: String,
    /// CPU time used, user plus system, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory in bytes.
    pub rss_bytes: u64,
}
