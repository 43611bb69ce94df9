//! Recipes: a frame's content named by one hash (docs/dwcp-wire.md section 11.7).
//!
//! A receiver on a session that negotiated recipes stores, beside the segments of each
//! `Segments` frame it decodes, the frame's recipe: the list of its segments, each a zero run
//! or content named by its hash. A sender that finds a chunk's recipe held (the same segments,
//! in the same order: an unchanged stretch of a disk image sent again) sends the whole frame as
//! one reference to it, 37 bytes for a megabyte, instead of a reference per segment.
//!
//! ```text
//! magic "NCR1" (4)
//! entry × n (2 ..= MAX_SEGMENTS):
//!   tag 1 zero     len: u32                          5 bytes
//!   tag 2 content  len: u32, hash: [u8; 32]          37 bytes
//!   tag 3 inline   len: u32 (< MIN_STORED), bytes    5 + len bytes
//! ```
//!
//! Integers big-endian. Each segment of the frame is an entry: a zero run, content the receiver
//! stores (literal segments of at least `MIN_STORED` bytes, references, deltas' results) by its
//! hash, and the shorter literals, which it does not store, inline; both ends build the same
//! recipe from the same segments. A recipe's own bytes are checked against its hash like any
//! stored content, and each content entry's again when it is read.

use bytes::{BufMut, BytesMut};

use super::segments::{MAX_SEGMENTS, MIN_STORED, SegmentsError, held, stored};
use crate::hde::{ContentHash, DiskStore};

const MAGIC: [u8; 4] = *b"NCR1";
const TAG_ZERO: u8 = 1;
const TAG_CONTENT: u8 = 2;
const TAG_INLINE: u8 = 3;

/// One entry of a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// `len` zero bytes.
    Zero(u32),
    /// `len` bytes stored under `hash`.
    Content {
        /// Length of the content.
        len: u32,
        /// Its BLAKE3.
        hash: ContentHash,
    },
    /// These bytes (fewer than `MIN_STORED`).
    Inline(Vec<u8>),
}

/// Why stored bytes are not a recipe (a store holding other content under a recipe's hash
/// cannot happen: every read is checked against the hash; this guards the parser).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecipeError {
    /// Not a recipe: wrong magic, a truncated or unknown entry, an empty one, an inline one of
    /// `MIN_STORED` bytes or more.
    #[error("stored content is not a recipe")]
    Malformed,
    /// Fewer than two entries or more than [`MAX_SEGMENTS`], or they add up to more than the
    /// frame may stand for.
    #[error("a recipe of {entries} entries for {bytes} bytes exceeds its bounds")]
    Bounds {
        /// Entries read before the bound was crossed.
        entries: usize,
        /// Bytes they stand for.
        bytes: u64,
    },
}

/// A recipe being built, one segment at a time. Past [`MAX_SEGMENTS`] entries it is no
/// recipe, and stops growing: a frame of a peer's recipes may stand for a million entries.
#[derive(Debug)]
pub(crate) struct Builder {
    bytes: Vec<u8>,
    entries: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            bytes: MAGIC.to_vec(),
            entries: 0,
        }
    }
}

impl Builder {
    /// Adds one entry: `tag`, `len` and `rest`, unless there are too many already.
    fn push(&mut self, tag: u8, len: u32, rest: &[u8]) {
        self.entries = self.entries.saturating_add(1);
        if self.entries > MAX_SEGMENTS {
            self.bytes = Vec::new();
            return;
        }
        self.bytes.push(tag);
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(rest);
    }

    /// A zero run of `len` bytes.
    pub(crate) fn zero(&mut self, len: u32) {
        self.push(TAG_ZERO, len, &[]);
    }

    /// `len` bytes of content stored under `hash`.
    pub(crate) fn content(&mut self, len: u32, hash: ContentHash) {
        self.push(TAG_CONTENT, len, &hash.0);
    }

    /// A literal segment too short to be stored: its bytes.
    pub(crate) fn inline(&mut self, bytes: &[u8]) {
        self.push(
            TAG_INLINE,
            u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            bytes,
        );
    }

    /// The entries of another recipe, in place of the segment that referenced it.
    pub(crate) fn extend(&mut self, entries: &[Entry]) {
        for entry in entries {
            match entry {
                Entry::Zero(len) => self.zero(*len),
                Entry::Content { len, hash } => self.content(*len, *hash),
                Entry::Inline(bytes) => self.inline(bytes),
            }
        }
    }

    /// The recipe's hash and bytes, when it has 2 to [`MAX_SEGMENTS`] entries.
    pub(crate) fn finish(self) -> Option<(ContentHash, Vec<u8>)> {
        (2..=MAX_SEGMENTS)
            .contains(&self.entries)
            .then(|| (ContentHash::of(&self.bytes), self.bytes))
    }
}

