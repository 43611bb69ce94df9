//! Persistence: what a store shows survives dropping and reopening it.

use super::world;
use crate::testing::fixtures::{
    name, operation, operation_id, quota, tenant, token, token_id, vm, vm_id,
};
use crate::testing::{Dump, Failure, ensure, ensure_eq, ensure_matches};
use crate::{Command, Store, StoreError};
use novacron_model::{Timestamp, Vm, VmState};
use std::path::Path;

type Open<'a> = &'a dyn Fn(&Path) -> Result<Box<dyn Store>, StoreError>;

/// Every kind of record, with updates and deletes among the creates.
fn populate(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    s.apply(Command::PutTenant(tenant(&name("gone")?, quota(1, 1, 16))))?;
    s.apply(Command::DeleteTenant(name("gone")?))?;
    s.apply(Command::PutTenant(tenant(&w.globex, quota(3, 4, 512))))?;
    s.apply(Command::PutToken(token(token_id(1)?, &w.acme, "h1")))?;
    s.apply(Command::PutToken(token(token_id(2)?, &w.globex, "h2")))?;
    s.apply(Command::PutToken(token(token_id(3)?, &w.globex, "h3")))?;
    s.apply(Command::DeleteToken(token_id(3)?))?;
    let web = vm(vm_id(1)?, &w.acme, &name("web")?, &w.debian);
    s.apply(Command::CreateVm(web.clone()))?;
    s.apply(Command::CreateVm(vm(
        vm_id(2)?,
        &w.acme,
        &name("db")?,
        &w.debian,
    )))?;
    s.apply(Command::CreateVm(vm(
        vm_id(3)?,
        &w.globex,
        &name("web")?,
        &w.debian,
    )))?;
    s.apply(Command::DeleteVm {
        id: vm_id(2)?,
        expect_state: None,
    })?;
    s.apply(Command::UpdateVm {
        vm: Vm {
            state: VmState::Running,
            updated_at: Timestamp(5_000),
            ..web
        },
        expect_state: VmState::Stopped,
    })?;
    s.apply(Command::PutImage(crate::testing::fixtures::image(&name(
        "alpine",
    )?)))?;
    for (id, created, finished) in [(1, 10, None), (2, 11, Some(12)), (3, 13, Some(30))] {
        let op = operation(
            operation_id(id)?,
            &w.acme,
            Timestamp(created),
            finished.map(Timestamp),
        );
        s.apply(Command::PutOperation(op))?;
    }
    s.apply(Command::PruneOperations {
        finished_before: Timestamp(20),
    })?;
    Ok(())
}

pub(super) fn records_survive_a_reopen(dir: &Path, open: Open<'_>) -> Result<(), Failure> {
    let path = dir.join("store");
    let before = {
        let s = open(&path)?;
        populate(&*s)?;
        Dump::of(&*s, &[])
    };
    ensure!(!before.vms.is_empty(), "populate left no VMs");
    let s = open(&path)?;
    ensure_eq!(Dump::of(&*s, &[]), before);
    ensure_eq!(s.token_by_hash("h3"), None);
    ensure_eq!(s.vm(vm_id(2)?), None);
    ensure_eq!(s.operation(operation_id(2)?), None);
    ensure_eq!(s.operation(operation_id(1)?).is_some(), true);
    Ok(())
}

pub(super) fn a_reopened_store_enforces_what_it_loaded(
    dir: &Path,
    open: Open<'_>,
) -> Result<(), Failure> {
    let path = dir.join("store");
    {
        let s = open(&path)?;
        populate(&*s)?;
    }
    let s = open(&path)?;
    let (acme, globex, debian) = (name("acme")?, name("globex")?, name("debian")?);
    // Names, hashes, image users and quotas come back with the records.
    ensure_matches!(
        s.apply(Command::CreateVm(vm(
            vm_id(9)?,
            &acme,
            &name("web")?,
            &debian
        ))),
        Err(StoreError::AlreadyExists { kind: "vm", .. })
    );
    ensure_matches!(
        s.apply(Command::PutToken(token(token_id(9)?, &acme, "h2"))),
        Err(StoreError::AlreadyExists { .. })
    );
    ensure_matches!(
        s.apply(Command::DeleteImage(debian.clone())),
        Err(StoreError::InUse { .. })
    );
    ensure_matches!(
        s.apply(Command::UpdateVm {
            vm: vm(vm_id(1)?, &acme, &name("web")?, &debian),
            expect_state: VmState::Stopped,
        }),
        Err(StoreError::Conflict {
            actual: VmState::Running,
            ..
        })
    );
    for i in 0..2 {
        s.apply(Command::CreateVm(vm(
            vm_id(10 + i)?,
            &globex,
            &name(&format!("x{i}"))?,
            &debian,
        )))?;
    }
    ensure_matches!(
        s.apply(Command::CreateVm(vm(
            vm_id(20)?,
            &globex,
            &name("y")?,
            &debian
        ))),
        Err(StoreError::QuotaExceeded {
            resource: "vms",
            limit: 3,
            used: 3,
            ..
        })
    );
    // What is written after a reopen survives the next one.
    let before = Dump::of(&*s, &[]);
    drop(s);
    let s = open(&path)?;
    ensure_eq!(Dump::of(&*s, &[]), before);
    Ok(())
}
