//! Local disks that move with their guest: QEMU's block mirror on the source writes into an
//! NBD export of the destination's disk, over two DWCP sessions (requests one way, answers the
//! other), before and while the memory moves.
//!
//! ```text
//!  source QEMU                  source node             destination node    destination QEMU
//!  disk0 ─► mirror ─► nbd node ═ socket ═► DWCP disk0 ═════════► socket ═► NBD export of disk0
//!                              ◄═ socket ◄═ DWCP disk0-reply ◄═══ socket ◄═
//! ```
//!
//! The mirror copies what the overlay holds (its backing image is on both nodes), reaches
//! `ready`, and from then on copies each write as the guest makes it. Once the guest stops,
//! the mirror is cancelled, which for a ready mirror copies what is left and leaves the export
//! in sync; only then does the source let the requests' stream end, and the destination runs
//! the guest only after that end.

use super::Cluster;
use super::streams::{self, Expected, Sending};
use novacron_api::migration::{PeerDiskExport, disk_reply_stream};
use novacron_model::{OperationId, Vm};
use novacron_qemu::qmp::block::{JobEnd, job_end, next_job_ready, wait_job_end};
use novacron_qemu::qmp::{QmpClient, QmpEvent};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::broadcast::error::TryRecvError;

/// Most bytes a mirror has in flight at once: enough for the bandwidth-delay product of the
/// standard links, as QEMU waits for each write's answer.
const MIRROR_BUF: u64 = 64 << 20;
/// Longest wait for a mirror to finish at switch-over or to stop after a failure.
const END_WAIT: Duration = Duration::from_secs(60);
/// How often a mirror not yet ready at switch-over is looked at, besides its ready event.
const READY_POLL: Duration = Duration::from_millis(50);

/// QEMU's block node of disk `index` (as `novacron_qemu::launch` names it).
fn disk_node(index: usize) -> String {
    format!("disk{index}")
}

/// The source's end of one disk's NBD connection, before the destination answered.
pub(crate) struct PendingMirror {
    /// The daemon's end: requests are read from it, answers written into it.
    ours: UnixStream,
    /// QEMU's end, passed to it once the export exists.
    theirs: UnixStream,
    replies: Expected,
}

/// The source registers where each disk's answers arrive before it asks the destination to
/// prepare, which starts sending them at once (an NBD server speaks first).
pub(crate) fn expect_replies(
    cluster: &Cluster,
    migration: OperationId,
    disks: usize,
) -> Result<Vec<PendingMirror>, String> {
    (0..disks)
        .map(|index| {
            let (ours, theirs) = UnixStream::pair()
                .map_err(|e| format!("could not create the socket of disk {index}: {e}"))?;
            let writer = ours
                .try_clone()
                .map_err(|e| format!("could not create the socket of disk {index}: {e}"))?;
            let replies = cluster
                .streams
                .expect(&disk_reply_stream(migration, index), Box::new(writer))?;
            Ok(PendingMirror {
                ours,
                theirs,
                replies,
            })
        })
        .collect()
}

/// One disk being mirrored from here.
pub(crate) struct SourceMirror {
    index: usize,
    job: String,
    node: String,
    requests: Sending,
    replies: Expected,
    /// Set once QEMU's job completed: the requests' stream may then end.
    completed: Arc<AtomicBool>,
    /// The daemon's end of the NBD socket, to end the requests' stream at once.
    reader: UnixStream,
    /// QEMU's events since the mirror started, to tell how it ended.
    events: tokio::sync::Mutex<tokio::sync::broadcast::Receiver<QmpEvent>>,
}

