use std::sync::Mutex;

use super::*;
use crate::hde::ContentStore;

fn store() -> (tempfile::TempDir, Mutex<DiskStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path(), 1 << 20).unwrap();
    (dir, Mutex::new(store))
}

fn text(len: usize) -> Vec<u8> {
    b"segment text, again and again; "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

#[test]
fn zeros_literals_and_held_references_decode_in_order_and_literals_are_stored() {
    let (_dir, store) = store();
    let held = text(3000);
    let held_hash = ContentHash::of(&held);
    store.lock().unwrap().put(held_hash, &held).unwrap();
    let lit = b"literal bytes, more than two hundred and fifty six of them. ".repeat(8);
    let segments = [
        Segment::Zero(100),
        Segment::Literal(u32::try_from(lit.len()).unwrap()),
        Segment::Ref {
            len: 3000,
            hash: held_hash,
        },
        Segment::Literal(10),
    ];
    let mut block = lit.clone();
    block.extend_from_slice(b"0123456789");
    for codec in [None, Some((Codec::Lz4, 0)), Some((Codec::Zstd, 3))] {
        let packed = match codec {
            None => block.clone(),
            Some((c, l)) => codec::compress(c, l, &block).unwrap(),
        };
        let payload = write(&segments, codec, &packed, false);
        let out = decode(&payload, 1 << 20, &store, &[], false).unwrap();
        let mut want = vec![0u8; 100];
        want.extend_from_slice(&lit);
        want.extend_from_slice(&held);
        want.extend_from_slice(b"0123456789");
        assert_eq!(out.as_ref(), want.as_slice(), "{codec:?}");
    }
    let mut s = store.lock().unwrap();
    assert!(
        s.get(&ContentHash::of(&lit)).unwrap().is_some(),
        "long literal stored"
    );
    assert!(
        s.get(&ContentHash::of(b"0123456789")).unwrap().is_none(),
        "short literal not stored"
    );
}

#[test]
fn a_reference_the_store_lacks_is_missing_never_guessed() {
    let (_dir, store) = store();
    let hash = ContentHash::of(b"never stored");
    let payload = write(&[Segment::Ref { len: 12, hash }], None, &[], false);
    assert!(matches!(
        decode(&payload, 1 << 20, &store, &[], false),
        Err(SegmentsError::Missing(h)) if h == vec![hash]
    ));
}

#[test]
fn a_reference_with_the_wrong_length_is_refused() {
    let (_dir, store) = store();
    let held = text(500);
    let hash = ContentHash::of(&held);
    store.lock().unwrap().put(hash, &held).unwrap();
    let payload = write(&[Segment::Ref { len: 400, hash }], None, &[], false);
    assert!(matches!(
        decode(&payload, 1 << 20, &store, &[], false),
        Err(SegmentsError::RefLength {
            said: 400,
            held: 500,
            ..
        })
    ));
}

#[test]
fn malformed_payloads_are_refused_before_allocating() {
    let ok = write(&[Segment::Literal(4)], None, b"abcd", false);
    assert!(parse(&ok, 4).is_ok());
    assert!(matches!(
        parse(&ok, 3),
        Err(SegmentsError::TooLong { limit: 3 })
    ));
    assert!(matches!(parse(&[], 10), Err(SegmentsError::Truncated)));
    assert!(matches!(parse(&[0, 0], 10), Err(SegmentsError::Count(0))));
    let over = u16::try_from(MAX_SEGMENTS + 1).unwrap().to_be_bytes();
    assert!(matches!(parse(&over, 10), Err(SegmentsError::Count(_))));
    // Tag 9, length 1.
    assert!(matches!(
        parse(&[0, 1, 9, 0, 0, 0, 1], 10),
        Err(SegmentsError::Tag(9))
    ));
    assert!(matches!(
        parse(&write(&[Segment::Zero(0)], None, &[], false), 10),
        Err(SegmentsError::Empty)
    ));
    // A zero run of 4 GiB against a 1 MiB limit: refused before anything is allocated.
    assert!(matches!(
        parse(
            &write(&[Segment::Zero(u32::MAX)], None, &[], false),
            1 << 20
        ),
        Err(SegmentsError::TooLong { .. })
    ));
    let mut trailing = ok.to_vec();
    trailing.push(0);
    assert!(matches!(
        parse(&trailing, 10),
        Err(SegmentsError::Trailing(1))
    ));
    let short = write(&[Segment::Literal(4)], None, b"abc", false);
    assert!(matches!(
        parse(&short, 10),
        Err(SegmentsError::LiteralLength { want: 4, got: 3 })
    ));
    let lz4_level = write(
        &[Segment::Literal(4)],
        Some((Codec::Lz4, 3)),
        b"abcd",
        false,
    );
    assert!(matches!(
        parse(&lz4_level, 10),
        Err(SegmentsError::BlockCodec { codec: 1, level: 3 })
    ));
    let unknown = write(&[Segment::Literal(4)], None, b"abcd", false);
    let mut unknown = unknown.to_vec();
    let at = unknown.len() - 10;
    unknown[at] = 7;
    assert!(matches!(parse(&unknown, 10), Err(SegmentsError::Codec(_))));
}

#[test]
fn a_block_that_decompresses_to_more_than_its_segments_is_refused() {
    let (_dir, store) = store();
    let big = codec::compress(Codec::Zstd, 3, &[7u8; 5000]).unwrap();
    let payload = write(
        &[Segment::Literal(100)],
        Some((Codec::Zstd, 3)),
        &big,
        false,
    );
    assert!(decode(&payload, 1 << 20, &store, &[], false).is_err());
    let small = codec::compress(Codec::Lz4, 0, &[7u8; 50]).unwrap();
    let payload = write(
        &[Segment::Literal(100)],
        Some((Codec::Lz4, 0)),
        &small,
        false,
    );
    assert!(matches!(
        decode(&payload, 1 << 20, &store, &[], false),
        Err(SegmentsError::LiteralLength { want: 100, got: 50 })
    ));
}

#[test]
fn a_delta_is_its_base_xor_its_literal_bytes_and_its_result_is_stored() {
    let (_dir, store) = store();
    let base = text(4096);
    let base_hash = ContentHash::of(&base);
    store.lock().unwrap().put(base_hash, &base).unwrap();
    let mut new = base.clone();
    new.get_mut(100..108).unwrap().copy_from_slice(b"CHANGED!");
    let xor: Vec<u8> = new.iter().zip(&base).map(|(a, b)| a ^ b).collect();
    let mut block = b"lead".to_vec();
    block.extend_from_slice(&xor);
    let segments = [
        Segment::Literal(4),
        Segment::Delta {
            len: 4096,
            base: base_hash,
        },
    ];
    for codec in [None, Some((Codec::Lz4, 0)), Some((Codec::Zstd, 3))] {
        let packed = match codec {
            None => block.clone(),
            Some((c, l)) => codec::compress(c, l, &block).unwrap(),
        };
        let payload = write(&segments, codec, &packed, false);
        assert_eq!(parse(&payload, 1 << 20).unwrap().segments, segments);
        let out = decode(&payload, 1 << 20, &store, &[], false).unwrap();
        assert_eq!(out.get(..4), Some(&b"lead"[..]), "{codec:?}");
        assert_eq!(out.get(4..), Some(new.as_slice()), "{codec:?}");
    }
    assert_eq!(
        store.lock().unwrap().get(&ContentHash::of(&new)).unwrap(),
        Some(new),
        "the result is stored, to be referenced later"
    );
}

/// A payload of one delta of `len` bytes against `base`, with `xor_len` zero bytes of XOR in
/// its literal block.
fn one_delta(len: u32, base: ContentHash, xor_len: usize) -> Bytes {
    write(
        &[Segment::Delta { len, base }],
        None,
        &vec![0u8; xor_len],
        false,
    )
}

#[test]
fn a_delta_whose_base_is_missing_or_of_another_length_is_not_decoded() {
    let (_dir, store) = store();
    let missing = ContentHash::of(b"never stored");
    let payload = one_delta(12, missing, 12);
    assert!(matches!(
        decode(&payload, 1 << 20, &store, &[], false),
        Err(SegmentsError::Missing(h)) if h == vec![missing]
    ));
    let base = text(300);
    let base_hash = ContentHash::of(&base);
    store.lock().unwrap().put(base_hash, &base).unwrap();
    let payload = one_delta(299, base_hash, 299);
    assert!(matches!(
        decode(&payload, 1 << 20, &store, &[], false),
        Err(SegmentsError::RefLength {
            said: 299,
            held: 300,
            ..
        })
    ));
    // The XOR comes from the literal block: a block too short for it is refused.
    let payload = one_delta(300, base_hash, 299);
    assert!(matches!(
        parse(&payload, 1 << 20),
        Err(SegmentsError::LiteralLength {
            want: 300,
            got: 299
        })
    ));
}

/// `n` distinct pages of text, each 4 KiB.
fn pages(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut page = text(4096);
            page[..8].copy_from_slice(&(i as u64).to_be_bytes());
            page
        })
        .collect()
}

