//! Mode detection: classifies a link as datacenter, hybrid or internet from measured RTT and
//! bandwidth, and gives each mode its transfer defaults. A pure decision over samples, so it is
//! tested without a network.
//!
//! Main exports: [`Mode`], [`ModeDetector`] (fed [`LinkSample`]s), [`ModeDefaults`].
//!
//! Thresholds (ARCHITECTURE.md, "Mode detection"):
//!
//! ```text
//!                 RTT < 10 ms      10 ms ≤ RTT ≤ 50 ms     RTT > 50 ms
//!  ≥ 1 Gbit/s     datacenter       hybrid                  internet
//!  < 1 Gbit/s     internet         internet                internet
//! ```
//!
//! Hysteresis, both of:
//! - **Margin**: while in a mode, that mode's region is widened by [`Hysteresis::margin`]
//!   (20 % by default) on every threshold, so a sample just across a threshold still counts as
//!   the current mode. A link measured at 11 ms stays `datacenter` once there; it must reach
//!   12 ms to count against it.
//! - **Persistence**: the mode changes only after [`Hysteresis::switch_after`] consecutive
//!   samples (3 by default) fall outside the widened region; it then takes the class of the
//!   latest of them. A sample back inside the region resets the count.
//!
//! After a change the count starts from zero, so the mode changes at most once every
//! `switch_after` samples, however noisy the measurements. The very first sample is adopted at
//! once: before it the mode is a guess ([`Mode::Internet`], the cautious one), not a measurement.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// RTT below which a fast link counts as datacenter.
pub const DATACENTER_MAX_RTT: Duration = Duration::from_millis(10);
/// RTT above which a link counts as internet.
pub const INTERNET_MIN_RTT: Duration = Duration::from_millis(50);
/// 1 Gbit/s in bytes per second: links slower than this count as internet.
pub const FAST_LINK_BYTES_PER_SEC: f64 = 125_000_000.0;

/// The class of a link, which sets a session's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Short RTT and a fast link: inside a site.
    Datacenter,
    /// Long RTT or a slow link: across the WAN.
    Internet,
    /// A fast link at a medium RTT: metro or regional.
    Hybrid,
}

