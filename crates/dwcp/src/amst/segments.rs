//! The `Segments` payload of a data frame (docs/dwcp-wire.md section 11): the frame's stream
//! bytes as a list of content-defined segments, each a run of zeros, a reference to content the
//! receiver's store holds, or literal bytes, followed by one block with every literal of the
//! frame (compressed together, so that cutting a chunk into small segments for deduplication
//! costs no compression ratio).
//!
//! ```text
//! count: u16                                         1..=MAX_SEGMENTS
//! count × segment:
//!   tag 1 zero     len: u32                          5 bytes
//!   tag 2 ref      len: u32, hash: [u8; 32]          37 bytes
//!   tag 3 literal  len: u32                          5 bytes
//!   tag 4 delta    len: u32, base: [u8; 32]          37 bytes
//! codec: u8 (0 none, 1 lz4, 2 zstd, 3 zstd after a prefix), level: i8,
//!   [codec 3: prefix: u32]                           1..=MAX_PREFIX
//! block_len: u32, block[block_len]
//! ```
//!
//! Every `len` is at least 1 and their sum is at most the session's chunk size; the block
//! decodes to exactly the sum of the literal lengths (with codec 0 it is that long), and
//! nothing follows it. A delta segment's bytes are its base (content the receiver's store
//! holds, like a reference's) XOR its `len` bytes of the literal block: a page sent again with
//! a few bytes changed is mostly zeros there, which the block's codec packs to almost nothing.
//! The receiver checks all of this before allocating, resolves each reference and base in its
//! store (verified against the hash) and stores each literal segment and delta result so that
//! later frames and sessions can reference it.
//!
//! With codec 3 (on a session that negotiated it) the block is a zstd frame compressed against
//! the `prefix` stream bytes right before the frame ([`super::prefix`]): the receiver decodes
//! it once it holds those bytes.

use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};

use super::prefix::MAX_PREFIX;
use crate::hde::{Codec, CodecError, ContentHash, ContentStore, DiskStore, codec};

/// Most segments one frame may list.
pub(crate) const MAX_SEGMENTS: usize = 4096;
const TAG_ZERO: u8 = 1;
const TAG_REF: u8 = 2;
const TAG_LITERAL: u8 = 3;
const TAG_DELTA: u8 = 4;
/// Block codec byte: zstd against the stream bytes before the frame.
const BLOCK_ZSTD_PREFIXED: u8 = 3;
/// Most hashes one `Need` names: a frame that lacks more is sent again with every segment as
/// a literal.
pub(crate) const MAX_NEED_HASHES: usize = 64;
/// Highest zstd level a frame sent again after a `Need` is compressed at: the stream waits for
/// it, and the level its producer chose can be one that takes a tenth of a second.
const NEED_LEVEL: i8 = 3;
/// Literal segments shorter than this are not stored (nor referenced by the sender): a
/// reference would not be much smaller than they are.
pub(crate) const MIN_STORED: usize = 256;

/// One segment of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment {
    /// `len` zero bytes.
    Zero(u32),
    /// `len` bytes the receiver holds under `hash`.
    Ref {
        /// Length of the content.
        len: u32,
        /// Its BLAKE3.
        hash: ContentHash,
    },
    /// The next `len` bytes of the literal block.
    Literal(u32),
    /// Content the receiver holds under `base` XOR the next `len` bytes of the literal block.
    Delta {
        /// Length of the content (and of its base).
        len: u32,
        /// BLAKE3 of the base.
        base: ContentHash,
    },
}

impl Segment {
    /// Stream bytes the segment stands for.
    pub(crate) fn len(self) -> u32 {
        match self {
            Self::Zero(len)
            | Self::Literal(len)
            | Self::Ref { len, .. }
            | Self::Delta { len, .. } => len,
        }
    }
}

