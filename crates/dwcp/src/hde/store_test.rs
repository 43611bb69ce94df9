//! Content store tests: bounds and LRU order, and for the disk store reopening, temp files
//! left by a crash, and corrupt entries.

use std::fs;

use super::page_test::noise;
use super::{ContentHash, ContentStore, DiskStore, MemStore};

fn entry(seed: u64, len: usize) -> (ContentHash, Vec<u8>) {
    let content = noise(seed, len);
    (ContentHash::of(&content), content)
}

#[test]
fn mem_store_evicts_least_recently_used_beyond_its_bound() {
    let mut store = MemStore::new(3000);
    let (a, b, c) = (entry(1, 1000), entry(2, 1000), entry(3, 1000));
    for (h, content) in [&a, &b, &c] {
        store.put(*h, content).unwrap();
    }
    assert_eq!(store.get(&a.0).unwrap().as_ref(), Some(&a.1));
    let d = entry(4, 1000);
    store.put(d.0, &d.1).unwrap();
    assert!(store.contains(&a.0) && !store.contains(&b.0) && store.contains(&c.0));
    assert_eq!(store.total_bytes(), 3000);
    let big = entry(5, 3001);
    store.put(big.0, &big.1).unwrap();
    assert!(!store.contains(&big.0));
    assert_eq!(store.len(), 3);
}

/// Bytes one entry of `len` takes in a pack: the 40-byte record header and the content.
fn record(len: u64) -> u64 {
    40 + len
}

#[test]
fn disk_store_survives_reopen_and_evicts_the_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (entry(1, 1000), entry(2, 1000), entry(3, 1000));
    // Room for three entries: each gets a pack of its own.
    let max = 3 * record(1000);
    {
        let mut store = DiskStore::open(dir.path(), max).unwrap();
        for (h, content) in [&a, &b, &c] {
            store.put(*h, content).unwrap();
        }
        assert_eq!(store.get(&a.0).unwrap().as_ref(), Some(&a.1));
    }
    let mut store = DiskStore::open(dir.path(), max).unwrap();
    assert_eq!(store.len(), 3);
    assert_eq!(store.total_bytes(), 3000);
    let d = entry(4, 1000);
    store.put(d.0, &d.1).unwrap();
    // b was used least recently: a was read after it.
    assert!(!store.contains(&b.0));
    for (h, content) in [&a, &c, &d] {
        assert_eq!(store.get(h).unwrap().as_ref(), Some(content));
    }
    assert!(store.disk_bytes() <= max);
    // Reopening with a smaller bound evicts down to it, oldest first.
    drop(store);
    let store = DiskStore::open(dir.path(), 2 * record(1000)).unwrap();
    assert_eq!(store.len(), 2);
    assert!(store.disk_bytes() <= 2 * record(1000));
}

#[test]
fn disk_store_cuts_a_torn_record_and_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (entry(1, 500), entry(2, 500));
    let pack = {
        let mut store = DiskStore::open(dir.path(), 1 << 20).unwrap();
        store.put(a.0, &a.1).unwrap();
        store.put(b.0, &b.1).unwrap();
        store.record_of(&a.0).unwrap().0
    };
    let whole = fs::metadata(&pack).unwrap().len();
    // A record torn by a crash: its header and part of its content, then nothing.
    let c = entry(3, 500);
    let mut torn = b"NCS1".to_vec();
    torn.extend_from_slice(&500u32.to_be_bytes());
    torn.extend_from_slice(&c.0.0);
    torn.extend_from_slice(&c.1[..100]);
    let mut bytes = fs::read(&pack).unwrap();
    bytes.extend_from_slice(&torn);
    fs::write(&pack, &bytes).unwrap();
    // And a file that is not a pack, which is left alone.
    let stranger = dir.path().join("notes.txt");
    fs::write(&stranger, b"x").unwrap();

    let mut store = DiskStore::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(fs::metadata(&pack).unwrap().len(), whole, "torn record cut");
    assert!(stranger.exists());
    assert_eq!(store.len(), 2);
    assert!(!store.contains(&c.0));
    assert_eq!(store.get(&a.0).unwrap().as_ref(), Some(&a.1));
    store.put(c.0, &c.1).unwrap();
    drop(store);
    let mut store = DiskStore::open(dir.path(), 1 << 20).unwrap();
    for (h, content) in [&a, &b, &c] {
        assert_eq!(store.get(h).unwrap().as_ref(), Some(content));
    }
}

#[test]
fn disk_store_cuts_garbage_after_the_last_good_record() {
    let dir = tempfile::tempdir().unwrap();
    let a = entry(1, 700);
    let pack = {
        let mut store = DiskStore::open(dir.path(), 1 << 20).unwrap();
        store.put(a.0, &a.1).unwrap();
        store.record_of(&a.0).unwrap().0
    };
    let mut bytes = fs::read(&pack).unwrap();
    bytes.extend_from_slice(&[0xAB; 300]);
    fs::write(&pack, &bytes).unwrap();
    let mut store = DiskStore::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(store.len(), 1);
    assert_eq!(store.get(&a.0).unwrap().as_ref(), Some(&a.1));
    assert_eq!(fs::metadata(&pack).unwrap().len(), record(700));
}

#[test]
fn disk_store_drops_damaged_content_as_missing() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (entry(1, 500), entry(2, 500));
    let mut store = DiskStore::open(dir.path(), 1 << 20).unwrap();
    for (h, content) in [&a, &b] {
        store.put(*h, content).unwrap();
    }
    let (pack, at) = store.record_of(&a.0).unwrap();
    let file = fs::OpenOptions::new().write(true).open(pack).unwrap();
    file.write_all_at(b"damaged", at + 40 + 10).unwrap();
    assert_eq!(store.get(&a.0).unwrap(), None);
    assert!(!store.contains(&a.0));
    assert_eq!(store.total_bytes(), 500);
    assert_eq!(store.get(&b.0).unwrap().as_ref(), Some(&b.1));
    // The content can be stored again.
    store.put(a.0, &a.1).unwrap();
    assert_eq!(store.get(&a.0).unwrap().as_ref(), Some(&a.1));
}

#[test]
fn disk_store_serves_a_page_decoder_across_sessions() {
    use super::page::{PAGE_SIZE, PageDecoder, PageEncoder};
    use super::{CodecChoice, Encoded};
    let dir = tempfile::tempdir().unwrap();
    let page: [u8; PAGE_SIZE] = noise(9, PAGE_SIZE).try_into().unwrap();
    let hash = ContentHash::of(&page);
    {
        let mut enc = PageEncoder::new(CodecChoice::Lz4, 16, 16);
        let mut dec = PageDecoder::new(DiskStore::open(dir.path(), 1 << 20).unwrap(), 16);
        let item = enc.encode(0, &page).unwrap();
        assert_eq!(dec.decode(0, &item).unwrap().as_slice(), page.as_slice());
    }
    // A later session: the receiver announces what it holds and gets a reference.
    let mut dec = PageDecoder::new(DiskStore::open(dir.path(), 1 << 20).unwrap(), 16);
    assert!(dec.store().contains(&hash));
    let mut enc = PageEncoder::new(CodecChoice::Lz4, 16, 16);
    enc.announce(hash);
    let item = enc.encode(5, &page).unwrap();
    assert_eq!(item, Encoded::Ref(hash));
    assert_eq!(dec.decode(5, &item).unwrap().as_slice(), page.as_slice());
}
