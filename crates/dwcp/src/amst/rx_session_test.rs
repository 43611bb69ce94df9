//! The receiver's reassembly: any chunking, order and duplication of frames stores exactly the
//! sender's stream, and bad frames are refused.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test data generators truncate on purpose"
)]

use super::test_support::pseudo_random;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::rx_session::RxSession;
use crate::wire::{ErrorCode, Frame, FrameKind, PayloadKind, SessionId};

const SID: SessionId = SessionId([9; 16]);

fn data(offset: u64, payload: &[u8]) -> Frame {
    Frame::new(
        FrameKind::Data,
        PayloadKind::Raw,
        SID,
        0,
        offset,
        Bytes::copy_from_slice(payload),
    )
    .unwrap()
}

fn end(len: u64, hash: blake3::Hash) -> Frame {
    Frame::control(
        FrameKind::End,
        SID,
        len,
        Bytes::copy_from_slice(hash.as_bytes()),
    )
    .unwrap()
}

/// Waits (bounded) for the session to end and returns its outcome.
fn outcome(s: &RxSession) -> Result<[u8; 32], crate::wire::ErrorMessage> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut rx = s.subscribe();
    loop {
        if let Some(o) = rx.borrow_and_update().outcome.clone() {
            return o;
        }
        assert!(Instant::now() < deadline, "session did not finish");
        std::thread::sleep(Duration::from_millis(2));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_order_and_duplication_reassembles_the_stream(
        len in 0usize..200_000,
        chunk in 1usize..40_000,
        seed in any::<u64>(),
        order in any::<u64>(),
        dup_every in 2usize..7,
    ) {
        // At most 30,000 frames (45,000 with duplicates): under the receiver's bound on frames
        // held out of order, which `a_flood_of_tiny_out_of_order_frames_is_refused` tests.
        let chunk = chunk.max(len / 30_000 + 1);
        let dir = tempfile::tempdir().unwrap();
        let input = pseudo_random(len, seed);
        let s = RxSession::open(SID, dir.path(), "f", Some(len as u64), 1 << 30, false).unwrap();
        let mut frames: Vec<Frame> = input
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| data((i * chunk) as u64, c))
            .collect();
        // Duplicate some frames, then shuffle deterministically from `order`.
        let dups: Vec<Frame> = frames.iter().step_by(dup_every).cloned().collect();
        frames.extend(dups);
        let mut r = order | 1;
        for i in (1..frames.len()).rev() {
            r ^= r << 13; r ^= r >> 7; r ^= r << 17;
            frames.swap(i, (r % (i as u64 + 1)) as usize);
        }
        s.on_frame(end(len as u64, blake3::hash(&input))).unwrap();
        for f in frames {
            s.on_frame(f).unwrap();
        }
        let hash = outcome(&s).unwrap();
        prop_assert_eq!(hash, *blake3::hash(&input).as_bytes());
        prop_assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), input);
        prop_assert!(!dir.path().join("f.partial").exists());
    }
}

#[test]
fn overlapping_retransmission_is_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let input = pseudo_random(100, 1);
    let s = RxSession::open(SID, dir.path(), "f", Some(100), 1 << 20, false).unwrap();
    s.on_frame(data(0, &input[..60])).unwrap();
    s.on_frame(data(40, &input[40..])).unwrap();
    s.on_frame(end(100, blake3::hash(&input))).unwrap();
    outcome(&s).unwrap();
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), input);
}

#[test]
fn wrong_hash_fails_and_removes_the_partial() {
    let dir = tempfile::tempdir().unwrap();
    let s = RxSession::open(SID, dir.path(), "f", Some(3), 1 << 20, false).unwrap();
    s.on_frame(data(0, b"abc")).unwrap();
    s.on_frame(end(3, blake3::hash(b"abd"))).unwrap();
    let err = outcome(&s).unwrap_err();
    assert_eq!(err.code, ErrorCode::Integrity);
    assert!(err.message.contains("BLAKE3 mismatch"), "{}", err.message);
    assert!(!dir.path().join("f").exists());
    assert!(!dir.path().join("f.partial").exists());
}

#[test]
fn data_beyond_the_window_or_length_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = RxSession::open(SID, dir.path(), "f", Some(1000), 100, false).unwrap();
    let err = s.on_frame(data(200, &[0; 10])).unwrap_err();
    assert!(err.message.contains("window"), "{}", err.message);
    let err = s.on_frame(data(995, &[0; 10])).unwrap_err();
    assert!(err.message.contains("announced length"), "{}", err.message);
}