/// Why a `Segments` payload was refused, or could not be resolved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SegmentsError {
    /// The payload ends early.
    #[error("segments payload truncated")]
    Truncated,
    /// Zero segments, or more than [`MAX_SEGMENTS`].
    #[error("{0} segments in one frame (1 to {MAX_SEGMENTS})")]
    Count(usize),
    /// An unknown segment tag.
    #[error("unknown segment tag {0}")]
    Tag(u8),
    /// A segment of length 0.
    #[error("empty segment")]
    Empty,
    /// The segments stand for more than the chunk size.
    #[error("segments stand for more than {limit} bytes")]
    TooLong {
        /// The session's chunk size.
        limit: usize,
    },
    /// An unknown codec for the literal block, or a level with lz4 or no codec.
    #[error("bad literal block codec {codec} level {level}")]
    BlockCodec {
        /// The codec byte.
        codec: u8,
        /// The level byte.
        level: i8,
    },
    /// The literal block does not decode to the literal segments' total.
    #[error("literal block holds {got} bytes, the segments {want}")]
    LiteralLength {
        /// Bytes the literal segments add up to.
        want: usize,
        /// Bytes the block holds (at most `want + 1` for compressed blocks).
        got: usize,
    },
    /// A prefixed block on a session that did not negotiate it, or whose prefix is empty or
    /// longer than [`MAX_PREFIX`].
    #[error(
        "literal block compressed against {0} bytes before the frame (1 to {MAX_PREFIX}, when negotiated)"
    )]
    Prefix(u32),
    /// The prefix the block was compressed against is not what the receiver has before the
    /// frame (the bytes before a resumed session's start, say).
    #[error("the literal block needs the {want} bytes before the frame; {held} are held")]
    PrefixMissing {
        /// Bytes the block needs.
        want: usize,
        /// Bytes held before the frame.
        held: usize,
    },
    /// Bytes after the literal block.
    #[error("{0} bytes after the literal block")]
    Trailing(usize),
    /// The literal block is malformed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The stored content of a reference has another length than the frame says.
    #[error("reference to {hash} says {said} bytes; the content is {held}")]
    RefLength {
        /// The content named.
        hash: ContentHash,
        /// The length the frame gave.
        said: usize,
        /// The stored content's length.
        held: usize,
    },
    /// References (or delta bases) to content the store does not hold: the receiver asks for
    /// the frame again, naming them (at most [`MAX_NEED_HASHES`]; none when it lacks more,
    /// and then every segment comes as a literal).
    #[error("{}", describe_missing(.0))]
    Missing(Vec<ContentHash>),
    /// A `Need` payload that is not a list of hashes.
    #[error("a Need payload of {0} bytes is not 0 to {MAX_NEED_HASHES} hashes of 32 bytes")]
    NeedLength(usize),
    /// A frame to send again stands for other bytes than its chunk.
    #[error("the frame stands for {frame} bytes, its chunk is {chunk}")]
    ChunkLength {
        /// Bytes the frame's segments add up to.
        frame: usize,
        /// Bytes of the chunk it was encoded from.
        chunk: usize,
    },
}

/// What [`SegmentsError::Missing`] says of `hashes`.
fn describe_missing(hashes: &[ContentHash]) -> String {
    match hashes.first() {
        None => format!("more than {MAX_NEED_HASHES} referenced contents are not in the store"),
        Some(first) => format!(
            "{} referenced contents are not in the store, the first {first}",
            hashes.len()
        ),
    }
}

/// A parsed payload: its segments and the literal block, still encoded.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub(crate) segments: Vec<Segment>,
    codec: Option<Codec>,
    level: i8,
    /// Stream bytes before the frame the block was compressed against (0: none).
    pub(crate) prefix: usize,
    block: &'a [u8],
    literal_len: usize,
    /// Stream bytes the frame stands for.
    pub(crate) total: usize,
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SegmentsError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(SegmentsError::Truncated)?;
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SegmentsError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

