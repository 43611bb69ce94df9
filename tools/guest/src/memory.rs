//! The test memory: pages, the generation each page is at, and the operations on them.
//!
//! [`GuestMemory`] owns one contiguous allocation of pages and, beside it, the generation of every
//! page. Page `i` must hold `fill_page(seed, i, generations[i])` at all times; rewriting a page
//! bumps its generation, checking it generates the expected content again and compares.
//!
//! N.B. the generation table lives in the same process memory as the pages, so a migration moves
//! both together; a page that arrives stale or damaged no longer matches its generation.

use std::collections::TryReserveError;
use std::fmt;
use std::num::NonZeroU64;

use crate::page::{
    Mismatch, PAGE_SIZE, Page, PageKind, combine_sum, fill_page, page_sum, verify_page,
};

/// One page of the test memory, placed at a page boundary.
///
/// N.B. a `Vec` of bare byte arrays starts wherever the allocator puts it (16 bytes past a page
/// boundary for glibc's `mmap`ed blocks), so every page would straddle two of the machine's: no
/// zero or duplicate page would be one to the hypervisor, and each rewrite would dirty two.
#[repr(C, align(4096))]
struct Frame(Page);

/// The pages under test and their generations.
pub(crate) struct GuestMemory {
    /// Seed of every page's content.
    seed: u64,
    /// The pages, one contiguous allocation starting at a page boundary.
    pages: Vec<Frame>,
    /// Generation of each page, same length as `pages`.
    generations: Vec<u32>,
    /// Room to generate a page's expected content during a check.
    scratch: Box<Page>,
}

impl fmt::Debug for GuestMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestMemory")
            .field("seed", &self.seed)
            .field("pages", &self.pages.len())
            .finish_non_exhaustive()
    }
}

/// A page that did not hold what its generation says it should.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CheckFailure {
    /// Index of the page.
    pub(crate) index: usize,
    /// Generation the page should be at.
    pub(crate) generation: u32,
    /// Where and how it differs.
    pub(crate) mismatch: Mismatch,
}

impl GuestMemory {
    /// Allocates `pages` pages and fills each at generation 0.
    ///
    /// # Errors
    ///
    /// Returns [`MemoryError::Allocate`] when the memory cannot be had.
    pub(crate) fn new(seed: u64, pages: NonZeroU64) -> Result<Self, MemoryError> {
        let bytes = pages.get().saturating_mul(PAGE_SIZE as u64);
        let count = usize::try_from(pages.get()).map_err(|_| MemoryError::TooLarge { bytes })?;
        let allocate = |source| MemoryError::Allocate { bytes, source };
        let mut memory = Self {
            seed,
            pages: Vec::new(),
            generations: Vec::new(),
            scratch: Box::new([0; PAGE_SIZE]),
        };
        memory.pages.try_reserve_exact(count).map_err(allocate)?;
        memory
            .generations
            .try_reserve_exact(count)
            .map_err(allocate)?;
        memory.generations.resize(count, 0);
        // Each page is written in full, zero pages too, so that all of it is really allocated.
        memory.pages.extend((0..count).map(|index| {
            let mut frame = Frame([0; PAGE_SIZE]);
            fill_page(seed, index as u64, 0, &mut frame.0);
            frame
        }));
        Ok(memory)
    }

    /// Number of pages.
    pub(crate) fn len(&self) -> usize {
        self.pages.len()
    }

    /// Moves page `index` to its next generation and writes that content; returns the new kind.
    ///
    /// An index past the end does nothing and returns `None`.
    pub(crate) fn rewrite(&mut self, index: usize) -> Option<PageKind> {
        let frame = self.pages.get_mut(index)?;
        let generation = self.generations.get_mut(index)?;
        *generation = generation.wrapping_add(1);
        Some(fill_page(
            self.seed,
            index as u64,
            *generation,
            &mut frame.0,
        ))
    }

    /// Checks that page `index` holds what its generation says; an index past the end passes.
    ///
    /// # Errors
    ///
    /// Returns the page, its generation and the first difference when the page is wrong.
    pub(crate) fn check(&mut self, index: usize) -> Result<(), CheckFailure> {
        let (Some(frame), Some(&generation)) = (self.pages.get(index), self.generations.get(index))
        else {
            return Ok(());
        };
        verify_page(
            self.seed,
            index as u64,
            generation,
            &frame.0,
            &mut self.scratch,
        )
        .map_err(|mismatch| CheckFailure {
            index,
            generation,
            mismatch,
        })
    }

    /// Writes page `index` again with the content of its current generation.
    ///
    /// After a failed check this keeps one damage from being reported on every later sweep.
    pub(crate) fn repair(&mut self, index: usize) {
        if let (Some(frame), Some(&generation)) =
            (self.pages.get_mut(index), self.generations.get(index))
        {
            fill_page(self.seed, index as u64, generation, &mut frame.0);
        }
    }