/// The entries of `bytes`, a recipe standing for exactly `len` bytes.
///
/// # Errors
/// [`RecipeError`] when `bytes` is not such a recipe.
pub(crate) fn parse(bytes: &[u8], len: usize) -> Result<Vec<Entry>, RecipeError> {
    let mut rest = bytes.strip_prefix(&MAGIC).ok_or(RecipeError::Malformed)?;
    let mut entries = Vec::new();
    let mut total = 0u64;
    let bounds = |entries: usize, bytes: u64| RecipeError::Bounds { entries, bytes };
    while let Some((&tag, after)) = rest.split_first() {
        let (n, after) = after
            .split_first_chunk::<4>()
            .ok_or(RecipeError::Malformed)?;
        let n = u32::from_be_bytes(*n);
        if n == 0 {
            return Err(RecipeError::Malformed);
        }
        let entry = match tag {
            TAG_ZERO => {
                rest = after;
                Entry::Zero(n)
            }
            TAG_CONTENT => {
                let (hash, after) = after
                    .split_first_chunk::<32>()
                    .ok_or(RecipeError::Malformed)?;
                rest = after;
                Entry::Content {
                    len: n,
                    hash: ContentHash(*hash),
                }
            }
            TAG_INLINE => {
                let len = usize::try_from(n).unwrap_or(usize::MAX);
                if len >= MIN_STORED {
                    return Err(RecipeError::Malformed);
                }
                let (bytes, after) = after.split_at_checked(len).ok_or(RecipeError::Malformed)?;
                rest = after;
                Entry::Inline(bytes.to_vec())
            }
            _ => return Err(RecipeError::Malformed),
        };
        total += u64::from(n);
        if entries.len() >= MAX_SEGMENTS || total > len as u64 {
            return Err(bounds(entries.len() + 1, total));
        }
        entries.push(entry);
    }
    if entries.len() < 2 || total != len as u64 {
        return Err(bounds(entries.len(), total));
    }
    Ok(entries)
}

/// Appends the `len` bytes of the recipe `store` holds under `hash` to `out`, its entries to
/// `recipe`. A recipe, or content of it, that the store lacks is asked for as the recipe.
pub(crate) fn cook(
    store: &mut DiskStore,
    hash: ContentHash,
    len: u32,
    out: &mut BytesMut,
    recipe: &mut Builder,
) -> Result<(), SegmentsError> {
    let bytes = usize::try_from(len).unwrap_or(usize::MAX);
    let stored = stored(store, hash)?;
    let entries = parse(&stored, bytes).map_err(|source| SegmentsError::Recipe { hash, source })?;
    for entry in &entries {
        match entry {
            Entry::Zero(n) => out.put_bytes(0, usize::try_from(*n).unwrap_or(0)),
            Entry::Inline(bytes) => out.put_slice(bytes),
            Entry::Content { len, hash: part } => match held(store, *part, *len) {
                Ok(content) => out.put_slice(&content),
                Err(SegmentsError::Missing(_)) => return Err(SegmentsError::Missing(vec![hash])),
                Err(e) => return Err(e),
            },
        }
    }
    recipe.extend(&entries);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipe_round_trips_and_a_damaged_or_unbounded_one_is_refused() {
        let hash = ContentHash::of(b"content");
        let mut b = Builder::default();
        b.zero(100);
        b.content(7, hash);
        b.inline(b"header");
        let (name, bytes) = b.finish().unwrap();
        assert_eq!(name, ContentHash::of(&bytes));
        let want = vec![
            Entry::Zero(100),
            Entry::Content { len: 7, hash },
            Entry::Inline(b"header".to_vec()),
        ];
        assert_eq!(parse(&bytes, 113).unwrap(), want);
        let mut again = Builder::default();
        again.extend(&want);
        assert_eq!(
            again.finish().unwrap().0,
            name,
            "the same entries, the same recipe"
        );
        // Another length, a cut, a changed tag, a zero length.
        assert!(matches!(
            parse(&bytes, 114),
            Err(RecipeError::Bounds { .. })
        ));
        assert!(matches!(
            parse(&bytes, 112),
            Err(RecipeError::Bounds { .. })
        ));
        assert_eq!(
            parse(&bytes[..bytes.len() - 1], 113),
            Err(RecipeError::Malformed)
        );
        let mut bad = bytes.clone();
        bad[4] = 9;
        assert_eq!(parse(&bad, 113), Err(RecipeError::Malformed));
        let mut empty = bytes.clone();
        empty[5..9].copy_from_slice(&[0; 4]);
        assert_eq!(parse(&empty, 13), Err(RecipeError::Malformed));
        assert_eq!(parse(b"NCR0", 0), Err(RecipeError::Malformed));
        // Inline bytes are only those too short to be stored.
        let mut long = Builder::default();
        long.zero(1);
        long.inline(&[1; MIN_STORED]);
        let (_, long) = long.finish().unwrap();
        assert_eq!(parse(&long, 1 + MIN_STORED), Err(RecipeError::Malformed));
        // One entry is no recipe, nor more than a frame may have.
        let mut one = Builder::default();
        one.zero(5);
        assert!(one.finish().is_none());
        let mut many = Builder::default();
        for _ in 0..=MAX_SEGMENTS {
            many.zero(1);
        }
        assert!(many.bytes.is_empty(), "no longer grows");
        many.zero(1);
        assert!(many.bytes.is_empty());
        assert!(many.finish().is_none());
    }
}
