//! The forwarding loop of one direction: read packets from one TUN device, hold them as the
//! [`LinkModel`] says, and write them to the other device on time.
//!
//! Main exports: [`Direction`] (what to forward, and how) and [`run`] (the loop, one thread per
//! direction). Timing: the loop sleeps in `ppoll(2)` on the input device until the next packet is
//! due or a new one arrives, with the thread's timer slack lowered to 1 µs so the sleep ends close
//! to the deadline, and releases every packet due within [`EARLY_NS`] of the wake-up. Release times
//! come from the model, not from when the loop woke, so late wake-ups never accumulate into a
//! lower rate or a longer delay.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::link::{LinkModel, LinkParams, LinkStats, Nanos, Verdict};
use crate::tun::Tun;

/// Packets due within this many nanoseconds after a wake-up are released at once: sleeping again
/// for a few microseconds would cost more accuracy than releasing them slightly early.
pub const EARLY_NS: u64 = 5_000;

/// Interval of the debug report of losses and drops, in nanoseconds.
const REPORT_NS: u64 = 1_000_000_000;
/// Longest sleep without a due packet, which bounds how late the loop sees a stop request.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// Largest sleep overrun the loop compensates for by waking early, in nanoseconds.
const MAX_OVERSLEEP_NS: u64 = 200_000;

/// Most packets read in one go before due packets are released again.
const READ_BATCH: usize = 64;

/// Most packets held in the delay line. The byte queue limit bounds it when the rate is limited;
/// this bounds memory when it is not.
pub const MAX_HELD_PACKETS: usize = 200_000;

/// Most spare packet buffers kept for reuse.
const MAX_SPARE_BUFFERS: usize = 4096;

/// Nice value of the forwarding threads. The emulated link stands for network hardware, which
/// does not wait for the endpoints' CPU: with a higher weight than the endpoints (and anything
/// else on the machine) the threads are woken and run on time even when the CPUs are busy.
const FORWARDER_NICE: libc::c_int = -10;

/// Timer slack of the forwarding threads, in nanoseconds (the Linux default is 50 µs).
const TIMER_SLACK_NS: libc::c_ulong = 1_000;

/// One direction of the link.
#[derive(Debug)]
pub struct Direction {
    /// Name used in logs, e.g. `a->b`.
    pub label: String,
    /// Device the packets are read from.
    pub input: Arc<Tun>,
    /// Device the packets are written to.
    pub output: Arc<Tun>,
    /// Impairments of this direction.
    pub params: LinkParams,
    /// Seed of this direction's loss and jitter draws.
    pub seed: u64,
    /// Largest packet expected, in bytes (the device MTU).
    pub mtu: usize,
    /// Set to ask the loop to return.
    pub stop: Arc<AtomicBool>,
}

/// Counts of one direction after it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Decisions of the link model.
    pub link: LinkStats,
    /// Packets dropped because [`MAX_HELD_PACKETS`] were already held.
    pub overflow_drops: u64,
    /// Packets the output device refused.
    pub write_errors: u64,
    /// Packets written.
    pub written: u64,
    /// Sum over written packets of how late each was written, in nanoseconds.
    pub total_lateness_ns: u64,
    /// Latest a packet was written after its release time, in nanoseconds.
    pub max_lateness_ns: u64,
}

impl ForwardStats {
    /// Mean lateness of written packets, in microseconds.
    pub fn mean_lateness_us(&self) -> u64 {
        self.total_lateness_ns
            .checked_div(self.written)
            .unwrap_or(0)
            / 1000
    }
}

/// A packet in the delay line: `buf[..len]` leaves at `release`.
struct Held {
    release: Nanos,
    len: usize,
    buf: Box<[u8]>,
}

/// Monotonic clock in [`Nanos`] from the start of the loop.
struct Clock(Instant);

