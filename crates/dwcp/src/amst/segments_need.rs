//! What a receiver asks for when a `Segments` frame names content its store lacks (`Need`,
//! docs/dwcp-wire.md section 11.3), and the frame a sender sends again in answer.

use bytes::Bytes;

use super::{Cursor, Segment, SegmentsError, literals, pack, parse, write};
use crate::hde::{Codec, ContentHash, DiskStore};

/// Most hashes one `Need` names: a frame that lacks more is sent again with every segment as
/// a literal.
pub(crate) const MAX_NEED_HASHES: usize = 64;
/// Highest zstd level a frame sent again after a `Need` is compressed at: the stream waits for
/// it, and the level its producer chose can be one that takes a tenth of a second.
const NEED_LEVEL: i8 = 3;

/// What a `Need` for a frame of `segments` names: `found` (the content found missing while
/// decoding) and every other reference and delta base `store` does not list, each once;
/// nothing when that is more than [`MAX_NEED_HASHES`].
///
/// A short reference's content is named by its key when the store lists no hash (or two)
/// under it, by the first bytes of the hash named otherwise; once per key.
pub(super) fn missing(
    segments: &[Segment],
    store: &DiskStore,
    found: Vec<ContentHash>,
) -> Vec<ContentHash> {
    let mut out = found;
    for s in segments {
        match *s {
            Segment::Ref { hash, .. }
            | Segment::Delta { base: hash, .. }
            | Segment::Recipe { hash, .. } => {
                if !out.contains(&hash) && !store.contains(&hash) {
                    out.push(hash);
                }
            }
            Segment::ShortRef { key, .. } | Segment::ShortDelta { key, .. } => {
                if !out.iter().any(|h| h.key() == key) && store.hash_by_key(key).is_none() {
                    out.push(ContentHash::from_key(key));
                }
            }
            Segment::Zero(_) | Segment::Literal(_) => {}
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
/// is in `missing` (a short one's: a hash there with its key) sent as a literal; the rest as it was, the literal block compressed with
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
        let in_old = matches!(
            s,
            Segment::Literal(_) | Segment::Delta { .. } | Segment::ShortDelta { .. }
        )
        .then(|| {
            let range = old_at..old_at.saturating_add(len);
            old_at = range.end;
            range
        });
        match s {
            Segment::Zero(_) => segments.push(s),
            Segment::Ref { hash, .. } | Segment::Recipe { hash, .. }
                if !missing.contains(&hash) =>
            {
                segments.push(s);
            }
            // The chunk's bytes are the content referenced: named in full, the frame is
            // written short again with its check.
            Segment::ShortRef { len, key } if !missing.iter().any(|m| m.key() == key) => {
                segments.push(Segment::Ref {
                    len,
                    hash: ContentHash::of(bytes),
                });
            }
            Segment::Delta { base, .. } if !prefixed && !missing.contains(&base) => {
                let xor = in_old
                    .and_then(|range| old.get(range))
                    .ok_or(SegmentsError::Truncated)?;
                segments.push(s);
                block.extend_from_slice(xor);
            }
            // A literal, content the receiver lacks, or a delta whose base is named by its key
            // alone: the chunk's bytes.
            Segment::Ref { len, .. }
            | Segment::Recipe { len, .. }
            | Segment::ShortRef { len, .. }
            | Segment::Literal(len)
            | Segment::Delta { len, .. }
            | Segment::ShortDelta { len, .. } => {
                segments.push(Segment::Literal(len));
                block.extend_from_slice(bytes);
            }
        }
    }
    let mut block_codec = None;
    // A frame that had no literals (references, a recipe) has no codec to go by: zstd.
    let codec = match parsed.codec {
        None if parsed.literal_len == 0 => Some(Codec::Zstd),
        codec => codec,
    };
    if let Some(codec) = codec.filter(|_| !block.is_empty()) {
        let level = match (codec, parsed.codec) {
            (Codec::Zstd, Some(_)) => parsed.level.min(NEED_LEVEL),
            (Codec::Zstd, None) => NEED_LEVEL,
            _ => parsed.level,
        };
        let packed = pack(block, codec, level, &[])?;
        (block, block_codec) = (packed.block, packed.codec);
    }
    Ok(write(
        &segments,
        block_codec,
        &block,
        parsed.check.is_some(),
    ))
}
