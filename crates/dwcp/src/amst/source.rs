//! The producer: reads the source on a blocking thread, hashes it, cuts it into chunks,
//! encodes them as HDE items when the session negotiated it (compression runs here, never on
//! the reactor), frames them and queues them for the connections, never holding more than the
//! window (in stream bytes) unacknowledged.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};

use super::inflight::{Charge, Outgoing};
use super::reduce::{ChunkEncoder, ReduceShared};
use super::send_opts::SendError;
use crate::bufpool::BufPool;
use crate::wire::{Frame, FrameKind, PayloadKind, SessionId, WireError};

/// Where the stream comes from.
pub enum Source {
    /// A regular file; its length is known and it can be resumed.
    File(PathBuf),
    /// Any reader (standard input, a pipe); length unknown, cannot be resumed. Read in full
    /// chunks: a chunk goes out when it is full or the reader ends.
    Reader(Box<dyn Read + Send>),
    /// An interactive stream (a local socket to another process); length unknown, cannot be
    /// resumed. Whatever one read returns goes out at once, so a small write reaches the
    /// receiver without waiting for more; a read returns all that is already queued, up to the
    /// chunk size. The stream ends at EOF. If the transfer fails or [`super::send`] is dropped,
    /// the socket is shut down for reading, which ends the (blocking) read the sender may
    /// still be in.
    Stream(UnixStream),
}

/// A source opened for reading.
pub(crate) struct Opened {
    pub(crate) reader: Box<dyn Read + Send>,
    /// Length, when known (a file).
    pub(crate) total_len: Option<u64>,
    /// For a [`Source::Stream`]: shuts its socket down unless the transfer succeeded.
    pub(crate) unblock: Unblock,
}

/// Shuts a stream source down for reading when dropped (the transfer failed or was dropped),
/// which ends the blocking read the producer may be in; [`Self::disarm`] after success.
/// The flag it raises first tells the producer that the EOF it then reads is not the end of
/// the stream, so no `End` can go out for a truncated stream.
pub(crate) struct Unblock(Option<UnixStream>, Arc<AtomicBool>);

impl Unblock {
    /// Raised just before the stream is shut down: for [`Producer::cancelled`].
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.1)
    }

    /// Whether there is a stream to shut down (the source is a [`Source::Stream`]).
    pub(crate) fn is_armed(&self) -> bool {
        self.0.is_some()
    }

    /// Leaves the stream open: it was read to the end.
    pub(crate) fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Unblock {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            self.1.store(true, Ordering::SeqCst);
            // Already closed by the other end is fine.
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
    }
}

/// Opens `source`; only a file can be resumed.
///
/// # Errors
/// [`SendError`] when the file cannot be opened, the socket duplicated, or `resume` is asked
/// of a source that cannot be rewound.
pub(crate) fn open_source(source: Source, resume: bool) -> Result<Opened, SendError> {
    let (reader, total_len, unblock): (Box<dyn Read + Send>, _, _) = match source {
        Source::File(path) => {
            let file = std::fs::File::open(&path).map_err(|source| SendError::OpenSource {
                path: path.clone(),
                source,
            })?;
            let len = file
                .metadata()
                .map_err(|source| SendError::OpenSource { path, source })?
                .len();
            (Box::new(file), Some(len), None)
        }
        Source::Reader(_) | Source::Stream(_) if resume => {
            return Err(SendError::ResumeNeedsFile);
        }
        Source::Reader(r) => (r, None, None),
        Source::Stream(s) => {
            let unblock = s
                .try_clone()
                .map_err(|e| SendError::from(ProduceError::Read(e)))?;
            (Box::new(s), None, Some(unblock))
        }
    };
    Ok(Opened {
        reader,
        total_len,
        unblock: Unblock(unblock, Arc::default()),
    })
}

