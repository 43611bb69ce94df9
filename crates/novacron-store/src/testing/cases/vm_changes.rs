//! VM updates and deletes: the expected-state check and immutable fields.

use super::world;
use crate::testing::fixtures::{name, vm, vm_id};
use crate::testing::{Failure, ensure_eq, ensure_matches};
use crate::{Command, Store, StoreError};
use novacron_model::{Timestamp, Usage, Vm, VmRuntime, VmState};

/// Creates `acme/web` (id 1, stopped) in the fixture world.
fn created(s: &dyn Store) -> Result<(super::World, Vm), Failure> {
    let w = world(s)?;
    let record = vm(vm_id(1)?, &w.acme, &name("web")?, &w.debian);
    s.apply(Command::CreateVm(record.clone()))?;
    Ok((w, record))
}

fn started(record: &Vm) -> Vm {
    Vm {
        state: VmState::Running,
        runtime: Some(VmRuntime {
            pid: 4242,
            started_at: Timestamp(3_000),
            accel: "tcg".into(),
        }),
        updated_at: Timestamp(3_000),
        ..record.clone()
    }
}

pub(super) fn update_vm_replaces_the_record_in_the_expected_state(
    s: &dyn Store,
) -> Result<(), Failure> {
    let (w, record) = created(s)?;
    let running = started(&record);
    s.apply(Command::UpdateVm {
        vm: running.clone(),
        expect_state: VmState::Stopped,
    })?;
    ensure_eq!(s.vm(record.id), Some(running.clone()));
    ensure_eq!(
        s.vm_by_name(&w.acme, &record.spec.name),
        Some(running.clone())
    );
    ensure_eq!(s.vms(None), vec![running]);
    Ok(())
}

pub(super) fn update_vm_refuses_a_stale_state(s: &dyn Store) -> Result<(), Failure> {
    let (_, record) = created(s)?;
    let refused = s.apply(Command::UpdateVm {
        vm: started(&record),
        expect_state: VmState::Paused,
    });
    ensure_matches!(
        refused,
        Err(StoreError::Conflict {
            vm,
            expected: VmState::Paused,
            actual: VmState::Stopped,
        }) if vm == record.id
    );
    ensure_eq!(s.vm(record.id), Some(record));
    Ok(())
}

pub(super) fn update_vm_refuses_a_missing_vm(s: &dyn Store) -> Result<(), Failure> {
    let (_, record) = created(s)?;
    let ghost = Vm {
        id: vm_id(99)?,
        ..record
    };
    ensure_matches!(
        s.apply(Command::UpdateVm {
            vm: ghost.clone(),
            expect_state: VmState::Stopped,
        }),
        Err(StoreError::NotFound { kind: "vm", ref key }) if *key == ghost.id.to_string()
    );
    ensure_eq!(s.vm(ghost.id), None);
    Ok(())
}

pub(super) fn update_vm_refuses_changing_immutable_fields(s: &dyn Store) -> Result<(), Failure> {
    let (w, record) = created(s)?;
    let mut spec = record.spec.clone();
    spec.vcpus = 2;
    let changes = [
        (
            "tenant",
            Vm {
                tenant: w.globex.clone(),
                ..record.clone()
            },
        ),
        ("name", {
            let mut v = record.clone();
            v.spec.name = name("renamed")?;
            v
        }),
        (
            "spec",
            Vm {
                spec,
                ..record.clone()
            },
        ),
        (
            "created_at",
            Vm {
                created_at: Timestamp(1),
                ..record.clone()
            },
        ),
    ];
    for (expected, changed) in changes {
        ensure_matches!(
            s.apply(Command::UpdateVm {
                vm: changed,
                expect_state: VmState::Stopped,
            }),
            Err(StoreError::Immutable { field }) if field == expected
        );
    }
    ensure_eq!(s.vm(record.id), Some(record));
    Ok(())
}

pub(super) fn delete_vm_removes_it_and_frees_its_name(s: &dyn Store) -> Result<(), Failure> {
    let (w, record) = created(s)?;
    s.apply(Command::DeleteVm {
        id: record.id,
        expect_state: None,
    })?;
    ensure_eq!(s.vm(record.id), None);
    ensure_eq!(s.vm_by_name(&w.acme, &record.spec.name), None);
    ensure_eq!(s.vms(None), Vec::new());
    ensure_eq!(s.usage(&w.acme), Usage::default());
    let again = Vm {
        id: vm_id(2)?,
        ..record
    };
    s.apply(Command::CreateVm(again.clone()))?;
    ensure_eq!(s.vm_by_name(&w.acme, &again.spec.name), Some(again));
    Ok(())
}

pub(super) fn delete_vm_checks_the_expected_state(s: &dyn Store) -> Result<(), Failure> {
    let (_, record) = created(s)?;
    ensure_matches!(
        s.apply(Command::DeleteVm {
            id: record.id,
            expect_state: Some(VmState::Running),
        }),
        Err(StoreError::Conflict {
            expected: VmState::Running,
            actual: VmState::Stopped,
            ..
        })
    );
    ensure_eq!(s.vm(record.id), Some(record.clone()));
    s.apply(Command::DeleteVm {
        id: record.id,
        expect_state: Some(VmState::Stopped),
    })?;
    ensure_eq!(s.vm(record.id), None);
    Ok(())
}

pub(super) fn delete_vm_refuses_a_missing_vm(s: &dyn Store) -> Result<(), Failure> {
    let id = vm_id(5)?;
    ensure_matches!(
        s.apply(Command::DeleteVm {
            id,
            expect_state: None,
        }),
        Err(StoreError::NotFound { kind: "vm", ref key }) if *key == id.to_string()
    );
    Ok(())
}
