//! The serialized form of an [`Encoded`] item, and its bounded parser.
//!
//! Every integer is big-endian. An item is a kind byte followed by that kind's fields:
//!
//! ```text
//! kind  name        fields after the kind byte                               size
//!   0   (invalid)   never valid
//!   1   Zero        len: u32                                                  5
//!   2   Ref         hash: [u8; 32] (BLAKE3-256 of the content)                33
//!   3   Delta       base_index: u64, delta_codec: u8, len: u32, bytes[len]   14 + len
//!   4   Compressed  codec: u8, level: i8, len: u32, bytes[len]                7 + len
//!   5   Raw         len: u32, bytes[len]                                      5 + len
//!
//! delta_codec: 1 = run-length (see `page`), 2 = lz4 block of the XOR
//! codec:       1 = lz4 block (level must be 0), 2 = zstd frame (level -7..=22)
//! ```
//!
//! The parser takes a limit: no `len` (of content for Zero, of payload bytes otherwise) may
//! exceed it, so a peer cannot make the receiver allocate or decompress more than one page or
//! chunk. Lengths of zero are refused: no encoder emits an empty item.

use super::codec::{Codec, ZSTD_MAX_LEVEL, ZSTD_MIN_LEVEL};
use super::{ContentHash, DeltaCodec, Encoded};

/// Serialized size of a Zero item.
pub const ZERO_LEN: usize = 5;
/// Serialized size of a Ref item.
pub const REF_LEN: usize = 33;
/// Serialized size of a Delta item before its bytes.
pub const DELTA_HEADER_LEN: usize = 14;
/// Serialized size of a Compressed item before its bytes.
pub const COMPRESSED_HEADER_LEN: usize = 7;
/// Serialized size of a Raw item before its bytes.
pub const RAW_HEADER_LEN: usize = 5;

pub(crate) const KIND_ZERO: u8 = 1;
const KIND_REF: u8 = 2;
const KIND_DELTA: u8 = 3;
pub(crate) const KIND_COMPRESSED: u8 = 4;
const KIND_RAW: u8 = 5;

/// What is wrong with a serialized item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    /// The input ends before the item does.
    #[error("item truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the item needs (as far as known).
        needed: usize,
        /// Bytes given.
        available: usize,
    },
    /// The kind byte is not one this version defines.
    #[error("unknown item kind {0}")]
    UnknownKind(u8),
    /// The compression codec byte is not one this version defines.
    #[error("unknown compression codec {0}")]
    UnknownCodec(u8),
    /// The delta codec byte is not one this version defines.
    #[error("unknown delta codec {0}")]
    UnknownDeltaCodec(u8),
    /// The level is outside the codec's range.
    #[error("level {level} is invalid for codec {codec:?}")]
    BadLevel {
        /// The codec.
        codec: Codec,
        /// The level found.
        level: i8,
    },
    /// A length is over the limit the caller set.
    #[error("length {len} is over the {limit}-byte limit")]
    Oversize {
        /// The length found.
        len: u64,
        /// The limit.
        limit: usize,
    },
    /// A length is zero.
    #[error("empty item")]
    Empty,
    /// An item to encode has a length that does not fit its field.
    #[error("length {0} does not fit in an item")]
    TooLong(usize),
}