#[test]
fn end_with_a_different_length_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = RxSession::open(SID, dir.path(), "f", Some(10), 100, false).unwrap();
    let err = s.on_frame(end(11, blake3::hash(b""))).unwrap_err();
    assert_eq!(err.code, ErrorCode::Protocol);
}

#[test]
fn resume_continues_after_the_partial_and_hashes_the_whole_stream() {
    let dir = tempfile::tempdir().unwrap();
    let input = pseudo_random(5000, 7);
    std::fs::write(dir.path().join("f.partial"), &input[..1234]).unwrap();
    let s = RxSession::open(SID, dir.path(), "f", Some(5000), 1 << 20, true).unwrap();
    assert_eq!(s.start, 1234);
    assert_eq!(s.status().written, 1234);
    s.on_frame(data(1234, &input[1234..])).unwrap();
    s.on_frame(end(5000, blake3::hash(&input))).unwrap();
    outcome(&s).unwrap();
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), input);
}

#[test]
fn resume_of_a_partial_longer_than_the_source_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.partial"), [0u8; 50]).unwrap();
    let err = RxSession::open(SID, dir.path(), "f", Some(10), 1 << 20, true)
        .err()
        .unwrap();
    assert!(
        err.message.contains("more than the 10-byte source"),
        "{}",
        err.message
    );
}

#[test]
fn a_flood_of_tiny_out_of_order_frames_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = RxSession::open(SID, dir.path(), "f", None, 1 << 30, false).unwrap();
    // Offset 0 never comes, so every frame waits; one byte each keeps well inside the window.
    for i in 0..super::rx_session::MAX_PENDING_FRAMES as u64 {
        s.on_frame(data(1 + i * 2, b"x")).unwrap();
    }
    let err = s.on_frame(data(1 << 20, b"x")).unwrap_err();
    assert!(err.message.contains("out of order"), "{}", err.message);
    // A repeat of a frame already held is still a harmless duplicate.
    s.on_frame(data(1, b"x")).unwrap();
}

/// A stream whose 64 KiB chunks each repeat the one before with a few bytes changed, encoded
/// by the sender's deduplicating encoder on a session with prefixed blocks: each frame after
/// the first needs the bytes before it.
fn prefixed_frames(chunks: usize) -> (Vec<u8>, Vec<Frame>) {
    let chunk = 64 << 10;
    let mut stream = pseudo_random(chunk, 21);
    for i in 1..chunks {
        let prev = stream[(i - 1) * chunk..i * chunk].to_vec();
        stream.extend(
            prev.iter()
                .enumerate()
                .map(|(j, b)| if j % 89 == i { !b } else { *b }),
        );
    }
    let mut enc = super::dedup::Dedup::new(
        chunk,
        super::cutter::Segmenting::Content,
        None,
        None,
        crate::wire::FEATURE_PREFIX,
    );
    let frames = stream
        .chunks(chunk)
        .enumerate()
        .map(|(i, c)| {
            let end = ((i + 1) * chunk) as u64;
            let out = enc
                .encode(
                    Bytes::copy_from_slice(c),
                    end,
                    0,
                    crate::hde::CodecChoice::Zstd(3),
                )
                .unwrap();
            Frame::new(
                FrameKind::Data,
                PayloadKind::Segments,
                SID,
                i as u64,
                end - chunk as u64,
                out.payload,
            )
            .unwrap()
        })
        .collect();
    (stream, frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_compressed_against_the_bytes_before_them_wait_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, frames) = prefixed_frames(8);
    for (i, f) in frames.iter().enumerate().skip(1) {
        let parsed = super::segments::parse(&f.payload, 1 << 20).unwrap();
        // At most twice the literal block (here about the 64 KiB chunk).
        assert_eq!(
            parsed.prefix,
            i.min(2) * (64 << 10),
            "compressed against the stream before"
        );
        assert!(f.payload.len() < 8 << 10, "{} bytes", f.payload.len());
    }
    let s = segments_session(dir.path(), "f", Some(stream.len() as u64), false, true);
    let need = |offset: u64, _: &[crate::hde::ContentHash]| panic!("Need at {offset}");
    // The last frames arrive first (one twice), and wait.
    for f in frames[1..].iter().rev().chain(&frames[4..5]) {
        assert!(!s.take_segments(f.clone(), &need).await.unwrap());
        s.take_parked(&need).await.unwrap();
        assert_eq!(s.status().written, 0);
    }
    // The first one lets each decode in turn.
    s.take_segments(frames[0].clone(), &need).await.unwrap();
    s.take_parked(&need).await.unwrap();
    // A copy of a frame already decoded is dropped.
    assert!(!s.take_segments(frames[3].clone(), &need).await.unwrap());
    s.on_frame(end(stream.len() as u64, blake3::hash(&stream)))
        .unwrap();
    let hash = outcome(&s).unwrap();
    assert_eq!(hash, *blake3::hash(&stream).as_bytes());
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), stream);
}

