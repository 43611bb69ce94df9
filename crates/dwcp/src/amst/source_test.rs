//! The producer's bound on payload bytes on the wire.

use std::io::Cursor;
use std::time::Duration;

use tokio::sync::watch;

use super::*;

const CHUNK: usize = 1000;

/// What the connections tell a producer: the acknowledged wire bytes, and the wake-up.
struct Acks {
    wire_acked: Arc<AtomicU64>,
    notify: Arc<tokio::sync::Notify>,
}

impl Acks {
    /// The receiver acknowledged (or holds) `wire` payload bytes in all.
    fn acknowledged(&self, wire: u64) {
        self.wire_acked.store(wire, Ordering::Relaxed);
        self.notify.notify_waiters();
    }
}

/// A producer of raw frames of [`CHUNK`] bytes under the wire limit `limit`, the queue it
/// frames into, and the acknowledgements it reads.
fn producer(limit: watch::Receiver<u64>) -> (Producer, mpsc::UnboundedReceiver<Outgoing>, Acks) {
    let (queue, rx) = mpsc::unbounded_channel();
    let acks = Acks {
        wire_acked: Arc::new(AtomicU64::new(0)),
        notify: Arc::new(tokio::sync::Notify::new()),
    };
    let p = Producer {
        session: SessionId::random(),
        chunk_size: CHUNK,
        total_len: None,
        prompt: false,
        cancelled: Arc::new(AtomicBool::new(false)),
        charge: Charge::default(),
        start: 0,
        permits: Arc::new(Semaphore::new(1 << 20)),
        queue,
        runtime: tokio::runtime::Handle::current(),
        encoder: None,
        reduce: Arc::new(ReduceShared::default()),
        acked: Arc::new(AtomicU64::new(0)),
        acked_changed: Arc::clone(&acks.notify),
        span: None,
        wire_limit: Some(limit),
        wire_acked: Arc::clone(&acks.wire_acked),
        end_confirmed: None,
        frames: crate::bufpool::BufPool::new(CHUNK, 2),
    };
    (p, rx, acks)
}

/// Waits for `n` frames (each within 10 s).
async fn take(rx: &mut mpsc::UnboundedReceiver<Outgoing>, n: usize) {
    for i in 0..n {
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert!(matches!(got, Ok(Some(_))), "frame {i} of {n} did not come");
    }
}

