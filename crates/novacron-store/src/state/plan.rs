//! [`State::plan`]: validates a command against the state and decides its writes.
//!
//! Each command's checks run in the order its [`Command`] doc lists them; the first that fails
//! is the error. Nothing here reads a clock or does I/O.

use super::{State, Write};
use crate::{Command, StoreError};
use novacron_model::{
    Image, Name, Operation, Tenant, Timestamp, TokenId, TokenRecord, Vm, VmId, VmState,
};

impl State {
    /// Checks `command` against the state and returns the writes that carry it out.
    ///
    /// # Errors
    /// The refusal the command's documentation lists for the first check that fails; the state
    /// is not changed either way.
    pub fn plan(&self, command: Command) -> Result<Vec<Write>, StoreError> {
        match command {
            Command::PutTenant(t) => Ok(self.put_tenant(t)),
            Command::DeleteTenant(name) => self.delete_tenant(name),
            Command::PutToken(t) => self.put_token(t),
            Command::DeleteToken(id) => self.delete_token(id),
            Command::PutImage(i) => self.put_image(i),
            Command::DeleteImage(name) => self.delete_image(name),
            Command::CreateVm(vm) => self.create_vm(vm),
            Command::UpdateVm { vm, expect_state } => self.update_vm(vm, expect_state),
            Command::DeleteVm { id, expect_state } => self.delete_vm(id, expect_state),
            Command::PutOperation(op) => Ok(vec![Write::Operation(op.id, Some(op))]),
            Command::PruneOperations { finished_before } => {
                Ok(self.prune_operations(finished_before))
            }
        }
    }

    fn put_tenant(&self, mut t: Tenant) -> Vec<Write> {
        if let Some(old) = self.tenants.get(&t.name) {
            t.created_at = old.created_at;
        }
        vec![Write::Tenant(t.name.clone(), Some(t))]
    }

