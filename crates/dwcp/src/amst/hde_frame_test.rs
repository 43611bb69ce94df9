//! HDE items in data frames: every chunk encodes to a frame that decodes back to it, never
//! more than 5 bytes larger, and malformed or unsupported items are refused.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::hde::{ContentHash, DeltaCodec, encode_item};
use crate::wire::{Frame, FrameKind, SessionId};

fn item(e: &Encoded) -> Vec<u8> {
    let mut out = Vec::new();
    encode_item(e, &mut out).unwrap();
    out
}

fn choice() -> impl Strategy<Value = CodecChoice> {
    prop_oneof![
        Just(CodecChoice::None),
        Just(CodecChoice::Lz4),
        (-7i8..=9).prop_map(CodecChoice::Zstd),
    ]
}

/// Chunks that are zero, repetitive or noisy, or a mix.
fn chunk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (1usize..20_000).prop_map(|n| vec![0u8; n]),
        (1usize..20_000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        proptest::collection::vec(any::<u8>(), 1..4_000),
        (proptest::collection::vec(any::<u8>(), 1..64), 1usize..200)
            .prop_map(|(unit, times)| unit.repeat(times)),
    ]
}

proptest! {
    #[test]
    fn chunks_round_trip_through_hde_frames(data in chunk(), choice in choice(), offset in any::<u64>()) {
        let len = data.len();
        let out = encode_chunk(Bytes::from(data.clone()), choice).unwrap();
        prop_assert!(out.payload.len() <= len.max(crate::hde::item::ZERO_LEN));
        let frame = Frame::new(FrameKind::Data, out.kind, SessionId::default(), 7, offset, out.payload).unwrap();
        let (back, used) = Frame::decode(&frame.encode()).unwrap().unwrap();
        prop_assert_eq!(used, frame.encode().len());
        prop_assert_eq!(back.header.offset, offset);
        let decoded = match back.header.payload_kind {
            PayloadKind::Raw => back.payload,
            PayloadKind::Hde => decode_payload(&back.payload, len).unwrap(),
            other => return Err(TestCaseError::fail(format!("payload kind {other:?}"))),
        };
        prop_assert_eq!(&decoded[..], &data[..]);
    }

    #[test]
    fn arbitrary_payloads_never_decode_past_the_limit(payload in proptest::collection::vec(any::<u8>(), 0..600), limit in 1usize..1024) {
        if let Ok(bytes) = decode_payload(&payload, limit) {
            prop_assert!(!bytes.is_empty() && bytes.len() <= limit);
        }
    }
}

#[test]
fn a_zero_chunk_is_five_bytes() {
    let out = encode_chunk(Bytes::from(vec![0u8; 512 << 10]), CodecChoice::Lz4).unwrap();
    assert_eq!(out.kind, PayloadKind::Hde);
    assert_eq!(&out.payload[..], &[1, 0, 8, 0, 0]);
    assert!(out.observed.is_none());
    assert_eq!(
        decode_payload(&out.payload, 512 << 10).unwrap().len(),
        512 << 10
    );
}

#[test]
fn incompressible_chunks_go_raw_and_report_the_attempt() {
    let noise = super::super::test_support::pseudo_random(65_536, 0x9e37_79b9_7f4a_7c15);
    let out = encode_chunk(Bytes::from(noise.clone()), CodecChoice::Zstd(3)).unwrap();
    assert_eq!(out.kind, PayloadKind::Raw);
    assert_eq!(&out.payload[..], &noise[..]);
    let seen = out.observed.unwrap();
    assert_eq!(seen.original, 65_536);
    assert!(seen.compressed > 60_000);
}

#[test]
fn a_raw_item_is_accepted() {
    let payload = item(&Encoded::Raw(b"hello".to_vec()));
    assert_eq!(&decode_payload(&payload, 5).unwrap()[..], b"hello");
}

#[test]
fn an_item_decompressing_past_the_chunk_size_is_refused() {
    let bytes = codec::compress(Codec::Lz4, 0, &vec![0u8; 128 << 10]).unwrap();
    let payload = item(&Encoded::Compressed {
        codec: Codec::Lz4,
        level: 0,
        bytes,
    });
    let err = decode_payload(&payload, 64 << 10).unwrap_err();
    assert!(matches!(err, HdeFrameError::Codec(_)), "{err}");
    assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");

    let bytes = codec::compress(Codec::Zstd, 3, &vec![7u8; 128 << 10]).unwrap();
    let payload = item(&Encoded::Compressed {
        codec: Codec::Zstd,
        level: 3,
        bytes,
    });
    assert!(decode_payload(&payload, 64 << 10).is_err());
    // A declared length over the limit fails before anything is read or allocated.
    let zero = item(&Encoded::Zero { len: 65_537 });
    assert!(matches!(
        decode_payload(&zero, 65_536),
        Err(HdeFrameError::Item(ItemError::Oversize { .. }))
    ));
}

#[test]
fn references_deltas_and_trailing_bytes_are_refused() {
    let r = item(&Encoded::Ref(ContentHash([3; 32])));
    let err = decode_payload(&r, 4096).unwrap_err();
    assert!(
        err.to_string().contains("ref items are not accepted"),
        "{err}"
    );
    let d = item(&Encoded::Delta {
        base_index: 1,
        codec: DeltaCodec::Rle,
        bytes: vec![0, 1, 0, 1, 9],
    });
    assert!(matches!(
        decode_payload(&d, 4096),
        Err(HdeFrameError::Unsupported("delta"))
    ));
    let mut z = item(&Encoded::Zero { len: 10 });
    z.push(0);
    assert!(matches!(
        decode_payload(&z, 4096),
        Err(HdeFrameError::Trailing(1))
    ));
    assert!(decode_payload(&[], 4096).is_err());
}

#[test]
fn heavy_means_compressed() {
    assert!(is_heavy(&[KIND_COMPRESSED, 1]));
    assert!(!is_heavy(&item(&Encoded::Zero { len: 3 })));
    assert!(!is_heavy(&[]));
}

#[test]
fn codec_names_for_summaries() {
    assert_eq!(choice_name(CodecChoice::None), "none");
    assert_eq!(choice_name(CodecChoice::Lz4), "lz4");
    assert_eq!(choice_name(CodecChoice::Zstd(19)), "zstd-19");
}
