//! [`StateCell`]: a [`State`] behind a read-write lock, serving the [`Store`](crate::Store)
//! reads for every implementation.
//!
//! Writers hold their own mutex across plan → persist → commit, so the write lock here is
//! taken only for the (short, infallible) commit and readers are never blocked by disk I/O.

use crate::state::{State, Write};
use novacron_model::{Image, Name, Operation, OperationId, Tenant, TokenRecord, Usage, Vm, VmId};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

/// The in-memory state shared by readers and the one writer.
#[derive(Debug, Default)]
pub(crate) struct StateCell {
    state: RwLock<State>,
}

impl StateCell {
    pub(crate) fn new(state: State) -> Self {
        Self {
            state: RwLock::new(state),
        }
    }

    /// Read access. A poisoned lock is used as is: [`State::commit`] does not panic, so no
    /// writer can have left the state half-changed.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies writes that are already durable.
    pub(crate) fn commit(&self, writes: Vec<Write>) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .commit(writes);
    }

    pub(crate) fn vm(&self, id: VmId) -> Option<Vm> {
        self.read().vm(id).cloned()
    }

    pub(crate) fn vm_by_name(&self, tenant: &Name, name: &Name) -> Option<Vm> {
        self.read().vm_by_name(tenant, name).cloned()
    }

    pub(crate) fn vms(&self, tenant: Option<&Name>) -> Vec<Vm> {
        let state = self.read();
        let mut out = Vec::with_capacity(match tenant {
            Some(_) => 0,
            None => state.vm_count(),
        });
        out.extend(state.vms(tenant).cloned());
        out
    }

    pub(crate) fn image(&self, name: &Name) -> Option<Image> {
        self.read().image(name).cloned()
    }

    pub(crate) fn images(&self) -> Vec<Image> {
        self.read().images().cloned().collect()
    }

    pub(crate) fn tenant(&self, name: &Name) -> Option<Tenant> {
        self.read().tenant(name).cloned()
    }

    pub(crate) fn tenants(&self) -> Vec<Tenant> {
        self.read().tenants().cloned().collect()
    }

    pub(crate) fn usage(&self, tenant: &Name) -> Usage {
        self.read().usage(tenant)
    }

    pub(crate) fn token_by_hash(&self, hash: &str) -> Option<TokenRecord> {
        self.read().token_by_hash(hash).cloned()
    }

    pub(crate) fn tokens(&self, tenant: &Name) -> Vec<TokenRecord> {
        self.read().tokens(tenant).into_iter().cloned().collect()
    }

    pub(crate) fn operation(&self, id: OperationId) -> Option<Operation> {
        self.read().operation(id).cloned()
    }

    pub(crate) fn operations(&self, tenant: &Name, limit: usize) -> Vec<Operation> {
        self.read()
            .operations(tenant)
            .take(limit)
            .cloned()
            .collect()
    }
}

/// Implements the read methods of [`Store`](crate::Store) by delegating to the
/// [`StateCell`] in field `$cell`.
macro_rules! delegate_reads {
    ($cell:ident) => {
        fn vm(&self, id: ::novacron_model::VmId) -> Option<::novacron_model::Vm> {
            self.$cell.vm(id)
        }
        fn vm_by_name(
            &self,
            tenant: &::novacron_model::Name,
            name: &::novacron_model::Name,
        ) -> Option<::novacron_model::Vm> {
            self.$cell.vm_by_name(tenant, name)
        }
        fn vms(&self, tenant: Option<&::novacron_model::Name>) -> Vec<::novacron_model::Vm> {
            self.$cell.vms(tenant)
        }
        fn image(&self, name: &::novacron_model::Name) -> Option<::novacron_model::Image> {
            self.$cell.image(name)
        }
        fn images(&self) -> Vec<::novacron_model::Image> {
            self.$cell.images()
        }
        fn tenant(&self, name: &::novacron_model::Name) -> Option<::novacron_model::Tenant> {
            self.$cell.tenant(name)
        }
        fn tenants(&self) -> Vec<::novacron_model::Tenant> {
            self.$cell.tenants()
        }
        fn usage(&self, tenant: &::novacron_model::Name) -> ::novacron_model::Usage {
            self.$cell.usage(tenant)
        }
        fn token_by_hash(&self, hash: &str) -> Option<::novacron_model::TokenRecord> {
            self.$cell.token_by_hash(hash)
        }
        fn tokens(&self, tenant: &::novacron_model::Name) -> Vec<::novacron_model::TokenRecord> {
            self.$cell.tokens(tenant)
        }
        fn operation(
            &self,
            id: ::novacron_model::OperationId,
        ) -> Option<::novacron_model::Operation> {
            self.$cell.operation(id)
        }
        fn operations(
            &self,
            tenant: &::novacron_model::Name,
            limit: usize,
        ) -> Vec<::novacron_model::Operation> {
            self.$cell.operations(tenant, limit)
        }
    };
}

pub(crate) use delegate_reads;