/// A session that takes `Segments` frames of 64 KiB chunks into a store under `dir`,
/// prefixed ones with `prefix`.
fn segments_session(
    dir: &std::path::Path,
    name: &str,
    len: Option<u64>,
    resume: bool,
    prefix: bool,
) -> RxSession {
    let store = std::sync::Arc::new(std::sync::Mutex::new(
        crate::hde::DiskStore::open(dir.join(".store"), 1 << 30).unwrap(),
    ));
    let s = RxSession::open(SID, dir, name, len, 1 << 30, resume)
        .unwrap()
        .with_hde(64 << 10)
        .with_dedup(store);
    if prefix {
        s.with_features(crate::wire::FEATURE_PREFIX)
    } else {
        s
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefixed_frame_is_refused_where_it_was_not_negotiated_or_its_prefix_is_not_held() {
    let dir = tempfile::tempdir().unwrap();
    let (stream, frames) = prefixed_frames(2);
    let need = |offset: u64, _: &[crate::hde::ContentHash]| panic!("Need at {offset}");
    let plain = segments_session(dir.path(), "a", None, false, false);
    plain.take_segments(frames[0].clone(), &need).await.unwrap();
    // A session resumed at the second frame holds nothing before it.
    std::fs::write(dir.path().join("b.partial"), &stream[..64 << 10]).unwrap();
    let resumed = segments_session(dir.path(), "b", None, true, true);
    for (s, says) in [
        (plain, "compressed against"),
        (resumed, "bytes before the frame"),
    ] {
        let err = s.take_segments(frames[1].clone(), &need).await.unwrap_err();
        assert!(err.message.contains(says), "{}", err.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_reference_is_refused_where_it_was_not_negotiated() {
    let dir = tempfile::tempdir().unwrap();
    let page = vec![7u8; 4096];
    let hash = crate::hde::ContentHash::of(&page);
    let segments = [super::segments::Segment::Ref { len: 4096, hash }];
    let need = |offset: u64, _: &[crate::hde::ContentHash]| panic!("Need at {offset}");
    for (name, short) in [("a", false), ("b", true)] {
        let s = segments_session(dir.path(), name, Some(4096), false, false);
        let s = if short {
            s.with_features(crate::wire::FEATURE_SHORT_REFS)
        } else {
            s
        };
        crate::hde::ContentStore::put(&mut *s.dedup.as_ref().unwrap().lock().unwrap(), hash, &page)
            .unwrap();
        let payload = super::segments::write(&segments, None, &[], true);
        let frame = Frame::new(FrameKind::Data, PayloadKind::Segments, SID, 0, 0, payload).unwrap();
        let taken = s.take_segments(frame, &need).await;
        if short {
            assert!(!taken.unwrap(), "decoded");
        } else {
            let err = taken.unwrap_err();
            assert!(
                err.message.contains("did not negotiate them"),
                "{}",
                err.message
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipe_is_refused_where_it_was_not_negotiated() {
    let dir = tempfile::tempdir().unwrap();
    let need = |offset: u64, _: &[crate::hde::ContentHash]| panic!("Need at {offset}");
    let s = segments_session(dir.path(), "a", None, false, false);
    let hash = crate::hde::ContentHash::of(b"a recipe");
    let payload = super::segments::write(
        &[super::segments::Segment::Recipe { len: 4096, hash }],
        None,
        &[],
        false,
    );
    let frame = Frame::new(FrameKind::Data, PayloadKind::Segments, SID, 0, 0, payload).unwrap();
    let err = s.take_segments(frame, &need).await.unwrap_err();
    assert!(
        err.message.contains("did not negotiate recipes"),
        "{}",
        err.message
    );
}
