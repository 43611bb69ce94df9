//! Pacing a session as a whole: one sending rate for all of its connections, found from what
//! the link delivers, so that N connections together do not overrun the bottleneck's queue.
//!
//! Each connection runs the kernel's congestion control (BBR by default) on its own, and each
//! keeps up to twice its share of the bandwidth-delay product in flight. Sixteen of them
//! together overflow a bottleneck queue of one BDP again and again: on the emulated
//! `continent` and `intercontinental` links one segment in five was sent twice, where the
//! same connections capped at the link's rate sent again only what the link itself dropped.
//!
//! The pacer does for the session what BBR does for one flow, on the session's own
//! measurements (bytes acknowledged at the TCP level, summed over its connections, and the
//! connections' smoothed and minimum RTT):
//!
//! - **Startup**: no cap while delivery still grows by a quarter per interval. It ends after
//!   [`STARTUP_FLAT`] intervals without such growth, or as soon as a queue shows in the RTT
//!   twice in a row or once with delivery no longer growing (the bottleneck is full: what it
//!   delivers is its rate).
//! - **Cruise**: the cap is the highest delivery rate of the last [`BW_INTERVALS`] intervals
//!   times a gain that cycles over [`CYCLE`] intervals: one above it (to find bandwidth that
//!   freed up; [`PROBE_QUEUE`] says how far), one as far below (to drain what that probe
//!   queued), then at it. While the RTT shows a queue, the gain is at most the drain's.
//!
//! An interval is two minimum RTTs, at least [`MIN_INTERVAL`]. Only intervals in which the
//! network held the session back count: those in which frames waited for a connection, or the
//! source for the window, at least [`LIMITED_SHARE`] of the time. In the others the source (a guest writing slowly, a
//! compressor at work) set the pace, and their rate says nothing of the link: it is kept only
//! when it raises the estimate (as BBR treats application-limited samples). A session that was
//! never held back by the network stays uncapped.
//!
//! The pacer is a pure function of its samples, so it is tested without a network; the sender
//! divides its cap over the connections (`SO_MAX_PACING_RATE`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Intervals of one cruise cycle: a probe, a drain, then holding at the estimate.
pub const CYCLE: usize = 6;
/// Highest gain of a probe interval.
pub const MAX_PROBE_GAIN: f64 = 1.25;
/// Most a probe may queue at the bottleneck, in bandwidth-delay products: a probe interval's
/// gain is `1 + PROBE_QUEUE × RTT / interval` (at most [`MAX_PROBE_GAIN`]), so that on a short
/// link, whose interval spans many round trips, the probe does not overflow a queue of one
/// BDP. The drain interval after it (and any interval that sees a queue) has the gain
/// `2 − probe gain`, which takes out what the probe put in.
pub const PROBE_QUEUE: f64 = 0.5;
/// Intervals whose highest delivery rate sets the cap: more than one cycle, so that the
/// probe's measurement is still in the window at the next probe.
pub const BW_INTERVALS: usize = CYCLE + 2;
/// Shortest measurement interval: shorter ones see each connection's acknowledgements in
/// bursts (they are sampled every 10 ms).
pub const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// Growth per interval below which startup counts an interval as flat.
pub const STARTUP_GROWTH: f64 = 1.25;
/// Flat intervals that end startup.
pub const STARTUP_FLAT: u8 = 3;
/// A smoothed RTT above `min_rtt × QUEUE_FACTOR + QUEUE_SLACK` means a queue at the
/// bottleneck of more than a quarter of the bandwidth-delay product.
pub const QUEUE_FACTOR: f64 = 1.25;
/// Absolute slack of the queue test, for delayed acknowledgements on short links.
pub const QUEUE_SLACK: Duration = Duration::from_millis(2);
/// Share of an interval that frames must have waited for a connection (or the source for the
/// window) for the interval to count as limited by the network.
pub const LIMITED_SHARE: f64 = 0.25;

