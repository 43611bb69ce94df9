//! What every page of the test memory holds, derived from `(seed, index, generation)` alone.
//!
//! A page's content is a pure function of the run's seed, its index and its generation (how often
//! it has been rewritten), so any page can be checked at any time by generating it again and
//! comparing. The kind of a page is drawn from the same three numbers, which gives a mix close to
//! what a real guest's memory shows to a migration:
//!
//! ```text
//! kind    share  content                                        what it exercises
//! zero     25 %  all zero bytes                                 zero-page detection
//! dup      20 %  one of DUP_TEMPLATES random pages, shared      duplicate detection
//! text     30 %  a header line, then words from a small list    compression
//! random   25 %  a 16-byte header, then PRNG bytes              incompressible data
//! ```
//!
//! Main exports: [`PageKind`], [`fill_page`], [`verify_page`], [`page_sum`] and the PRNG
//! [`SplitMix64`].

use std::fmt;

/// Bytes in one page: the unit that is filled, rewritten and checked.
pub(crate) const PAGE_SIZE: usize = 4096;

/// One page of test memory.
pub(crate) type Page = [u8; PAGE_SIZE];

/// How many distinct contents the duplicate pages share between them.
pub(crate) const DUP_TEMPLATES: u64 = 8;

/// Domain separators, so that the kind, the template and the body draw independent numbers.
const DOMAIN_KIND: u64 = 0x6b69_6e64_6b69_6e64;
const DOMAIN_BODY: u64 = 0x626f_6479_626f_6479;
const DOMAIN_DUP: u64 = 0x6475_7064_7570_6475;

/// First four bytes of a random page, before its index and generation.
const RANDOM_MAGIC: [u8; 4] = *b"NCPG";

/// Words a text page is made of: few and short, so the page compresses well.
const WORDS: [&[u8]; 16] = [
    b"migration ",
    b"memory ",
    b"page ",
    b"dirty ",
    b"guest ",
    b"host ",
    b"transfer ",
    b"checksum ",
    b"the ",
    b"of ",
    b"and ",
    b"copy ",
    b"round ",
    b"link ",
    b"novacron ",
    b"\n",
];

/// The kind of content a page holds for one `(seed, index, generation)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PageKind {
    /// All zero bytes.
    Zero,
    /// One of [`DUP_TEMPLATES`] contents shared by many pages.
    Duplicate,
    /// Text-like, compressible bytes.
    Text,
    /// Random-looking, incompressible bytes.
    Random,
}

impl fmt::Display for PageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Zero => "zero",
            Self::Duplicate => "dup",
            Self::Text => "text",
            Self::Random => "random",
        })
    }
}

/// The SplitMix64 generator: tiny, fast and good enough to make pages look random.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64 {
    /// Advances by a fixed odd constant on every draw.
    state: u64,
}

impl SplitMix64 {
    /// A generator that starts from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// A number in `0..bound` (`0` when `bound` is 0); the modulo bias is irrelevant here.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.next_u64().checked_rem(bound).unwrap_or(0)
    }
}

/// The SplitMix64 finalizer: a bijective scramble of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One 64-bit number for a page and a purpose, from which its content is drawn.
fn page_key(domain: u64, seed: u64, index: u64, generation: u32) -> u64 {
    mix(seed ^ mix(index ^ mix(u64::from(generation) ^ domain)))
}

/// The kind of content page `index` holds at `generation` under `seed`.
pub(crate) fn page_kind(seed: u64, index: u64, generation: u32) -> PageKind {
    match page_key(DOMAIN_KIND, seed, index, generation) % 100 {
        0..25 => PageKind::Zero,
        25..45 => PageKind::Duplicate,
        45..75 => PageKind::Text,
        _ => PageKind::Random,
    }
}

/// Writes the content of page `index` at `generation` under `seed` into `page`, returning its kind.
pub(crate) fn fill_page(seed: u64, index: u64, generation: u32, page: &mut Page) -> PageKind {
    let kind = page_kind(seed, index, generation);
    match kind {
        PageKind::Zero => page.fill(0),
        PageKind::Duplicate => {
            let template = page_key(DOMAIN_DUP, seed, index, generation) % DUP_TEMPLATES;
            // N.B. the template's bytes depend on the seed and template number only, never on
            // the index or generation: that is what makes these pages duplicates of each other.
            fill_random(
                &mut SplitMix64::new(mix(seed ^ DOMAIN_DUP ^ template)),
                page,
            );
        }
        PageKind::Text => fill_text(seed, index, generation, page),
        PageKind::Random => {
            let mut rng = SplitMix64::new(page_key(DOMAIN_BODY, seed, index, generation));
            fill_random(&mut rng, page);
            let mut header = Cursor::new(page);
            header.put(&RANDOM_MAGIC);
            header.put(&index.to_le_bytes());
            header.put(&generation.to_le_bytes());
        }
    }
    kind
}

