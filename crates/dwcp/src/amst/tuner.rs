//! Choosing how many connections a session uses (`auto`): a pure decision over goodput
//! samples, so that it can be tested without a network.
//!
//! Policy: start at `initial`; after each measurement window, if goodput rose by at least
//! [`GAIN`] since the last step, double the count (up to `max`); otherwise go back to the
//! previous count and settle. A settled session probes again when goodput falls below
//! [`DROP`] of the settled level for [`LOW_WINDOWS`] windows in a row (the link changed), and
//! keeps more connections only if they beat the level from before the drop.
//!
//! The sender feeds it only windows in which the network held the session back
//! ([`super::pacer::network_limited`]: frames waited for a connection, or for room in the
//! window): in the others the source set the pace (a migration between its passes, a slow
//! pipe), and their goodput says nothing of the connection count.

use super::send_opts::StreamCount;
use crate::mode::Mode;

/// Relative goodput gain that justifies more connections.
pub const GAIN: f64 = 1.20;
/// Fraction of the settled goodput below which a window counts as low.
pub const DROP: f64 = 0.70;
/// Consecutive low windows after which the tuner probes again.
pub const LOW_WINDOWS: u8 = 3;
/// Weight of a new window in the settled goodput level.
pub const SMOOTHING: f64 = 0.25;

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Measuring `current`; `prev` is the last count and its goodput.
    Probing { prev: Option<(usize, f64)> },
    /// Holding `current`, which gave `goodput`; `low` counts windows below [`DROP`].
    Settled { goodput: f64, low: u8 },
}

/// Decides the connection count from goodput measured over successive windows.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamTuner {
    min: usize,
    max: usize,
    current: usize,
    state: State,
}

impl StreamTuner {
    /// A tuner that starts at `initial` and stays within `min..=max` (with `1 <= min`).
    #[must_use]
    pub fn new(min: usize, max: usize, initial: usize) -> Self {
        let min = min.max(1);
        let max = max.max(min);
        Self {
            min,
            max,
            current: initial.clamp(min, max),
            state: State::Probing { prev: None },
        }
    }

    /// The tuner a session asking for `streams` starts with, at most `max` connections, on a
    /// link whose first round trip suggests `mode`: a fixed count runs alone; `auto` without an
    /// initial count starts at the mode's default (at one without a mode).
    #[must_use]
    pub(crate) fn for_session(streams: StreamCount, mode: Option<Mode>, max: usize) -> Self {
        match streams {
            StreamCount::Fixed(n) => {
                let n = usize::from(n).clamp(1, max);
                Self::new(n, n, n)
            }
            StreamCount::Auto {
                min,
                max: most,
                initial,
            } => {
                let initial = match (initial, mode) {
                    (0, Some(mode)) => mode.defaults().initial_streams,
                    (0, None) => 1,
                    (n, _) => n,
                };
                Self::new(
                    usize::from(min),
                    usize::from(most).min(max),
                    usize::from(initial),
                )
            }
        }
    }

    /// The count to run now.
    #[must_use]
    pub fn current(&self) -> usize {
        self.current
    }

    /// Whether the tuner has stopped probing.
    #[must_use]
    pub fn is_settled(&self) -> bool {
        matches!(self.state, State::Settled { .. })
    }

