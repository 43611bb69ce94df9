//! Start, stop, pause, resume and restart, and the supervision of each QEMU process.
//!
//! Admission is a compare-and-set of the VM's state in the store (`stopped` → `starting`...),
//! so of two concurrent requests on one VM only one proceeds; the other gets a 409. A QEMU
//! exit is recorded by [`Node::record_exit`], from either the stop that caused it or the
//! supervisor that saw it, whichever comes first; the other finds the work done.

use crate::node::Node;
use crate::vms::chain;
use novacron_api::types::{VmAction, VmStopRequest};
use novacron_api::{Caller, ServiceError};
use novacron_model::{Operation, OperationKind, Timestamp, Vm, VmId, VmRuntime, VmState};
use novacron_qemu::{LaunchSpec, QemuExit, QemuProcess};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Longest stop timeout a request may ask for.
pub const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(3600);

/// Lines of QEMU's log quoted when a VM fails.
const FAILURE_LOG_LINES: usize = 10;

impl Node {
    /// Admits an action on one of the caller's VMs and runs it as an operation.
    pub(crate) async fn vm_act(
        &self,
        caller: &Caller,
        vm: &str,
        action: VmAction,
    ) -> Result<Operation, ServiceError> {
        let vm = self.resolve(caller, vm)?;
        let refuse = |what: &str, allowed: &str| {
            ServiceError::Conflict(format!(
                "vm {} is {}: only a {allowed} VM can be {what}",
                vm.spec.name, vm.state
            ))
        };
        match action {
            VmAction::Start => {
                if !matches!(vm.state, VmState::Stopped | VmState::Failed) {
                    return Err(refuse("started", "stopped or failed"));
                }
                let vm = self
                    .transition(&vm, vm.state, VmState::Starting, None, None)
                    .await?;
                let op = self
                    .begin_op(&caller.tenant, OperationKind::VmStart, vm.id.to_string())
                    .await?;
                let node = self.clone();
                self.spawn_op(op.clone(), async move { node.start_qemu(vm).await });
                Ok(op)
            }
            VmAction::Stop(req) => {
                if !matches!(vm.state, VmState::Running | VmState::Paused) {
                    return Err(refuse("stopped", "running or paused"));
                }
                let timeout = stop_timeout(&req, self.inner.config.stop_timeout)?;
                let vm = self
                    .transition(&vm, vm.state, VmState::Stopping, None, vm.runtime.clone())
                    .await?;
                let op = self
                    .begin_op(&caller.tenant, OperationKind::VmStop, vm.id.to_string())
                    .await?;
                let node = self.clone();
                self.spawn_op(op.clone(), async move {
                    node.stop_qemu(vm, timeout, req.force).await
                });
                Ok(op)
            }
            VmAction::Pause => {
                if vm.state != VmState::Running {
                    return Err(refuse("paused", "running"));
                }
                self.qmp_op(caller, vm, OperationKind::VmPause, VmState::Paused)
                    .await
            }
            VmAction::Resume => {
                if vm.state != VmState::Paused {
                    return Err(refuse("resumed", "paused"));
                }
                self.qmp_op(caller, vm, OperationKind::VmResume, VmState::Running)
                    .await
            }
            VmAction::Restart => {
                if !matches!(vm.state, VmState::Running | VmState::Paused) {
                    return Err(refuse("restarted", "running or paused"));
                }
                let state = vm.state;
                self.qmp_op(caller, vm, OperationKind::VmRestart, state)
                    .await
            }
        }
    }

