//! A deliberately naive model of the store: plain vectors, linear scans, the rules of each
//! [`Command`] written out again from its documentation.

use crate::Command;
use novacron_model::{
    ByteSize, Image, Name, Operation, OperationId, Tenant, TokenId, TokenRecord, Usage, Vm, VmId,
};

/// What a refusal is, without its free text (`InUse::by`, `Invalid::message`).
pub(super) type Refusal = String;

#[derive(Clone, Debug, Default)]
pub(super) struct Model {
    pub(super) tenants: Vec<Tenant>,
    pub(super) tokens: Vec<TokenRecord>,
    pub(super) images: Vec<Image>,
    pub(super) vms: Vec<Vm>,
    pub(super) operations: Vec<Operation>,
}

impl Model {
    pub(super) fn apply(&mut self, c: &Command) -> Result<(), Refusal> {
        match c {
            Command::PutTenant(t) => {
                match self.tenants.iter_mut().find(|x| x.name == t.name) {
                    Some(old) => old.quota = t.quota,
                    None => self.tenants.push(t.clone()),
                }
                Ok(())
            }
            Command::DeleteTenant(n) => {
                if self.tenant(n).is_none() {
                    return Err(format!("not found tenant {n}"));
                }
                if self.vms.iter().any(|v| &v.tenant == n)
                    || self.tokens.iter().any(|t| &t.tenant == n)
                {
                    return Err(format!("in use tenant {n}"));
                }
                self.tenants.retain(|t| &t.name != n);
                Ok(())
            }
            Command::PutToken(t) => {
                if t.secret_hash.is_empty() {
                    return Err("invalid".into());
                }
                if self.tenant(&t.tenant).is_none() {
                    return Err(format!("not found tenant {}", t.tenant));
                }
                if self
                    .tokens
                    .iter()
                    .any(|x| x.secret_hash == t.secret_hash && x.id != t.id)
                {
                    return Err(format!("exists token secret hash {}", t.secret_hash));
                }
                self.tokens.retain(|x| x.id != t.id);
                self.tokens.push(t.clone());
                Ok(())
            }
            Command::DeleteToken(id) => {
                if !self.tokens.iter().any(|t| t.id == *id) {
                    return Err(format!("not found token {id}"));
                }
                self.tokens.retain(|t| t.id != *id);
                Ok(())
            }
            Command::PutImage(i) => {
                if self.image(&i.name).is_some() {
                    return Err(format!("exists image {}", i.name));
                }
                self.images.push(i.clone());
                Ok(())
            }
            Command::DeleteImage(n) => {
                if self.image(n).is_none() {
                    return Err(format!("not found image {n}"));
                }
                if self.vms.iter().any(|v| &v.spec.image == n) {
                    return Err(format!("in use image {n}"));
                }
                self.images.retain(|i| &i.name != n);
                Ok(())
            }
            Command::CreateVm(vm) => self.create_vm(vm),
            Command::UpdateVm { vm, expect_state } => {
                let old = self.vm(vm.id).ok_or(format!("not found vm {}", vm.id))?;
                if old.state != *expect_state {
                    return Err(format!("conflict {} {expect_state} {}", vm.id, old.state));
                }
                let field = if old.tenant != vm.tenant {
                    "tenant"
                } else if old.spec.name != vm.spec.name {
                    "name"
                } else if old.spec != vm.spec {
                    "spec"
                } else if old.created_at != vm.created_at {
                    "created_at"
                } else {
                    ""
                };
                if !field.is_empty() {
                    return Err(format!("immutable {field}"));
                }
                self.vms.retain(|v| v.id != vm.id);
                self.vms.push(vm.clone());
                Ok(())
            }
            Command::DeleteVm { id, expect_state } => {
                let old = self.vm(*id).ok_or(format!("not found vm {id}"))?;
                if let Some(e) = expect_state {
                    if *e != old.state {
                        return Err(format!("conflict {id} {e} {}", old.state));
                    }
                }
                self.vms.retain(|v| v.id != *id);
                Ok(())
            }
            Command::PutOperation(op) => {
                self.operations.retain(|o| o.id != op.id);
                self.operations.push(op.clone());
                Ok(())
            }
            Command::PruneOperations { finished_before } => {
                self.operations.retain(|o| {
                    !(o.status.is_done()
                        && o.finished_at.unwrap_or(o.created_at) < *finished_before)
                });
                Ok(())
            }
        }
    }