/// Why the producer stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProduceError {
    /// Reading the source failed.
    #[error("could not read the source")]
    Read(#[source] std::io::Error),
    /// The source ended before the offset the receiver already holds.
    #[error("the source has {have} bytes but the receiver already holds {held}")]
    ShorterThanResumePoint {
        /// Bytes the source had.
        have: u64,
        /// Bytes the receiver holds.
        held: u64,
    },
    /// A frame could not be built.
    #[error("could not frame a chunk")]
    Frame(#[source] WireError),
    /// A chunk could not be compressed.
    #[error("could not compress a chunk")]
    Compress(#[source] crate::hde::CodecError),
    /// The session ended while the producer was still reading.
    #[error("the session ended before the source was read")]
    Cancelled,
    /// The source ended before its end was confirmed (`SendOptions::end_confirmed`).
    #[error("the source closed before its end was confirmed: the stream was cut")]
    Cut,
}

/// What the producer needs.
pub(crate) struct Producer {
    pub(crate) session: SessionId,
    pub(crate) chunk_size: usize,
    /// The stream's length when known (a file): its last chunks are cut smaller
    /// ([`tail_chunk`]).
    pub(crate) total_len: Option<u64>,
    /// Frame whatever one read returns instead of filling whole chunks.
    pub(crate) prompt: bool,
    /// Set when the transfer was given up: an EOF read after it is not the stream's end.
    pub(crate) cancelled: Arc<AtomicBool>,
    /// What each frame holds of the window.
    pub(crate) charge: Charge,
    pub(crate) start: u64,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) queue: mpsc::UnboundedSender<Outgoing>,
    pub(crate) runtime: tokio::runtime::Handle,
    /// Set when the session negotiated HDE: chunks are encoded as items.
    pub(crate) encoder: Option<ChunkEncoder>,
    /// Byte counters and compression measurements, shared with the session.
    pub(crate) reduce: Arc<ReduceShared>,
    /// The receiver's acknowledged offset, as the connections last saw it.
    pub(crate) acked: Arc<AtomicU64>,
    /// Notified when `acked` advances or the window releases permits.
    pub(crate) acked_changed: Arc<tokio::sync::Notify>,
    /// Most stream bytes a frame may end beyond `acked`: the session's window, when the
    /// receiver reports frames it holds (`Held`) and their permits return before the
    /// acknowledgement, so that the window alone no longer bounds what the receiver holds out
    /// of order. `None` when the permits are returned only by acknowledgements.
    pub(crate) span: Option<u64>,
    /// [`super::SendOptions::wire_limit`].
    pub(crate) wire_limit: Option<tokio::sync::watch::Receiver<u64>>,
    /// Payload bytes of the data frames acknowledged or reported held.
    pub(crate) wire_acked: Arc<AtomicU64>,
    /// [`super::SendOptions::end_confirmed`].
    pub(crate) end_confirmed: Option<Arc<AtomicBool>>,
    /// Buffers of whole chunks, back once their frames are acknowledged.
    pub(crate) frames: Arc<BufPool>,
}

/// Stream length and BLAKE3 once the whole source was read and queued.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Produced {
    pub(crate) len: u64,
    pub(crate) hash: blake3::Hash,
}

/// Longest a frame waits for room under the wire limit while nothing is acknowledged (a
/// stalled link): the window alone bounds the stream then.
const WIRE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// How often a producer waiting for the acknowledged offset looks whether the session ended.
const SPAN_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

impl Producer {
    /// Waits until a frame ending at `end` lies within `span` bytes of the acknowledged
    /// offset (see [`Producer::span`]).
    fn wait_within(&self, end: u64, span: u64) -> Result<(), ProduceError> {
        self.runtime.block_on(async {
            loop {
                let changed = self.acked_changed.notified();
                tokio::pin!(changed);
                // Registered before the check, so that an advance right after it still wakes.
                changed.as_mut().enable();
                if end <= self.acked.load(Ordering::Relaxed).saturating_add(span) {
                    return Ok(());
                }
                if self.permits.is_closed() {
                    return Err(ProduceError::Cancelled);
                }
                let _ = tokio::time::timeout(SPAN_RECHECK, changed).await;
            }
        })
    }

