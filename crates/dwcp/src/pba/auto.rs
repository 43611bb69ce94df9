//! The session-level PBA loop for data reduction: turns what a sender measures (wire bytes
//! acknowledged, time the network held the sender back, RTT, compressor speed and ratio)
//! into a codec decision about once a second, and follows the link's [`Mode`].
//!
//! The link estimate must not confuse a slow compressor with a slow link. Each period is
//! classed by how long the network held the sender back: the producer waited for window
//! permits, or its frames waited for a connection (a paced session's frames wait there while
//! the producer still has room in the window):
//! - **link-limited** (held back at least [`AutoConfig::link_limited_share`] of the period):
//!   the wire rate is the link's rate and feeds the [`LinkEstimator`] as it is, unless it
//!   grew by more than [`RAMP_GROWTH`] over the period before: the connections are still in
//!   slow start, and it may only raise the bandwidth decisions use;
//! - **sender-limited** (it hardly waited: compressing, reading or hashing held it back): the
//!   wire rate is only a lower bound of the link. The link may well be faster, so the period
//!   counts as [`SENDER_LIMITED_GAIN`] times its rate, and only when that is above the
//!   bandwidth decisions use (the guess before any measurement): it may raise it, never lower
//!   it. A compressor that holds the sender back thus makes a cheaper codec look better, and
//!   the sender moves to it; if the link then holds the sender back, its periods measure the
//!   link and the chooser can move back up.
//!
//! Before any measurement the bandwidth is a guess (from the mode the first RTT suggests),
//! and a caller's rate limit caps every estimate. Pure: time is an input.

use std::time::{Duration, Instant};

use super::choose::{Codec, CodecTable, CompressionChooser};
use super::estimator::LinkEstimator;
use crate::mode::{CompressionPolicy, FAST_LINK_BYTES_PER_SEC, LinkSample, Mode, ModeDetector};

/// How much faster than it delivered a sender-limited period assumes the link to be.
pub const SENDER_LIMITED_GAIN: f64 = 2.0;
/// Growth over the period before above which a link-limited period is still ramping up (the
/// connections' slow start): its rate is only a lower bound of the link, as a sender-limited
/// period's is, and it may raise the bandwidth decisions use, never lower it. Over
/// `intercontinental` the first quarter second, handshakes and a few round trips of slow
/// start, delivered 53 kB/s with frames waiting for connections all along: PBA chose zstd-19
/// for the next second, and a 128 MiB memory image went at a few MB/s while the link idled.
pub const RAMP_GROWTH: f64 = 1.25;

/// Tuning of a [`ReductionController`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoConfig {
    /// Time between decisions.
    pub decide_every: Duration,
    /// Time before the first decision.
    pub first_after: Duration,
    /// Share of a period the network must have held the sender back for the period to
    /// measure the link (0–1).
    pub link_limited_share: f64,
    /// Threads compressing (the producer is one).
    pub cores: u32,
}

impl Default for AutoConfig {
    fn default() -> Self {
        Self {
            decide_every: Duration::from_secs(1),
            first_after: Duration::from_millis(250),
            link_limited_share: 0.25,
            cores: 1,
        }
    }
}

/// Cumulative counters of a sender at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SenderSample {
    /// When they were read.
    pub at: Instant,
    /// Bytes on the wire acknowledged so far (TCP level, summed over connections).
    pub wire_acked: u64,
    /// Time the network has held the sender back so far: the producer waited for window
    /// permits, or its frames for a connection.
    pub blocked: Duration,
    /// Smoothed RTT, when known.
    pub rtt: Option<Duration>,
}

/// The codec a session starts with, from a first look at the link: the mode an `rtt` (the
/// `Hello` round trip) and `bandwidth` (a rate limit, or 1 Gbit/s when unknown) suggest, and
/// that mode's [`CompressionPolicy`] until PBA measures: none in a datacenter, lz4 on a hybrid
/// link, zstd-3 on an internet link. One core runs zstd-3 at hundreds of MB/s, many times what
/// an internet link carries, and it sends a quarter to a third less than lz4 on memory and disk
/// images: starting at lz4 spent the first seconds of a short transfer on bytes PBA would not
/// have chosen to send.
#[must_use]
pub fn initial_codec(rtt: Duration, bandwidth: Option<f64>) -> (Codec, Mode) {
    let bw = bandwidth.unwrap_or(FAST_LINK_BYTES_PER_SEC);
    let mode = Mode::classify(LinkSample::new(rtt, bw));
    let codec = match mode.defaults().compression {
        CompressionPolicy::None => Codec::None,
        CompressionPolicy::Light => Codec::Lz4,
        CompressionPolicy::Adaptive => Codec::Zstd3,
    };
    (codec, mode)
}

/// Chooses the codec of one sending session from its measurements.
#[derive(Debug, Clone)]
pub struct ReductionController {
    config: AutoConfig,
    estimator: LinkEstimator,
    table: CodecTable,
    chooser: CompressionChooser,
    detector: ModeDetector,
    /// Bandwidth assumed before the first measurement, bytes per second.
    guess: f64,
    /// Rate limit of the session, bytes per second.
    cap: Option<f64>,
    /// Counters at the start of the open period.
    last: Option<SenderSample>,
    /// The wire rate of the last period, bytes per second (see [`RAMP_GROWTH`]).
    last_rate: Option<f64>,
    decisions: u32,
    changes: u32,
}

impl ReductionController {
    /// A controller starting with `initial`, assuming `guess` bytes per second until it
    /// measures, never above `cap`.
    #[must_use]
    pub fn new(config: AutoConfig, initial: Codec, guess: f64, cap: Option<f64>) -> Self {
        Self {
            config,
            estimator: LinkEstimator::default(),
            table: CodecTable::default(),
            chooser: CompressionChooser::new(initial),
            detector: ModeDetector::default(),
            guess,
            cap,
            last: None,
            last_rate: None,
            decisions: 0,
            changes: 0,
        }
    }