/// Parses `payload`, whose segments may stand for at most `limit` bytes. Nothing is allocated
/// beyond the segment list (bounded by [`MAX_SEGMENTS`]).
///
/// # Errors
/// [`SegmentsError`] naming the first thing wrong.
pub(crate) fn parse(payload: &[u8], limit: usize) -> Result<Parsed<'_>, SegmentsError> {
    let mut c = Cursor(payload);
    let count = usize::from(u16::from_be_bytes(c.array()?));
    if count == 0 || count > MAX_SEGMENTS {
        return Err(SegmentsError::Count(count));
    }
    let mut segments = Vec::with_capacity(count);
    let mut total = 0usize;
    let mut literal_len = 0usize;
    for _ in 0..count {
        let [tag] = c.array()?;
        let len = u32::from_be_bytes(c.array()?);
        if len == 0 {
            return Err(SegmentsError::Empty);
        }
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        total = total.saturating_add(n);
        if total > limit {
            return Err(SegmentsError::TooLong { limit });
        }
        segments.push(match tag {
            TAG_ZERO => Segment::Zero(len),
            TAG_REF => Segment::Ref {
                len,
                hash: ContentHash(c.array()?),
            },
            TAG_LITERAL => {
                literal_len += n;
                Segment::Literal(len)
            }
            TAG_DELTA => {
                literal_len += n;
                Segment::Delta {
                    len,
                    base: ContentHash(c.array()?),
                }
            }
            other => return Err(SegmentsError::Tag(other)),
        });
    }
    let [codec_byte] = c.array()?;
    let level = i8::from_be_bytes(c.array()?);
    let mut prefix = 0usize;
    let codec = match (codec_byte, level) {
        (0, 0) => None,
        (0, _) => return Err(SegmentsError::BlockCodec { codec: 0, level }),
        (BLOCK_ZSTD_PREFIXED, _) => {
            let len = u32::from_be_bytes(c.array()?);
            prefix = usize::try_from(len).unwrap_or(usize::MAX);
            if prefix == 0 || prefix > MAX_PREFIX {
                return Err(SegmentsError::Prefix(len));
            }
            Some(Codec::Zstd)
        }
        (byte, level) => {
            let codec = Codec::try_from(byte)?;
            if codec == Codec::Lz4 && level != 0 {
                return Err(SegmentsError::BlockCodec { codec: byte, level });
            }
            Some(codec)
        }
    };
    let block_len = usize::try_from(u32::from_be_bytes(c.array()?)).unwrap_or(usize::MAX);
    let block = c.take(block_len)?;
    if !c.0.is_empty() {
        return Err(SegmentsError::Trailing(c.0.len()));
    }
    if codec.is_none() && block_len != literal_len {
        return Err(SegmentsError::LiteralLength {
            want: literal_len,
            got: block_len,
        });
    }
    Ok(Parsed {
        segments,
        codec,
        level,
        prefix,
        block,
        literal_len,
        total,
    })
}

/// Serializes a payload whose literal block is `block`, compressed with `codec` at `level`
/// (`None`: the literals as they are).
pub(crate) fn write(segments: &[Segment], codec: Option<(Codec, i8)>, block: &[u8]) -> Bytes {
    write_block(segments, codec, 0, block)
}

/// Serializes a payload whose literal block is `packed`.
pub(crate) fn write_packed(segments: &[Segment], packed: &Packed) -> Bytes {
    write_block(segments, packed.codec, packed.prefix, &packed.block)
}

/// [`write`], the block compressed against the `prefix` bytes before the frame when that is
/// not 0.
fn write_block(
    segments: &[Segment],
    codec: Option<(Codec, i8)>,
    prefix: u32,
    block: &[u8],
) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + segments.len() * 37 + 6 + block.len());
    out.put_u16(u16::try_from(segments.len()).unwrap_or(u16::MAX));
    for s in segments {
        match *s {
            Segment::Zero(len) => {
                out.put_u8(TAG_ZERO);
                out.put_u32(len);
            }
            Segment::Ref { len, hash } => {
                out.put_u8(TAG_REF);
                out.put_u32(len);
                out.put_slice(&hash.0);
            }
            Segment::Literal(len) => {
                out.put_u8(TAG_LITERAL);
                out.put_u32(len);
            }
            Segment::Delta { len, base } => {
                out.put_u8(TAG_DELTA);
                out.put_u32(len);
                out.put_slice(&base.0);
            }
        }
    }
    let (codec, level) = codec.map_or((0, 0), |(c, l)| (c as u8, l));
    if prefix > 0 {
        out.put_u8(BLOCK_ZSTD_PREFIXED);
        out.put_i8(level);
        out.put_u32(prefix);
    } else {
        out.put_u8(codec);
        out.put_i8(level);
    }
    out.put_u32(u32::try_from(block.len()).unwrap_or(u32::MAX));
    out.put_slice(block);
    out.freeze()
}

