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
//!   tag 5 ref      len: u32, key: [u8; 8]            13 bytes (short references)
//!   tag 6 delta    len: u32, key: [u8; 8]            13 bytes (short references)
//!   tag 7 recipe   len: u32, hash: [u8; 32]          37 bytes (recipes)
//! [any tag 5 or 6: check: [u8; 16]]
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
//! On a session that negotiated short references, a reference or delta base names its content
//! by the first 8 bytes of its hash (a [`HashKey`]), and the frame carries a check: the first
//! 16 bytes of the BLAKE3 of the full hashes of the content those keys name, in order. The
//! receiver resolves a key to the one hash its store lists under it (a key it lacks, or holds
//! under two hashes, is asked for) and verifies the check, so a key that found other content
//! than the sender's is never used: the frame is asked for again with every segment a literal.
//!
//! On a session that negotiated recipes, a segment may stand for a whole earlier frame's
//! segments, named by the hash of its recipe ([`super::recipe`]); the receiver stores each
//! frame's recipe after decoding it.
//!
//! With codec 3 (on a session that negotiated it) the block is a zstd frame compressed against
//! the `prefix` stream bytes right before the frame ([`super::prefix`]): the receiver decodes
//! it once it holds those bytes.

use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};

use super::prefix::MAX_PREFIX;
use super::recipe;
use crate::hde::{Codec, CodecError, ContentHash, ContentStore, DiskStore, HashKey, codec};

/// Most segments one frame may list.
pub(crate) const MAX_SEGMENTS: usize = 4096;
const TAG_ZERO: u8 = 1;
const TAG_REF: u8 = 2;
const TAG_LITERAL: u8 = 3;
const TAG_DELTA: u8 = 4;
const TAG_SHORT_REF: u8 = 5;
const TAG_SHORT_DELTA: u8 = 6;
const TAG_RECIPE: u8 = 7;
/// Bytes of a frame's check over the content its short references name.
const CHECK_LEN: usize = 16;
/// Block codec byte: zstd against the stream bytes before the frame.
const BLOCK_ZSTD_PREFIXED: u8 = 3;
#[path = "segments_need.rs"]
mod need;
use need::missing;
pub(crate) use need::{MAX_NEED_HASHES, need_payload, parse_need, with_literals};

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
    /// `len` bytes the receiver holds under the hash whose first bytes are `key` (as parsed
    /// from a frame with short references).
    ShortRef {
        /// Length of the content.
        len: u32,
        /// The first bytes of its BLAKE3.
        key: HashKey,
    },
    /// A delta whose base is named by `key` (as parsed from a frame with short references).
    ShortDelta {
        /// Length of the content (and of its base).
        len: u32,
        /// The first bytes of the base's BLAKE3.
        key: HashKey,
    },
    /// The `len` bytes of the segments of the recipe the receiver holds under `hash`.
    Recipe {
        /// Bytes the recipe stands for.
        len: u32,
        /// BLAKE3 of the recipe.
        hash: ContentHash,
    },
}

impl Segment {
    /// Stream bytes the segment stands for.
    pub(crate) fn len(self) -> u32 {
        match self {
            Self::Zero(len)
            | Self::Literal(len)
            | Self::Ref { len, .. }
            | Self::Delta { len, .. }
            | Self::ShortRef { len, .. }
            | Self::ShortDelta { len, .. }
            | Self::Recipe { len, .. } => len,
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
    /// A frame's check does not match the content its short references found: one of them
    /// found other content than the sender's (see the module doc).
    #[error("the short references found other content than their frame's check names")]
    Unverified,
    /// A recipe on a session that did not negotiate recipes.
    #[error("a recipe on a session that did not negotiate recipes")]
    Recipes,
    /// Held content named as a recipe is not one, or not of the frame's length.
    #[error("recipe {hash}: {source}")]
    Recipe {
        /// The recipe named.
        hash: ContentHash,
        /// What is wrong with it.
        #[source]
        source: super::recipe::RecipeError,
    },
    /// Short references on a session that did not negotiate them.
    #[error("short references on a session that did not negotiate them")]
    ShortRefs,
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
    /// The check over the content short references name; `None` when there are none.
    pub(crate) check: Option<[u8; CHECK_LEN]>,
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
            TAG_RECIPE => Segment::Recipe {
                len,
                hash: ContentHash(c.array()?),
            },
            TAG_SHORT_REF => Segment::ShortRef {
                len,
                key: c.array()?,
            },
            TAG_SHORT_DELTA => {
                literal_len += n;
                Segment::ShortDelta {
                    len,
                    key: c.array()?,
                }
            }
            other => return Err(SegmentsError::Tag(other)),
        });
    }
    let short = segments
        .iter()
        .any(|s| matches!(s, Segment::ShortRef { .. } | Segment::ShortDelta { .. }));
    let check = if short { Some(c.array()?) } else { None };
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
        check,
        codec,
        level,
        prefix,
        block,
        literal_len,
        total,
    })
}

