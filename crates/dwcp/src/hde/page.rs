//! Page mode: a VM memory stream as 4 KiB pages, each with its page index.
//!
//! The sender's [`PageEncoder`] turns each page into one [`Encoded`] item, trying in order:
//!
//! ```text
//! all zero?                         -> Zero
//! hash in the receiver-holds set?   -> Ref(hash)
//! otherwise the smallest of
//!   compressed (caller's CodecChoice) or Raw when that does not shrink it
//!   Delta: XOR with this index's previous version, run-length or lz4 packed
//! ```
//!
//! The receiver's [`PageDecoder`] mirrors the encoder's window of previous versions: both
//! update it identically after every page (a zero page drops the index, any other page
//! becomes the index's previous version) and evict least recently used first, so a decoder
//! whose window is at least the encoder's always has the base a delta names. A base it lacks
//! is [`PageError::MissingBase`], never a guess.
//!
//! Run-length layout of a delta (`DeltaCodec::Rle`), all big-endian, repeated until the page
//! is covered exactly:
//!
//! ```text
//! zeros: u16     bytes of the page left as in the base (XOR 0)
//! literals: u16  bytes that follow, XORed into the base
//! bytes[literals]
//! ```
//!
//! A run that would pass the end of the page, a run that covers nothing, and input that ends
//! before the page is covered or goes on after it are [`PageError::BadRle`].

use super::codec::{self, Codec, CodecChoice, CodecError};
use super::lru::Lru;
use super::store::StoreError;
use super::{ContentHash, ContentStore, DeltaCodec, Encoded, compress_or_raw, is_zero};

/// Size of a memory page in bytes.
pub const PAGE_SIZE: usize = 4096;

/// `PAGE_SIZE` as the 32-bit length of a Zero item.
const PAGE_SIZE_U32: u32 = 4096;

/// A zero run shorter than this is cheaper inside a literal than as a new run header.
const MIN_ZERO_GAP: usize = 5;

/// One page of memory.
pub type Page = Box<[u8; PAGE_SIZE]>;