impl Clock {
    fn now(&self) -> Nanos {
        Nanos(u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

/// State of the running loop.
struct Forwarder<'a> {
    dir: &'a Direction,
    clock: Clock,
    model: LinkModel<SmallRng>,
    held: VecDeque<Held>,
    spare: Vec<Box<[u8]>>,
    buf_len: usize,
    /// Running estimate of how long a timed sleep overruns its timeout, in nanoseconds.
    oversleep_ns: u64,
    /// Arrival time given to the last packet passed to the model.
    last_arrival: Nanos,
    stats: ForwardStats,
    /// The model's counts at the last [`Forwarder::report`], and when that was.
    reported: (LinkStats, Nanos),
}

/// Forward packets of one direction until `dir.stop` is set.
///
/// # Errors
///
/// Reading from the input device or waiting on it fails. Write errors on the output device only
/// drop the packet (the device may be going down during shutdown).
pub fn run(dir: &Direction) -> Result<ForwardStats> {
    lower_timer_slack();
    raise_priority();
    let mut fwd = Forwarder {
        dir,
        clock: Clock(Instant::now()),
        model: LinkModel::new(&dir.params, SmallRng::seed_from_u64(dir.seed)),
        held: VecDeque::with_capacity(1024),
        spare: Vec::new(),
        // A little headroom so an oversized packet is read whole and written as it came.
        buf_len: dir.mtu.saturating_add(64),
        oversleep_ns: 0,
        last_arrival: Nanos::default(),
        stats: ForwardStats::default(),
        reported: (LinkStats::default(), Nanos::default()),
    };
    while !dir.stop.load(Ordering::Relaxed) {
        fwd.release_due();
        fwd.report();
        let Some(next) = fwd.held.front().map(|p| p.release) else {
            let asleep = fwd.clock.now();
            if dir
                .input
                .wait_readable(IDLE_WAIT)
                .with_context(|| fwd.wait_failed())?
            {
                fwd.read_batch(Some(asleep))?;
            }
            continue;
        };
        let remaining = next.ns_since(fwd.clock.now());
        if remaining <= fwd.oversleep_ns.saturating_add(EARLY_NS) {
            // A sleep would end after the deadline: poll the input without blocking until the
            // packet is due.
            fwd.read_batch(None)?;
            std::hint::spin_loop();
            continue;
        }
        let timeout_ns = remaining
            .saturating_sub(fwd.oversleep_ns)
            .min(duration_ns(IDLE_WAIT));
        let asleep = fwd.clock.now();
        let readable = dir
            .input
            .wait_readable(Duration::from_nanos(timeout_ns))
            .with_context(|| fwd.wait_failed())?;
        if readable {
            fwd.read_batch(Some(asleep))?;
        } else {
            fwd.learn_oversleep(fwd.clock.now().ns_since(asleep).saturating_sub(timeout_ns));
        }
    }
    fwd.stats.link = fwd.model.stats();
    Ok(fwd.stats)
}

impl Forwarder<'_> {
    /// Logs (at debug level) the packets lost and dropped in the last [`REPORT_NS`], once that
    /// long has passed and if there were any: when in a run the queue overflowed.
    fn report(&mut self) {
        let now = self.clock.now();
        let (before, at) = self.reported;
        if now.ns_since(at) < REPORT_NS {
            return;
        }
        let stats = self.model.stats();
        let dropped = stats.queue_drops.saturating_sub(before.queue_drops);
        let lost = stats.lost_packets.saturating_sub(before.lost_packets);
        if dropped > 0 || lost > 0 {
            tracing::debug!(
                direction = %self.dir.label,
                forwarded = stats.forwarded_packets.saturating_sub(before.forwarded_packets),
                lost,
                queue_drops = dropped,
                "losses in the last second"
            );
        }
        self.reported = (stats, now);
    }

    /// Write every held packet due by now (plus [`EARLY_NS`]).
    fn release_due(&mut self) {
        let horizon = self.clock.now().add_ns(EARLY_NS);
        while self.held.front().is_some_and(|p| p.release <= horizon) {
            let Some(pkt) = self.held.pop_front() else {
                break;
            };
            let packet = pkt.buf.get(..pkt.len).unwrap_or(&pkt.buf);
            match self.dir.output.send(packet) {
                Ok(_) => {
                    self.stats.written += 1;
                    let late = self.clock.now().ns_since(pkt.release);
                    self.stats.total_lateness_ns =
                        self.stats.total_lateness_ns.saturating_add(late);
                    self.stats.max_lateness_ns = self.stats.max_lateness_ns.max(late);
                }
                Err(err) => {
                    self.stats.write_errors += 1;
                    tracing::debug!(direction = %self.dir.label, error = %err, "packet write failed");
                }
            }
            self.recycle(pkt.buf);
        }
    }

    /// Read up to [`READ_BATCH`] waiting packets and pass each through the link model.
    ///
    /// `woke_from` is when the thread went to sleep if a blocking wait just ended because a
    /// packet arrived. That packet arrived a wake-up latency before the thread could read it, so
    /// its arrival is taken as one learned wake-up latency ago (not before the thread went to
    /// sleep); without this correction every hop would add the scheduler's wake-up time to the
    /// configured delay. Later packets of the batch use the time they are read.
    fn read_batch(&mut self, woke_from: Option<Nanos>) -> Result<()> {
        let mut woke_from = woke_from;
        for _ in 0..READ_BATCH {
            let mut buf = self
                .spare
                .pop()
                .unwrap_or_else(|| vec![0; self.buf_len].into_boxed_slice());
            let len = match self.dir.input.recv(&mut buf) {
                Ok(0) => {
                    self.recycle(buf);
                    return Ok(());
                }
                Ok(len) => len,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.recycle(buf);
                    return Ok(());
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                    self.recycle(buf);
                    continue;
                }
                Err(err) => {
                    return Err(err).with_context(|| {
                        format!(
                            "{}: could not read from {}",
                            self.dir.label,
                            self.dir.input.name()
                        )
                    });
                }
            };
            if self.held.len() >= MAX_HELD_PACKETS {
                self.stats.overflow_drops += 1;
                self.recycle(buf);
                continue;
            }
            let now = self.clock.now();
            let arrival = match woke_from.take() {
                Some(asleep) => Nanos(now.0.saturating_sub(self.oversleep_ns)).max(asleep),
                None => now,
            }
            // The model needs arrivals in order.
            .max(self.last_arrival);
            self.last_arrival = arrival;
            match self.model.admit(arrival, len) {
                Verdict::Forward { release } => self.held.push_back(Held { release, len, buf }),
                Verdict::Lost | Verdict::QueueFull => self.recycle(buf),
            }
        }
        Ok(())
    }

