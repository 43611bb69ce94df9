//! Page mode tests: each item kind is chosen when it should be, every page round-trips
//! byte-identical through the serialized form, and malformed items are refused.

use proptest::prelude::*;

use super::item::{RAW_HEADER_LEN, decode_item, encode_item};
use super::page::{PAGE_SIZE, Page, PageDecoder, PageEncoder, PageError};
use super::store::StoreError;
use super::{Codec, CodecChoice, ContentHash, ContentStore, DeltaCodec, Encoded, MemStore};

/// Deterministic pseudo-random bytes (xorshift64*).
pub(super) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_be_bytes()[0]
        })
        .collect()
}

/// Text-like bytes: log lines with a counter.
pub(super) fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    let mut n = seed;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "{n:08} node-{} vm started migration phase=precopy ok\n",
                n % 7
            )
            .as_bytes(),
        );
        n += 1;
    }
    out.truncate(len);
    out
}

fn page(bytes: &[u8]) -> [u8; PAGE_SIZE] {
    bytes.try_into().unwrap()
}

fn random_page(seed: u64) -> [u8; PAGE_SIZE] {
    page(&noise(seed, PAGE_SIZE))
}

fn text_page(seed: u64) -> [u8; PAGE_SIZE] {
    page(&text(seed, PAGE_SIZE))
}

/// Sends `item` through the serialized form, as the transport will.
fn over_wire(item: &Encoded) -> Encoded {
    let mut buf = Vec::new();
    encode_item(item, &mut buf).unwrap();
    assert_eq!(buf.len(), item.wire_len());
    let (back, used) = decode_item(&buf, PAGE_SIZE).unwrap();
    assert_eq!(used, buf.len());
    back
}

/// An encoder and a decoder with equal windows.
fn pair(codec: CodecChoice) -> (PageEncoder, PageDecoder<MemStore>) {
    (
        PageEncoder::new(codec, 1024, 64),
        PageDecoder::new(MemStore::new(64 << 20), 64),
    )
}

fn send(
    enc: &mut PageEncoder,
    dec: &mut PageDecoder<MemStore>,
    index: u64,
    p: &[u8; PAGE_SIZE],
) -> Encoded {
    let item = enc.encode(index, p).unwrap();
    let out: Page = dec.decode(index, &over_wire(&item)).unwrap();
    assert_eq!(out.as_slice(), p.as_slice(), "page {index} differs");
    item
}

#[test]
fn mixed_pages_round_trip_with_the_expected_kinds() {
    let (mut enc, mut dec) = pair(CodecChoice::Lz4);
    let zero = [0u8; PAGE_SIZE];
    let txt = text_page(1);
    let rnd = random_page(2);
    let mut sent = blake3::Hasher::new();
    let mut got = blake3::Hasher::new();
    let mut check =
        |enc: &mut PageEncoder, dec: &mut PageDecoder<MemStore>, i, p: &[u8; PAGE_SIZE]| {
            let item = enc.encode(i, p).unwrap();
            sent.update(p);
            got.update(dec.decode(i, &over_wire(&item)).unwrap().as_slice());
            item
        };
    assert_eq!(
        check(&mut enc, &mut dec, 0, &zero),
        Encoded::Zero { len: 4096 }
    );
    assert!(matches!(
        check(&mut enc, &mut dec, 1, &txt),
        Encoded::Compressed {
            codec: Codec::Lz4,
            ..
        }
    ));
    assert!(matches!(
        check(&mut enc, &mut dec, 2, &rnd),
        Encoded::Raw(_)
    ));
    // Duplicates of both, at other indexes, go as references.
    assert_eq!(
        check(&mut enc, &mut dec, 3, &txt),
        Encoded::Ref(ContentHash::of(&txt))
    );
    assert_eq!(
        check(&mut enc, &mut dec, 4, &rnd),
        Encoded::Ref(ContentHash::of(&rnd))
    );
    // The random page rewritten with a few changes goes as a small delta.
    let mut changed = rnd;
    changed[100] ^= 0xff;
    changed[2000..2008].copy_from_slice(b"modified");
    let item = check(&mut enc, &mut dec, 2, &changed);
    assert!(
        matches!(
            item,
            Encoded::Delta {
                base_index: 2,
                codec: DeltaCodec::Rle,
                ..
            }
        ),
        "{item:?}"
    );
    assert!(item.wire_len() < 40, "delta of {} bytes", item.wire_len());
    assert_eq!(sent.finalize(), got.finalize());
}

