//! The fixed 56-byte frame header and the kinds it names.

use super::WireError;

/// The four bytes every frame starts with.
pub const MAGIC: [u8; 4] = *b"DWCP";
/// The protocol version this build speaks.
pub const VERSION: u16 = 1;
/// Size of an encoded header in bytes.
pub const HEADER_LEN: usize = 56;
/// Largest payload a data frame may carry (16 MiB).
pub const MAX_PAYLOAD: u32 = 16 << 20;
/// Largest payload a control frame may carry (64 KiB).
pub const MAX_CONTROL_PAYLOAD: u32 = 64 << 10;
/// Largest payload an `Index` frame may carry: a 4 MiB filter and its 5-byte header.
pub const MAX_INDEX_PAYLOAD: u32 = (4 << 20) + 5;

/// A 128-bit random session identifier chosen by the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// A fresh random session id.
    #[must_use]
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What a frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum FrameKind {
    /// Never valid on the wire.
    Invalid = 0,
    /// Sender's first frame on a connection: opens, joins or resumes a session.
    Hello = 1,
    /// Receiver's answer to `Hello`.
    HelloAck = 2,
    /// A piece of the stream at `offset`.
    Data = 3,
    /// Receiver: every byte below `offset` is written.
    Ack = 4,
    /// Sender: the stream is `offset` bytes long; payload is its BLAKE3.
    End = 5,
    /// Receiver: the stream was verified and stored; payload is its BLAKE3.
    Done = 6,
    /// Either side: the session failed; payload is an [`super::ErrorMessage`].
    Error = 7,
    /// Sender: this connection carries no more data and will close.
    Close = 8,
    /// Receiver, once per session right after the first `HelloAck` that confirmed
    /// [`super::FEATURE_DEDUP`]: what its content store holds (a [`crate::hde::ContentIndex`]).
    Index = 9,
    /// Receiver: the data frame at `offset` references content it does not hold; the sender
    /// sends that frame's bytes again, as literals.
    Need = 10,
    /// Receiver, on a session that confirmed [`super::FEATURE_HELD`]: it holds the data frame
    /// at `offset`, ahead of the bytes it acknowledged; the frame need not cross again.
    Held = 11,
}

impl FrameKind {
    /// Largest payload a frame of this kind may carry.
    #[must_use]
    pub const fn max_payload(self) -> u32 {
        match self {
            Self::Data => MAX_PAYLOAD,
            Self::Index => MAX_INDEX_PAYLOAD,
            Self::Invalid
            | Self::Hello
            | Self::HelloAck
            | Self::Ack
            | Self::End
            | Self::Done
            | Self::Error
            | Self::Close
            | Self::Need
            | Self::Held => MAX_CONTROL_PAYLOAD,
        }
    }
}

impl TryFrom<u16> for FrameKind {
    type Error = WireError;

    fn try_from(value: u16) -> Result<Self, WireError> {
        Ok(match value {
            1 => Self::Hello,
            2 => Self::HelloAck,
            3 => Self::Data,
            4 => Self::Ack,
            5 => Self::End,
            6 => Self::Done,
            7 => Self::Error,
            8 => Self::Close,
            9 => Self::Index,
            10 => Self::Need,
            11 => Self::Held,
            other => return Err(WireError::UnknownFrameKind(other)),
        })
    }
}

/// How a frame's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum PayloadKind {
    /// Never valid on the wire.
    Invalid = 0,
    /// A control message of the frame kind (see [`super::Hello`], [`super::HelloAck`] and
    /// [`super::ErrorMessage`]).
    Control = 1,
    /// Stream bytes as they are.
    Raw = 2,
    /// One HDE item (`Zero`, `Compressed` or `Raw`) that decodes to the stream bytes at the
    /// frame's offset; only on sessions whose `HelloAck` confirmed [`super::FEATURE_HDE`].
    Hde = 3,
    /// A segment list (zero runs, references to content the receiver holds, literals) and one
    /// block of literal bytes; only on sessions whose `HelloAck` confirmed
    /// [`super::FEATURE_DEDUP`] (docs/dwcp-wire.md section 11).
    Segments = 4,
}

impl TryFrom<u16> for PayloadKind {
    type Error = WireError;

