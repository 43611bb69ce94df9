//! Applying the session's pacing: the pacer's cap goes to the token bucket the connections
//! draw from, and each connection's kernel pacing is capped at its share of it.
//!
//! The share is of the connections writing when a frame starts, at most those the window can
//! keep busy, not of all of them: a window narrowed to a few frames (a migration near its
//! switch-over), or the last frames of a stream, have only that many connections writing at
//! once, and a frame held to a sixteenth of the link's rate on its connection takes most of a
//! second to cross a long link, while the others stand idle (see [`crate::amst::conn_pacing`]).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Supervisor;
use crate::amst::pacer::PacerSample;
use crate::amst::sender_conn::measured_rtt;

/// How many of `target` connections a window of `window` bytes keeps busy at once, with
/// frames of at most `chunk` bytes: at least one frame per connection that writes.
#[must_use]
pub(super) fn busy(target: usize, window: Option<u64>, chunk: u32) -> usize {
    let frames = match window {
        Some(w) if chunk > 0 => usize::try_from(w.div_ceil(u64::from(chunk))).unwrap_or(usize::MAX),
        _ => usize::MAX,
    };
    target.min(frames).max(1)
}

impl Supervisor {
    /// Feeds the pacer this tick's measurements, applies its cap when it changed, and shares it
    /// among the connections the window keeps busy now (the window's owner may have narrowed
    /// it since the last tick; a connection applies its share only when it changed).
    pub(super) fn pace(&mut self, target: usize) {
        let Some(pacer) = self.pacer.as_mut() else {
            return;
        };
        let now = Instant::now();
        // The lowest smoothed RTT of the connections that delivered since the last tick.
        let queue_rtt = self.shared.queue_rtt_us.swap(u64::MAX, Ordering::Relaxed);
        let cap = pacer.on_sample(PacerSample {
            at: now,
            delivered: self.shared.tcp_delivered.load(Ordering::Relaxed),
            srtt: measured_rtt(queue_rtt),
            min_rtt: measured_rtt(self.shared.min_rtt_us.load(Ordering::Relaxed)),
            backlogged: self.backlogged,
        });
        if cap != self.paced {
            tracing::trace!(
                cap,
                bandwidth = pacer.bandwidth(),
                queue_rtt_us = queue_rtt,
                min_rtt_us = self.shared.min_rtt_us.load(Ordering::Relaxed),
                "session pacing"
            );
            self.paced = cap;
            self.shared
                .bucket
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .set_rate(now, cap);
        }
        self.set_pacing(target);
    }

    /// Connections of `target` the window in force keeps busy (see [`busy`]).
    pub(super) fn busy(&self, target: usize) -> usize {
        let window = self.opts.window_limit.as_ref().map(|w| *w.borrow());
        busy(target, window, self.opts.chunk_size)
    }

    /// Sets the connections' kernel pacing caps: each of `target` takes its share of the
    /// rate limit, or [`crate::amst::pacer::SHARE_BURST`] times its share of the pacer's rate
    /// among the connections writing when it starts a frame, at most the ones the window keeps
    /// busy, if lower (see [`crate::amst::conn_pacing`]). The pacer's rate itself is kept by
    /// the session's token bucket; the rate limit only by these caps.
    pub(super) fn set_pacing(&self, target: usize) {
        let limit = self.opts.rate_limit.map(|r| r as f64);
        self.shared
            .pacing
            .set(limit, self.paced, target, self.busy(target));
    }
}

#[cfg(test)]
mod tests {
    use super::busy;

    #[test]
    fn a_narrowed_window_shares_the_rate_among_the_connections_it_keeps_busy() {
        const MIB: u64 = 1 << 20;
        // The full window keeps all sixteen busy.
        assert_eq!(busy(16, None, 1 << 20), 16);
        assert_eq!(busy(16, Some(32 * MIB), 1 << 20), 16);
        // Narrowed to 3.5 frames: four connections write at once.
        assert_eq!(busy(16, Some(3 * MIB + MIB / 2), 1 << 20), 4);
        // Below one frame: one.
        assert_eq!(busy(16, Some(1000), 1 << 20), 1);
        assert_eq!(busy(0, Some(1000), 1 << 20), 1);
        // Frames sized by the link's mode (chunk 0): no bound from the window.
        assert_eq!(busy(16, Some(MIB), 0), 16);
    }
}
