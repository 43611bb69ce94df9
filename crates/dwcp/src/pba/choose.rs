//! Choosing the compression codec and the connection count for a link, to maximise effective
//! throughput: original (uncompressed) bytes delivered per second.
//!
//! For a codec with compression ratio `r` (original / compressed), compression speed `s`
//! (input bytes per second per core) and `cores` cores, over a link of bandwidth `B`:
//!
//! ```text
//! effective = min(B × r, s × cores)        (no compression: effective = B)
//! ```
//!
//! The link bound `B × r` grows with the level, the CPU bound `s × cores` falls with it, so a
//! slow link wants a high level and a fast one a low level or none. [`CompressionChooser`]
//! takes the codec with the highest effective throughput, the cheapest on a tie. It moves to a
//! costlier codec only for a gain above [`SWITCH_GAIN`], so that estimates wandering around a
//! crossover do not switch codecs on every decision, and to a cheaper one as soon as that does
//! at least as well (CPU spent for nothing is waste, e.g. once the data stops compressing).
//!
//! Ratios are per data: [`CodecTable::observe`] updates them from what the sender actually
//! compressed. A codec not yet measured on this data has its typical ratio scaled by how the
//! last measured codec did against its own typical ratio, so data that a codec barely
//! compresses (ratio ≈ 1) makes every codec look useless, and the choice is no compression.
//! The sender learns a ratio only for the codec it runs; to learn that data became
//! compressible again while sending raw, it compresses a sample chunk now and then and
//! reports it with [`CodecTable::observe`].
//!
//! Decompression speed is not modelled: lz4 and zstd decompress at several hundred MB/s or
//! more per core, faster than they compress at the levels used here.

use std::fmt;
use std::time::Duration;

/// Relative gain of effective throughput that justifies changing codec.
pub const SWITCH_GAIN: f64 = 1.10;
/// Weight of a new measurement in a codec's ratio and speed.
pub const OBSERVE_GAIN: f64 = 0.3;

/// A compression setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Raw.
    None,
    /// lz4 (fast mode).
    Lz4,
    /// zstd level 1.
    Zstd1,
    /// zstd level 3.
    Zstd3,
    /// zstd level 6.
    Zstd6,
    /// zstd level 9.
    Zstd9,
    /// zstd level 19.
    Zstd19,
}

impl Codec {
    /// Every codec, cheapest (in CPU per byte) first.
    pub const ALL: [Self; 7] = [
        Self::None,
        Self::Lz4,
        Self::Zstd1,
        Self::Zstd3,
        Self::Zstd6,
        Self::Zstd9,
        Self::Zstd19,
    ];

    /// The zstd level, for the zstd settings.
    #[must_use]
    pub fn zstd_level(self) -> Option<i32> {
        match self {
            Self::None | Self::Lz4 => None,
            Self::Zstd1 => Some(1),
            Self::Zstd3 => Some(3),
            Self::Zstd6 => Some(6),
            Self::Zstd9 => Some(9),
            Self::Zstd19 => Some(19),
        }
    }

    /// Typical compression speed (input bytes per second on one core) and ratio, on mixed
    /// data (the Silesia corpus) on a current x86 core, as published by the lz4 and zstd
    /// projects and rounded. Measurements replace them as soon as there are any.
    #[must_use]
    pub fn typical(self) -> CodecProfile {
        let (mb_per_sec, ratio) = match self {
            Self::None => (f64::INFINITY, 1.0),
            Self::Lz4 => (700.0, 2.1),
            Self::Zstd1 => (500.0, 2.9),
            Self::Zstd3 => (300.0, 3.2),
            Self::Zstd6 => (110.0, 3.4),
            Self::Zstd9 => (60.0, 3.55),
            Self::Zstd19 => (3.0, 4.0),
        };
        CodecProfile {
            speed: mb_per_sec * 1e6,
            ratio,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.zstd_level() {
            Some(level) => write!(f, "zstd-{level}"),
            None if *self == Self::Lz4 => f.write_str("lz4"),
            None => f.write_str("none"),
        }
    }
}

/// Speed and ratio of one codec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecProfile {
    /// Compression speed: input bytes per second on one core (infinite for no compression).
    pub speed: f64,
    /// Original bytes over compressed bytes (1 = no gain, below 1 = expansion).
    pub ratio: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    codec: Codec,
    typical: CodecProfile,
    /// Measured speed; `None` until measured.
    speed: Option<f64>,
    /// Measured ratio on the current data; `None` until measured.
    ratio: Option<f64>,
}

/// What is known of each codec on this machine and this data.
#[derive(Debug, Clone, PartialEq)]
pub struct CodecTable {
    entries: [Entry; 7],
    /// The codec measured last, whose ratio scales the others'.
    last_observed: Option<Codec>,
    /// The codec timed last, whose speed scales the others'.
    last_timed: Option<Codec>,
}

