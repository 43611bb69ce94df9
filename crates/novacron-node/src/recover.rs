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
            if vm.state.has_process() {
                self.reattach(vm).await;
            }
        }
        self.remove_orphans(&vms).await;
    }

    async fn reattach(&self, vm: &Vm) {
        let run = self.layout().vm_run(vm.id);
        match QemuProcess::attach(&run).await {
            Ok(p) => {
                let p = Arc::new(p);
                let running = p.qmp().query_status().await.map(|s| s.running);
                let to = match running {
                    Ok(true) => VmState::Running,
                    Ok(false) => VmState::Paused,
                    Err(e) => {
                        tracing::warn!(vm = %vm.id, error = %chain(&e), "re-attached QEMU does not answer query-status");
                        VmState::Running
                    }
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
                    if let Err(e) = self.transition(vm, vm.state, to, None, Some(runtime)).await {
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
