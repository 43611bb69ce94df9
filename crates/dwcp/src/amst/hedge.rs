//! A connection waiting on a retransmission timer. When the last segments of a connection's
//! flight are lost, no later segment reveals the loss, and TCP finds out only when its probe
//! timer fires (two round trips) or its retransmission timeout (longer). On a lossy link that
//! happens to some connection at the end of most streams, and everything after its frames waits
//! for it in the receiver's window. So when a connection has had segments out and no
//! acknowledgement for longer than a round trip should take, its unacknowledged frames go
//! again on the other connections (the receiver keeps whichever copy arrives first) and it
//! takes no new frames until it hears from the receiver again. Only in the stream's tail (the
//! source read to its end and every frame written: copies then use idle capacity, where
//! earlier a late frame only waits in the receiver's window while the others go on), and only
//! while most connections
//! still hear back: when most are silent the path itself stalls (a congested or paused link),
//! and copies on the others would wait as long.
//!
//! At the very end (the `End` frame written), a short tail is sent again on other connections
//! at once, before any loss shows: a migration's guest waits, stopped, for the last bytes, and
//! a loss among them would cost a round trip or more. Only while what is unacknowledged
//! crosses the link in half a round trip, or in [`TAIL_COPY_TIME`] on a shorter path (see
//! [`tail_budget`]): the copies queue behind the originals, and then they have all crossed
//! before TCP could send a lost segment again, which is at least a round trip after it first
//! went; copies of more would queue ahead of that retransmission.
//!
//! Before the end, an interactive stream's frame that goes out nearly alone (at most
//! [`LONE_COPY`] bytes outstanding, itself included) is sent again on another connection at
//! once too: a request and its answer crossing an idle stream, such as a disk mirror's last
//! writes and their replies while a migration's guest waits stopped, have nothing behind them to
//! reveal a loss either (over `edge` a disk mirror's end once took 379 ms, against 85 to 100
//! otherwise, its guest stopped all along). A bulk stream always has more outstanding and is
//! never copied.

use std::time::{Duration, Instant};

use crate::transport::TcpStats;

/// How long the link may spend on copies of the tail at least (half a round trip on a longer
/// path).
pub(crate) const TAIL_COPY_TIME: Duration = Duration::from_millis(40);
/// Payload of a tail always copied, however slow the link seems.
pub(crate) const TAIL_COPY_FLOOR: u64 = 64 << 10;
/// Most payload outstanding when a frame is copied as it goes out (see the module's
/// documentation).
pub(crate) const LONE_COPY: u64 = 64 << 10;

/// Payload bytes of a tail worth copying: what the link carries at `peak_rate` (payload bytes
/// per second, the fastest the receiver acknowledged) in half of `min_rtt` (the path's round
/// trip, when measured) or in [`TAIL_COPY_TIME`], whichever is longer; at least
/// [`TAIL_COPY_FLOOR`].
#[must_use]
pub(crate) fn tail_budget(peak_rate: f64, min_rtt: Option<Duration>) -> u64 {
    let time = min_rtt.map_or(TAIL_COPY_TIME, |rtt| (rtt / 2).max(TAIL_COPY_TIME));
    crate::pba::auto::bytes_of(peak_rate * time.as_secs_f64()).max(TAIL_COPY_FLOOR)
}

/// Least time without an acknowledgement that counts as waiting on a timer: a round trip on
/// loopback varies by more than a few milliseconds under load.
const MIN_PATIENCE: Duration = Duration::from_millis(50);
/// Added to a round trip and a quarter for the receiver's acknowledgement delay and jitter.
const SLACK: Duration = Duration::from_millis(20);

/// How long a connection with segments out may go without an acknowledgement: a round trip
/// and a quarter plus [`SLACK`], at least [`MIN_PATIENCE`].
#[must_use]
pub(crate) fn patience(srtt: Option<Duration>) -> Duration {
    srtt.map_or(Duration::from_secs(1), |rtt| rtt + rtt / 4 + SLACK)
        .max(MIN_PATIENCE)
}

/// Whether a connection is waiting on a retransmission timer: it has segments out, heard
/// nothing for [`patience`], and its oldest unacknowledged frame was handed to it longer ago
/// than that (a connection idle for a while and just given a frame has no recent
/// acknowledgement either, and is not stuck).
#[must_use]
pub(crate) fn stuck(stats: &TcpStats, oldest_frame: Option<Instant>, now: Instant) -> bool {
    let wait = patience(stats.rtt);
    stats.unacked > 0
        && stats.since_ack >= wait
        && oldest_frame.is_some_and(|at| now.saturating_duration_since(at) >= wait)
}

/// Whether a held connection may take frames again: the receiver acknowledged something since,
/// or nothing is outstanding.
#[must_use]
pub(crate) fn recovered(stats: &TcpStats) -> bool {
    stats.unacked == 0 || stats.since_ack < patience(stats.rtt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(unacked: u32, since_ack_ms: u64) -> TcpStats {
        TcpStats {
            rtt: Some(Duration::from_millis(150)),
            min_rtt: Some(Duration::from_millis(150)),
            bytes_acked: 1 << 20,
            delivered: 1000,
            mss: 1448,
            total_retrans: 0,
            unacked,
            since_ack: Duration::from_millis(since_ack_ms),
        }
    }

    #[test]
    fn the_tail_budget_is_half_a_round_trip_of_the_link_with_floors() {
        let ms = Duration::from_millis;
        // 100 Mbit/s of payload: 12.5 MB/s, 937.5 kB in half of 150 ms.
        assert_eq!(tail_budget(12_500_000.0, Some(ms(150))), 937_500);
        // A short path, or none measured yet: 40 ms, 500 kB.
        assert_eq!(tail_budget(12_500_000.0, Some(ms(10))), 500_000);
        assert_eq!(tail_budget(12_500_000.0, None), 500_000);
        assert_eq!(tail_budget(0.0, Some(ms(150))), TAIL_COPY_FLOOR);
        assert_eq!(tail_budget(f64::NAN, None), TAIL_COPY_FLOOR);
    }

    #[test]
    fn patience_is_a_round_trip_and_a_quarter_with_a_floor() {
        assert_eq!(
            patience(Some(Duration::from_millis(150))),
            Duration::from_millis(207) + Duration::from_micros(500)
        );
        assert_eq!(patience(Some(Duration::from_micros(50))), MIN_PATIENCE);
        assert_eq!(patience(None), Duration::from_secs(1));
    }

    #[test]
    fn only_a_connection_silent_past_a_round_trip_with_old_frames_is_stuck() {
        let now = Instant::now();
        let old = now.checked_sub(Duration::from_millis(400));
        let fresh = now.checked_sub(Duration::from_millis(100));
        assert!(stuck(&stats(3, 300), old, now));
        // Acknowledgements still arrive: TCP is recovering by itself.
        assert!(!stuck(&stats(3, 100), old, now));
        // Nothing outstanding at the TCP level.
        assert!(!stuck(&stats(0, 300), old, now));
        // Idle until just now: the first acknowledgement is not yet due.
        assert!(!stuck(&stats(3, 300), fresh, now));
        // No frame of the session on it.
        assert!(!stuck(&stats(3, 300), None, now));
        assert!(recovered(&stats(3, 5)));
        assert!(recovered(&stats(0, 300)));
        assert!(!recovered(&stats(3, 300)));
    }
}
