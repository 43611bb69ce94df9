//! Data reduction on the sending side: what the caller asks for ([`Reduction`]), the
//! producer's per-chunk encoder, and the counters and measurements it shares with the
//! session's PBA controller ([`crate::pba::ReductionController`]).
//!
//! The producer thread encodes each chunk with the codec in force (an atomic the controller
//! sets about once a second), so compression never runs on the reactor. With the codec at
//! `none` it still compresses one chunk in [`PROBE_EVERY`] with lz4, so that the controller
//! learns when the data becomes compressible again.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::dedup::Dedup;
use super::hde_frame::{EncodedChunk, Observation, encode_chunk, zero_chunk};
use crate::flags::{Component, Flags};
use crate::hde::codec::{ZSTD_MAX_LEVEL, ZSTD_MIN_LEVEL};
use crate::hde::{CodecChoice, CodecError};
use crate::pba::Codec as PbaCodec;

/// Whether and how a sender reduces the stream with HDE items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Plain `Raw` frames; HDE is not asked for.
    #[default]
    Off,
    /// Zero chunks elided; PBA chooses the codec (none, lz4, zstd level) from the measured
    /// link and compressor, about once a second.
    Auto,
    /// Zero chunks elided; every other chunk compressed with this choice
    /// ([`CodecChoice::None`]: zero elision only).
    Fixed(CodecChoice),
}

impl Reduction {
    /// This setting as the feature flags allow it on node `node_id`, decided once at session
    /// start: HDE off (or the kill switch) gives [`Reduction::Off`]; PBA off turns `Auto` into
    /// a fixed lz4.
    #[must_use]
    pub fn gated(self, flags: &Flags, node_id: &str) -> Self {
        if self == Self::Off || !flags.is_enabled(Component::Hde, node_id) {
            return Self::Off;
        }
        if self == Self::Auto && !flags.is_enabled(Component::Pba, node_id) {
            return Self::Fixed(CodecChoice::Lz4);
        }
        self
    }
}

impl fmt::Display for Reduction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Auto => f.write_str("auto"),
            Self::Fixed(CodecChoice::None) => f.write_str("none"),
            Self::Fixed(CodecChoice::Lz4) => f.write_str("lz4"),
            Self::Fixed(CodecChoice::Zstd(level)) => write!(f, "zstd:{level}"),
        }
    }
}

/// A `--compress` value that is none of `auto`, `off`, `none`, `lz4`, `zstd`, `zstd:N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown compression {0:?} (expected auto, off, none, lz4, zstd or zstd:N with N from {ZSTD_MIN_LEVEL} to {ZSTD_MAX_LEVEL})"
)]
pub struct ParseReductionError(pub String);

impl FromStr for Reduction {
    type Err = ParseReductionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseReductionError(s.to_owned());
        Ok(match s {
            "auto" => Self::Auto,
            "off" => Self::Off,
            "none" => Self::Fixed(CodecChoice::None),
            "lz4" => Self::Fixed(CodecChoice::Lz4),
            "zstd" => Self::Fixed(CodecChoice::Zstd(3)),
            other => {
                let level = other
                    .strip_prefix("zstd:")
                    .and_then(|n| n.parse::<i8>().ok())
                    .filter(|l| (ZSTD_MIN_LEVEL..=ZSTD_MAX_LEVEL).contains(l))
                    .ok_or_else(err)?;
                Self::Fixed(CodecChoice::Zstd(level))
            }
        })
    }
}

/// The compressor HDE runs for a PBA codec.
#[must_use]
pub(crate) fn choice_of(codec: PbaCodec) -> CodecChoice {
    match codec {
        PbaCodec::None => CodecChoice::None,
        PbaCodec::Lz4 => CodecChoice::Lz4,
        other => other
            .zstd_level()
            .and_then(|l| i8::try_from(l).ok())
            .map_or(CodecChoice::Lz4, CodecChoice::Zstd),
    }
}

/// The PBA codec of an HDE choice, when PBA has one (`Auto` only uses those).
fn pba_of(choice: CodecChoice) -> Option<PbaCodec> {
    PbaCodec::ALL
        .into_iter()
        .find(|c| choice_of(*c) == choice && (*c != PbaCodec::None || choice == CodecChoice::None))
}

/// One chunk in [`PROBE_EVERY`] is compressed with lz4 while the codec is `none`.
pub(crate) const PROBE_EVERY: u32 = 16;

/// Compression measured for one codec since the controller last took it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sums {
    /// Literal blocks compressed.
    pub(crate) blocks: u64,
    /// Their bytes.
    pub(crate) original: u64,
    /// Bytes they compressed to.
    pub(crate) compressed: u64,
    /// Time spent compressing them.
    pub(crate) cpu: Duration,
}

