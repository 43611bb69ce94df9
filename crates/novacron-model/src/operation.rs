//! Operations: long actions that can be polled or awaited.

use crate::{MigrationProgress, Name, OperationId, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Start a VM's QEMU and boot it.
    VmStart,
    /// Power a VM down (ACPI, then forced after a timeout).
    VmStop,
    /// Stop the vCPUs.
    VmPause,
    /// Restart the vCPUs.
    VmResume,
    /// Reset the guest (QEMU keeps running).
    VmRestart,
    /// Delete a VM and its disks.
    VmDelete,
    /// Copy an image into the node's store.
    ImageImport,
    /// Move a running VM to another node.
    VmMigrate,
}

impl OperationKind {
    /// The lowercase name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::VmStart => "vm_start",
            Self::VmStop => "vm_stop",
            Self::VmPause => "vm_pause",
            Self::VmResume => "vm_resume",
            Self::VmRestart => "vm_restart",
            Self::VmDelete => "vm_delete",
            Self::ImageImport => "image_import",
            Self::VmMigrate => "vm_migrate",
        }
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    /// Under way.
    Running,
    /// Done as asked.
    Succeeded,
    /// Gave up; see `error`.
    Failed,
}

impl OperationStatus {
    /// Whether the operation has ended.
    #[must_use]
    pub const fn is_done(self) -> bool {
        !matches!(self, Self::Running)
    }
}

/// A long action and its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Operation {
    /// Identifier.
    pub id: OperationId,
    /// Tenant that asked for it.
    pub tenant: Name,
    /// What it does.
    pub kind: OperationKind,
    /// What it acts on: a VM id or an image name.
    pub target: String,
    /// Where it is.
    pub status: OperationStatus,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// When it was asked for.
    pub created_at: Timestamp,
    /// When it ended; `None` while running.
    pub finished_at: Option<Timestamp>,
    /// Progress of a live migration (`vm_migrate` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationProgress>,
}
