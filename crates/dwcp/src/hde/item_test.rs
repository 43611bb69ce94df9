//! Item serialization tests: every kind round-trips, and every malformed input is refused
//! with its own error.

use proptest::prelude::*;

use super::item::{ItemError, decode_item, encode_item};
use super::{Codec, ContentHash, DeltaCodec, Encoded};

fn samples() -> Vec<Encoded> {
    vec![
        Encoded::Zero { len: 4096 },
        Encoded::Ref(ContentHash([0xab; 32])),
        Encoded::Delta {
            base_index: u64::MAX,
            codec: DeltaCodec::Rle,
            bytes: vec![0, 1, 0, 1, 9],
        },
        Encoded::Delta {
            base_index: 3,
            codec: DeltaCodec::Lz4,
            bytes: vec![7; 20],
        },
        Encoded::Compressed {
            codec: Codec::Lz4,
            level: 0,
            bytes: vec![1, 2, 3],
        },
        Encoded::Compressed {
            codec: Codec::Zstd,
            level: -7,
            bytes: vec![4; 10],
        },
        Encoded::Compressed {
            codec: Codec::Zstd,
            level: 22,
            bytes: vec![4; 10],
        },
        Encoded::Raw(vec![5; 4096]),
    ]
}

fn bytes_of(item: &Encoded) -> Vec<u8> {
    let mut out = Vec::new();
    encode_item(item, &mut out).unwrap();
    out
}

#[test]
fn every_kind_round_trips_back_to_back() {
    let mut buf = Vec::new();
    for item in samples() {
        encode_item(&item, &mut buf).unwrap();
    }
    let mut rest = buf.as_slice();
    for item in samples() {
        let (back, used) = decode_item(rest, 4096).unwrap();
        assert_eq!(back, item);
        assert_eq!(used, item.wire_len());
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
}

#[test]
fn every_short_prefix_is_truncated() {
    for item in samples() {
        let bytes = bytes_of(&item);
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    decode_item(&bytes[..cut], 4096),
                    Err(ItemError::Truncated { .. })
                ),
                "{item:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn unknown_kinds_and_codecs_are_refused() {
    for kind in [0u8, 6, 0x80, 0xff] {
        assert_eq!(
            decode_item(&[kind, 0, 0, 0, 1, 0], 4096),
            Err(ItemError::UnknownKind(kind))
        );
    }
    assert_eq!(
        decode_item(&[4, 0, 0, 0, 0, 0, 1, 0], 4096),
        Err(ItemError::UnknownCodec(0))
    );
    assert_eq!(
        decode_item(&[4, 3, 0, 0, 0, 0, 1, 0], 4096),
        Err(ItemError::UnknownCodec(3))
    );
    let mut delta = bytes_of(&samples()[2]);
    delta[9] = 0;
    assert_eq!(
        decode_item(&delta, 4096),
        Err(ItemError::UnknownDeltaCodec(0))
    );
    delta[9] = 7;
    assert_eq!(
        decode_item(&delta, 4096),
        Err(ItemError::UnknownDeltaCodec(7))
    );
}

#[test]
fn levels_outside_the_codec_range_are_refused() {
    for (codec, level) in [(1u8, 1i8), (2, 23), (2, -8), (2, i8::MIN)] {
        let bytes = [4, codec, level.to_be_bytes()[0], 0, 0, 0, 1, 0];
        assert!(
            matches!(decode_item(&bytes, 4096), Err(ItemError::BadLevel { level: l, .. }) if l == level)
        );
    }
}

#[test]
fn oversize_and_empty_lengths_are_refused_before_reading_the_payload() {
    let over = 4097u32.to_be_bytes();
    let huge = u32::MAX.to_be_bytes();
    for len in [over, huge] {
        let want = ItemError::Oversize {
            len: u64::from(u32::from_be_bytes(len)),
            limit: 4096,
        };
        let zero = [&[1u8][..], &len].concat();
        assert_eq!(decode_item(&zero, 4096), Err(want.clone()));
        let raw = [&[5u8][..], &len].concat();
        assert_eq!(decode_item(&raw, 4096), Err(want.clone()));
        let compressed = [&[4u8, 1, 0][..], &len].concat();
        assert_eq!(decode_item(&compressed, 4096), Err(want.clone()));
        let delta = [&[3u8][..], &[0; 8], &[1], &len].concat();
        assert_eq!(decode_item(&delta, 4096), Err(want));
    }
    assert_eq!(decode_item(&[1, 0, 0, 0, 0], 4096), Err(ItemError::Empty));
    assert_eq!(decode_item(&[5, 0, 0, 0, 0], 4096), Err(ItemError::Empty));
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics_and_never_exceeds_the_limit(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok((item, used)) = decode_item(&bytes, 16) {
            prop_assert!(used <= bytes.len());
            prop_assert_eq!(item.wire_len(), used);
            prop_assert_eq!(bytes_of(&item), bytes[..used].to_vec());
        }
    }
}
