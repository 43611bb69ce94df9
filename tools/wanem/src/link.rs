//! Pure model of one direction of an emulated link: when each packet leaves, or why it is dropped.
//!
//! Main exports: [`LinkModel`], configured by [`LinkParams`], answering [`LinkModel::admit`] with a
//! [`Verdict`]. The model does no I/O and reads no clock: the caller passes the arrival time as
//! [`Nanos`] on a monotonic clock of its choice, which keeps the model testable.
//!
//! A packet of `len` bytes arriving at `now` goes through these steps, in order:
//!
//! ```text
//!  arrival ──► queue ──► serializer ──► wire (loss) ──► propagation + jitter ──► release
//!              tail drop   len*8/rate      Bernoulli      delay ± jitter, never reordered
//! ```
//!
//! 1. Queue: the bytes still waiting for the serializer at `now` are
//!    `(link_free - now) × rate / 8`. If that backlog is not empty and adding the packet would
//!    exceed the queue limit, the packet is tail-dropped ([`Verdict::QueueFull`]).
//! 2. Serializer: the packet occupies the link from `max(now, link_free)` for `len × 8 / rate`
//!    seconds; `link_free` moves to the end of that time.
//! 3. Wire: with probability `loss_probability` the packet is lost ([`Verdict::Lost`]). A lost
//!    packet has used its share of the link, as on a real wire.
//! 4. Propagation: the packet is due at `serialized + delay + u`, `u` uniform in
//!    `[-jitter, +jitter]` (never before `serialized`), and never before the previous packet's
//!    release, so jitter never reorders packets.

use std::num::NonZeroU64;
use std::time::Duration;

use rand::Rng;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A point on a monotonic clock, in nanoseconds from an origin the caller picks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

impl Nanos {
    /// This instant moved `ns` nanoseconds later, saturating at the end of time.
    #[must_use]
    pub fn add_ns(self, ns: u64) -> Self {
        Self(self.0.saturating_add(ns))
    }

    /// Nanoseconds from `earlier` to `self`, or 0 if `earlier` is later.
    pub fn ns_since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Configuration of one direction of a link.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkParams {
    /// One-way propagation delay added to every packet.
    pub delay: Duration,
    /// Half-width of the uniform jitter added to the delay of each packet (`±jitter`).
    pub jitter: Duration,
    /// Serialization rate in bit/s; `None` means unlimited (no serialization, no queue).
    pub rate_bps: Option<NonZeroU64>,
    /// Probability that a packet is lost on the wire, in `[0, 1]`.
    pub loss_probability: f64,
    /// Tail-drop limit of the queue in front of the serializer, in bytes.
    pub queue_limit_bytes: u64,
}

/// What happens to one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver the packet at `release`.
    Forward {
        /// When the packet leaves the link.
        release: Nanos,
    },
    /// Lost on the wire (random loss).
    Lost,
    /// Tail-dropped because the queue was full.
    QueueFull,
}

/// Packet and byte counts of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets that were scheduled for delivery.
    pub forwarded_packets: u64,
    /// Bytes of the forwarded packets.
    pub forwarded_bytes: u64,
    /// Packets lost on the wire.
    pub lost_packets: u64,
    /// Packets tail-dropped by the queue.
    pub queue_drops: u64,
}

/// One direction of an emulated link.
#[derive(Debug)]
pub struct LinkModel<R> {
    rng: R,
    delay_ns: u64,
    jitter_ns: u64,
    rate_bps: Option<NonZeroU64>,
    loss_probability: f64,
    queue_limit_bytes: u64,
    /// When the serializer finishes the last admitted packet.
    link_free: Nanos,
    /// Release time of the last forwarded packet.
    last_release: Nanos,
    stats: LinkStats,
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<R: Rng> LinkModel<R> {
    /// A link with an empty queue, drawing loss and jitter from `rng`.
    pub fn new(params: &LinkParams, rng: R) -> Self {
        Self {
            rng,
            delay_ns: duration_ns(params.delay),
            jitter_ns: duration_ns(params.jitter),
            rate_bps: params.rate_bps,
            loss_probability: params.loss_probability,
            queue_limit_bytes: params.queue_limit_bytes,
            link_free: Nanos::default(),
            last_release: Nanos::default(),
            stats: LinkStats::default(),
        }
    }

    /// Nanoseconds the serializer needs for `len` bytes (rounded up; 0 when the rate is unlimited).
    pub fn serialization_ns(&self, len: usize) -> u64 {
        let Some(rate) = self.rate_bps else {
            return 0;
        };
        let bits = u128::try_from(len).unwrap_or(u128::MAX).saturating_mul(8);
        let ns = bits
            .saturating_mul(NANOS_PER_SEC)
            .div_ceil(u128::from(rate.get()));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Bytes waiting for (or in) the serializer at `now`.
    pub fn backlog_bytes(&self, now: Nanos) -> u64 {
        let Some(rate) = self.rate_bps else {
            return 0;
        };
        let busy_ns = u128::from(self.link_free.ns_since(now));
        let bytes = busy_ns * u128::from(rate.get()) / NANOS_PER_SEC / 8;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }

    /// Decide the fate of a packet of `len` bytes arriving at `now`.
    ///
    /// Calls must come with non-decreasing `now`.
    pub fn admit(&mut self, now: Nanos, len: usize) -> Verdict {
        let len_bytes = u64::try_from(len).unwrap_or(u64::MAX);
        let backlog = self.backlog_bytes(now);
        if backlog > 0 && backlog.saturating_add(len_bytes) > self.queue_limit_bytes {
            self.stats.queue_drops += 1;
            return Verdict::QueueFull;
        }
        let start = now.max(self.link_free);
        let serialized = start.add_ns(self.serialization_ns(len));
        self.link_free = serialized;

        if self.loss_probability > 0.0 && self.rng.random::<f64>() < self.loss_probability {
            self.stats.lost_packets += 1;
            return Verdict::Lost;
        }

        let mut due = serialized.add_ns(self.delay_ns);
        if self.jitter_ns > 0 {
            let offset = self.rng.random_range(0..=self.jitter_ns.saturating_mul(2));
            due =
                Nanos(due.0.saturating_add(offset).saturating_sub(self.jitter_ns)).max(serialized);
        }
        let release = due.max(self.last_release);
        self.last_release = release;
        self.stats.forwarded_packets += 1;
        self.stats.forwarded_bytes = self.stats.forwarded_bytes.saturating_add(len_bytes);
        Verdict::Forward { release }
    }

    /// Counts so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }
}

#[cfg(test)]
#[path = "link_test.rs"]
mod tests;