impl SourceMirror {
    /// Why QEMU's job ended, as its end event says.
    fn ended(&self) -> String {
        let Ok(mut events) = self.events.try_lock() else {
            return format!("QEMU's mirror of disk {} stopped", self.index);
        };
        loop {
            match events.try_recv() {
                Ok(event) => {
                    if let Some(JobEnd::Failed(e)) = job_end(&event, &self.job) {
                        return format!("QEMU's mirror of disk {} failed: {e}", self.index);
                    }
                }
                Err(TryRecvError::Lagged(_)) => {}
                Err(_) => return format!("QEMU's mirror of disk {} stopped", self.index),
            }
        }
    }

    /// Why the mirror's connection failed, if it has.
    pub(crate) fn failure(&self) -> Option<String> {
        self.requests
            .failure()
            .map(|e| format!("the DWCP session of disk {} failed: {e}", self.index))
    }
}

/// Connects QEMU to each export through DWCP and starts the mirrors, each added to `mirrors`
/// as soon as it has something to undo.
pub(crate) async fn start(
    qmp: &QmpClient,
    cluster: &Cluster,
    addr: &str,
    peer: &str,
    pending: Vec<PendingMirror>,
    exports: &[PeerDiskExport],
    mirrors: &mut Vec<SourceMirror>,
) -> Result<(), String> {
    if exports.len() != pending.len() {
        return Err(format!(
            "{peer} exported {} disks, the VM has {}",
            exports.len(),
            pending.len()
        ));
    }
    for (index, (p, export)) in pending.into_iter().zip(exports).enumerate() {
        // The requests' stream ends only once the mirror completed: the destination takes
        // its end as the disk being in sync.
        let completed = Arc::new(AtomicBool::new(false));
        let reader = p
            .ours
            .try_clone()
            .map_err(|e| format!("disk {index}: could not use the NBD socket: {e}"))?;
        let requests = streams::send_stream(
            cluster,
            addr,
            peer,
            &export.stream,
            p.ours,
            streams::Controls {
                end_confirmed: Some(Arc::clone(&completed)),
                ..streams::Controls::default()
            },
        );
        let job = format!("nc-mirror-disk{index}");
        let node = format!("nc-nbd-disk{index}");
        let qemu = |what: &str, e: novacron_qemu::qmp::QmpError| {
            format!("disk {index}: {what}: {}", crate::vms::chain(&e))
        };
        qmp.send_fd(&node, std::os::fd::AsFd::as_fd(&p.theirs))
            .await
            .map_err(|e| qemu("could not pass the NBD socket to QEMU", e))?;
        drop(p.theirs);
        let mirror = SourceMirror {
            index,
            job: job.clone(),
            node: node.clone(),
            requests,
            replies: p.replies,
            completed,
            reader,
            events: tokio::sync::Mutex::new(qmp.events()),
        };
        // A node of that name is left only by a migration whose daemon stopped mid-way (its
        // connection died with the daemon): it goes first.
        if qmp.blockdev_del(&node).await.is_ok() {
            tracing::info!(%node, "removed an NBD node left by an earlier migration");
        }
        let added = qmp.blockdev_add_nbd_fd(&node, &node, &export.export).await;
        mirrors.push(mirror);
        added.map_err(|e| qemu("QEMU could not reach the destination's export", e))?;
        qmp.blockdev_mirror_top(&job, &disk_node(index), &node, MIRROR_BUF)
            .await
            .map_err(|e| qemu("QEMU refused the mirror", e))?;
    }
    Ok(())
}

/// What the mirrors copied so far: (bytes copied, bytes to copy), and whether all are ready.
pub(crate) async fn figures(
    qmp: &QmpClient,
    mirrors: &[SourceMirror],
) -> Result<(u64, u64, bool), String> {
    let jobs = qmp
        .query_block_jobs()
        .await
        .map_err(|e| format!("QEMU stopped answering: {}", crate::vms::chain(&e)))?;
    let (mut copied, mut total, mut ready) = (0u64, 0u64, true);
    for m in mirrors {
        if let Some(e) = m.failure() {
            return Err(e);
        }
        let job = jobs
            .iter()
            .find(|j| j.device == m.job)
            .ok_or_else(|| m.ended())?;
        if job.status == "concluded" || job.status == "aborting" {
            return Err(m.ended());
        }
        copied = copied.saturating_add(job.offset);
        total = total.saturating_add(job.len);
        ready &= job.ready;
    }
    Ok((copied, total, ready))
}

