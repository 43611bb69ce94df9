use std::io::Cursor;
use std::sync::{Arc, Mutex};

use dwcp::hde::DiskStore;

use super::*;

/// A 64-bit little-endian ELF file of `len` bytes whose program headers are `loads`
/// (`(type, offset, filesz)`), every byte after the headers set by `fill`.
fn elf(len: usize, loads: &[(u32, u64, u64)], fill: impl Fn(usize) -> u8) -> Vec<u8> {
    let mut file: Vec<u8> = (0..len).map(fill).collect();
    file[..64].fill(0);
    file[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
    file[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    file[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    file[0x38..0x3a].copy_from_slice(&u16::try_from(loads.len()).unwrap().to_le_bytes());
    for (i, &(kind, offset, filesz)) in loads.iter().enumerate() {
        let entry = &mut file[64 + 56 * i..64 + 56 * (i + 1)];
        entry.fill(0);
        entry[..4].copy_from_slice(&kind.to_le_bytes());
        entry[8..16].copy_from_slice(&offset.to_le_bytes());
        entry[32..40].copy_from_slice(&filesz.to_le_bytes());
    }
    file
}

#[test]
fn loadable_segments_start_at_a_page_and_end_in_the_file() {
    let file = elf(
        40_000,
        &[
            (1, 8192, 4096),
            (4, 0, 100),
            (1, 13_000, 100_000),
            (1, 50_000, 10),
        ],
        |_| 1,
    );
    let segments = kernel_segments(&mut Cursor::new(file)).unwrap().unwrap();
    // The note (type 4) and the segment past the end are left out; the third is cut at the end.
    assert_eq!(segments, vec![(8192, 4096), (12_288, 40_000 - 12_288)]);
}

#[test]
fn files_that_are_not_elf_kernels_hold_no_segments() {
    let bz = vec![0x4d; 10_000];
    assert_eq!(kernel_segments(&mut Cursor::new(bz)).unwrap(), None);
    let short = vec![0x7f, b'E', b'L', b'F', 2, 1];
    assert_eq!(kernel_segments(&mut Cursor::new(short)).unwrap(), None);
    let mut big_endian = elf(8192, &[(1, 4096, 4096)], |_| 1);
    big_endian[5] = 2;
    assert_eq!(kernel_segments(&mut Cursor::new(big_endian)).unwrap(), None);
    // A program header table that runs past the end of the file, and too many headers.
    let mut truncated = elf(8192, &[(1, 4096, 4096)], |_| 1);
    truncated[0x20..0x28].copy_from_slice(&8150u64.to_le_bytes());
    assert_eq!(kernel_segments(&mut Cursor::new(truncated)).unwrap(), None);
    let mut many = elf(65_536, &[(1, 4096, 4096)], |_| 1);
    many[0x38..0x3a].copy_from_slice(&200u16.to_le_bytes());
    assert_eq!(kernel_segments(&mut Cursor::new(many)).unwrap(), None);
}

#[test]
fn a_kernels_pages_go_into_the_store_once_and_zero_pages_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    // Pages 1 and 2 are one segment, page 3 another; page 2 is zeros and page 3 repeats page 1.
    let file = elf(
        4 * 4096,
        &[(1, 4096, 2 * 4096), (1, 3 * 4096, 4096)],
        |i| match i / 4096 {
            2 => 0,
            _ => u8::try_from(i % 4096 % 251).unwrap(),
        },
    );
    let kernel = dir.path().join("vmlinux");
    std::fs::write(&kernel, &file).unwrap();
    let store: SharedStore = Arc::new(Mutex::new(
        DiskStore::open(dir.path().join("store"), 1 << 20).unwrap(),
    ));
    assert_eq!(seed_kernel(&store, &kernel).unwrap(), 1);
    let page = &file[4096..8192];
    let mut held = store.lock().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(
        held.get(&ContentHash::of(page)).unwrap().as_deref(),
        Some(page)
    );
    drop(held);
    assert_eq!(seed_kernel(&store, &kernel).unwrap(), 0);
}

#[test]
fn a_compressed_kernel_puts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    std::fs::write(&kernel, vec![0x4d; 3 * 4096]).unwrap();
    let store: SharedStore = Arc::new(Mutex::new(
        DiskStore::open(dir.path().join("store"), 1 << 20).unwrap(),
    ));
    assert_eq!(seed_kernel(&store, &kernel).unwrap(), 0);
    assert!(store.lock().unwrap().is_empty());
}
