//! Records for tests: small valid values with fixed times, and [`Dump`], everything a store
//! shows through its reads.

use super::Failure;
use crate::Store;
use novacron_model::{
    ByteSize, Image, Name, Operation, OperationId, OperationKind, OperationStatus, Quota, Tenant,
    Timestamp, TokenId, TokenRecord, Usage, Vm, VmId, VmSpec, VmState,
};
use std::collections::BTreeSet;

/// Checks and wraps a name.
///
/// # Errors
/// A [`Failure`] if `s` is not a valid [`Name`].
#[track_caller]
pub fn name(s: &str) -> Result<Name, Failure> {
    Ok(Name::new(s)?)
}

/// The id whose UUID is the number `n`, so that tests can order ids.
///
/// # Errors
/// Never in practice: a [`Failure`] if the formatted UUID did not parse.
#[track_caller]
pub fn vm_id(n: u128) -> Result<VmId, Failure> {
    uuid_text(n)
        .parse()
        .map_err(|e| Failure::new(format!("bad fixture id: {e}")))
}

/// The token id whose UUID is the number `n`.
///
/// # Errors
/// Never in practice: a [`Failure`] if the formatted UUID did not parse.
#[track_caller]
pub fn token_id(n: u128) -> Result<TokenId, Failure> {
    uuid_text(n)
        .parse()
        .map_err(|e| Failure::new(format!("bad fixture id: {e}")))
}

/// The operation id whose UUID is the number `n`.
///
/// # Errors
/// Never in practice: a [`Failure`] if the formatted UUID did not parse.
#[track_caller]
pub fn operation_id(n: u128) -> Result<OperationId, Failure> {
    uuid_text(n)
        .parse()
        .map_err(|e| Failure::new(format!("bad fixture id: {e}")))
}

fn uuid_text(n: u128) -> String {
    let hex = format!("{n:032x}");
    let part = |from: usize, to: usize| hex.get(from..to).unwrap_or_default().to_owned();
    format!(
        "{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    )
}

/// A quota of `vms` VMs, `vcpus` vCPUs and `memory_mib` MiB.
#[must_use]
pub const fn quota(vms: u32, vcpus: u32, memory_mib: u64) -> Quota {
    Quota {
        max_vms: vms,
        max_vcpus: vcpus,
        max_memory: ByteSize::mib(memory_mib),
    }
}

/// A tenant created at time 1000.
#[must_use]
pub fn tenant(name: &Name, quota: Quota) -> Tenant {
    Tenant {
        name: name.clone(),
        quota,
        created_at: Timestamp(1_000),
    }
}

/// A 1 GiB raw image imported at time 1000.
#[must_use]
pub fn image(name: &Name) -> Image {
    Image {
        name: name.clone(),
        disk: format!("/var/lib/novacron/images/{name}.raw"),
        disk_format: "raw".into(),
        virtual_size: ByteSize::mib(1024),
        kernel: None,
        initrd: None,
        cmdline: None,
        created_at: Timestamp(1_000),
        digest: None,
    }
}

/// A stopped VM with 1 vCPU and 64 MiB, created at time 2000.
#[must_use]
pub fn vm(id: VmId, tenant: &Name, name: &Name, image: &Name) -> Vm {
    Vm {
        id,
        tenant: tenant.clone(),
        spec: VmSpec {
            name: name.clone(),
            vcpus: 1,
            memory: ByteSize::mib(64),
            image: image.clone(),
            disk_size: None,
        },
        state: VmState::Stopped,
        state_reason: None,
        disks: Vec::new(),
        runtime: None,
        created_at: Timestamp(2_000),
        updated_at: Timestamp(2_000),
    }
}

/// An operator token issued at time 1000.
#[must_use]
pub fn token(id: TokenId, tenant: &Name, secret_hash: &str) -> TokenRecord {
    TokenRecord {
        id,
        tenant: tenant.clone(),
        role: novacron_model::Role::Operator,
        secret_hash: secret_hash.into(),
        label: "test".into(),
        created_at: Timestamp(1_000),
    }
}

/// A VM start of `tenant`'s, created at `created`; finished at `finished` when that is set
/// (succeeded), running otherwise.
#[must_use]
pub fn operation(
    id: OperationId,
    tenant: &Name,
    created: Timestamp,
    finished: Option<Timestamp>,
) -> Operation {
    Operation {
        id,
        tenant: tenant.clone(),
        kind: OperationKind::VmStart,
        target: "vm".into(),
        status: if finished.is_some() {
            OperationStatus::Succeeded
        } else {
            OperationStatus::Running
        },
        error: None,
        created_at: created,
        finished_at: finished,
        migration: None,
    }
}

/// Everything a store shows through its reads, for comparing two stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dump {
    /// [`Store::tenants`].
    pub tenants: Vec<Tenant>,
    /// [`Store::images`].
    pub images: Vec<Image>,
    /// [`Store::vms`] of every tenant.
    pub vms: Vec<Vm>,
    /// Per tenant: its name, [`Store::vms`], [`Store::tokens`], all [`Store::operations`] and
    /// [`Store::usage`].
    pub per_tenant: Vec<TenantDump>,
}

/// What a store shows of one tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantDump {
    /// The tenant's name.
    pub name: Name,
    /// Its VMs.
    pub vms: Vec<Vm>,
    /// Its tokens.
    pub tokens: Vec<TokenRecord>,
    /// Its operations, newest first.
    pub operations: Vec<Operation>,
    /// Its usage.
    pub usage: Usage,
}

impl Dump {
    /// Reads `store`, per tenant for every tenant it lists and every name in `more` (tenants
    /// that may be gone but still own operations).
    #[must_use]
    pub fn of(store: &dyn Store, more: &[Name]) -> Self {
        let tenants = store.tenants();
        let names: BTreeSet<Name> = tenants
            .iter()
            .map(|t| t.name.clone())
            .chain(more.iter().cloned())
            .collect();
        let per_tenant = names
            .into_iter()
            .map(|name| TenantDump {
                vms: store.vms(Some(&name)),
                tokens: store.tokens(&name),
                operations: store.operations(&name, usize::MAX),
                usage: store.usage(&name),
                name,
            })
            .collect();
        Self {
            tenants,
            images: store.images(),
            vms: store.vms(None),
            per_tenant,
        }
    }
}
