//! Pacing a session as a whole: one sending rate for all of its connections, found from what
//! the link delivers, so that N connections together do not overrun the bottleneck's queue.
//!
//! Each connection runs the kernel's congestion control (BBR by default) on its own, and each
//! keeps up to twice its share of the bandwidth-delay product in flight. Sixteen of them
//! together overflow a bottleneck queue of one BDP again and again: on the emulated links
//! 13–21 % of their segments were sent twice, where the same connections capped at the link's
//! rate sent again little more than what the link itself dropped.
//!
//! The pacer does for the session what BBR does for one flow, on the session's own
//! measurements (segments its connections' peers acknowledged, cumulatively or selectively,
//! and the connections' smoothed and minimum RTT):
//!
//! - **Startup**: no cap while delivery still grows by a quarter per interval. It ends after
//!   [`STARTUP_FLAT`] intervals without such growth, or at the first sample whose RTT shows a
//!   queue of a quarter BDP ([`STARTUP_QUEUE_FACTOR`]) while the network holds the session
//!   back, without waiting for the interval to close: the bottleneck is full, and what it
//!   delivered over the last [`RATE_SPAN`] is its rate. The sender samples every
//!   [`STARTUP_TICK`] until then. Not in the session's first round trip (and first
//!   [`RATE_SPAN`]): no acknowledgement of its data has come back yet, so a queue then is
//!   someone else's (another session's burst, the receiver's index), and what it delivered in
//!   a few milliseconds says nothing of the link. A migration back whose first sample ended
//!   startup so, at a queue of 58 ms, was capped at 25 kB/s and took 40 s over
//!   `intercontinental`, its cap creeping up by probes.
//!   Connections in startup together send up to twice the link's rate or more, and a queue of
//!   one BDP overflows within a round trip or two: ending startup only as an interval closed
//!   (two minimum RTTs, 200 ms at least), a 128 MiB transfer over `continent` sent 10–14 % of
//!   its segments again, against 2–5 % since.
//! - **Cruise**: the cap is the highest delivery rate of the last [`BW_INTERVALS`] intervals
//!   times a gain that cycles over [`CYCLE`] intervals: one above it (to find bandwidth that
//!   freed up; [`PROBE_QUEUE`] says how far), one as far below (to drain what that probe
//!   queued), then at it. A probe the link took without a queue is followed by another
//!   ([`PROBE_FOUND`]) until one is not. While the RTT shows a queue over half a BDP, the
//!   next interval sends as much less as brings it back to [`QUEUE_TARGET`] (its delay at the
//!   bottleneck's rate; at least [`MIN_GAIN`] of the estimate), and the estimate restarts from
//!   that interval's delivery: with a standing queue the bottleneck was busy throughout, so it
//!   delivered exactly its rate.
//!
//! An interval is two minimum RTTs, at least [`MIN_INTERVAL`]. Only intervals in which the
//! network held the session back count: those in which frames waited for a connection at
//! least [`LIMITED_SHARE`] of the time. In the others the source (a guest writing slowly, a
//! compressor at work) or the window (narrowed by a migration, or smaller than the path's
//! bandwidth-delay product) set the pace, and their rate says nothing of the link: it is kept
//! only when it raises the estimate (as BBR treats application-limited samples). A session
//! that was never held back by the network stays uncapped.
//!
//! The pacer is a pure function of its samples, so it is tested without a network. The sender
//! applies its cap with a [`TokenBucket`] the connections draw from before each piece of a
//! frame they write (so that connections with room take up what a recovering one leaves), and
//! caps each connection's kernel pacing at [`SHARE_BURST`] times its share
//! (`SO_MAX_PACING_RATE`), so that a connection does not push out what it drew in one burst.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Intervals of one cruise cycle: a probe, a drain, then holding at the estimate.
pub const CYCLE: usize = 8;
/// Highest gain of a probe interval.
pub const MAX_PROBE_GAIN: f64 = 1.25;
/// Most a probe may queue at the bottleneck, in bandwidth-delay products: a probe interval's
/// gain is `1 + PROBE_QUEUE × RTT / interval` (at most [`MAX_PROBE_GAIN`]), so that on a short
/// link, whose interval spans many round trips, the probe does not overflow a queue of one
/// BDP. The drain interval after it has the gain `2 − probe gain`, which takes out what the
/// probe put in.
pub const PROBE_QUEUE: f64 = 0.25;
/// Share of a probe's extra rate the link must have delivered, without a queue, for the probe
/// to have found bandwidth: the next interval then probes again instead of waiting for the
/// next cycle. An estimate far under the link (a startup ended by a spike in the RTT, a link
/// that got faster) otherwise rises by one probe gain per cycle: an eighth per 2.4 s over
/// `intercontinental`, 17 s from a fifth of the link to all of it.
pub const PROBE_FOUND: f64 = 0.5;
/// Intervals whose highest delivery rate sets the cap: more than one cycle, so that the
/// probe's measurement is still in the window at the next probe.
pub const BW_INTERVALS: usize = CYCLE + 2;
/// Shortest measurement interval: shorter ones see each connection's acknowledgements in
/// bursts (they are sampled every 10 ms).
pub const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// Shortest span over which the delivery rate that ends startup is measured: shorter ones
/// see each connection's acknowledgements in bursts (they are sampled every 10 ms).
pub const RATE_SPAN: Duration = Duration::from_millis(100);
/// Most recent samples kept for [`RATE_SPAN`] (startup samples every [`STARTUP_TICK`]).
const RECENT_SAMPLES: usize = 32;
/// How often the sender samples while the pacer is in startup: the bottleneck fills within
/// a round trip or two once the connections reach its rate, and over `continent`
/// (50 ms) the sender's regular 100 ms tick saw it late.
pub const STARTUP_TICK: Duration = Duration::from_millis(20);
/// Growth per interval below which startup counts an interval as flat.
pub const STARTUP_GROWTH: f64 = 1.25;
/// Flat intervals that end startup.
pub const STARTUP_FLAT: u8 = 3;
/// A smoothed RTT above `min_rtt × QUEUE_FACTOR + QUEUE_SLACK` means a queue at the
/// bottleneck of more than half the bandwidth-delay product. A smaller one is left alone: it
/// keeps the bottleneck busy while some connections recover from losses, and a queue of
/// one BDP (a common router buffer, and the emulator's) still has room.
pub const QUEUE_FACTOR: f64 = 1.5;
/// In startup, a smoothed RTT above `min_rtt × STARTUP_QUEUE_FACTOR + QUEUE_SLACK` (a queue
/// of a quarter BDP) shows the bottleneck full. Connections in startup offer about twice the
/// link's rate, so the queue grows by a BDP per round trip; at half a BDP, 128 MiB over
/// `continent` and `intercontinental` sent 1.7–3.1 % of their segments again, 1.4–1.6 % at a
/// quarter, in the same time.
pub const STARTUP_QUEUE_FACTOR: f64 = 1.25;
/// Lowest gain of an interval that drains a queue.
pub const MIN_GAIN: f64 = 0.75;
/// The queue a drain brings a larger one back to, in bandwidth-delay products.
pub const QUEUE_TARGET: f64 = 0.25;
/// Absolute slack of the queue test, for delayed acknowledgements on short links.
pub const QUEUE_SLACK: Duration = Duration::from_millis(2);
/// Share of an interval that frames must have waited for a connection for the interval to
/// count as limited by the network.
pub const LIMITED_SHARE: f64 = 0.25;