    /// Records that `codec` compressed `original` bytes into `compressed` in `cpu` time.
    pub fn observe(&mut self, codec: Codec, original: u64, compressed: u64, cpu: Duration) {
        self.table.observe(codec, original, compressed, cpu);
    }

    /// The codec in force.
    #[must_use]
    pub fn codec(&self) -> Codec {
        self.chooser.current()
    }

    /// Whether [`Self::mode`] comes from a measurement.
    #[must_use]
    pub fn mode_measured(&self) -> bool {
        self.detector.is_measured()
    }

    /// The link's mode (the cautious [`Mode::Internet`] until measured).
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.detector.mode()
    }

    /// Decisions taken, and how many of them changed the codec.
    #[must_use]
    pub fn decisions(&self) -> (u32, u32) {
        (self.decisions, self.changes)
    }

    /// Compressed bytes per second of compression of the codec in force, as measured (its
    /// speed over its ratio); infinite for no compression.
    #[must_use]
    pub fn compressor_output(&self) -> f64 {
        let codec = self.codec();
        if codec == Codec::None {
            return f64::INFINITY;
        }
        self.table.speed(codec) / self.table.ratio(codec).max(1.0)
    }

    /// The bandwidth decisions use, bytes per second: predicted a second ahead from the
    /// measurements, or the guess; never above the cap.
    #[must_use]
    pub fn link_bandwidth(&self) -> f64 {
        let bw = self
            .estimator
            .predict(self.config.decide_every)
            .filter(|b| *b > 0.0)
            .unwrap_or(self.guess);
        self.cap.map_or(bw, |cap| bw.min(cap))
    }

    /// Feeds the counters now; at the end of a period, decides. Returns the new codec when the
    /// decision changed it.
    pub fn on_sample(&mut self, s: SenderSample) -> Option<Codec> {
        let Some(start) = self.last else {
            self.last = Some(s);
            return None;
        };
        let period = if self.decisions == 0 {
            self.config.first_after
        } else {
            self.config.decide_every
        };
        let elapsed = s.at.saturating_duration_since(start.at);
        if elapsed < period || elapsed.is_zero() {
            return None;
        }
        self.last = Some(s);
        self.measure(start, s, elapsed);
        let before = self.chooser.current();
        let after = self
            .chooser
            .decide(&self.table, self.link_bandwidth(), self.config.cores);
        self.decisions += 1;
        (after != before).then(|| {
            self.changes += 1;
            after
        })
    }

    fn measure(&mut self, start: SenderSample, s: SenderSample, elapsed: Duration) {
        if let Some(rtt) = s.rtt.filter(|r| !r.is_zero()) {
            self.estimator.on_rtt(s.at, rtt);
        }
        let delta = s.wire_acked.saturating_sub(start.wire_acked);
        let rate = delta as f64 / elapsed.as_secs_f64();
        let waited = s.blocked.saturating_sub(start.blocked).as_secs_f64();
        let link_limited = waited >= self.config.link_limited_share * elapsed.as_secs_f64();
        let counted = if link_limited {
            delta as f64
        } else {
            delta as f64 * SENDER_LIMITED_GAIN
        };
        // Compared with the bandwidth decisions use, the guess until a measurement: a period
        // still ramping up (slow start, a few round trips in) would otherwise set a bandwidth
        // many times under the link's, and the chooser would move to a codec that holds the
        // sender to a few MB/s. Link-limited, it may raise that bandwidth to its own rate.
        let ramping = self
            .last_rate
            .is_none_or(|before| rate > before * RAMP_GROWTH);
        self.last_rate = Some(rate);
        let feeds = if link_limited && ramping {
            rate > self.link_bandwidth()
        } else {
            link_limited || counted / elapsed.as_secs_f64() > self.link_bandwidth()
        };
        if delta > 0 && feeds {
            self.estimator.restart_interval();
            self.estimator.on_ack(start.at, 0);
            // Bytes over a period: a whole number of bytes is close enough for a rate.
            self.estimator.on_ack(s.at, bytes_of(counted));
        }
        self.sample_mode();
    }

    fn sample_mode(&mut self) {
        if let (Some(rtt), Some(_)) = (self.estimator.rtt(), self.estimator.bandwidth()) {
            let bw = self.link_bandwidth();
            self.detector.on_sample(LinkSample::new(rtt.smoothed, bw));
        }
    }

    /// At the end of a session shorter than a period: classifies the link from the whole
    /// session's counters (from `first`), if no period did.
    pub fn finish(&mut self, first: SenderSample, end: SenderSample) {
        if self.detector.is_measured() {
            return;
        }
        let elapsed = end.at.saturating_duration_since(first.at);
        if elapsed.is_zero() {
            return;
        }
        if let Some(rtt) = end.rtt.filter(|r| !r.is_zero()) {
            self.estimator.on_rtt(end.at, rtt);
        }
        let delta = end.wire_acked.saturating_sub(first.wire_acked);
        if delta > 0 && self.estimator.bandwidth().is_none() {
            self.estimator.restart_interval();
            self.estimator.on_ack(first.at, 0);
            self.estimator.on_ack(end.at, delta);
        }
        self.sample_mode();
    }
}

/// `x` bytes as an integer, saturating (`x` is finite and non-negative here).
pub(crate) fn bytes_of(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        // A byte count of a period fits u64 many times over; `as` saturates.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a non-negative finite float, saturated by `as`"
        )]
        let n = x.round() as u64;
        n
    } else {
        0
    }
}

#[cfg(test)]
#[path = "auto_test.rs"]
mod auto_test;
