//! Operations: put (insert or replace), listing, pruning.

use super::world;
use crate::testing::fixtures::{name, operation, operation_id};
use crate::testing::{Failure, ensure_eq};
use crate::{Command, Store};
use novacron_model::{Operation, OperationId, OperationStatus, Timestamp};

pub(super) fn put_operation_inserts_and_replaces(s: &dyn Store) -> Result<(), Failure> {
    let w = world(s)?;
    let id = operation_id(1)?;
    let running = operation(id, &w.acme, Timestamp(10), None);
    s.apply(Command::PutOperation(running.clone()))?;
    ensure_eq!(s.operation(id), Some(running.clone()));
    let failed = Operation {
        status: OperationStatus::Failed,
        error: Some("qemu did not start".into()),
        finished_at: Some(Timestamp(20)),
        migration: None,
        ..running
    };
    s.apply(Command::PutOperation(failed.clone()))?;
    ensure_eq!(s.operation(id), Some(failed.clone()));
    ensure_eq!(s.operations(&w.acme, 10), vec![failed]);
    ensure_eq!(s.operation(operation_id(2)?), None);
    Ok(())
}

pub(super) fn operations_are_listed_newest_first_up_to_the_limit(
    s: &dyn Store,
) -> Result<(), Failure> {
    let w = world(s)?;
    for (id, tenant, created) in [
        (1, &w.acme, 30),
        (2, &w.acme, 10),
        (3, &w.globex, 20),
        (4, &w.acme, 20),
        (5, &w.acme, 20),
    ] {
        let op = operation(operation_id(id)?, tenant, Timestamp(created), None);
        s.apply(Command::PutOperation(op))?;
    }
    let ids = |ops: Vec<Operation>| -> Vec<OperationId> { ops.iter().map(|o| o.id).collect() };
    // Equal creation times: the greater id first.
    let acme_all = vec![
        operation_id(1)?,
        operation_id(5)?,
        operation_id(4)?,
        operation_id(2)?,
    ];
    ensure_eq!(ids(s.operations(&w.acme, 100)), acme_all);
    ensure_eq!(
        ids(s.operations(&w.acme, 2)),
        vec![operation_id(1)?, operation_id(5)?]
    );
    ensure_eq!(ids(s.operations(&w.acme, 0)), Vec::new());
    ensure_eq!(ids(s.operations(&w.globex, 100)), vec![operation_id(3)?]);
    ensure_eq!(ids(s.operations(&name("nobody")?, 100)), Vec::new());
    Ok(())
}

pub(super) fn prune_removes_only_operations_finished_before_the_time(
    s: &dyn Store,
) -> Result<(), Failure> {
    let w = world(s)?;
    let running = operation(operation_id(1)?, &w.acme, Timestamp(1), None);
    let early = operation(operation_id(2)?, &w.acme, Timestamp(2), Some(Timestamp(5)));
    let at_cutoff = operation(operation_id(3)?, &w.acme, Timestamp(3), Some(Timestamp(10)));
    let late = operation(
        operation_id(4)?,
        &w.globex,
        Timestamp(4),
        Some(Timestamp(20)),
    );
    // Done without a finish time: judged by its creation time.
    let undated = Operation {
        status: OperationStatus::Failed,
        ..operation(operation_id(5)?, &w.globex, Timestamp(6), None)
    };
    for op in [&running, &early, &at_cutoff, &late, &undated] {
        s.apply(Command::PutOperation(op.clone()))?;
    }
    s.apply(Command::PruneOperations {
        finished_before: Timestamp(10),
    })?;
    ensure_eq!(s.operation(early.id), None);
    ensure_eq!(s.operation(undated.id), None);
    ensure_eq!(s.operations(&w.acme, 10), vec![at_cutoff, running]);
    ensure_eq!(s.operations(&w.globex, 10), vec![late]);
    // Nothing left to prune is not an error.
    s.apply(Command::PruneOperations {
        finished_before: Timestamp(10),
    })?;
    Ok(())
}
