//! Data reduction over real sockets on 127.0.0.1: streams of every kind of content arrive
//! byte-identical with every compression setting, over plaintext and mutual TLS; the wire
//! carries less for compressible data and at most 0.5 % more for random data; a receiver that
//! does not confirm HDE, or predates it, gets raw frames; a bad item fails the session.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test data generators truncate on purpose"
)]

use super::test_support::{loopback_tls, pseudo_random};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::{
    Progress, ReceivedFile, Receiver, ReceiverConfig, Reduction, SendOptions, Source, StreamCount,
    TransferSummary, send,
};
use crate::hde::{Codec, CodecChoice, Encoded, codec, encode_item};
use crate::transport::{Acceptor, Dialer, Security, TcpTuning};
use crate::wire::{
    ErrorCode, ErrorMessage, FEATURE_HDE, Frame, FrameKind, Hello, HelloAck, HelloMode,
    PayloadKind, SessionId, read_frame, write_frame,
};

pub(super) const STEP: Duration = Duration::from_secs(60);
pub(super) const MIB: usize = 1 << 20;

pub(super) struct Rx {
    pub(super) addr: String,
    done: mpsc::UnboundedReceiver<ReceivedFile>,
    task: JoinHandle<()>,
}

impl Drop for Rx {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Rx {
    async fn start(dir: &Path, security: Security, hde: bool) -> Self {
        let mut cfg = ReceiverConfig::new(dir);
        cfg.hde = hde;
        Self::with_config(cfg, security).await
    }

    /// A receiver with `cfg` (its session limit raised: finished sessions linger for a while,
    /// and the round trips open many).
    pub(super) async fn with_config(mut cfg: ReceiverConfig, security: Security) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let acceptor = Acceptor::new(listener, &security, TcpTuning::default()).unwrap();
        cfg.max_sessions = 64;
        let rx = Receiver::new(acceptor, cfg).unwrap();
        let addr = rx.local_addr().unwrap().to_string();
        let (done_tx, done) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let _ = rx.run(done_tx).await;
        });
        Self { addr, done, task }
    }
}

pub(super) fn dialer(addr: &str, security: &Security) -> Dialer {
    Dialer {
        addr: addr.to_owned(),
        security: security.clone(),
        tuning: TcpTuning::default(),
    }
}

pub(super) fn opts(name: &str, reduce: Reduction) -> SendOptions {
    let mut o = SendOptions::new(name);
    o.streams = StreamCount::Fixed(3);
    o.chunk_size = 256 << 10;
    o.reduce = reduce;
    o
}

pub(super) async fn send_to(
    addr: &str,
    security: &Security,
    data: &[u8],
    o: SendOptions,
) -> TransferSummary {
    let (progress, _) = watch::channel(Progress::starting());
    let source = Source::Reader(Box::new(std::io::Cursor::new(data.to_vec())));
    timeout(STEP, send(source, dialer(addr, security), o, progress))
        .await
        .expect("send did not finish in time")
        .expect("send failed")
}

