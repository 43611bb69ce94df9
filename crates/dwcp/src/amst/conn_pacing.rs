//! Each connection's kernel pacing cap (`SO_MAX_PACING_RATE`), taken when it starts writing a
//! frame: its share of the session's rate limit, or [`SHARE_BURST`] times its share of the
//! pacer's rate if lower.
//!
//! The pacer's rate is shared among the connections writing a frame at that moment, at most
//! as many as the window keeps busy, not among all that could. In bulk every connection writes
//! and each takes its even share. Near the end of a stream only a few frames are left, and a
//! frame held to a sixteenth of the link on its connection while the others stand idle takes
//! most of a second to cross a slow link: over `edge`, a stopped guest's frame of 226 KB, sent
//! again after the receiver lacked a page it referenced, crossed at an eighth of 2.4 MB/s, was
//! sent once more as stalled, again at an eighth, and the guest waited 1.2 s in all. The
//! session's token bucket keeps the total within the pacer's rate whatever the caps add up to.
//! The rate limit is enforced by these caps alone, so its share stays a fixed fraction of it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::pacer::SHARE_BURST;

/// The session's pacing as its connections take it (see the module's documentation).
#[derive(Debug, Default)]
pub(crate) struct ConnPacing {
    /// Each connection's share of the rate limit, bytes per second (0 = no limit).
    limit_share: AtomicU64,
    /// [`SHARE_BURST`] times the pacer's rate, bytes per second (0 = not paced).
    paced_burst: AtomicU64,
    /// Most connections the window keeps busy at once (at least 1).
    busy: AtomicUsize,
    /// Connections writing a frame now.
    writing: AtomicUsize,
}

/// A connection counted as writing until this is dropped (see [`ConnPacing::writing`]).
#[derive(Debug)]
pub(crate) struct Writing<'a>(&'a ConnPacing);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.writing.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnPacing {
    /// Sets the session's pacing: `limit` (bytes per second, the session's rate limit) among
    /// `target` connections, the pacer's `paced` rate among at most `busy` writing at once.
    pub(crate) fn set(&self, limit: Option<f64>, paced: Option<f64>, target: usize, busy: usize) {
        let bytes = |r: f64| crate::pba::auto::bytes_of(r).max(1);
        let share = limit.map_or(0, |r| bytes(r / target.max(1) as f64));
        let burst = paced.map_or(0, |r| bytes(r * SHARE_BURST));
        self.limit_share.store(share, Ordering::Relaxed);
        self.paced_burst.store(burst, Ordering::Relaxed);
        self.busy.store(busy.max(1), Ordering::Relaxed);
    }

    /// Counts a connection as writing a frame for as long as the guard lives, and returns the
    /// cap it writes that frame under (0 = none): its share among the connections writing
    /// now, itself included.
    pub(crate) fn writing(&self) -> (Writing<'_>, u64) {
        let writers = self
            .writing
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        (Writing(self), self.cap(writers))
    }

    /// The cap of a connection writing among `writers` (see [`Self::writing`]).
    fn cap(&self, writers: usize) -> u64 {
        let sharing = writers.clamp(1, self.busy.load(Ordering::Relaxed).max(1));
        let limit = self.limit_share.load(Ordering::Relaxed);
        let paced = self.paced_burst.load(Ordering::Relaxed) / sharing as u64;
        match (limit, paced) {
            (0, p) => p,
            (l, 0) => l,
            (l, p) => l.min(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacers_rate_is_shared_among_the_connections_writing_at_most_the_busy_ones() {
        let p = ConnPacing::default();
        p.set(None, Some(2_400_000.0), 8, 8);
        let (first, alone) = p.writing();
        assert_eq!(
            alone, 3_600_000,
            "one writer takes the burst of the whole rate"
        );
        let (second, two) = p.writing();
        assert_eq!(two, 1_800_000);
        let others: Vec<_> = (0..10).map(|_| p.writing()).collect();
        assert_eq!(
            others.last().map(|(_, cap)| *cap),
            Some(450_000),
            "never below 1/busy"
        );
        assert_eq!(p.cap(usize::MAX), 450_000);
        drop(others);
        drop(second);
        let (_again, cap) = p.writing();
        assert_eq!(cap, 1_800_000, "the guards gave their places back");
        drop(first);
    }

    #[test]
    fn the_rate_limit_stays_an_even_share_of_all_the_connections() {
        let p = ConnPacing::default();
        p.set(Some(8_000_000.0), None, 8, 2);
        assert_eq!(p.writing().1, 1_000_000);
        assert_eq!(p.cap(usize::MAX), 1_000_000);
        // Paced too: the lower of the two.
        p.set(Some(8_000_000.0), Some(4_000_000.0), 8, 8);
        assert_eq!(p.writing().1, 1_000_000);
        p.set(Some(80_000_000.0), Some(4_000_000.0), 8, 8);
        assert_eq!(p.cap(usize::MAX), 750_000);
    }

    #[test]
    fn no_limit_and_no_pacer_leave_the_connections_uncapped() {
        let p = ConnPacing::default();
        assert_eq!(p.writing().1, 0);
        p.set(None, None, 16, 16);
        assert_eq!(p.writing().1, 0);
        assert_eq!(p.cap(usize::MAX), 0);
    }
}