/// How far over its even share of the cap each connection may send (its kernel pacing cap):
/// a connection recovering from a loss sends less than its share, and the others take it up.
/// The session as a whole stays within the cap through its [`TokenBucket`]; this bounds how
/// fast one connection pushes out what it drew. Measured on the emulated links (16
/// connections): an adaptive slack of 1.0–1.5 gave 85 Mbit/s on `intercontinental`, a fixed
/// 1.5 or 2.0 gave 88–89; 2.0 let `metro`'s connections overrun its queue more often.
pub const SHARE_BURST: f64 = 1.5;
/// What the session's [`TokenBucket`] holds at most: this long at the cap, and at least two
/// of the pieces connections draw it in.
pub const BUCKET_DEPTH: Duration = Duration::from_millis(20);

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
    /// Bytes the connections' peers received since the session started (segments
    /// acknowledged cumulatively or selectively, times the segment size).
    pub delivered: u64,
    /// The lowest smoothed RTT of the connections that delivered since the last sample (a
    /// queue at the bottleneck delays them all), if any did.
    pub srtt: Option<Duration>,
    /// The lowest RTT any connection has seen.
    pub min_rtt: Option<Duration>,
    /// Time frames have waited in the work queue for a connection since the session started.
    pub backlogged: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Uncapped; `best` is the highest delivery rate so far, `flat` the intervals without
    /// growth.
    Startup { best: f64, flat: u8 },
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
    /// The samples of the last [`RATE_SPAN`] and the newest one before them, which a startup
    /// that sees a queue measures the rate from.
    recent: VecDeque<PacerSample>,
    /// When the first sample came.
    first: Option<Instant>,
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
            state: State::Startup { best: 0.0, flat: 0 },
            open: None,
            rates: VecDeque::with_capacity(BW_INTERVALS + 1),
            cap: None,
            recent: VecDeque::new(),
            first: None,
        }
    }

    /// The current cap on the session's sending rate, bytes per second (`None`: uncapped).
    #[must_use]
    pub fn cap(&self) -> Option<f64> {
        self.cap
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

    /// Feeds one sample; returns the cap to apply (unchanged until an interval closes, or
    /// startup sees the bottleneck full).
    pub fn on_sample(&mut self, s: PacerSample) -> Option<f64> {
        let base = self.remember(s);
        let first = *self.first.get_or_insert(s.at);
        let Some(min_rtt) = s.min_rtt.filter(|r| !r.is_zero()) else {
            return self.cap;
        };
        let Some(from) = self.open else {
            self.open = Some(s);
            return self.cap;
        };
        let elapsed = s.at.saturating_duration_since(from.at);
        let interval = (min_rtt * 2).max(MIN_INTERVAL);
        // Whether the smoothed RTT shows a queue: above `min_rtt × factor + QUEUE_SLACK`.
        let queued = |factor: f64| {
            s.srtt.is_some_and(|srtt| {
                srtt.as_secs_f64() > min_rtt.as_secs_f64() * factor + QUEUE_SLACK.as_secs_f64()
            })
        };
        let queue = queued(QUEUE_FACTOR);
        let filling = queued(STARTUP_QUEUE_FACTOR);
        let limited = network_limited(s.backlogged.saturating_sub(from.backlogged), elapsed);
        let own_queue = s.at.saturating_duration_since(first) >= min_rtt.max(RATE_SPAN);
        if let Some(rate) = self.full_in_startup(&s, base, from, filling && limited && own_queue) {
            return self.end_startup(s, rate, min_rtt, interval);
        }
        if elapsed < interval {
            return self.cap;
        }
        self.open = Some(s);
        let rate = delivery_rate(&from, &s);
        let before = self.bandwidth();
        if !limited && rate <= before {
            // The source set the pace: nothing learnt about the link.
            return self.cap;
        }
        if queue && limited {
            // With a standing queue the bottleneck was busy all interval: what it delivered is
            // its rate. Earlier, higher samples were noise or a faster past; keeping them would
            // hold the cap above the link and the queue would never drain.
            self.rates.clear();
        }
        self.push_rate(rate);
        self.state = match self.state {
            State::Startup { best, flat } if limited => {
                let (best, flat) = if rate > best * STARTUP_GROWTH {
                    (rate, 0)
                } else {
                    (best.max(rate), flat.saturating_add(1))
                };
                if flat >= STARTUP_FLAT {
                    // Drain what startup queued first.
                    State::Cruise { phase: 1 }
                } else {
                    State::Startup { best, flat }
                }
            }
            startup @ State::Startup { .. } => startup,
            State::Cruise { phase } => {
                let (probe, _) = gains(min_rtt, interval);
                let found = phase == 0
                    && !queue
                    && before > 0.0
                    && rate >= before * (1.0 + (probe - 1.0) * PROBE_FOUND);
                State::Cruise {
                    phase: if found { 0 } else { (phase + 1) % CYCLE },
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
            self.cap =
                Some(bandwidth * cruise_gain(phase, s.srtt.filter(|_| queue), min_rtt, elapsed));
        }
        self.cap
    }

    /// The delivery rate that ends startup at `s`, whether its interval closes or not, if
    /// `s` shows the bottleneck full (`full`: a queue in the RTT, and frames that waited for
    /// a connection since the interval opened at `from`; otherwise the source set the pace)
    /// in startup. The rate is what the link delivered since `base` (at least [`RATE_SPAN`]
    /// before), or since `from` if more.
    fn full_in_startup(
        &self,
        s: &PacerSample,
        base: Option<PacerSample>,
        from: PacerSample,
        full: bool,
    ) -> Option<f64> {
        if !full || !matches!(self.state, State::Startup { .. }) {
            return None;
        }
        let rate = base
            .as_ref()
            .map_or(0.0, |b| delivery_rate(b, s))
            .max(delivery_rate(&from, s));
        (rate > 0.0).then_some(rate)
    }

    /// Keeps `s` among the recent samples and returns the newest one at least [`RATE_SPAN`]
    /// before it, if any.
    fn remember(&mut self, s: PacerSample) -> Option<PacerSample> {
        let old = |p: &PacerSample| s.at.saturating_duration_since(p.at) >= RATE_SPAN;
        while self.recent.get(1).is_some_and(old) || self.recent.len() >= RECENT_SAMPLES {
            self.recent.pop_front();
        }
        let base = self.recent.front().copied().filter(old);
        self.recent.push_back(s);
        base
    }

    /// Adds an interval's delivery rate to the estimate's window.
    fn push_rate(&mut self, rate: f64) {
        self.rates.push_back(rate);
        while self.rates.len() > BW_INTERVALS {
            self.rates.pop_front();
        }
    }

    /// Ends startup at `s`, whose link delivered `rate`: the estimate takes it, a new interval
    /// opens, and the next `interval` drains what startup queued (see [`cruise_gain`]).
    fn end_startup(
        &mut self,
        s: PacerSample,
        rate: f64,
        min_rtt: Duration,
        interval: Duration,
    ) -> Option<f64> {
        self.open = Some(s);
        self.push_rate(rate);
        self.state = State::Cruise { phase: 1 };
        self.cap = Some(self.bandwidth() * cruise_gain(1, s.srtt, min_rtt, interval));
        self.cap
    }
}

/// Bytes per second delivered between `earlier` and `later` (0 over no time).
fn delivery_rate(earlier: &PacerSample, later: &PacerSample) -> f64 {
    let span = later.at.saturating_duration_since(earlier.at).as_secs_f64();
    if span > 0.0 {
        later.delivered.saturating_sub(earlier.delivered) as f64 / span
    } else {
        0.0
    }
}

/// The gain over the bandwidth estimate for the cruise interval of `phase` after one of
/// `interval` (see [`gains`]), on a link of `min_rtt`. With `queued` (the smoothed RTT, when it
/// shows a queue) the next interval sends as much less as takes that queue out (its delay at
/// the bottleneck's rate, down to [`QUEUE_TARGET`]), and no less than [`MIN_GAIN`] or more
/// than the phase's gain.
fn cruise_gain(
    phase: usize,
    queued: Option<Duration>,
    min_rtt: Duration,
    interval: Duration,
) -> f64 {
    let (probe, drain) = gains(min_rtt, interval);
    let gain = match phase {
        0 => probe,
        1 => drain,
        _ => 1.0,
    };
    match queued {
        Some(srtt) => {
            let delay =
                srtt.saturating_sub(min_rtt).as_secs_f64() - QUEUE_TARGET * min_rtt.as_secs_f64();
            let take_out = 1.0 - delay / interval.as_secs_f64().max(f64::EPSILON);
            gain.min(take_out.max(MIN_GAIN))
        }
        None => gain,
    }
}

/// Shares the session's cap among its connections by the bytes each writes: a connection
/// takes what a frame needs before writing it, and waits when the bucket is in debt, so the
/// connections together never send faster than the cap for longer than [`BUCKET_DEPTH`],
/// whichever of them have room. Pure: time is an input.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    /// Bytes per second (`None`: no cap, nobody waits).
    rate: Option<f64>,
    /// Bytes that may go now; negative when in debt.
    tokens: f64,
    /// Most tokens held.
    depth: f64,
    /// Two of the largest draws: the least `depth` may be.
    frames: f64,
    /// When `tokens` was last brought up to date.
    at: Option<Instant>,
}

impl TokenBucket {
    /// A bucket without a cap, for draws of up to `piece` bytes.
    #[must_use]
    pub fn new(piece: u32) -> Self {
        let frames = f64::from(piece) * 2.0;
        Self {
            rate: None,
            tokens: 0.0,
            depth: frames,
            frames,
            at: None,
        }
    }

    /// Sets the cap at `now` (`None` lifts it).
    pub fn set_rate(&mut self, now: Instant, rate: Option<f64>) {
        self.refill(now);
        self.rate = rate.filter(|r| *r > 0.0 && r.is_finite());
        let burst = self.rate.map_or(0.0, |r| r * BUCKET_DEPTH.as_secs_f64());
        self.depth = burst.max(self.frames);
        self.tokens = self.tokens.min(self.depth);
    }

    /// Whether a cap is set.
    #[must_use]
    pub fn is_capped(&self) -> bool {
        self.rate.is_some()
    }

    fn refill(&mut self, now: Instant) {
        if let (Some(rate), Some(at)) = (self.rate, self.at) {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + rate * dt).min(self.depth);
        }
        self.at = Some(now);
    }

    /// Takes `bytes` at `now`; returns how long the writer waits before sending them (zero
    /// when the bucket had them, or without a cap).
    pub fn take(&mut self, now: Instant, bytes: u64) -> Duration {
        self.refill(now);
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((-self.tokens / rate).min(60.0))
        }
    }
}

/// Whether the network held a session back over `span`: frames waited `waited` of it for a
/// connection, at least [`LIMITED_SHARE`] of it. Otherwise the source (or the window) set the
/// pace, and what the span delivered says nothing of the link or of the connection count.
#[must_use]
pub fn network_limited(waited: Duration, span: Duration) -> bool {
    waited.as_secs_f64() >= span.as_secs_f64() * LIMITED_SHARE
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
