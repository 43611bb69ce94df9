//! HDE, hierarchical delta encoding: turns a stream into items that cost fewer bytes on the
//! wire, and back into the exact same bytes.
//!
//! Two modes share the item kinds and the receiver's content store:
//! - [`page`]: VM memory as 4 KiB pages with their page index ([`PageEncoder`],
//!   [`PageDecoder`]): zero pages are elided, pages the receiver holds go as a hash reference,
//!   a rewritten page goes as a delta against its previous version when that is smaller, the
//!   rest is compressed or raw.
//! - [`chunk`]: opaque streams (disk images) cut into content-defined chunks with FastCDC
//!   ([`ChunkEncoder`], [`ChunkDecoder`]): the same kinds except deltas.
//!
//! [`codec`] holds the compressors, [`item`] the serialized form of an [`Encoded`] item, and
//! [`store`] the receiver's content stores ([`MemStore`], [`DiskStore`]).
//!
//! ```text
//! sender                                        receiver
//!   page/chunk --> Encoder --> Encoded --> encode_item ~~~> decode_item --> Decoder --> bytes
//!                    ^ announce(hash)                                          |  ^
//!                    +---- hashes the receiver holds / MissingContent(hash) ---+  ContentStore
//! ```
//!
//! The receiver never guesses: a reference to content it lacks is a typed error
//! (`MissingContent`) so the transport asks for the bytes, and stored content is checked
//! against its BLAKE3 before use. [`index`] holds the filter a receiver sends of what its store
//! holds. AMST carries these items in its data frames (`crate::amst`).

pub mod chunk;
pub mod codec;
pub mod index;
pub mod item;
pub(crate) mod lru;
mod pack;
pub mod page;
pub mod store;

#[cfg(test)]
mod chunk_test;
#[cfg(test)]
mod codec_test;
#[cfg(test)]
mod item_test;
#[cfg(test)]
pub(crate) mod page_test;
#[cfg(test)]
mod store_test;

pub use chunk::{ChunkDecoder, ChunkEncoder, ChunkError, ChunkParams};
pub use codec::{Codec, CodecChoice, CodecError};
pub use index::{ContentIndex, IndexError};
pub use item::{ItemError, decode_item, encode_item};
pub use page::{PAGE_SIZE, PageDecoder, PageEncoder, PageError};
pub use store::{DiskStore, MemStore, SharedStore, StoreError};

/// Bytes of a [`HashKey`].
pub const KEY_LEN: usize = 8;
/// The first [`KEY_LEN`] bytes of a [`ContentHash`]: the name of content in a short reference
/// (docs/dwcp-wire.md section 11.1).
pub type HashKey = [u8; KEY_LEN];

/// The BLAKE3-256 hash of a page or chunk: its name in the content store and in references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The hash of `content`.
    #[must_use]
    pub fn of(content: &[u8]) -> Self {
        Self(*blake3::hash(content).as_bytes())
    }

    /// Its first [`KEY_LEN`] bytes, which name it in a short reference.
    #[must_use]
    pub fn key(&self) -> HashKey {
        self.0.first_chunk().copied().unwrap_or_default()
    }

    /// The lowest hash whose first bytes are `key` (the rest zeros): how a receiver names
    /// content it knows by its key alone, and where a search for the key starts.
    #[must_use]
    pub fn from_key(key: HashKey) -> Self {
        let mut hash = [0u8; 32];
        if let Some(head) = hash.first_chunk_mut() {
            *head = key;
        }
        Self(hash)
    }

    /// Whether `content` has this hash.
    #[must_use]
    pub fn matches(&self, content: &[u8]) -> bool {
        // N.B. blake3::Hash compares in constant time; not needed here, but harmless.
        blake3::Hash::from_bytes(self.0) == blake3::hash(content)
    }
}

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Where the receiver keeps content by hash, so that references can be resolved.
///
/// Implementations may evict; a caller that finds nothing asks the sender for the bytes.
pub trait ContentStore {
    /// The content stored under `hash`, or `None` if it is not (or no longer) held.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    fn get(&mut self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `content` under `hash`; the caller guarantees `hash` is its BLAKE3.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be written.
    fn put(&mut self, hash: ContentHash, content: &[u8]) -> Result<(), StoreError>;
}

/// How a delta (the XOR of a page against its previous version) is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DeltaCodec {
    /// Never valid in an item.
    Invalid = 0,
    /// Runs of `(zero bytes: u16, literal bytes: u16, literals)`, see [`page`].
    Rle = 1,
    /// The XOR compressed with lz4 (block format).
    Lz4 = 2,
}

/// One page or chunk as the sender encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// `len` zero bytes.
    Zero {
        /// Length in bytes (a page: [`PAGE_SIZE`]).
        len: u32,
    },
    /// Content the receiver holds under this hash.
    Ref(ContentHash),
    /// XOR against the receiver's previous version of page `base_index`, packed by `codec`.
    Delta {
        /// Index of the page whose previous version is the base (the page being sent).
        base_index: u64,
        /// How `bytes` pack the XOR.
        codec: DeltaCodec,
        /// The packed XOR.
        bytes: Vec<u8>,
    },
    /// The content compressed with `codec` at `level` (0 for lz4).
    Compressed {
        /// The compressor.
        codec: Codec,
        /// The level it ran at (zstd), 0 otherwise.
        level: i8,
        /// The compressed bytes.
        bytes: Vec<u8>,
    },
    /// The content as it is.
    Raw(Vec<u8>),
}

impl Encoded {
    /// Size of this item once serialized by [`encode_item`], in bytes.
    #[must_use]
    pub fn wire_len(&self) -> usize {
        match self {
            Self::Zero { .. } => item::ZERO_LEN,
            Self::Ref(_) => item::REF_LEN,
            Self::Delta { bytes, .. } => item::DELTA_HEADER_LEN + bytes.len(),
            Self::Compressed { bytes, .. } => item::COMPRESSED_HEADER_LEN + bytes.len(),
            Self::Raw(bytes) => item::RAW_HEADER_LEN + bytes.len(),
        }
    }

    /// A short name of the kind, for logs and counters.
    #[must_use]
    pub const fn kind_name(&self) -> &'static str {
        match self {
            Self::Zero { .. } => "zero",
            Self::Ref(_) => "ref",
            Self::Delta { .. } => "delta",
            Self::Compressed { .. } => "compressed",
            Self::Raw(_) => "raw",
        }
    }
}

/// Whether every byte of `data` is zero.
pub(crate) fn is_zero(data: &[u8]) -> bool {
    let mut words = data.chunks_exact(8);
    let words_zero = words
        .by_ref()
        .all(|w| w.iter().fold(0u8, |acc, b| acc | b) == 0);
    words_zero && words.remainder().iter().all(|b| *b == 0)
}

/// Compresses `content` as `choice` says and returns the smaller of that and raw.
///
/// N.B. Compressed output is kept only when its item is smaller than the raw item, so no
/// content ever costs more than [`item::RAW_HEADER_LEN`] bytes over its own length.
pub(crate) fn compress_or_raw(content: &[u8], choice: CodecChoice) -> Result<Encoded, CodecError> {
    if let Some((codec, level)) = choice.codec() {
        let bytes = codec::compress(codec, level, content)?;
        if item::COMPRESSED_HEADER_LEN + bytes.len() < item::RAW_HEADER_LEN + content.len() {
            return Ok(Encoded::Compressed {
                codec,
                level,
                bytes,
            });
        }
    }
    Ok(Encoded::Raw(content.to_vec()))
}