    /// Pause, resume or restart: one QMP command, then the state change.
    async fn qmp_op(
        &self,
        caller: &Caller,
        vm: Vm,
        kind: OperationKind,
        to: VmState,
    ) -> Result<Operation, ServiceError> {
        let p = self.process(vm.id).ok_or_else(|| {
            ServiceError::Conflict(format!(
                "vm {} has no QEMU process under supervision",
                vm.spec.name
            ))
        })?;
        let op = self
            .begin_op(&caller.tenant, kind, vm.id.to_string())
            .await?;
        let node = self.clone();
        self.spawn_op(op.clone(), async move {
            let qmp = p.qmp();
            let sent = match kind {
                OperationKind::VmPause => qmp.stop().await,
                OperationKind::VmResume => qmp.cont().await,
                _ => qmp.system_reset().await,
            };
            sent.map_err(|e| format!("QEMU refused: {}", chain(&e)))?;
            if to != vm.state {
                node.transition(&vm, vm.state, to, None, vm.runtime.clone())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        Ok(op)
    }

    /// The launch spec of `vm`.
    pub(crate) fn launch_spec(&self, vm: &Vm) -> Result<LaunchSpec, String> {
        let image = self
            .store()
            .image(&vm.spec.image)
            .ok_or_else(|| format!("image {} is gone", vm.spec.image))?;
        Ok(LaunchSpec {
            name: vm.spec.name.to_string(),
            uuid: Some(vm.id.to_string()),
            vcpus: vm.spec.vcpus,
            memory_mib: vm.spec.memory.as_mib(),
            kernel: image.kernel.map(PathBuf::from),
            initrd: image.initrd.map(PathBuf::from),
            cmdline: image.cmdline,
            disks: vm.disks.iter().map(|d| PathBuf::from(&d.path)).collect(),
            accel: self.inner.accel,
            run_dir: self.layout().vm_run(vm.id),
            incoming: false,
            start_paused: false,
        })
    }

    /// Starts QEMU for a VM in `starting`.
    async fn start_qemu(&self, vm: Vm) -> Result<(), String> {
        let started = match self.launch_spec(&vm) {
            Ok(spec) => QemuProcess::start(&spec).await.map_err(|e| chain(&e)),
            Err(e) => Err(e),
        };
        match started {
            Ok(p) => {
                let p = Arc::new(p);
                let runtime = VmRuntime {
                    pid: p.pid(),
                    started_at: Timestamp::now(),
                    accel: self.inner.accel.qemu_name().to_owned(),
                };
                self.set_process(vm.id, Some(Arc::clone(&p)));
                self.supervise(vm.id, p);
                self.transition(
                    &vm,
                    VmState::Starting,
                    VmState::Running,
                    None,
                    Some(runtime),
                )
                .await
                .map(|_| ())
                .map_err(|e| format!("QEMU exited while starting ({e})"))
            }
            Err(reason) => {
                let reason = format!("could not start QEMU: {reason}");
                if let Err(e) = self
                    .transition(
                        &vm,
                        VmState::Starting,
                        VmState::Failed,
                        Some(reason.clone()),
                        None,
                    )
                    .await
                {
                    tracing::warn!(vm = %vm.id, error = %e, "could not record a failed start");
                }
                Err(reason)
            }
        }
    }

    /// Stops QEMU for a VM in `stopping`.
    async fn stop_qemu(&self, vm: Vm, timeout: Duration, force: bool) -> Result<(), String> {
        let exit = match self.process(vm.id) {
            None => None,
            Some(p) if force => Some(p.kill().await.map_err(|e| chain(&e))?),
            Some(p) => Some(
                p.shutdown_graceful(timeout)
                    .await
                    .map_err(|e| chain(&e))?
                    .exit,
            ),
        };
        self.record_exit(vm.id, exit, false).await;
        match self.store().vm(vm.id).map(|v| v.state) {
            Some(VmState::Stopped) | None => Ok(()),
            Some(other) => Err(format!("vm ended up {other}")),
        }
    }

    /// Watches a QEMU process until it exits, then records the exit.
    pub(crate) fn supervise(&self, id: VmId, p: Arc<QemuProcess>) {
        let node = self.clone();
        tokio::spawn(async move {
            let mut events = p.qmp().events();
            let mut exit = p.exit_watch();
            let mut events_open = true;
            let mut guest_poweroff = false;
            while exit.borrow().is_none() {
                tokio::select! {
                    ev = events.recv(), if events_open => match ev {
                        Ok(ev) if ev.name == "SHUTDOWN" => {
                            guest_poweroff = ev.data.get("guest").and_then(serde_json::Value::as_bool) == Some(true)
                                && ev.data.get("reason").and_then(|r| r.as_str()) == Some("guest-shutdown");
                        }
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => events_open = false,
                    },
                    changed = exit.changed() => if changed.is_err() { break },
                }
            }
            let status = *exit.borrow();
            node.record_exit(id, status, guest_poweroff).await;
        });
    }

    /// Records that a VM's QEMU is gone: `stopping` → `stopped`; a guest power-off →
    /// `stopped`; anything else → `failed`, with the exit status and the end of QEMU's log.
    pub(crate) async fn record_exit(&self, id: VmId, exit: Option<QemuExit>, guest_poweroff: bool) {
        let gone = self
            .process(id)
            .is_some_and(|p| p.exit().is_some() || exit.is_some());
        if gone {
            self.set_process(id, None);
        }
        let Some(vm) = self.store().vm(id) else {
            return;
        };
        let (to, reason) = match vm.state {
            VmState::Stopping => (VmState::Stopped, None),
            VmState::Starting | VmState::Running | VmState::Paused | VmState::Migrating
                if guest_poweroff =>
            {
                (VmState::Stopped, Some("the guest powered off".to_owned()))
            }
            VmState::Starting
            | VmState::Running
            | VmState::Paused
            | VmState::Migrating
            | VmState::Incoming => (VmState::Failed, Some(self.failure_reason(id, exit).await)),
            VmState::Stopped | VmState::Failed => return,
        };
        if let Err(e) = self.transition(&vm, vm.state, to, reason, None).await {
            // Another path recorded the exit first.
            tracing::debug!(vm = %id, error = %e, "exit already recorded");
        }
    }

    /// "QEMU exited with code 1; last lines of its log: ...".
    pub(crate) async fn failure_reason(&self, id: VmId, exit: Option<QemuExit>) -> String {
        let what = exit.map_or_else(|| "QEMU is gone".to_owned(), |e| format!("QEMU {e}"));
        let run = self.layout().vm_run(id);
        let log = novacron_qemu::qemu_log_tail(&run, FAILURE_LOG_LINES)
            .await
            .unwrap_or_default();
        let log = log.trim();
        if log.is_empty() {
            what
        } else {
            format!(
                "{what}; last lines of its log: {}",
                log.replace('\n', " | ")
            )
        }
    }
}

fn stop_timeout(req: &VmStopRequest, default: Duration) -> Result<Duration, ServiceError> {
    let t = req.timeout_secs.map_or(default, Duration::from_secs);
    if t > MAX_STOP_TIMEOUT {
        return Err(ServiceError::Invalid {
            field: "timeout_secs".to_owned(),
            message: format!(
                "at most {}, got {}",
                MAX_STOP_TIMEOUT.as_secs(),
                t.as_secs()
            ),
        });
    }
    Ok(t)
}
