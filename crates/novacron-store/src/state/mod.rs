//! [`State`]: the whole store in memory, and the pure logic that changes it.
//!
//! Applying a [`Command`](crate::Command) is two steps, so that a store can persist the result
//! between them:
//!
//! ```text
//!   State::plan(&self, command) ──► Result<Vec<Write>, StoreError>   validate, decide (pure)
//!                                          │
//!                           persist the writes (one redb transaction, a Raft log entry...)
//!                                          │
//!   State::commit(&mut self, writes)  ◄────┘                          cannot fail
//! ```
//!
//! `plan` reads only `self` and the command (no clock, no I/O), so replicas that plan the same
//! command against the same state write the same records.

mod plan;
mod write;

#[cfg(test)]
mod plan_test;

pub use write::Write;

use novacron_model::{
    ByteSize, Image, Name, Operation, OperationId, Tenant, Timestamp, TokenId, TokenRecord, Usage,
    Vm, VmId,
};
use std::collections::{BTreeMap, BTreeSet};

/// Every record of a store, with the indexes its reads need.
///
/// N.B. the indexes are derived from the records and only [`State::commit`] changes either, so
/// two states with the same records compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    tenants: BTreeMap<Name, Tenant>,
    tokens: BTreeMap<TokenId, TokenRecord>,
    /// Token ids by secret hash.
    token_hashes: BTreeMap<String, TokenId>,
    images: BTreeMap<Name, Image>,
    vms: BTreeMap<VmId, Vm>,
    /// VM ids by tenant, then by name.
    vm_names: BTreeMap<Name, BTreeMap<Name, VmId>>,
    /// Every VM, ordered by name then id.
    vm_order: BTreeSet<(Name, VmId)>,
    operations: BTreeMap<OperationId, Operation>,
    /// Operation ids by tenant, ordered by creation time then id.
    tenant_operations: BTreeMap<Name, BTreeSet<(Timestamp, OperationId)>>,
}

impl State {
    /// An empty state.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The VM with this id.
    #[must_use]
    pub fn vm(&self, id: VmId) -> Option<&Vm> {
        self.vms.get(&id)
    }

    /// The tenant's VM with this name.
    #[must_use]
    pub fn vm_by_name(&self, tenant: &Name, name: &Name) -> Option<&Vm> {
        let id = self.vm_names.get(tenant)?.get(name)?;
        self.vms.get(id)
    }

