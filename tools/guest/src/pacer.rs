//! Spreading a steady rate of work over time.
//!
//! A [`Pacer`] answers "how many units are due now?" from the time elapsed since the start, so
//! the rate holds on average however irregular the loop that asks. A backlog larger than one
//! second's worth is dropped rather than caught up: after the machine was paused (as during the
//! last phase of a migration) the program goes on at its rate instead of bursting.

use std::num::NonZeroU64;
use std::time::Duration;

/// Nanoseconds in a second.
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Hands out units of work at `units / per` per second.
#[derive(Clone, Debug)]
pub(crate) struct Pacer {
    /// Units per `per` seconds.
    units: u64,
    /// Seconds over which `units` are due.
    per: NonZeroU64,
    /// Units counted as handed out since the start, dropped backlog included.
    done: u64,
    /// Most units handed out by one call: one second's worth, at least 1.
    max_backlog: u64,
}

impl Pacer {
    /// A pacer for `units` units every `per` seconds.
    pub(crate) fn new(units: u64, per: NonZeroU64) -> Self {
        Self {
            units,
            per,
            done: 0,
            max_backlog: (units / per).max(1),
        }
    }

    /// Units due at `elapsed` since the start that were not handed out yet.
    pub(crate) fn take(&mut self, elapsed: Duration) -> u64 {
        let due = u128::from(self.units) * elapsed.as_nanos()
            / (u128::from(self.per.get()) * NANOS_PER_SEC);
        let due = u64::try_from(due).unwrap_or(u64::MAX);
        let owed = due.saturating_sub(self.done);
        // Whatever is owed beyond `max_backlog` is counted as done too: it is dropped.
        self.done = self.done.max(due);
        owed.min(self.max_backlog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn pacer(units: u64, per: u64) -> Pacer {
        Pacer::new(units, NonZeroU64::new(per).unwrap())
    }

    #[test]
    fn units_are_spread_over_time() {
        let mut p = pacer(100, 1);
        assert_eq!(p.take(secs(0.0)), 0);
        assert_eq!(p.take(secs(0.1)), 10);
        assert_eq!(p.take(secs(0.1)), 0);
        assert_eq!(p.take(secs(0.55)), 45);
        assert_eq!(p.take(secs(1.0)), 45);
    }

    #[test]
    fn small_rates_accumulate_fractions() {
        // 1 unit every 4 s.
        let mut p = pacer(1, 4);
        let mut total = 0;
        for tenth in 0..=200 {
            total += p.take(Duration::from_millis(100 * tenth));
        }
        assert_eq!(total, 5);
    }

    #[test]
    fn a_zero_rate_hands_out_nothing() {
        let mut p = pacer(0, 1);
        assert_eq!(p.take(secs(1000.0)), 0);
    }

    #[test]
    fn a_backlog_beyond_one_second_is_dropped() {
        let mut p = pacer(100, 1);
        assert_eq!(p.take(secs(0.5)), 50);
        // Paused for 10 s: one second's worth now, then the normal rate again.
        assert_eq!(p.take(secs(10.5)), 100);
        assert_eq!(p.take(secs(10.6)), 10);
    }

    #[test]
    fn rates_over_several_seconds_allow_one_unit_of_backlog() {
        let mut p = pacer(2, 4);
        assert_eq!(p.take(secs(100.0)), 1);
        assert_eq!(p.take(secs(102.0)), 1);
    }
}
