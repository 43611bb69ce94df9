//! Deduplication against the receiver's content store over real sockets on 127.0.0.1: a
//! stream the receiver has seen goes as references, an edited copy sends about what changed,
//! content evicted from the store is asked for and the stream still arrives exact, a forged
//! reference is answered with `Need` (never guessed), a receiver without a store declines, and
//! a sender that records what it sends is referenced when the stream comes back.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use super::hde_test::{MIB, Rx, STEP, hello_by_hand, log_text, mixed, opts, send_to};
use super::segments::{Segment, write};
use super::test_support::pseudo_random;
use super::{ReceiverConfig, Reduction, SendOptions, TransferSummary};
use crate::hde::{CodecChoice, ContentHash, ContentIndex, DiskStore, SharedStore};
use crate::transport::Security;
use crate::wire::{
    FEATURE_DEDUP, FEATURE_HDE, Frame, FrameKind, HelloMode, PayloadKind, SessionId, read_frame,
    write_frame,
};

fn store(dir: &Path) -> SharedStore {
    Arc::new(Mutex::new(DiskStore::open(dir, 1 << 30).unwrap()))
}

async fn receiver(dir: &Path, store: Option<SharedStore>) -> Rx {
    let mut cfg = ReceiverConfig::new(dir);
    cfg.store = store;
    Rx::with_config(cfg, Security::Insecure).await
}

fn dedup_opts(name: &str) -> SendOptions {
    let mut o = opts(name, Reduction::Fixed(CodecChoice::Lz4));
    o.dedup = true;
    o
}

async fn send_checked(rx: &Rx, dir: &Path, data: &[u8], o: SendOptions) -> TransferSummary {
    let name = o.name.clone();
    let s = send_to(&rx.addr, &Security::Insecure, data, o).await;
    let stored = std::fs::read(dir.join(&name)).unwrap();
    assert!(stored == data, "{name}: stored stream differs");
    assert_eq!(s.blake3, blake3::hash(data).to_hex().to_string());
    s
}