    /// A checksum of all pages' bytes, in page order.
    pub(crate) fn sum(&self) -> u64 {
        self.pages
            .iter()
            .fold(0, |acc, frame| combine_sum(acc, page_sum(&frame.0)))
    }

    /// Page `index` for writing, bypassing generations: how tests damage memory.
    #[cfg(test)]
    pub(crate) fn page_mut(&mut self, index: usize) -> Option<&mut Page> {
        self.pages.get_mut(index).map(|frame| &mut frame.0)
    }

    /// Address of page `index`, to see where it sits.
    #[cfg(test)]
    pub(crate) fn page_address(&self, index: usize) -> Option<usize> {
        self.pages
            .get(index)
            .map(|frame| std::ptr::from_ref(frame) as usize)
    }
}

/// The test memory could not be set up.
#[derive(Debug)]
pub(crate) enum MemoryError {
    /// The size does not fit this machine's address space.
    TooLarge {
        /// Bytes asked for.
        bytes: u64,
    },
    /// The allocator refused.
    Allocate {
        /// Bytes asked for.
        bytes: u64,
        /// Why it refused.
        source: TryReserveError,
    },
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { bytes } => write!(f, "{bytes} bytes do not fit the address space"),
            Self::Allocate { bytes, .. } => write!(f, "could not allocate {bytes} bytes"),
        }
    }
}

impl std::error::Error for MemoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::TooLarge { .. } => None,
            Self::Allocate { source, .. } => Some(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(pages: u64) -> GuestMemory {
        GuestMemory::new(3, NonZeroU64::new(pages).unwrap()).unwrap()
    }

    #[test]
    fn fresh_memory_passes_every_check() {
        let mut mem = memory(64);
        assert_eq!(mem.len(), 64);
        for index in 0..64 {
            assert_eq!(mem.check(index), Ok(()));
        }
    }

    #[test]
    fn rewritten_pages_still_pass_and_change_the_sum() {
        let mut mem = memory(64);
        let before = mem.sum();
        for index in 0..64 {
            mem.rewrite(index).unwrap();
            mem.rewrite(index).unwrap();
        }
        assert!((0..64).all(|index| mem.check(index).is_ok()));
        assert_ne!(mem.sum(), before);
    }

    #[test]
    fn the_same_seed_and_rewrites_give_the_same_sum() {
        let (mut a, mut b) = (memory(32), memory(32));
        assert_eq!(a.sum(), b.sum());
        for index in [3, 1, 4, 1, 5, 9, 2, 6] {
            a.rewrite(index);
            b.rewrite(index);
        }
        assert_eq!(a.sum(), b.sum());
        a.rewrite(0);
        assert_ne!(a.sum(), b.sum());
    }

    #[test]
    fn a_damaged_page_fails_once_and_passes_after_repair() {
        let mut mem = memory(16);
        mem.rewrite(5);
        let expected = mem.page_mut(5).unwrap()[100];
        mem.page_mut(5).unwrap()[100] ^= 0xff;
        let failure = mem.check(5).unwrap_err();
        assert_eq!(failure.index, 5);
        assert_eq!(failure.generation, 1);
        assert_eq!(failure.mismatch.offset, 100);
        assert_eq!(failure.mismatch.expected, expected);
        assert_eq!(failure.mismatch.found, expected ^ 0xff);
        mem.repair(5);
        assert_eq!(mem.check(5), Ok(()));
    }

    #[test]
    fn a_page_left_at_an_old_generation_fails() {
        let mut mem = memory(16);
        let index = (0..16)
            .find(|&i| {
                let mut old = [0; PAGE_SIZE];
                let mut new = [0; PAGE_SIZE];
                fill_page(3, i as u64, 0, &mut old);
                fill_page(3, i as u64, 1, &mut new);
                old != new
            })
            .unwrap();
        let old = *mem.page_mut(index).unwrap();
        mem.rewrite(index);
        *mem.page_mut(index).unwrap() = old;
        assert!(mem.check(index).is_err());
    }

    #[test]
    fn every_page_sits_at_a_page_boundary() {
        let mem = memory(8);
        for index in 0..8 {
            let address = mem.page_address(index).unwrap();
            assert_eq!(address % PAGE_SIZE, 0, "page {index} at {address:#x}");
        }
    }

    #[test]
    fn indices_past_the_end_are_ignored() {
        let mut mem = memory(4);
        assert_eq!(mem.rewrite(4), None);
        assert_eq!(mem.check(4), Ok(()));
        mem.repair(4);
    }
}
