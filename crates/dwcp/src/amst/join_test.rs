//! Connections that join a session write frames right behind their `Hello`, before the
//! receiver answered it: over real sockets on 127.0.0.1, a receiver that refuses the joins
//! (it allows one connection per session) still gets the whole stream exact, the refused
//! connections' frames going again on the one it admitted; a refused join hears why and sees
//! its connection closed, not reset.

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::hde_test::{MIB, Rx, STEP, join_hello, mixed, opts, send_to};
use super::{ReceiverConfig, Reduction, StreamCount};
use crate::transport::Security;
use crate::wire::{
    ErrorCode, ErrorMessage, Frame, FrameKind, PayloadKind, SessionId, read_frame, write_frame,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_behind_a_refused_join_go_on_the_admitted_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ReceiverConfig::new(dir.path());
    cfg.max_streams = 1;
    let rx = Rx::with_config(cfg, Security::Insecure).await;
    let data = mixed(8 * MIB);
    let mut o = opts("joined", Reduction::Off);
    o.streams = StreamCount::Fixed(4);
    let summary = send_to(&rx.addr, &Security::Insecure, &data, o).await;
    assert_eq!(summary.bytes, data.len() as u64);
    assert_eq!(std::fs::read(dir.path().join("joined")).unwrap(), data);
}

/// A join the receiver refuses, with frames written right behind it, reads the refusal and then
/// a clean end of stream: the receiver drains the frames instead of resetting the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_join_is_told_why_and_closed_without_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::with_config(ReceiverConfig::new(dir.path()), Security::Insecure).await;
    let session = SessionId::random();
    let mut bytes = Vec::new();
    let f = Frame::control(FrameKind::Hello, session, 0, join_hello(0).encode()).unwrap();
    write_frame(&mut bytes, &f).await.unwrap();
    for seq in 0..8u64 {
        let payload = Bytes::from(vec![7u8; 64 << 10]);
        let f = Frame::new(
            FrameKind::Data,
            PayloadKind::Raw,
            session,
            seq,
            seq * (64 << 10),
            payload,
        )
        .unwrap();
        write_frame(&mut bytes, &f).await.unwrap();
    }
    let (mut rd, mut wr) = TcpStream::connect(&rx.addr).await.unwrap().into_split();
    // Written at once, as a joining sender does; the receiver may stop reading at any point.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        wr
    });
    let answer = timeout(STEP, read_frame(&mut rd))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answer.header.kind, FrameKind::Error);
    let err = ErrorMessage::decode(&answer.payload).unwrap();
    assert_eq!(err.code, ErrorCode::NoSession, "{err:?}");
    let end = timeout(STEP, read_frame(&mut rd)).await.unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");
    drop(writer.await.unwrap());
}
