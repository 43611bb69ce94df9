//! Control message payloads (`Hello`, `HelloAck`, `Error`): small big-endian records whose
//! every length is checked against the bytes present.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireError;

/// Longest file name a `Hello` may carry, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Longest error message an `Error` frame may carry, in bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Feature bit: data frames may carry [`super::PayloadKind::Hde`] items.
pub const FEATURE_HDE: u32 = 1;
/// Feature bit: data frames may carry [`super::PayloadKind::Segments`], whose references name
/// content in the receiver's store; the receiver sends an `Index` and answers `Need`. Only
/// together with [`FEATURE_HDE`].
pub const FEATURE_DEDUP: u32 = 2;
/// Feature bit: the receiver reports each data frame it holds ahead of the bytes it
/// acknowledged (`Held`), so that the sender's window counts only what has yet to cross.
pub const FEATURE_HELD: u32 = 4;
/// Feature bit: the literal block of a [`super::PayloadKind::Segments`] payload may be
/// compressed against the stream bytes right before its frame (block codec 3), which the
/// receiver keeps. Only together with [`FEATURE_DEDUP`].
pub const FEATURE_PREFIX: u32 = 8;
/// Feature bit: references and delta bases of a [`super::PayloadKind::Segments`] payload may
/// name their content by the first 8 bytes of its hash, the frame carrying a check over the
/// full hashes (docs/dwcp-wire.md section 11.1). Only together with [`FEATURE_DEDUP`].
pub const FEATURE_SHORT_REFS: u32 = 16;
/// Feature bit: a segment of a [`super::PayloadKind::Segments`] payload may stand for the
/// segments of an earlier frame, named by the hash of its recipe, which the receiver stores
/// for each frame it decodes (docs/dwcp-wire.md section 11.7). Only together with
/// [`FEATURE_DEDUP`].
pub const FEATURE_RECIPES: u32 = 32;
/// Every feature bit this build knows.
pub const KNOWN_FEATURES: u32 = FEATURE_HDE
    | FEATURE_DEDUP
    | FEATURE_HELD
    | FEATURE_PREFIX
    | FEATURE_SHORT_REFS
    | FEATURE_RECIPES;

/// A cursor over a control payload that fails instead of reading past the end.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (head, rest) = self
            .buf
            .split_at_checked(n)
            .ok_or(WireError::MalformedControl {
                what: self.what,
                reason: "too short",
            })?;
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn string(&mut self, max: usize) -> Result<String, WireError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(self.malformed("string over its length limit"));
        }
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| self.malformed("string is not UTF-8"))
    }

    /// An optional trailing `features: u32`: absent is 0; present, it must not be 0, so that
    /// every record has exactly one encoding.
    fn features(&mut self) -> Result<u32, WireError> {
        if self.buf.is_empty() {
            return Ok(0);
        }
        let features = self.u32()?;
        if features == 0 {
            return Err(self.malformed("features field present but zero"));
        }
        Ok(features)
    }

    fn finish(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.malformed("trailing bytes"))
        }
    }

    fn malformed(&self, reason: &'static str) -> WireError {
        WireError::MalformedControl {
            what: self.what,
            reason,
        }
    }
}

fn put_string(out: &mut BytesMut, s: &str, max: usize) {
    // Longer strings are cut at a character boundary so the record stays decodable.
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.get(..end).unwrap_or_default();
    out.put_u16(u16::try_from(cut.len()).unwrap_or(0));
    out.put_slice(cut.as_bytes());
}

/// Why a connection opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HelloMode {
    /// First connection of a new session.
    Open = 1,
    /// Another connection for a session already open on the receiver.
    Join = 2,
    /// First connection of a new session that continues an earlier partial transfer.
    Resume = 3,
}

/// The sender's first frame on each connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Open, join or resume.
    pub mode: HelloMode,
    /// Index of this connection within the session (0 for the first).
    pub conn_index: u16,
    /// Stream length in bytes, `None` when unknown in advance (a pipe).
    pub total_len: Option<u64>,
    /// Payload size of data frames in bytes.
    pub chunk_size: u32,
    /// File name to store the stream under on the receiver.
    pub name: String,
    /// Features the sender asks for (bits such as [`FEATURE_HDE`]); 0 sends the original
    /// 17-byte-plus-name record, which every receiver understands.
    pub features: u32,
}