impl Default for CodecTable {
    fn default() -> Self {
        Self::with_profiles(Codec::typical)
    }
}

impl CodecTable {
    /// A table whose typical figures come from `profile`.
    #[must_use]
    pub fn with_profiles(profile: impl Fn(Codec) -> CodecProfile) -> Self {
        Self {
            entries: Codec::ALL.map(|codec| Entry {
                codec,
                typical: profile(codec),
                speed: None,
                ratio: None,
            }),
            last_observed: None,
            last_timed: None,
        }
    }

    fn entry(&self, codec: Codec) -> Option<&Entry> {
        self.entries.iter().find(|e| e.codec == codec)
    }

    /// Records that `codec` compressed `original` bytes into `compressed` bytes using `cpu`
    /// time on one core. Zero lengths are ignored; a zero `cpu` updates the ratio only.
    /// Observing [`Codec::None`] teaches nothing.
    pub fn observe(&mut self, codec: Codec, original: u64, compressed: u64, cpu: Duration) {
        if codec == Codec::None || original == 0 || compressed == 0 {
            return;
        }
        let ratio = original as f64 / compressed as f64;
        let speed = (!cpu.is_zero()).then(|| original as f64 / cpu.as_secs_f64());
        let blend = |old: Option<f64>, new: f64| match old {
            None => new,
            Some(old) => old + OBSERVE_GAIN * (new - old),
        };
        if let Some(e) = self.entries.iter_mut().find(|e| e.codec == codec) {
            e.ratio = Some(blend(e.ratio, ratio));
            if let Some(s) = speed {
                e.speed = Some(blend(e.speed, s));
                self.last_timed = Some(codec);
            }
            self.last_observed = Some(codec);
        }
    }

    /// Forgets measured ratios (not speeds), e.g. when the stream moves to different data.
    pub fn forget_ratios(&mut self) {
        for e in &mut self.entries {
            e.ratio = None;
        }
        self.last_observed = None;
    }

    /// The measured and typical figure (`of`: a speed or a ratio) of the codec `by`, if it was
    /// measured.
    fn reference(
        &self,
        by: Option<Codec>,
        of: impl Fn(&Entry) -> (Option<f64>, f64),
    ) -> Option<(f64, f64)> {
        let (measured, typical) = of(self.entry(by?)?);
        Some((measured?, typical))
    }

    /// Compression speed of `codec`, input bytes per second per core: measured; else its
    /// typical speed scaled by how the last timed codec compares to its own; else typical.
    ///
    /// This machine, its load and compressing against the stream before each chunk make
    /// every level slower than the published figures by much the same factor. On two shared
    /// cores zstd-3 ran at 21–270 MB/s over 100 ms periods (median 110; 300 published), while
    /// the untried zstd-6 counted at its published 110: as fast as zstd-3 at its median, and
    /// faster whenever zstd-3 held the sender back. Over `continent` the sender moved to it,
    /// measured it slower still, and came back, three changes in a 128 MiB disk image that
    /// then took 3.9 s instead of 2.9.
    #[must_use]
    pub fn speed(&self, codec: Codec) -> f64 {
        let Some(e) = self.entry(codec) else {
            return f64::INFINITY;
        };
        if let Some(s) = e.speed {
            return s;
        }
        match self.reference(self.last_timed, |r| (r.speed, r.typical.speed)) {
            Some((measured, typical)) if typical.is_finite() && typical > 0.0 => {
                e.typical.speed * measured / typical
            }
            _ => e.typical.speed,
        }
    }

    /// Expected ratio of `codec` on the current data: measured; else its typical ratio scaled
    /// by how the last measured codec compares to its own (never below 1); else typical.
    #[must_use]
    pub fn ratio(&self, codec: Codec) -> f64 {
        let Some(e) = self.entry(codec) else {
            return 1.0;
        };
        if let Some(r) = e.ratio {
            return r;
        }
        match self.reference(self.last_observed, |r| (r.ratio, r.typical.ratio)) {
            Some((measured, typical)) if typical > 1.0 => {
                let scale = ((measured - 1.0) / (typical - 1.0)).max(0.0);
                1.0 + (e.typical.ratio - 1.0) * scale
            }
            _ => e.typical.ratio,
        }
    }

    /// Original bytes per second that `codec` delivers over a link of `link_bw` bytes per
    /// second with `cores` cores compressing: `min(link_bw × ratio, speed × cores)`.
    #[must_use]
    pub fn effective_throughput(&self, codec: Codec, link_bw: f64, cores: u32) -> f64 {
        if codec == Codec::None {
            return link_bw;
        }
        let cpu = self.speed(codec) * f64::from(cores.max(1));
        (link_bw * self.ratio(codec)).min(cpu)
    }
}