    fn try_from(value: u16) -> Result<Self, WireError> {
        match value {
            1 => Ok(Self::Control),
            2 => Ok(Self::Raw),
            3 => Ok(Self::Hde),
            4 => Ok(Self::Segments),
            other => Err(WireError::UnknownPayloadKind(other)),
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Protocol version ([`VERSION`]).
    pub version: u16,
    /// What the frame is for.
    pub kind: FrameKind,
    /// How the payload is encoded.
    pub payload_kind: PayloadKind,
    /// The session the frame belongs to.
    pub session: SessionId,
    /// Data frames: sequence number in the session, from 0. Others: 0.
    pub seq: u64,
    /// Data frames: stream offset of the first payload byte. Ack/End/Done: a stream length.
    pub offset: u64,
    /// Payload length in bytes.
    pub length: u32,
    /// CRC32C of the payload.
    pub payload_crc: u32,
}

/// Reads a big-endian integer of `N` bytes at `at`; the caller guarantees the range.
fn field<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = buf.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

impl FrameHeader {
    /// Encodes the header, computing its own checksum.
    #[must_use]
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        fn put(b: &mut [u8; HEADER_LEN], at: usize, bytes: &[u8]) {
            if let Some(dst) = b.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        let mut b = [0u8; HEADER_LEN];
        put(&mut b, 0, &MAGIC);
        put(&mut b, 4, &self.version.to_be_bytes());
        put(&mut b, 6, &(self.kind as u16).to_be_bytes());
        put(&mut b, 8, &(self.payload_kind as u16).to_be_bytes());
        put(&mut b, 10, &0u16.to_be_bytes());
        put(&mut b, 12, &self.length.to_be_bytes());
        put(&mut b, 16, &self.session.0);
        put(&mut b, 32, &self.seq.to_be_bytes());
        put(&mut b, 40, &self.offset.to_be_bytes());
        put(&mut b, 48, &self.payload_crc.to_be_bytes());
        let crc = crc32c::crc32c(b.get(..52).unwrap_or_default());
        put(&mut b, 52, &crc.to_be_bytes());
        b
    }

    /// Decodes and validates a header from its first [`HEADER_LEN`] bytes.
    ///
    /// # Errors
    /// A [`WireError`] naming the first thing wrong: short input, magic, checksum, version,
    /// kinds, flags or an over-limit length.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let buf = buf.get(..HEADER_LEN).ok_or(WireError::Truncated)?;
        let magic: [u8; 4] = field(buf, 0);
        if magic != MAGIC {
            return Err(WireError::BadMagic { found: magic });
        }
        let crc = u32::from_be_bytes(field(buf, 52));
        if crc32c::crc32c(buf.get(..52).unwrap_or_default()) != crc {
            return Err(WireError::HeaderChecksum);
        }
        let version = u16::from_be_bytes(field(buf, 4));
        if version != VERSION {
            return Err(WireError::UnsupportedVersion { found: version });
        }
        let kind = FrameKind::try_from(u16::from_be_bytes(field(buf, 6)))?;
        let payload_kind = PayloadKind::try_from(u16::from_be_bytes(field(buf, 8)))?;
        let flags = u16::from_be_bytes(field(buf, 10));
        if flags != 0 {
            return Err(WireError::ReservedFlags(flags));
        }
        let length = u32::from_be_bytes(field(buf, 12));
        let limit = kind.max_payload();
        if length > limit {
            return Err(WireError::PayloadTooLarge {
                length: u64::from(length),
                limit,
            });
        }
        Ok(Self {
            version,
            kind,
            payload_kind,
            session: SessionId(field(buf, 16)),
            seq: u64::from_be_bytes(field(buf, 32)),
            offset: u64::from_be_bytes(field(buf, 40)),
            length,
            payload_crc: u32::from_be_bytes(field(buf, 48)),
        })
    }

    /// Checks that `payload` is this header's payload.
    ///
    /// # Errors
    /// [`WireError::Truncated`] on a length mismatch, [`WireError::PayloadChecksum`] on a
    /// checksum mismatch.
    pub fn verify_payload(&self, payload: &[u8]) -> Result<(), WireError> {
        if payload.len() != self.length as usize {
            return Err(WireError::Truncated);
        }
        if crc32c::crc32c(payload) != self.payload_crc {
            return Err(WireError::PayloadChecksum {
                seq: self.seq,
                offset: self.offset,
            });
        }
        Ok(())
    }
}