/// A store holding `contents`.
fn store_holding(contents: &[&[u8]]) -> (tempfile::TempDir, Mutex<DiskStore>) {
    let (dir, store) = store();
    for content in contents {
        store
            .lock()
            .unwrap()
            .put(ContentHash::of(content), content)
            .unwrap();
    }
    (dir, store)
}

fn reference(page: &[u8]) -> Segment {
    Segment::Ref {
        len: u32::try_from(page.len()).unwrap(),
        hash: ContentHash::of(page),
    }
}

#[test]
fn a_need_names_every_reference_the_store_lacks_once_and_none_past_the_most_it_may() {
    let (_dir, store) = store();
    let p = pages(4);
    store
        .lock()
        .unwrap()
        .put(ContentHash::of(&p[1]), &p[1])
        .unwrap();
    // Held, lacked, lacked as a delta's base, lacked again, held again.
    let segments = [
        reference(&p[1]),
        reference(&p[0]),
        Segment::Delta {
            len: 4096,
            base: ContentHash::of(&p[2]),
        },
        reference(&p[0]),
        reference(&p[3]),
        reference(&p[1]),
    ];
    let payload = write(&segments, None, &[0u8; 4096], false);
    let want = vec![
        ContentHash::of(&p[0]),
        ContentHash::of(&p[2]),
        ContentHash::of(&p[3]),
    ];
    match decode(&payload, 1 << 20, &store, &[], false) {
        Err(SegmentsError::Missing(named)) => assert_eq!(named, want),
        other => panic!("{other:?}"),
    }
    let need = need_payload(&want);
    assert_eq!(need.len(), 3 * 32);
    assert_eq!(parse_need(&need).unwrap(), want);

    // More than a Need may name: it names none, and every segment comes as a literal.
    let many = pages(MAX_NEED_HASHES + 5);
    let refs: Vec<Segment> = many[4..].iter().map(|p| reference(p)).collect();
    let payload = write(&refs, None, &[], false);
    match decode(&payload, 1 << 20, &store, &[], false) {
        Err(e @ SegmentsError::Missing(_)) => {
            assert!(
                matches!(&e, SegmentsError::Missing(named) if named.is_empty()),
                "{e:?}"
            );
            assert_eq!(
                e.to_string(),
                "more than 64 referenced contents are not in the store"
            );
        }
        other => panic!("{other:?}"),
    }
    let (_dir, store) = self::store();
    let payload = write(&refs[..MAX_NEED_HASHES], None, &[], false);
    match decode(&payload, 1 << 20, &store, &[], false) {
        Err(SegmentsError::Missing(named)) => assert_eq!(named.len(), MAX_NEED_HASHES),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_need_payload_is_whole_hashes_and_no_more_than_it_may_name() {
    assert!(parse_need(&[]).unwrap().is_empty());
    assert_eq!(parse_need(&[7u8; 64]).unwrap().len(), 2);
    assert!(parse_need(&[7u8; MAX_NEED_HASHES * 32]).is_ok());
    for len in [1, 31, 33, MAX_NEED_HASHES * 32 + 32] {
        assert!(
            matches!(parse_need(&vec![0u8; len]), Err(SegmentsError::NeedLength(l)) if l == len),
            "{len}"
        );
    }
}

#[test]
fn a_frame_sent_again_carries_only_what_was_missing_as_literals() {
    let p = pages(4);
    // The receiver holds pages 1 and 3 (the base of a delta), not page 0 nor page 2's base.
    let (_dir, store) = store_holding(&[&p[1], &p[3]]);
    let literal = b"literal bytes of the frame, ".repeat(40);
    let mut changed = p[3].clone();
    changed[100..110].copy_from_slice(b"0123456789");
    let xor: Vec<u8> = changed.iter().zip(&p[3]).map(|(a, b)| a ^ b).collect();
    let lost_base = text(4096);
    let mut chunk = Vec::new();
    chunk.extend_from_slice(&p[0]);
    chunk.extend_from_slice(&[0u8; 512]);
    chunk.extend_from_slice(&literal);
    chunk.extend_from_slice(&p[1]);
    chunk.extend_from_slice(&changed);
    chunk.extend_from_slice(&p[2]);
    let len = |b: &[u8]| u32::try_from(b.len()).unwrap();
    let segments = [
        reference(&p[0]),
        Segment::Zero(512),
        Segment::Literal(len(&literal)),
        reference(&p[1]),
        Segment::Delta {
            len: 4096,
            base: ContentHash::of(&p[3]),
        },
        Segment::Delta {
            len: 4096,
            base: ContentHash::of(&lost_base),
        },
    ];
    let lost_xor: Vec<u8> = p[2].iter().zip(&lost_base).map(|(a, b)| a ^ b).collect();
    let mut block = literal.clone();
    block.extend_from_slice(&xor);
    block.extend_from_slice(&lost_xor);
    for codec in [None, Some((Codec::Lz4, 0)), Some((Codec::Zstd, 19))] {
        let packed = match codec {
            None => block.clone(),
            Some((c, level)) => codec::compress(c, level, &block).unwrap(),
        };
        let frame = write(&segments, codec, &packed, false);
        let Err(SegmentsError::Missing(named)) = decode(&frame, 1 << 20, &store, &[], false) else {
            panic!("the frame decoded without pages 0 and 2's base");
        };
        let again = with_literals(&frame, &chunk, &named).unwrap();
        let parsed = parse(&again, 1 << 20).unwrap();
        assert_eq!(
            parsed.segments,
            [
                Segment::Literal(4096),
                Segment::Zero(512),
                Segment::Literal(len(&literal)),
                reference(&p[1]),
                segments[4],
                Segment::Literal(4096),
            ],
            "{codec:?}"
        );
        assert_eq!(parsed.codec, codec.map(|(c, _)| c), "{codec:?}");
        if let Some((Codec::Zstd, _)) = codec {
            assert_eq!(parsed.level, 3, "zstd at most at level 3");
        }
        let (_fresh_dir, fresh) = store_holding(&[&p[1], &p[3]]);
        assert_eq!(
            decode(&again, 1 << 20, &fresh, &[], false).unwrap(),
            chunk,
            "{codec:?}"
        );
    }
    // A frame of another chunk is not rebuilt from it.
    let frame = write(&segments, None, &block, false);
    assert!(matches!(
        with_literals(&frame, &chunk[1..], &[]),
        Err(SegmentsError::TooLong { .. } | SegmentsError::ChunkLength { .. })
    ));
}

/// `len` bytes of `base` (repeated) with every 97th byte changed by `salt`: no segment of it
/// equals one of `base`, yet almost all of it matches `base`.
fn near_copy(base: &[u8], len: usize, salt: u8) -> Vec<u8> {
    base.iter()
        .cycle()
        .take(len)
        .enumerate()
        .map(|(i, b)| if i % 97 == 0 { b ^ salt } else { *b })
        .collect()
}

#[test]
fn a_block_compressed_against_the_bytes_before_its_frame_needs_exactly_them() {
    let (_dir, store) = store();
    let before = crate::amst::test_support::pseudo_random(64 << 10, 5);
    let chunk = near_copy(&before, 48 << 10, 0x5a);
    let len = u32::try_from(chunk.len()).unwrap();
    let alone = pack(chunk.clone(), Codec::Zstd, 3, &[]).unwrap();
    assert_eq!(alone.prefix, 0);
    let packed = pack(chunk.clone(), Codec::Zstd, 3, &before).unwrap();
    assert_eq!(packed.prefix, 64 << 10);
    assert!(
        packed.block.len() * 4 < alone.compressed.min(chunk.len()),
        "against the prefix {} bytes, alone {}",
        packed.block.len(),
        alone.compressed
    );
    let payload = write_packed(&[Segment::Literal(len)], &packed, false);
    let parsed = parse(&payload, 1 << 20).unwrap();
    assert_eq!(parsed.prefix, 64 << 10);
    assert_eq!(
        decode(&payload, 1 << 20, &store, &before, false).unwrap(),
        chunk
    );
    // More bytes before the frame than its prefix: only the last ones count.
    let mut longer = crate::amst::test_support::pseudo_random(1000, 6);
    longer.extend_from_slice(&before);
    assert_eq!(
        decode(&payload, 1 << 20, &store, &longer, false).unwrap(),
        chunk
    );
    // Fewer bytes than the prefix (the start of a resumed session, say): refused.
    assert!(matches!(
        decode(&payload, 1 << 20, &store, &before[1..], false),
        Err(SegmentsError::PrefixMissing { want, held }) if want == 64 << 10 && held == (64 << 10) - 1
    ));
    // Other bytes before it never decode to the chunk.
    let other = crate::amst::test_support::pseudo_random(64 << 10, 7);
    assert!(!matches!(decode(&payload, 1 << 20, &store, &other, false), Ok(b) if b == chunk));
}

#[test]
fn a_prefix_that_is_empty_or_too_long_is_refused() {
    let before = vec![7u8; 4096];
    let packed = pack(vec![7u8; 4096], Codec::Zstd, 3, &before).unwrap();
    let payload = write_packed(&[Segment::Literal(4096)], &packed, false);
    // count (2), one literal segment (5), codec (1), level (1), then the prefix length.
    let at = 2 + 5 + 2;
    assert_eq!(payload.get(7), Some(&BLOCK_ZSTD_PREFIXED));
    for bad in [0u32, u32::try_from(MAX_PREFIX).unwrap() + 1] {
        let mut forged = payload.to_vec();
        forged[at..at + 4].copy_from_slice(&bad.to_be_bytes());
        assert!(
            matches!(parse(&forged, 1 << 20), Err(SegmentsError::Prefix(n)) if n == bad),
            "{bad}"
        );
    }
}

#[test]
fn a_prefixed_frame_sent_again_after_a_need_goes_without_its_prefix() {
    let p = pages(2);
    // The receiver holds page 1, the base of a delta; page 0 is referenced but lost.
    let (_dir, store) = store_holding(&[&p[1]]);
    let mut changed = p[1].clone();
    changed[10..20].copy_from_slice(b"0123456789");
    let xor: Vec<u8> = changed.iter().zip(&p[1]).map(|(a, b)| a ^ b).collect();
    let before = near_copy(&p[0], 8192, 1);
    let mut chunk = p[0].clone();
    chunk.extend_from_slice(&changed);
    let segments = [
        reference(&p[0]),
        Segment::Delta {
            len: 4096,
            base: ContentHash::of(&p[1]),
        },
    ];
    let packed = pack(xor, Codec::Zstd, 9, &before).unwrap();
    assert!(packed.prefix > 0);
    let frame = write_packed(&segments, &packed, false);
    let Err(SegmentsError::Missing(named)) = decode(&frame, 1 << 20, &store, &before, false) else {
        panic!("the frame decoded without page 0");
    };
    let again = with_literals(&frame, &chunk, &named).unwrap();
    let parsed = parse(&again, 1 << 20).unwrap();
    assert_eq!(parsed.prefix, 0, "decodable without the bytes before it");
    assert_eq!(
        parsed.segments,
        [Segment::Literal(4096), Segment::Literal(4096)],
        "the delta's XOR is in the prefixed block: it goes as a literal too"
    );
    assert_eq!(decode(&again, 1 << 20, &store, &[], false).unwrap(), chunk);
}

/// `page` with ten of its bytes changed.
fn changed(page: &[u8]) -> Vec<u8> {
    let mut new = page.to_vec();
    new[100..110].copy_from_slice(b"0123456789");
    new
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

#[test]
fn short_references_name_held_content_in_13_bytes_and_decode_as_full_ones_do() {
    let p = pages(2);
    let (_dir, store) = store_holding(&[&p[0], &p[1]]);
    let literal = b"literal bytes of the frame, ".repeat(12);
    let new = changed(&p[1]);
    let segments = [
        reference(&p[0]),
        Segment::Literal(u32::try_from(literal.len()).unwrap()),
        Segment::Delta {
            len: 4096,
            base: ContentHash::of(&p[1]),
        },
        reference(&p[0]),
    ];
    let mut block = literal.clone();
    block.extend_from_slice(&xor(&new, &p[1]));
    let chunk = [&p[0][..], &literal, &new, &p[0]].concat();
    let full = write(&segments, None, &block, false);
    let short = write(&segments, None, &block, true);
    // Three names of 8 bytes instead of 32, and the frame's check of 16.
    assert_eq!(full.len() - short.len(), 3 * 24 - 16);
    let parsed = parse(&short, 1 << 20).unwrap();
    let key = |page: &[u8]| ContentHash::of(page).key();
    assert_eq!(
        parsed.segments,
        [
            Segment::ShortRef {
                len: 4096,
                key: key(&p[0])
            },
            segments[1],
            Segment::ShortDelta {
                len: 4096,
                key: key(&p[1])
            },
            Segment::ShortRef {
                len: 4096,
                key: key(&p[0])
            },
        ]
    );
    assert!(parsed.check.is_some());
    assert!(parse(&full, 1 << 20).unwrap().check.is_none());
    assert_eq!(decode(&short, 1 << 20, &store, &[], false).unwrap(), chunk);
    assert_eq!(decode(&full, 1 << 20, &store, &[], false).unwrap(), chunk);
    // A frame that names nothing carries no check.
    assert_eq!(
        write(&[Segment::Literal(4)], None, b"abcd", true),
        write(&[Segment::Literal(4)], None, b"abcd", false)
    );
}

#[test]
fn a_short_reference_is_never_resolved_by_a_guess() {
    let p = pages(2);
    let (_dir, store) = store_holding(&[&p[0]]);
    let frame = write(&[reference(&p[0])], None, &[], true);
    // Content other than the sender's (here: a check that names other hashes) fails the
    // frame's check: the receiver asks for every segment as a literal.
    let mut forged = frame.to_vec();
    let check_at = 2 + 13;
    forged[check_at] ^= 1;
    assert!(matches!(
        decode(&forged, 1 << 20, &store, &[], false),
        Err(SegmentsError::Missing(named)) if named.is_empty()
    ));
    assert_eq!(decode(&frame, 1 << 20, &store, &[], false).unwrap(), p[0]);
    // Two hashes listed under one key: the key is asked for, neither is taken.
    let key = ContentHash::of(&p[1]).key();
    let mut other = ContentHash::from_key(key);
    other.0[31] = 1;
    store
        .lock()
        .unwrap()
        .put(ContentHash::of(&p[1]), &p[1])
        .unwrap();
    store.lock().unwrap().put(other, &p[0]).unwrap();
    let frame = write(&[reference(&p[1])], None, &[], true);
    assert!(matches!(
        decode(&frame, 1 << 20, &store, &[], false),
        Err(SegmentsError::Missing(named)) if named == vec![ContentHash::from_key(key)]
    ));
}

#[test]
fn a_short_reference_the_store_lacks_is_named_by_its_key_and_sent_again_as_a_literal() {
    let p = pages(3);
    let (_dir, store) = store_holding(&[&p[1]]);
    let new = changed(&p[2]);
    let segments = [
        reference(&p[0]),
        reference(&p[1]),
        Segment::Delta {
            len: 4096,
            base: ContentHash::of(&p[2]),
        },
    ];
    let chunk = [&p[0][..], &p[1], &new].concat();
    let frame = write(&segments, None, &xor(&new, &p[2]), true);
    let Err(SegmentsError::Missing(named)) = decode(&frame, 1 << 20, &store, &[], false) else {
        panic!("decoded without page 0 and page 2's base");
    };
    let by_key = |page: &[u8]| ContentHash::from_key(ContentHash::of(page).key());
    assert_eq!(named, [by_key(&p[0]), by_key(&p[2])]);
    assert_eq!(parse_need(&need_payload(&named)).unwrap(), named);
    // Named by its key (the first bytes of a hash would do as well), the reference goes as a
    // literal; the one held stays short, under a new check.
    for missing in [named.clone(), vec![ContentHash::of(&p[0])]] {
        let again = with_literals(&frame, &chunk, &missing).unwrap();
        let parsed = parse(&again, 1 << 20).unwrap();
        assert_eq!(
            parsed.segments,
            [
                Segment::Literal(4096),
                Segment::ShortRef {
                    len: 4096,
                    key: ContentHash::of(&p[1]).key()
                },
                // A delta whose base is known by its key alone goes as a literal too.
                Segment::Literal(4096),
            ]
        );
        assert_eq!(decode(&again, 1 << 20, &store, &[], false).unwrap(), chunk);
    }
}

/// A recipe built from `entries`, as both ends build it.
fn recipe_of(entries: &[super::recipe::Entry]) -> (ContentHash, Vec<u8>) {
    let mut b = super::recipe::Builder::default();
    b.extend(entries);
    b.finish().unwrap()
}

#[test]
fn a_decoded_frame_leaves_its_recipe_and_a_recipe_stands_for_the_frame() {
    use super::recipe::Entry;
    let p = pages(3);
    let (_dir, store) = store_holding(&[&p[0]]);
    let header = b"8 bytes!";
    let chunk = [&p[0][..], &[0u8; 700], header, &p[1]].concat();
    let segments = [
        reference(&p[0]),
        Segment::Zero(700),
        Segment::Literal(8),
        Segment::Literal(4096),
    ];
    let block = [&header[..], &p[1]].concat();
    let frame = write(&segments, None, &block, false);
    let (name, _) = recipe_of(&[
        Entry::Content {
            len: 4096,
            hash: ContentHash::of(&p[0]),
        },
        Entry::Zero(700),
        Entry::Inline(header.to_vec()),
        Entry::Content {
            len: 4096,
            hash: ContentHash::of(&p[1]),
        },
    ]);
    // Without recipes negotiated, none is stored.
    assert_eq!(decode(&frame, 1 << 20, &store, &[], false).unwrap(), chunk);
    assert!(!store.lock().unwrap().contains(&name));
    assert_eq!(decode(&frame, 1 << 20, &store, &[], true).unwrap(), chunk);
    assert!(store.lock().unwrap().contains(&name));
    // One segment for the whole frame, and the frame it is in leaves the same recipe again.
    let len = u32::try_from(chunk.len()).unwrap();
    let by_recipe = write(&[Segment::Recipe { len, hash: name }], None, &[], true);
    assert_eq!(by_recipe.len(), 2 + 37 + 6);
    assert_eq!(
        decode(&by_recipe, 1 << 20, &store, &[], true).unwrap(),
        chunk
    );
    // Another length than the recipe's is refused.
    let wrong = write(
        &[Segment::Recipe {
            len: len - 1,
            hash: name,
        }],
        None,
        &[],
        true,
    );
    assert!(matches!(
        decode(&wrong, 1 << 20, &store, &[], true),
        Err(SegmentsError::Recipe { .. })
    ));
    // Content that is not a recipe is refused as one.
    let not_one = write(
        &[Segment::Recipe {
            len: 4096,
            hash: ContentHash::of(&p[0]),
        }],
        None,
        &[],
        true,
    );
    assert!(matches!(
        decode(&not_one, 1 << 20, &store, &[], true),
        Err(SegmentsError::Recipe { .. })
    ));
}

#[test]
fn a_recipe_or_its_content_the_store_lacks_is_asked_for_and_sent_again_as_literals() {
    use super::recipe::Entry;
    let p = pages(2);
    let chunk = [&p[0][..], &p[1]].concat();
    let (name, recipe) = recipe_of(&[
        Entry::Content {
            len: 4096,
            hash: ContentHash::of(&p[0]),
        },
        Entry::Content {
            len: 4096,
            hash: ContentHash::of(&p[1]),
        },
    ]);
    let frame = write(
        &[Segment::Recipe {
            len: 8192,
            hash: name,
        }],
        None,
        &[],
        true,
    );
    // No recipe; the recipe but not all of its content.
    let (_a, none) = store_holding(&[&p[0], &p[1]]);
    let (_b, part) = store_holding(&[&recipe, &p[1]]);
    for store in [none, part] {
        let Err(SegmentsError::Missing(named)) = decode(&frame, 1 << 20, &store, &[], true) else {
            panic!("decoded without the recipe's content");
        };
        assert_eq!(named, [name]);
        let again = with_literals(&frame, &chunk, &named).unwrap();
        let parsed = parse(&again, 1 << 20).unwrap();
        assert_eq!(parsed.segments, [Segment::Literal(8192)]);
        assert_eq!(parsed.codec, Some(Codec::Zstd), "sent again compressed");
        assert_eq!(decode(&again, 1 << 20, &store, &[], true).unwrap(), chunk);
    }
}
