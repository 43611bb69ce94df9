//! Following a running migration until the guest stops: QEMU and the DWCP session sampled,
//! the convergence policy applied, held while the disks' mirrors are not ready.

use super::{Failed, Run, SAMPLE_EVERY, Stopped};
use crate::migrate::mirror::{self, SourceMirror};
use crate::migrate::streams::{self, Sending};
use crate::node::Node;
use crate::vms::chain;
use novacron_migrate::{Convergence, Policy, Sample, Verdict};
use novacron_model::MigrationPhase;
use novacron_qemu::qmp::block::next_job_ready;
use novacron_qemu::qmp::{MigrationEvent, MigrationParameters, MigrationStatus};
use std::time::{Duration, Instant};

/// How often the two connections to the destination carry a request while the migration
/// runs. The commit's two copies, at the guest's stop, go out on them; a connection left idle
/// is closed (by the pool after 90 s, by the server sooner), and a new one costs the stopped
/// guest two round trips of handshakes, and a second more when a lost SYN is sent again.
const KEEP_WARM: Duration = Duration::from_secs(10);

/// How long a failed QEMU migration waits for the DWCP session's outcome, which names the
/// cause when the session's failure broke QEMU's socket.
const CAUSE_WAIT: Duration = Duration::from_secs(1);