/// Serializes a payload whose literal block is `block`, compressed with `codec` at `level`
/// (`None`: the literals as they are); `short`: references and delta bases go as short ones.
pub(crate) fn write(
    segments: &[Segment],
    codec: Option<(Codec, i8)>,
    block: &[u8],
    short: bool,
) -> Bytes {
    write_block(segments, codec, 0, block, short)
}

/// Serializes a payload whose literal block is `packed` (`short` as for [`write`]).
pub(crate) fn write_packed(segments: &[Segment], packed: &Packed, short: bool) -> Bytes {
    write_block(segments, packed.codec, packed.prefix, &packed.block, short)
}

/// [`write`], the block compressed against the `prefix` bytes before the frame when that is
/// not 0. Segments parsed as short ([`Segment::ShortRef`], [`Segment::ShortDelta`]) are not
/// written by the sender ([`with_literals`] names their content in full): one written here
/// counts in no check, so its frame fails the receiver's and is asked for as literals.
fn write_block(
    segments: &[Segment],
    codec: Option<(Codec, i8)>,
    prefix: u32,
    block: &[u8],
    short: bool,
) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + segments.len() * 37 + 6 + block.len());
    out.put_u16(u16::try_from(segments.len()).unwrap_or(u16::MAX));
    let mut check = short.then(blake3::Hasher::new);
    let mut named = false;
    for s in segments {
        let (tag, len) = match *s {
            Segment::Zero(len) => (TAG_ZERO, len),
            Segment::Literal(len) => (TAG_LITERAL, len),
            Segment::Ref { len, hash } | Segment::Delta { len, base: hash } => {
                let tags = if matches!(s, Segment::Ref { .. }) {
                    (TAG_REF, TAG_SHORT_REF)
                } else {
                    (TAG_DELTA, TAG_SHORT_DELTA)
                };
                named = true;
                put_named(&mut out, check.as_mut(), tags, len, hash);
                continue;
            }
            Segment::Recipe { len, hash } => {
                out.put_u8(TAG_RECIPE);
                out.put_u32(len);
                out.put_slice(&hash.0);
                continue;
            }
            Segment::ShortRef { len, key } | Segment::ShortDelta { len, key } => {
                let tag = if matches!(s, Segment::ShortRef { .. }) {
                    TAG_SHORT_REF
                } else {
                    TAG_SHORT_DELTA
                };
                out.put_u8(tag);
                out.put_u32(len);
                out.put_slice(&key);
                named = true;
                continue;
            }
        };
        out.put_u8(tag);
        out.put_u32(len);
    }
    if let Some(check) = check.filter(|_| named) {
        out.put_slice(&check_bytes(&check));
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

/// Writes a reference or delta segment naming `hash`: in full with `tags.0`, or, with a
/// `check` to add its hash to, by its key with `tags.1`.
fn put_named(
    out: &mut BytesMut,
    check: Option<&mut blake3::Hasher>,
    tags: (u8, u8),
    len: u32,
    hash: ContentHash,
) {
    match check {
        Some(check) => {
            check.update(&hash.0);
            out.put_u8(tags.1);
            out.put_u32(len);
            out.put_slice(&hash.key());
        }
        None => {
            out.put_u8(tags.0);
            out.put_u32(len);
            out.put_slice(&hash.0);
        }
    }
}

/// A frame's check: the first [`CHECK_LEN`] bytes of `hasher`'s hash.
fn check_bytes(hasher: &blake3::Hasher) -> [u8; CHECK_LEN] {
    hasher
        .finalize()
        .as_bytes()
        .first_chunk()
        .copied()
        .unwrap_or_default()
}

/// Decodes `payload` into its stream bytes, reading references from `store` and storing every
/// literal segment of at least [`MIN_STORED`] bytes in it, and with `recipes` the frame's
/// recipe; `before` is the stream bytes right before the frame that its block may have been
/// compressed against (at most [`MAX_PREFIX`], fewer at the start of the stream). Blocking
/// (disk and CPU).
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
    recipes: bool,
) -> Result<Bytes, SegmentsError> {
    let parsed = parse(payload, limit)?;
    let literals = literals(&parsed, before)?;
    let mut store = store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut recipe = recipe::Builder::default();
    match resolve(&parsed, &literals, &mut store, &mut recipe) {
        Ok(bytes) => {
            if let Some((hash, recipe)) = recipe.finish().filter(|_| recipes) {
                if let Err(e) = store.put(hash, &recipe) {
                    tracing::warn!(error = %crate::amst::sender::error_chain(&e), "could not store a received frame's recipe");
                }
            }
            Ok(bytes)
        }
        Err(SegmentsError::Missing(found)) => Err(SegmentsError::Missing(missing(
            &parsed.segments,
            &store,
            found,
        ))),
        Err(SegmentsError::Unverified) => {
            tracing::debug!(
                "a short reference found other content than the sender's; asking for every segment"
            );
            Err(SegmentsError::Missing(Vec::new()))
        }
        Err(e) => Err(e),
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

/// The stream bytes of `parsed`, whose literal block decoded to `literals` (see [`decode`]),
/// each segment added to `recipe`.
fn resolve(
    parsed: &Parsed<'_>,
    literals: &[u8],
    store: &mut DiskStore,
    recipe: &mut recipe::Builder,
) -> Result<Bytes, SegmentsError> {
    let mut out = BytesMut::with_capacity(parsed.total);
    let mut lit = literals;
    let mut check = blake3::Hasher::new();
    for s in &parsed.segments {
        let mut content = match *s {
            Segment::Zero(len) => {
                out.put_bytes(0, usize::try_from(len).unwrap_or(0));
                recipe.zero(len);
                continue;
            }
            Segment::Literal(len) => {
                let n = usize::try_from(len).unwrap_or(usize::MAX);
                let (bytes, rest) = lit.split_at_checked(n).ok_or(SegmentsError::Truncated)?;
                lit = rest;
                keep(store, bytes, recipe);
                out.put_slice(bytes);
                continue;
            }
            Segment::Ref { len, hash } => {
                out.put_slice(&held(store, hash, len)?);
                recipe.content(len, hash);
                continue;
            }
            Segment::ShortRef { len, key } => {
                let (hash, content) = held_by_key(store, key, len, &mut check)?;
                out.put_slice(&content);
                recipe.content(len, hash);
                continue;
            }
            Segment::Recipe { len, hash } => {
                recipe::cook(store, hash, len, &mut out, recipe)?;
                continue;
            }
            // A delta: its base, XOR the next bytes of the block.
            Segment::Delta { len, base } => held(store, base, len)?,
            Segment::ShortDelta { len, key } => held_by_key(store, key, len, &mut check)?.1,
        };
        let (xor, rest) = lit
            .split_at_checked(content.len())
            .ok_or(SegmentsError::Truncated)?;
        lit = rest;
        for (c, x) in content.iter_mut().zip(xor) {
            *c ^= x;
        }
        keep(store, &content, recipe);
        out.put_slice(&content);
    }
    match parsed.check {
        Some(want) if want != check_bytes(&check) => Err(SegmentsError::Unverified),
        _ => Ok(out.freeze()),
    }
}

/// Stores a received segment of at least [`MIN_STORED`] bytes in `store`, so that later
/// frames and sessions can reference it, and adds it to `recipe` (a shorter one inline); a
/// store that fails is logged (it is a cache).
fn keep(store: &mut DiskStore, bytes: &[u8], recipe: &mut recipe::Builder) {
    if bytes.len() < MIN_STORED {
        recipe.inline(bytes);
        return;
    }
    let hash = ContentHash::of(bytes);
    recipe.content(u32::try_from(bytes.len()).unwrap_or(u32::MAX), hash);
    if let Err(e) = store.put(hash, bytes) {
        tracing::warn!(error = %crate::amst::sender::error_chain(&e), "could not store a received segment");
    }
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

/// The one hash `store` lists under `key` and the content it holds under it (see [`held`]),
/// that hash added to the frame's `check`.
fn held_by_key(
    store: &mut DiskStore,
    key: HashKey,
    len: u32,
    check: &mut blake3::Hasher,
) -> Result<(ContentHash, Vec<u8>), SegmentsError> {
    let hash = store
        .hash_by_key(key)
        .ok_or_else(|| SegmentsError::Missing(vec![ContentHash::from_key(key)]))?;
    check.update(&hash.0);
    Ok((hash, held(store, hash, len)?))
}

/// The content `store` holds under `hash`; missing (to be asked for) when it holds none or
/// cannot read it (logged).
pub(crate) fn stored(store: &mut DiskStore, hash: ContentHash) -> Result<Vec<u8>, SegmentsError> {
    match store.get(&hash) {
        Ok(Some(content)) => Ok(content),
        Ok(None) => Err(SegmentsError::Missing(vec![hash])),
        Err(e) => {
            tracing::warn!(error = %crate::amst::sender::error_chain(&e), %hash, "could not read the content store");
            Err(SegmentsError::Missing(vec![hash]))
        }
    }
}

/// The content `store` holds under `hash`, which the frame says is `len` bytes long.
pub(crate) fn held(
    store: &mut DiskStore,
    hash: ContentHash,
    len: u32,
) -> Result<Vec<u8>, SegmentsError> {
    let content = stored(store, hash)?;
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