/// Switch-over, the guest stopped (no more writes): asks each mirror to end, which it does
/// once it has copied what is left, leaving its export in sync. [`finish`] waits for it.
pub(crate) async fn end(qmp: &QmpClient, mirrors: &[SourceMirror]) -> Result<(), String> {
    for m in mirrors {
        qmp.block_job_cancel(&m.job, false).await.map_err(|e| {
            format!(
                "the mirror of disk {} could not finish: {}",
                m.index,
                crate::vms::chain(&e)
            )
        })?;
    }
    Ok(())
}

/// Switch-over, the guest stopped: waits until every mirror is ready. They start beside the
/// memory's first pass, and a guest that dirties little can stop before a mirror has copied
/// what its overlay held (a mirror asked to [`end`] before it is ready stops early, out of
/// sync): with no more writes it gets there, and the wait is part of the downtime. At most
/// [`END_WAIT`]. Returns what they copied then: (bytes copied, bytes to copy).
pub(crate) async fn wait_ready(
    qmp: &QmpClient,
    mirrors: &[SourceMirror],
) -> Result<(u64, u64), String> {
    if mirrors.is_empty() {
        return Ok((0, 0));
    }
    let stopped = tokio::time::Instant::now();
    let deadline = stopped + END_WAIT;
    // Subscribed before each look at the jobs: a job that becomes ready in between is not
    // missed.
    let mut events = qmp.events();
    let mut waited = false;
    loop {
        let (copied, total, ready) = figures(qmp, mirrors).await?;
        if ready {
            if waited {
                tracing::info!(
                    waited_ms = stopped.elapsed().as_millis(),
                    copied,
                    "disk mirrors ready after the guest stopped"
                );
            }
            return Ok((copied, total));
        }
        waited = true;
        let woke = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                () = next_job_ready(&mut events) => {}
                () = tokio::time::sleep(READY_POLL) => {}
            }
        })
        .await;
        if woke.is_err() {
            return Err(format!(
                "the disks' mirrors were not ready {} s after the guest stopped ({copied} of {total} bytes copied)",
                END_WAIT.as_secs()
            ));
        }
    }
}

