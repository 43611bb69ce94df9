//! Codec tests: the zstd contexts each thread keeps give the frames new ones would, at any
//! level in turn, and stay usable after refusing an input.

use super::codec::{Codec, CodecError, compress, decompress};
use super::page_test::text;

#[test]
fn one_threads_zstd_context_serves_every_level_in_turn() {
    let data = text(1, 300_000);
    let mut sizes = Vec::new();
    for level in [1, 19, -5, 3, 1] {
        let packed = compress(Codec::Zstd, level, &data).unwrap();
        // Each frame is whole by itself: a fresh context decodes it.
        assert_eq!(zstd::bulk::decompress(&packed, data.len()).unwrap(), data);
        assert_eq!(decompress(Codec::Zstd, &packed, data.len()).unwrap(), data);
        // And the kept context packs as a new one at that level does.
        assert_eq!(
            packed.len(),
            zstd::bulk::compress(&data, i32::from(level)).unwrap().len()
        );
        sizes.push(packed.len());
    }
    assert_eq!(sizes.first(), sizes.last());
}

#[test]
fn a_rejected_zstd_input_leaves_the_threads_context_usable() {
    let data = text(2, 100_000);
    let packed = compress(Codec::Zstd, 3, &data).unwrap();
    // Over the limit, then cut short: both refused.
    assert!(matches!(
        decompress(Codec::Zstd, &packed, data.len() - 1),
        Err(CodecError::ZstdDecompress { .. })
    ));
    let cut = packed.get(..packed.len() / 2).unwrap();
    assert!(matches!(
        decompress(Codec::Zstd, cut, data.len()),
        Err(CodecError::ZstdDecompress { .. })
    ));
    assert_eq!(decompress(Codec::Zstd, &packed, data.len()).unwrap(), data);
}