/// How far over its even share of the cap each connection may send, at first: a connection
/// recovering from a loss sends less than its share, and the others take it up. Measured on the
/// emulated `intercontinental` link (16 connections, 256 MiB): 1.0 gave 83 Mbit/s, 1.2 gave
/// 87 with 1.2 % of segments sent again, 1.5 gave 87 with 8.7 %. On a link without loss
/// every connection uses its slack and together they overrun the cap, so the slack adapts
/// (within [`SLACK_RANGE`], by [`SLACK_STEP`] per interval): down while the RTT shows a
/// queue, up while the session delivers less than [`UNDERUSE`] of its cap in a holding
/// interval.
pub const SHARE_SLACK: f64 = 1.2;
/// Lowest and highest share slack.
pub const SLACK_RANGE: (f64, f64) = (1.0, 1.5);
/// Change of the share slack per interval.
pub const SLACK_STEP: f64 = 0.05;
/// Share of its cap below which a holding interval counts as underused.
pub const UNDERUSE: f64 = 0.95;

/// Whether a session is paced as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pacing {
    /// Where the session's mode calls for it: not on a datacenter link, where a burst
    /// drains before it can build a queue.
    #[default]
    Auto,
    /// Always.
    On,
    /// Never: each connection is left to its congestion control.
    Off,
}

/// A pacing setting that is not `auto`, `on` or `off`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pacing must be auto, on or off, not {0:?}")]
pub struct ParsePacingError(String);

impl std::str::FromStr for Pacing {
    type Err = ParsePacingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => Err(ParsePacingError(other.to_owned())),
        }
    }
}

impl Pacing {
    /// Whether a session in `mode` is paced.
    #[must_use]
    pub fn applies(self, mode: crate::mode::Mode) -> bool {
        match self {
            Self::Auto => mode.defaults().pacing,
            Self::On => true,
            Self::Off => false,
        }
    }
}

/// What the sender measured at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerSample {
    /// When.
    pub at: Instant,
    /// Bytes acknowledged at the TCP level since the session started, over all connections.
    pub delivered: u64,
    /// A connection's smoothed RTT, if measured.
    pub srtt: Option<Duration>,
    /// The lowest RTT any connection has seen.
    pub min_rtt: Option<Duration>,
    /// Time the source has waited for the window since the session started.
    pub blocked: Duration,
    /// Time frames have waited in the work queue for a connection since the session started.
    pub backlogged: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Uncapped; `best` is the highest delivery rate so far, `flat` the intervals without
    /// growth and `queued` those in a row with a queue.
    Startup { best: f64, flat: u8, queued: u8 },
    /// Capped; `phase` counts the intervals of the cycle (0: probe, 1: drain).
    Cruise { phase: usize },
}

/// Decides a session's total sending rate from its delivery and RTT samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacer {
    state: State,
    /// The sample that opened the current interval.
    open: Option<PacerSample>,
    /// Delivery rates of the last intervals, bytes per second, newest last.
    rates: VecDeque<f64>,
    cap: Option<f64>,
    slack: f64,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new()
    }
}