    fn delete_tenant(&self, name: Name) -> Result<Vec<Write>, StoreError> {
        self.existing_tenant(&name)?;
        let vms = self.vm_names.get(&name).map_or(0, |names| names.len());
        let tokens = self.tokens.values().filter(|t| t.tenant == name).count();
        let users: Vec<String> = [(vms, "vm"), (tokens, "token")]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| counted(n, what))
            .collect();
        if !users.is_empty() {
            return Err(StoreError::InUse {
                kind: "tenant",
                key: name.to_string(),
                by: users.join(" and "),
            });
        }
        Ok(vec![Write::Tenant(name, None)])
    }

    fn put_token(&self, t: TokenRecord) -> Result<Vec<Write>, StoreError> {
        if t.secret_hash.is_empty() {
            return Err(StoreError::Invalid {
                message: "a token's secret hash must not be empty".into(),
            });
        }
        self.existing_tenant(&t.tenant)?;
        if let Some(holder) = self.token_hashes.get(&t.secret_hash) {
            if *holder != t.id {
                return Err(StoreError::AlreadyExists {
                    kind: "token secret hash",
                    key: t.secret_hash,
                });
            }
        }
        Ok(vec![Write::Token(t.id, Some(t))])
    }

    fn delete_token(&self, id: TokenId) -> Result<Vec<Write>, StoreError> {
        if !self.tokens.contains_key(&id) {
            return Err(not_found("token", &id));
        }
        Ok(vec![Write::Token(id, None)])
    }

    fn put_image(&self, i: Image) -> Result<Vec<Write>, StoreError> {
        if self.images.contains_key(&i.name) {
            return Err(StoreError::AlreadyExists {
                kind: "image",
                key: i.name.to_string(),
            });
        }
        Ok(vec![Write::Image(i.name.clone(), Some(i))])
    }

    fn delete_image(&self, name: Name) -> Result<Vec<Write>, StoreError> {
        if !self.images.contains_key(&name) {
            return Err(not_found("image", &name));
        }
        let mut users = self.vms.values().filter(|vm| vm.spec.image == name);
        if let Some(first) = users.next() {
            let more = users.count();
            let mut by = format!("vm {}/{}", first.tenant, first.spec.name);
            if more > 0 {
                by.push_str(&format!(" and {}", counted(more, "other vm")));
            }
            return Err(StoreError::InUse {
                kind: "image",
                key: name.to_string(),
                by,
            });
        }
        Ok(vec![Write::Image(name, None)])
    }

    fn create_vm(&self, vm: Vm) -> Result<Vec<Write>, StoreError> {
        vm.spec.validate().map_err(|e| StoreError::Invalid {
            message: e.to_string(),
        })?;
        let tenant = self.existing_tenant(&vm.tenant)?;
        let image = self
            .images
            .get(&vm.spec.image)
            .ok_or_else(|| not_found("image", &vm.spec.image))?;
        if let Some(size) = vm.spec.disk_size {
            if size < image.virtual_size {
                return Err(StoreError::Invalid {
                    message: format!(
                        "disk_size: must be at least the size of image {} ({}), got {size}",
                        image.name, image.virtual_size
                    ),
                });
            }
        }
        if self.vms.contains_key(&vm.id) {
            return Err(StoreError::AlreadyExists {
                kind: "vm",
                key: vm.id.to_string(),
            });
        }
        if self.vm_by_name(&vm.tenant, &vm.spec.name).is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "vm",
                key: format!("{}/{}", vm.tenant, vm.spec.name),
            });
        }
        let used = self.totals(&vm.tenant);
        let quota = tenant.quota;
        let checks = [
            ("vms", u64::from(quota.max_vms), used.vms, 1),
            (
                "vcpus",
                u64::from(quota.max_vcpus),
                used.vcpus,
                u64::from(vm.spec.vcpus),
            ),
            (
                "memory",
                quota.max_memory.bytes(),
                used.memory,
                vm.spec.memory.bytes(),
            ),
        ];
        for (resource, limit, used, requested) in checks {
            if used.saturating_add(requested) > limit {
                return Err(StoreError::QuotaExceeded {
                    tenant: vm.tenant,
                    resource,
                    limit,
                    used,
                    requested,
                });
            }
        }
        Ok(vec![Write::Vm(vm.id, Some(vm))])
    }

    fn update_vm(&self, vm: Vm, expect_state: VmState) -> Result<Vec<Write>, StoreError> {
        let old = self.existing_vm(vm.id, Some(expect_state))?;
        let field = if vm.tenant != old.tenant {
            Some("tenant")
        } else if vm.spec.name != old.spec.name {
            Some("name")
        } else if vm.spec != old.spec {
            Some("spec")
        } else if vm.created_at != old.created_at {
            Some("created_at")
        } else {
            None
        };
        if let Some(field) = field {
            return Err(StoreError::Immutable { field });
        }
        Ok(vec![Write::Vm(vm.id, Some(vm))])
    }

    fn delete_vm(&self, id: VmId, expect_state: Option<VmState>) -> Result<Vec<Write>, StoreError> {
        self.existing_vm(id, expect_state)?;
        Ok(vec![Write::Vm(id, None)])
    }

    fn prune_operations(&self, finished_before: Timestamp) -> Vec<Write> {
        self.operations
            .values()
            .filter(|op| is_finished_before(op, finished_before))
            .map(|op| Write::Operation(op.id, None))
            .collect()
    }

    fn existing_tenant(&self, name: &Name) -> Result<&Tenant, StoreError> {
        self.tenants
            .get(name)
            .ok_or_else(|| not_found("tenant", name))
    }

    /// The VM, if it exists and (when `expect` is set) is in the expected state.
    fn existing_vm(&self, id: VmId, expect: Option<VmState>) -> Result<&Vm, StoreError> {
        let vm = self.vms.get(&id).ok_or_else(|| not_found("vm", &id))?;
        match expect {
            Some(expected) if expected != vm.state => Err(StoreError::Conflict {
                vm: id,
                expected,
                actual: vm.state,
            }),
            _ => Ok(vm),
        }
    }
}

/// Whether [`Command::PruneOperations`] removes `op`.
pub(crate) fn is_finished_before(op: &Operation, before: Timestamp) -> bool {
    op.status.is_done() && op.finished_at.unwrap_or(op.created_at) < before
}

fn not_found(kind: &'static str, key: &impl ToString) -> StoreError {
    StoreError::NotFound {
        kind,
        key: key.to_string(),
    }
}

/// `1 vm`, `2 vms`.
fn counted(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
