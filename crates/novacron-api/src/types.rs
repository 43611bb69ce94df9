//! Request and response bodies of `/api/v1` that are not plain model records.

use novacron_model::{ByteSize, Name, Operation, Quota, Role, TokenRecord, Usage, Vm, VmState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST /api/v1/images`: copy an image from files on the node into its image store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageImportRequest {
    /// Name for the image, unique on the node.
    pub name: Name,
    /// Absolute path, on the node, of the base disk (qcow2 or raw).
    pub disk: String,
    /// Absolute path, on the node, of a kernel to boot directly.
    #[serde(default)]
    pub kernel: Option<String>,
    /// Absolute path, on the node, of an initial ramdisk (needs `kernel`).
    #[serde(default)]
    pub initrd: Option<String>,
    /// Kernel command line (needs `kernel`).
    #[serde(default)]
    pub cmdline: Option<String>,
}

/// `POST /api/v1/vms/{vm}/stop`: how to stop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmStopRequest {
    /// Seconds to wait for the guest to power off after the ACPI request before QEMU is
    /// stopped by force (default 30, at most 3600).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Skip the ACPI request and stop QEMU at once.
    #[serde(default)]
    pub force: bool,
}

/// The actions `POST /api/v1/vms/{vm}/{action}` takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VmAction {
    /// Start QEMU and boot.
    Start,
    /// Power down.
    Stop(VmStopRequest),
    /// Stop the vCPUs.
    Pause,
    /// Restart the vCPUs.
    Resume,
    /// Reset the guest.
    Restart,
}

/// Query of `DELETE /api/v1/vms/{vm}`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VmDeleteQuery {
    /// Stop the VM first if it runs (otherwise a running VM is not deleted: 409).
    #[serde(default)]
    pub force: bool,
}

/// Query of `GET /api/v1/vms/{vm}/console`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsoleQuery {
    /// Number of last lines to return (default 100, at most 10,000).
    #[serde(default)]
    pub lines: Option<usize>,
}

/// Query of `GET /api/v1/operations/{id}/wait`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Longest wait in seconds (default 60, at most 600). The operation is returned as it is
    /// then, finished or not.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// Answer of actions that go on in the background.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OperationResponse {
    /// The operation; poll `GET /api/v1/operations/{id}` or await `.../wait`.
    pub operation: Operation,
}

/// `POST /api/v1/tenants`: create a tenant or change its quota (admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPutRequest {
    /// Name of the tenant.
    pub name: Name,
    /// Its limits; the defaults when absent.
    #[serde(default)]
    pub quota: Option<Quota>,
}

/// A tenant with what it uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantResponse {
    /// Name.
    pub name: Name,
    /// Limits.
    pub quota: Quota,
    /// Use now.
    pub usage: Usage,
}

/// `POST /api/v1/tokens`: issue a token (admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateRequest {
    /// Tenant the token acts for (must exist).
    pub tenant: Name,
    /// What it may do.
    pub role: Role,
    /// Free-form label, at most 200 characters.
    #[serde(default)]
    pub label: String,
}

/// A newly issued token: the secret is shown this once and never stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreateResponse {
    /// The bearer token to present in `Authorization: Bearer ...`.
    pub token: String,
    /// Its stored record (hash, tenant, role).
    pub record: TokenRecord,
}

/// `GET /api/v1/node`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    /// Host name of the node.
    pub hostname: String,
    /// NovaCron version.
    pub version: String,
    /// QEMU version, as `qemu-system-x86_64 --version` reports it.
    pub qemu_version: String,
    /// Accelerator VMs get: `kvm` or `tcg` (with the reason KVM is not used).
    pub accel: String,
    /// Host CPUs.
    pub cpus: u32,
    /// Host memory.
    pub memory: ByteSize,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// The caller's tenant.
    pub tenant: Name,
    /// The caller's role.
    pub role: Role,
    /// The caller's VMs by state.
    pub vms: Vec<StateCount>,
}

/// A count of VMs in one state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateCount {
    /// The state.
    pub state: VmState,
    /// How many VMs are in it.
    pub count: u64,
}

/// The JSON body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code (`not_found`, `invalid_field`, `quota_exceeded`...).
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// The request field at fault, when there is one (`vcpus`, `spec.memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// VMs per page of `GET /api/v1/vms` when the query does not say.
pub const DEFAULT_PAGE: usize = 100;
/// Most VMs one page may hold.
pub const MAX_PAGE: usize = 1000;

/// Query of `GET /api/v1/vms`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VmListQuery {
    /// VMs per page (default 100, at most 1,000).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Start after the VM of this name (the `next` of the previous page).
    #[serde(default)]
    pub after: Option<String>,
}

/// One page of the caller's VMs, sorted by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VmListResponse {
    /// The VMs of this page.
    pub items: Vec<Vm>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<String>,
}

impl VmListResponse {
    /// The page of `vms` (sorted by name) that starts after `after`, at most `limit` long.
    #[must_use]
    pub fn page(vms: &[Vm], after: Option<&str>, limit: usize) -> Self {
        let start = after.map_or(0, |a| vms.partition_point(|v| v.spec.name.as_str() <= a));
        let rest = vms.get(start..).unwrap_or_default();
        let items: Vec<Vm> = rest.iter().take(limit).cloned().collect();
        let next = (rest.len() > items.len())
            .then(|| items.last().map(|v| v.spec.name.to_string()))
            .flatten();
        Self { items, next }
    }

    /// The JSON of [`Self::page`], as the API sends it.
    #[must_use]
    pub fn page_json(vms: &[Vm], after: Option<&str>, limit: usize) -> bytes::Bytes {
        match serde_json::to_vec(&Self::page(vms, after, limit)) {
            Ok(v) => bytes::Bytes::from(v),
            Err(e) => {
                tracing::error!(error = %e, "could not serialize a VM list");
                bytes::Bytes::from_static(b"{\"items\":[],\"next\":null}")
            }
        }
    }
}