/// Appends the serialized form of `item` to `out`.
///
/// # Errors
/// [`ItemError::TooLong`] when a length does not fit in 32 bits.
pub fn encode_item(item: &Encoded, out: &mut Vec<u8>) -> Result<(), ItemError> {
    fn len32(bytes: &[u8]) -> Result<[u8; 4], ItemError> {
        u32::try_from(bytes.len())
            .map(u32::to_be_bytes)
            .map_err(|_| ItemError::TooLong(bytes.len()))
    }
    out.reserve(item.wire_len());
    match item {
        Encoded::Zero { len } => {
            out.push(KIND_ZERO);
            out.extend_from_slice(&len.to_be_bytes());
        }
        Encoded::Ref(hash) => {
            out.push(KIND_REF);
            out.extend_from_slice(&hash.0);
        }
        Encoded::Delta {
            base_index,
            codec,
            bytes,
        } => {
            let len = len32(bytes)?;
            out.push(KIND_DELTA);
            out.extend_from_slice(&base_index.to_be_bytes());
            out.push(*codec as u8);
            out.extend_from_slice(&len);
            out.extend_from_slice(bytes);
        }
        Encoded::Compressed {
            codec,
            level,
            bytes,
        } => {
            let len = len32(bytes)?;
            out.push(KIND_COMPRESSED);
            out.push(*codec as u8);
            out.extend_from_slice(&level.to_be_bytes());
            out.extend_from_slice(&len);
            out.extend_from_slice(bytes);
        }
        Encoded::Raw(bytes) => {
            let len = len32(bytes)?;
            out.push(KIND_RAW);
            out.extend_from_slice(&len);
            out.extend_from_slice(bytes);
        }
    }
    Ok(())
}

/// A cursor over untrusted input that reports how much it needed when it runs short.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ItemError> {
        let end = self.at.saturating_add(n);
        let out = self.buf.get(self.at..end).ok_or(ItemError::Truncated {
            needed: end,
            available: self.buf.len(),
        })?;
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ItemError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ItemError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    /// A 32-bit length, checked against `limit` and against zero.
    fn len(&mut self, limit: usize) -> Result<usize, ItemError> {
        let len = u32::from_be_bytes(self.array()?);
        let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
        if len_usize > limit {
            return Err(ItemError::Oversize {
                len: u64::from(len),
                limit,
            });
        }
        if len == 0 {
            return Err(ItemError::Empty);
        }
        Ok(len_usize)
    }
}

/// Parses one item from the front of `buf`; returns it and the number of bytes it used.
///
/// `limit` bounds every length in the item (for pages, [`super::PAGE_SIZE`]; for chunks, the
/// maximum chunk size).
///
/// # Errors
/// [`ItemError::Truncated`] when `buf` ends early; any other [`ItemError`] for a malformed item.
pub fn decode_item(buf: &[u8], limit: usize) -> Result<(Encoded, usize), ItemError> {
    let mut r = Reader { buf, at: 0 };
    let item = match r.u8()? {
        KIND_ZERO => {
            let len = r.len(limit)?;
            // `len` came from a u32 and fits.
            let len = u32::try_from(len).map_err(|_| ItemError::TooLong(len))?;
            Encoded::Zero { len }
        }
        KIND_REF => Encoded::Ref(ContentHash(r.array()?)),
        KIND_DELTA => {
            let base_index = u64::from_be_bytes(r.array()?);
            let codec = match r.u8()? {
                1 => DeltaCodec::Rle,
                2 => DeltaCodec::Lz4,
                other => return Err(ItemError::UnknownDeltaCodec(other)),
            };
            let len = r.len(limit)?;
            Encoded::Delta {
                base_index,
                codec,
                bytes: r.take(len)?.to_vec(),
            }
        }
        KIND_COMPRESSED => {
            let codec = match r.u8()? {
                1 => Codec::Lz4,
                2 => Codec::Zstd,
                other => return Err(ItemError::UnknownCodec(other)),
            };
            let level = i8::from_be_bytes(r.array()?);
            let level_ok = match codec {
                Codec::Lz4 => level == 0,
                Codec::Zstd => (ZSTD_MIN_LEVEL..=ZSTD_MAX_LEVEL).contains(&level),
                Codec::Invalid => false,
            };
            if !level_ok {
                return Err(ItemError::BadLevel { codec, level });
            }
            let len = r.len(limit)?;
            Encoded::Compressed {
                codec,
                level,
                bytes: r.take(len)?.to_vec(),
            }
        }
        KIND_RAW => {
            let len = r.len(limit)?;
            Encoded::Raw(r.take(len)?.to_vec())
        }
        other => return Err(ItemError::UnknownKind(other)),
    };
    Ok((item, r.at))
}
