//! The destination of a migration: prepare (record, disk overlay, QEMU waiting, its disks
//! exported to the source's mirrors, DWCP sinks), commit (wait for the stream, close the
//! exports, run the guest) and abort.

use super::mirror::{self, DestMirror};
use super::streams::{self, Expected, Sending};
use crate::node::Node;
use crate::vms::chain;
use novacron_api::ServiceError;
use novacron_api::migration::{
    PeerCommitted, PeerNode, PeerPrepareRequest, PeerPrepareResponse, memory_reply_stream,
};
use novacron_model::{
    DiskInfo, EventKind, OperationId, Quota, Tenant, Timestamp, Vm, VmId, VmRuntime, VmState,
};
use novacron_qemu::{QemuProcess, img};
use novacron_store::Command;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// Name under which the migration socket is passed to the destination QEMU.
const FD_NAME: &str = "nc-migrate-in";
/// Longest a commit waits for the streams and QEMU to finish loading.
const COMMIT_WAIT: Duration = Duration::from_secs(120);
/// Longest a commit waits for the memory stream's end while no byte of it reaches QEMU: the
/// guest stands stopped on the source meanwhile, and DWCP sends a stalled frame again within
/// a second or two. A slow stream that moves is waited for (up to [`COMMIT_WAIT`]).
const STREAM_STILL: Duration = Duration::from_secs(10);
/// Time a prepared migration is kept beyond the source's own budget before it is dropped.
const PREPARED_MARGIN: Duration = Duration::from_secs(120);

/// What a commit waits for, in order (see `Node::finish_incoming`), so that one not ready in
/// time says where it stood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    /// The memory stream's end.
    Memory,
    /// QEMU loading it.
    Loading,
    /// The disks' mirrors ending in sync.
    Disks,
    /// The exports closed and the guest started.
    Running,
}

impl Step {
    /// What a commit at step `step` (a [`Step`] as stored) waited for; `delivered`: the memory
    /// stream's bytes written to QEMU.
    fn waited_for(step: u8, delivered: u64) -> String {
        match step {
            s if s == Self::Memory as u8 => {
                format!("the memory stream had not ended ({delivered} bytes written to QEMU)")
            }
            s if s == Self::Loading as u8 => {
                format!("QEMU had not finished loading the memory stream ({delivered} bytes)")
            }
            s if s == Self::Disks as u8 => "the disks' mirrors had not ended in sync".to_owned(),
            _ => "the guest had not started".to_owned(),
        }
    }
}

/// A migration arriving at this node.
pub(crate) struct Incoming {
    peer: String,
    vm: VmId,
    process: Arc<QemuProcess>,
    memory: Expected,
    /// With post-copy: the session that carries QEMU's page requests back to the source.
    memory_replies: Option<Sending>,
    /// The disks' exports and their sessions, while the source mirrors into them.
    mirrors: Vec<DestMirror>,
    /// How long the source may take, from the prepare on.
    budget: Duration,
    /// Commit and abort one at a time; how it ended, once it did.
    ended: tokio::sync::Mutex<Option<Ended>>,
}

/// How a migration arriving here ended: a commit repeated (the source sends two at once, and
/// may ask again when no answer came) is answered with it.
#[derive(Clone, Debug)]
pub(crate) enum Ended {
    /// The guest runs here since `running_at`.
    Committed {
        /// The VM as recorded when the guest ran.
        vm: Box<Vm>,
        /// When the guest ran.
        running_at: std::time::Instant,
    },
    /// Dropped, for this reason.
    Dropped(String),
}

impl Ended {
    /// The answer to a commit that arrived at `arrived`.
    fn answer(&self, arrived: std::time::Instant) -> Result<PeerCommitted, ServiceError> {
        match self {
            Self::Committed { vm, running_at } => Ok(PeerCommitted {
                vm: (**vm).clone(),
                // A commit that arrived after the guest ran says it ran on arrival: the
                // source's measure of the downtime can only grow from it.
                running_after: Some(running_at.saturating_duration_since(arrived)),
                answered_after: Some(arrived.elapsed()),
            }),
            Self::Dropped(reason) => Err(ServiceError::Conflict(reason.clone())),
        }
    }
}

