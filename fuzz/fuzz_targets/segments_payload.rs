//! Feeds untrusted bytes to the receiver's `Segments` payload decoder: segment lists, literal
//! blocks (raw, lz4, zstd, zstd against the bytes before the frame) and references into a
//! small content store.
//!
//! No input may panic. The first two bytes say how many of a fixed run of stream bytes came
//! before the frame (for prefixed blocks); the rest is the payload. Whatever decodes is at most
//! the limit long.

#![no_main]

use std::sync::{Mutex, OnceLock};

use dwcp::amst::decode_segments_payload;
use dwcp::hde::{ContentHash, ContentStore, DiskStore};
use libfuzzer_sys::fuzz_target;

/// Bound on a frame's stream bytes, as a receiver would set it.
const LIMIT: usize = 1 << 20;
/// Stream bytes that may come before a frame.
const BEFORE: usize = 60_000;

/// A store in a directory of its own, holding a few 4 KiB pages that references may name.
fn store() -> &'static Mutex<DiskStore> {
    static STORE: OnceLock<Mutex<DiskStore>> = OnceLock::new();
    STORE.get_or_init(|| {
        // One directory, emptied at each start: what a run stores is of no use to the next.
        let dir = std::env::temp_dir().join("dwcp-fuzz-segments");
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = DiskStore::open(&dir, 4 << 20).expect("a store in the temp directory");
        for page in before_bytes().chunks(4096).take(4) {
            store
                .put(ContentHash::of(page), page)
                .expect("a page stored");
        }
        Mutex::new(store)
    })
}

/// The stream bytes before a frame: text-like, so that prefixed blocks can match them.
fn before_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        b"stream bytes before the frame, "
            .iter()
            .copied()
            .cycle()
            .take(BEFORE)
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((head, payload)) = data.split_first_chunk::<2>() else {
        return;
    };
    let held = usize::from(u16::from_be_bytes(*head)).min(BEFORE);
    let before = &before_bytes()[BEFORE - held..];
    if let Ok(bytes) = decode_segments_payload(payload, LIMIT, store(), before) {
        assert!(bytes.len() <= LIMIT, "{} bytes decoded", bytes.len());
    }
});
