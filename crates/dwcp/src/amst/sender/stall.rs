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
    /// When it last moved, or when frames began to wait on it (see [`Self::stands_still`]).
    pub(super) since: Instant,
    /// When frames were last sent again for this offset.
    pub(super) resent_at: Option<Instant>,
}

impl Blocked {
    /// Brings the record up to date at `now` with the acknowledged offset `acked` and whether
    /// anything is `outstanding` (data frames waiting, or the `End`); returns whether the
    /// stream stands still: something outstanding, and `acked` where it was at the last call.
    /// A stream with nothing outstanding is not held back by anything, however long its
    /// offset stays: an interactive stream idle for seconds, whose next frame was just written,
    /// has waited for its answer only since.
    pub(super) fn stands_still(&mut self, acked: u64, outstanding: bool, now: Instant) -> bool {
        if acked != self.acked || !outstanding {
            *self = Self {
                acked,
                since: now,
                resent_at: None,
            };
            return false;
        }
        true
    }
}

/// How long the acknowledged offset may stand still, the whole stream written, before the
/// sender reports what it still waits for (once per offset): a migration's guest waits,
/// stopped, for the stream's end.
const END_WAIT_TOLD: Duration = Duration::from_secs(5);

impl Supervisor {
    /// Reports, once the whole stream is written and it has stood still for [`END_WAIT_TOLD`]
    /// (`blocked`: frames outstanding all along, the acknowledged offset where it was), what
    /// the sender waits for: whether frames are still out, held by the receiver, or none at
    /// all. `told`: the offset last reported at.
    pub(super) fn tell_end_wait(&self, blocked: &Blocked, told: &mut Option<u64>) {
        let still = blocked.since.elapsed();
        if *told == Some(blocked.acked) || !self.shared.in_tail() || still < END_WAIT_TOLD {
            return;
        }
        *told = Some(blocked.acked);
        let o = self.shared.inflight.outstanding();
        tracing::warn!(
            acked = blocked.acked,
            written = self.shared.written_end.load(Ordering::Relaxed),
            still_ms = u64::try_from(still.as_millis()).unwrap_or(u64::MAX),
            waiting = o.waiting,
            held = o.held,
            oldest_offset = o.oldest.map(|(offset, _)| offset),
            oldest_conn = o.oldest.map(|(_, conn)| conn),
            end_in_flight = o.end,
            live = self.shared.live.load(Ordering::Relaxed),
            "the stream's end waits for the receiver"
        );
    }

    /// When the acknowledged offset has not moved for [`Self::stall_limit`] while frames are
    /// in flight, one connection is holding the stream back (a TCP retransmission timeout
    /// can last seconds, and every other connection's data waits behind it in the receiver's
    /// window). Its unacknowledged frames are sent again on the others; the receiver keeps
    /// whichever copy arrives first.
    pub(super) fn unblock(&mut self, acked: u64, rate: f64, blocked: &mut Blocked) {
        let now = Instant::now();
        let inflight = &self.shared.inflight;
        let oldest = inflight.oldest_conn();
        if !blocked.stands_still(acked, oldest.is_some() || inflight.end_written(), now) {
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
        let Some(conn) = oldest else {
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

    /// How long the stream may stand still before its blocking frames are sent again (see
    /// [`stall_limit`]).
    fn stall_limit(&self, rate: f64) -> Duration {
        let rtt = Duration::from_micros(self.shared.srtt_us.load(Ordering::Relaxed));
        let busy = self.busy(self.live);
        let end_awaited = self.shared.interactive && self.shared.inflight.end_written();
        stall_limit(self.opts.chunk_size, busy, rate, rtt, end_awaited)
    }
}

/// How long a stream may stand still before its blocking frames are sent again. A frame
/// normally takes `chunk × busy / rate` to cross its connection (each of the `busy`
/// connections carries its share of the peak `rate`), so that is waited for three times
/// over, and at least four round trips and 250 ms: sending again too eagerly spends the link
/// on copies. Twice and two round trips once the end of an interactive stream is all that is
/// awaited (`end_awaited`): the link then has room, and the other end waits for those last
/// bytes.
fn stall_limit(chunk: u32, busy: usize, rate: f64, rtt: Duration, end_awaited: bool) -> Duration {
    let per_frame = if rate > 1.0 {
        Duration::from_secs_f64((f64::from(chunk) * busy.max(1) as f64 / rate).min(60.0))
    } else {
        Duration::from_secs(1)
    };
    let (frames, trips) = if end_awaited { (2, 2) } else { (3, 4) };
    (per_frame * frames)
        .max(rtt * trips)
        .max(Duration::from_millis(250))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_stands_still_only_while_something_is_outstanding() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut b = Blocked {
            acked: 8,
            since: t0,
            resent_at: Some(t0),
        };
        // Idle for seconds with nothing outstanding: not standing still, and the wait starts
        // again at each look.
        assert!(!b.stands_still(8, false, at(5000)));
        assert_eq!((b.since, b.resent_at), (at(5000), None));
        // A frame written after the idle spell: the wait counts from the first look that saw
        // it outstanding.
        assert!(!b.stands_still(8, false, at(11_000)));
        assert!(b.stands_still(8, true, at(11_010)));
        assert!(b.stands_still(8, true, at(11_200)));
        assert_eq!(b.since, at(11_000));
        // Acknowledged: the offset moved, the wait starts again.
        assert!(!b.stands_still(16, true, at(11_300)));
        assert_eq!((b.acked, b.since), (16, at(11_300)));
    }

    #[test]
    fn a_stall_is_a_frame_time_three_times_over_and_at_least_some_round_trips() {
        let ms = Duration::from_millis;
        let rtt = ms(150);
        // 1 MiB frames on 16 busy connections at 12.5 MB/s: 1.34 s each.
        let full = stall_limit(1 << 20, 16, 12_500_000.0, rtt, false);
        assert!(full > ms(4000) && full < ms(4100), "{full:?}");
        // A window narrowed to two frames keeps two connections busy: 168 ms each, so four
        // round trips.
        assert_eq!(stall_limit(1 << 20, 2, 12_500_000.0, rtt, false), ms(600));
        // Only the end of an interactive stream awaited: a frame's time twice, or two round
        // trips.
        let end = stall_limit(1 << 20, 2, 12_500_000.0, rtt, true);
        assert!(end > ms(335) && end < ms(336), "{end:?}");
        assert_eq!(stall_limit(1 << 20, 2, 50_000_000.0, rtt, true), ms(300));
        // Never below 250 ms; a second per frame while no rate is known.
        assert_eq!(stall_limit(1 << 20, 1, 1e9, ms(1), true), ms(250));
        assert_eq!(stall_limit(1 << 20, 1, 0.0, rtt, false), ms(3000));
    }
}