impl Node {
    /// `POST /peer/migrations`.
    pub(crate) async fn peer_prepare_in(
        &self,
        peer: &PeerNode,
        req: PeerPrepareRequest,
    ) -> Result<PeerPrepareResponse, ServiceError> {
        let cluster = self.cluster()?;
        let id = req.migration;
        if cluster.incoming().contains_key(&id) {
            return Err(ServiceError::AlreadyExists {
                kind: "migration",
                key: id.to_string(),
            });
        }
        let _reserved = cluster.reserve(req.vm.id).ok_or_else(|| {
            ServiceError::Conflict(format!("vm {} is already being prepared here", req.vm.id))
        })?;
        let vm = self.admit_incoming(&req.vm).await?;
        tracing::info!(migration = %id, vm = %vm.id, name = %vm.spec.name, peer = %peer.0, "preparing an incoming migration");
        let budget = Duration::from_secs(req.timeout_secs) + PREPARED_MARGIN;
        match self.start_incoming(peer, id, &vm, &req, budget).await {
            Ok((incoming, ready)) => {
                cluster.incoming().insert(id, Arc::clone(&incoming));
                let node = self.clone();
                tokio::spawn(async move { node.watch_incoming(id, incoming, budget).await });
                Ok(ready)
            }
            Err(e) => {
                self.drop_incoming_vm(vm.id, None).await;
                Err(e)
            }
        }
    }

