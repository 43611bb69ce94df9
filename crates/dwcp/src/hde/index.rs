//! [`ContentIndex`]: a Bloom filter of the hashes in a receiver's content store, sent to the
//! sender when a session opens so that the sender can reference content the receiver already
//! holds without asking about each hash over a long link.
//!
//! A filter has no false negatives and a small rate of false positives (about 0.001 % at the
//! 24 bits per hash it is built with). A false positive costs a round trip: the receiver, which
//! checks every reference against its store, answers `Need` and the sender sends the bytes, while
//! the stream waits for them. At 16 bits per hash (0.05 %) a migration back over `edge` met 36 of
//! them, and one in a stopped guest's last pages holds it for a round trip more.
//! So the filter is advice; nothing a sender does with it can corrupt the stream.
//!
//! Payload layout (big-endian): `hashes: u8` (probes per key, 1..=16), `len: u32` (filter
//! bytes, 1..=[`MAX_INDEX_BYTES`]), `bits[len]`. Probe `i` of a hash tests bit
//! `(h1 + i·h2) mod (8·len)`, where `h1` and `h2` are the hash's first two 64-bit words
//! (`h2` with its lowest bit set), bit `b` being bit `b mod 8` of byte `b / 8`.

use bytes::{BufMut, Bytes, BytesMut};

use super::ContentHash;

/// Largest filter in bytes (4 MiB: about 1.4 million hashes at 24 bits each).
pub const MAX_INDEX_BYTES: usize = 4 << 20;
/// Bits per hash a filter is sized for, when it fits.
const BITS_PER_HASH: usize = 24;
/// Probes per hash: the most a filter may ask for, about optimal for 24 bits per hash.
const PROBES: u8 = 16;
/// Most probes a decoded filter may ask for.
const MAX_PROBES: u8 = 16;

/// Why an `Index` payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The payload ends before its header or filter does, or has bytes after it.
    #[error("index payload is {0} bytes, which is not a header and its filter")]
    Length(usize),
    /// The probe count is 0 or over 16.
    #[error("index asks for {0} probes per hash (1 to 16)")]
    Probes(u8),
    /// The filter is empty or over [`MAX_INDEX_BYTES`].
    #[error("index filter of {0} bytes (1 to {MAX_INDEX_BYTES})")]
    Size(usize),
}

/// A Bloom filter over content hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentIndex {
    probes: u8,
    bits: Vec<u8>,
}

impl ContentIndex {
    /// A filter holding `hashes`, of which there are `count`, sized for about 0.001 % false
    /// positives (more when `count` is over what [`MAX_INDEX_BYTES`] holds at that rate).
    #[must_use]
    pub fn build<'a>(count: usize, hashes: impl IntoIterator<Item = &'a ContentHash>) -> Self {
        let bytes = (count.max(1).saturating_mul(BITS_PER_HASH))
            .div_ceil(8)
            .clamp(64, MAX_INDEX_BYTES);
        let mut index = Self {
            probes: PROBES,
            bits: vec![0; bytes],
        };
        for hash in hashes {
            index.insert(hash);
        }
        index
    }

    /// Adds `hash`.
    pub fn insert(&mut self, hash: &ContentHash) {
        for bit in positions(self.probes, self.bits.len(), hash) {
            if let Some(byte) = self.bits.get_mut(bit / 8) {
                *byte |= 1 << (bit % 8);
            }
        }
    }

    /// Whether `hash` may be held: `false` is certain, `true` is likely.
    #[must_use]
    pub fn may_contain(&self, hash: &ContentHash) -> bool {
        positions(self.probes, self.bits.len(), hash).all(|bit| {
            self.bits
                .get(bit / 8)
                .is_some_and(|b| b & (1 << (bit % 8)) != 0)
        })
    }

    /// Size of the filter in bytes.
    #[must_use]
    pub fn len_bytes(&self) -> usize {
        self.bits.len()
    }

    /// The `Index` frame payload.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(5 + self.bits.len());
        out.put_u8(self.probes);
        out.put_u32(u32::try_from(self.bits.len()).unwrap_or(0));
        out.put_slice(&self.bits);
        out.freeze()
    }

    /// Parses an `Index` payload, checking every field before allocating.
    ///
    /// # Errors
    /// [`IndexError`] naming what is wrong.
    pub fn decode(payload: &[u8]) -> Result<Self, IndexError> {
        let (&probes, rest) = payload
            .split_first()
            .ok_or(IndexError::Length(payload.len()))?;
        if probes == 0 || probes > MAX_PROBES {
            return Err(IndexError::Probes(probes));
        }
        let (len, bits) = rest
            .split_first_chunk::<4>()
            .ok_or(IndexError::Length(payload.len()))?;
        let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
        if len == 0 || len > MAX_INDEX_BYTES {
            return Err(IndexError::Size(len));
        }
        if bits.len() != len {
            return Err(IndexError::Length(payload.len()));
        }
        Ok(Self {
            probes,
            bits: bits.to_vec(),
        })
    }
}

