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
