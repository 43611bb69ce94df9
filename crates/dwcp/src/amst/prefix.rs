//! The stream bytes right before a frame, which its literal block may be compressed against
//! (a zstd prefix, docs/dwcp-wire.md section 11): a guest page or a disk block often repeats
//! much of what came just before it, and a chunk compressed alone cannot see that.
//!
//! Both ends keep the last [`MAX_PREFIX`] bytes of the stream they have in order: the sender
//! those of the chunks it encoded, the receiver those it handed to its writer. A frame
//! compressed against a prefix can only be decoded once every byte before it has been, so the
//! receiver holds such a frame until the bytes before it are in ([`super::rx_session`]).

use std::collections::VecDeque;

use bytes::Bytes;

/// Most bytes a literal block is compressed against, and that the receiver keeps for it.
pub(crate) const MAX_PREFIX: usize = 1 << 20;

/// A literal block is compressed against at most this many times its own length of prefix:
/// zstd indexes the whole prefix before it compresses, and a migration stream is read in
/// blocks of 100–250 KiB. In 64 KiB chunks of a memory image, zstd-3 ran at 97 MB/s against
/// 1 MiB prefixes and 240 against 128 KiB ones (297 without), zstd-9 at 9 against 52, for 5 %
/// more output (`cargo run --release -p dwcp --example prefix_cost -- FILE`).
const PREFIX_PER_LITERAL: usize = 2;

/// The prefix a block of any length may have, however short the block.
const PREFIX_FLOOR: usize = 64 << 10;

/// How much of the `held` bytes before a chunk its literal block of `literal` bytes is
/// compressed against: all of them up to [`MAX_PREFIX`]; unless the compressor has time to
/// spare (`spare`, see [`Spare`]), only up to twice the block (at least [`PREFIX_FLOOR`]).
pub(crate) fn prefix_len(held: usize, literal: usize, spare: bool) -> usize {
    let bound = if spare {
        MAX_PREFIX
    } else {
        literal.saturating_mul(PREFIX_PER_LITERAL).max(PREFIX_FLOOR)
    };
    held.min(MAX_PREFIX).min(bound)
}

/// The compressor's output, bytes per second of compression, at least this many times the
/// link's bandwidth gives it time to spare (see [`Spare`]).
pub(crate) const SPARE_FROM: f64 = 8.0;
/// Under this many times the link's bandwidth, the compressor no longer has time to spare.
/// Far under [`SPARE_FROM`]: the whole prefix makes compression up to three times slower
/// (the table above), and that alone must not take it back.
pub(crate) const SPARE_UNTIL: f64 = 2.0;

/// Whether the compressor has time to spare: where the link and not the compressor sets the
/// pace (a migration over `edge`: the compressor waits for the link most of the time), a
/// literal block is compressed against the whole prefix held, which makes it about 5 %
/// smaller; where the compressor sets the pace, the bound on the prefix makes it several times
/// faster. With hysteresis ([`SPARE_FROM`], [`SPARE_UNTIL`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spare(bool);

impl Spare {
    /// Whether the compressor has time to spare now.
    pub(crate) fn get(self) -> bool {
        self.0
    }

    /// Updates with the compressor's `output` (compressed bytes per second it spends
    /// compressing) and the link's `bandwidth` (bytes per second); returns the new state.
    /// Not a number, or no bandwidth known, changes nothing.
    pub(crate) fn update(&mut self, output: f64, bandwidth: f64) -> bool {
        if output.is_finite() && bandwidth.is_finite() && bandwidth > 0.0 {
            let times = output / bandwidth;
            if self.0 {
                self.0 = times >= SPARE_UNTIL;
            } else {
                self.0 = times >= SPARE_FROM;
            }
        }
        self.0
    }
}

/// The last bytes of a stream, up to [`MAX_PREFIX`] of them, and where they end.
#[derive(Debug, Default)]
pub(crate) struct StreamTail {
    /// Stream offset just past the last byte held.
    end: u64,
    /// Contiguous pieces, oldest first, ending at `end`.
    parts: VecDeque<Bytes>,
    /// Bytes in `parts`.
    bytes: usize,
}

impl StreamTail {
    /// Adds `data`, the stream bytes at `offset`. Bytes that do not follow on from those held
    /// replace them.
    pub(crate) fn push(&mut self, offset: u64, data: Bytes) {
        if offset != self.end {
            self.parts.clear();
            self.bytes = 0;
        }
        self.end = offset + data.len() as u64;
        self.bytes += data.len();
        self.parts.push_back(data);
        while let Some(front) = self.parts.front() {
            if self.bytes - front.len() < MAX_PREFIX {
                break;
            }
            self.bytes -= front.len();
            self.parts.pop_front();
        }
    }

