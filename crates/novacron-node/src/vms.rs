//! Creating, listing, showing and deleting VMs, and their console.

use crate::node::Node;
use novacron_api::{Caller, ServiceError};
use novacron_model::{
    ByteSize, DiskInfo, EventKind, Operation, OperationKind, Timestamp, Vm, VmId, VmSpec, VmState,
};
use novacron_qemu::img;
use novacron_store::Command;

impl Node {
    /// The caller's VMs.
    pub(crate) fn vm_list(&self, caller: &Caller) -> Vec<Vm> {
        self.store().vms(Some(&caller.tenant))
    }

    /// Creates a VM, stopped, with its root disk; on any failure nothing is left behind.
    pub(crate) async fn vm_create(
        &self,
        caller: &Caller,
        spec: VmSpec,
    ) -> Result<Vm, ServiceError> {
        spec.validate().map_err(|e| ServiceError::Invalid {
            field: e.field.to_owned(),
            message: e.message,
        })?;
        let image = self
            .store()
            .image(&spec.image)
            .ok_or_else(|| ServiceError::Invalid {
                field: "image".to_owned(),
                message: format!("no image named {:?} on this node", spec.image.as_str()),
            })?;
        if let Some(size) = spec.disk_size {
            if size < image.virtual_size {
                return Err(ServiceError::Invalid {
                    field: "disk_size".to_owned(),
                    message: format!(
                        "must be at least the image's size ({}), got {size}",
                        image.virtual_size
                    ),
                });
            }
        }
        if self
            .store()
            .vm_by_name(&caller.tenant, &spec.name)
            .is_some()
        {
            return Err(ServiceError::AlreadyExists {
                kind: "vm",
                key: spec.name.to_string(),
            });
        }
        let id = VmId::random();
        let dir = self.layout().vm(id);
        let result = self.vm_create_in(caller, spec, id, &image).await;
        if result.is_err() {
            // Nothing half-created: the record was not stored, so the disk goes too.
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove the disk of a VM that was not created");
                }
            }
        }
        result
    }

    async fn vm_create_in(
        &self,
        caller: &Caller,
        spec: VmSpec,
        id: VmId,
        image: &novacron_model::Image,
    ) -> Result<Vm, ServiceError> {
        let dir = self.layout().vm(id);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            ServiceError::Unavailable(format!("could not create {}: {e}", dir.display()))
        })?;
        let root = self.layout().vm_root_disk(id);
        let base = std::path::PathBuf::from(&image.disk);
        img::create_overlay(&base, &root, spec.disk_size.map(ByteSize::bytes))
            .await
            .map_err(|e| {
                ServiceError::Unavailable(format!("could not create the root disk: {}", chain(&e)))
            })?;
        let info = img::info(&root).await.map_err(|e| {
            ServiceError::Unavailable(format!("could not read the root disk: {}", chain(&e)))
        })?;
        let now = Timestamp::now();
        let vm = Vm {
            id,
            tenant: caller.tenant.clone(),
            state: VmState::Stopped,
            state_reason: None,
            disks: vec![DiskInfo {
                name: "root".to_owned(),
                path: root.display().to_string(),
                backing: Some(image.disk.clone()),
                virtual_size: ByteSize(info.virtual_size),
            }],
            runtime: None,
            created_at: now,
            updated_at: now,
            spec,
        };
        self.apply(Command::CreateVm(vm.clone())).await?;
        tracing::info!(vm = %vm.id, name = %vm.spec.name, tenant = %vm.tenant, "vm created");
        self.inner.events.publish(
            Some(vm.tenant.clone()),
            EventKind::VmCreated {
                vm: vm.id,
                name: vm.spec.name.clone(),
            },
        );
        Ok(vm)
    }

    /// Deletes a VM: refused while QEMU runs unless `force`, which kills it first.
    pub(crate) async fn vm_delete(
        &self,
        caller: &Caller,
        vm: &str,
        force: bool,
    ) -> Result<Operation, ServiceError> {
        let vm = self.resolve(caller, vm)?;
        if matches!(vm.state, VmState::Starting | VmState::Stopping) {
            // Its QEMU is being started or stopped by another task right now.
            return Err(ServiceError::Conflict(format!(
                "vm {} is {}: wait until it is running or stopped",
                vm.spec.name, vm.state
            )));
        }
        if vm.state.has_process() && !force {
            return Err(ServiceError::Conflict(format!(
                "vm {} is {}: stop it first, or delete with force",
                vm.spec.name, vm.state
            )));
        }
        let op = self
            .begin_op(&caller.tenant, OperationKind::VmDelete, vm.id.to_string())
            .await?;
        let result = self.vm_delete_now(&vm).await;
        let op = self
            .finish_op(op, result.clone().map_err(|e| e.to_string()))
            .await;
        result.map(|()| op)
    }

    async fn vm_delete_now(&self, vm: &Vm) -> Result<(), ServiceError> {
        if let Some(p) = self.process(vm.id) {
            // `kill` waits until QEMU is gone, or fails saying it is not.
            p.kill().await.map_err(|e| {
                ServiceError::Unavailable(format!("could not stop QEMU: {}", chain(&e)))
            })?;
            self.set_process(vm.id, None);
        }
        // The record goes first: a crash before the files are removed leaves only an orphan
        // directory, which the next start removes.
        self.apply(Command::DeleteVm {
            id: vm.id,
            expect_state: None,
        })
        .await?;
        let dir = self.layout().vm(vm.id);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted VM's files");
        }
        tracing::info!(vm = %vm.id, name = %vm.spec.name, "vm deleted");
        self.inner.events.publish(
            Some(vm.tenant.clone()),
            EventKind::VmDeleted {
                vm: vm.id,
                name: vm.spec.name.clone(),
            },
        );
        Ok(())
    }

    /// The last lines of a VM's serial console ("" before its first start).
    pub(crate) async fn vm_console(
        &self,
        caller: &Caller,
        vm: &str,
        lines: usize,
    ) -> Result<String, ServiceError> {
        let vm = self.resolve(caller, vm)?;
        let run = self.layout().vm_run(vm.id);
        match novacron_qemu::console_tail(&run, lines).await {
            Ok(text) => Ok(text),
            Err(e) if is_not_found(&e) => Ok(String::new()),
            Err(e) => Err(ServiceError::Unavailable(format!(
                "could not read the console log: {}",
                chain(&e)
            ))),
        }
    }
}

fn is_not_found(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::NotFound;
        }
        cur = err.source();
    }
    false
}

/// An error and its causes on one line.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}
