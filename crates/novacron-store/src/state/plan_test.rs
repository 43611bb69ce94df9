//! [`State::plan`] as a pure function: the exact writes each accepted command plans, and that
//! planning alone changes nothing.

use super::{State, Write};
use crate::Command;
use crate::testing::fixtures::{
    image, name, operation, operation_id, quota, tenant, token, token_id, vm, vm_id,
};
use novacron_model::{Name, Tenant, Timestamp, VmState};

fn acme() -> Name {
    name("acme").unwrap()
}

fn debian() -> Name {
    name("debian").unwrap()
}

/// A state with tenant `acme` and image `debian`.
fn base() -> State {
    let mut s = State::new();
    s.commit(vec![
        Write::Tenant(acme(), Some(tenant(&acme(), quota(2, 4, 1024)))),
        Write::Image(debian(), Some(image(&debian()))),
    ]);
    s
}

#[test]
fn put_tenant_on_an_existing_tenant_writes_the_new_quota_and_the_old_creation_time() {
    let s = base();
    let updated = Tenant {
        quota: quota(9, 9, 9),
        created_at: Timestamp(77),
        ..tenant(&acme(), quota(0, 0, 0))
    };
    let writes = s.plan(Command::PutTenant(updated)).unwrap();
    assert_eq!(
        writes,
        vec![Write::Tenant(acme(), Some(tenant(&acme(), quota(9, 9, 9))))]
    );
}

#[test]
fn create_vm_writes_the_record_under_its_id() {
    let s = base();
    let record = vm(vm_id(1).unwrap(), &acme(), &name("web").unwrap(), &debian());
    let writes = s.plan(Command::CreateVm(record.clone())).unwrap();
    assert_eq!(writes, vec![Write::Vm(record.id, Some(record))]);
}

#[test]
fn planning_does_not_change_the_state() {
    let s = base();
    let before = s.clone();
    let record = vm(vm_id(1).unwrap(), &acme(), &name("web").unwrap(), &debian());
    s.plan(Command::CreateVm(record)).unwrap();
    s.plan(Command::DeleteTenant(acme())).unwrap();
    assert_eq!(s, before);
}

#[test]
fn delete_commands_write_removals() {
    let mut s = base();
    let id = vm_id(1).unwrap();
    let tid = token_id(1).unwrap();
    s.commit(vec![
        Write::Vm(id, Some(vm(id, &acme(), &name("web").unwrap(), &debian()))),
        Write::Token(tid, Some(token(tid, &acme(), "h"))),
    ]);
    let delete_vm = Command::DeleteVm {
        id,
        expect_state: Some(VmState::Stopped),
    };
    assert_eq!(s.plan(delete_vm).unwrap(), vec![Write::Vm(id, None)]);
    assert_eq!(
        s.plan(Command::DeleteToken(tid)).unwrap(),
        vec![Write::Token(tid, None)]
    );
}

#[test]
fn prune_writes_one_removal_per_finished_operation() {
    let mut s = base();
    let ops = [
        operation(
            operation_id(1).unwrap(),
            &acme(),
            Timestamp(1),
            Some(Timestamp(2)),
        ),
        operation(operation_id(2).unwrap(), &acme(), Timestamp(1), None),
        operation(
            operation_id(3).unwrap(),
            &acme(),
            Timestamp(1),
            Some(Timestamp(3)),
        ),
        operation(
            operation_id(4).unwrap(),
            &acme(),
            Timestamp(1),
            Some(Timestamp(50)),
        ),
    ];
    s.commit(
        ops.iter()
            .map(|o| Write::Operation(o.id, Some(o.clone())))
            .collect(),
    );
    let writes = s
        .plan(Command::PruneOperations {
            finished_before: Timestamp(10),
        })
        .unwrap();
    assert_eq!(
        writes,
        vec![
            Write::Operation(operation_id(1).unwrap(), None),
            Write::Operation(operation_id(3).unwrap(), None),
        ]
    );
}

#[test]
fn commit_keeps_indexes_in_step_when_a_record_is_replaced() {
    let mut s = base();
    let id = vm_id(1).unwrap();
    let tid = token_id(1).unwrap();
    let op = operation(operation_id(1).unwrap(), &acme(), Timestamp(5), None);
    s.commit(vec![
        Write::Vm(id, Some(vm(id, &acme(), &name("old").unwrap(), &debian()))),
        Write::Token(tid, Some(token(tid, &acme(), "old-hash"))),
        Write::Operation(op.id, Some(op.clone())),
    ]);
    // Rename, rehash and re-date through raw writes (commands refuse the first): the indexes
    // follow.
    let globex = name("globex").unwrap();
    let moved_op = novacron_model::Operation {
        tenant: globex.clone(),
        created_at: Timestamp(9),
        ..op
    };
    s.commit(vec![
        Write::Vm(id, Some(vm(id, &acme(), &name("new").unwrap(), &debian()))),
        Write::Token(tid, Some(token(tid, &acme(), "new-hash"))),
        Write::Operation(moved_op.id, Some(moved_op.clone())),
    ]);
    assert!(s.vm_by_name(&acme(), &name("old").unwrap()).is_none());
    assert_eq!(s.vm_by_name(&acme(), &name("new").unwrap()).unwrap().id, id);
    assert_eq!(s.vms(None).count(), 1);
    assert!(s.token_by_hash("old-hash").is_none());
    assert_eq!(s.token_by_hash("new-hash").unwrap().id, tid);
    assert_eq!(s.operations(&acme()).count(), 0);
    assert_eq!(s.operations(&globex).collect::<Vec<_>>(), vec![&moved_op]);
    // Removing everything leaves the indexes empty, equal to a fresh state's.
    s.commit(vec![
        Write::Vm(id, None),
        Write::Token(tid, None),
        Write::Operation(moved_op.id, None),
    ]);
    assert_eq!(s, base());
}
