//! Page-aware segmentation: where QEMU's RAM migration records are in a chunk, so that each
//! guest page becomes one segment of its own (and a page unchanged since the receiver last saw
//! it, at any address, goes as a reference), instead of content-defined segments that straddle
//! pages and match only when every page they touch is unchanged.
//!
//! QEMU's precopy stream carries guest memory as records (`migration/ram.c`), every integer
//! big-endian:
//!
//! ```text
//! page      addr | 0x28 (PAGE | CONTINUE) : u64, then the 4096 bytes of the page
//! zero page addr | 0x22 (ZERO | CONTINUE) : u64, then one fill byte
//! end       0x10 (EOS) : u64
//! ```
//!
//! between device sections whose layout only QEMU knows. So the stream is not parsed: a chunk is
//! scanned for a *chain*, a record whose next record also parses, and walked record by record
//! while records follow each other; whatever lies outside chains (device state, the first page
//! of a RAM block, which names the block) is left to content-defined cutting. A false chain in
//! other data would only cut segments at odd places: the segments still cover the chunk.

/// Bytes of a guest page.
const PAGE: usize = 4096;
/// Record flags (the low 12 bits of the header word).
const PAGE_CONT: u64 = 0x28;
const ZERO_CONT: u64 = 0x22;
const EOS: u64 = 0x10;
/// Guest addresses are below this (256 TiB); a header word above it is not a record.
const MAX_ADDR: u64 = 1 << 48;

/// What [`scan`] found in a chunk, in order, covering it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Region {
    /// Bytes outside any chain: `(start, end)`.
    Opaque(usize, usize),
    /// Record headers and zero-page records between pages: `(start, end)`.
    Small(usize, usize),
    /// The 4096 bytes of one page, starting here.
    Page(usize),
}

fn word(data: &[u8], at: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(8)?)?;
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes);
    Some(u64::from_be_bytes(w))
}

/// The guest address in the header of the page record whose page starts at `page` (what
/// [`Region::Page`] gives): the header word without its flag bits.
pub(crate) fn address_of(data: &[u8], page: usize) -> Option<u64> {
    word(data, page.checked_sub(8)?).map(|h| h & !0xfff)
}

/// The length of the record at `at` (header included), if one starts there.
fn record_len(data: &[u8], at: usize) -> Option<usize> {
    let h = word(data, at)?;
    if h & !0xfff >= MAX_ADDR {
        return None;
    }
    match h & 0xfff {
        PAGE_CONT => Some(8 + PAGE),
        ZERO_CONT => Some(9),
        _ => None,
    }
}

/// Whether what follows a record at `at` is consistent with a chain: another record, the end
/// of the RAM part, or the end of the chunk (the next header is cut off).
fn follows(data: &[u8], at: usize) -> bool {
    at + 8 > data.len() || record_len(data, at).is_some() || word(data, at) == Some(EOS)
}

/// The first position at or after `from` where a chain starts.
fn chain_start(data: &[u8], from: usize) -> Option<usize> {
    // The header's last byte holds the flags' low 8 bits: look only where it could.
    let tail = data.get(from..)?;
    tail.iter()
        .enumerate()
        .skip(7)
        .filter(|(_, b)| **b == 0x28 || **b == 0x22)
        .map(|(i, _)| from + i - 7)
        .find(|p| {
            record_len(data, *p).is_some_and(|len| p + len <= data.len() && follows(data, p + len))
        })
}

/// The regions of `data`, or `None` when it holds no chain of QEMU RAM records.
pub(crate) fn scan(data: &[u8]) -> Option<Vec<Region>> {
    let first = chain_start(data, 0)?;
    let mut out = Vec::new();
    if first > 0 {
        out.push(Region::Opaque(0, first));
    }
    let mut at = first;
    let mut small = first;
    loop {
        match record_len(data, at) {
            Some(len) if at + len <= data.len() => {
                if len == 8 + PAGE {
                    out.push(Region::Small(small, at + 8));
                    out.push(Region::Page(at + 8));
                    small = at + len;
                }
                at += len;
            }
            _ => {
                // The chain ends: at the chunk's end, at a record cut off by it, or at bytes
                // that are not a record. Look for the next chain after it.
                let next = chain_start(data, at);
                if small < at {
                    out.push(Region::Small(small, at));
                }
                match next {
                    Some(n) => {
                        if n > at {
                            out.push(Region::Opaque(at, n));
                        }
                        at = n;
                        small = n;
                    }
                    None => {
                        if at < data.len() {
                            out.push(Region::Opaque(at, data.len()));
                        }
                        return Some(out);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_record(addr: u64, fill: u8) -> Vec<u8> {
        let mut r = (addr | PAGE_CONT).to_be_bytes().to_vec();
        r.extend(std::iter::repeat_n(fill, PAGE));
        r
    }

    fn zero_record(addr: u64) -> Vec<u8> {
        let mut r = (addr | ZERO_CONT).to_be_bytes().to_vec();
        r.push(0);
        r
    }

    fn covered(regions: &[Region], len: usize) -> bool {
        let mut at = 0;
        for r in regions {
            let (s, e) = match *r {
                Region::Opaque(s, e) | Region::Small(s, e) => (s, e),
                Region::Page(s) => (s, s + PAGE),
            };
            if s != at || e <= s {
                return false;
            }
            at = e;
        }
        at == len
    }

    #[test]
    fn pages_between_device_state_become_their_own_regions() {
        let mut data = b"device state that is not a record".to_vec();
        let start = data.len();
        data.extend(page_record(0x1000, 7));
        data.extend(zero_record(0x2000));
        data.extend(zero_record(0x3000));
        data.extend(page_record(0x4000, 9));
        let tail = data.len();
        data.extend(EOS.to_be_bytes());
        data.extend(b"more device state");
        let regions = scan(&data).unwrap();
        assert!(covered(&regions, data.len()), "{regions:?}");
        assert_eq!(regions[0], Region::Opaque(0, start));
        assert_eq!(regions[1], Region::Small(start, start + 8));
        assert_eq!(regions[2], Region::Page(start + 8));
        // The two zero-page records and the next header go together.
        assert_eq!(
            regions[3],
            Region::Small(start + 8 + PAGE, start + 8 + PAGE + 18 + 8)
        );
        assert_eq!(regions[4], Region::Page(start + 8 + PAGE + 18 + 8));
        assert_eq!(regions[5], Region::Opaque(tail, data.len()));
    }

    #[test]
    fn a_page_cut_off_by_the_chunk_end_is_left_opaque() {
        let mut data = page_record(0x1000, 1);
        data.extend(page_record(0x2000, 2));
        data.truncate(data.len() - 100);
        let regions = scan(&data).unwrap();
        assert!(covered(&regions, data.len()), "{regions:?}");
        assert_eq!(regions[1], Region::Page(8));
        assert_eq!(
            *regions.last().unwrap(),
            Region::Opaque(8 + PAGE, data.len())
        );
    }

    #[test]
    fn data_without_records_has_no_chain() {
        let noise: Vec<u8> = (0..1u32 << 20)
            .map(|i| i.wrapping_mul(2_654_435_761).to_be_bytes()[1])
            .collect();
        assert_eq!(scan(&noise), None);
        assert_eq!(scan(&[0u8; 10_000]), None);
        assert_eq!(scan(b"short"), None);
    }
}
