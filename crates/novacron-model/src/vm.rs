//! Virtual machine records: the spec a user asks for, the state the node reports.

use crate::{ByteSize, Name, Timestamp, VmId};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// Most vCPUs a VM may ask for.
pub const MAX_VCPUS: u32 = 64;
/// Least memory a VM may ask for (16 MiB).
pub const MIN_MEMORY: ByteSize = ByteSize::mib(16);
/// Most memory a VM may ask for (1 TiB).
pub const MAX_MEMORY: ByteSize = ByteSize::mib(1 << 20);
/// Largest root disk a VM may ask for (64 TiB).
pub const MAX_DISK: ByteSize = ByteSize::mib(64 << 20);

/// What a user asks for when creating a VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Name, unique within the tenant.
    pub name: Name,
    /// Number of virtual CPUs, 1 to [`MAX_VCPUS`].
    pub vcpus: u32,
    /// Guest memory, from [`MIN_MEMORY`] to [`MAX_MEMORY`], a multiple of 1 MiB.
    pub memory: ByteSize,
    /// Name of the image the root disk is made from.
    pub image: Name,
    /// Size of the root disk; `None` keeps the image's size. Never smaller than the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<ByteSize>,
}

/// A field of a [`VmSpec`] that is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The JSON field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl VmSpec {
    /// Checks ranges that the types do not.
    ///
    /// # Errors
    /// [`SpecError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(1..=MAX_VCPUS).contains(&self.vcpus) {
            return Err(SpecError {
                field: "vcpus",
                message: format!("must be between 1 and {MAX_VCPUS}, got {}", self.vcpus),
            });
        }
        if self.memory < MIN_MEMORY || self.memory > MAX_MEMORY {
            return Err(SpecError {
                field: "memory",
                message: format!(
                    "must be between {MIN_MEMORY} and {MAX_MEMORY}, got {}",
                    self.memory
                ),
            });
        }
        if self.memory.bytes() % ByteSize::MIB != 0 {
            return Err(SpecError {
                field: "memory",
                message: format!("must be a whole number of MiB, got {} bytes", self.memory.0),
            });
        }
        if let Some(d) = self.disk_size {
            if d > MAX_DISK || d.bytes() == 0 {
                return Err(SpecError {
                    field: "disk_size",
                    message: format!("must be between 1 and {MAX_DISK}, got {d}"),
                });
            }
        }
        Ok(())
    }
}

/// Where a VM is in its life.
///
/// ```text
///  create ─► stopped ─start─► starting ─► running ◄─resume/pause─► paused
///               ▲                            │
///               └──────── stopping ◄─stop────┘        any ─► failed (QEMU died)
///
///  running/paused ─migrate─► migrating ─► (gone from this node) | back to running/paused
///  (destination) incoming ─► running | (removed)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Defined, no QEMU process.
    Stopped,
    /// QEMU is being started.
    Starting,
    /// QEMU runs the guest.
    Running,
    /// QEMU is up with the guest's vCPUs stopped.
    Paused,
    /// A stop is under way (ACPI power-down, then forced).
    Stopping,
    /// QEMU exited when it should not have; see the VM's `state_reason`.
    Failed,
    /// Being moved to another node; the guest still runs here.
    Migrating,
    /// Arriving from another node: QEMU waits here for the migration stream, its guest not
    /// yet started.
    Incoming,
}

impl VmState {
    /// Every state, in a stable order (for metrics).
    pub const ALL: [Self; 8] = [
        Self::Stopped,
        Self::Starting,
        Self::Running,
        Self::Paused,
        Self::Stopping,
        Self::Failed,
        Self::Migrating,
        Self::Incoming,
    ];

    /// The lowercase name used in logs, metrics and the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopping => "stopping",
            Self::Failed => "failed",
            Self::Migrating => "migrating",
            Self::Incoming => "incoming",
        }
    }

    /// Whether a QEMU process is expected to exist in this state.
    #[must_use]
    pub const fn has_process(self) -> bool {
        matches!(
            self,
            Self::Starting
                | Self::Running
                | Self::Paused
                | Self::Stopping
                | Self::Migrating
                | Self::Incoming
        )
    }
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The QEMU process behind a VM, while there is one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VmRuntime {
    /// Process id of QEMU on this node.
    pub pid: u32,
    /// When QEMU was started.
    pub started_at: Timestamp,
    /// Accelerator in use: `kvm` or `tcg`.
    pub accel: String,
}

/// A disk attached to a VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DiskInfo {
    /// Short name (`root`).
    pub name: String,
    /// Path of the qcow2 file on the node.
    pub path: String,
    /// Path of its backing (base image) file, if any.
    pub backing: Option<String>,
    /// Size the guest sees.
    pub virtual_size: ByteSize,
}

/// A VM as the node keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Vm {
    /// Identifier.
    pub id: VmId,
    /// Tenant that owns it.
    pub tenant: Name,
    /// What was asked for.
    pub spec: VmSpec,
    /// Current state.
    pub state: VmState,
    /// Why the VM is in its state, when that needs saying (`failed`: exit status and log).
    pub state_reason: Option<String>,
    /// Disks, root first.
    pub disks: Vec<DiskInfo>,
    /// The QEMU process; `None` when stopped or failed.
    pub runtime: Option<VmRuntime>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its record last changed.
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        VmSpec {
            name: Name::new("a").unwrap(),
            vcpus: 1,
            memory: ByteSize::mib(128),
            image: Name::new("img").unwrap(),
            disk_size: None,
        }
    }

    #[test]
    fn spec_validation_names_the_field_out_of_range() {
        assert_eq!(spec().validate(), Ok(()));
        let e = VmSpec { vcpus: 0, ..spec() }.validate().unwrap_err();
        assert_eq!(e.field, "vcpus");
        let e = VmSpec {
            vcpus: 65,
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "vcpus");
        let e = VmSpec {
            memory: ByteSize(1 << 10),
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "memory");
        let e = VmSpec {
            memory: ByteSize((64 << 20) + 1),
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "memory");
        let e = VmSpec {
            disk_size: Some(ByteSize(0)),
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "disk_size");
    }

    #[test]
    fn spec_refuses_unknown_fields() {
        let e = serde_json::from_str::<VmSpec>(
            r#"{"name":"a","vcpus":1,"memory":"128M","image":"i","colour":"red"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `colour`"), "{e}");
    }
}