    /// The VMs of `tenant` (of every tenant when `None`), ordered by name then id.
    pub fn vms<'a>(&'a self, tenant: Option<&Name>) -> Box<dyn Iterator<Item = &'a Vm> + 'a> {
        match tenant {
            Some(t) => Box::new(
                self.vm_names
                    .get(t)
                    .into_iter()
                    .flat_map(BTreeMap::values)
                    .filter_map(|id| self.vms.get(id)),
            ),
            None => Box::new(self.vm_order.iter().filter_map(|(_, id)| self.vms.get(id))),
        }
    }

    /// The number of VMs of every tenant.
    #[must_use]
    pub fn vm_count(&self) -> usize {
        self.vms.len()
    }

    /// The image with this name.
    #[must_use]
    pub fn image(&self, name: &Name) -> Option<&Image> {
        self.images.get(name)
    }

    /// Every image, ordered by name.
    pub fn images(&self) -> impl Iterator<Item = &Image> {
        self.images.values()
    }

    /// The tenant with this name.
    #[must_use]
    pub fn tenant(&self, name: &Name) -> Option<&Tenant> {
        self.tenants.get(name)
    }

    /// Every tenant, ordered by name.
    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.values()
    }

    /// What `tenant` holds, counting all its VMs whatever their state (zero for a tenant that
    /// does not exist). Counts saturate at `u32::MAX`.
    #[must_use]
    pub fn usage(&self, tenant: &Name) -> Usage {
        let t = self.totals(tenant);
        Usage {
            vms: u32::try_from(t.vms).unwrap_or(u32::MAX),
            vcpus: u32::try_from(t.vcpus).unwrap_or(u32::MAX),
            memory: ByteSize(t.memory),
        }
    }

    /// The token whose secret hashes to `hash`.
    #[must_use]
    pub fn token_by_hash(&self, hash: &str) -> Option<&TokenRecord> {
        let id = self.token_hashes.get(hash)?;
        self.tokens.get(id)
    }

    /// The token with this id.
    #[must_use]
    pub fn token(&self, id: TokenId) -> Option<&TokenRecord> {
        self.tokens.get(&id)
    }

    /// The tokens of `tenant`, oldest first (ties by id).
    #[must_use]
    pub fn tokens(&self, tenant: &Name) -> Vec<&TokenRecord> {
        let mut out: Vec<&TokenRecord> = self
            .tokens
            .values()
            .filter(|t| &t.tenant == tenant)
            .collect();
        out.sort_by_key(|t| (t.created_at, t.id));
        out
    }

    /// The operation with this id.
    #[must_use]
    pub fn operation(&self, id: OperationId) -> Option<&Operation> {
        self.operations.get(&id)
    }

    /// The operations of `tenant`, newest first (by creation time, ties by id, descending).
    pub fn operations(&self, tenant: &Name) -> impl Iterator<Item = &Operation> {
        self.tenant_operations
            .get(tenant)
            .into_iter()
            .flat_map(|ops| ops.iter().rev())
            .filter_map(|(_, id)| self.operations.get(id))
    }

    /// Every operation, by id.
    pub fn all_operations(&self) -> impl Iterator<Item = &Operation> {
        self.operations.values()
    }

    /// Every token, by id.
    pub fn all_tokens(&self) -> impl Iterator<Item = &TokenRecord> {
        self.tokens.values()
    }

    /// The sums a quota limits, over all of `tenant`'s VMs, without saturation.
    fn totals(&self, tenant: &Name) -> Totals {
        let mut t = Totals::default();
        for vm in self.vms(Some(tenant)) {
            t.vms = t.vms.saturating_add(1);
            t.vcpus = t.vcpus.saturating_add(u64::from(vm.spec.vcpus));
            t.memory = t.memory.saturating_add(vm.spec.memory.bytes());
        }
        t
    }

    /// Applies writes that [`State::plan`] returned (and the caller persisted). Each write
    /// replaces or removes one record and keeps the indexes in step.
    pub fn commit(&mut self, writes: Vec<Write>) {
        for w in writes {
            match w {
                Write::Tenant(name, record) => self.set_tenant(name, record),
                Write::Token(id, record) => self.set_token(id, record),
                Write::Image(name, record) => self.set_image(name, record),
                Write::Vm(id, record) => self.set_vm(id, record),
                Write::Operation(id, record) => self.set_operation(id, record),
            }
        }
    }

    fn set_tenant(&mut self, name: Name, record: Option<Tenant>) {
        match record {
            Some(t) => self.tenants.insert(name, t),
            None => self.tenants.remove(&name),
        };
    }

    fn set_image(&mut self, name: Name, record: Option<Image>) {
        match record {
            Some(i) => self.images.insert(name, i),
            None => self.images.remove(&name),
        };
    }

    fn set_token(&mut self, id: TokenId, record: Option<TokenRecord>) {
        if let Some(old) = self.tokens.remove(&id) {
            if self.token_hashes.get(&old.secret_hash) == Some(&id) {
                self.token_hashes.remove(&old.secret_hash);
            }
        }
        if let Some(t) = record {
            self.token_hashes.insert(t.secret_hash.clone(), id);
            self.tokens.insert(id, t);
        }
    }

    fn set_vm(&mut self, id: VmId, record: Option<Vm>) {
        if let Some(old) = self.vms.remove(&id) {
            if let Some(names) = self.vm_names.get_mut(&old.tenant) {
                if names.get(&old.spec.name) == Some(&id) {
                    names.remove(&old.spec.name);
                }
                if names.is_empty() {
                    self.vm_names.remove(&old.tenant);
                }
            }
            self.vm_order.remove(&(old.spec.name, id));
        }
        if let Some(vm) = record {
            self.vm_names
                .entry(vm.tenant.clone())
                .or_default()
                .insert(vm.spec.name.clone(), id);
            self.vm_order.insert((vm.spec.name.clone(), id));
            self.vms.insert(id, vm);
        }
    }

    fn set_operation(&mut self, id: OperationId, record: Option<Operation>) {
        if let Some(old) = self.operations.remove(&id) {
            if let Some(ops) = self.tenant_operations.get_mut(&old.tenant) {
                ops.remove(&(old.created_at, id));
                if ops.is_empty() {
                    self.tenant_operations.remove(&old.tenant);
                }
            }
        }
        if let Some(op) = record {
            self.tenant_operations
                .entry(op.tenant.clone())
                .or_default()
                .insert((op.created_at, id));
            self.operations.insert(id, op);
        }
    }
}

/// What a tenant holds, in the units of [`StoreError::QuotaExceeded`](crate::StoreError).
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    vms: u64,
    vcpus: u64,
    /// Bytes.
    memory: u64,
}
