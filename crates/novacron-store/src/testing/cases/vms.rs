//! VM creation and its refusals (quota aside), reads and their order.

use super::world;
use crate::testing::fixtures::{name, token, token_id, vm, vm_id};
use crate::testing::{Dump, Failure, ensure_eq, ensure_matches};
use crate::{Command, Store, StoreError};
use novacron_model::{ByteSize, Usage, VmId, VmSpec};

pub(super) fn create_vm_is_read_by_id_and_by_name(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    let web = name("web")?;
    let record = vm(vm_id(1)?, &w.acme, &web, &w.debian);
    s.apply(Command::CreateVm(record.clone()))?;
    ensure_eq!(s.vm(record.id), Some(record.clone()));
    ensure_eq!(s.vm_by_name(&w.acme, &web), Some(record.clone()));
    ensure_eq!(s.vm_by_name(&w.globex, &web), None);
    ensure_eq!(s.vm(vm_id(2)?), None);
    ensure_eq!(s.vms(Some(&w.acme)), vec![record.clone()]);
    ensure_eq!(s.vms(Some(&w.globex)), Vec::new());
    ensure_eq!(s.vms(None), vec![record]);
    ensure_eq!(
        s.usage(&w.acme),
        Usage {
            vms: 1,
            vcpus: 1,
            memory: ByteSize::mib(64)
        }
    );
    Ok(())
}

pub(super) fn create_vm_refuses_an_unknown_tenant(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    let record = vm(vm_id(1)?, &name("nobody")?, &name("web")?, &w.debian);
    ensure_matches!(
        s.apply(Command::CreateVm(record)),
        Err(StoreError::NotFound { kind: "tenant", ref key }) if key == "nobody"
    );
    ensure_eq!(s.vms(None), Vec::new());
    Ok(())
}

pub(super) fn create_vm_refuses_an_unknown_image(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    let record = vm(vm_id(1)?, &w.acme, &name("web")?, &name("fedora")?);
    ensure_matches!(
        s.apply(Command::CreateVm(record)),
        Err(StoreError::NotFound { kind: "image", ref key }) if key == "fedora"
    );
    ensure_eq!(s.vms(None), Vec::new());
    Ok(())
}

pub(super) fn create_vm_refuses_an_invalid_spec(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    let mut record = vm(vm_id(1)?, &w.acme, &name("web")?, &w.debian);
    record.spec.vcpus = 0;
    ensure_matches!(
        s.apply(Command::CreateVm(record.clone())),
        Err(StoreError::Invalid { ref message }) if message.starts_with("vcpus:")
    );
    record.spec.vcpus = 1;
    record.spec.memory = ByteSize(1);
    ensure_matches!(
        s.apply(Command::CreateVm(record)),
        Err(StoreError::Invalid { ref message }) if message.starts_with("memory:")
    );
    ensure_eq!(s.vms(None), Vec::new());
    Ok(())
}

pub(super) fn create_vm_refuses_a_disk_smaller_than_the_image(
    s: &dyn Store,
) -> Result<(), Failure> {
    let w = world(s)?;
    let mut record = vm(vm_id(1)?, &w.acme, &name("web")?, &w.debian);
    record.spec.disk_size = Some(ByteSize::mib(512));
    ensure_matches!(
        s.apply(Command::CreateVm(record.clone())),
        Err(StoreError::Invalid { ref message }) if message.starts_with("disk_size:")
    );
    record.spec.disk_size = Some(ByteSize::mib(1024));
    s.apply(Command::CreateVm(record))?;
    Ok(())
}

pub(super) fn create_vm_refuses_a_name_in_use_within_the_tenant(
    s: &dyn Store,
) -> Result<(), Failure> {
    let w = world(s)?;
    let web = name("web")?;
    let first = vm(vm_id(1)?, &w.acme, &web, &w.debian);
    s.apply(Command::CreateVm(first.clone()))?;
    ensure_matches!(
        s.apply(Command::CreateVm(vm(vm_id(2)?, &w.acme, &web, &w.debian))),
        Err(StoreError::AlreadyExists { kind: "vm", ref key }) if key == "acme/web"
    );
    ensure_eq!(s.vm_by_name(&w.acme, &web), Some(first));
    // Another tenant may use the same name.
    s.apply(Command::CreateVm(vm(vm_id(3)?, &w.globex, &web, &w.debian)))?;
    ensure_eq!(s.vms(None).len(), 2);
    Ok(())
}

pub(super) fn create_vm_refuses_an_id_in_use(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    let id = vm_id(1)?;
    s.apply(Command::CreateVm(vm(id, &w.acme, &name("web")?, &w.debian)))?;
    ensure_matches!(
        s.apply(Command::CreateVm(vm(id, &w.globex, &name("db")?, &w.debian))),
        Err(StoreError::AlreadyExists { kind: "vm", ref key }) if *key == id.to_string()
    );
    ensure_eq!(s.vms(Some(&w.globex)), Vec::new());
    Ok(())
}

pub(super) fn vms_are_listed_by_name_then_id(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    for (id, tenant, vm_name) in [
        (1, &w.acme, "bravo"),
        (5, &w.acme, "alpha"),
        (3, &w.globex, "alpha"),
        (2, &w.globex, "charlie"),
    ] {
        s.apply(Command::CreateVm(vm(
            vm_id(id)?,
            tenant,
            &name(vm_name)?,
            &w.debian,
        )))?;
    }
    let ids = |vms: Vec<novacron_model::Vm>| -> Vec<VmId> { vms.iter().map(|v| v.id).collect() };
    ensure_eq!(
        ids(s.vms(None)),
        vec![vm_id(3)?, vm_id(5)?, vm_id(1)?, vm_id(2)?]
    );
    ensure_eq!(ids(s.vms(Some(&w.acme))), vec![vm_id(5)?, vm_id(1)?]);
    ensure_eq!(ids(s.vms(Some(&w.globex))), vec![vm_id(3)?, vm_id(2)?]);
    ensure_eq!(ids(s.vms(Some(&name("nobody")?))), Vec::new());
    Ok(())
}

pub(super) fn refused_commands_change_nothing(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    let web = name("web")?;
    s.apply(Command::CreateVm(vm(vm_id(1)?, &w.acme, &web, &w.debian)))?;
    s.apply(Command::PutToken(token(token_id(1)?, &w.acme, "h")))?;
    let before = Dump::of(s, &[]);
    let mut bad_spec = vm(vm_id(2)?, &w.acme, &name("db")?, &w.debian);
    bad_spec.spec = VmSpec {
        vcpus: 1_000,
        ..bad_spec.spec
    };
    let refusals = [
        Command::CreateVm(vm(vm_id(2)?, &w.acme, &web, &w.debian)),
        Command::CreateVm(bad_spec),
        Command::DeleteTenant(w.acme.clone()),
        Command::DeleteImage(w.debian.clone()),
        Command::PutToken(token(token_id(2)?, &w.globex, "h")),
        Command::DeleteVm {
            id: vm_id(1)?,
            expect_state: Some(novacron_model::VmState::Running),
        },
    ];
    for command in refusals {
        ensure_matches!(s.apply(command), Err(ref e) if e.is_refusal());
    }
    ensure_eq!(Dump::of(s, &[]), before);
    Ok(())
}