impl Pacer {
    /// A pacer in startup (no cap).
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: State::Startup {
                best: 0.0,
                flat: 0,
                queued: 0,
            },
            open: None,
            rates: VecDeque::with_capacity(BW_INTERVALS + 1),
            cap: None,
            slack: SHARE_SLACK,
        }
    }

    /// The current cap on the session's sending rate, bytes per second (`None`: uncapped).
    #[must_use]
    pub fn cap(&self) -> Option<f64> {
        self.cap
    }

    /// How far over its even share of the cap each connection may send ([`SHARE_SLACK`]).
    #[must_use]
    pub fn share_slack(&self) -> f64 {
        self.slack
    }

    /// Whether startup is over.
    #[must_use]
    pub fn is_cruising(&self) -> bool {
        matches!(self.state, State::Cruise { .. })
    }

    /// The highest delivery rate of the recent intervals, bytes per second.
    #[must_use]
    pub fn bandwidth(&self) -> f64 {
        self.rates.iter().copied().fold(0.0, f64::max)
    }

    /// Feeds one sample; returns the cap to apply (unchanged until an interval closes).
    pub fn on_sample(&mut self, s: PacerSample) -> Option<f64> {
        let Some(min_rtt) = s.min_rtt.filter(|r| !r.is_zero()) else {
            return self.cap;
        };
        let Some(from) = self.open else {
            self.open = Some(s);
            return self.cap;
        };
        let elapsed = s.at.saturating_duration_since(from.at);
        if elapsed < (min_rtt * 2).max(MIN_INTERVAL) {
            return self.cap;
        }
        self.open = Some(s);
        let rate = s.delivered.saturating_sub(from.delivered) as f64 / elapsed.as_secs_f64();
        let waited = s
            .blocked
            .saturating_sub(from.blocked)
            .max(s.backlogged.saturating_sub(from.backlogged));
        let limited = waited.as_secs_f64() >= elapsed.as_secs_f64() * LIMITED_SHARE;
        if !limited && rate <= self.bandwidth() {
            // The source set the pace: nothing learnt about the link.
            return self.cap;
        }
        self.rates.push_back(rate);
        while self.rates.len() > BW_INTERVALS {
            self.rates.pop_front();
        }
        let queue = s.srtt.is_some_and(|srtt| {
            srtt.as_secs_f64() > min_rtt.as_secs_f64() * QUEUE_FACTOR + QUEUE_SLACK.as_secs_f64()
        });
        self.state = match self.state {
            State::Startup { best, flat, queued } if limited => {
                let (best, flat) = if rate > best * STARTUP_GROWTH {
                    (rate, 0)
                } else {
                    (best.max(rate), flat.saturating_add(1))
                };
                let queued = if queue { queued.saturating_add(1) } else { 0 };
                // A queue with delivery no longer growing, or a queue twice in a row: the
                // bottleneck is full.
                if flat >= STARTUP_FLAT || (queued >= 1 && flat >= 1) || queued >= 2 {
                    // Drain what startup queued first.
                    State::Cruise { phase: 1 }
                } else {
                    State::Startup { best, flat, queued }
                }
            }
            startup @ State::Startup { .. } => startup,
            State::Cruise { phase } => {
                let held = phase >= 2 && self.cap.is_some_and(|cap| rate < cap * UNDERUSE);
                if queue {
                    self.slack = (self.slack - SLACK_STEP).max(SLACK_RANGE.0);
                } else if held && limited {
                    self.slack = (self.slack + SLACK_STEP).min(SLACK_RANGE.1);
                }
                State::Cruise {
                    phase: (phase + 1) % CYCLE,
                }
            }
        };
        let bandwidth = self.bandwidth();
        if bandwidth <= 0.0 {
            // Nothing delivered for a whole window: measure again from scratch.
            *self = Self::new();
            self.open = Some(s);
            return None;
        }
        if let State::Cruise { phase } = self.state {
            let (probe, drain) = gains(min_rtt, elapsed);
            let gain = match phase {
                0 => probe,
                1 => drain,
                _ => 1.0,
            };
            let gain = if queue { gain.min(drain) } else { gain };
            self.cap = Some(bandwidth * gain);
        }
        self.cap
    }
}

/// The probe and drain gains for intervals of `interval` on a link of `rtt` ([`PROBE_QUEUE`]).
#[must_use]
pub fn gains(rtt: Duration, interval: Duration) -> (f64, f64) {
    let span = interval.as_secs_f64().max(f64::EPSILON);
    let probe = (1.0 + PROBE_QUEUE * rtt.as_secs_f64() / span).min(MAX_PROBE_GAIN);
    (probe, 2.0 - probe)
}

#[cfg(test)]
#[path = "pacer_test.rs"]
mod pacer_test;