    /// Checks the VM can live here and records it `incoming`, with a fresh overlay on the
    /// local copy of its image.
    async fn admit_incoming(&self, from: &Vm) -> Result<Vm, ServiceError> {
        from.spec.validate().map_err(|e| ServiceError::Invalid {
            field: format!("vm.spec.{}", e.field),
            message: e.message,
        })?;
        let image = self
            .store()
            .image(&from.spec.image)
            .ok_or_else(|| ServiceError::Invalid {
                field: "vm.spec.image".to_owned(),
                message: format!(
                    "no image named {:?} on this node: import it here first",
                    from.spec.image.as_str()
                ),
            })?;
        if self.store().vm(from.id).is_some() {
            return Err(ServiceError::AlreadyExists {
                kind: "vm",
                key: from.id.to_string(),
            });
        }
        if self.store().tenant(&from.tenant).is_none() {
            self.apply(Command::PutTenant(Tenant {
                name: from.tenant.clone(),
                quota: Quota::default(),
                created_at: Timestamp::now(),
            }))
            .await?;
        }
        let dir = self.layout().vm(from.id);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            ServiceError::Unavailable(format!("could not create {}: {e}", dir.display()))
        })?;
        let root = self.layout().vm_root_disk(from.id);
        let base = PathBuf::from(&image.disk);
        let size = from.disks.first().map(|d| d.virtual_size.bytes());
        if let Err(e) = img::create_overlay(&base, &root, size).await {
            self.remove_vm_dir(from.id).await;
            return Err(ServiceError::Unavailable(format!(
                "could not create the root disk: {}",
                chain(&e)
            )));
        }
        let now = Timestamp::now();
        let vm = Vm {
            id: from.id,
            tenant: from.tenant.clone(),
            spec: from.spec.clone(),
            state: VmState::Incoming,
            state_reason: None,
            disks: vec![DiskInfo {
                name: "root".to_owned(),
                path: root.display().to_string(),
                backing: Some(image.disk.clone()),
                virtual_size: from
                    .disks
                    .first()
                    .map_or(image.virtual_size, |d| d.virtual_size),
            }],
            runtime: None,
            created_at: from.created_at,
            updated_at: now,
        };
        if let Err(e) = self.apply(Command::CreateVm(vm.clone())).await {
            // No record was stored (a VM of that id or name exists, or the quota is full):
            // only the directory made above goes.
            self.remove_vm_dir(vm.id).await;
            return Err(e);
        }
        self.inner.events.publish(
            Some(vm.tenant.clone()),
            EventKind::VmCreated {
                vm: vm.id,
                name: vm.spec.name.clone(),
            },
        );
        Ok(vm)
    }

    /// Starts QEMU waiting for the stream and registers the DWCP sinks.
    async fn start_incoming(
        &self,
        peer: &PeerNode,
        id: OperationId,
        vm: &Vm,
        req: &PeerPrepareRequest,
        budget: Duration,
    ) -> Result<(Arc<Incoming>, PeerPrepareResponse), ServiceError> {
        let cluster = self.cluster()?;
        let mut spec = self.launch_spec(vm).map_err(ServiceError::Unavailable)?;
        spec.incoming = true;
        spec.start_paused = true;
        let process = Arc::new(QemuProcess::start(&spec).await.map_err(|e| {
            ServiceError::Unavailable(format!("could not start QEMU: {}", chain(&e)))
        })?);
        self.set_process(vm.id, Some(Arc::clone(&process)));
        self.supervise(vm.id, Arc::clone(&process));
        let qmp = process.qmp();
        let unavailable = |what: &str, e: &(dyn std::error::Error + 'static)| {
            ServiceError::Unavailable(format!("{what}: {}", chain(e)))
        };
        qmp.migrate_set_capabilities(&[("events", true), ("postcopy-ram", req.postcopy)])
            .await
            .map_err(|e| unavailable("QEMU refused the migration capabilities", &e))?;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| unavailable("could not create the migration socket", &e))?;
        qmp.send_fd(FD_NAME, std::os::fd::AsFd::as_fd(&theirs))
            .await
            .map_err(|e| unavailable("could not pass the migration socket to QEMU", &e))?;
        drop(theirs);
        qmp.migrate_incoming_fd(FD_NAME)
            .await
            .map_err(|e| unavailable("QEMU refused migrate-incoming", &e))?;

        // What goes back to the source (post-copy's page requests, the disks' exports'
        // answers) goes to its DWCP receiver.
        let source_addr = cluster
            .peer_url(&peer.0)
            .ok()
            .and_then(super::url_host)
            .zip(req.dwcp_port)
            .map(|(host, port)| format!("{host}:{port}"));
        let memory_replies = if req.postcopy {
            let addr = source_addr.as_deref().ok_or_else(|| {
                ServiceError::Unavailable(format!(
                    "{} sent no DWCP port, or this node does not know its address: post-copy cannot reach it",
                    peer.0
                ))
            })?;
            let reader = ours.try_clone().map_err(|e| {
                ServiceError::Unavailable(format!("could not use the migration socket: {e}"))
            })?;
            Some(streams::send_stream(
                cluster,
                addr,
                &peer.0,
                &memory_reply_stream(id),
                reader,
                streams::Controls::default(),
            ))
        } else {
            None
        };
        let memory_stream = format!("migrate-{id}-memory");
        let memory = cluster
            .streams
            .expect(&memory_stream, Box::new(ours))
            .map_err(ServiceError::Unavailable)?;
        let socket = self.layout().vm(vm.id).join("nbd.sock");
        let (mirrors, disks) = mirror::export_disks(
            qmp,
            cluster,
            &socket,
            id,
            vm,
            (&peer.0, source_addr.as_deref()),
        )
        .await
        .map_err(ServiceError::Unavailable)?;
        let incoming = Arc::new(Incoming {
            peer: peer.0.clone(),
            vm: vm.id,
            process,
            memory,
            memory_replies,
            mirrors,
            budget,
            ended: tokio::sync::Mutex::new(None),
        });
        let ready = PeerPrepareResponse {
            dwcp_port: cluster.dwcp_port(),
            memory_stream,
            disks,
        };
        Ok((incoming, ready))
    }

    /// Drops a prepared migration whose stream failed or that was never committed in time.
    async fn watch_incoming(&self, id: OperationId, incoming: Arc<Incoming>, budget: Duration) {
        let failed = tokio::select! {
            outcome = incoming.memory.outcome() => outcome.err(),
            () = tokio::time::sleep(budget) => Some(format!("not committed within {} s", budget.as_secs())),
        };
        let Some(reason) = failed else {
            // The stream arrived; the commit (or the source's abort) takes it from here, and
            // the budget still bounds how long it may wait.
            tokio::time::sleep(budget).await;
            if self.cluster().is_ok_and(|c| c.incoming().contains_key(&id)) {
                self.abort_incoming(id, "not committed in time").await;
            }
            return;
        };
        self.abort_incoming(id, &reason).await;
    }

    /// `POST /peer/migrations/{id}/commit`. Idempotent: a commit that comes again, while the
    /// first waits or after the migration ended, gets the first one's outcome.
    pub(crate) async fn peer_commit_in(
        &self,
        peer: &PeerNode,
        id: OperationId,
    ) -> Result<PeerCommitted, ServiceError> {
        let arrived = std::time::Instant::now();
        let cluster = self.cluster()?;
        let incoming = cluster
            .incoming()
            .get(&id)
            .filter(|i| i.peer == peer.0)
            .cloned();
        let Some(incoming) = incoming else {
            return match cluster.concluded(id, &peer.0) {
                Some(ended) => ended.answer(arrived),
                None => Err(ServiceError::NotFound {
                    kind: "migration",
                    key: id.to_string(),
                }),
            };
        };
        let mut ended = incoming.ended.lock().await;
        if let Some(ended) = ended.as_ref() {
            return ended.answer(arrived);
        }
        let step = AtomicU8::new(Step::Memory as u8);
        match tokio::time::timeout(COMMIT_WAIT, self.finish_incoming(&incoming, &step)).await {
            Ok(Ok((vm, running_at))) => {
                tracing::info!(migration = %id, vm = %vm.id, name = %vm.spec.name, peer = %peer.0, "incoming migration done; the guest runs here");
                let outcome = Ended::Committed {
                    vm: Box::new(vm),
                    running_at,
                };
                cluster.conclude(id, &peer.0, outcome.clone());
                *ended = Some(outcome.clone());
                cluster.incoming().remove(&id);
                if incoming.memory_replies.is_some() {
                    // Post-copy: the stream (and the page requests back) go on until QEMU has
                    // every page.
                    let held = Arc::clone(&incoming);
                    tokio::spawn(async move {
                        match tokio::time::timeout(held.budget, held.memory.outcome()).await {
                            Ok(Ok(())) => {
                                tracing::info!(migration = %id, "post-copy done: every page arrived")
                            }
                            Ok(Err(e)) => {
                                tracing::error!(migration = %id, error = %e, "post-copy broke off: the guest here lacks pages")
                            }
                            Err(_) => {
                                tracing::error!(migration = %id, "post-copy not done within the time budget")
                            }
                        }
                    });
                }
                cluster.count_ended(super::Direction::In, true);
                outcome.answer(arrived)
            }
            Ok(Err(reason)) => {
                self.drop_unended(cluster, id, &incoming, &mut ended, &reason)
                    .await;
                Err(ServiceError::Conflict(reason))
            }
            Err(_) => {
                let reason = format!(
                    "not ready within {} s: {}",
                    COMMIT_WAIT.as_secs(),
                    Step::waited_for(step.load(Ordering::Relaxed), incoming.memory.delivered())
                );
                self.drop_unended(cluster, id, &incoming, &mut ended, &reason)
                    .await;
                Err(ServiceError::Conflict(reason))
            }
        }
    }

    /// Waits for the memory stream and QEMU, for the disks' mirrors to end in sync (the
    /// source ends their streams only then), closes the exports and runs the guest.
    /// Returns the VM and when its guest ran.
    async fn finish_incoming(
        &self,
        incoming: &Incoming,
        step: &AtomicU8,
    ) -> Result<(Vm, std::time::Instant), String> {
        use novacron_qemu::qmp::MigrationStatus;
        let asked = std::time::Instant::now();
        let ms = || asked.elapsed().as_millis();
        // In post-copy the guest runs here before the stream ends: it pulls what it lacks.
        let postcopy = incoming.memory_replies.is_some();
        if !postcopy {
            incoming
                .memory
                .end_unless_still(STREAM_STILL)
                .await
                .map_err(|e| format!("the memory stream failed: {e}"))?;
        }
        let stream_ms = ms();
        step.store(Step::Loading as u8, Ordering::Relaxed);
        let qmp = incoming.process.qmp();
        let deadline = tokio::time::Instant::now() + COMMIT_WAIT;
        let info = novacron_qemu::qmp::wait_migration_for(qmp, deadline, |s| {
            s.is_finished() || (postcopy && *s == MigrationStatus::PostcopyActive)
        })
        .await
        .map_err(|e| format!("QEMU did not finish loading: {}", chain(&e)))?;
        let loaded = info.status == MigrationStatus::Completed
            || (postcopy && info.status == MigrationStatus::PostcopyActive);
        if !loaded {
            return Err(format!(
                "QEMU could not load the stream: {} {}",
                info.status,
                info.error_desc.unwrap_or_default()
            ));
        }
        let loaded_ms = ms();
        step.store(Step::Disks as u8, Ordering::Relaxed);
        for (index, m) in incoming.mirrors.iter().enumerate() {
            m.in_sync()
                .await
                .map_err(|e| format!("the mirror of disk {index} did not end in sync: {e}"))?;
        }
        let disks_ms = ms();
        step.store(Step::Running as u8, Ordering::Relaxed);
        if !incoming.mirrors.is_empty() {
            qmp.nbd_server_stop()
                .await
                .map_err(|e| format!("QEMU could not close the disks' exports: {}", chain(&e)))?;
        }
        qmp.cont()
            .await
            .map_err(|e| format!("QEMU refused to run the guest: {}", chain(&e)))?;
        if postcopy {
            // QEMU starts the guest once the devices' state, sent after post-copy began, is
            // loaded: the answer waits for that, so that the downtime the source measures is
            // the guest's.
            let running = async {
                while !qmp.query_status().await.is_ok_and(|s| s.running) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            tokio::time::timeout(COMMIT_WAIT, running)
                .await
                .map_err(|_| "the guest did not start after post-copy began".to_owned())?;
        }
        let running_at = std::time::Instant::now();
        // Where the switch-over went here, from the commit's arrival.
        tracing::info!(vm = %incoming.vm, stream_ms, loaded_ms, disks_ms, running_ms = ms(), "switch-over here");
        let vm = self
            .store()
            .vm(incoming.vm)
            .ok_or_else(|| "the VM record is gone".to_owned())?;
        let runtime = VmRuntime {
            pid: incoming.process.pid(),
            started_at: Timestamp::now(),
            accel: self.inner.accel.qemu_name().to_owned(),
        };
        self.transition(
            &vm,
            VmState::Incoming,
            VmState::Running,
            None,
            Some(runtime),
        )
        .await
        .map(|vm| (vm, running_at))
        .map_err(|e| e.to_string())
    }

    /// `DELETE /peer/migrations/{id}`. A migration committed here is not dropped: the
    /// answer says the guest runs here.
    pub(crate) async fn peer_abort_in(
        &self,
        peer: &PeerNode,
        id: OperationId,
    ) -> Result<(), ServiceError> {
        self.peer_abort_image_in(peer, id).await;
        let cluster = self.cluster()?;
        let known = cluster
            .incoming()
            .get(&id)
            .is_some_and(|i| i.peer == peer.0);
        if known {
            self.abort_incoming(id, &format!("aborted by {}", peer.0))
                .await;
        }
        match cluster.concluded(id, &peer.0) {
            Some(Ended::Committed { .. }) => Err(ServiceError::Conflict(format!(
                "migration {id} was committed: the guest runs here"
            ))),
            _ => Ok(()),
        }
    }

    /// Removes a prepared migration: QEMU, record and files.
    pub(crate) async fn abort_incoming(&self, id: OperationId, reason: &str) {
        let Ok(cluster) = self.cluster() else { return };
        let Some(incoming) = cluster.incoming().get(&id).cloned() else {
            return;
        };
        let mut ended = incoming.ended.lock().await;
        self.drop_unended(cluster, id, &incoming, &mut ended, reason)
            .await;
    }

    /// Drops `incoming` unless it ended already (`ended`, its lock held: a commit repeated
    /// meanwhile waits for it, and then gets `reason`).
    async fn drop_unended(
        &self,
        cluster: &super::Cluster,
        id: OperationId,
        incoming: &Incoming,
        ended: &mut Option<Ended>,
        reason: &str,
    ) {
        if ended.is_some() {
            return;
        }
        let outcome = Ended::Dropped(reason.to_owned());
        cluster.conclude(id, &incoming.peer, outcome.clone());
        *ended = Some(outcome);
        cluster.incoming().remove(&id);
        cluster.count_ended(super::Direction::In, false);
        tracing::warn!(migration = %id, vm = %incoming.vm, reason, "incoming migration dropped");
        self.drop_incoming_vm(incoming.vm, Some(&incoming.process))
            .await;
    }

    /// Kills the QEMU of an incoming VM and removes its record and directory.
    pub(crate) async fn drop_incoming_vm(&self, vm: VmId, process: Option<&Arc<QemuProcess>>) {
        let record = self.store().vm(vm);
        if let Err(e) = self
            .apply(Command::DeleteVm {
                id: vm,
                expect_state: None,
            })
            .await
        {
            if !matches!(e, ServiceError::NotFound { .. }) {
                tracing::warn!(%vm, error = %e, "could not delete the record of a dropped incoming VM");
            }
        }
        if let Some(p) = process.cloned().or_else(|| self.process(vm)) {
            if let Err(e) = p.kill().await {
                tracing::warn!(%vm, error = %chain(&e), "could not kill the QEMU of a dropped incoming VM");
            }
        }
        self.set_process(vm, None);
        self.remove_vm_dir(vm).await;
        if let Some(v) = record {
            self.inner.events.publish(
                Some(v.tenant.clone()),
                EventKind::VmDeleted {
                    vm: v.id,
                    name: v.spec.name.clone(),
                },
            );
        }
    }
}

impl Node {
    /// Removes the directory of a VM that is not (or no longer) recorded here.
    async fn remove_vm_dir(&self, vm: VmId) {
        let dir = self.layout().vm(vm);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Step;

    #[test]
    fn a_commit_not_ready_in_time_says_what_it_waited_for() {
        assert_eq!(
            Step::waited_for(Step::Memory as u8, 1234),
            "the memory stream had not ended (1234 bytes written to QEMU)"
        );
        assert!(Step::waited_for(Step::Loading as u8, 5).starts_with("QEMU had not finished"));
        assert_eq!(
            Step::waited_for(Step::Disks as u8, 0),
            "the disks' mirrors had not ended in sync"
        );
        assert_eq!(
            Step::waited_for(Step::Running as u8, 0),
            "the guest had not started"
        );
    }
}
