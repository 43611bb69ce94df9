//! A sending session's data reduction as the supervisor sees it: what was negotiated, the PBA
//! loop that sets the producer's codec under `Auto`, and the figures for the summary.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::dedup::Dedup;
use super::hde_frame::choice_name;
use super::prefix::Spare;
use super::reduce::{ChunkEncoder, ReduceShared, Reduction, choice_of};
use super::sender_conn::measured_rtt;
use crate::hde::CodecChoice;
use crate::mode::Mode;
use crate::pba::{AutoConfig, Codec, ReductionController, SenderSample, initial_codec};

/// Mean literal block under which a period's compression times the compressor's cost per
/// call (its context, the prefix it indexes) more than its speed per byte: such a period
/// updates the codec's ratio only. A frame of a stream that is mostly references carries a
/// literal block of a few kilobytes; over `continent` 60 of them (1.2 kB each) took 14 ms of
/// zstd-3, which counted as 5 MB/s of compression and made PBA send the next second of a
/// second VM's memory uncompressed, where its literals compressed 3.5 to 1.
pub(crate) const MIN_TIMED_BLOCK: u64 = 16 << 10;

/// The compression time of `sums` as a measure of speed: zero (ratio only) when its blocks
/// average under [`MIN_TIMED_BLOCK`].
pub(crate) fn timed_cpu(sums: &super::reduce::Sums) -> Duration {
    if sums.original >= sums.blocks.saturating_mul(MIN_TIMED_BLOCK) {
        sums.cpu
    } else {
        Duration::ZERO
    }
}

/// What the summary reports of data reduction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReduceReport {
    pub(crate) mode: Mode,
    pub(crate) mode_measured: bool,
    pub(crate) codec: String,
    pub(crate) codec_changes: u32,
    pub(crate) stream_bytes: u64,
    pub(crate) wire_bytes: u64,
}

/// Data reduction of one sending session.
pub(crate) struct SessionReduce {
    /// What the caller asked for.
    pub(crate) requested: Reduction,
    /// Whether the receiver confirmed HDE (without it every frame is `Raw`).
    pub(crate) hde: bool,
    pub(crate) shared: Arc<ReduceShared>,
    /// The PBA loop, under `Auto` with HDE confirmed.
    auto: Option<ReductionController>,
    /// Counters when the session started, for a session shorter than one PBA period.
    first: SenderSample,
    /// The mode the first RTT suggested.
    guessed: Mode,
    /// Whether the compressor has time to spare, shared with the producer through `shared`.
    spare: Spare,
}

impl SessionReduce {
    /// The reduction of a session that asked for `requested`, whose receiver did (`hde`) or
    /// did not confirm HDE, whose first connection measured `rtt`, limited to `rate_limit`.
    pub(crate) fn new(
        requested: Reduction,
        hde: bool,
        rtt: Duration,
        rate_limit: Option<u64>,
    ) -> Self {
        let cap = rate_limit.map(|r| r as f64);
        let (initial, guessed) = initial_codec(rtt, cap);
        let guess = match guessed {
            Mode::Datacenter => 1.25e9,
            Mode::Hybrid => 1.25e8,
            Mode::Internet => 1.25e7,
        };
        let auto = (hde && requested == Reduction::Auto)
            .then(|| ReductionController::new(AutoConfig::default(), initial, guess, cap));
        let now = Instant::now();
        Self {
            requested,
            hde,
            shared: Arc::new(ReduceShared::new(initial)),
            auto,
            first: SenderSample {
                at: now,
                wire_acked: 0,
                blocked: Duration::ZERO,
                rtt: Some(rtt),
            },
            guessed,
            spare: Spare::default(),
        }
    }

    /// The mode the first connection's RTT suggested.
    pub(crate) fn guessed_mode(&self) -> Mode {
        self.guessed
    }

    /// The producer's encoder, when HDE was confirmed; `dedup` when deduplication was too.
    pub(crate) fn encoder(&self, dedup: Option<Dedup>) -> Option<ChunkEncoder> {
        if !self.hde {
            return None;
        }
        let fixed = match self.requested {
            Reduction::Off => return None,
            Reduction::Auto => None,
            Reduction::Fixed(choice) => Some(choice),
        };
        Some(ChunkEncoder {
            fixed,
            since_probe: 0,
            dedup,
        })
    }

