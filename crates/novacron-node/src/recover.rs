//! On start: re-attach to the QEMU processes that outlived the previous daemon, mark the VMs
//! whose QEMU died meanwhile as failed, and remove what a crash left half-done.

use crate::node::Node;
use crate::vms::chain;
use novacron_model::{Timestamp, Vm, VmRuntime, VmState};
use novacron_qemu::QemuProcess;
use std::collections::HashSet;
use std::sync::Arc;

impl Node {
    /// Brings the store in line with the processes that really run.
    pub(crate) async fn recover(&self) {
        self.recover_operations().await;
        let vms = self.store().vms(None);
        for vm in &vms {
            if vm.state == VmState::Incoming {
                // The source learns of it when its stream or commit fails, and resumes.
                self.discard_incoming(vm).await;
            } else if vm.state.has_process() {
                self.reattach(vm).await;
            }
        }
        let vms = self.store().vms(None);
        self.remove_orphans(&vms).await;
        self.remove_stale_receptions().await;
    }

    async fn reattach(&self, vm: &Vm) {
        let run = self.layout().vm_run(vm.id);
        match QemuProcess::attach(&run).await {
            Ok(p) => {
                let p = Arc::new(p);
                let status = p.qmp().query_status().await;
                let to = match &status {
                    Ok(s) if s.running => VmState::Running,
                    Ok(_) => VmState::Paused,
                    Err(e) => {
                        tracing::warn!(vm = %vm.id, error = %chain(e), "re-attached QEMU does not answer query-status");
                        VmState::Running
                    }
                };
                let mut to = to;
                let reason = if vm.state == VmState::Migrating {
                    let stopped_by_migration = status
                        .as_ref()
                        .is_ok_and(|s| s.status == novacron_qemu::RunState::Postmigrate);
                    let (target, committing) = self.last_migration(vm);
                    if stopped_by_migration && !committing {
                        // QEMU sent everything but the commit never went out: the guest
                        // cannot run on the target, so it goes on here.
                        match p.qmp().cont().await {
                            Ok(()) => to = VmState::Running,
                            Err(e) => {
                                tracing::warn!(vm = %vm.id, error = %chain(&e), "could not resume the guest of an interrupted migration")
                            }
                        }
                    }
                    Some(interrupted_migration_reason(
                        &target,
                        stopped_by_migration && committing,
                    ))
                } else {
                    None
                };
                let runtime = vm.runtime.clone().unwrap_or_else(|| VmRuntime {
                    pid: p.pid(),
                    started_at: Timestamp::now(),
                    accel: self.inner.accel.qemu_name().to_owned(),
                });
                tracing::info!(vm = %vm.id, name = %vm.spec.name, pid = p.pid(), state = %to, "re-attached to QEMU");
                self.set_process(vm.id, Some(Arc::clone(&p)));
                self.supervise(vm.id, p);
                if to != vm.state {
                    if let Err(e) = self
                        .transition(vm, vm.state, to, reason, Some(runtime))
                        .await
                    {
                        tracing::warn!(vm = %vm.id, error = %e, "could not record the re-attached state");
                    }
                }
            }
            Err(e) => {
                let reason = format!(
                    "{} while the node daemon was not running ({})",
                    self.failure_reason(vm.id, None).await,
                    chain(&e)
                );
                if let Err(e) = self
                    .transition(vm, vm.state, VmState::Failed, Some(reason), None)
                    .await
                {
                    tracing::warn!(vm = %vm.id, error = %e, "could not mark a lost VM failed");
                }
            }
        }
    }

    /// The target of the VM's last migration, and whether its commit may have gone out.
    fn last_migration(&self, vm: &Vm) -> (String, bool) {
        let last = self
            .store()
            .operations(&vm.tenant, usize::MAX)
            .into_iter()
            .filter(|op| {
                op.kind == novacron_model::OperationKind::VmMigrate
                    && op.target == vm.id.to_string()
            })
            .max_by_key(|op| op.created_at)
            .and_then(|op| op.migration);
        match last {
            Some(m) => (
                m.target,
                m.phase == Some(novacron_model::MigrationPhase::SwitchOver),
            ),
            None => ("its target".to_owned(), false),
        }
    }

    /// Removes a VM that was arriving when the daemon stopped: its QEMU, record and files.
    async fn discard_incoming(&self, vm: &Vm) {
        let process = QemuProcess::attach(&self.layout().vm_run(vm.id))
            .await
            .ok()
            .map(Arc::new);
        self.drop_incoming_vm(vm.id, process.as_ref()).await;
        tracing::info!(vm = %vm.id, name = %vm.spec.name, "removed a VM whose incoming migration a restart interrupted");
    }

    /// Removes VM directories without a record (a delete interrupted after its record went).
    async fn remove_orphans(&self, vms: &[Vm]) {
        let known: HashSet<String> = vms.iter().map(|v| v.id.to_string()).collect();
        let Ok(mut dir) = tokio::fs::read_dir(self.layout().vms()).await else {
            return;
        };
        while let Ok(Some(entry)) = dir.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.parse::<novacron_model::VmId>().is_ok() && !known.contains(&name) {
                tracing::info!(dir = %entry.path().display(), "removing the files of a deleted VM");
                if let Err(e) = tokio::fs::remove_dir_all(entry.path()).await {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "could not remove");
                }
            }
        }
    }
}

/// Why a VM left `migrating` at a restart.
fn interrupted_migration_reason(target: &str, maybe_moved: bool) -> String {
    if maybe_moved {
        format!(
            "a migration to {target} was interrupted by a restart of the node daemon during the \
             switch-over: the guest may run on {target}; check there before resuming it here"
        )
    } else {
        format!("a migration to {target} was interrupted by a restart of the node daemon")
    }
}
