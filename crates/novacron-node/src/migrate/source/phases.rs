//! The phases of a migration around QEMU's pre-copy: the disks' mirrors until they are
//! ready (before the memory, or beside its first pass when the overlays are small), and
//! post-copy after the commit (the guest runs on the destination, which pulls the pages it
//! lacks).

use super::{Failed, Run, SAMPLE_EVERY};
use crate::migrate::Cluster;
use crate::migrate::mirror::{self, PendingMirror, SourceMirror};
use crate::migrate::streams::Sending;
use crate::node::Node;
use crate::vms::chain;
use novacron_api::migration::PeerPrepareResponse;
use novacron_model::MigrationPhase;
use novacron_qemu::qmp::block::next_job_ready;
use novacron_qemu::qmp::{MigrationParameters, MigrationStatus};
use std::time::Duration;

/// Share of the guest's memory up to which the disks' overlays are mirrored beside the
/// memory's first pass rather than before it (see [`BESIDE_MAX`]). Waiting for their mirrors
/// costs the handshakes of an NBD connection carried over DWCP (over `intercontinental` 0.6 s,
/// a fifteenth of the migration); copied beside the memory, a small overlay crosses while the
/// first pass does, which takes longer: a running guest's memory holds tens of megabytes at
/// least. Larger overlays are copied first, each byte once: beside the memory they would slow
/// its passes, and a guest that dirties nothing, whose pre-copy ends as soon as its first pass
/// crossed, would wait stopped for the rest of its disks.
const BESIDE_MEMORY_SHARE: u64 = 16;
/// Most overlay bytes mirrored beside the memory, whatever its size: what a slow link carries
/// in seconds (64 MiB: 5 s over 100 Mbit/s), not minutes.
const BESIDE_MAX: u64 = 64 << 20;

/// Whether the disks' mirrors start beside the memory's first pass: the overlays in `disks`
/// (their allocated bytes on this node's file system) hold at most a
/// [`BESIDE_MEMORY_SHARE`]th of `memory` bytes and [`BESIDE_MAX`]. A disk whose size cannot
/// be read counts as large.
pub(super) fn mirrors_beside_memory(disks: &[std::path::PathBuf], memory: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mut held = 0u64;
    for disk in disks {
        match std::fs::metadata(disk) {
            Ok(m) => held = held.saturating_add(m.blocks().saturating_mul(512)),
            Err(_) => return false,
        }
    }
    held <= (memory / BESIDE_MEMORY_SHARE).min(BESIDE_MAX)
}