/// Text, zeros and noise: about a third of it incompressible.
fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut data = mixed(len);
    let noise = pseudo_random(len / 4, seed);
    data.splice(len / 2..len / 2 + noise.len(), noise);
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_receiver_has_seen_goes_as_references() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(dir.path(), Some(store(&dir.path().join(".store")))).await;
    let data = image(8 * MIB, 3);

    let first = send_checked(&rx, dir.path(), &data, dedup_opts("first")).await;
    assert!(first.dedup, "{first:?}");
    assert_eq!(first.content_requests, 0);
    let second = send_checked(&rx, dir.path(), &data, dedup_opts("second")).await;
    assert!(second.dedup, "{second:?}");
    // Everything but zero runs and the segments under 256 bytes goes by reference.
    let zeros = data.iter().filter(|b| **b == 0).count() as u64;
    assert!(
        second.ref_bytes * 10 >= (data.len() as u64 - zeros) * 9,
        "{second:?}"
    );
    assert!(
        second.wire_bytes * 20 < first.wire_bytes,
        "{first:?}\n{second:?}"
    );
    // Short references: 13 bytes for a segment of about 5 KiB here (37 in full).
    assert!(second.wire_bytes * 300 < second.ref_bytes, "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_the_receiver_decoded_before_goes_as_one_reference_to_its_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(dir.path(), Some(store(&dir.path().join(".store")))).await;
    let data = image(8 * MIB, 9);
    send_checked(&rx, dir.path(), &data, dedup_opts("first")).await;
    let second = send_checked(&rx, dir.path(), &data, dedup_opts("second")).await;
    // A recipe's reference, the frame's header and the payload's fields: about 100 bytes
    // for each chunk of 256 KiB (the 32 of them: about 1900 segments).
    let chunks = (data.len() as u64).div_ceil(256 << 10);
    assert!(second.wire_bytes < chunks * 128, "{second:?}");
    assert_eq!(second.content_requests, 0, "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_copy_sends_about_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(dir.path(), Some(store(&dir.path().join(".store")))).await;
    let old = image(8 * MIB, 5);
    send_checked(&rx, dir.path(), &old, dedup_opts("v1")).await;

    // An insertion early on shifts everything after it; a rewrite later changes 64 KiB.
    let mut new = old.clone();
    new.splice(100_000..100_000, log_text(3_000));
    let noise = pseudo_random(64 << 10, 77);
    new.splice(6 * MIB..6 * MIB + noise.len(), noise);
    let mut o = dedup_opts("v2");
    o.reduce = Reduction::Fixed(CodecChoice::None);
    let s = send_checked(&rx, dir.path(), &new, o).await;
    // Changed: 3 KB + 64 KiB, plus the segments around them (16 KiB at most each side), and
    // a whole chunk again for each reference the index wrongly promised (rare).
    assert!(
        s.wire_bytes < (256 << 10) + s.content_requests * (256 << 10),
        "{s:?}"
    );
    assert!(s.content_requests <= 1, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_evicted_from_the_store_is_asked_for_and_the_stream_is_still_exact() {
    let dir = tempfile::tempdir().unwrap();
    // A store of 1 MiB: by the time the stream repeats its first 2 MiB, they are evicted.
    let small = Arc::new(Mutex::new(
        DiskStore::open(dir.path().join(".store"), 1 << 20).unwrap(),
    ));
    let rx = receiver(dir.path(), Some(small)).await;
    let first = pseudo_random(2 * MIB, 11);
    let mut data = first.clone();
    data.extend_from_slice(&pseudo_random(2 * MIB, 12));
    data.extend_from_slice(&first);
    let mut o = dedup_opts("repeats");
    // A small window: the first copy is acknowledged before the second is framed, so the
    // sender references it.
    o.window = 512 << 10;
    let s = send_checked(&rx, dir.path(), &data, o).await;
    assert!(s.ref_bytes > 0, "{s:?}");
    assert!(s.content_requests > 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_reference_is_answered_with_need_and_never_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(dir.path(), Some(store(&dir.path().join(".store")))).await;
    let (mut s, session, ack) = hello_by_hand(
        &rx.addr,
        SessionId::random(),
        HelloMode::Open,
        "forged",
        FEATURE_HDE | FEATURE_DEDUP,
    )
    .await;
    assert_eq!(ack.features, FEATURE_HDE | FEATURE_DEDUP);
    let index = read_frame(&mut s).await.unwrap().unwrap();
    assert_eq!(index.header.kind, FrameKind::Index);
    ContentIndex::decode(&index.payload).unwrap();

    let content = pseudo_random(8 << 10, 21);
    let forged = write(
        &[Segment::Ref {
            len: 8 << 10,
            hash: ContentHash::of(&content),
        }],
        None,
        &[],
        false,
    );
    let data = |payload: Bytes| {
        Frame::new(
            FrameKind::Data,
            PayloadKind::Segments,
            session,
            0,
            0,
            payload,
        )
        .unwrap()
    };
    write_frame(&mut s, &data(forged)).await.unwrap();
    s.flush().await.unwrap();
    let need = timeout(STEP, read_frame(&mut s))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(need.header.kind, FrameKind::Need);
    assert_eq!(need.header.offset, 0);
    assert_eq!(
        super::segments::parse_need(&need.payload).unwrap(),
        [ContentHash::of(&content)],
        "the Need names what is missing"
    );

    // Sent as a literal, it is stored and the stream completes.
    let literal = write(&[Segment::Literal(8 << 10)], None, &content, false);
    write_frame(&mut s, &data(literal)).await.unwrap();
    let hash = blake3::hash(&content);
    let end = Frame::control(
        FrameKind::End,
        session,
        content.len() as u64,
        Bytes::copy_from_slice(hash.as_bytes()),
    )
    .unwrap();
    write_frame(&mut s, &end).await.unwrap();
    s.flush().await.unwrap();
    loop {
        let f = timeout(STEP, read_frame(&mut s))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match f.header.kind {
            FrameKind::Ack => continue,
            FrameKind::Done => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(std::fs::read(dir.path().join("forged")).unwrap(), content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_without_a_store_declines_and_the_stream_goes_plain() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(dir.path(), None).await;
    let data = image(2 * MIB, 8);
    for name in ["one", "two"] {
        let s = send_checked(&rx, dir.path(), &data, dedup_opts(name)).await;
        assert!(s.hde && !s.dedup, "{s:?}");
        assert_eq!(s.ref_bytes, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_node_sent_is_referenced_when_the_stream_comes_back() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let store_a = store(&a.path().join(".store"));
    let store_b = store(&b.path().join(".store"));
    let rx_a = receiver(a.path(), Some(Arc::clone(&store_a))).await;
    let rx_b = receiver(b.path(), Some(Arc::clone(&store_b))).await;
    let data = image(6 * MIB, 13);

    // A sends to B, recording what it sends in its own store.
    let mut out = dedup_opts("out");
    out.record = Some(Arc::clone(&store_a));
    send_checked(&rx_b, b.path(), &data, out).await;
    // The recorder runs behind the sender: wait (bounded) until it has caught up.
    let deadline = std::time::Instant::now() + STEP;
    while store_a.lock().unwrap().total_bytes() < store_b.lock().unwrap().total_bytes() {
        assert!(
            std::time::Instant::now() < deadline,
            "recorder never caught up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // B sends it back to A: A already holds it.
    let back = send_checked(&rx_a, a.path(), &data, dedup_opts("back")).await;
    let zeros = data.iter().filter(|b| **b == 0).count() as u64;
    assert!(
        back.ref_bytes * 10 >= (data.len() as u64 - zeros) * 9,
        "{back:?}"
    );
    assert!(back.wire_bytes < (data.len() / 20) as u64, "{back:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_segmenting_round_trips_and_references_a_repeat() {
    use super::Segmenting;
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(dir.path(), Some(store(&dir.path().join(".store")))).await;
    // A QEMU-like stream: page records between other bytes, then plain mixed data.
    let mut data = b"device state before the pages".to_vec();
    let pages = pseudo_random(64 * 4096, 17);
    for (i, page) in pages.chunks(4096).enumerate() {
        data.extend((((i as u64 + 1) << 12) | 0x28).to_be_bytes());
        data.extend_from_slice(page);
    }
    data.extend(image(2 * MIB, 18));
    for mode in [Segmenting::Auto, Segmenting::Pages, Segmenting::Content] {
        for copy in ["a", "b"] {
            let mut o = dedup_opts(&format!("{mode}-{copy}"));
            o.segmenting = mode;
            let s = send_checked(&rx, dir.path(), &data, o).await;
            if copy == "b" {
                assert!(s.ref_bytes * 10 >= data.len() as u64 * 6, "{mode}: {s:?}");
            }
        }
    }
}

/// QEMU RAM page records (`addr | PAGE | CONTINUE`, then the page) of `pages`, page `i` at
/// guest address `(i + 1) × 4 KiB`.
fn page_records(pages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        out.extend((((i as u64 + 1) << 12) | 0x28).to_be_bytes());
        out.extend_from_slice(page);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_sent_again_with_a_few_bytes_changed_goes_as_a_delta() {
    use super::{Progress, Source, send};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(dir.path(), Some(store(&dir.path().join(".store")))).await;
    // Two passes over the same 64 incompressible pages; the second changes 16 bytes of each.
    let first: Vec<Vec<u8>> = pseudo_random(64 * 4096, 31)
        .chunks(4096)
        .map(<[u8]>::to_vec)
        .collect();
    let mut second = first.clone();
    for (i, page) in second.iter_mut().enumerate() {
        page.get_mut(1000..1016)
            .unwrap()
            .copy_from_slice(&(i as u128 + 7).to_be_bytes());
    }
    let mut pass1 = b"device state before the pages".to_vec();
    pass1.extend(page_records(&first));
    let mut pass2 = page_records(&second);
    pass2.extend_from_slice(b"end of the stream");

    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let (progress_tx, mut progress) = tokio::sync::watch::channel(Progress::starting());
    let sending = tokio::spawn(send(
        Source::Stream(ours),
        super::hde_test::dialer(&rx.addr, &Security::Insecure),
        dedup_opts("passes"),
        progress_tx,
    ));
    let (p1, p2) = (pass1.clone(), pass2.clone());
    // The second pass goes only once the receiver acknowledged the first: then it holds the
    // versions the deltas are against.
    theirs = tokio::task::spawn_blocking(move || {
        theirs.write_all(&p1).unwrap();
        theirs
    })
    .await
    .unwrap();
    timeout(
        STEP,
        progress.wait_for(|p| p.bytes_acked >= pass1.len() as u64),
    )
    .await
    .unwrap()
    .unwrap();
    tokio::task::spawn_blocking(move || {
        theirs.write_all(&p2).unwrap();
    })
    .await
    .unwrap();
    let s = timeout(STEP, sending).await.unwrap().unwrap().unwrap();
    let mut whole = pass1.clone();
    whole.extend_from_slice(&pass2);
    assert!(std::fs::read(dir.path().join("passes")).unwrap() == whole);
    assert_eq!(s.blake3, blake3::hash(&whole).to_hex().to_string());
    // The first pass cannot shrink; the second, sent whole again, would double it.
    assert!(
        s.wire_bytes < pass1.len() as u64 + pass2.len() as u64 / 8,
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_chunk_is_compressed_against_the_stream_before_it_over_several_connections() {
    let dir = tempfile::tempdir().unwrap();
    let rx = receiver(dir.path(), Some(store(&dir.path().join(".store")))).await;
    // 8 MiB of near copies of 192 KiB of noise, every copy with its own bytes changed: no
    // segment repeats, a chunk alone barely compresses, and each matches the one before it.
    let base = pseudo_random(192 << 10, 41);
    let data: Vec<u8> = (0..8 * MIB)
        .map(|i| {
            let (copy, at) = (i / base.len(), i % base.len());
            let b = base[at];
            if at % 97 == copy % 97 { b ^ 0x5a } else { b }
        })
        .collect();
    let mut o = dedup_opts("near-copies");
    o.reduce = Reduction::Fixed(CodecChoice::Zstd(3));
    let s = send_checked(&rx, dir.path(), &data, o).await;
    assert_eq!(s.ref_bytes, 0, "{s:?}");
    assert!(s.wire_bytes * 8 < data.len() as u64, "{s:?}");
}
