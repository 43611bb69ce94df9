//! `Held` reports over real sockets on 127.0.0.1: a receiver tells a sender that asked for
//! them which data frames it holds ahead of the bytes it acknowledged, and only those; a sender
//! that did not ask hears nothing of them; and a sender whose window its owner narrows
//! negotiates them and still delivers its stream exact.

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::hde_test::{MIB, Rx, STEP, hello_by_hand, mixed, opts, send_to};
use super::{ReceiverConfig, Reduction};
use crate::transport::Security;
use crate::wire::{
    FEATURE_HELD, Frame, FrameKind, HelloMode, PayloadKind, SessionId, read_frame, write_frame,
};

async fn data(s: &mut TcpStream, session: SessionId, offset: u64, len: usize) {
    let f = Frame::new(
        FrameKind::Data,
        PayloadKind::Raw,
        session,
        offset,
        offset,
        Bytes::from(vec![7u8; len]),
    )
    .unwrap();
    write_frame(s, &f).await.unwrap();
    s.flush().await.unwrap();
}

async fn next(s: &mut TcpStream) -> Frame {
    timeout(STEP, read_frame(s))
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

/// Reads acknowledgements until one covers `offset` (the writer may report its progress in
/// steps); anything else fails.
async fn acked_to(s: &mut TcpStream, offset: u64) {
    loop {
        let f = next(s).await;
        assert_eq!(f.header.kind, FrameKind::Ack, "{:?}", f.header);
        if f.header.offset >= offset {
            assert_eq!(f.header.offset, offset);
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_held_ahead_of_the_written_bytes_is_reported_once_asked() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::with_config(ReceiverConfig::new(dir.path()), Security::Insecure).await;
    let (mut s, session, ack) = hello_by_hand(
        &rx.addr,
        SessionId::random(),
        HelloMode::Open,
        "held",
        FEATURE_HELD,
    )
    .await;
    assert_eq!(ack.features, FEATURE_HELD);

    // The second frame first: held out of order.
    data(&mut s, session, 4096, 4096).await;
    let held = next(&mut s).await;
    assert_eq!(
        (held.header.kind, held.header.offset),
        (FrameKind::Held, 4096)
    );
    // The first one fills the hole: both are written and acknowledged, nothing held.
    data(&mut s, session, 0, 4096).await;
    let ack = next(&mut s).await;
    assert_eq!((ack.header.kind, ack.header.offset), (FrameKind::Ack, 8192));
    // An in-order frame is acknowledged, never reported held.
    data(&mut s, session, 8192, 4096).await;
    let ack = next(&mut s).await;
    assert_eq!(
        (ack.header.kind, ack.header.offset),
        (FrameKind::Ack, 12288)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_did_not_ask_hears_of_no_held_frame() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::with_config(ReceiverConfig::new(dir.path()), Security::Insecure).await;
    let (mut s, session, ack) =
        hello_by_hand(&rx.addr, SessionId::random(), HelloMode::Open, "plain", 0).await;
    assert_eq!(ack.features, 0);
    data(&mut s, session, 4096, 4096).await;
    data(&mut s, session, 0, 4096).await;
    // Nothing but acknowledgements come back.
    acked_to(&mut s, 8192).await;
}

/// Sends a 24 MiB mix over four connections of 64 KiB frames with `o` to a new receiver,
/// checks that it arrives exact, and returns the sender's summary.
async fn round_trip_exact(mut o: super::SendOptions) -> super::TransferSummary {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::with_config(ReceiverConfig::new(dir.path()), Security::Insecure).await;
    let payload = mixed(24 * MIB);
    o.chunk_size = 64 << 10;
    o.streams = super::StreamCount::Fixed(4);
    let name = o.name.clone();
    let s = send_to(&rx.addr, &Security::Insecure, &payload, o).await;
    assert_eq!(s.blake3, blake3::hash(&payload).to_hex().to_string());
    let stored = std::fs::read(dir.path().join(name)).unwrap();
    assert!(stored == payload, "stored stream differs");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrowed_window_negotiates_held_reports_and_the_stream_arrives_exact() {
    let mut o = opts("narrowed", Reduction::Off);
    o.window = 4 * MIB as u64;
    // Narrowed to two frames: every permit goes and comes back many times.
    let (_limit_tx, limit) = tokio::sync::watch::channel(128 << 10);
    o.window_limit = Some(limit);
    round_trip_exact(o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wire_bound_alone_negotiates_held_reports_and_the_stream_arrives_exact() {
    let mut o = opts("wire-bound", Reduction::Auto);
    // A full window, but about two compressed frames on the wire at once.
    let (_limit_tx, limit) = tokio::sync::watch::channel(64 << 10);
    o.wire_limit = Some(limit);
    let s = round_trip_exact(o).await;
    assert!(s.wire_bytes < s.bytes, "the stream was not reduced: {s:?}");
}