    /// Fold one measured sleep overrun into the estimate (exponential average, weight 1/8),
    /// ignoring overruns above [`MAX_OVERSLEEP_NS`], which come from the thread being preempted
    /// rather than from timer latency.
    fn learn_oversleep(&mut self, sample_ns: u64) {
        let sample = sample_ns.min(MAX_OVERSLEEP_NS);
        self.oversleep_ns = (self.oversleep_ns * 7 + sample) / 8;
    }

    fn wait_failed(&self) -> String {
        format!(
            "{}: could not wait on {}",
            self.dir.label,
            self.dir.input.name()
        )
    }

    fn recycle(&mut self, buf: Box<[u8]>) {
        if self.spare.len() < MAX_SPARE_BUFFERS {
            self.spare.push(buf);
        }
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Give this thread [`FORWARDER_NICE`]; if that is not allowed, run at the inherited priority.
fn raise_priority() {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    let Ok(tid) = libc::id_t::try_from(tid) else {
        return;
    };
    // SAFETY: PRIO_PROCESS with a thread id changes only that thread's nice value on Linux.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, FORWARDER_NICE) };
    if rc != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "could not raise the forwarding thread's priority; timing may suffer on a busy machine");
    }
}

/// Lower this thread's timer slack so timed sleeps end within microseconds of their deadline.
fn lower_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long and only changes this thread's slack.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, TIMER_SLACK_NS, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "could not lower timer slack; delays may run long");
    }
}
