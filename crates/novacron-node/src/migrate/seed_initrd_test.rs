use std::io::{Cursor, Write};

use super::*;

/// A `newc` cpio archive of `entries` (name, mode, content) and its trailer.
fn cpio(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let trailer: (&str, u32, &[u8]) = ("TRAILER!!!", 0, b"");
    for (i, &(name, mode, data)) in entries.iter().chain([&trailer]).enumerate() {
        let fields = [
            i as u64 + 1,
            u64::from(mode),
            0,
            0,
            1,
            0,
            data.len() as u64,
            0,
            0,
            0,
            0,
            name.len() as u64 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    out
}

fn pages_of(initrd: &[u8]) -> (Vec<Vec<u8>>, u64) {
    let mut pages = Vec::new();
    let read = initrd_pages(Cursor::new(initrd), |p| {
        pages.push(p);
        Ok(true)
    })
    .unwrap();
    (pages, read)
}

const FILE: u32 = 0o100_644;
const DIR: u32 = 0o040_755;
const LINK: u32 = 0o120_777;

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i % 251).unwrap() ^ seed)
        .collect()
}

#[test]
fn each_file_gives_its_pages_the_last_padded_with_zeros() {
    let big = content(9000, 1);
    let small = content(10, 2);
    let archive = cpio(&[
        ("bin", DIR, b""),
        ("bin/big", FILE, &big),
        ("bin/sh", LINK, b"busybox"),
        ("etc/small", FILE, &small),
        ("empty", FILE, &[0; 5000]),
    ]);
    let (pages, read) = pages_of(&archive);
    assert_eq!(read, 9000 + 7 + 10 + 5000);
    // big: two whole pages and one of 808 bytes; small: one page; the zero file: none.
    assert_eq!(pages.len(), 4);
    assert!(pages.iter().all(|p| p.len() == 4096));
    assert_eq!(&pages[0][..], &big[..4096]);
    assert_eq!(&pages[1][..], &big[4096..8192]);
    assert_eq!(&pages[2][..808], &big[8192..]);
    assert!(pages[2][808..].iter().all(|&b| b == 0));
    assert_eq!(&pages[3][..10], &small[..]);
    assert!(pages[3][10..].iter().all(|&b| b == 0));
}

#[test]
fn an_uncompressed_archive_then_a_gzip_one_are_both_read() {
    let first = content(4096, 3);
    let second = content(4096, 4);
    let mut initrd = cpio(&[("early/firmware", FILE, &first)]);
    // Distributions pad the early archive to 512 bytes.
    initrd.resize(initrd.len().div_ceil(512) * 512, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&cpio(&[("init", FILE, &second)])).unwrap();
    initrd.extend_from_slice(&gz.finish().unwrap());
    let (pages, _) = pages_of(&initrd);
    assert_eq!(pages, vec![first, second]);
}

#[test]
fn a_zstd_archive_is_read() {
    let data = content(5000, 5);
    let initrd = zstd::encode_all(&cpio(&[("init", FILE, &data)])[..], 3).unwrap();
    let (pages, read) = pages_of(&initrd);
    assert_eq!(read, 5000);
    assert_eq!(pages.len(), 2);
    assert_eq!(&pages[0][..], &data[..4096]);
}

#[test]
fn what_is_no_initrd_gives_nothing() {
    for file in [
        &b""[..],
        b"\x7fELF and more",
        &[0u8; 10_000],
        b"070799 not a header",
    ] {
        let (pages, read) = pages_of(file);
        assert!(pages.is_empty() && read == 0);
    }
}

#[test]
fn a_header_with_a_bad_field_or_a_huge_name_stops_the_reading() {
    let good = content(4096, 6);
    let mut archive = cpio(&[("a", FILE, &good), ("b", FILE, &good)]);
    // The second entry's name length (field 11) made "zzzzzzzz".
    let second = archive
        .windows(6)
        .enumerate()
        .filter(|(_, w)| *w == b"070701")
        .nth(1)
        .unwrap()
        .0;
    archive[second + 6 + 88..second + 6 + 96].copy_from_slice(b"zzzzzzzz");
    assert_eq!(pages_of(&archive).0.len(), 1);
    archive[second + 6 + 88..second + 6 + 96].copy_from_slice(b"7fffffff");
    assert_eq!(pages_of(&archive).0.len(), 1);
}

#[test]
fn a_truncated_archive_fails_after_the_pages_it_gave() {
    let data = content(12_288, 7);
    let archive = cpio(&[("a", FILE, &data)]);
    let mut pages = 0;
    let cut = &archive[..archive.len() - 5000];
    let err = initrd_pages(Cursor::new(cut), |_| {
        pages += 1;
        Ok(true)
    })
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(pages, 1);
}

#[test]
fn the_caller_stops_the_reading() {
    let data = content(5 * 4096, 8);
    let archive = cpio(&[("a", FILE, &data)]);
    let mut given = 0;
    initrd_pages(Cursor::new(&archive), |_| {
        given += 1;
        Ok(given < 2)
    })
    .unwrap();
    assert_eq!(given, 2);
}

#[test]
fn an_initrds_file_pages_go_into_the_store_once() {
    use std::sync::{Arc, Mutex};

    use dwcp::hde::{ContentHash, ContentStore, DiskStore, SharedStore};

    let dir = tempfile::tempdir().unwrap();
    let data = content(6000, 9);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&cpio(&[("init", FILE, &data), ("copy", FILE, &data)]))
        .unwrap();
    let initrd = dir.path().join("initrd.img");
    std::fs::write(&initrd, gz.finish().unwrap()).unwrap();
    let store: SharedStore = Arc::new(Mutex::new(
        DiskStore::open(dir.path().join("store"), 1 << 20).unwrap(),
    ));
    // Two pages per file, the second file's the same as the first's.
    assert_eq!(super::super::seed::seed_initrd(&store, &initrd).unwrap(), 2);
    let mut last = data[4096..].to_vec();
    last.resize(4096, 0);
    let mut held = store.lock().unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(
        held.get(&ContentHash::of(&last)).unwrap().as_deref(),
        Some(&last[..])
    );
    drop(held);
    assert_eq!(super::super::seed::seed_initrd(&store, &initrd).unwrap(), 0);
}
