//! Quotas: each limit refused with its numbers, what counts, and creates racing each other.

use super::world;
use crate::testing::fixtures::{name, quota, tenant, vm, vm_id};
use crate::testing::{Failure, ensure, ensure_eq, ensure_matches};
use crate::{Command, Store, StoreError};
use novacron_model::{ByteSize, Name, Usage, Vm, VmState};

/// The fixture world with `acme`'s quota replaced.
fn limited(s: &dyn Store, limit: novacron_model::Quota) -> Result<super::World, Failure> {
    let w = world(s)?;
    s.apply(Command::PutTenant(tenant(&w.acme, limit)))?;
    Ok(w)
}

fn sized(id: u128, tenant: &Name, vm_name: &str, vcpus: u32, mib: u64) -> Result<Vm, Failure> {
    let mut v = vm(vm_id(id)?, tenant, &name(vm_name)?, &name("debian")?);
    v.spec.vcpus = vcpus;
    v.spec.memory = ByteSize::mib(mib);
    Ok(v)
}

pub(super) fn create_vm_refuses_more_vms_than_the_quota(s: &dyn Store) -> Result<(), Failure> {
    let w = limited(s, quota(2, 100, 100_000))?;
    s.apply(Command::CreateVm(sized(1, &w.acme, "a", 1, 64)?))?;
    s.apply(Command::CreateVm(sized(2, &w.acme, "b", 1, 64)?))?;
    let refused = s.apply(Command::CreateVm(sized(3, &w.acme, "c", 1, 64)?));
    ensure_matches!(
        refused,
        Err(StoreError::QuotaExceeded {
            ref tenant,
            resource: "vms",
            limit: 2,
            used: 2,
            requested: 1,
        }) if *tenant == w.acme
    );
    ensure_eq!(s.vms(Some(&w.acme)).len(), 2);
    Ok(())
}

pub(super) fn create_vm_refuses_more_vcpus_than_the_quota(s: &dyn Store) -> Result<(), Failure> {
    let w = limited(s, quota(10, 4, 100_000))?;
    s.apply(Command::CreateVm(sized(1, &w.acme, "a", 3, 64)?))?;
    ensure_matches!(
        s.apply(Command::CreateVm(sized(2, &w.acme, "b", 2, 64)?)),
        Err(StoreError::QuotaExceeded {
            resource: "vcpus",
            limit: 4,
            used: 3,
            requested: 2,
            ..
        })
    );
    // Exactly at the limit is allowed.
    s.apply(Command::CreateVm(sized(3, &w.acme, "c", 1, 64)?))?;
    ensure_eq!(s.usage(&w.acme).vcpus, 4);
    Ok(())
}

pub(super) fn create_vm_refuses_more_memory_than_the_quota(s: &dyn Store) -> Result<(), Failure> {
    let w = limited(s, quota(10, 100, 128))?;
    s.apply(Command::CreateVm(sized(1, &w.acme, "a", 1, 64)?))?;
    let refused = s.apply(Command::CreateVm(sized(2, &w.acme, "b", 1, 128)?));
    ensure_matches!(
        refused,
        Err(StoreError::QuotaExceeded {
            resource: "memory",
            limit,
            used,
            requested,
            ..
        }) if limit == 128 << 20 && used == 64 << 20 && requested == 128 << 20
    );
    if let Err(e) = refused {
        ensure_eq!(
            e.to_string(),
            "tenant acme: memory quota exceeded: limit 128M, in use 64M, requested 128M"
        );
    }
    Ok(())
}

pub(super) fn quota_counts_vms_in_every_state(s: &dyn Store) -> Result<(), Failure> {
    let w = limited(s, quota(2, 100, 100_000))?;
    let a = sized(1, &w.acme, "a", 1, 64)?;
    s.apply(Command::CreateVm(a.clone()))?;
    s.apply(Command::CreateVm(sized(2, &w.acme, "b", 1, 64)?))?;
    s.apply(Command::UpdateVm {
        vm: Vm {
            state: VmState::Failed,
            state_reason: Some("qemu exited with status 1".into()),
            ..a
        },
        expect_state: VmState::Stopped,
    })?;
    ensure_matches!(
        s.apply(Command::CreateVm(sized(3, &w.acme, "c", 1, 64)?)),
        Err(StoreError::QuotaExceeded {
            resource: "vms",
            used: 2,
            ..
        })
    );
    Ok(())
}

pub(super) fn quota_and_usage_are_per_tenant(s: &dyn Store) -> Result<(), Failure> {
    let w = limited(s, quota(1, 100, 100_000))?;
    s.apply(Command::CreateVm(sized(1, &w.acme, "a", 2, 128)?))?;
    s.apply(Command::CreateVm(sized(2, &w.globex, "a", 3, 256)?))?;
    s.apply(Command::CreateVm(sized(3, &w.globex, "b", 1, 64)?))?;
    ensure_eq!(
        s.usage(&w.acme),
        Usage {
            vms: 1,
            vcpus: 2,
            memory: ByteSize::mib(128)
        }
    );
    ensure_eq!(
        s.usage(&w.globex),
        Usage {
            vms: 2,
            vcpus: 4,
            memory: ByteSize::mib(320)
        }
    );
    ensure_eq!(s.usage(&name("nobody")?), Usage::default());
    Ok(())
}

pub(super) fn lowering_a_quota_keeps_vms_and_refuses_new_ones(
    s: &dyn Store,
) -> Result<(), Failure> {
    let w = world(s)?;
    s.apply(Command::CreateVm(sized(1, &w.acme, "a", 1, 64)?))?;
    s.apply(Command::CreateVm(sized(2, &w.acme, "b", 1, 64)?))?;
    s.apply(Command::PutTenant(tenant(&w.acme, quota(1, 100, 100_000))))?;
    ensure_eq!(s.vms(Some(&w.acme)).len(), 2);
    ensure_matches!(
        s.apply(Command::CreateVm(sized(3, &w.acme, "c", 1, 64)?)),
        Err(StoreError::QuotaExceeded {
            resource: "vms",
            limit: 1,
            used: 2,
            ..
        })
    );
    Ok(())
}

/// Creates that run at once are serialized by `apply`: 20 threads against a quota of 10 VMs
/// leave exactly 10.
pub(super) fn concurrent_creates_never_exceed_the_quota(s: &dyn Store) -> Result<(), Failure> {
    const THREADS: u128 = 20;
    let w = limited(s, quota(10, 1_000, 1_000_000))?;
    let vms = (0..THREADS)
        .map(|i| sized(i + 1, &w.acme, &format!("vm-{i}"), 1, 64))
        .collect::<Result<Vec<_>, _>>()?;
    let outcomes = std::thread::scope(|scope| {
        let handles: Vec<_> = vms
            .into_iter()
            .map(|v| scope.spawn(move || s.apply(Command::CreateVm(v))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| Failure::new("a create thread panicked"))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let created = outcomes.iter().filter(|r| r.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(StoreError::QuotaExceeded {
                    resource: "vms",
                    ..
                })
            )
        })
        .count();
    ensure!(
        created == 10 && refused == 10,
        "{created} created and {refused} refused for quota, expected 10 and 10: {outcomes:?}"
    );
    ensure_eq!(s.usage(&w.acme).vms, 10);
    ensure_eq!(s.vms(Some(&w.acme)).len(), 10);
    Ok(())
}