/// Asserts that no frame comes for 300 ms (a producer that was free to send would have).
async fn quiet(rx: &mut mpsc::UnboundedReceiver<Outgoing>) {
    let got = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
    assert!(got.is_err(), "a frame went beyond the wire limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_wait_for_room_under_the_wire_limit_and_go_once_it_widens() {
    // Two and a half frames' payload: two go out, the third waits.
    let (limit_tx, limit_rx) = watch::channel(2500);
    let (p, mut rx, acks) = producer(limit_rx);
    let reduce = Arc::clone(&p.reduce);
    let data: Vec<u8> = (0..10 * CHUNK)
        .flat_map(|i| u8::try_from(i % 251))
        .collect();
    let expected = blake3::hash(&data);
    let task = tokio::task::spawn_blocking(move || p.run(Box::new(Cursor::new(data))));
    take(&mut rx, 2).await;
    quiet(&mut rx).await;
    // One frame crosses: room for one more, not two.
    acks.acknowledged(1000);
    take(&mut rx, 1).await;
    quiet(&mut rx).await;
    // Literals sent for a `Need` in place of a frame's references count too: 300 more
    // framed, 700 more acknowledged leave 1600 out, no room for 1000 more under 2500.
    reduce.wire_bytes.fetch_add(300, Ordering::Relaxed);
    acks.acknowledged(1700);
    quiet(&mut rx).await;
    // Widened: the rest goes at once, then the end.
    limit_tx.send_replace(u64::MAX);
    // Seven frames and the end.
    take(&mut rx, 8).await;
    let produced = task.await.unwrap().unwrap();
    assert_eq!(produced.len, 10 * CHUNK as u64);
    assert_eq!(produced.hash, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_limit_goes_alone_and_a_dropped_limit_bounds_nothing() {
    let (limit_tx, limit_rx) = watch::channel(10);
    let (p, mut rx, acks) = producer(limit_rx);
    let task =
        tokio::task::spawn_blocking(move || p.run(Box::new(Cursor::new(vec![7u8; 4 * CHUNK]))));
    // Larger than the limit, but nothing is out: it goes alone.
    take(&mut rx, 1).await;
    quiet(&mut rx).await;
    acks.acknowledged(1000);
    take(&mut rx, 1).await;
    quiet(&mut rx).await;
    // The owner gone: the other two and the end go.
    drop(limit_tx);
    take(&mut rx, 3).await;
    assert_eq!(task.await.unwrap().unwrap().len, 4 * CHUNK as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_acknowledges_nothing_does_not_hold_the_source_for_ever() {
    let (_limit_tx, limit_rx) = watch::channel(10);
    let (p, mut rx, _acks) = producer(limit_rx);
    let task =
        tokio::task::spawn_blocking(move || p.run(Box::new(Cursor::new(vec![7u8; 2 * CHUNK]))));
    take(&mut rx, 1).await;
    // Nothing acknowledged: the next frame waits its patience, then goes; then the end.
    let waited = std::time::Instant::now();
    take(&mut rx, 2).await;
    assert!(
        waited.elapsed() >= WIRE_PATIENCE / 2,
        "{:?}",
        waited.elapsed()
    );
    assert_eq!(task.await.unwrap().unwrap().len, 2 * CHUNK as u64);
}

/// Runs a producer of raw 1 MiB chunks over `data`, its length told when `known`, and returns
/// the stream length of each data frame in order.
async fn chunk_lengths(data: Vec<u8>, known: bool) -> Vec<u64> {
    let (_limit_tx, limit_rx) = watch::channel(0);
    let (mut p, mut rx, _acks) = producer(limit_rx);
    p.chunk_size = 1 << 20;
    p.total_len = known.then_some(data.len() as u64);
    p.permits = Arc::new(Semaphore::new(64 << 20));
    p.wire_limit = None;
    let expected = blake3::hash(&data);
    let len = data.len() as u64;
    let produced = tokio::task::spawn_blocking(move || p.run(Box::new(Cursor::new(data))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((produced.len, produced.hash), (len, expected));
    let mut lens = Vec::new();
    let mut next = 0;
    while let Some(out) = rx.recv().await {
        if out.frame.header.kind != FrameKind::Data {
            assert_eq!(out.frame.header.kind, FrameKind::End);
            break;
        }
        assert_eq!(
            out.frame.header.offset, next,
            "frames out of order or with a gap"
        );
        next += out.stream_len;
        lens.push(out.stream_len);
    }
    assert_eq!(next, len);
    lens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_known_length_ends_in_chunks_that_shrink_with_what_is_left() {
    let data: Vec<u8> = (0..(40u64 << 20) + 12_345)
        .map(|i| (i % 251) as u8)
        .collect();
    let lens = chunk_lengths(data.clone(), true).await;
    // Whole chunks while more than 32 are left, then a 32nd of what is left, down to 64 KiB.
    let whole = lens.iter().take_while(|&&l| l == 1 << 20).count();
    assert!((7..=9).contains(&whole), "{whole} whole chunks of {lens:?}");
    assert!(lens.windows(2).all(|w| w[0] >= w[1]), "{lens:?}");
    assert!(lens.iter().all(|&l| l <= 1 << 20));
    let last_floor = lens.iter().rev().take_while(|&&l| l <= 64 << 10).count();
    assert!(
        last_floor >= 16,
        "the last frames: {:?}",
        &lens[lens.len() - 20..]
    );
    // About 32 × ln(32) frames more than whole chunks would take, not hundreds.
    assert!(lens.len() < 41 + 160, "{} frames", lens.len());
    // Without a known length, whole chunks to the end.
    let unknown = chunk_lengths(data, false).await;
    assert_eq!(unknown.len(), 41);
    assert!(unknown[..40].iter().all(|&l| l == 1 << 20));
}