#[test]
fn delta_is_chosen_only_when_smaller_than_compression() {
    let (mut enc, mut dec) = pair(CodecChoice::Zstd(3));
    let txt = text_page(10);
    send(&mut enc, &mut dec, 7, &txt);
    let mut edited = txt;
    edited[10..14].copy_from_slice(b"EDIT");
    let item = send(&mut enc, &mut dec, 7, &edited);
    let compressed = super::compress_or_raw(&edited, CodecChoice::Zstd(3)).unwrap();
    assert!(matches!(item, Encoded::Delta { .. }));
    assert!(item.wire_len() < compressed.wire_len());
    // A page replaced by unrelated text compresses better than its delta does.
    let other = text_page(999_999);
    let item = send(&mut enc, &mut dec, 7, &other);
    assert!(
        matches!(
            item,
            Encoded::Compressed {
                codec: Codec::Zstd,
                level: 3,
                ..
            }
        ),
        "{item:?}"
    );
}

#[test]
fn scattered_changes_use_the_lz4_delta() {
    let (mut enc, mut dec) = pair(CodecChoice::None);
    let rnd = random_page(5);
    send(&mut enc, &mut dec, 0, &rnd);
    let mut changed = rnd;
    for i in (0..PAGE_SIZE).step_by(3) {
        changed[i] ^= 1;
    }
    let item = send(&mut enc, &mut dec, 0, &changed);
    assert!(
        matches!(
            item,
            Encoded::Delta {
                codec: DeltaCodec::Lz4,
                ..
            }
        ),
        "{item:?}"
    );
}

#[test]
fn codec_none_sends_text_raw_and_random_never_expands_past_the_header() {
    let (mut enc, mut dec) = pair(CodecChoice::None);
    let item = send(&mut enc, &mut dec, 0, &text_page(3));
    assert!(matches!(item, Encoded::Raw(_)));
    for codec in [
        CodecChoice::Lz4,
        CodecChoice::Zstd(19),
        CodecChoice::Zstd(-5),
    ] {
        enc.set_codec(codec);
        let item = send(
            &mut enc,
            &mut dec,
            1,
            &random_page(u64::from(codec == CodecChoice::Lz4)),
        );
        assert!(item.wire_len() <= PAGE_SIZE + RAW_HEADER_LEN);
    }
}

#[test]
fn announced_hashes_go_as_references_and_forgotten_ones_do_not() {
    let (mut enc, _) = pair(CodecChoice::Lz4);
    let txt = text_page(4);
    let hash = ContentHash::of(&txt);
    enc.announce(hash);
    assert_eq!(enc.encode(0, &txt).unwrap(), Encoded::Ref(hash));
    enc.forget(&hash);
    assert!(!enc.knows(&hash));
    assert!(matches!(
        enc.encode(1, &txt).unwrap(),
        Encoded::Compressed { .. }
    ));
    assert!(enc.knows(&hash));
}

#[test]
fn known_hashes_are_bounded() {
    let mut enc = PageEncoder::new(CodecChoice::Lz4, 2, 0);
    let pages: Vec<_> = (0..3).map(text_page).collect();
    for (i, p) in (0u64..).zip(&pages) {
        enc.encode(i, p).unwrap();
    }
    assert!(!enc.knows(&ContentHash::of(&pages[0])));
    assert!(enc.knows(&ContentHash::of(&pages[2])));
}

#[test]
fn a_reference_the_store_lacks_is_missing_content() {
    let mut dec = PageDecoder::new(MemStore::new(1 << 20), 4);
    let hash = ContentHash::of(&text_page(1));
    assert!(
        matches!(dec.decode(0, &Encoded::Ref(hash)), Err(PageError::MissingContent(h)) if h == hash)
    );
}

/// A store that returns whatever it was given, under any hash.
struct LyingStore(Vec<u8>);