impl Node {
    /// Follows the mirrors until each holds what its disk does and copies every write as it
    /// happens, publishing their progress.
    pub(super) async fn mirror_until_ready(
        &self,
        run: &Run,
        mirrors: &[SourceMirror],
    ) -> Result<(), Failed> {
        let qmp = run.process.qmp();
        let mut cancel = run.outgoing.cancel.subscribe();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut last, mut per_sec) = ((Duration::ZERO, 0u64), 0u64);
        // A mirror that caught up says so at once: the memory waits no sampling period more.
        let mut events = qmp.events();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = next_job_ready(&mut events) => {}
                _ = cancel.changed() => return Err("cancelled by the operator".to_owned().into()),
            }
            let (copied, total, ready) = mirror::figures(qmp, mirrors).await?;
            let elapsed = run.started.elapsed();
            // Bytes copied per second, smoothed over the last few samples.
            let ms = u64::try_from(elapsed.saturating_sub(last.0).as_millis()).unwrap_or(u64::MAX);
            if let Some(now) = copied
                .saturating_sub(last.1)
                .saturating_mul(1000)
                .checked_div(ms)
            {
                per_sec = if per_sec == 0 {
                    now
                } else {
                    (per_sec.saturating_mul(7) / 10).saturating_add(now.saturating_mul(3) / 10)
                };
            }
            last = (elapsed, copied);
            let mut p = run.outgoing.progress();
            p.phase = Some(MigrationPhase::Disk);
            p.disk_copied = copied;
            p.disk_total = total;
            p.wire_rate = per_sec;
            p.eta_secs = (per_sec > 0).then(|| total.saturating_sub(copied) / per_sec);
            p.elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            self.publish_progress(run, p);
            if ready {
                tracing::info!(operation = %run.op.id, copied, "disk mirrors ready");
                return Ok(());
            }
            if elapsed > run.policy.budget {
                return Err(format!(
                    "the disks were not copied within {} s ({copied} of {total} bytes)",
                    run.policy.budget.as_secs()
                )
                .into());
            }
        }
    }

    /// Sets QEMU up for its migration: the capabilities and parameters, then the disks'
    /// mirrors to the destination's exports (`pending`, answered by `ready`; those started are
    /// left in `mirrors`) until they are ready; unless they start `beside` the memory's first
    /// pass (see [`mirrors_beside_memory`]): then `pending` is empty, and QEMU is held from
    /// ending the pre-copy until they are ready. `addr`: the destination's DWCP address.
    pub(super) async fn set_up_qemu(
        &self,
        run: &Run,
        (cluster, addr): (&Cluster, &str),
        ready: &PeerPrepareResponse,
        (pending, beside): (Vec<PendingMirror>, bool),
        mirrors: &mut Vec<SourceMirror>,
    ) -> Result<(), Failed> {
        let qmp = run.process.qmp();
        let qemu =
            |what: &str, e: &(dyn std::error::Error + 'static)| format!("{what}: {}", chain(e));
        // Mirrors starting beside the memory may not be ready, or not even started, when the
        // guest stops (a guest that dirties nothing ends the pre-copy at once): QEMU then
        // waits with its disks still in use, and goes on once they are (see
        // `stream_and_commit`).
        qmp.migrate_set_capabilities(&[
            ("events", true),
            ("auto-converge", true),
            ("postcopy-ram", run.policy.postcopy),
            ("pause-before-switchover", beside),
        ])
        .await
        .map_err(|e| qemu("QEMU refused the migration capabilities", &e))?;
        // 1 ms until the first sample says how long DWCP's backlog takes to cross (see
        // `Convergence`): QEMU does not see it, and on a fast start would stop the guest with
        // its whole first pass still held by DWCP. With post-copy allowed, QEMU is held from
        // ending the pre-copy until the policy decided, and with mirrors starting beside the
        // memory until they are ready (see `HOLD_BANDWIDTH`).
        qmp.migrate_set_parameters(&MigrationParameters {
            downtime_limit_ms: Some(1),
            max_bandwidth: Some(super::UNCAPPED),
            avail_switchover_bandwidth: (run.policy.postcopy || beside)
                .then_some(novacron_migrate::HOLD_BANDWIDTH),
            ..MigrationParameters::default()
        })
        .await
        .map_err(|e| qemu("QEMU refused the migration parameters", &e))?;
        if beside {
            return Ok(());
        }
        // The disks first: their mirrors copy what the overlays hold, then every write, so
        // the memory stream starts with the disks in step.
        mirror::start(
            qmp,
            cluster,
            addr,
            &run.target,
            pending,
            &ready.disks,
            mirrors,
        )
        .await?;
        if !mirrors.is_empty() {
            self.mirror_until_ready(run, mirrors).await?;
        }
        Ok(())
    }

    /// After the commit of a post-copy: the guest runs on the destination, which pulls the
    /// pages it lacks while QEMU pushes the rest; follows QEMU until it is done.
    pub(super) async fn finish_postcopy(&self, run: &Run, sending: &Sending) -> Result<(), Failed> {
        let qmp = run.process.qmp();
        let lost = |reason: String| Failed {
            reason: format!(
                "post-copy broke off ({reason}): the guest on {} lacks pages only this node holds",
                run.target
            ),
            outcome_unknown: true,
        };
        let mut p = run.outgoing.progress();
        p.phase = Some(MigrationPhase::Postcopy);
        p.postcopy = true;
        p.eta_secs = None;
        self.publish_progress(run, p);
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let info = qmp
                .query_migrate()
                .await
                .map_err(|e| lost(format!("QEMU stopped answering: {}", chain(&e))))?;
            let ram = info.ram.clone().unwrap_or_default();
            let dwcp = sending.figures();
            let mut p = run.outgoing.progress();
            p.bytes_sent = ram.transferred;
            p.bytes_remaining = ram.remaining;
            p.stream_bytes = ram.transferred;
            p.wire_bytes = dwcp.wire;
            p.ref_bytes = dwcp.refs;
            p.wire_rate = dwcp.rate;
            p.elapsed_ms = u64::try_from(run.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.publish_progress(run, p);
            match info.status {
                MigrationStatus::Completed => return Ok(()),
                MigrationStatus::Failed
                | MigrationStatus::Cancelled
                | MigrationStatus::PostcopyPaused => {
                    return Err(lost(format!(
                        "QEMU's migration {}: {}",
                        info.status,
                        info.error_desc
                            .unwrap_or_else(|| "no reason given".to_owned())
                    )));
                }
                _ => {}
            }
            if run.started.elapsed() > run.policy.budget.saturating_mul(2) {
                return Err(lost("not done within twice the time budget".to_owned()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mirrors_beside_memory;
    use std::io::Write;

    #[test]
    fn overlays_holding_a_sixteenth_of_the_memory_and_64_mib_at_most_go_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        // A sparse overlay holds what was written into it, whatever its length.
        let sparse = dir.path().join("sparse.qcow2");
        std::fs::File::create(&sparse)
            .unwrap()
            .set_len(10 << 30)
            .unwrap();
        let written = dir.path().join("written.qcow2");
        std::fs::File::create(&written)
            .unwrap()
            .write_all(&vec![1u8; 8 << 20])
            .unwrap();
        let both = [sparse, written.clone()];
        assert!(mirrors_beside_memory(&both, 256 << 20));
        // 8 MiB written is over a sixteenth of 64 MiB.
        assert!(!mirrors_beside_memory(&both, 64 << 20));
        // Overlays count together: 16 MiB against a sixteenth of 192 MiB.
        let twice = [written.clone(), written.clone()];
        assert!(!mirrors_beside_memory(&twice, 192 << 20));
        assert!(mirrors_beside_memory(&twice, 512 << 20));
        // However large the memory, no more than 64 MiB: 72 MiB against 64 GiB of memory.
        let nine = vec![written.clone(); 9];
        assert!(!mirrors_beside_memory(&nine, 64 << 30));
        assert!(mirrors_beside_memory(&nine[..7], 64 << 30));
        // An overlay that cannot be read counts as large.
        let missing = [dir.path().join("missing")];
        assert!(!mirrors_beside_memory(&missing, 64 << 30));
        assert!(mirrors_beside_memory(&[], 1 << 20));
    }
}
