//! A frame the receiver reported holding ahead of the bytes it acknowledged, and for which,
//! once those bytes were in, it lacked referenced content: the sender sends it again as
//! literals when asked (`Held`, then `Need`), against a scripted receiver on 127.0.0.1. A
//! sender that ignored such a `Need` left the receiver waiting for the frame for ever.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;

use super::hde_test::{STEP, dialer};
use super::segments::{self, Segment};
use super::test_support::pseudo_random;
use super::{Progress, Reduction, Segmenting, SendOptions, Source, StreamCount, send};
use crate::hde::{CodecChoice, ContentHash, ContentIndex};
use crate::transport::Security;
use crate::wire::{
    FEATURE_DEDUP, FEATURE_HDE, FEATURE_HELD, Frame, FrameKind, Hello, HelloAck, PayloadKind,
    read_frame, write_frame,
};

const CHUNK: usize = 64 << 10;
const PAGE: usize = 4096;

async fn next(s: &mut TcpStream, wait: Duration) -> Frame {
    timeout(wait, read_frame(s))
        .await
        .expect("no frame in time")
        .unwrap()
        .unwrap()
}

async fn control(s: &mut TcpStream, first: &Frame, kind: FrameKind, offset: u64, payload: Bytes) {
    let f = Frame::control(kind, first.header.session, offset, payload).unwrap();
    write_frame(s, &f).await.unwrap();
    s.flush().await.unwrap();
}

/// The hashes `frame`'s segments reference.
fn refs(frame: &Frame) -> Vec<ContentHash> {
    let parsed = segments::parse(&frame.payload, CHUNK).unwrap();
    parsed
        .segments
        .iter()
        .filter_map(|s| match s {
            Segment::Ref { hash, .. } => Some(*hash),
            _ => None,
        })
        .collect()
}

/// Plays the receiver: offers the second chunk's pages in its index, reports the first frame
/// that references them held, then asks for what it references; returns when the stream is
/// confirmed.
async fn receiver(listener: TcpListener, data: Vec<u8>) {
    let (mut s, _) = listener.accept().await.unwrap();
    let hello = next(&mut s, STEP).await;
    let asked = Hello::decode(&hello.payload).unwrap().features;
    let ack = HelloAck {
        start_offset: 0,
        window: 32 << 20,
        max_streams: 1,
        features: asked & (FEATURE_HDE | FEATURE_DEDUP | FEATURE_HELD),
    };
    assert_eq!(ack.features, FEATURE_HDE | FEATURE_DEDUP | FEATURE_HELD);
    control(&mut s, &hello, FrameKind::HelloAck, 0, ack.encode()).await;
    let second: Vec<ContentHash> = data[CHUNK..].chunks(PAGE).map(ContentHash::of).collect();
    let index = ContentIndex::build(second.len(), &second).encode();
    control(&mut s, &hello, FrameKind::Index, 0, index).await;

    // The first frame that references the second chunk's pages, then the rest to the `End`,
    // none of it acknowledged.
    let mut target = None;
    loop {
        let f = next(&mut s, STEP).await;
        if f.header.kind == FrameKind::End {
            break;
        }
        if target.is_none() && f.header.kind == FrameKind::Data && !refs(&f).is_empty() {
            target = Some(f);
        }
    }
    let target = target.expect("no frame went by reference");
    let offset = target.header.offset;
    assert!(offset > 0, "a frame ahead of the acknowledged bytes");
    // Held ahead of the first frame; then, the first frame in, its references turn out to
    // be missing.
    control(&mut s, &hello, FrameKind::Held, offset, Bytes::new()).await;
    let missing = refs(&target);
    let need = segments::need_payload(&missing);
    control(&mut s, &hello, FrameKind::Need, offset, need).await;
    loop {
        let f = next(&mut s, Duration::from_secs(10)).await;
        if f.header.kind == FrameKind::Data && f.header.offset == offset && refs(&f).is_empty() {
            assert_eq!(f.header.payload_kind, PayloadKind::Segments);
            break;
        }
    }
    let len = data.len() as u64;
    control(&mut s, &hello, FrameKind::Ack, len, Bytes::new()).await;
    let hash = Bytes::copy_from_slice(blake3::hash(&data).as_bytes());
    control(&mut s, &hello, FrameKind::Done, len, hash).await;
    // Until the sender closes.
    while matches!(read_frame(&mut s).await, Ok(Some(_))) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_frame_whose_content_the_receiver_lacks_goes_again_as_literals() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let data = pseudo_random(2 * CHUNK, 41);
    let rx = tokio::spawn(receiver(listener, data.clone()));

    let mut o = SendOptions::new("held-then-needed");
    o.streams = StreamCount::Fixed(1);
    o.chunk_size = u32::try_from(CHUNK).unwrap();
    o.reduce = Reduction::Fixed(CodecChoice::None);
    o.dedup = true;
    o.segmenting = Segmenting::Pages;
    // A window its owner may narrow (as a migration's is) asks for `Held` reports.
    let (_limit_tx, limit) = watch::channel(32 << 20);
    o.window_limit = Some(limit);
    let (progress, _) = watch::channel(Progress::starting());
    let source = Source::Reader(Box::new(std::io::Cursor::new(data.clone())));
    let summary = timeout(
        STEP,
        send(source, dialer(&addr, &Security::Insecure), o, progress),
    )
    .await
    .expect("send did not finish in time")
    .expect("send failed");
    rx.await.unwrap();
    assert_eq!(summary.bytes, data.len() as u64);
    assert_eq!(summary.content_requests, 1, "{summary:?}");
}