    /// Bytes held that end at `offset`: at most [`MAX_PREFIX`], none when the tail ends
    /// elsewhere.
    pub(crate) fn len_before(&self, offset: u64) -> usize {
        if offset == self.end {
            self.bytes.min(MAX_PREFIX)
        } else {
            0
        }
    }

    /// The last `len` bytes before `offset`, in one buffer; `None` unless the tail ends at
    /// `offset` and holds that many.
    pub(crate) fn before(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        if len > self.len_before(offset) {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        let mut skip = self.bytes - len;
        for part in &self.parts {
            let from = skip.min(part.len());
            skip -= from;
            out.extend_from_slice(part.get(from..).unwrap_or_default());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(byte: u8, len: usize) -> Bytes {
        Bytes::from(vec![byte; len])
    }

    #[test]
    fn the_bytes_before_an_offset_span_the_pieces_that_end_there() {
        let mut tail = StreamTail::default();
        tail.push(0, piece(1, 10));
        tail.push(10, piece(2, 5));
        assert_eq!(tail.len_before(15), 15);
        assert_eq!(tail.before(15, 7), Some(vec![1, 1, 2, 2, 2, 2, 2]));
        assert_eq!(tail.before(15, 0), Some(Vec::new()));
        assert_eq!(tail.before(15, 16), None, "more than is held");
        assert_eq!(tail.len_before(14), 0, "not where the tail ends");
        assert_eq!(tail.before(14, 1), None);
    }

    #[test]
    fn the_prefix_is_bounded_by_the_chunk_it_serves() {
        assert_eq!(
            prefix_len(MAX_PREFIX, 1 << 20, false),
            MAX_PREFIX,
            "a whole chunk"
        );
        assert_eq!(prefix_len(MAX_PREFIX, 600 << 10, false), MAX_PREFIX);
        assert_eq!(
            prefix_len(MAX_PREFIX, 200 << 10, false),
            400 << 10,
            "twice the chunk"
        );
        assert_eq!(
            prefix_len(MAX_PREFIX, 4096, false),
            PREFIX_FLOOR,
            "a small chunk"
        );
        assert_eq!(
            prefix_len(10 << 10, 1 << 20, false),
            10 << 10,
            "what is held"
        );
        assert_eq!(prefix_len(0, 1 << 20, false), 0);
        assert_eq!(prefix_len(usize::MAX, usize::MAX, false), MAX_PREFIX);
    }

    #[test]
    fn with_time_to_spare_the_prefix_is_all_that_is_held() {
        assert_eq!(prefix_len(MAX_PREFIX, 4096, true), MAX_PREFIX);
        assert_eq!(prefix_len(MAX_PREFIX, 200 << 10, true), MAX_PREFIX);
        assert_eq!(prefix_len(300 << 10, 4096, true), 300 << 10);
        assert_eq!(prefix_len(usize::MAX, 1, true), MAX_PREFIX);
    }

    #[test]
    fn time_to_spare_comes_at_eight_times_the_link_and_goes_under_two() {
        let link = 2.5e6;
        let mut spare = Spare::default();
        assert!(!spare.update(7.9 * link, link), "not yet");
        assert!(spare.update(8.0 * link, link));
        // The whole prefix slows the compressor: still spare at three times the link.
        assert!(spare.update(3.0 * link, link));
        assert!(spare.update(2.0 * link, link));
        assert!(
            !spare.update(1.9 * link, link),
            "the link no longer sets the pace"
        );
        assert!(
            !spare.update(5.0 * link, link),
            "not back before eight times"
        );
        // Nothing known changes nothing.
        assert!(!spare.update(f64::INFINITY, link));
        assert!(spare.update(10.0 * link, link));
        assert!(spare.update(f64::NAN, link));
        assert!(spare.update(0.0, 0.0));
        assert!(spare.get());
    }

    #[test]
    fn a_gap_starts_the_tail_again_and_old_pieces_go_past_the_limit() {
        let mut tail = StreamTail::default();
        tail.push(0, piece(1, 100));
        tail.push(200, piece(2, 50));
        assert_eq!(tail.len_before(250), 50, "the piece before the gap is gone");
        let big = MAX_PREFIX / 2 + 1;
        tail.push(250, piece(3, big));
        tail.push(250 + big as u64, piece(4, big));
        let end = 250 + 2 * big as u64;
        assert_eq!(tail.len_before(end), MAX_PREFIX);
        assert_eq!(tail.parts.len(), 2, "the 50 bytes are no longer needed");
        let prefix = tail.before(end, MAX_PREFIX).unwrap();
        assert_eq!(prefix.len(), MAX_PREFIX);
        assert_eq!(prefix.first(), Some(&3));
        assert_eq!(prefix.last(), Some(&4));
    }
}
