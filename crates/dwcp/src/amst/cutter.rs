//! How a deduplicating sender cuts a chunk into segments ([`Segmenting`], [`Cutter`]).
//!
//! - `content`: content-defined segments (FastCDC, about 4 KiB), for opaque streams such as
//!   disk images and files: an insertion moves boundaries only locally.
//! - `pages`: fixed 4 KiB segments aligned to the stream offset, for raw memory images.
//! - `auto` (the default): QEMU's RAM records where a chunk holds them (one segment per guest
//!   page, see [`super::pages`]), content-defined segments elsewhere.

use std::fmt;
use std::str::FromStr;

use fastcdc::v2020::FastCDC;

use super::pages::{self, Region};

/// Bytes of a page in `pages` mode.
const PAGE: usize = 4096;

/// How a sender cuts chunks into segments when it deduplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Segmenting {
    /// One segment per guest page where a chunk holds QEMU RAM records, content-defined
    /// segments elsewhere.
    #[default]
    Auto,
    /// Fixed 4 KiB segments aligned to the stream offset (a raw memory image).
    Pages,
    /// Content-defined segments only (FastCDC).
    Content,
}

impl fmt::Display for Segmenting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Pages => "pages",
            Self::Content => "content",
        })
    }
}

/// A `--segments` value that is none of `auto`, `pages`, `content`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown segmenting {0:?} (expected auto, pages or content)")]
pub struct ParseSegmentingError(pub String);

impl FromStr for Segmenting {
    type Err = ParseSegmentingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "pages" => Ok(Self::Pages),
            "content" => Ok(Self::Content),
            other => Err(ParseSegmentingError(other.to_owned())),
        }
    }
}

/// One segment of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cut {
    pub(crate) start: usize,
    pub(crate) len: usize,
    /// Whether a frame may end where this segment starts: the next frame then starts at a
    /// point the cutting finds again (not inside a page record).
    pub(crate) resume: bool,
    /// For a whole guest page, where it lives: the address of its QEMU RAM record (`auto`),
    /// or its stream offset (`pages`). A page sent again at the same place may go as a delta
    /// against its previous version.
    pub(crate) page: Option<u64>,
}

/// Cuts chunks of one session: FastCDC sizes of about 4 KiB, larger for chunks over 1 MiB so
/// that a chunk never has more than [`super::segments::MAX_SEGMENTS`] / 2 of them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cutter {
    min: usize,
    avg: usize,
    max: usize,
    mode: Segmenting,
}

impl Cutter {
    /// A cutter for chunks of at most `chunk_size` bytes.
    pub(crate) fn new(chunk_size: usize, mode: Segmenting) -> Self {
        let min = (chunk_size / 2048).next_power_of_two().clamp(1024, 1 << 20);
        Self {
            min,
            avg: min * 4,
            max: min * 16,
            mode,
        }
    }

    fn content(self, data: &[u8], base: usize, out: &mut Vec<Cut>) {
        out.extend(
            FastCDC::new(data, self.min, self.avg, self.max).map(|c| Cut {
                start: base + c.offset,
                len: c.length,
                resume: true,
                page: None,
            }),
        );
    }

    /// The segments of `data`, which starts at stream offset `offset`: contiguous, covering
    /// it exactly.
    pub(crate) fn cut(self, data: &[u8], offset: u64) -> Vec<Cut> {
        let mut out = Vec::new();
        match self.mode {
            Segmenting::Content => self.content(data, 0, &mut out),
            Segmenting::Pages => {
                let first = usize::try_from((PAGE as u64 - offset % PAGE as u64) % PAGE as u64)
                    .unwrap_or(0)
                    .min(data.len());
                if first > 0 {
                    out.push(Cut {
                        start: 0,
                        len: first,
                        resume: true,
                        page: None,
                    });
                }
                let mut at = first;
                while at < data.len() {
                    let len = PAGE.min(data.len() - at);
                    out.push(Cut {
                        start: at,
                        len,
                        resume: true,
                        page: (len == PAGE).then(|| offset.saturating_add(at as u64)),
                    });
                    at += len;
                }
            }
            Segmenting::Auto => match pages::scan(data) {
                None => self.content(data, 0, &mut out),
                Some(regions) => {
                    for r in regions {
                        match r {
                            Region::Opaque(s, e) => {
                                self.content(data.get(s..e).unwrap_or_default(), s, &mut out);
                            }
                            Region::Small(s, e) => out.push(Cut {
                                start: s,
                                len: e - s,
                                resume: true,
                                page: None,
                            }),
                            Region::Page(s) => out.push(Cut {
                                start: s,
                                len: PAGE,
                                resume: false,
                                page: pages::address_of(data, s),
                            }),
                        }
                    }
                }
            },
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_covers(cuts: &[Cut], len: usize) {
        let mut at = 0;
        for c in cuts {
            assert_eq!(c.start, at, "{cuts:?}");
            assert!(c.len > 0);
            at += c.len;
        }
        assert_eq!(at, len);
    }

    #[test]
    fn every_mode_covers_the_chunk() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761).to_be_bytes()[1])
            .collect();
        for mode in [Segmenting::Auto, Segmenting::Pages, Segmenting::Content] {
            for offset in [0, 1, 4095, 4096, 12_345] {
                check_covers(&Cutter::new(512 << 10, mode).cut(&data, offset), data.len());
            }
        }
    }

    #[test]
    fn pages_are_aligned_to_the_stream_offset() {
        let data = vec![1u8; 3 * PAGE];
        let cuts = Cutter::new(512 << 10, Segmenting::Pages).cut(&data, 100);
        assert_eq!(cuts[0].len, PAGE - 100);
        assert!(cuts[1..cuts.len() - 1].iter().all(|c| c.len == PAGE));
    }

    #[test]
    fn auto_gives_each_guest_page_its_own_segment() {
        let mut data = b"device".to_vec();
        for (i, fill) in [3u8, 4, 5].into_iter().enumerate() {
            data.extend((((i as u64 + 1) * 0x1000) | 0x28).to_be_bytes());
            data.extend(std::iter::repeat_n(fill, PAGE));
        }
        let cuts = Cutter::new(512 << 10, Segmenting::Auto).cut(&data, 0);
        check_covers(&cuts, data.len());
        let pages: Vec<&Cut> = cuts.iter().filter(|c| !c.resume).collect();
        assert_eq!(pages.len(), 3);
        for (p, fill) in pages.iter().zip([3u8, 4, 5]) {
            assert!(data[p.start..p.start + p.len].iter().all(|b| *b == fill));
        }
    }

    #[test]
    fn segmenting_parses_and_prints_back() {
        for s in ["auto", "pages", "content"] {
            assert_eq!(s.parse::<Segmenting>().unwrap().to_string(), s);
        }
        assert!("cdc".parse::<Segmenting>().is_err());
    }
}
