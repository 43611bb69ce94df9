//! Chunk mode: an opaque stream (a disk image) cut into content-defined chunks with FastCDC,
//! so that an insertion early in the stream moves chunk boundaries only locally and the
//! chunks after it are still found by hash.
//!
//! Each chunk becomes one [`Encoded`] item: `Zero`, `Ref`, `Compressed` or `Raw` (no deltas:
//! chunks have no stable index to be a previous version of). The receiver's [`ChunkDecoder`]
//! returns each chunk's bytes; the stream is their concatenation in order.
//!
//! ```text
//! push(bytes) ... push(bytes) finish()      sender, any write sizes
//!   |  chunks whose end is certain            (at least max_size buffered past their start)
//!   v
//! [Encoded, Encoded, ...]  -> decode(item) -> chunk bytes, appended in order
//! ```

use fastcdc::v2020::{
    AVERAGE_MAX, AVERAGE_MIN, FastCDC, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
};

use super::codec::{self, CodecChoice, CodecError};
use super::lru::Lru;
use super::store::StoreError;
use super::{ContentHash, ContentStore, Encoded, compress_or_raw, is_zero};

/// What went wrong chunking, encoding or decoding a chunk.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The chunk sizes are outside FastCDC's ranges, odd, or not ordered min ≤ avg ≤ max.
    #[error("invalid chunk sizes min {min} avg {avg} max {max}")]
    InvalidParams {
        /// Minimum chunk size in bytes.
        min: usize,
        /// Average chunk size in bytes.
        avg: usize,
        /// Maximum chunk size in bytes.
        max: usize,
    },
    /// A reference names content the receiver's store does not hold: ask the sender for it.
    #[error("content {0} is not in the store")]
    MissingContent(ContentHash),
    /// The store returned content whose BLAKE3 is not the hash it was stored under.
    #[error("stored content for {0} does not match its hash")]
    CorruptContent(ContentHash),
    /// An item decodes to more than the maximum chunk size, or to nothing.
    #[error("item decodes to {len} bytes; a chunk is 1 to {limit} bytes")]
    WrongLength {
        /// The length found (at most the limit that was checked, for decompressed data).
        len: usize,
        /// The maximum chunk size.
        limit: usize,
    },
    /// A delta item, which chunk mode never sends.
    #[error("delta item in chunk mode")]
    UnexpectedDelta,
    /// Compressing or decompressing failed.
    #[error("chunk compression codec failed")]
    Codec(#[from] CodecError),
    /// The content store failed.
    #[error("content store failed")]
    Store(#[from] StoreError),
}

/// Minimum, average and maximum chunk sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkParams {
    min: usize,
    avg: usize,
    max: usize,
}

impl Default for ChunkParams {
    /// 16 / 64 / 256 KiB.
    fn default() -> Self {
        Self {
            min: 16 << 10,
            avg: 64 << 10,
            max: 256 << 10,
        }
    }
}

impl ChunkParams {
    /// Checked sizes: even, within FastCDC's ranges, and `min <= avg <= max`.
    ///
    /// # Errors
    /// [`ChunkError::InvalidParams`] otherwise.
    pub fn new(min: usize, avg: usize, max: usize) -> Result<Self, ChunkError> {
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && [min, avg, max].iter().all(|n| n % 2 == 0);
        if ok {
            Ok(Self { min, avg, max })
        } else {
            Err(ChunkError::InvalidParams { min, avg, max })
        }
    }

    /// Minimum chunk size in bytes (only the last chunk of a stream may be shorter).
    #[must_use]
    pub const fn min(&self) -> usize {
        self.min
    }

    /// Average chunk size in bytes.
    #[must_use]
    pub const fn avg(&self) -> usize {
        self.avg
    }

    /// Maximum chunk size in bytes: also the limit a decoder puts on every item.
    #[must_use]
    pub const fn max(&self) -> usize {
        self.max
    }
}

/// Sender side of chunk mode.
#[derive(Debug)]
pub struct ChunkEncoder {
    params: ChunkParams,
    codec: CodecChoice,
    known: Lru<ContentHash, ()>,
    known_capacity: usize,
    /// Stream bytes not yet cut into chunks.
    pending: Vec<u8>,
}

impl ChunkEncoder {
    /// An encoder with chunk sizes `params`, compressing with `codec` and remembering up to
    /// `known_capacity` hashes the receiver holds.
    #[must_use]
    pub fn new(params: ChunkParams, codec: CodecChoice, known_capacity: usize) -> Self {
        Self {
            params,
            codec,
            known: Lru::new(),
            known_capacity,
            pending: Vec::new(),
        }
    }