/// Keeps the current codec and changes it when another is clearly better.
#[derive(Debug, Clone, PartialEq)]
pub struct CompressionChooser {
    current: Codec,
}

impl CompressionChooser {
    /// A chooser that starts with `initial`.
    #[must_use]
    pub fn new(initial: Codec) -> Self {
        Self { current: initial }
    }

    /// The codec in use.
    #[must_use]
    pub fn current(&self) -> Codec {
        self.current
    }

    /// Decides the codec for a link predicted at `link_bw` bytes per second with `cores`
    /// cores for compression. Moves to the best codec when it delivers more than
    /// [`SWITCH_GAIN`] times as much as the current one, or when it is cheaper and delivers
    /// at least as much; keeps the current codec otherwise. A bandwidth that is not a positive
    /// finite number keeps the current codec.
    pub fn decide(&mut self, table: &CodecTable, link_bw: f64, cores: u32) -> Codec {
        if !link_bw.is_finite() || link_bw <= 0.0 {
            return self.current;
        }
        let best = best_codec(table, link_bw, cores);
        let eff = |c| table.effective_throughput(c, link_bw, cores);
        let cheaper = |a: Codec, b: Codec| {
            Codec::ALL.iter().position(|&c| c == a) < Codec::ALL.iter().position(|&c| c == b)
        };
        // A cheaper codec that does as well is taken at once: CPU spent for no gain is waste.
        // A costlier one must earn its CPU with a clear gain.
        let better = eff(best) > eff(self.current) * SWITCH_GAIN
            || (cheaper(best, self.current) && eff(best) >= eff(self.current));
        if best != self.current && better {
            self.current = best;
        }
        self.current
    }
}

/// The codec with the highest effective throughput; the cheapest one on a tie.
#[must_use]
pub fn best_codec(table: &CodecTable, link_bw: f64, cores: u32) -> Codec {
    let mut best = (
        Codec::None,
        table.effective_throughput(Codec::None, link_bw, cores),
    );
    for codec in Codec::ALL {
        let eff = table.effective_throughput(codec, link_bw, cores);
        if eff > best.1 {
            best = (codec, eff);
        }
    }
    best.0
}

/// Inputs of [`suggest_streams`] that describe the hosts rather than the link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamParams {
    /// Bytes one TCP connection keeps in flight at most: the receive window autotuning
    /// reaches (Linux: half of `tcp_rmem` max, 6 MiB by default, goes to payload).
    pub per_stream_window: u64,
    /// Segment payload in bytes (1448 on Ethernet with TCP timestamps).
    pub mss: u32,
    /// Most connections (at most [`crate::amst::MAX_STREAMS`]).
    pub max_streams: u16,
}

impl Default for StreamParams {
    fn default() -> Self {
        Self {
            per_stream_window: 3 << 20,
            mss: 1448,
            max_streams: crate::amst::MAX_STREAMS,
        }
    }
}

/// Connections needed to fill a link of `bandwidth` bytes per second at `rtt` with `loss`
/// (0–1), in `1..=max_streams`: the larger of
///
/// ```text
/// window bound:  bandwidth × rtt / per_stream_window        (one window per RTT per connection)
/// loss bound:    bandwidth / (mss / rtt × 1.22 / √loss)     (Mathis et al. per-connection rate)
/// ```
///
/// rounded up. The loss bound models loss-based congestion control (CUBIC, Reno); under BBR,
/// which does not back off on random loss, pass `loss = 0`. This is a starting point: AMST's
/// tuner then keeps more connections only when they raise goodput.
#[must_use]
pub fn suggest_streams(bandwidth: f64, rtt: Duration, loss: f64, params: StreamParams) -> u16 {
    let max = params.max_streams.clamp(1, crate::amst::MAX_STREAMS);
    let rtt_s = rtt.as_secs_f64();
    if !bandwidth.is_finite() || bandwidth <= 0.0 || rtt_s <= 0.0 {
        return 1;
    }
    let window = params.per_stream_window.max(1) as f64;
    let by_window = bandwidth * rtt_s / window;
    let by_loss = if loss.is_finite() && loss > 0.0 {
        let per_stream = f64::from(params.mss.max(1)) / rtt_s * 1.22 / loss.min(1.0).sqrt();
        bandwidth / per_stream
    } else {
        0.0
    };
    let needed = by_window.max(by_loss);
    (1..=max).find(|&n| f64::from(n) >= needed).unwrap_or(max)
}

#[cfg(test)]
#[path = "choose_test.rs"]
mod choose_test;