/// Decodes `payload` into its stream bytes, reading references from `store` and storing every
/// literal segment of at least [`MIN_STORED`] bytes in it; `before` is the stream bytes right
/// before the frame that its block may have been compressed against (at most [`MAX_PREFIX`],
/// fewer at the start of the stream). Blocking (disk and CPU).
///
/// A store that fails to read is logged and treated as not holding the content (the sender is
/// asked for it); one that fails to write is logged and the frame still decodes: the store is a
/// cache, and a later reference to what it lacks is answered with `Need`.
///
/// # Errors
/// [`SegmentsError::Missing`] for content to ask for; any other variant is a malformed frame.
pub(crate) fn decode(
    payload: &[u8],
    limit: usize,
    store: &Mutex<DiskStore>,
    before: &[u8],
) -> Result<Bytes, SegmentsError> {
    let parsed = parse(payload, limit)?;
    let literals = literals(&parsed, before)?;
    let mut store = store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match resolve(&parsed, &literals, &mut store) {
        Err(SegmentsError::Missing(found)) => Err(SegmentsError::Missing(missing(
            &parsed.segments,
            &store,
            found,
        ))),
        decoded => decoded,
    }
}

/// The literal block of `parsed`, decoded; `before`: the stream bytes before the frame.
fn literals(parsed: &Parsed<'_>, before: &[u8]) -> Result<Vec<u8>, SegmentsError> {
    let literals = match parsed.codec {
        None => parsed.block.to_vec(),
        Some(_) if parsed.prefix > 0 => {
            let prefix = before
                .len()
                .checked_sub(parsed.prefix)
                .and_then(|from| before.get(from..))
                .ok_or(SegmentsError::PrefixMissing {
                    want: parsed.prefix,
                    held: before.len(),
                })?;
            codec::decompress_prefixed(parsed.block, parsed.literal_len, prefix)?
        }
        Some(codec) => codec::decompress(codec, parsed.block, parsed.literal_len)?,
    };
    if literals.len() != parsed.literal_len {
        return Err(SegmentsError::LiteralLength {
            want: parsed.literal_len,
            got: literals.len(),
        });
    }
    Ok(literals)
}

/// The stream bytes of `parsed`, whose literal block decoded to `literals` (see [`decode`]).
fn resolve(
    parsed: &Parsed<'_>,
    literals: &[u8],
    store: &mut DiskStore,
) -> Result<Bytes, SegmentsError> {
    let mut out = BytesMut::with_capacity(parsed.total);
    let mut lit = literals;
    for s in &parsed.segments {
        match *s {
            Segment::Zero(len) => out.put_bytes(0, usize::try_from(len).unwrap_or(0)),
            Segment::Literal(len) => {
                let n = usize::try_from(len).unwrap_or(usize::MAX);
                let (bytes, rest) = lit.split_at_checked(n).ok_or(SegmentsError::Truncated)?;
                lit = rest;
                if bytes.len() >= MIN_STORED {
                    if let Err(e) = store.put(ContentHash::of(bytes), bytes) {
                        tracing::warn!(error = %crate::amst::sender::error_chain(&e), "could not store a received segment");
                    }
                }
                out.put_slice(bytes);
            }
            Segment::Ref { len, hash } => out.put_slice(&held(store, hash, len)?),
            Segment::Delta { len, base } => {
                let mut content = held(store, base, len)?;
                let n = content.len();
                let (xor, rest) = lit.split_at_checked(n).ok_or(SegmentsError::Truncated)?;
                lit = rest;
                for (c, x) in content.iter_mut().zip(xor) {
                    *c ^= x;
                }
                if n >= MIN_STORED {
                    if let Err(e) = store.put(ContentHash::of(&content), &content) {
                        tracing::warn!(error = %crate::amst::sender::error_chain(&e), "could not store a received segment");
                    }
                }
                out.put_slice(&content);
            }
        }
    }
    Ok(out.freeze())
}