impl ContentStore for LyingStore {
    fn get(&mut self, _: &ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(Some(self.0.clone()))
    }
    fn put(&mut self, _: ContentHash, _: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
}

#[test]
fn stored_content_that_does_not_match_its_hash_is_refused() {
    let mut dec = PageDecoder::new(LyingStore(text_page(2).to_vec()), 4);
    let hash = ContentHash::of(&text_page(1));
    assert!(
        matches!(dec.decode(0, &Encoded::Ref(hash)), Err(PageError::CorruptContent(h)) if h == hash)
    );
    // A matching hash of content that is not a page is refused too.
    let short = vec![1u8; 100];
    let mut dec = PageDecoder::new(LyingStore(short.clone()), 4);
    assert!(matches!(
        dec.decode(0, &Encoded::Ref(ContentHash::of(&short))),
        Err(PageError::WrongLength { len: 100 })
    ));
}

#[test]
fn a_delta_without_its_base_is_refused() {
    let mut dec = PageDecoder::new(MemStore::new(1 << 20), 4);
    let item = Encoded::Delta {
        base_index: 9,
        codec: DeltaCodec::Rle,
        bytes: vec![0x10, 0, 0, 0],
    };
    assert!(matches!(
        dec.decode(9, &item),
        Err(PageError::MissingBase { index: 9 })
    ));
}

#[test]
fn a_zero_page_drops_the_base() {
    let (mut enc, mut dec) = pair(CodecChoice::Lz4);
    send(&mut enc, &mut dec, 0, &random_page(1));
    send(&mut enc, &mut dec, 0, &[0u8; PAGE_SIZE]);
    let item = Encoded::Delta {
        base_index: 0,
        codec: DeltaCodec::Rle,
        bytes: vec![0x10, 0, 0, 0],
    };
    assert!(matches!(
        dec.decode(0, &item),
        Err(PageError::MissingBase { index: 0 })
    ));
}

#[test]
fn malformed_run_length_deltas_are_refused() {
    let cases: [(&[u8], &str); 6] = [
        (&[0x10], "truncated run header"),
        (&[0x00, 0x00, 0x00, 0x00], "empty run"),
        (
            &[0x0f, 0xff, 0x00, 0x02, 1, 2],
            "run passes the end of the page",
        ),
        (&[0x00, 0x00, 0x00, 0x04, 1, 2], "truncated literal"),
        (&[0x00, 0x10, 0x00, 0x00], "runs end before the page does"),
        (
            &[0x10, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00],
            "run passes the end of the page",
        ),
    ];
    for (bytes, reason) in cases {
        let (mut enc, mut dec) = pair(CodecChoice::Lz4);
        send(&mut enc, &mut dec, 0, &random_page(1));
        let item = Encoded::Delta {
            base_index: 0,
            codec: DeltaCodec::Rle,
            bytes: bytes.to_vec(),
        };
        match dec.decode(0, &item) {
            Err(PageError::BadRle(r)) => assert_eq!(r, reason, "{bytes:?}"),
            other => panic!("{bytes:?}: {other:?}"),
        }
    }
}

#[test]
fn items_that_are_not_one_page_are_refused() {
    let mut dec = PageDecoder::new(MemStore::new(1 << 20), 4);
    assert!(matches!(
        dec.decode(0, &Encoded::Zero { len: 4095 }),
        Err(PageError::WrongLength { len: 4095 })
    ));
    assert!(matches!(
        dec.decode(0, &Encoded::Raw(vec![1; 4097])),
        Err(PageError::WrongLength { len: 4097 })
    ));
    let short = lz4_flex::block::compress(&[7u8; 100]);
    let item = Encoded::Compressed {
        codec: Codec::Lz4,
        level: 0,
        bytes: short,
    };
    assert!(matches!(
        dec.decode(0, &item),
        Err(PageError::WrongLength { len: 100 })
    ));
    // Decompression stops at one page: more is an error, not a bigger buffer.
    let long = lz4_flex::block::compress(&[7u8; 8192]);
    let item = Encoded::Compressed {
        codec: Codec::Lz4,
        level: 0,
        bytes: long,
    };
    assert!(matches!(dec.decode(0, &item), Err(PageError::Codec(_))));
    let long = zstd::bulk::compress(&[7u8; 8192], 1).unwrap();
    let item = Encoded::Compressed {
        codec: Codec::Zstd,
        level: 1,
        bytes: long,
    };
    assert!(matches!(dec.decode(0, &item), Err(PageError::Codec(_))));
    let item = Encoded::Compressed {
        codec: Codec::Zstd,
        level: 1,
        bytes: vec![1, 2, 3, 4, 5],
    };
    assert!(matches!(dec.decode(0, &item), Err(PageError::Codec(_))));
}

#[test]
fn a_small_window_evicts_bases_on_both_sides_alike() {
    let mut enc = PageEncoder::new(CodecChoice::Lz4, 1024, 2);
    let mut dec = PageDecoder::new(MemStore::new(1 << 20), 2);
    let mut pages: Vec<[u8; PAGE_SIZE]> = (0..4).map(random_page).collect();
    for round in 0..3u8 {
        for (i, p) in (0u64..).zip(pages.iter_mut()) {
            p[usize::from(round)] ^= 0x55;
            let item = enc.encode(i, p).unwrap();
            assert_eq!(
                dec.decode(i, &over_wire(&item)).unwrap().as_slice(),
                p.as_slice()
            );
        }
    }
}

/// Sanity check of a realistic mix: well under half the bytes go on the wire.
#[test]
fn sanity_mixed_memory_image_shrinks() {
    let (mut enc, mut dec) = pair(CodecChoice::Zstd(3));
    let mut image: Vec<[u8; PAGE_SIZE]> = Vec::new();
    for i in 0..256u64 {
        image.push(match i % 8 {
            0..=2 => [0u8; PAGE_SIZE],
            3 | 4 => text_page(i),
            5 => text_page(3),
            6 => random_page(i / 16),
            _ => random_page(i),
        });
    }
    let mut wire = 0;
    for pass in 0..2u8 {
        for (i, p) in (0u64..).zip(image.iter_mut()) {
            if pass == 1 && i % 4 == 0 {
                p[usize::try_from(i).unwrap()] ^= 1;
            }
            wire += send(&mut enc, &mut dec, i, p).wire_len();
        }
    }
    let raw = 2 * 256 * PAGE_SIZE;
    assert!(wire * 3 < raw, "{wire} of {raw} bytes");
}

#[derive(Debug, Clone)]
enum Op {
    Zero(usize),
    Text(usize, u64),
    Random(usize, u64),
    Copy(usize, usize),
    Poke(usize, u16, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let index = 0usize..12;
    prop_oneof![
        index.clone().prop_map(Op::Zero),
        (index.clone(), 0u64..4).prop_map(|(i, s)| Op::Text(i, s)),
        (index.clone(), 0u64..4).prop_map(|(i, s)| Op::Random(i, s)),
        (index.clone(), index.clone()).prop_map(|(i, j)| Op::Copy(i, j)),
        (index, 0u16..4096, 1u8..=255).prop_map(|(i, at, x)| Op::Poke(i, at, x)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_sequence_of_pages_and_rewrites_round_trips(
        ops in proptest::collection::vec(op(), 1..80),
        window in 0usize..6,
        known in 0usize..6,
        codec in prop_oneof![Just(CodecChoice::None), Just(CodecChoice::Lz4), (-7i8..=22).prop_map(CodecChoice::Zstd)],
    ) {
        let mut enc = PageEncoder::new(codec, known, window);
        let mut dec = PageDecoder::new(MemStore::new(6 * PAGE_SIZE), window);
        let mut memory = vec![[0u8; PAGE_SIZE]; 12];
        for op in ops {
            let index = match op {
                Op::Zero(i) => { memory[i] = [0; PAGE_SIZE]; i }
                Op::Text(i, s) => { memory[i] = text_page(s); i }
                Op::Random(i, s) => { memory[i] = random_page(s); i }
                Op::Copy(i, j) => { memory[i] = memory[j]; i }
                Op::Poke(i, at, x) => { memory[i][usize::from(at)] ^= x; i }
            };
            let p = memory[index];
            let index = u64::try_from(index).unwrap();
            let item = over_wire(&enc.encode(index, &p).unwrap());
            let out = match dec.decode(index, &item) {
                // The store evicted it: the sender is told and sends the page again.
                Err(PageError::MissingContent(hash)) => {
                    enc.forget(&hash);
                    dec.decode(index, &over_wire(&enc.encode(index, &p).unwrap())).unwrap()
                }
                other => other.unwrap(),
            };
            prop_assert_eq!(out.as_slice(), p.as_slice());
        }
    }

    #[test]
    fn random_pages_expand_by_less_than_half_a_percent(seed in any::<u64>(), pages in 1usize..16) {
        let mut enc = PageEncoder::new(CodecChoice::Zstd(3), 64, 64);
        let data = noise(seed, pages * PAGE_SIZE);
        let mut wire = 0;
        for (i, p) in (0u64..).zip(data.chunks_exact(PAGE_SIZE)) {
            wire += enc.encode(i, &page(p)).unwrap().wire_len();
        }
        prop_assert!(wire * 1000 < data.len() * 1005, "{} -> {}", data.len(), wire);
    }
}
