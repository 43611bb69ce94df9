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

#[test]
fn disk_store_survives_reopen_and_keeps_lru_order() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (entry(1, 1000), entry(2, 1000), entry(3, 1000));
    {
        let mut store = DiskStore::open(dir.path(), 3000).unwrap();
        for (h, content) in [&a, &b, &c] {
            store.put(*h, content).unwrap();
        }
        assert_eq!(store.get(&a.0).unwrap().as_ref(), Some(&a.1));
    }
    let mut store = DiskStore::open(dir.path(), 3000).unwrap();
    assert_eq!(store.len(), 3);
    assert_eq!(store.total_bytes(), 3000);
    assert_eq!(store.get(&c.0).unwrap().as_ref(), Some(&c.1));
    let d = entry(4, 1000);
    store.put(d.0, &d.1).unwrap();
    // b was used least recently before the reopen.
    assert!(!store.contains(&b.0));
    assert!(!store.path_of(&b.0).exists());
    for (h, content) in [&a, &c, &d] {
        assert_eq!(store.get(h).unwrap().as_ref(), Some(content));
    }
    // Reopening with a smaller bound evicts down to it, oldest first.
    drop(store);
    let store = DiskStore::open(dir.path(), 2000).unwrap();
    assert_eq!(store.len(), 2);
    assert!(!store.contains(&a.0) && store.contains(&c.0) && store.contains(&d.0));
}

#[test]
fn disk_store_removes_temp_files_and_ignores_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let a = entry(1, 500);
    let fan = {
        let mut store = DiskStore::open(dir.path(), 1 << 20).unwrap();
        store.put(a.0, &a.1).unwrap();
        store.path_of(&a.0).parent().unwrap().to_path_buf()
    };
    // A write torn by a crash, named like the store names them.
    let torn = fan.join(".tmp-1234-1");
    fs::write(&torn, &a.1[..100]).unwrap();
    let stranger = fan.join("notes.txt");
    fs::write(&stranger, b"x").unwrap();
    let mut store = DiskStore::open(dir.path(), 1 << 20).unwrap();
    assert!(!torn.exists());
    assert!(stranger.exists());
    assert_eq!(store.len(), 1);
    assert_eq!(store.get(&a.0).unwrap().as_ref(), Some(&a.1));
}

#[test]
fn disk_store_drops_corrupt_and_vanished_entries_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (entry(1, 500), entry(2, 500), entry(3, 500));
    let mut store = DiskStore::open(dir.path(), 1 << 20).unwrap();
    for (h, content) in [&a, &b, &c] {
        store.put(*h, content).unwrap();
    }
    fs::write(store.path_of(&a.0), b"damaged").unwrap();
    fs::write(store.path_of(&b.0), b"").unwrap();
    fs::remove_file(store.path_of(&c.0)).unwrap();
    for h in [a.0, b.0, c.0] {
        assert_eq!(store.get(&h).unwrap(), None);
        assert!(!store.contains(&h));
        assert!(!store.path_of(&h).exists());
    }
    assert_eq!(store.total_bytes(), 0);
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

#[test]
fn disk_store_writes_again_an_entry_whose_file_was_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = DiskStore::open(dir.path(), 1 << 20).unwrap();
    let (h, content) = entry(9, 2000);
    store.put(h, &content).unwrap();
    fs::remove_file(store.path_of(&h)).unwrap();
    store.put(h, &content).unwrap();
    assert_eq!(store.get(&h).unwrap(), Some(content));
    assert_eq!(store.total_bytes(), 2000);
}