    /// Changes the compression for the following chunks.
    pub fn set_codec(&mut self, codec: CodecChoice) {
        self.codec = codec;
    }

    /// The receiver announced that it holds `hash`.
    pub fn announce(&mut self, hash: ContentHash) {
        self.known.insert(hash, ());
        while self.known.len() > self.known_capacity {
            self.known.pop_oldest();
        }
    }

    /// The receiver reported that it lacks `hash`: stop referring to it.
    pub fn forget(&mut self, hash: &ContentHash) {
        self.known.remove(hash);
    }

    /// Appends `data` to the stream; returns the items of every chunk now complete.
    ///
    /// # Errors
    /// [`ChunkError::Codec`] if the compressor fails.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Encoded>, ChunkError> {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        let mut items = Vec::new();
        // A cut point is final once `max` bytes follow the chunk's start: FastCDC never looks
        // further.
        while self.pending.len() - start >= self.params.max {
            let rest = self.pending.get(start..).unwrap_or_default();
            let len = FastCDC::new(rest, self.params.min, self.params.avg, self.params.max)
                .next()
                .map_or(rest.len(), |c| c.length)
                .max(1);
            let chunk = rest.get(..len).unwrap_or_default().to_vec();
            items.push(self.encode_chunk(&chunk)?);
            start += len;
        }
        self.pending.drain(..start);
        Ok(items)
    }

    /// Ends the stream; returns the items of the remaining chunks.
    ///
    /// # Errors
    /// [`ChunkError::Codec`] if the compressor fails.
    pub fn finish(&mut self) -> Result<Vec<Encoded>, ChunkError> {
        let pending = std::mem::take(&mut self.pending);
        FastCDC::new(&pending, self.params.min, self.params.avg, self.params.max)
            .map(|c| {
                let chunk = pending
                    .get(c.offset..c.offset + c.length)
                    .unwrap_or_default();
                self.encode_chunk(chunk)
            })
            .collect()
    }

    fn encode_chunk(&mut self, chunk: &[u8]) -> Result<Encoded, ChunkError> {
        if is_zero(chunk) {
            let len = u32::try_from(chunk.len()).map_err(|_| ChunkError::WrongLength {
                len: chunk.len(),
                limit: self.params.max,
            })?;
            return Ok(Encoded::Zero { len });
        }
        let hash = ContentHash::of(chunk);
        if self.known.touch(&hash) {
            return Ok(Encoded::Ref(hash));
        }
        let item = compress_or_raw(chunk, self.codec)?;
        self.announce(hash);
        Ok(item)
    }
}

/// Receiver side of chunk mode.
#[derive(Debug)]
pub struct ChunkDecoder<S> {
    store: S,
    max: usize,
}

impl<S: ContentStore> ChunkDecoder<S> {
    /// A decoder resolving references in `store`, accepting chunks up to `params.max()`.
    pub fn new(store: S, params: ChunkParams) -> Self {
        Self {
            store,
            max: params.max,
        }
    }

    /// The content store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the content store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The bytes of the chunk `item` encodes; non-zero chunks are recorded in the store.
    ///
    /// # Errors
    /// [`ChunkError::MissingContent`] for a reference to content the store lacks (ask the
    /// sender for it), and any other [`ChunkError`] for an invalid item.
    pub fn decode(&mut self, item: &Encoded) -> Result<Vec<u8>, ChunkError> {
        let chunk = match item {
            Encoded::Zero { len } => {
                let len = usize::try_from(*len).unwrap_or(usize::MAX);
                self.check_len(len)?;
                return Ok(vec![0u8; len]);
            }
            Encoded::Ref(hash) => {
                let content = self
                    .store
                    .get(hash)?
                    .ok_or(ChunkError::MissingContent(*hash))?;
                if !hash.matches(&content) {
                    return Err(ChunkError::CorruptContent(*hash));
                }
                self.check_len(content.len())?;
                return Ok(content);
            }
            Encoded::Delta { .. } => return Err(ChunkError::UnexpectedDelta),
            Encoded::Compressed { codec, bytes, .. } => codec::decompress(*codec, bytes, self.max)?,
            Encoded::Raw(bytes) => bytes.clone(),
        };
        self.check_len(chunk.len())?;
        if !is_zero(&chunk) {
            self.store.put(ContentHash::of(&chunk), &chunk)?;
        }
        Ok(chunk)
    }

    fn check_len(&self, len: usize) -> Result<(), ChunkError> {
        if len == 0 || len > self.max {
            return Err(ChunkError::WrongLength {
                len,
                limit: self.max,
            });
        }
        Ok(())
    }
}