impl Hello {
    /// Encodes the payload.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(32 + self.name.len());
        out.put_u8(self.mode as u8);
        out.put_u16(self.conn_index);
        out.put_u64(self.total_len.unwrap_or(u64::MAX));
        out.put_u32(self.chunk_size);
        put_string(&mut out, &self.name, MAX_NAME_LEN);
        if self.features != 0 {
            out.put_u32(self.features);
        }
        out.freeze()
    }

    /// Decodes and bounds-checks the payload.
    ///
    /// # Errors
    /// [`WireError::MalformedControl`] when any field is missing, unknown or over its limit.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader { buf, what: "Hello" };
        let mode = match r.u8()? {
            1 => HelloMode::Open,
            2 => HelloMode::Join,
            3 => HelloMode::Resume,
            _ => return Err(r.malformed("unknown mode")),
        };
        let conn_index = r.u16()?;
        let total_len = Some(r.u64()?).filter(|len| *len != u64::MAX);
        let chunk_size = r.u32()?;
        if chunk_size == 0 || chunk_size > super::MAX_PAYLOAD {
            return Err(r.malformed("chunk size out of range"));
        }
        let name = r.string(MAX_NAME_LEN)?;
        let features = r.features()?;
        r.finish()?;
        Ok(Self {
            mode,
            conn_index,
            total_len,
            chunk_size,
            name,
            features,
        })
    }
}

/// The receiver's answer to a `Hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloAck {
    /// Offset the sender starts at: 0 for a new session, the stored length when resuming, and
    /// the session's acknowledged offset when joining.
    pub start_offset: u64,
    /// Bytes the receiver buffers ahead of its write position; the sender keeps no more than
    /// this unacknowledged.
    pub window: u64,
    /// Most connections the receiver accepts for one session.
    pub max_streams: u16,
    /// Features the receiver confirms: a subset of those the `Hello` asked for. 0 sends the
    /// original 18-byte record, which is what an old sender expects.
    pub features: u32,
}

impl HelloAck {
    /// Encodes the payload.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(22);
        out.put_u64(self.start_offset);
        out.put_u64(self.window);
        out.put_u16(self.max_streams);
        if self.features != 0 {
            out.put_u32(self.features);
        }
        out.freeze()
    }

    /// Decodes and bounds-checks the payload.
    ///
    /// # Errors
    /// [`WireError::MalformedControl`] when any field is missing or zero where it must not be.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader {
            buf,
            what: "HelloAck",
        };
        let ack = Self {
            start_offset: r.u64()?,
            window: r.u64()?,
            max_streams: r.u16()?,
            features: r.features()?,
        };
        r.finish()?;
        if ack.window == 0 || ack.max_streams == 0 {
            return Err(r.malformed("zero window or stream limit"));
        }
        Ok(ack)
    }
}

/// Machine-readable class of a session failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// A class this build does not know; the message still says what happened.
    Other = 0,
    /// The peer broke the protocol.
    Protocol = 1,
    /// The requested name is not acceptable (path traversal, empty, too long).
    BadName = 2,
    /// The receiver could not store the data (disk full, permission denied).
    Storage = 3,
    /// The end-to-end checksum did not match.
    Integrity = 4,
    /// No session matches a `Join`, or a resume has nothing to continue.
    NoSession = 5,
    /// The receiver is at its limit of sessions or connections.
    Busy = 6,
    /// The sender gave up (its source failed or it was interrupted).
    Aborted = 7,
}

impl ErrorCode {
    fn from_u16(value: u16) -> Self {
        match value {
            1 => Self::Protocol,
            2 => Self::BadName,
            3 => Self::Storage,
            4 => Self::Integrity,
            5 => Self::NoSession,
            6 => Self::Busy,
            7 => Self::Aborted,
            _ => Self::Other,
        }
    }
}

/// Payload of an `Error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMessage {
    /// What kind of failure.
    pub code: ErrorCode,
    /// One line for a person, at most [`MAX_MESSAGE_LEN`] bytes.
    pub message: String,
}

impl ErrorMessage {
    /// Encodes the payload, cutting an over-long message.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(4 + self.message.len().min(MAX_MESSAGE_LEN));
        out.put_u16(self.code as u16);
        put_string(&mut out, &self.message, MAX_MESSAGE_LEN);
        out.freeze()
    }

    /// Decodes and bounds-checks the payload.
    ///
    /// # Errors
    /// [`WireError::MalformedControl`] when the record is short, over-long or not UTF-8.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader { buf, what: "Error" };
        let code = ErrorCode::from_u16(r.u16()?);
        let message = r.string(MAX_MESSAGE_LEN)?;
        r.finish()?;
        Ok(Self { code, message })
    }
}
