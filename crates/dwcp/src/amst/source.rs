//! The producer: reads the source on a blocking thread, hashes it, cuts it into framed chunks
//! and queues them for the connections, never holding more than the window unacknowledged.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};

use crate::wire::{Frame, FrameKind, PayloadKind, SessionId, WireError};

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
    /// The session ended while the producer was still reading.
    #[error("the session ended before the source was read")]
    Cancelled,
}

/// What the producer needs.
pub(crate) struct Producer {
    pub(crate) session: SessionId,
    pub(crate) chunk_size: usize,
    pub(crate) start: u64,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) queue: mpsc::UnboundedSender<Frame>,
    pub(crate) runtime: tokio::runtime::Handle,
}

/// Stream length and BLAKE3 once the whole source was read and queued.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Produced {
    pub(crate) len: u64,
    pub(crate) hash: blake3::Hash,
}

/// Reads up to `limit` bytes into `buf` (`read_to_end` retries interrupted reads itself).
fn read_chunk(reader: &mut dyn Read, limit: u64, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    reader.take(limit).read_to_end(buf)
}

impl Producer {
    /// Runs to the end of the source. Blocking: call from `spawn_blocking`.
    pub(crate) fn run(self, mut reader: Box<dyn Read + Send>) -> Result<Produced, ProduceError> {
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
        loop {
            // `read_to_end` on a `Take` fills spare capacity without zeroing it first.
            let mut chunk = Vec::with_capacity(self.chunk_size);
            let limit = self.chunk_size as u64;
            let n = read_chunk(&mut reader, limit, &mut chunk).map_err(ProduceError::Read)?;
            if n == 0 {
                break;
            }
            let chunk = Bytes::from(chunk);
            hasher.update(&chunk);
            let permits = u32::try_from(n).unwrap_or(u32::MAX);
            match self.runtime.block_on(self.permits.acquire_many(permits)) {
                Ok(p) => p.forget(),
                Err(_) => return Err(ProduceError::Cancelled),
            }
            let frame = Frame::new(
                FrameKind::Data,
                PayloadKind::Raw,
                self.session,
                seq,
                offset,
                chunk,
            )
            .map_err(ProduceError::Frame)?;
            self.queue
                .send(frame)
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
        self.queue.send(end).map_err(|_| ProduceError::Cancelled)?;
        Ok(Produced { len: offset, hash })
    }
}