/// What a `Need` for a frame of `segments` names: `found` (the content found missing while
/// decoding) and every other reference and delta base `store` does not list, each once;
/// nothing when that is more than [`MAX_NEED_HASHES`].
fn missing(segments: &[Segment], store: &DiskStore, found: Vec<ContentHash>) -> Vec<ContentHash> {
    let mut out = found;
    for s in segments {
        let (Segment::Ref { hash, .. } | Segment::Delta { base: hash, .. }) = *s else {
            continue;
        };
        if !out.contains(&hash) && !store.contains(&hash) {
            out.push(hash);
        }
        if out.len() > MAX_NEED_HASHES {
            return Vec::new();
        }
    }
    out
}

/// The payload of a `Need` naming `hashes`: each hash's 32 bytes in turn (empty: every
/// segment as a literal).
pub(crate) fn need_payload(hashes: &[ContentHash]) -> Bytes {
    hashes.iter().flat_map(|h| h.0).collect::<Vec<u8>>().into()
}

/// The hashes a `Need` payload names (see [`need_payload`]).
///
/// # Errors
/// [`SegmentsError::NeedLength`] unless it is 0 to [`MAX_NEED_HASHES`] whole hashes.
pub(crate) fn parse_need(payload: &[u8]) -> Result<Vec<ContentHash>, SegmentsError> {
    if payload.len() % 32 != 0 || payload.len() > MAX_NEED_HASHES * 32 {
        return Err(SegmentsError::NeedLength(payload.len()));
    }
    let mut c = Cursor(payload);
    (0..payload.len() / 32)
        .map(|_| c.array().map(ContentHash))
        .collect()
}

/// `payload`, a frame encoded from `chunk`, again with each reference and delta whose content
/// is in `missing` sent as a literal; the rest as it was, the literal block compressed with
/// the frame's codec (zstd at [`NEED_LEVEL`] at most). The answer to a `Need` that names what
/// the receiver lacks: a page or two more than the frame, where all its literals would be the
/// whole chunk, uncompressed.
///
/// # Errors
/// [`SegmentsError`] when `payload` is not a valid frame of `chunk`, or the compressor fails.
pub(crate) fn with_literals(
    payload: &[u8],
    chunk: &[u8],
    missing: &[ContentHash],
) -> Result<Bytes, SegmentsError> {
    let parsed = parse(payload, chunk.len())?;
    if parsed.total != chunk.len() {
        return Err(SegmentsError::ChunkLength {
            frame: parsed.total,
            chunk: chunk.len(),
        });
    }
    // A block compressed against the bytes before the frame is not decoded here: its deltas go
    // as literals too.
    let prefixed = parsed.prefix > 0;
    let kept_delta = !prefixed
        && parsed
            .segments
            .iter()
            .any(|s| matches!(s, Segment::Delta { base, .. } if !missing.contains(base)));
    // The XORs of the deltas that stay are in the old block; literals are the chunk's bytes.
    let old = if kept_delta {
        literals(&parsed, &[])?
    } else {
        Vec::new()
    };
    let mut segments = Vec::with_capacity(parsed.segments.len());
    let mut block = Vec::with_capacity(parsed.literal_len);
    let (mut at, mut old_at) = (0usize, 0usize);
    for s in parsed.segments {
        let len = usize::try_from(s.len()).unwrap_or(usize::MAX);
        let bytes = chunk
            .get(at..at.saturating_add(len))
            .ok_or(SegmentsError::Truncated)?;
        at = at.saturating_add(len);
        // Literals and deltas take their length of the old block, in order.
        let in_old = matches!(s, Segment::Literal(_) | Segment::Delta { .. }).then(|| {
            let range = old_at..old_at.saturating_add(len);
            old_at = range.end;
            range
        });
        match s {
            Segment::Zero(_) => segments.push(s),
            Segment::Ref { hash, .. } if !missing.contains(&hash) => segments.push(s),
            Segment::Delta { base, .. } if !prefixed && !missing.contains(&base) => {
                let xor = in_old
                    .and_then(|range| old.get(range))
                    .ok_or(SegmentsError::Truncated)?;
                segments.push(s);
                block.extend_from_slice(xor);
            }
            // A literal, or content the receiver lacks: the chunk's bytes.
            Segment::Ref { len, .. } | Segment::Literal(len) | Segment::Delta { len, .. } => {
                segments.push(Segment::Literal(len));
                block.extend_from_slice(bytes);
            }
        }
    }
    let mut block_codec = None;
    if let Some(codec) = parsed.codec.filter(|_| !block.is_empty()) {
        let level = if codec == Codec::Zstd {
            parsed.level.min(NEED_LEVEL)
        } else {
            parsed.level
        };
        let packed = pack(block, codec, level, &[])?;
        (block, block_codec) = (packed.block, packed.codec);
    }
    Ok(write(&segments, block_codec, &block))
}