/// Fills `page` with bytes from `rng`.
fn fill_random(rng: &mut SplitMix64, page: &mut Page) {
    for word in page.chunks_exact_mut(8) {
        word.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
}

/// Fills `page` with a header line naming the page, then words until it is full.
fn fill_text(seed: u64, index: u64, generation: u32, page: &mut Page) {
    let mut rng = SplitMix64::new(page_key(DOMAIN_BODY, seed, index, generation));
    let mut out = Cursor::new(page);
    out.put(format!("NCGUEST page={index} gen={generation} seed={seed}\n").as_bytes());
    while !out.is_full() {
        let pick = rng.below(WORDS.len() as u64);
        let word = usize::try_from(pick)
            .ok()
            .and_then(|i| WORDS.get(i))
            .copied()
            .unwrap_or(b"\n");
        out.put(word);
    }
}

/// Writes byte strings one after the other into a page, dropping whatever does not fit.
struct Cursor<'a> {
    /// The part of the page not written yet.
    rest: &'a mut [u8],
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `page`.
    fn new(page: &'a mut Page) -> Self {
        Self { rest: page }
    }

    /// Appends as much of `bytes` as fits.
    fn put(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.rest.len());
        let (head, tail) = std::mem::take(&mut self.rest).split_at_mut(n);
        for (dst, src) in head.iter_mut().zip(bytes) {
            *dst = *src;
        }
        self.rest = tail;
    }

    /// Whether the page is full.
    fn is_full(&self) -> bool {
        self.rest.is_empty()
    }
}

/// Where a page differs from what it should hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mismatch {
    /// The kind the page should be.
    pub(crate) kind: PageKind,
    /// Offset in bytes of the first differing byte.
    pub(crate) offset: usize,
    /// The byte expected there.
    pub(crate) expected: u8,
    /// The byte found there.
    pub(crate) found: u8,
    /// How many bytes of the page differ.
    pub(crate) bad_bytes: usize,
}

/// Checks that `page` holds what page `index` at `generation` under `seed` should hold.
///
/// `scratch` is overwritten: it receives the expected content.
///
/// # Errors
///
/// Returns where the page differs when it does.
pub(crate) fn verify_page(
    seed: u64,
    index: u64,
    generation: u32,
    page: &Page,
    scratch: &mut Page,
) -> Result<(), Mismatch> {
    let kind = if page_kind(seed, index, generation) == PageKind::Zero {
        // Cheaper than generating: compare against zero directly.
        if page.iter().all(|b| *b == 0) {
            return Ok(());
        }
        scratch.fill(0);
        PageKind::Zero
    } else {
        let kind = fill_page(seed, index, generation, scratch);
        if *page == *scratch {
            return Ok(());
        }
        kind
    };
    let mut diffs = page
        .iter()
        .zip(scratch.iter())
        .enumerate()
        .filter(|(_, (found, expected))| found != expected);
    let (offset, (found, expected)) = diffs.next().unwrap_or((0, (&0, &0)));
    Err(Mismatch {
        kind,
        offset,
        expected: *expected,
        found: *found,
        bad_bytes: 1 + diffs.count(),
    })
}

/// A 64-bit checksum of one page's bytes (not cryptographic; it detects change, not tampering).
pub(crate) fn page_sum(page: &Page) -> u64 {
    // Four independent lanes let the multiplies overlap, which matters under emulation.
    let mut lanes = [
        0x243f_6a88_85a3_08d3_u64,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    ];
    for block in page.chunks_exact(32) {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            let value = word.try_into().map_or(0, u64::from_le_bytes);
            *lane = (*lane ^ value)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(29);
        }
    }
    lanes
        .iter()
        .fold(0, |acc: u64, lane| mix(acc.rotate_left(17) ^ lane))
}

/// Folds one page's checksum into a running checksum of many pages, in order.
pub(crate) fn combine_sum(acc: u64, page_sum: u64) -> u64 {
    mix(acc.rotate_left(7) ^ page_sum)
}

#[cfg(test)]
#[path = "page_test.rs"]
mod tests;