/// Literal bytes a codec's measurements add up to before the controller takes them: a few
/// blocks of a few bytes say nothing of the data's ratio (a block's frame alone is a dozen
/// bytes). The first literals of a migration of a VM whose pages the destination held were
/// the 62 bytes of QEMU's stream header, which zstd-3 made 68: the controller took the data
/// for incompressible and sent the next 15 MB of the stream's literals raw.
pub(crate) const MIN_OBSERVED: u64 = 64 << 10;

/// What the producer and the session's controller share.
#[derive(Debug, Default)]
pub(crate) struct ReduceShared {
    /// Index in [`PbaCodec::ALL`] of the codec in force under `Auto`.
    codec: AtomicU8,
    /// Stream bytes framed (first transmissions only).
    pub(crate) stream_bytes: AtomicU64,
    /// Payload bytes framed for them, grown by the literals sent in place of references the
    /// receiver lacked.
    pub(crate) wire_bytes: AtomicU64,
    /// Stream bytes sent as references to content the receiver holds.
    pub(crate) ref_bytes: AtomicU64,
    /// Time the producer waited for window permits, in nanoseconds: a sender that waits is
    /// held by the link (or the receiver), one that does not is held by itself.
    pub(crate) blocked_ns: AtomicU64,
    /// Per codec of [`PbaCodec::ALL`].
    observed: Mutex<[Sums; 7]>,
    /// Whether the compressor has time to spare (see [`super::prefix::Spare`]), set by the
    /// session's PBA loop.
    pub(crate) spare: AtomicBool,
}

impl ReduceShared {
    /// State whose codec in force is `codec`.
    pub(crate) fn new(codec: PbaCodec) -> Self {
        let shared = Self::default();
        shared.set_codec(codec);
        shared
    }

    /// Sets the codec in force under `Auto`.
    pub(crate) fn set_codec(&self, codec: PbaCodec) {
        let index = PbaCodec::ALL.iter().position(|c| *c == codec).unwrap_or(0);
        self.codec
            .store(u8::try_from(index).unwrap_or(0), Ordering::Relaxed);
    }

    /// The codec in force under `Auto`.
    pub(crate) fn codec(&self) -> PbaCodec {
        let index = usize::from(self.codec.load(Ordering::Relaxed));
        PbaCodec::ALL.get(index).copied().unwrap_or(PbaCodec::None)
    }

    /// Takes what was measured since the last call, per codec, once it adds up to
    /// [`MIN_OBSERVED`] bytes; smaller sums wait for more.
    pub(crate) fn take_observed(&self) -> Vec<(PbaCodec, Sums)> {
        let mut sums = self
            .observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        PbaCodec::ALL
            .into_iter()
            .zip(sums.iter_mut())
            .filter(|(_, s)| s.original >= MIN_OBSERVED)
            .map(|(codec, s)| (codec, std::mem::take(s)))
            .collect()
    }

    /// Adds one compressed literal block to its codec's sums for the controller.
    pub(crate) fn observe(&self, o: Observation) {
        let Some(codec) = pba_of(o.choice) else {
            return;
        };
        let index = PbaCodec::ALL.iter().position(|c| *c == codec).unwrap_or(0);
        let mut sums = self
            .observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = sums.get_mut(index) {
            s.blocks += 1;
            s.original += o.original;
            s.compressed += o.compressed;
            s.cpu += o.cpu;
        }
    }

    /// Counts one framed chunk.
    pub(crate) fn count(&self, stream: u64, wire: u64) {
        self.stream_bytes.fetch_add(stream, Ordering::Relaxed);
        self.wire_bytes.fetch_add(wire, Ordering::Relaxed);
    }
}

/// The producer's encoder for a session that negotiated HDE.
#[derive(Debug)]
pub(crate) struct ChunkEncoder {
    /// `None` under `Auto`: the codec comes from the shared state.
    pub(crate) fixed: Option<CodecChoice>,
    pub(crate) since_probe: u32,
    /// Set when the session also negotiated deduplication.
    pub(crate) dedup: Option<Dedup>,
}

impl ChunkEncoder {
    /// How much of `data` (read from the source, more to follow) to frame now: with
    /// deduplication, up to its last segment boundary (all of it when it is one segment);
    /// otherwise all of it.
    pub(crate) fn frame_len(&mut self, data: &[u8], offset: u64) -> usize {
        match &mut self.dedup {
            Some(dedup) => dedup.frame_len(data, offset),
            None => data.len(),
        }
    }

