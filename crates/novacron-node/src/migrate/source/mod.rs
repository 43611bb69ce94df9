//! The source of a migration: admission, the run (prepare on the peer, QEMU's stream through
//! DWCP, sampling and policy, switch-over, disks, commit) and the way back on failure.
//! `image`: the VM's image to a destination that lacks it, before the prepare. `phases`: the
//! disk mirrors' copy (before the memory, or beside it for small overlays), and post-copy
//! after the commit. `commit`: the commit, twice at once.

mod commit;
mod follow;
mod image;
mod phases;

use super::mirror::{self, PendingMirror, SourceMirror};
use super::streams;
use crate::node::Node;
use crate::vms::chain;
use novacron_api::migration::{
    MAX_DOWNTIME_MS, MAX_MIGRATION_SECS, PeerPrepareRequest, PeerPrepareResponse, VmMigrateRequest,
    memory_reply_stream,
};
use novacron_api::{Caller, ServiceError};
use novacron_migrate::Policy;
use novacron_model::{
    EventKind, MigrationPhase, MigrationProgress, Operation, OperationKind, Vm, VmState,
};
use novacron_qemu::qmp::MigrationStatus;
use novacron_qemu::{QemuProcess, RunState};
use novacron_store::Command;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Name under which the migration socket is passed to the source QEMU.
const FD_NAME: &str = "nc-migrate-out";
/// How often QEMU and DWCP are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Longest wait for the destination to answer the commit: it waits up to two minutes for the
/// streams' tails to arrive (`dest::COMMIT_WAIT`), then starts the guest.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(150);
/// Longest wait for the memory stream's summary once the destination runs the guest.
const SUMMARY_WAIT: Duration = Duration::from_secs(10);
/// QEMU's own pre-copy bandwidth cap is lifted: DWCP paces the stream.
const UNCAPPED: u64 = 1 << 40;

/// A migration leaving this node.
pub(crate) struct Outgoing {
    cancel: watch::Sender<bool>,
    progress: Mutex<MigrationProgress>,
    /// The VM, as it was when the migration began.
    pub(crate) vm: Vm,
}

