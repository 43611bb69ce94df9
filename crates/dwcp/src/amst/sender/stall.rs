//! A stream that stands still: the connection holding the frame every later byte waits for
//! (in a TCP retransmission timeout, which can last seconds) has its unacknowledged frames
//! sent again on the others.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Supervisor;

/// Where the stream stood still, for [`Supervisor::unblock`].
pub(super) struct Blocked {
    /// The acknowledged offset being watched.
    pub(super) acked: u64,
    /// When it last moved.
    pub(super) since: Instant,
    /// When frames were last sent again for this offset.
    pub(super) resent_at: Option<Instant>,
}

impl Supervisor {
    /// When the acknowledged offset has not moved for [`Self::stall_limit`] while frames are
    /// in flight, one connection is holding the stream back (a TCP retransmission timeout
    /// can last seconds, and every other connection's data waits behind it in the receiver's
    /// window). Its unacknowledged frames are sent again on the others; the receiver keeps
    /// whichever copy arrives first.
    pub(super) fn unblock(&mut self, acked: u64, rate: f64, blocked: &mut Blocked) {
        let now = Instant::now();
        if acked != blocked.acked {
            *blocked = Blocked {
                acked,
                since: now,
                resent_at: None,
            };
            return;
        }
        let limit = self.stall_limit(rate);
        let due = match blocked.resent_at {
            None => now.duration_since(blocked.since) >= limit,
            Some(at) => now.duration_since(at) >= limit * 2,
        };
        if !due {
            return;
        }
        let Some(conn) = self.shared.inflight.oldest_conn() else {
            return;
        };
        let (frames, bytes) = self.shared.requeue_conn(conn);
        tracing::debug!(
            conn,
            frames,
            bytes,
            acked,
            "resending frames of a stalled connection"
        );
        self.retransmitted += bytes;
        blocked.resent_at = Some(now);
    }

    /// How long the stream may stand still before its blocking frames are sent again. A frame
    /// normally takes `chunk × connections / rate` to cross its connection (each carries its
    /// share of the peak rate), so that is waited for three times over, and at least four round
    /// trips and 250 ms: sending again too eagerly spends the link on copies.
    fn stall_limit(&self, rate: f64) -> Duration {
        let rtt = Duration::from_micros(self.shared.srtt_us.load(Ordering::Relaxed));
        let per_frame = if rate > 1.0 {
            Duration::from_secs_f64(
                (f64::from(self.opts.chunk_size) * self.live.max(1) as f64 / rate).min(60.0),
            )
        } else {
            Duration::from_secs(1)
        };
        (per_frame * 3).max(rtt * 4).max(Duration::from_millis(250))
    }
}