/// The bits probe `0..probes` of `hash` tests in a filter of `len` bytes.
fn positions(probes: u8, len: usize, hash: &ContentHash) -> impl Iterator<Item = usize> {
    let word = |at: usize| {
        let mut w = [0u8; 8];
        if let Some(src) = hash.0.get(at..at + 8) {
            w.copy_from_slice(src);
        }
        u64::from_be_bytes(w)
    };
    let h1 = word(0);
    let h2 = word(8) | 1;
    let nbits = (len as u64) * 8;
    (0..u64::from(probes)).map(move |i| {
        usize::try_from(h1.wrapping_add(i.wrapping_mul(h2)) % nbits.max(1)).unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u32) -> ContentHash {
        ContentHash::of(&i.to_be_bytes())
    }

    #[test]
    fn held_hashes_are_always_found_and_others_rarely() {
        let held: Vec<ContentHash> = (0..20_000).map(hash).collect();
        let index = ContentIndex::build(held.len(), &held);
        assert!(held.iter().all(|h| index.may_contain(h)));
        let false_positives = (20_000..1_020_000)
            .map(hash)
            .filter(|h| index.may_contain(h))
            .count();
        // About 0.001 % at 24 bits per hash (10 in a million); 50 leaves room for chance, and
        // 16 bits per hash would give about 460.
        assert!(false_positives < 50, "{false_positives} of 1000000");
    }

    #[test]
    fn an_empty_index_holds_nothing() {
        let index = ContentIndex::build(0, &[]);
        assert!(!(0..1000).map(hash).any(|h| index.may_contain(&h)));
    }

    #[test]
    fn payload_round_trips_and_bad_ones_are_refused() {
        let held: Vec<ContentHash> = (0..100).map(hash).collect();
        let index = ContentIndex::build(held.len(), &held);
        let payload = index.encode();
        assert_eq!(ContentIndex::decode(&payload).unwrap(), index);

        assert_eq!(ContentIndex::decode(&[]), Err(IndexError::Length(0)));
        assert_eq!(
            ContentIndex::decode(&[0, 0, 0, 0, 1, 0]),
            Err(IndexError::Probes(0))
        );
        assert_eq!(
            ContentIndex::decode(&[17, 0, 0, 0, 1, 0]),
            Err(IndexError::Probes(17))
        );
        assert_eq!(
            ContentIndex::decode(&[7, 0, 0, 0, 0]),
            Err(IndexError::Size(0))
        );
        assert_eq!(
            ContentIndex::decode(&[7, 0xff, 0xff, 0xff, 0xff]),
            Err(IndexError::Size(u32::MAX as usize))
        );
        let mut short = payload.to_vec();
        short.pop();
        assert!(matches!(
            ContentIndex::decode(&short),
            Err(IndexError::Length(_))
        ));
        let mut long = payload.to_vec();
        long.push(0);
        assert!(matches!(
            ContentIndex::decode(&long),
            Err(IndexError::Length(_))
        ));
    }

    #[test]
    fn an_oversized_store_still_fits_the_largest_filter() {
        let index = ContentIndex::build(usize::MAX / 16, &[]);
        assert_eq!(index.len_bytes(), MAX_INDEX_BYTES);
        let index = ContentIndex::build(usize::MAX, &[]);
        assert_eq!(index.len_bytes(), MAX_INDEX_BYTES);
    }
}