    /// Encodes one chunk, whose frame ends at stream offset `end` (`acked`: the receiver's
    /// acknowledged offset), recording what compression measured in `shared`.
    ///
    /// # Errors
    /// [`CodecError`] when the compressor fails.
    pub(crate) fn encode(
        &mut self,
        chunk: Bytes,
        end: u64,
        acked: u64,
        shared: &ReduceShared,
    ) -> Result<EncodedChunk, CodecError> {
        let choice = match self.fixed {
            Some(choice) => choice,
            None => {
                let choice = choice_of(shared.codec());
                if choice == CodecChoice::None {
                    self.since_probe += 1;
                    if self.since_probe >= PROBE_EVERY {
                        self.since_probe = 0;
                        CodecChoice::Lz4
                    } else {
                        choice
                    }
                } else {
                    choice
                }
            }
        };
        if let Some(dedup) = self.dedup.as_mut() {
            dedup.spare = shared.spare.load(Ordering::Relaxed);
        }
        let out = match self.dedup.as_mut() {
            // An all-zero chunk is one 5-byte item either way.
            Some(dedup) if crate::hde::is_zero(&chunk) => {
                dedup.skip();
                match zero_chunk(chunk.len()) {
                    Some(zero) => zero,
                    None => dedup.encode(chunk, end, acked, choice)?,
                }
            }
            Some(dedup) => dedup.encode(chunk, end, acked, choice)?,
            None => encode_chunk(chunk, choice)?,
        };
        if let Some(o) = out.observed {
            shared.observe(o);
        }
        shared.ref_bytes.fetch_add(out.ref_bytes, Ordering::Relaxed);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::FlagRule;

    #[test]
    fn compress_values_parse_and_print_back() {
        for (text, want) in [
            ("auto", Reduction::Auto),
            ("off", Reduction::Off),
            ("none", Reduction::Fixed(CodecChoice::None)),
            ("lz4", Reduction::Fixed(CodecChoice::Lz4)),
            ("zstd:19", Reduction::Fixed(CodecChoice::Zstd(19))),
            ("zstd:-3", Reduction::Fixed(CodecChoice::Zstd(-3))),
        ] {
            let got: Reduction = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text);
        }
        assert_eq!(
            "zstd".parse::<Reduction>().unwrap(),
            Reduction::Fixed(CodecChoice::Zstd(3))
        );
        for bad in ["zstd:23", "zstd:-8", "gzip", "zstd:x", ""] {
            assert!(bad.parse::<Reduction>().is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_gate_reduction_at_session_start() {
        let on = Flags::default();
        assert_eq!(Reduction::Auto.gated(&on, "n1"), Reduction::Auto);
        let killed = on.with_kill_switch(true);
        assert_eq!(Reduction::Auto.gated(&killed, "n1"), Reduction::Off);
        let no_hde = on.with_rule(Component::Hde, FlagRule::OFF);
        let lz4 = Reduction::Fixed(CodecChoice::Lz4);
        assert_eq!(lz4.gated(&no_hde, "n1"), Reduction::Off);
        let no_pba = on.with_rule(Component::Pba, FlagRule::OFF);
        assert_eq!(Reduction::Auto.gated(&no_pba, "n1"), lz4);
        assert_eq!(Reduction::Off.gated(&on, "n1"), Reduction::Off);
    }

    #[test]
    fn pba_codecs_map_to_hde_choices_and_back() {
        for codec in PbaCodec::ALL {
            assert_eq!(pba_of(choice_of(codec)), Some(codec), "{codec}");
        }
        assert_eq!(pba_of(CodecChoice::Zstd(5)), None);
    }

    #[test]
    fn auto_probes_with_lz4_while_sending_raw() {
        let shared = ReduceShared::new(PbaCodec::None);
        let mut enc = ChunkEncoder {
            fixed: None,
            since_probe: 0,
            dedup: None,
        };
        let text = Bytes::from("a line of a log file, again and again\n".repeat(2000));
        let mut compressed = 0;
        for _ in 0..PROBE_EVERY * 2 {
            let out = enc.encode(text.clone(), 0, 0, &shared).unwrap();
            if out.kind == crate::wire::PayloadKind::Hde {
                compressed += 1;
            }
        }
        assert_eq!(compressed, 2);
        // Two probes of 76 kB each: more than enough to judge.
        let observed = shared.take_observed();
        assert_eq!(observed.len(), 1);
        assert_eq!(observed[0].0, PbaCodec::Lz4);
        assert!(shared.take_observed().is_empty());
    }

    #[test]
    fn a_few_small_blocks_wait_until_they_add_up() {
        let shared = ReduceShared::new(PbaCodec::Zstd3);
        let mut enc = ChunkEncoder {
            fixed: None,
            since_probe: 0,
            dedup: None,
        };
        // A stream's header: zstd makes 62 bytes longer.
        let header = Bytes::from((0u8..62).collect::<Vec<_>>());
        enc.encode(header, 0, 0, &shared).unwrap();
        assert!(shared.take_observed().is_empty(), "62 bytes say nothing");
        let text = Bytes::from("a line of a log file, again and again\n".repeat(2000));
        enc.encode(text, 62, 0, &shared).unwrap();
        let observed = shared.take_observed();
        assert_eq!(observed.len(), 1);
        let (codec, sums) = &observed[0];
        assert_eq!(*codec, PbaCodec::Zstd3);
        // Both blocks, taken together: the header counts, but for what it weighs.
        assert_eq!(sums.blocks, 2);
        assert_eq!(sums.original, 62 + 76_000);
        assert!(sums.compressed * 10 < sums.original, "{sums:?}");
        assert!(shared.take_observed().is_empty());
    }
}
