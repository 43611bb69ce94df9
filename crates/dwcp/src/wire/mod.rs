//! The DWCP wire format: fixed-size frame headers, typed frame and payload kinds, control
//! messages, and bounded async readers and writers.
//!
//! Every frame is a 56-byte header followed by `length` payload bytes. The header carries its
//! own CRC32C, and the payload's CRC32C, so corruption is caught per frame before the
//! end-to-end BLAKE3 check. See `docs/dwcp-wire.md` for the byte layout.
//!
//! ```text
//! sender                                   receiver
//!   | -- Hello(open|join|resume) ------------> |   first frame on every connection
//!   | <------------------------- HelloAck ---- |   start offset, window, stream limit
//!   | -- Data(seq, offset, bytes) ----------> |   striped over the connections
//!   | <------------------ Ack(offset) -------- |   contiguous bytes written
//!   | -- End(length, blake3) ----------------> |
//!   | <---------------- Done(length, blake3) - |   verified and renamed into place
//!   | <------------ Error(code, message) ----> |   either side, then close
//! ```

mod codec;
mod control;
mod header;

#[cfg(test)]
mod codec_test;
#[cfg(test)]
mod control_test;

pub use codec::{read_frame, read_frame_in, write_frame};
pub use control::{
    ErrorCode, ErrorMessage, FEATURE_DEDUP, FEATURE_HDE, FEATURE_HELD, FEATURE_PREFIX,
    FEATURE_RECIPES, FEATURE_SHORT_REFS, Hello, HelloAck, HelloMode, KNOWN_FEATURES,
    MAX_MESSAGE_LEN,
};
pub use header::{
    FrameHeader, FrameKind, HEADER_LEN, MAGIC, MAX_CONTROL_PAYLOAD, MAX_INDEX_PAYLOAD, MAX_PAYLOAD,
    PayloadKind, SessionId, VERSION,
};

use bytes::Bytes;

/// A whole frame: its header and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The decoded, validated header.
    pub header: FrameHeader,
    /// Exactly `header.length` bytes whose CRC32C matched `header.payload_crc`.
    pub payload: Bytes,
}

impl Frame {
    /// Builds a frame, filling in the payload length and checksum.
    ///
    /// # Errors
    /// [`WireError::PayloadTooLarge`] if the payload is over the kind's limit.
    pub fn new(
        kind: FrameKind,
        payload_kind: PayloadKind,
        session: SessionId,
        seq: u64,
        offset: u64,
        payload: Bytes,
    ) -> Result<Self, WireError> {
        let limit = kind.max_payload();
        let length = u32::try_from(payload.len())
            .ok()
            .filter(|len| *len <= limit)
            .ok_or(WireError::PayloadTooLarge {
                length: payload.len() as u64,
                limit,
            })?;
        Ok(Self {
            header: FrameHeader {
                version: VERSION,
                kind,
                payload_kind,
                session,
                seq,
                offset,
                length,
                payload_crc: crc32c::crc32c(&payload),
            },
            payload,
        })
    }

    /// A control frame (no stream data) of `kind` with an encoded control payload.
    ///
    /// # Errors
    /// [`WireError::PayloadTooLarge`] if the payload is over the control limit.
    pub fn control(
        kind: FrameKind,
        session: SessionId,
        offset: u64,
        payload: Bytes,
    ) -> Result<Self, WireError> {
        Self::new(kind, PayloadKind::Control, session, 0, offset, payload)
    }

    /// Parses one frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a frame, or the frame and the number of
    /// bytes it used.
    ///
    /// # Errors
    /// Any [`WireError`] that makes the bytes an invalid frame.
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, WireError> {
        let Some(head) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let header = FrameHeader::decode(head)?;
        let end = HEADER_LEN + header.length as usize;
        let Some(payload) = buf.get(HEADER_LEN..end) else {
            return Ok(None);
        };
        header.verify_payload(payload)?;
        Ok(Some((
            Self {
                header,
                payload: Bytes::copy_from_slice(payload),
            },
            end,
        )))
    }

    /// The header followed by the payload, as one buffer.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&self.payload);
        out
    }
}

/// What was wrong with bytes read off the wire.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The first four bytes are not `DWCP`.
    #[error("not a DWCP frame (bad magic {found:02x?})")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The peer speaks a protocol version this end does not.
    #[error("unsupported DWCP version {found} (this end speaks {VERSION})")]
    UnsupportedVersion {
        /// The version in the frame.
        found: u16,
    },
    /// The frame kind is not one this version defines.
    #[error("unknown frame kind {0}")]
    UnknownFrameKind(u16),
    /// The payload kind is not one this version defines.
    #[error("unknown payload kind {0}")]
    UnknownPayloadKind(u16),
    /// Reserved flag bits were set.
    #[error("reserved flags set: {0:#06x}")]
    ReservedFlags(u16),
    /// The declared payload length is over the limit for the frame kind.
    #[error("payload of {length} bytes is over the {limit}-byte limit")]
    PayloadTooLarge {
        /// The declared or actual length.
        length: u64,
        /// The limit for this frame kind.
        limit: u32,
    },
    /// The header's own checksum does not match its bytes.
    #[error("frame header checksum mismatch")]
    HeaderChecksum,
    /// The payload's checksum does not match the one in the header.
    #[error("payload checksum mismatch in frame seq {seq} at offset {offset}")]
    PayloadChecksum {
        /// Sequence number of the damaged frame.
        seq: u64,
        /// Stream offset of the damaged frame.
        offset: u64,
    },
    /// A control payload could not be parsed.
    #[error("malformed {what} payload: {reason}")]
    MalformedControl {
        /// Which message.
        what: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// The connection ended in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// Reading or writing the connection failed.
    #[error("connection I/O failed")]
    Io(#[from] std::io::Error),
}