    /// Waits until a frame of `len` payload bytes fits the wire limit (see
    /// [`super::SendOptions::wire_limit`]): the stream's wire bytes so far (frames, and the
    /// literals sent for a `Need` in place of references) less those acknowledged or held.
    /// A limit whose owner is gone no longer bounds anything.
    fn wait_for_wire(&mut self, len: u64) -> Result<(), ProduceError> {
        let Some(limit) = self.wire_limit.as_mut() else {
            return Ok(());
        };
        let (framed, acked) = (&self.reduce.wire_bytes, &self.wire_acked);
        let (notify, permits) = (&self.acked_changed, &self.permits);
        let owner_gone = self.runtime.block_on(async {
            let mut last = (acked.load(Ordering::Relaxed), std::time::Instant::now());
            loop {
                let changed = notify.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let now_acked = acked.load(Ordering::Relaxed);
                let out = framed.load(Ordering::Relaxed).saturating_sub(now_acked);
                if out == 0 || out.saturating_add(len) <= *limit.borrow_and_update() {
                    return Ok(false);
                }
                if now_acked != last.0 {
                    last = (now_acked, std::time::Instant::now());
                } else if last.1.elapsed() >= WIRE_PATIENCE {
                    // The window still bounds what is in flight; a source that cannot write
                    // (a guest stopped mid-write) must never wait on the wire for ever.
                    tracing::debug!(out, "no wire bytes acknowledged for a while; framing on");
                    return Ok(false);
                }
                if permits.is_closed() {
                    return Err(ProduceError::Cancelled);
                }
                tokio::select! {
                    () = &mut changed => {}
                    r = limit.changed() => if r.is_err() {
                        return Ok(true);
                    },
                    () = tokio::time::sleep(SPAN_RECHECK) => {}
                }
            }
        })?;
        if owner_gone {
            self.wire_limit = None;
        }
        Ok(())
    }
}

/// Of a stream of known length, the bytes left per chunk near its end: from this many chunk
/// sizes before the end, a chunk is this fraction of what is left (see [`tail_chunk`]).
pub(crate) const TAIL_SHARES: u64 = 32;
/// Smallest chunk [`tail_chunk`] cuts.
pub(crate) const TAIL_FLOOR: usize = 64 << 10;

/// The size of the chunk that starts at `offset` of a stream of `total_len` bytes (if known),
/// cut in chunks of `chunk_size`: near the end, a [`TAIL_SHARES`]th of what is left, at least
/// [`TAIL_FLOOR`].
///
/// Each connection sends its frame at its share of the link, so a whole chunk on one of 16
/// connections over `intercontinental` takes most of a second to cross. When the stream ends,
/// the connections that drew their last frame early stand idle while the others still push
/// theirs: 128 MiB of random data over `intercontinental` delivered at the link's rate until
/// the last 2.7 MiB, which took 0.7 s instead of 0.23 (in 256 KiB chunks, the link stayed
/// full to the end). Chunks that shrink with what is left spread the end evenly over the
/// connections, for a few dozen more frames.
#[must_use]
pub(crate) fn tail_chunk(chunk_size: usize, total_len: Option<u64>, offset: u64) -> usize {
    let Some(left) = total_len.map(|len| len.saturating_sub(offset)) else {
        return chunk_size;
    };
    let share = usize::try_from(left / TAIL_SHARES).unwrap_or(usize::MAX);
    share.max(TAIL_FLOOR).min(chunk_size)
}

/// Reads up to `limit` bytes into `buf` (`read_to_end` retries interrupted reads itself).
fn read_chunk(reader: &mut dyn Read, limit: u64, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    reader.take(limit).read_to_end(buf)
}

