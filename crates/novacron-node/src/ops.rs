//! Operations: a long action is recorded as `running`, carried out on its own task, and
//! recorded again when it ends; waiters are woken by the `operation_done` event.

use crate::node::Node;
use novacron_api::{Caller, ServiceError};
use novacron_model::{
    EventKind, Name, Operation, OperationId, OperationKind, OperationStatus, Timestamp,
};
use novacron_store::Command;
use std::future::Future;
use std::time::Duration;

/// Finished operations are kept this long, then pruned.
pub const OPERATION_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

impl Node {
    /// Records a new running operation.
    pub(crate) async fn begin_op(
        &self,
        tenant: &Name,
        kind: OperationKind,
        target: String,
    ) -> Result<Operation, ServiceError> {
        let op = Operation {
            id: OperationId::random(),
            tenant: tenant.clone(),
            kind,
            target,
            status: OperationStatus::Running,
            error: None,
            created_at: Timestamp::now(),
            finished_at: None,
            migration: None,
        };
        self.apply(Command::PutOperation(op.clone())).await?;
        Ok(op)
    }

    /// Records how `op` ended and tells waiters.
    pub(crate) async fn finish_op(
        &self,
        mut op: Operation,
        result: Result<(), String>,
    ) -> Operation {
        op.status = if result.is_ok() {
            OperationStatus::Succeeded
        } else {
            OperationStatus::Failed
        };
        op.error = result.err();
        op.finished_at = Some(Timestamp::now());
        if let Err(e) = self.apply(Command::PutOperation(op.clone())).await {
            tracing::error!(operation = %op.id, error = %e, "could not record the end of an operation");
        }
        match &op.error {
            Some(err) => {
                tracing::warn!(operation = %op.id, kind = %op.kind, target = %op.target, error = %err, "operation failed")
            }
            None => {
                tracing::info!(operation = %op.id, kind = %op.kind, target = %op.target, "operation succeeded")
            }
        }
        self.inner.events.publish(
            Some(op.tenant.clone()),
            EventKind::OperationDone {
                operation: op.id,
                status: op.status,
                error: op.error.clone(),
            },
        );
        op
    }

    /// Runs `work` for `op` on its own task and records its end.
    pub(crate) fn spawn_op<F>(&self, op: Operation, work: F)
    where
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        let node = self.clone();
        tokio::spawn(async move {
            let result = work.await;
            node.finish_op(op, result).await;
        });
    }

    /// One of the caller's operations.
    pub(crate) fn op_get(
        &self,
        caller: &Caller,
        id: OperationId,
    ) -> Result<Operation, ServiceError> {
        self.store()
            .operation(id)
            .filter(|op| op.tenant == caller.tenant)
            .ok_or(ServiceError::NotFound {
                kind: "operation",
                key: id.to_string(),
            })
    }

    /// Waits for an operation to end, at most `timeout`.
    pub(crate) async fn op_wait(
        &self,
        caller: &Caller,
        id: OperationId,
        timeout: Duration,
    ) -> Result<Operation, ServiceError> {
        // Subscribe before looking, so an end between the look and the wait is not missed.
        let mut rx = self.inner.events.subscribe();
        let op = self.op_get(caller, id)?;
        if op.status.is_done() {
            return Ok(op);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return self.op_get(caller, id),
                Ok(Ok(ev)) => {
                    if matches!(ev.kind, EventKind::OperationDone { operation, .. } if operation == id)
                    {
                        return self.op_get(caller, id);
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    let op = self.op_get(caller, id)?;
                    if op.status.is_done() {
                        return Ok(op);
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    return self.op_get(caller, id);
                }
            }
        }
    }

    /// Marks operations left running by a previous daemon as failed, and prunes old ones.
    pub(crate) async fn recover_operations(&self) {
        for tenant in self.store().tenants() {
            for op in self.store().operations(&tenant.name, usize::MAX) {
                if op.status == OperationStatus::Running {
                    self.finish_op(
                        op,
                        Err("the node daemon restarted while this ran".to_owned()),
                    )
                    .await;
                }
            }
        }
        let cutoff =
            Timestamp(Timestamp::now().0.saturating_sub(
                u64::try_from(OPERATION_RETENTION.as_millis()).unwrap_or(u64::MAX),
            ));
        if let Err(e) = self
            .apply(Command::PruneOperations {
                finished_before: cutoff,
            })
            .await
        {
            tracing::warn!(error = %e, "could not prune old operations");
        }
    }
}