impl Outgoing {
    /// The progress now.
    pub(crate) fn progress(&self) -> MigrationProgress {
        self.progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Everything one run needs.
struct Run {
    op: Operation,
    vm: Vm,
    /// State to return to on failure.
    was: VmState,
    target: String,
    process: Arc<QemuProcess>,
    client: novacron_api::client::Client,
    policy: Policy,
    outgoing: Arc<Outgoing>,
    started: Instant,
}

/// Where the guest stopped on this node.
struct Stopped {
    /// When (approximately).
    at: Instant,
    /// Whether it stopped for post-copy: the destination still lacks pages.
    postcopy: bool,
}

/// Why a run ended without moving the VM.
struct Failed {
    reason: String,
    /// Whether the destination may run the guest: then the source must stay paused.
    outcome_unknown: bool,
}

impl From<String> for Failed {
    fn from(reason: String) -> Self {
        Self {
            reason,
            outcome_unknown: false,
        }
    }
}

fn policy_of(req: &VmMigrateRequest) -> Result<Policy, ServiceError> {
    let mut policy = Policy {
        postcopy: req.postcopy,
        ..Policy::default()
    };
    if let Some(ms) = req.max_downtime_ms {
        if !(1..=MAX_DOWNTIME_MS).contains(&ms) {
            return Err(ServiceError::Invalid {
                field: "max_downtime_ms".to_owned(),
                message: format!("must be 1 to {MAX_DOWNTIME_MS}, got {ms}"),
            });
        }
        policy.max_downtime = Duration::from_millis(ms);
    }
    if let Some(secs) = req.timeout_secs {
        if !(1..=MAX_MIGRATION_SECS).contains(&secs) {
            return Err(ServiceError::Invalid {
                field: "timeout_secs".to_owned(),
                message: format!("must be 1 to {MAX_MIGRATION_SECS}, got {secs}"),
            });
        }
        policy.budget = Duration::from_secs(secs);
    }
    Ok(policy)
}

impl Node {
    /// `POST /vms/{vm}/migrate`: admits the migration and runs it as an operation.
    pub(crate) async fn migrate_out(
        &self,
        caller: &Caller,
        vm: &str,
        req: VmMigrateRequest,
    ) -> Result<Operation, ServiceError> {
        let cluster = self.cluster()?;
        let vm = self.resolve(caller, vm)?;
        let policy = policy_of(&req)?;
        let client = cluster.peer_client(&req.target)?;
        if !matches!(vm.state, VmState::Running | VmState::Paused) {
            return Err(ServiceError::Conflict(format!(
                "vm {} is {}: only a running or paused VM can be migrated",
                vm.spec.name, vm.state
            )));
        }
        let process = self.process(vm.id).ok_or_else(|| {
            ServiceError::Conflict(format!(
                "vm {} has no QEMU process under supervision",
                vm.spec.name
            ))
        })?;
        let was = vm.state;
        let vm = self
            .transition(&vm, was, VmState::Migrating, None, vm.runtime.clone())
            .await?;
        let mut op = match self
            .begin_op(&caller.tenant, OperationKind::VmMigrate, vm.id.to_string())
            .await
        {
            Ok(op) => op,
            Err(e) => {
                self.settle_back(&vm, was, None).await;
                return Err(e);
            }
        };
        let progress = MigrationProgress {
            target: req.target.clone(),
            phase: Some(MigrationPhase::Prepare),
            ..MigrationProgress::default()
        };
        op.migration = Some(progress.clone());
        // The target is kept with the operation, for the record and for a restart.
        if let Err(e) = self.apply(Command::PutOperation(op.clone())).await {
            tracing::warn!(operation = %op.id, error = %e, "could not record the migration target");
        }
        let (cancel, _) = watch::channel(false);
        let outgoing = Arc::new(Outgoing {
            cancel,
            progress: Mutex::new(progress),
            vm: vm.clone(),
        });
        cluster.outgoing().insert(op.id, Arc::clone(&outgoing));
        let run = Run {
            op: op.clone(),
            vm,
            was,
            target: req.target,
            process,
            client,
            policy,
            outgoing,
            started: Instant::now(),
        };
        let node = self.clone();
        tokio::spawn(async move { node.run_out(run).await });
        Ok(op)
    }

    /// Asks a running migration to stop.
    pub(crate) fn migrate_cancel(
        &self,
        caller: &Caller,
        id: novacron_model::OperationId,
    ) -> Result<Operation, ServiceError> {
        let op = self.op_get(caller, id)?;
        let cluster = self.cluster()?;
        let outgoing = cluster.outgoing().get(&id).cloned();
        match outgoing {
            Some(o) if op.kind == OperationKind::VmMigrate => {
                o.cancel.send_replace(true);
                Ok(self.with_live_progress(op))
            }
            _ => Err(ServiceError::Conflict(format!(
                "operation {} ({}, {:?}) cannot be cancelled",
                op.id, op.kind, op.status
            ))),
        }
    }

    /// `op` with the live progress of its migration, while it runs.
    pub(crate) fn with_live_progress(&self, mut op: Operation) -> Operation {
        if op.kind == OperationKind::VmMigrate && !op.status.is_done() {
            if let Ok(cluster) = self.cluster() {
                if let Some(o) = cluster.outgoing().get(&op.id) {
                    op.migration = Some(o.progress());
                }
            }
        }
        op
    }

    async fn run_out(&self, run: Run) {
        let result = self.migrate_steps(&run).await;
        let mut progress = run.outgoing.progress();
        let result = match result {
            Ok(downtime) => {
                progress.phase = Some(MigrationPhase::Done);
                progress.downtime_ms = Some(downtime);
                self.finish_moved(&run).await;
                Ok(())
            }
            Err(failed) => {
                progress.phase = Some(MigrationPhase::Failed);
                self.settle_back(&run.vm, run.was, Some(&failed)).await;
                Err(failed.reason)
            }
        };
        progress.elapsed_ms = u64::try_from(run.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Ok(cluster) = self.cluster() {
            cluster.outgoing().remove(&run.op.id);
            cluster.count_ended(super::Direction::Out, result.is_ok());
        }
        self.publish_progress(&run, progress.clone());
        let mut op = run.op.clone();
        op.migration = Some(progress);
        self.finish_op(op, result).await;
    }

    /// The steps up to a committed destination; returns the downtime in milliseconds.
    async fn migrate_steps(&self, run: &Run) -> Result<u64, Failed> {
        let cluster = self.cluster().map_err(|e| e.to_string())?;
        let pending = mirror::expect_replies(cluster, run.op.id, run.vm.disks.len())?;
        // QEMU's migration socket: the daemon sends what QEMU writes into it; with post-copy,
        // the destination QEMU's page requests arrive into it too.
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| format!("could not create the migration socket: {e}"))?;
        let memory_replies = if run.policy.postcopy {
            let writer = ours
                .try_clone()
                .map_err(|e| format!("could not use the migration socket: {e}"))?;
            Some(
                cluster
                    .streams
                    .expect(&memory_reply_stream(run.op.id), Box::new(writer))?,
            )
        } else {
            None
        };
        self.image_to_peer(run).await?;
        let ready = run
            .client
            .peer_prepare(&PeerPrepareRequest {
                migration: run.op.id,
                vm: run.vm.clone(),
                timeout_secs: run.policy.budget.as_secs(),
                dwcp_port: Some(cluster.dwcp_port()),
                postcopy: run.policy.postcopy,
            })
            .await
            .map_err(|e| format!("{} refused the migration: {e}", run.target))?;
        let mut mirrors = Vec::new();
        let streamed = self
            .stream_and_commit(run, &ready, (ours, theirs), pending, &mut mirrors)
            .await;
        drop(memory_replies);
        if streamed.is_err() {
            mirror::abandon(run.process.qmp(), &mirrors).await;
        }
        match streamed {
            Ok(downtime) => Ok(downtime),
            Err(failed) if failed.outcome_unknown => Err(failed),
            Err(failed) => {
                if let Err(e) = run.client.peer_abort(run.op.id).await {
                    tracing::warn!(operation = %run.op.id, error = %e, "could not tell the destination to drop the migration; it drops it on its own");
                }
                Err(failed)
            }
        }
    }

    /// Mirrors the disks, streams the memory, finishes the mirrors and commits; the mirrors
    /// started are left in `mirrors`.
    async fn stream_and_commit(
        &self,
        run: &Run,
        ready: &PeerPrepareResponse,
        (ours, theirs): (UnixStream, UnixStream),
        pending: Vec<PendingMirror>,
        mirrors: &mut Vec<SourceMirror>,
    ) -> Result<u64, Failed> {
        let qmp = run.process.qmp();
        let cluster = self.cluster().map_err(|e| e.to_string())?;
        let peer_url = cluster.peer_url(&run.target).map_err(|e| e.to_string())?;
        let host =
            super::url_host(peer_url).ok_or_else(|| format!("peer URL {peer_url} has no host"))?;
        let addr = format!("{host}:{}", ready.dwcp_port);
        // The memory's session opens now (its handshakes take three round trips or more) and
        // QEMU's first bytes wait for it, while the round trip is measured and, for large
        // overlays, the disks' mirrors are set up: on a long link that is most of a second not
        // added to the migration.
        let (narrowing, controls) = streams::Narrowing::new(novacron_migrate::MAX_WINDOW);
        let sending = streams::send_stream(
            cluster,
            &addr,
            &run.target,
            &ready.memory_stream,
            ours,
            controls,
        );
        // The switch-over ends with the commit's answer from the destination, a round trip
        // after the guest stopped (the mirrors' last one runs alongside): measured now, on
        // the connection the prepare opened, it is kept out of the downtime QEMU may plan for,
        // up to a quarter of it (on a long link a smaller budget costs more passes than it
        // saves downtime), and says whether post-copy would stop the guest for long (see
        // `Policy::round_trip`). It is measured before QEMU's stream starts, on a link still
        // idle (beside the disks' mirrors being set up, for large overlays).
        let round_trip = async {
            let asked = Instant::now();
            let rtt = run.client.health().await.ok().map(|()| asked.elapsed());
            // And a second connection opens beside it for the commit's second copy.
            let warming = run.client.clone();
            tokio::spawn(async move { commit::keep_warm(&warming).await });
            rtt
        };
        let disks: Vec<_> = run.vm.disks.iter().map(|d| d.path.clone().into()).collect();
        let beside =
            !pending.is_empty() && phases::mirrors_beside_memory(&disks, run.vm.spec.memory.0);
        let (first, later) = if beside {
            (Vec::new(), pending)
        } else {
            (pending, Vec::new())
        };
        let (idle_rtt, set_up) = tokio::join!(
            round_trip,
            self.set_up_qemu(run, (cluster, &addr), ready, (first, beside), mirrors)
        );
        set_up?;
        qmp.send_fd(FD_NAME, std::os::fd::AsFd::as_fd(&theirs))
            .await
            .map_err(|e| format!("could not pass the migration socket to QEMU: {}", chain(&e)))?;
        drop(theirs);
        qmp.migrate_to_fd(FD_NAME)
            .await
            .map_err(|e| format!("QEMU refused to migrate: {}", chain(&e)))?;
        tracing::info!(
            operation = %run.op.id,
            vm = %run.vm.id,
            target = %run.target,
            %addr,
            round_trip_ms = idle_rtt.map(|rtt| rtt.as_secs_f64() * 1000.0),
            mirrors_beside = beside,
            "migration started"
        );
        if beside {
            // Small overlays: their mirrors start now, while the memory's first pass crosses;
            // QEMU is held from ending the pre-copy until they are ready (see `follow`).
            let started = mirror::start(
                qmp,
                cluster,
                &addr,
                &run.target,
                later,
                &ready.disks,
                mirrors,
            )
            .await;
            if let Err(e) = started {
                return Err(self.cancel_qemu(run, e).await);
            }
        }

        let stopped = self
            .follow(run, &sending, &narrowing, (mirrors, beside), idle_rtt)
            .await?;
        // The guest is stopped here from now on. Before a pre-copy switch-over what QEMU
        // writes now is all the stopped guest waits for: the window and the wire bound open,
        // so that its last pages and devices go out at once instead of waiting a round trip
        // for the narrowed window's bytes to be reported. In post-copy both stay narrow: the
        // pages the running guest faults on queue behind what DWCP holds.
        if !stopped.postcopy {
            narrowing.open(novacron_migrate::MAX_WINDOW);
        }
        let stopped_at = stopped.at;
        self.set_phase(run, MigrationPhase::SwitchOver);
        // Recorded before the commit goes out: a daemon restarted from here on cannot know
        // whether the guest runs on the destination (see `recover`).
        let mut committing = run.op.clone();
        committing.migration = Some(MigrationProgress {
            phase: Some(MigrationPhase::SwitchOver),
            ..run.outgoing.progress()
        });
        self.apply(Command::PutOperation(committing))
            .await
            .map_err(|e| format!("could not record the switch-over: {e}"))?;
        // The commit goes out as soon as the guest stopped, while QEMU sends its last bytes
        // and the mirrors copy the last writes: the destination runs the guest only once its
        // QEMU loaded the whole stream (verified end to end) and each mirror's stream ended,
        // which this node lets happen only once the mirror completed, every write answered
        // (`finish_incoming`). Waiting for either here first would add round trips to the
        // downtime. Should QEMU or a mirror fail here, the destination's wait fails with it.
        let commit_client = run.client.clone().with_timeout(COMMIT_TIMEOUT);
        let here = async {
            let ended = async {
                // Mirrors started beside the memory may not be ready yet: with no more writes
                // they get there, and QEMU waits before the devices (`pause-before-switchover`)
                // until they have; it goes on before they are asked to end, as it would
                // without the pause: their last requests in flight do not hold it back.
                let (copied, total) = mirror::wait_ready(qmp, mirrors).await?;
                if !mirrors.is_empty() {
                    let mut p = run.outgoing.progress();
                    (p.disk_copied, p.disk_total) = (copied, total);
                    self.publish_progress(run, p);
                }
                if beside {
                    qmp.migrate_continue().await.map_err(|e| {
                        format!("QEMU did not go on to the switch-over: {}", chain(&e))
                    })?;
                }
                mirror::end(qmp, mirrors).await
            };
            if let Err(e) = ended.await {
                if beside {
                    // Its migration called off, QEMU cuts the memory's stream, and the
                    // destination fails the commit at once rather than waiting for it.
                    if let Err(c) = qmp.migrate_cancel().await {
                        tracing::warn!(operation = %run.op.id, error = %chain(&c), "could not cancel QEMU's migration");
                    }
                }
                return Err(e);
            }
            // QEMU and the mirrors end side by side: with its return path open (post-copy
            // allowed) QEMU completes only once the destination loaded the stream, and the
            // disks' streams waiting for that had the guest wait a round trip more.
            let qemu = async {
                let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
                let info = novacron_qemu::qmp::wait_migration_for(qmp, deadline, |s| {
                    s.is_finished() || (stopped.postcopy && *s == MigrationStatus::PostcopyActive)
                })
                .await
                .map_err(|e| format!("QEMU did not finish sending: {}", chain(&e)))?;
                let sent = info.status == MigrationStatus::Completed
                    || (stopped.postcopy && info.status == MigrationStatus::PostcopyActive);
                if !sent {
                    return Err(format!(
                        "QEMU's migration {}: {}",
                        info.status,
                        info.error_desc
                            .unwrap_or_else(|| "no reason given".to_owned())
                    ));
                }
                Ok(stopped_at.elapsed().as_millis())
            };
            let disks = async {
                mirror::finish(qmp, mirrors).await?;
                Ok(stopped_at.elapsed().as_millis())
            };
            tokio::try_join!(qemu, disks)
        };
        let commit = async {
            let sent = stopped_at.elapsed();
            let answer = commit::commit(&commit_client, run.op.id).await;
            (answer, sent, stopped_at.elapsed())
        };
        let ((committed, commit_sent, commit_answered), here) = tokio::join!(commit, here);
        let times = committed
            .as_ref()
            .map(|c| novacron_migrate::CommitTimes {
                running_after: c.running_after,
                answered_after: c.answered_after,
            })
            .unwrap_or_default();
        let downtime =
            novacron_migrate::guest_downtime(commit_sent, commit_answered, times, idle_rtt);
        if let Ok((qemu_ms, mirrors_ms)) = &here {
            // Where the downtime went, from the moment the guest stopped.
            tracing::info!(
                operation = %run.op.id,
                qemu_sent_ms = qemu_ms,
                mirrors_ended_ms = mirrors_ms,
                commit_sent_ms = commit_sent.as_millis(),
                commit_answered_ms = commit_answered.as_millis(),
                guest_ran_after_commit_ms = times.running_after.map(|r| r.as_millis()),
                answer_left_after_commit_ms = times.answered_after.map(|r| r.as_millis()),
                downtime_ms = downtime.as_millis(),
                "switch-over"
            );
        }
        if let Err(e) = &here {
            tracing::warn!(operation = %run.op.id, error = %e, "the switch-over failed on this node");
        }
        match committed {
            Ok(_) => {
                let downtime = u64::try_from(downtime.as_millis()).unwrap_or(u64::MAX);
                if stopped.postcopy {
                    self.finish_postcopy(run, &sending).await?;
                }
                // The destination verified the streams; their summaries give the final figures.
                if let Ok(memory) = sending.finished(SUMMARY_WAIT).await {
                    let mut p = run.outgoing.progress();
                    p.stream_bytes = memory.stream_bytes;
                    p.wire_bytes = memory.wire_bytes;
                    p.ref_bytes = memory.ref_bytes;
                    self.publish_progress(run, p);
                }
                mirror::closed(mirrors, SUMMARY_WAIT).await;
                Ok(downtime)
            }
            Err(e) if e.status().is_some() => Err(match here {
                Err(here) => format!("{here}; {} could not start the guest: {e}", run.target),
                Ok(_) => format!("{} could not start the guest: {e}", run.target),
            }
            .into()),
            Err(e) => match run.client.peer_abort(run.op.id).await {
                Ok(()) => Err(format!(
                    "no answer from {} to the commit ({e}); it dropped the migration",
                    run.target
                )
                .into()),
                Err(e2) => Err(Failed {
                    reason: format!(
                        "no answer from {} to the commit ({e}) nor to the abort ({e2}): the guest may run there; it stays paused here",
                        run.target
                    ),
                    outcome_unknown: true,
                }),
            },
        }
    }

    /// Cancels QEMU's migration and waits until it says so.
    async fn cancel_qemu(&self, run: &Run, reason: String) -> Failed {
        let qmp = run.process.qmp();
        if let Err(e) = qmp.migrate_cancel().await {
            tracing::warn!(error = %chain(&e), "migrate_cancel failed");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        if let Ok(info) = novacron_qemu::qmp::wait_migration(qmp, deadline).await {
            if info.status == MigrationStatus::Completed {
                // Too late to cancel: QEMU sent everything. The guest is stopped; the commit
                // is not sent, so it resumes here.
                tracing::info!(operation = %run.op.id, "migration completed before the cancel took effect");
            }
        }
        Failed {
            reason,
            outcome_unknown: false,
        }
    }

    fn set_phase(&self, run: &Run, phase: MigrationPhase) {
        let mut p = run.outgoing.progress();
        p.phase = Some(phase);
        p.eta_secs = None;
        self.publish_progress(run, p);
    }

    fn publish_progress(&self, run: &Run, progress: MigrationProgress) {
        *run.outgoing
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = progress.clone();
        self.inner.events.publish(
            Some(run.vm.tenant.clone()),
            EventKind::MigrationProgress {
                operation: run.op.id,
                vm: run.vm.id,
                progress,
            },
        );
    }

    /// After a commit: the VM lives on the destination; remove it here.
    async fn finish_moved(&self, run: &Run) {
        if let Err(e) = self
            .apply(Command::DeleteVm {
                id: run.vm.id,
                expect_state: Some(VmState::Migrating),
            })
            .await
        {
            tracing::error!(vm = %run.vm.id, error = %e, "could not remove the record of a migrated VM");
        }
        if let Err(e) = run.process.kill().await {
            tracing::warn!(vm = %run.vm.id, error = %chain(&e), "could not stop the source QEMU of a migrated VM");
        }
        self.set_process(run.vm.id, None);
        let dir = self.layout().vm(run.vm.id);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove the files of a migrated VM");
        }
        tracing::info!(vm = %run.vm.id, name = %run.vm.spec.name, target = %run.target, "migrated");
        self.inner.events.publish(
            Some(run.vm.tenant.clone()),
            EventKind::VmDeleted {
                vm: run.vm.id,
                name: run.vm.spec.name.clone(),
            },
        );
    }

    /// After a failure: the guest runs here again (or stays paused when the destination
    /// may run it), and the record says so.
    async fn settle_back(&self, vm: &Vm, was: VmState, failed: Option<&Failed>) {
        let mut to = was;
        let mut reason = failed.map(|f| format!("migration failed: {}", f.reason));
        if let Some(p) = self.process(vm.id) {
            let qmp = p.qmp();
            let status = qmp.query_status().await.ok();
            let stopped_by_migration = status.as_ref().is_some_and(|s| {
                matches!(s.status, RunState::Postmigrate | RunState::FinishMigrate)
            });
            if failed.is_some_and(|f| f.outcome_unknown) {
                to = VmState::Paused;
            } else if stopped_by_migration && was == VmState::Running {
                if let Err(e) = qmp.cont().await {
                    tracing::error!(vm = %vm.id, error = %chain(&e), "could not resume the guest after a failed migration");
                    to = VmState::Paused;
                    reason = Some(format!(
                        "{}; could not resume: {}",
                        reason.unwrap_or_default(),
                        chain(&e)
                    ));
                }
            }
        }
        let Some(current) = self.store().vm(vm.id) else {
            return;
        };
        if current.state != VmState::Migrating {
            return;
        }
        if let Err(e) = self
            .transition(
                &current,
                VmState::Migrating,
                to,
                reason,
                current.runtime.clone(),
            )
            .await
        {
            tracing::warn!(vm = %vm.id, error = %e, "could not record the end of a failed migration");
        }
    }
}