/// A literal block as [`pack`] leaves it.
pub(crate) struct Packed {
    /// The block to write.
    pub(crate) block: Vec<u8>,
    /// The codec and level it was compressed with; `None`: left as it was.
    pub(crate) codec: Option<(Codec, i8)>,
    /// Stream bytes before the frame it was compressed against (0: none).
    pub(crate) prefix: u32,
    /// Its compressed size, kept or not.
    pub(crate) compressed: usize,
}

/// `block` compressed with `codec` at `level` when that makes it smaller; with zstd, against
/// `before` (the stream bytes before the frame, at most [`MAX_PREFIX`] of them) when that is
/// not empty.
///
/// # Errors
/// [`CodecError`] when the compressor fails.
pub(crate) fn pack(
    block: Vec<u8>,
    codec: Codec,
    level: i8,
    before: &[u8],
) -> Result<Packed, CodecError> {
    let prefix = before
        .get(before.len().saturating_sub(MAX_PREFIX)..)
        .unwrap_or_default();
    let (packed, prefix) = match codec {
        Codec::Zstd if !prefix.is_empty() => (
            codec::compress_prefixed(level, prefix, &block)?,
            u32::try_from(prefix.len()).unwrap_or(0),
        ),
        _ => (codec::compress(codec, level, &block)?, 0),
    };
    let compressed = packed.len();
    Ok(if compressed < block.len() {
        Packed {
            block: packed,
            codec: Some((codec, level)),
            prefix,
            compressed,
        }
    } else {
        Packed {
            block,
            codec: None,
            prefix: 0,
            compressed,
        }
    })
}

/// The content `store` holds under `hash`, which the frame says is `len` bytes long.
fn held(store: &mut DiskStore, hash: ContentHash, len: u32) -> Result<Vec<u8>, SegmentsError> {
    let content = match store.get(&hash) {
        Ok(Some(content)) => content,
        Ok(None) => return Err(SegmentsError::Missing(vec![hash])),
        Err(e) => {
            tracing::warn!(error = %crate::amst::sender::error_chain(&e), %hash, "could not read the content store");
            return Err(SegmentsError::Missing(vec![hash]));
        }
    };
    let said = usize::try_from(len).unwrap_or(usize::MAX);
    if content.len() != said {
        return Err(SegmentsError::RefLength {
            hash,
            said,
            held: content.len(),
        });
    }
    Ok(content)
}

#[cfg(test)]
#[path = "segments_test.rs"]
mod segments_test;