    fn create_vm(&mut self, vm: &Vm) -> Result<(), Refusal> {
        if vm.spec.validate().is_err() {
            return Err("invalid".into());
        }
        let tenant = self
            .tenant(&vm.tenant)
            .ok_or(format!("not found tenant {}", vm.tenant))?;
        let image = self
            .image(&vm.spec.image)
            .ok_or(format!("not found image {}", vm.spec.image))?;
        if vm.spec.disk_size.is_some_and(|d| d < image.virtual_size) {
            return Err("invalid".into());
        }
        if self.vm(vm.id).is_some() {
            return Err(format!("exists vm {}", vm.id));
        }
        if self
            .vms
            .iter()
            .any(|v| v.tenant == vm.tenant && v.spec.name == vm.spec.name)
        {
            return Err(format!("exists vm {}/{}", vm.tenant, vm.spec.name));
        }
        let mine: Vec<&Vm> = self.vms.iter().filter(|v| v.tenant == vm.tenant).collect();
        let used_vcpus: u64 = mine.iter().map(|v| u64::from(v.spec.vcpus)).sum();
        let used_memory: u64 = mine.iter().map(|v| v.spec.memory.bytes()).sum();
        let q = tenant.quota;
        if mine.len() as u64 + 1 > u64::from(q.max_vms) {
            return Err(format!(
                "quota {} vms {} {} 1",
                vm.tenant,
                q.max_vms,
                mine.len()
            ));
        }
        if used_vcpus + u64::from(vm.spec.vcpus) > u64::from(q.max_vcpus) {
            return Err(format!(
                "quota {} vcpus {} {used_vcpus} {}",
                vm.tenant, q.max_vcpus, vm.spec.vcpus
            ));
        }
        if used_memory + vm.spec.memory.bytes() > q.max_memory.bytes() {
            return Err(format!(
                "quota {} memory {} {used_memory} {}",
                vm.tenant,
                q.max_memory.bytes(),
                vm.spec.memory.bytes()
            ));
        }
        self.vms.push(vm.clone());
        Ok(())
    }

    pub(super) fn tenant(&self, n: &Name) -> Option<&Tenant> {
        self.tenants.iter().find(|t| &t.name == n)
    }

    pub(super) fn image(&self, n: &Name) -> Option<&Image> {
        self.images.iter().find(|i| &i.name == n)
    }

    pub(super) fn vm(&self, id: VmId) -> Option<&Vm> {
        self.vms.iter().find(|v| v.id == id)
    }

    pub(super) fn token(&self, id: TokenId) -> Option<&TokenRecord> {
        self.tokens.iter().find(|t| t.id == id)
    }

    pub(super) fn operation(&self, id: OperationId) -> Option<&Operation> {
        self.operations.iter().find(|o| o.id == id)
    }

    pub(super) fn usage(&self, tenant: &Name) -> Usage {
        let mine: Vec<&Vm> = self.vms.iter().filter(|v| &v.tenant == tenant).collect();
        Usage {
            vms: u32::try_from(mine.len()).unwrap(),
            vcpus: mine.iter().map(|v| v.spec.vcpus).sum(),
            memory: ByteSize(mine.iter().map(|v| v.spec.memory.bytes()).sum()),
        }
    }
}

/// The [`Refusal`] the model would give for a store's error.
pub(super) fn refusal(e: &crate::StoreError) -> Refusal {
    use crate::StoreError as E;
    match e {
        E::NotFound { kind, key } => format!("not found {kind} {key}"),
        E::AlreadyExists { kind, key } => format!("exists {kind} {key}"),
        E::QuotaExceeded {
            tenant,
            resource,
            limit,
            used,
            requested,
        } => format!("quota {tenant} {resource} {limit} {used} {requested}"),
        E::Conflict {
            vm,
            expected,
            actual,
        } => format!("conflict {vm} {expected} {actual}"),
        E::InUse { kind, key, .. } => format!("in use {kind} {key}"),
        E::Immutable { field } => format!("immutable {field}"),
        E::Invalid { .. } => "invalid".into(),
        E::Database(_) | E::Corrupt { .. } | E::Encode { .. } | E::SchemaTooNew { .. } => {
            format!("storage failure: {e}")
        }
    }
}