/// One read: whatever the reader has now, up to `buf.len()` bytes (empty at the end). One
/// read of a socket or pipe returns everything already queued that fits, so what arrives
/// together is framed together. The bytes are copied out so that a small frame does not pin
/// a chunk-sized buffer while it waits for its acknowledgement; a large read into one of
/// `frames`.
fn read_some(
    reader: &mut dyn Read,
    buf: &mut [u8],
    frames: &Arc<BufPool>,
) -> std::io::Result<Bytes> {
    loop {
        match reader.read(buf) {
            Ok(n) => {
                let read = buf.get(..n).unwrap_or_default();
                let mut out = frames.take(n);
                out.extend_from_slice(read);
                return Ok(frames.freeze(out));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl Producer {
    /// Runs to the end of the source. Blocking: call from `spawn_blocking`.
    pub(crate) fn run(
        mut self,
        mut reader: Box<dyn Read + Send>,
    ) -> Result<Produced, ProduceError> {
        let mut hasher = blake3::Hasher::new();
        // Hash what the receiver already holds, so the final BLAKE3 covers the whole stream.
        let mut scratch = Vec::with_capacity(self.chunk_size);
        let mut offset = 0u64;
        while offset < self.start {
            scratch.clear();
            let want = (self.start - offset).min(self.chunk_size as u64);
            let n = read_chunk(&mut reader, want, &mut scratch).map_err(ProduceError::Read)?;
            if n == 0 {
                return Err(ProduceError::ShorterThanResumePoint {
                    have: offset,
                    held: self.start,
                });
            }
            hasher.update(&scratch);
            offset += n as u64;
        }
        drop(scratch);

        let mut seq = 0u64;
        let mut prompt_buf = if self.prompt {
            vec![0u8; self.chunk_size]
        } else {
            Vec::new()
        };
        // With deduplication, the bytes after a chunk's last segment boundary wait for the next
        // read, so that frames start where segments do and an insertion early in the stream does
        // not shift every later frame's segments (see `ChunkEncoder::frame_len`).
        let mut carry = Bytes::new();
        loop {
            // What to read: up to the chunk's size, the carried bytes included; at least half
            // of it when more was carried (a segment is far smaller than a chunk).
            let size = tail_chunk(self.chunk_size, self.total_len, offset);
            let room = size
                .saturating_sub(carry.len())
                .max(size / 2)
                .min(self.chunk_size.saturating_sub(carry.len()))
                .max(1);
            let read = if self.prompt {
                let buf = prompt_buf.get_mut(..room).unwrap_or_default();
                read_some(&mut reader, buf, &self.frames).map_err(ProduceError::Read)?
            } else {
                // `read_to_end` on a `Take` fills spare capacity without zeroing it first.
                let mut chunk = self.frames.take(room);
                read_chunk(&mut reader, room as u64, &mut chunk).map_err(ProduceError::Read)?;
                self.frames.freeze(chunk)
            };
            if read.is_empty() {
                if self.cancelled.load(Ordering::SeqCst) {
                    return Err(ProduceError::Cancelled);
                }
                if self
                    .end_confirmed
                    .as_ref()
                    .is_some_and(|done| !done.load(Ordering::SeqCst))
                {
                    return Err(ProduceError::Cut);
                }
                if carry.is_empty() {
                    break;
                }
            }
            hasher.update(&read);
            // A full read means more is (likely) queued: the carried bytes go with it soon. A
            // short one or the end of the source sends everything now.
            let more = !read.is_empty() && read.len() == room;
            let mut data = if carry.is_empty() {
                read
            } else {
                let mut joined = Vec::with_capacity(carry.len() + read.len());
                joined.extend_from_slice(&carry);
                joined.extend_from_slice(&read);
                Bytes::from(joined)
            };
            let len = match self.encoder.as_mut() {
                Some(enc) if more => enc.frame_len(&data, offset),
                _ => data.len(),
            };
            carry = data.split_off(len);
            let chunk = data;
            let n = chunk.len();
            // Encoded before waiting for the window, so compression overlaps the wait.
            let end = offset + n as u64;
            let (kind, payload, original) = match self.encoder.as_mut() {
                Some(enc) => {
                    let acked = self.acked.load(Ordering::Relaxed);
                    let out = enc
                        .encode(chunk, end, acked, &self.reduce)
                        .map_err(ProduceError::Compress)?;
                    (out.kind, out.payload, out.original)
                }
                None => (PayloadKind::Raw, chunk, None),
            };
            // The window counts stream bytes, whatever the frame's payload is.
            let permits = u32::try_from(self.charge.of(n as u64)).unwrap_or(u32::MAX);
            let waiting = std::time::Instant::now();
            match self.runtime.block_on(self.permits.acquire_many(permits)) {
                Ok(p) => p.forget(),
                Err(_) => return Err(ProduceError::Cancelled),
            }
            if let Some(span) = self.span {
                self.wait_within(end, span)?;
            }
            self.wait_for_wire(payload.len() as u64)?;
            let waited = u64::try_from(waiting.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.reduce.blocked_ns.fetch_add(waited, Ordering::Relaxed);
            self.reduce.count(n as u64, payload.len() as u64);
            let frame = Frame::new(FrameKind::Data, kind, self.session, seq, offset, payload)
                .map_err(ProduceError::Frame)?;
            self.queue
                .send(Outgoing {
                    frame,
                    stream_len: n as u64,
                    original,
                    avoid: None,
                    prepaid: None,
                })
                .map_err(|_| ProduceError::Cancelled)?;
            seq += 1;
            offset += n as u64;
        }
        let hash = hasher.finalize();
        let end = Frame::control(
            FrameKind::End,
            self.session,
            offset,
            Bytes::copy_from_slice(hash.as_bytes()),
        )
        .map_err(ProduceError::Frame)?;
        self.queue
            .send(Outgoing::plain(end))
            .map_err(|_| ProduceError::Cancelled)?;
        Ok(Produced { len: offset, hash })
    }
}

#[cfg(test)]
#[path = "source_test.rs"]
mod source_test;
