//! HDE items in data frames (payload kind `Hde`, docs/dwcp-wire.md section 10): how the
//! sender encodes one chunk and how the receiver decodes one frame, within a bound.
//!
//! One data frame carries one chunk. An all-zero chunk goes as a 5-byte `Zero` item; otherwise
//! the chunk is compressed with the codec in force and goes as a `Compressed` item when that is
//! smaller than the chunk itself. Anything else goes as a plain `Raw` frame: the same bytes as a
//! `Raw` item without its 5-byte header and without copying the chunk into an item buffer.
//! Receivers accept `Raw` items too. `Ref` and `Delta` items are refused: references need a
//! path for the receiver to ask for missing content, which this version does not have.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::hde::item::{COMPRESSED_HEADER_LEN, KIND_COMPRESSED};
use crate::hde::{Codec, CodecChoice, CodecError, Encoded, ItemError, codec, decode_item};
use crate::wire::PayloadKind;

/// What compressing one chunk measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observation {
    /// The choice the chunk was compressed with.
    pub(crate) choice: CodecChoice,
    /// Bytes in.
    pub(crate) original: u64,
    /// Bytes out (the compressed bytes, whether they were sent or not).
    pub(crate) compressed: u64,
    /// Time spent compressing, on one thread.
    pub(crate) cpu: Duration,
}

/// One chunk as it goes on the wire.
#[derive(Debug)]
pub(crate) struct EncodedChunk {
    /// `Raw` (the chunk as it is) or `Hde` (one item).
    pub(crate) kind: PayloadKind,
    /// The frame's payload.
    pub(crate) payload: Bytes,
    /// Set when the chunk was compressed (kept or not).
    pub(crate) observed: Option<Observation>,
    /// The chunk itself, kept while the frame is in flight when it holds references, so that
    /// it can be sent again as literals if the receiver lacks one (`Need`).
    pub(crate) original: Option<Bytes>,
    /// Stream bytes sent as references.
    pub(crate) ref_bytes: u64,
}

/// Encodes a non-empty chunk of at most 16 MiB for a session that negotiated HDE.
///
/// # Errors
/// [`CodecError`] when the compressor fails; [`ItemError`] cannot happen for a chunk that fits
/// a frame and is reported as a codec failure of zstd's kind if it ever did.
pub(crate) fn encode_chunk(chunk: Bytes, choice: CodecChoice) -> Result<EncodedChunk, CodecError> {
    if crate::hde::is_zero(&chunk) {
        if let Some(zero) = zero_chunk(chunk.len()) {
            return Ok(zero);
        }
    }
    let Some((codec, level)) = choice.codec() else {
        return Ok(raw(chunk, None));
    };
    let started = Instant::now();
    let bytes = codec::compress(codec, level, &chunk)?;
    let observed = Some(Observation {
        choice,
        original: chunk.len() as u64,
        compressed: bytes.len() as u64,
        cpu: started.elapsed(),
    });
    if COMPRESSED_HEADER_LEN + bytes.len() >= chunk.len() {
        return Ok(raw(chunk, observed));
    }
    let mut item = Vec::with_capacity(COMPRESSED_HEADER_LEN + bytes.len());
    let compressed = Encoded::Compressed {
        codec,
        level,
        bytes,
    };
    if crate::hde::encode_item(&compressed, &mut item).is_err() {
        // Only a length over 4 GiB fails, and a frame holds 16 MiB.
        return Ok(raw(chunk, observed));
    }
    Ok(EncodedChunk {
        kind: PayloadKind::Hde,
        payload: Bytes::from(item),
        observed,
        original: None,
        ref_bytes: 0,
    })
}

/// The 5-byte `Zero` item of an all-zero chunk of `len` bytes (`None` past 4 GiB, which no
/// frame holds).
pub(crate) fn zero_chunk(len: usize) -> Option<EncodedChunk> {
    let len = u32::try_from(len).ok()?;
    let mut item = Vec::with_capacity(crate::hde::item::ZERO_LEN);
    crate::hde::encode_item(&Encoded::Zero { len }, &mut item).ok()?;
    Some(EncodedChunk {
        kind: PayloadKind::Hde,
        payload: Bytes::from(item),
        observed: None,
        original: None,
        ref_bytes: 0,
    })
}

fn raw(chunk: Bytes, observed: Option<Observation>) -> EncodedChunk {
    EncodedChunk {
        kind: PayloadKind::Raw,
        payload: chunk,
        observed,
        original: None,
        ref_bytes: 0,
    }
}

/// Why an `Hde` payload was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HdeFrameError {
    /// The item itself is malformed or over the limit.
    #[error(transparent)]
    Item(#[from] ItemError),
    /// The compressed bytes are malformed or decompress to more than the limit.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A kind this version does not accept in a data frame.
    #[error("{0} items are not accepted in data frames (only zero, compressed and raw)")]
    Unsupported(&'static str),
    /// Bytes after the item.
    #[error("{0} bytes follow the item in its frame")]
    Trailing(usize),
    /// The item decodes to nothing.
    #[error("the item decodes to no bytes")]
    Empty,
}

/// Whether decoding `payload` means decompressing (worth a blocking thread), rather than a
/// length check and a copy.
pub(crate) fn is_heavy(payload: &[u8]) -> bool {
    payload.first() == Some(&KIND_COMPRESSED)
}

/// Decodes the one item of an `Hde` payload into at most `limit` stream bytes. Every length is
/// checked against `limit` before anything is allocated; decompression writes into a buffer of
/// `limit` bytes and refuses input that would produce more.
///
/// # Errors
/// [`HdeFrameError`] saying what is wrong; nothing is returned for a malformed item.
pub(crate) fn decode_payload(payload: &[u8], limit: usize) -> Result<Bytes, HdeFrameError> {
    let (item, used) = decode_item(payload, limit)?;
    if used != payload.len() {
        return Err(HdeFrameError::Trailing(payload.len().saturating_sub(used)));
    }
    let out = match item {
        Encoded::Zero { len } => {
            let len = usize::try_from(len).map_err(|_| HdeFrameError::Empty)?;
            Bytes::from(vec![0u8; len])
        }
        Encoded::Raw(bytes) => Bytes::from(bytes),
        Encoded::Compressed { codec, bytes, .. } => {
            Bytes::from(codec::decompress(codec, &bytes, limit)?)
        }
        other @ (Encoded::Ref(_) | Encoded::Delta { .. }) => {
            return Err(HdeFrameError::Unsupported(other.kind_name()));
        }
    };
    if out.is_empty() {
        return Err(HdeFrameError::Empty);
    }
    Ok(out)
}

/// The compressor of `choice`, for logs and summaries: `none`, `lz4`, `zstd-N`.
pub(crate) fn choice_name(choice: CodecChoice) -> String {
    match choice.codec() {
        None | Some((Codec::Invalid, _)) => "none".to_owned(),
        Some((Codec::Lz4, _)) => "lz4".to_owned(),
        Some((Codec::Zstd, level)) => format!("zstd-{level}"),
    }
}

#[cfg(test)]
#[path = "hde_frame_test.rs"]
mod hde_frame_test;