    /// Feeds the goodput (bytes per second) measured over the last window at
    /// [`Self::current`] connections, and returns the count for the next window.
    pub fn on_sample(&mut self, goodput: f64) -> usize {
        self.state = match self.state {
            State::Probing { prev } => match prev {
                Some((prev_n, prev_g)) if goodput < prev_g * GAIN => {
                    // No worthwhile gain from the last step: go back to what was enough.
                    let best = if goodput > prev_g {
                        (self.current, goodput)
                    } else {
                        (prev_n, prev_g)
                    };
                    self.current = best.0;
                    State::Settled {
                        goodput: best.1,
                        low: 0,
                    }
                }
                _ if self.current >= self.max => State::Settled { goodput, low: 0 },
                _ => {
                    let here = (self.current, goodput);
                    self.current = (self.current * 2).min(self.max);
                    State::Probing { prev: Some(here) }
                }
            },
            State::Settled {
                goodput: level,
                low,
            } => {
                if goodput >= level * DROP {
                    // Follow the level smoothly: a maximum would ratchet up on every lucky
                    // window and make ordinary windows look like a drop.
                    State::Settled {
                        goodput: level + SMOOTHING * (goodput - level),
                        low: 0,
                    }
                } else if low + 1 < LOW_WINDOWS {
                    State::Settled {
                        goodput: level,
                        low: low + 1,
                    }
                } else {
                    // The link changed: probe again, and only keep more connections if they
                    // beat what this count delivered before the drop.
                    let here = (self.current, level);
                    self.current = (self.current * 2).min(self.max);
                    if here.0 == self.current {
                        State::Settled { goodput, low: 0 }
                    } else {
                        State::Probing { prev: Some(here) }
                    }
                }
            }
        };
        self.current = self.current.clamp(self.min, self.max);
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goodput of an idealised link: each connection gets `per_conn`, capped at `link`.
    fn link(per_conn: f64, cap: f64) -> impl Fn(usize) -> f64 {
        move |n| (n as f64 * per_conn).min(cap)
    }

    fn run(tuner: &mut StreamTuner, goodput: impl Fn(usize) -> f64, windows: usize) -> Vec<usize> {
        (0..windows)
            .map(|_| tuner.on_sample(goodput(tuner.current())))
            .collect()
    }

    #[test]
    fn grows_until_the_link_is_full_then_settles() {
        // 10 per connection on a link of 100: 40, 80, 100 are gains; 32 brings nothing more.
        let mut t = StreamTuner::new(1, 64, 4);
        let steps = run(&mut t, link(10.0, 100.0), 6);
        assert_eq!(steps, vec![8, 16, 32, 16, 16, 16]);
        assert!(t.is_settled());
    }

    #[test]
    fn falls_back_when_more_connections_do_not_help() {
        let mut t = StreamTuner::new(1, 64, 4);
        let steps = run(&mut t, link(30.0, 100.0), 4);
        // 4 conns already fill the link: 8 brings nothing, so it returns to 4.
        assert_eq!(steps, vec![8, 4, 4, 4]);
    }

    #[test]
    fn keeps_the_larger_count_when_it_was_slightly_better() {
        let mut t = StreamTuner::new(1, 64, 4);
        let goodput = |n: usize| if n == 4 { 100.0 } else { 105.0 };
        assert_eq!(run(&mut t, goodput, 2), vec![8, 8]);
    }

    #[test]
    fn stops_at_the_maximum() {
        let mut t = StreamTuner::new(1, 16, 4);
        let steps = run(&mut t, link(1.0, 1e9), 5);
        assert_eq!(steps, vec![8, 16, 16, 16, 16]);
        assert!(t.is_settled());
    }

    #[test]
    fn probes_again_after_three_low_windows() {
        let mut t = StreamTuner::new(1, 64, 4);
        run(&mut t, link(30.0, 100.0), 2);
        assert!(t.is_settled());
        assert_eq!(t.on_sample(50.0), 4, "one low window is noise");
        assert_eq!(t.on_sample(50.0), 4, "two low windows are noise");
        assert_eq!(t.on_sample(50.0), 8, "three low windows start a probe");
        assert!(!t.is_settled());
        // 8 connections deliver 90: more than the 50 of the low windows, but not more than
        // the 100 that 4 delivered before the drop, so it goes back to 4.
        assert_eq!(t.on_sample(90.0), 4);
        assert!(t.is_settled());
    }

    #[test]
    fn noisy_windows_around_a_full_link_do_not_add_connections() {
        let mut t = StreamTuner::new(1, 64, 8);
        // 8 connections fill a link of 100; 16 give nothing more.
        run(&mut t, link(100.0 / 8.0, 100.0), 2);
        assert!(t.is_settled());
        assert_eq!(t.current(), 8);
        // Windows swing by up to 40 % either way, never three low ones in a row.
        let swings = [
            140.0, 62.0, 135.0, 65.0, 61.0, 130.0, 100.0, 69.0, 140.0, 60.0,
        ];
        for g in swings.into_iter().cycle().take(200) {
            assert_eq!(t.on_sample(g), 8);
        }
    }

    #[test]
    fn respects_bounds_given_out_of_order() {
        let t = StreamTuner::new(0, 0, 9);
        assert_eq!(t.current(), 1);
        let t = StreamTuner::new(2, 64, 1);
        assert_eq!(t.current(), 2);
    }
}
