//! Reading and writing frames on an async byte stream.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Frame, FrameHeader, HEADER_LEN, WireError};
use crate::bufpool::BufPool;

/// Reads one frame, checking header and payload before returning it.
///
/// Returns `Ok(None)` on a clean end of stream at a frame boundary.
///
/// # Errors
/// [`WireError::Truncated`] when the stream ends inside a frame; any header or payload error.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<Frame>, WireError> {
    read_frame_in(reader, None).await
}

/// [`read_frame`], with the payload's buffer from `pool` when it serves the payload's length
/// (see [`BufPool`]).
///
/// # Errors
/// As [`read_frame`].
pub async fn read_frame_in<R: AsyncRead + Unpin>(
    reader: &mut R,
    pool: Option<&Arc<BufPool>>,
) -> Result<Option<Frame>, WireError> {
    let mut head = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        let Some(dst) = head.get_mut(filled..) else {
            break;
        };
        let n = reader.read(dst).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(WireError::Truncated)
            };
        }
        filled += n;
    }
    // The length is bounded by `decode` before anything is allocated.
    let header = FrameHeader::decode(&head)?;
    let len = header.length as usize;
    // Read into spare capacity: no zeroing pass over a buffer that is about to be filled.
    let mut payload = match pool {
        Some(pool) => pool.take(len),
        None => Vec::with_capacity(len),
    };
    while payload.len() < len {
        let want = (len - payload.len()) as u64;
        if (&mut *reader).take(want).read_buf(&mut payload).await? == 0 {
            return Err(WireError::Truncated);
        }
    }
    header.verify_payload(&payload)?;
    let payload = match pool {
        Some(pool) => pool.freeze(payload),
        None => Bytes::from(payload),
    };
    Ok(Some(Frame { header, payload }))
}

/// Writes one frame: header and payload in one vectored write where the stream supports it,
/// so that a frame costs one system call (or one TLS record boundary) rather than two.
/// The caller flushes when it wants the bytes on the wire.
///
/// # Errors
/// [`WireError::Io`] when the connection fails.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
) -> Result<(), WireError> {
    let header = frame.header.encode();
    let mut buf = Buf::chain(&header[..], &frame.payload[..]);
    writer.write_all_buf(&mut buf).await?;
    Ok(())
}