/// Waits for each mirror asked to [`end`] to have ended in sync, then closes the NBD
/// connections.
pub(crate) async fn finish(qmp: &QmpClient, mirrors: &[SourceMirror]) -> Result<(), String> {
    for m in mirrors {
        let mut events = m.events.lock().await;
        match wait_job_end(&mut events, &m.job, END_WAIT).await {
            Ok(JobEnd::Completed) => {
                // Every request the mirror made was answered: the stream ends now rather
                // than when QEMU's NBD client has disconnected.
                m.completed.store(true, Ordering::SeqCst);
                if let Err(e) = m.reader.shutdown(std::net::Shutdown::Read) {
                    tracing::debug!(disk = m.index, error = %e, "NBD socket already closed");
                }
            }
            Ok(JobEnd::Cancelled) => {
                return Err(format!("the mirror of disk {} stopped early", m.index));
            }
            Ok(JobEnd::Failed(e)) => {
                return Err(format!("the mirror of disk {} failed: {e}", m.index));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    for m in mirrors {
        if let Err(e) = qmp.blockdev_del(&m.node).await {
            tracing::warn!(disk = m.index, error = %crate::vms::chain(&e), "could not close the NBD connection of a finished mirror");
        }
    }
    Ok(())
}

/// After a failure: stops the mirrors where they are and closes their connections. The
/// source's disks were only read.
pub(crate) async fn abandon(qmp: &QmpClient, mirrors: &[SourceMirror]) {
    let mut events = qmp.events();
    let mut running = Vec::new();
    for m in mirrors {
        // A mirror that already ended is no longer known: nothing to stop.
        if qmp.block_job_cancel(&m.job, true).await.is_ok() {
            running.push(m);
        }
    }
    for m in running {
        if let Err(e) = wait_job_end(&mut events, &m.job, END_WAIT).await {
            tracing::warn!(disk = m.index, error = %e, "a cancelled mirror did not stop");
        }
    }
    for m in mirrors {
        if let Err(e) = qmp.blockdev_del(&m.node).await {
            tracing::debug!(disk = m.index, error = %crate::vms::chain(&e), "NBD node not removed");
        }
    }
}

/// Waits (at most `wait`) for the answers' stream of each mirror to end, which it does once
/// the destination's NBD server closed the connection.
pub(crate) async fn closed(mirrors: &[SourceMirror], wait: Duration) {
    for m in mirrors {
        if let Ok(Err(e)) = tokio::time::timeout(wait, m.replies.outcome()).await {
            tracing::debug!(disk = m.index, error = %e, "the answers of a disk export ended badly");
        }
    }
}

/// The destination's end of one disk's mirror; dropping it stops the answers' session.
pub(crate) struct DestMirror {
    /// The source's requests, written into the export's socket.
    requests: Expected,
    /// The export's answers, read from its socket and sent back.
    _replies: Sending,
}

impl DestMirror {
    /// Waits for the source's requests to end: the source ends them only once its mirror
    /// completed (every write answered), so then the export holds what the guest wrote.
    pub(crate) async fn in_sync(&self) -> Result<(), String> {
        self.requests.outcome().await
    }
}

/// Starts QEMU's NBD server on `socket`, exports each disk of `vm` writable, connects to each
/// export, and joins the connection to the source's sessions: requests arrive as the
/// session the export names, answers go to the source's DWCP receiver at `source_addr`.
pub(crate) async fn export_disks(
    qmp: &QmpClient,
    cluster: &Cluster,
    socket: &Path,
    migration: OperationId,
    vm: &Vm,
    source: (&str, Option<&str>),
) -> Result<(Vec<DestMirror>, Vec<PeerDiskExport>), String> {
    if vm.disks.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let (peer, source_addr) = source;
    let source_addr = source_addr.ok_or_else(|| {
        format!("{peer} sent no DWCP port, or this node does not know its address: a VM with disks cannot move here")
    })?;
    let qemu =
        |what: &str, e: novacron_qemu::qmp::QmpError| format!("{what}: {}", crate::vms::chain(&e));
    qmp.nbd_server_start(socket)
        .await
        .map_err(|e| qemu("QEMU could not start its NBD server", e))?;
    let mut mirrors = Vec::new();
    let mut exports = Vec::new();
    for index in 0..vm.disks.len() {
        let export = disk_node(index);
        qmp.nbd_export_add(&disk_node(index), &export, true)
            .await
            .map_err(|e| qemu("QEMU could not export the disk", e))?;
        let path = socket.to_owned();
        let conn = tokio::task::spawn_blocking(move || UnixStream::connect(path))
            .await
            .map_err(|e| format!("NBD connect task failed: {e}"))?
            .map_err(|e| format!("could not connect to QEMU's NBD server: {e}"))?;
        let writer = conn
            .try_clone()
            .map_err(|e| format!("could not use the NBD connection: {e}"))?;
        let stream = format!("migrate-{migration}-disk{index}");
        let requests = cluster.streams.expect(&stream, Box::new(writer))?;
        let replies = streams::send_stream(
            cluster,
            source_addr,
            peer,
            &disk_reply_stream(migration, index),
            conn,
            streams::Controls::default(),
        );
        mirrors.push(DestMirror {
            requests,
            _replies: replies,
        });
        exports.push(PeerDiskExport { stream, export });
    }
    Ok((mirrors, exports))
}