/// Log lines: timestamps, levels, a few words and numbers, as a service writes them.
pub(super) fn log_text(len: usize) -> Vec<u8> {
    let words = [
        "session", "open", "frame", "acked", "window", "bytes", "stream", "done",
    ];
    let levels = ["INFO", "DEBUG", "WARN"];
    let mut out = Vec::with_capacity(len + 200);
    let mut i = 0u64;
    while out.len() < len {
        let line = format!(
            "2026-11-25T23:{:02}:{:02}.{:06}Z {} dwcp::amst: {} {} id={} offset={}\n",
            (i / 60) % 60,
            i % 60,
            (i * 7919) % 1_000_000,
            levels[(i % 3) as usize],
            words[(i % 8) as usize],
            words[((i / 8) % 8) as usize],
            i % 977,
            i * 4096
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// Zero runs, text and noise in turn, in pieces that straddle chunk boundaries.
pub(super) fn mixed(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut k = 0u64;
    while out.len() < len {
        let piece = 300_000 + (k as usize % 3) * 70_001;
        match k % 3 {
            0 => out.extend(std::iter::repeat_n(0u8, piece)),
            1 => out.extend_from_slice(&log_text(piece)),
            _ => out.extend_from_slice(&pseudo_random(piece, k)),
        }
        k += 1;
    }
    out.truncate(len);
    out
}

fn settings() -> Vec<Reduction> {
    vec![
        Reduction::Auto,
        Reduction::Fixed(CodecChoice::None),
        Reduction::Fixed(CodecChoice::Lz4),
        Reduction::Fixed(CodecChoice::Zstd(1)),
        Reduction::Fixed(CodecChoice::Zstd(9)),
    ]
}

async fn round_trips(security: Security, dir: &Path) {
    let rx = Rx::start(dir, security.clone(), true).await;
    let len = 3 * MIB + 12_345;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text", log_text(len)),
        ("zero", vec![0u8; len]),
        ("random", pseudo_random(len, 9)),
        ("mixed", mixed(len)),
    ];
    for (kind, data) in &cases {
        for reduce in settings() {
            let name = format!("{kind}-{}", reduce.to_string().replace(':', "-"));
            let mut o = opts(&name, reduce);
            if reduce == Reduction::Auto {
                // A 200 Mbit/s cap: slower than any compressor here, so Auto compresses.
                o.rate_limit = Some(25_000_000);
            }
            let s = send_to(&rx.addr, &security, data, o).await;
            let stored = std::fs::read(dir.join(&name)).unwrap();
            assert!(stored == *data, "{name}: stored stream differs");
            assert_eq!(s.blake3, blake3::hash(data).to_hex().to_string());
            assert!(s.hde, "{name}: {s:?}");
            assert_eq!(s.stream_bytes, len as u64, "{name}");
            assert_eq!(s.compression, reduce.to_string());
            let wire = s.wire_bytes as f64;
            let stream = s.stream_bytes as f64;
            match *kind {
                "random" => assert!(wire <= stream * 1.005, "{name}: {s:?}"),
                "zero" => assert!(wire < stream / 1000.0, "{name}: {s:?}"),
                "text" if reduce != Reduction::Fixed(CodecChoice::None) => {
                    assert!(wire < stream * 0.5, "{name}: {s:?}");
                    assert!(s.reduction_ratio > 2.0, "{name}: {s:?}");
                }
                _ => assert!(wire <= stream * 1.005, "{name}: {s:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_setting_round_trips_every_kind_of_data_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    round_trips(Security::Insecure, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_setting_round_trips_every_kind_of_data_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    round_trips(loopback_tls(pki.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_on_loopback_sends_random_data_raw() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::start(dir.path(), Security::Insecure, true).await;
    let data = pseudo_random(8 * MIB, 3);
    let s = send_to(
        &rx.addr,
        &Security::Insecure,
        &data,
        opts("noise", Reduction::Auto),
    )
    .await;
    assert_eq!(std::fs::read(dir.path().join("noise")).unwrap(), data);
    assert!(s.hde);
    assert_eq!(s.codec, "none", "{s:?}");
    assert!(
        s.wire_bytes as f64 <= s.stream_bytes as f64 * 1.005,
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn left_to_the_link_frames_and_connections_follow_its_mode() {
    use crate::mode::Mode;
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::start(dir.path(), Security::Insecure, true).await;
    let data = pseudo_random(4 * MIB, 5);
    let mut o = opts("by-mode", Reduction::Auto);
    o.chunk_size = 0;
    o.streams = super::StreamCount::default();
    let s = send_to(&rx.addr, &Security::Insecure, &data, o).await;
    assert_eq!(std::fs::read(dir.path().join("by-mode")).unwrap(), data);
    // Loopback is a datacenter link: its frames and first connections.
    assert_eq!(s.mode, Mode::Datacenter, "{s:?}");
    let dc = Mode::Datacenter.defaults();
    assert_eq!(s.chunk_size, dc.chunk_size, "{s:?}");
    assert!(s.streams_max >= usize::from(dc.initial_streams), "{s:?}");
    // A size asked for is kept.
    let mut o = opts("fixed", Reduction::Auto);
    o.chunk_size = 64 << 10;
    let s = send_to(&rx.addr, &Security::Insecure, &data, o).await;
    assert_eq!(s.chunk_size, 64 << 10, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_does_not_confirm_hde_gets_raw_frames() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::start(dir.path(), Security::Insecure, false).await;
    let data = log_text(2 * MIB);
    let reduce = Reduction::Fixed(CodecChoice::Lz4);
    let s = send_to(&rx.addr, &Security::Insecure, &data, opts("plain", reduce)).await;
    assert_eq!(std::fs::read(dir.path().join("plain")).unwrap(), data);
    assert!(!s.hde, "{s:?}");
    assert_eq!(s.codec, "none");
    assert_eq!(s.wire_bytes, s.stream_bytes);
}

/// A receiver of the version before the features field: it refuses a `Hello` with trailing
/// bytes as malformed, and takes the rest to the real receiver, checking on the way that no
/// data frame is anything but raw.
async fn old_receiver(upstream: String) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(Some(hello)) = read_frame(&mut client).await else {
                    return;
                };
                let plain = Hello::decode(&hello.payload).is_ok_and(|h| h.features == 0);
                if !plain {
                    let err = ErrorMessage {
                        code: ErrorCode::Protocol,
                        message: "malformed Hello payload: trailing bytes".into(),
                    };
                    let f = Frame::control(FrameKind::Error, hello.header.session, 0, err.encode())
                        .unwrap();
                    let _ = write_frame(&mut client, &f).await;
                    let _ = client.flush().await;
                    return;
                }
                let mut server = TcpStream::connect(&upstream).await.unwrap();
                write_frame(&mut server, &hello).await.unwrap();
                let (mut crd, mut cwr) = client.into_split();
                let (mut srd, mut swr) = server.into_split();
                let back = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut srd, &mut cwr).await;
                });
                while let Ok(Some(frame)) = read_frame(&mut crd).await {
                    if frame.header.kind == FrameKind::Data {
                        assert_eq!(frame.header.payload_kind, PayloadKind::Raw);
                    }
                    if write_frame(&mut swr, &frame).await.is_err() {
                        break;
                    }
                }
                let _ = swr.shutdown().await;
                let _ = back.await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_older_than_hde_is_asked_again_plainly_and_gets_raw_frames() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::start(dir.path(), Security::Insecure, true).await;
    let (addr, proxy) = old_receiver(rx.addr.clone()).await;
    let data = mixed(3 * MIB);
    let s = send_to(
        &addr,
        &Security::Insecure,
        &data,
        opts("old", Reduction::Auto),
    )
    .await;
    proxy.abort();
    assert_eq!(std::fs::read(dir.path().join("old")).unwrap(), data);
    assert!(!s.hde, "{s:?}");
    assert_eq!(s.wire_bytes, s.stream_bytes);
    assert!((s.reduction_ratio - 1.0).abs() < f64::EPSILON);
}

/// Opens a session by hand with a 64 KiB chunk size, asking for `features`.
async fn open_by_hand(addr: &str, name: &str, features: u32) -> (TcpStream, SessionId, HelloAck) {
    hello_by_hand(addr, SessionId::random(), HelloMode::Open, name, features).await
}

pub(super) async fn hello_by_hand(
    addr: &str,
    session: SessionId,
    mode: HelloMode,
    name: &str,
    features: u32,
) -> (TcpStream, SessionId, HelloAck) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let hello = Hello {
        mode,
        conn_index: u16::from(mode == HelloMode::Join),
        total_len: None,
        chunk_size: 64 << 10,
        name: name.to_owned(),
        features,
    };
    let f = Frame::control(FrameKind::Hello, session, 0, hello.encode()).unwrap();
    write_frame(&mut s, &f).await.unwrap();
    s.flush().await.unwrap();
    let answer = read_frame(&mut s).await.unwrap().unwrap();
    assert_eq!(answer.header.kind, FrameKind::HelloAck);
    (s, session, HelloAck::decode(&answer.payload).unwrap())
}

/// The `Hello` of a session's second connection, asking for `features`.
pub(super) fn join_hello(features: u32) -> Hello {
    Hello {
        mode: HelloMode::Join,
        conn_index: 1,
        total_len: None,
        chunk_size: 64 << 10,
        name: String::new(),
        features,
    }
}

/// Sends one `Hde` data frame at offset 0 and returns the receiver's `Error`: the connection
/// that carried the bad frame is closed, and, as a sender would, another one joins the session
/// and is told why.
async fn refused(
    addr: &str,
    s: &mut TcpStream,
    session: SessionId,
    item: &Encoded,
) -> ErrorMessage {
    let mut payload = Vec::new();
    encode_item(item, &mut payload).unwrap();
    let f = Frame::new(
        FrameKind::Data,
        PayloadKind::Hde,
        session,
        0,
        0,
        Bytes::from(payload),
    )
    .unwrap();
    write_frame(s, &f).await.unwrap();
    s.flush().await.unwrap();
    let closed = timeout(STEP, read_frame(s)).await.unwrap();
    assert!(matches!(closed, Ok(None) | Err(_)), "{closed:?}");
    let mut join = TcpStream::connect(addr).await.unwrap();
    let f = Frame::control(
        FrameKind::Hello,
        session,
        0,
        join_hello(FEATURE_HDE).encode(),
    )
    .unwrap();
    write_frame(&mut join, &f).await.unwrap();
    join.flush().await.unwrap();
    loop {
        let frame = timeout(STEP, read_frame(&mut join))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if frame.header.kind == FrameKind::Error {
            return ErrorMessage::decode(&frame.payload).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_that_decompresses_past_the_chunk_size_fails_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Rx::start(dir.path(), Security::Insecure, true).await;
    let (mut s, session, ack) = open_by_hand(&rx.addr, "bomb", FEATURE_HDE).await;
    assert_eq!(ack.features, FEATURE_HDE);
    // 128 KiB of zeros in a few hundred bytes: a valid CRC, a valid item, too big a result.
    let bytes = codec::compress(Codec::Lz4, 0, &vec![0u8; 128 << 10]).unwrap();
    let item = Encoded::Compressed {
        codec: Codec::Lz4,
        level: 0,
        bytes,
    };
    let err = refused(&rx.addr, &mut s, session, &item).await;
    assert_eq!(err.code, ErrorCode::Protocol);
    assert!(
        err.message
            .contains("bad HDE item in data frame seq 0 at offset 0")
            && err.message.contains("larger than 65536 bytes"),
        "{}",
        err.message
    );
    drop(s);
    let done = timeout(STEP, rx.done.recv()).await.unwrap().unwrap();
    assert_eq!(done.bytes, 0);
    assert!(done.outcome.is_err());
    assert!(!dir.path().join("bomb").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_and_unnegotiated_hde_frames_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Rx::start(dir.path(), Security::Insecure, true).await;
    let (mut s, session, _) = open_by_hand(&rx.addr, "refs", FEATURE_HDE).await;
    let err = refused(
        &rx.addr,
        &mut s,
        session,
        &Encoded::Ref(crate::hde::ContentHash([1; 32])),
    )
    .await;
    assert!(
        err.message.contains("ref items are not accepted"),
        "{}",
        err.message
    );

    let (mut s, session, ack) = open_by_hand(&rx.addr, "unasked", 0).await;
    assert_eq!(ack.features, 0);
    let err = refused(&rx.addr, &mut s, session, &Encoded::Zero { len: 10 }).await;
    assert!(
        err.message.contains("did not negotiate HDE"),
        "{}",
        err.message
    );

    let rx_off = Rx::start(dir.path(), Security::Insecure, false).await;
    let (_s, _, ack) = open_by_hand(&rx_off.addr, "off", FEATURE_HDE | 0x100).await;
    assert_eq!(ack.features, 0, "nothing confirmed, unknown bits ignored");
}
