//! Page content: deterministic, mixed in kind, and checkable.

use std::collections::{HashMap, HashSet};

use super::*;

fn page_of(seed: u64, index: u64, generation: u32) -> (PageKind, Box<Page>) {
    let mut page = Box::new([0xa5; PAGE_SIZE]);
    let kind = fill_page(seed, index, generation, &mut page);
    (kind, page)
}

#[test]
fn same_seed_index_and_generation_give_the_same_page() {
    for index in 0..64 {
        assert_eq!(page_of(7, index, 3), page_of(7, index, 3));
    }
}

#[test]
fn a_new_generation_changes_most_pages() {
    let changed = (0..256)
        .filter(|&index| page_of(1, index, 0) != page_of(1, index, 1))
        .count();
    // Zero → zero and template → same template keep a page unchanged; rarely, though.
    assert!(changed > 180, "only {changed} of 256 pages changed");
}

#[test]
fn different_seeds_give_different_memory() {
    let differ = (0..64).any(|index| page_of(1, index, 0) != page_of(2, index, 0));
    assert!(differ);
}

#[test]
fn kinds_are_mixed_in_the_intended_shares() {
    let mut counts: HashMap<PageKind, u32> = HashMap::new();
    for index in 0..10_000 {
        *counts.entry(page_kind(42, index, 0)).or_default() += 1;
    }
    let share = |kind| counts.get(&kind).copied().unwrap_or(0);
    for (kind, expected) in [
        (PageKind::Zero, 2500),
        (PageKind::Duplicate, 2000),
        (PageKind::Text, 3000),
        (PageKind::Random, 2500),
    ] {
        let got = share(kind);
        assert!(
            got.abs_diff(expected) < 300,
            "{kind}: {got} pages, expected about {expected}"
        );
    }
}

#[test]
fn zero_pages_are_all_zero() {
    let index = (0..)
        .find(|&i| page_kind(5, i, 0) == PageKind::Zero)
        .unwrap();
    let (kind, page) = page_of(5, index, 0);
    assert_eq!(kind, PageKind::Zero);
    assert!(page.iter().all(|b| *b == 0));
}

#[test]
fn duplicate_pages_share_a_few_contents() {
    let dups: Vec<Box<Page>> = (0..2000)
        .filter(|&i| page_kind(9, i, 0) == PageKind::Duplicate)
        .map(|i| page_of(9, i, 0).1)
        .collect();
    assert!(dups.len() > 300);
    let distinct: HashSet<&Page> = dups.iter().map(|p| &**p).collect();
    assert_eq!(distinct.len(), usize::try_from(DUP_TEMPLATES).unwrap());
    assert!(distinct.iter().all(|p| p.iter().any(|b| *b != 0)));
}

#[test]
fn text_pages_name_themselves_and_hold_only_words() {
    let index = (0..)
        .find(|&i| page_kind(3, i, 4) == PageKind::Text)
        .unwrap();
    let (_, page) = page_of(3, index, 4);
    let header = format!("NCGUEST page={index} gen=4 seed=3\n");
    assert!(page.starts_with(header.as_bytes()));
    let body = &page[header.len()..];
    assert!(
        body.iter()
            .all(|b| b.is_ascii_lowercase() || *b == b' ' || *b == b'\n')
    );
    // Few distinct bytes: the page is compressible.
    let distinct: HashSet<u8> = page.iter().copied().collect();
    assert!(distinct.len() < 64, "{} distinct bytes", distinct.len());
}

#[test]
fn random_pages_carry_their_index_and_generation() {
    let index = (0..)
        .find(|&i| page_kind(3, i, 2) == PageKind::Random)
        .unwrap();
    let (_, page) = page_of(3, index, 2);
    assert_eq!(&page[..4], b"NCPG");
    assert_eq!(page[4..12], index.to_le_bytes());
    assert_eq!(page[12..16], 2u32.to_le_bytes());
    let distinct: HashSet<u8> = page.iter().copied().collect();
    assert!(distinct.len() > 200, "{} distinct bytes", distinct.len());
}

#[test]
fn every_kind_verifies_when_intact() {
    let mut scratch = Box::new([0; PAGE_SIZE]);
    let mut seen = HashSet::new();
    for index in 0..200 {
        let (kind, page) = page_of(11, index, 1);
        seen.insert(kind);
        assert_eq!(verify_page(11, index, 1, &page, &mut scratch), Ok(()));
    }
    assert_eq!(seen.len(), 4);
}

#[test]
fn a_flipped_byte_is_found_in_every_kind() {
    let mut scratch = Box::new([0; PAGE_SIZE]);
    let mut seen = HashSet::new();
    for index in 0..200 {
        let (kind, mut page) = page_of(11, index, 1);
        seen.insert(kind);
        let expected = page[1000];
        page[1000] ^= 0x10;
        let mismatch = verify_page(11, index, 1, &page, &mut scratch).unwrap_err();
        assert_eq!(
            mismatch,
            Mismatch {
                kind,
                offset: 1000,
                expected,
                found: expected ^ 0x10,
                bad_bytes: 1,
            }
        );
    }
    assert_eq!(seen.len(), 4);
}

#[test]
fn a_page_from_another_generation_fails_its_check() {
    let mut scratch = Box::new([0; PAGE_SIZE]);
    let stale = (0..)
        .find(|&i| page_of(8, i, 0) != page_of(8, i, 1))
        .unwrap();
    let (_, page) = page_of(8, stale, 0);
    let mismatch = verify_page(8, stale, 1, &page, &mut scratch).unwrap_err();
    assert!(mismatch.bad_bytes > 0);
}

#[test]
fn page_sum_depends_on_every_word() {
    let (_, page) = page_of(4, 0, 0);
    let base = page_sum(&page);
    assert_eq!(base, page_sum(&page));
    for offset in (0..PAGE_SIZE).step_by(509) {
        let mut changed = page.clone();
        changed[offset] ^= 1;
        assert_ne!(page_sum(&changed), base, "offset {offset}");
    }
}

#[test]
fn combined_sum_depends_on_page_order() {
    let (a, b) = (page_sum(&[1; PAGE_SIZE]), page_sum(&[2; PAGE_SIZE]));
    assert_ne!(
        combine_sum(combine_sum(0, a), b),
        combine_sum(combine_sum(0, b), a)
    );
}

#[test]
fn below_stays_in_bounds() {
    let mut rng = SplitMix64::new(1);
    assert!((0..1000).all(|_| rng.below(7) < 7));
    assert_eq!(rng.below(0), 0);
}