impl Node {
    /// Samples the migration until the guest stops (QEMU sends its devices, switches to
    /// post-copy, or already completed) and returns when it stopped: the moment seen, or
    /// that of `completed` less QEMU's own downtime. `beside`: the mirrors started beside the
    /// memory and may not be ready yet (otherwise they were before QEMU started).
    pub(super) async fn follow(
        &self,
        run: &Run,
        sending: &Sending,
        narrowing: &streams::Narrowing,
        (mirrors, beside): (&[SourceMirror], bool),
        idle_rtt: Option<Duration>,
    ) -> Result<Stopped, Failed> {
        let qmp = run.process.qmp();
        let round_trip = idle_rtt.unwrap_or_default();
        let mut convergence = Convergence::new(Policy {
            reserve: round_trip.min(run.policy.max_downtime / 4),
            round_trip,
            ..run.policy
        });
        let mut cancel = run.outgoing.cancel.subscribe();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut set = (0u64, None::<u64>);
        let mut postcopy_at = None;
        // A new pass or status is sampled at once too: the first pass's end is where
        // post-copy starts, on a fast link the passes after it take less than a sampling
        // period, and the switch-over's end is the guest's downtime.
        let mut events = qmp.events();
        // Mirrors started beside the memory are not ready yet: until they are, QEMU is held
        // from ending the pre-copy, and the convergence policy waits (see `set_up_qemu`).
        let mut mirrors_ready = !beside;
        let mut job_events = qmp.events();
        let mut disks = (0, 0);
        let mut warmed = Instant::now();
        loop {
            if warmed.elapsed() >= KEEP_WARM {
                // The commit goes out on the connections to the destination the prepare
                // and the round trip's measure opened: kept in use, they are still open when
                // the guest stops.
                warmed = Instant::now();
                let client = run.client.clone();
                tokio::spawn(async move { super::commit::keep_warm(&client).await });
            }
            let stop_reason = tokio::select! {
                _ = tick.tick() => None,
                event = novacron_qemu::qmp::next_migration_event(&mut events) => {
                    if stopping(&event) {
                        return Ok(stopped_now(postcopy_at.is_some()));
                    }
                    None
                }
                () = next_job_ready(&mut job_events), if !mirrors_ready => None,
                _ = cancel.changed() => Some("cancelled by the operator".to_owned()),
                e = sending.failed() => Some(format!("the DWCP session failed: {e}")),
            };
            if let Some(reason) = stop_reason {
                return Err(self.cancel_qemu(run, reason).await);
            }
            // A query waits for QEMU's big lock, which it holds from the guest's stop while it
            // sends the last pages and the devices: the stop's event is watched beside it.
            let info = tokio::select! {
                info = qmp.query_migrate() => {
                    info.map_err(|e| format!("QEMU stopped answering: {}", chain(&e)))?
                }
                event = novacron_qemu::qmp::next_migration_event(&mut events) => {
                    if stopping(&event) {
                        return Ok(stopped_now(postcopy_at.is_some()));
                    }
                    continue;
                }
            };
            if !mirrors.is_empty() {
                match mirror::figures(qmp, mirrors).await {
                    Ok((copied, total, ready)) => {
                        disks = (copied, total);
                        if ready && !mirrors_ready {
                            tracing::info!(operation = %run.op.id, copied, "disk mirrors ready");
                            mirrors_ready = true;
                        }
                    }
                    Err(e) => return Err(self.cancel_qemu(run, e).await),
                }
            }
            let dwcp = sending.figures();
            let ram = info.ram.clone().unwrap_or_default();
            let sample = Sample {
                elapsed: run.started.elapsed(),
                pass: ram.dirty_sync_count,
                transferred: ram.transferred,
                remaining: ram.remaining,
                memory_total: ram.total,
                dirty_pages_rate: ram.dirty_pages_rate,
                page_size: ram.page_size,
                throttle_percent: info.cpu_throttle_percentage.unwrap_or(0),
                // What QEMU wrote into the socket is what DWCP reads.
                stream_bytes: ram.transferred,
                // Frames the receiver holds out of order crossed the link: the stopped guest
                // does not wait for them.
                acked_bytes: dwcp.acked.saturating_add(dwcp.held),
                wire_rate: dwcp.rate,
                wire_bytes: dwcp.wire,
                wire_acked: dwcp.wire_acked,
                link_rate: dwcp.wire_rate,
                ref_bytes: dwcp.refs,
            };
            let phase = match info.status {
                MigrationStatus::Device
                | MigrationStatus::PreSwitchover
                | MigrationStatus::Completed
                | MigrationStatus::PostcopyActive => MigrationPhase::SwitchOver,
                _ if !mirrors_ready => MigrationPhase::Disk,
                _ => MigrationPhase::Memory,
            };
            let mut progress = novacron_migrate::progress(&run.target, phase, &sample);
            (progress.disk_copied, progress.disk_total) = disks;
            let last = run.outgoing.progress();
            (progress.image_copied, progress.image_total) = (last.image_copied, last.image_total);
            if phase == MigrationPhase::SwitchOver {
                // Once the guest is stopped QEMU reports no dirtying and no throttle: the
                // figures of the last pass are what the operator wants to see at the end.
                progress.dirty_rate = last.dirty_rate;
                progress.throttle_percent = last.throttle_percent;
            }
            self.publish_progress(run, progress);
            match info.status {
                MigrationStatus::Device | MigrationStatus::PreSwitchover => {
                    return Ok(Stopped {
                        at: postcopy_at.unwrap_or_else(Instant::now),
                        postcopy: postcopy_at.is_some(),
                    });
                }
                MigrationStatus::Completed => {
                    let downtime = info.downtime.unwrap_or_default();
                    let at = Instant::now()
                        .checked_sub(downtime)
                        .unwrap_or_else(Instant::now);
                    return Ok(Stopped {
                        at,
                        postcopy: false,
                    });
                }
                MigrationStatus::PostcopyActive => {
                    return Ok(Stopped {
                        at: postcopy_at.unwrap_or_else(Instant::now),
                        postcopy: true,
                    });
                }
                MigrationStatus::Failed | MigrationStatus::Cancelled => {
                    // QEMU's socket breaks when the DWCP session fails, and QEMU may say so
                    // before the session's own outcome is out: that outcome is the cause.
                    if let Ok(e) = tokio::time::timeout(CAUSE_WAIT, sending.failed()).await {
                        return Err(format!("the DWCP session failed: {e}").into());
                    }
                    return Err(format!(
                        "QEMU's migration {}: {}",
                        info.status,
                        info.error_desc
                            .unwrap_or_else(|| "no reason given".to_owned())
                    )
                    .into());
                }
                _ => {}
            }
            if !mirrors_ready {
                // QEMU stays held (`HOLD_BANDWIDTH`, set before it started) and the policy
                // waits: its first samples come once the disks can follow the switch-over.
                if sample.elapsed > run.policy.budget {
                    let reason = format!(
                        "the disks were not copied within {} s ({} of {} bytes)",
                        run.policy.budget.as_secs(),
                        disks.0,
                        disks.1
                    );
                    return Err(self.cancel_qemu(run, reason).await);
                }
                continue;
            }
            let verdict = convergence.observe(&sample);
            tracing::debug!(
                operation = %run.op.id,
                elapsed_ms = sample.elapsed.as_millis(),
                pass = sample.pass,
                stream = sample.stream_bytes,
                acked = sample.acked_bytes,
                remaining = sample.remaining,
                wire = sample.wire_bytes,
                wire_rate = sample.wire_rate,
                wire_acked = sample.wire_acked,
                link_rate = sample.link_rate,
                dirty_pages = sample.dirty_pages_rate,
                throttle = sample.throttle_percent,
                ?verdict,
                "migration sample"
            );
            match verdict {
                Verdict::Cancel(reason) => return Err(self.cancel_qemu(run, reason).await),
                Verdict::StartPostcopy(reason) => {
                    tracing::info!(operation = %run.op.id, reason, "switching to post-copy");
                    if let Err(e) = qmp.migrate_start_postcopy().await {
                        let reason = format!("QEMU refused post-copy: {}", chain(&e));
                        return Err(self.cancel_qemu(run, reason).await);
                    }
                    postcopy_at = Some(Instant::now());
                }
                Verdict::Continue {
                    downtime_limit_ms,
                    switchover_bandwidth,
                    window,
                    wire_window,
                } => {
                    if let Some(bytes) = window {
                        narrowing.narrow(bytes, wire_window);
                    }
                    if (downtime_limit_ms, switchover_bandwidth) != set {
                        let params = MigrationParameters {
                            downtime_limit_ms: Some(downtime_limit_ms),
                            avail_switchover_bandwidth: switchover_bandwidth,
                            ..MigrationParameters::default()
                        };
                        if let Err(e) = qmp.migrate_set_parameters(&params).await {
                            tracing::debug!(error = %chain(&e), "QEMU refused a migration parameter change");
                        }
                        set = (downtime_limit_ms, switchover_bandwidth);
                    }
                }
            }
        }
    }
}

/// Whether `event` says the guest stopped: for the end of a pre-copy migration, or for the
/// switch to post-copy once asked (QEMU stops the guest when its migration thread takes the
/// request up, which may be long after it, and then sends the devices).
fn stopping(event: &MigrationEvent) -> bool {
    matches!(
        event,
        MigrationEvent::Status(MigrationStatus::Device | MigrationStatus::PreSwitchover)
    )
}

/// The guest stopped just now (for post-copy if `postcopy`), QEMU still sending its last
/// pages and devices: the commit goes out at once, and the mirrors are ended beside it.
fn stopped_now(postcopy: bool) -> Stopped {
    Stopped {
        at: Instant::now(),
        postcopy,
    }
}
