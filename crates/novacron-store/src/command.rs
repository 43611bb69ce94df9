//! [`Command`]: every change the store can make, as a value.
//!
//! A command is plain data with serde, so that a replicated log can carry it: every replica
//! validates and applies the same command against the same state and reaches the same result.
//! Commands carry no clock: timestamps in the records are set by whoever builds the command.

use novacron_model::{
    Image, Name, Operation, Tenant, Timestamp, TokenId, TokenRecord, Vm, VmId, VmState,
};
use serde::{Deserialize, Serialize};

/// One change to the store, validated and applied atomically by
/// [`Store::apply`](crate::Store::apply). A refused command changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Creates a tenant, or updates the quota of an existing one (its `created_at` is kept).
    PutTenant(Tenant),
    /// Deletes a tenant. Refused with `InUse` while it has VMs or tokens; `NotFound` if missing.
    DeleteTenant(Name),
    /// Stores a token, or replaces the one with the same id. The secret hash must not be empty
    /// (`Invalid`), the tenant must exist (`NotFound`) and no other token may have the same
    /// secret hash (`AlreadyExists`).
    PutToken(TokenRecord),
    /// Deletes a token; `NotFound` if missing.
    DeleteToken(TokenId),
    /// Records a new image; `AlreadyExists` if one has the same name.
    PutImage(Image),
    /// Deletes an image; `InUse` while a VM is made from it, `NotFound` if missing.
    DeleteImage(Name),
    /// Creates a VM. Its spec must be valid (`Invalid`), its tenant and image must exist
    /// (`NotFound`), its disk must not be smaller than the image (`Invalid`), its id and its
    /// name within the tenant must be new (`AlreadyExists`), and the tenant's quota must hold
    /// it, counting all its VMs whatever their state, in VMs, then vCPUs, then memory
    /// (`QuotaExceeded`).
    CreateVm(Vm),
    /// Replaces a VM's record if its stored state is still `expect_state` (`Conflict`
    /// otherwise; `NotFound` if missing). Its tenant, spec (name included) and creation time
    /// cannot change (`Immutable`).
    UpdateVm {
        /// The new record; `vm.id` names the VM to replace.
        vm: Vm,
        /// The state the caller last saw.
        expect_state: VmState,
    },
    /// Deletes a VM; `NotFound` if missing, `Conflict` if `expect_state` is set and differs.
    DeleteVm {
        /// The VM.
        id: VmId,
        /// The state the caller last saw; `None` deletes whatever the state.
        expect_state: Option<VmState>,
    },
    /// Stores an operation, or replaces the one with the same id.
    PutOperation(Operation),
    /// Removes the operations that have finished before the given time. Running ones stay.
    PruneOperations {
        /// Operations that finished strictly before this time go; one that is done without a
        /// finish time is judged by its creation time.
        finished_before: Timestamp,
    },
}

impl Command {
    /// The command's name in `snake_case`, for logs.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::PutTenant(_) => "put_tenant",
            Self::DeleteTenant(_) => "delete_tenant",
            Self::PutToken(_) => "put_token",
            Self::DeleteToken(_) => "delete_token",
            Self::PutImage(_) => "put_image",
            Self::DeleteImage(_) => "delete_image",
            Self::CreateVm(_) => "create_vm",
            Self::UpdateVm { .. } => "update_vm",
            Self::DeleteVm { .. } => "delete_vm",
            Self::PutOperation(_) => "put_operation",
            Self::PruneOperations { .. } => "prune_operations",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use novacron_model::{ByteSize, OperationId, Quota, VmSpec};

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn commands_round_trip_through_json() {
        let vm = Vm {
            id: VmId::random(),
            tenant: name("acme"),
            spec: VmSpec {
                name: name("web"),
                vcpus: 2,
                memory: ByteSize::mib(512),
                image: name("debian"),
                disk_size: None,
            },
            state: VmState::Stopped,
            state_reason: None,
            disks: Vec::new(),
            runtime: None,
            created_at: Timestamp(1),
            updated_at: Timestamp(2),
        };
        let commands = [
            Command::PutTenant(Tenant {
                name: name("acme"),
                quota: Quota::default(),
                created_at: Timestamp(5),
            }),
            Command::DeleteTenant(name("acme")),
            Command::DeleteToken(TokenId::random()),
            Command::DeleteImage(name("debian")),
            Command::CreateVm(vm.clone()),
            Command::UpdateVm {
                vm,
                expect_state: VmState::Running,
            },
            Command::DeleteVm {
                id: VmId::random(),
                expect_state: None,
            },
            Command::PutOperation(Operation {
                id: OperationId::random(),
                tenant: name("acme"),
                kind: novacron_model::OperationKind::VmStart,
                target: "x".into(),
                status: novacron_model::OperationStatus::Running,
                error: None,
                created_at: Timestamp(7),
                finished_at: None,
                migration: None,
            }),
            Command::PruneOperations {
                finished_before: Timestamp(9),
            },
        ];
        for c in commands {
            let json = serde_json::to_string(&c).unwrap();
            assert!(json.contains(c.name()), "{json}");
            assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), c);
        }
    }
}
