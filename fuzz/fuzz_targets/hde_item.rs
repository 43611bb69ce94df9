//! Feeds untrusted bytes to the HDE item decoder and to a page decoder behind it.
//!
//! No input may panic either. An item that decodes must use no more bytes than it was given,
//! and encode back to exactly the bytes it was read from; whatever the page decoder makes of
//! it is a whole 4 KiB page or a typed error.

#![no_main]

use dwcp::hde::{MemStore, PAGE_SIZE, PageDecoder, decode_item, encode_item};
use libfuzzer_sys::fuzz_target;

/// Bound on an item's payload, as a receiver would set it.
const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut decoder = PageDecoder::new(MemStore::new(1 << 20), 64);
    let mut at = 0;
    let mut index = 0u64;
    while let Some(rest) = data.get(at..) {
        let Ok((item, used)) = decode_item(rest, LIMIT) else {
            break;
        };
        assert!(
            used > 0 && used <= rest.len(),
            "used {used} of {}",
            rest.len()
        );
        let mut again = Vec::new();
        encode_item(&item, &mut again).expect("a decoded item encodes");
        assert_eq!(again.as_slice(), &rest[..used], "item does not round-trip");
        if let Ok(page) = decoder.decode(index, &item) {
            assert_eq!(page.len(), PAGE_SIZE);
        }
        index = index.wrapping_add(1);
        at += used;
    }
});