/// What went wrong encoding or decoding a page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// A reference names content the receiver's store does not hold: ask the sender for it.
    #[error("content {0} is not in the store")]
    MissingContent(ContentHash),
    /// The store returned content whose BLAKE3 is not the hash it was stored under.
    #[error("stored content for {0} does not match its hash")]
    CorruptContent(ContentHash),
    /// A delta names a base page the decoder does not hold.
    #[error("no previous version of page {index} to apply a delta to")]
    MissingBase {
        /// The base page index.
        index: u64,
    },
    /// An item decodes to something that is not one page.
    #[error("item decodes to {len} bytes, not a {PAGE_SIZE}-byte page")]
    WrongLength {
        /// The length it decoded to (at most the limit that was checked).
        len: usize,
    },
    /// A run-length delta is malformed.
    #[error("malformed run-length delta: {0}")]
    BadRle(&'static str),
    /// The item names a codec that cannot carry a page.
    #[error("invalid codec in a page item")]
    InvalidCodec,
    /// Compressing or decompressing failed.
    #[error("page compression codec failed")]
    Codec(#[from] CodecError),
    /// The content store failed.
    #[error("content store failed")]
    Store(#[from] StoreError),
}

/// Sender side of page mode.
#[derive(Debug)]
pub struct PageEncoder {
    codec: CodecChoice,
    known: Lru<ContentHash, ()>,
    known_capacity: usize,
    previous: Lru<u64, Page>,
    window_pages: usize,
}

impl PageEncoder {
    /// An encoder compressing with `codec`, remembering up to `known_capacity` hashes the
    /// receiver holds and the previous version of up to `window_pages` pages
    /// (`window_pages * 4 KiB` of memory).
    #[must_use]
    pub fn new(codec: CodecChoice, known_capacity: usize, window_pages: usize) -> Self {
        Self {
            codec,
            known: Lru::new(),
            known_capacity,
            previous: Lru::new(),
            window_pages,
        }
    }

    /// Changes the compression for the following pages (PBA re-decides mid-transfer).
    pub fn set_codec(&mut self, codec: CodecChoice) {
        self.codec = codec;
    }

    /// The receiver announced that it holds `hash`.
    pub fn announce(&mut self, hash: ContentHash) {
        self.remember(hash);
    }

    /// The receiver reported that it lacks `hash`: stop referring to it.
    pub fn forget(&mut self, hash: &ContentHash) {
        self.known.remove(hash);
    }

    /// Whether the encoder would refer to `hash` by reference.
    #[must_use]
    pub fn knows(&self, hash: &ContentHash) -> bool {
        self.known.contains(hash)
    }

    fn remember(&mut self, hash: ContentHash) {
        self.known.insert(hash, ());
        while self.known.len() > self.known_capacity {
            self.known.pop_oldest();
        }
    }

    /// Encodes page `index`.
    ///
    /// # Errors
    /// [`PageError::Codec`] if the compressor fails.
    pub fn encode(&mut self, index: u64, page: &[u8; PAGE_SIZE]) -> Result<Encoded, PageError> {
        if is_zero(page) {
            self.previous.remove(&index);
            return Ok(Encoded::Zero { len: PAGE_SIZE_U32 });
        }
        let hash = ContentHash::of(page);
        let item = if self.known.touch(&hash) {
            Encoded::Ref(hash)
        } else {
            let mut best = compress_or_raw(page, self.codec)?;
            if let Some(base) = self.previous.peek(&index) {
                let delta = delta_encode(index, base, page)?;
                if delta.wire_len() < best.wire_len() {
                    best = delta;
                }
            }
            self.remember(hash);
            best
        };
        remember_previous(&mut self.previous, self.window_pages, index, page);
        Ok(item)
    }
}

/// Makes `page` the previous version of `index`, within `window` pages.
fn remember_previous(
    previous: &mut Lru<u64, Page>,
    window: usize,
    index: u64,
    page: &[u8; PAGE_SIZE],
) {
    if window == 0 {
        return;
    }
    previous.insert(index, Box::new(*page));
    while previous.len() > window {
        previous.pop_oldest();
    }
}

/// The smaller of the run-length and lz4 packings of `page XOR base`.
fn delta_encode(
    index: u64,
    base: &[u8; PAGE_SIZE],
    page: &[u8; PAGE_SIZE],
) -> Result<Encoded, PageError> {
    let xor: Vec<u8> = page.iter().zip(base.iter()).map(|(a, b)| a ^ b).collect();
    let rle = rle_encode(&xor);
    let lz4 = codec::compress(Codec::Lz4, 0, &xor)?;
    let (codec, bytes) = match rle {
        Some(rle) if rle.len() <= lz4.len() => (DeltaCodec::Rle, rle),
        _ => (DeltaCodec::Lz4, lz4),
    };
    Ok(Encoded::Delta {
        base_index: index,
        codec,
        bytes,
    })
}

/// Run-length packs an XOR (see the module doc); `None` if a run does not fit in 16 bits.
fn rle_encode(xor: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < xor.len() {
        let rest = xor.get(pos..).unwrap_or_default();
        let zeros = rest.iter().take_while(|b| **b == 0).count();
        let lit_start = pos + zeros;
        let mut lit_end = lit_start;
        let mut gap = 0;
        for (i, b) in xor.get(lit_start..).unwrap_or_default().iter().enumerate() {
            if *b == 0 {
                gap += 1;
                if gap >= MIN_ZERO_GAP {
                    break;
                }
            } else {
                gap = 0;
                lit_end = lit_start + i + 1;
            }
        }
        out.extend_from_slice(&u16::try_from(zeros).ok()?.to_be_bytes());
        out.extend_from_slice(&u16::try_from(lit_end - lit_start).ok()?.to_be_bytes());
        out.extend_from_slice(xor.get(lit_start..lit_end).unwrap_or_default());
        pos = lit_end.max(lit_start);
    }
    Some(out)
}

/// Applies a run-length packed XOR to `page` (a copy of the base), checking every run.
fn rle_apply(page: &mut [u8; PAGE_SIZE], mut rle: &[u8]) -> Result<(), PageError> {
    let mut pos = 0usize;
    while !rle.is_empty() {
        let (head, rest) = rle
            .split_first_chunk::<4>()
            .ok_or(PageError::BadRle("truncated run header"))?;
        let [z0, z1, l0, l1] = *head;
        let zeros = usize::from(u16::from_be_bytes([z0, z1]));
        let lits = usize::from(u16::from_be_bytes([l0, l1]));
        if zeros == 0 && lits == 0 {
            return Err(PageError::BadRle("empty run"));
        }
        let start = pos + zeros;
        let end = start + lits;
        if end > PAGE_SIZE {
            return Err(PageError::BadRle("run passes the end of the page"));
        }
        let (literal, rest) = rest
            .split_at_checked(lits)
            .ok_or(PageError::BadRle("truncated literal"))?;
        let target = page
            .get_mut(start..end)
            .ok_or(PageError::BadRle("run passes the end of the page"))?;
        for (out, x) in target.iter_mut().zip(literal) {
            *out ^= x;
        }
        pos = end;
        rle = rest;
    }
    if pos == PAGE_SIZE {
        Ok(())
    } else {
        Err(PageError::BadRle("runs end before the page does"))
    }
}

/// Receiver side of page mode: rebuilds each page exactly, or says what it lacks.
#[derive(Debug)]
pub struct PageDecoder<S> {
    store: S,
    previous: Lru<u64, Page>,
    window_pages: usize,
}

impl<S: ContentStore> PageDecoder<S> {
    /// A decoder resolving references in `store` and keeping the previous version of up to
    /// `window_pages` pages; that must be at least the encoder's window.
    pub fn new(store: S, window_pages: usize) -> Self {
        Self {
            store,
            previous: Lru::new(),
            window_pages,
        }
    }

    /// The content store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The content store, mutably (to announce or prune).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the content store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Rebuilds page `index` from `item`, and records it in the store and the window.
    ///
    /// # Errors
    /// [`PageError::MissingContent`] for a reference to content the store lacks (ask the
    /// sender for the page), [`PageError::MissingBase`] for a delta without its base, and any
    /// other [`PageError`] for an item that is not a valid page.
    pub fn decode(&mut self, index: u64, item: &Encoded) -> Result<Page, PageError> {
        let page = match item {
            Encoded::Zero { len } => {
                if *len != PAGE_SIZE_U32 {
                    return Err(PageError::WrongLength {
                        len: usize::try_from(*len).unwrap_or(usize::MAX),
                    });
                }
                self.previous.remove(&index);
                return Ok(Box::new([0u8; PAGE_SIZE]));
            }
            Encoded::Ref(hash) => {
                let content = self
                    .store
                    .get(hash)?
                    .ok_or(PageError::MissingContent(*hash))?;
                if !hash.matches(&content) {
                    return Err(PageError::CorruptContent(*hash));
                }
                let page = to_page(content)?;
                remember_previous(&mut self.previous, self.window_pages, index, &page);
                return Ok(page);
            }
            Encoded::Delta {
                base_index,
                codec,
                bytes,
            } => {
                let base = self
                    .previous
                    .peek(base_index)
                    .ok_or(PageError::MissingBase { index: *base_index })?;
                let mut page = base.clone();
                match codec {
                    DeltaCodec::Rle => rle_apply(&mut page, bytes)?,
                    DeltaCodec::Lz4 => {
                        let xor = to_page(codec::decompress(Codec::Lz4, bytes, PAGE_SIZE)?)?;
                        for (out, x) in page.iter_mut().zip(xor.iter()) {
                            *out ^= x;
                        }
                    }
                    DeltaCodec::Invalid => return Err(PageError::InvalidCodec),
                }
                page
            }
            Encoded::Compressed { codec, bytes, .. } => {
                to_page(codec::decompress(*codec, bytes, PAGE_SIZE)?)?
            }
            Encoded::Raw(bytes) => to_page(bytes.clone())?,
        };
        if is_zero(page.as_slice()) {
            self.previous.remove(&index);
        } else {
            self.store
                .put(ContentHash::of(page.as_slice()), page.as_slice())?;
            remember_previous(&mut self.previous, self.window_pages, index, &page);
        }
        Ok(page)
    }
}

/// `bytes` as a page, or [`PageError::WrongLength`].
fn to_page(bytes: Vec<u8>) -> Result<Page, PageError> {
    let len = bytes.len();
    bytes
        .into_boxed_slice()
        .try_into()
        .map_err(|_| PageError::WrongLength { len })
}