impl Mode {
    /// The lower-case name used in logs, metrics and summaries.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Datacenter => "datacenter",
            Self::Internet => "internet",
            Self::Hybrid => "hybrid",
        }
    }

    /// The transfer defaults of this mode.
    #[must_use]
    pub fn defaults(self) -> ModeDefaults {
        ModeDefaults::for_mode(self)
    }

    /// The class of one sample, with the thresholds of ARCHITECTURE.md and no hysteresis.
    #[must_use]
    pub fn classify(sample: LinkSample) -> Self {
        if sample.rtt > INTERNET_MIN_RTT || sample.bytes_per_sec < FAST_LINK_BYTES_PER_SEC {
            Self::Internet
        } else if sample.rtt < DATACENTER_MAX_RTT {
            Self::Datacenter
        } else {
            Self::Hybrid
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is none of `datacenter`, `internet`, `hybrid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?} (expected datacenter, internet or hybrid)")]
pub struct ParseModeError(pub String);

impl FromStr for Mode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "datacenter" => Ok(Self::Datacenter),
            "internet" => Ok(Self::Internet),
            "hybrid" => Ok(Self::Hybrid),
            other => Err(ParseModeError(other.to_owned())),
        }
    }
}

/// One measurement of the link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSample {
    /// Round-trip time (smoothed, as the estimator reports it).
    pub rtt: Duration,
    /// Bandwidth estimate, in bytes per second.
    pub bytes_per_sec: f64,
}

impl LinkSample {
    /// A sample of `rtt` and `bytes_per_sec`.
    #[must_use]
    pub fn new(rtt: Duration, bytes_per_sec: f64) -> Self {
        Self { rtt, bytes_per_sec }
    }
}

/// How reluctant the detector is to change mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hysteresis {
    /// Fraction by which the current mode's region is widened on each threshold (0.2 = 20 %).
    pub margin: f64,
    /// Consecutive samples outside the widened region before the mode changes (at least 1).
    pub switch_after: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Self {
            margin: 0.2,
            switch_after: 3,
        }
    }
}

/// Follows the mode of a link from successive [`LinkSample`]s, with [`Hysteresis`].
#[derive(Debug, Clone, PartialEq)]
pub struct ModeDetector {
    hysteresis: Hysteresis,
    mode: Mode,
    /// Whether a sample has been seen (before that, `mode` is the cautious guess).
    measured: bool,
    /// Consecutive samples outside the current mode's widened region.
    outside: u32,
}

impl Default for ModeDetector {
    fn default() -> Self {
        Self::new(Hysteresis::default())
    }
}

impl ModeDetector {
    /// A detector with `hysteresis`; `margin` is clamped to `0.0..=0.5` and `switch_after`
    /// raised to at least 1.
    #[must_use]
    pub fn new(hysteresis: Hysteresis) -> Self {
        let margin = if hysteresis.margin.is_finite() {
            hysteresis.margin.clamp(0.0, 0.5)
        } else {
            0.0
        };
        Self {
            hysteresis: Hysteresis {
                margin,
                switch_after: hysteresis.switch_after.max(1),
            },
            mode: Mode::Internet,
            measured: false,
            outside: 0,
        }
    }

    /// The current mode ([`Mode::Internet`] until the first sample).
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the mode comes from a measurement rather than the initial guess.
    #[must_use]
    pub fn is_measured(&self) -> bool {
        self.measured
    }

    /// Feeds one sample; returns the new mode when it changed.
    ///
    /// Samples whose bandwidth is negative or not a finite number are ignored.
    pub fn on_sample(&mut self, sample: LinkSample) -> Option<Mode> {
        if !sample.bytes_per_sec.is_finite() || sample.bytes_per_sec < 0.0 {
            return None;
        }
        if !self.measured {
            self.measured = true;
            self.outside = 0;
            let first = Mode::classify(sample);
            let changed = first != self.mode;
            self.mode = first;
            return changed.then_some(first);
        }
        if self.within_current(sample) {
            self.outside = 0;
            return None;
        }
        self.outside = self.outside.saturating_add(1);
        if self.outside < self.hysteresis.switch_after {
            return None;
        }
        self.outside = 0;
        let next = Mode::classify(sample);
        // The widened region contains the plain one, so `next` differs from the current mode;
        // checked anyway so that a change is never reported without one.
        (next != self.mode).then(|| {
            self.mode = next;
            next
        })
    }

    /// Whether `sample` lies in the current mode's region widened by the margin.
    fn within_current(&self, sample: LinkSample) -> bool {
        let m = self.hysteresis.margin;
        let rtt = sample.rtt.as_secs_f64();
        let dc_rtt = DATACENTER_MAX_RTT.as_secs_f64();
        let inet_rtt = INTERNET_MIN_RTT.as_secs_f64();
        let bw = sample.bytes_per_sec;
        match self.mode {
            Mode::Datacenter => {
                rtt < dc_rtt * (1.0 + m) && bw >= FAST_LINK_BYTES_PER_SEC * (1.0 - m)
            }
            Mode::Internet => {
                rtt > inet_rtt * (1.0 - m) || bw < FAST_LINK_BYTES_PER_SEC * (1.0 + m)
            }
            Mode::Hybrid => {
                rtt >= dc_rtt * (1.0 - m)
                    && rtt <= inet_rtt * (1.0 + m)
                    && bw >= FAST_LINK_BYTES_PER_SEC * (1.0 - m)
            }
        }
    }
}

/// How much a mode compresses before PBA has measured anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionPolicy {
    /// Send raw.
    None,
    /// A fast codec only (lz4).
    Light,
    /// PBA picks the codec and level from the predicted bandwidth and observed ratio,
    /// starting at zstd-3.
    Adaptive,
}

impl fmt::Display for CompressionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Light => "light",
            Self::Adaptive => "adaptive",
        })
    }
}

/// The transfer defaults of a mode, before AMST's tuner and PBA adapt them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeDefaults {
    /// Connections a session opens first.
    pub initial_streams: u16,
    /// Payload bytes per data frame.
    pub chunk_size: u32,
    /// Compression before PBA decides.
    pub compression: CompressionPolicy,
    /// Whether the sender paces its connections.
    pub pacing: bool,
}

impl ModeDefaults {
    /// The defaults of `mode`.
    ///
    /// - `datacenter`: a bandwidth-delay product of about 1 MB (10 Gbit/s × 1 ms) fits one TCP
    ///   window, so 4 connections are for spreading work over cores, not for window. 1 MiB
    ///   frames halve the per-frame work of AMST's 512 KiB default at rates where it shows.
    ///   No compression: the link is as fast as a core running lz4 (about 0.7 GB/s), and the
    ///   cores belong to the guests; PBA may still turn lz4 on when it measures a gain. No
    ///   pacing: at sub-millisecond RTT a burst is drained before it can build a queue.
    /// - `hybrid`: 1 Gbit/s × 50 ms is 6.25 MB, about two default Linux receive windows
    ///   (tcp_rmem max 6 MiB, half of it for payload): AMST's default of 8 connections
    ///   covers it. AMST's 512 KiB frames. Light compression: lz4 keeps up with 1–2 Gbit/s on
    ///   one or two cores and at least halves typical memory pages. Pacing on, so
    ///   window-sized bursts do not overflow the bottleneck queue at tens of milliseconds.
    /// - `internet`: long RTT and loss cap each TCP connection (Mathis: rate ∝ 1/(RTT·√loss)),
    ///   so many connections: 8 to start, which the stream tuner doubles to 16 within seconds
    ///   on the standard links (starting at 16, it doubled to 32, and 32 paced connections
    ///   sent 4–5 % of their segments again and lost 2–5 % of goodput). 1 MiB frames: each frame's literals are compressed on their own,
    ///   and zstd-3 over 1 MiB pieces of a memory image sends 6 % less than over 512 KiB
    ///   pieces (14 % less than over 256 KiB); the default window of 64 MiB still holds four
    ///   frames per connection. Adaptive compression, from zstd-3: the
    ///   link is slower than the compressors, so PBA spends CPU to send fewer bytes. Pacing
    ///   on.
    #[must_use]
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Datacenter => Self {
                initial_streams: 4,
                chunk_size: 1 << 20,
                compression: CompressionPolicy::None,
                pacing: false,
            },
            Mode::Hybrid => Self {
                initial_streams: 8,
                chunk_size: crate::amst::DEFAULT_CHUNK_SIZE,
                compression: CompressionPolicy::Light,
                pacing: true,
            },
            Mode::Internet => Self {
                initial_streams: 8,
                chunk_size: 1 << 20,
                compression: CompressionPolicy::Adaptive,
                pacing: true,
            },
        }
    }
}

#[cfg(test)]
#[path = "mode_test.rs"]
mod mode_test;