    /// The sender's counters at `at`; `held_back`: the time the network has held the sender
    /// back so far (its producer waited for the window, or its frames for a connection).
    fn sample(at: Instant, wire_acked: u64, srtt_us: u64, held_back: Duration) -> SenderSample {
        SenderSample {
            at,
            wire_acked,
            blocked: held_back,
            rtt: measured_rtt(srtt_us),
        }
    }

    /// Called on every supervisor tick (`now`): feeds the PBA loop and applies its decisions.
    /// `held_back` is the time the network has held the sender back so far, the supervisor's
    /// `held_back`: with the session paced, the producer seldom waits for the window while
    /// the link holds it back, its frames wait for a connection instead.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        wire_acked: u64,
        srtt_us: u64,
        held_back: Duration,
    ) {
        let sample = Self::sample(now, wire_acked, srtt_us, held_back);
        let Some(ctl) = self.auto.as_mut() else {
            return;
        };
        for (codec, sums) in self.shared.take_observed() {
            tracing::trace!(
                %codec,
                blocks = sums.blocks,
                original = sums.original,
                compressed = sums.compressed,
                cpu_us = u64::try_from(sums.cpu.as_micros()).unwrap_or(u64::MAX),
                "compressor measured"
            );
            ctl.observe(codec, sums.original, sums.compressed, timed_cpu(&sums));
        }
        if let Some(codec) = ctl.on_sample(sample) {
            tracing::debug!(%codec, bandwidth = ctl.link_bandwidth(), mode = %ctl.mode(), "codec changed");
            self.shared.set_codec(codec);
        }
        // Against a measured bandwidth only: the guess before it is a mode's typical link
        // (12.5 MB/s for any long one), far under a `continent`'s 25.
        let was = self.spare.get();
        let output = ctl.compressor_output();
        let bandwidth = if ctl.mode_measured() {
            ctl.link_bandwidth()
        } else {
            f64::NAN
        };
        if self.spare.update(output, bandwidth) != was {
            tracing::debug!(
                spare = self.spare.get(),
                output,
                bandwidth,
                "the compressor's time to spare changed"
            );
            self.shared.spare.store(self.spare.get(), Ordering::Relaxed);
        }
    }

    /// The figures for the summary, at the end of the session.
    pub(crate) fn report(
        &mut self,
        wire_acked: u64,
        srtt_us: u64,
        held_back: Duration,
    ) -> ReduceReport {
        let end = Self::sample(Instant::now(), wire_acked, srtt_us, held_back);
        let stream_bytes = self.shared.stream_bytes.load(Ordering::Relaxed);
        let wire_bytes = self.shared.wire_bytes.load(Ordering::Relaxed);
        let (codec, changes, mode, measured) = match self.auto.as_mut() {
            Some(ctl) => {
                ctl.finish(self.first, end);
                let (_, changes) = ctl.decisions();
                let codec = choice_name(choice_of(ctl.codec()));
                let measured = ctl.mode_measured();
                let mode = if measured { ctl.mode() } else { self.guessed };
                (codec, changes, mode, measured)
            }
            None => {
                let choice = match (self.hde, self.requested) {
                    (true, Reduction::Fixed(choice)) => choice,
                    _ => CodecChoice::None,
                };
                let mut probe =
                    ReductionController::new(AutoConfig::default(), Codec::None, 0.0, None);
                probe.finish(self.first, end);
                let measured = probe.mode_measured();
                let mode = if measured { probe.mode() } else { self.guessed };
                (choice_name(choice), 0, mode, measured)
            }
        };
        ReduceReport {
            mode,
            mode_measured: measured,
            codec,
            codec_changes: changes,
            stream_bytes,
            wire_bytes,
        }
    }
}

#[cfg(test)]
#[path = "reduce_ctl_test.rs"]
mod reduce_ctl_test;
