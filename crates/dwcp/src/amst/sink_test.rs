//! Stream sinks and the prompt stream source, over real sockets on 127.0.0.1 (plaintext and
//! mutual TLS): streams arrive byte-identical, failures reach both ends, names are one-shot.

#![allow(
    clippy::cast_possible_truncation,
    reason = "test data generators truncate on purpose"
)]

use super::test_support::{loopback_tls, pseudo_random};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::{
    ExpectError, MAX_SINKS, Progress, ReceivedFile, Receiver, ReceiverConfig, SendError,
    SendOptions, SinkError, SinkRegistry, Source, StreamCount, TransferSummary, send,
};
use crate::transport::{Acceptor, Dialer, Security, TcpTuning};
use crate::wire::ErrorCode;

/// Deadline for anything a test waits for, so a broken test fails instead of hanging.
const STEP: Duration = Duration::from_secs(30);
const MIB: usize = 1 << 20;

/// A running receiver; stops when dropped.
struct Rx {
    addr: String,
    sinks: SinkRegistry,
    done: mpsc::UnboundedReceiver<ReceivedFile>,
    security: Security,
    task: JoinHandle<()>,
}

impl Drop for Rx {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Rx {
    async fn start(dir: &Path, security: Security, idle: Duration) -> Self {
        Self::start_with(dir, security, idle, false).await
    }

    async fn start_with(dir: &Path, security: Security, idle: Duration, sinks_only: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let acceptor = Acceptor::new(listener, &security, TcpTuning::default()).unwrap();
        let mut cfg = ReceiverConfig::new(dir);
        cfg.idle_timeout = idle;
        cfg.sinks_only = sinks_only;
        let rx = Receiver::new(acceptor, cfg).unwrap();
        let addr = rx.local_addr().unwrap().to_string();
        let sinks = rx.sinks();
        let (done_tx, done) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let _ = rx.run(done_tx).await;
        });
        Self {
            addr,
            sinks,
            done,
            security,
            task,
        }
    }

    fn dialer(&self) -> Dialer {
        Dialer {
            addr: self.addr.clone(),
            security: self.security.clone(),
            tuning: TcpTuning::default(),
        }
    }

    async fn send(&self, source: Source, name: &str) -> Result<TransferSummary, SendError> {
        self.send_with(source, opts(name)).await
    }

    async fn send_with(
        &self,
        source: Source,
        opts: SendOptions,
    ) -> Result<TransferSummary, SendError> {
        let (progress, _) = watch::channel(Progress::starting());
        timeout(STEP, send(source, self.dialer(), opts, progress))
            .await
            .expect("send did not finish in time")
    }
}

fn opts(name: &str) -> SendOptions {
    let mut o = SendOptions::new(name);
    o.streams = StreamCount::Fixed(3);
    o.chunk_size = 64 << 10;
    o
}

/// A sink socket pair: the writing end for the registry, and a thread reading the other end
/// to EOF that returns the BLAKE3 and length of what it read.
fn sink_pair() -> (
    Box<UnixStream>,
    std::thread::JoinHandle<(blake3::Hash, u64)>,
) {
    let (w, mut r) = UnixStream::pair().unwrap();
    r.set_read_timeout(Some(STEP)).unwrap();
    let reader = std::thread::spawn(move || {
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut len = 0u64;
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                return (hasher.finalize(), len);
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
    });
    (Box::new(w), reader)
}

/// A stream source fed from `data` by a thread that then closes its end (EOF).
fn stream_of(data: Vec<u8>) -> (Source, std::thread::JoinHandle<()>) {
    let (mut app, src) = UnixStream::pair().unwrap();
    let feeder = std::thread::spawn(move || {
        app.write_all(&data).unwrap();
    });
    (Source::Stream(src), feeder)
}

fn dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

async fn multi_mib_stream_arrives_byte_identical(security: impl FnOnce(&Path) -> Security) {
    let tmp = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let rx = Rx::start(store.path(), security(tmp.path()), STEP).await;
    let (writer, reader) = sink_pair();
    let mut handle = rx.sinks.expect("vm-1.mig", writer).unwrap();

    let data = pseudo_random(6 * MIB + 3, 1);
    let expected = blake3::hash(&data);
    let (source, feeder) = stream_of(data.clone());
    let summary = rx.send(source, "vm-1.mig").await.unwrap();
    feeder.join().unwrap();

    assert_eq!(summary.bytes, data.len() as u64);
    assert_eq!(summary.blake3, expected.to_hex().to_string());
    let outcome = timeout(STEP, handle.outcome()).await.unwrap();
    assert_eq!(outcome, Ok(expected));
    assert_eq!(handle.delivered(), data.len() as u64);
    // The writer is dropped when the session ends: the far end reads EOF.
    let (read_hash, read_len) = reader.join().unwrap();
    assert_eq!(read_len, data.len() as u64);
    assert_eq!(read_hash, expected);
    assert!(dir_is_empty(store.path()), "a sink session created a file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_receives_a_multi_mib_stream_byte_identical() {
    multi_mib_stream_arrives_byte_identical(|_| Security::Insecure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_receives_a_multi_mib_stream_byte_identical_over_tls() {
    multi_mib_stream_arrives_byte_identical(loopback_tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_closed_mid_stream_fails_the_sender_and_the_handle() {
    let store = tempfile::tempdir().unwrap();
    let rx = Rx::start(store.path(), Security::Insecure, STEP).await;
    let (w, mut r) = UnixStream::pair().unwrap();
    let mut handle = rx.sinks.expect("closing", Box::new(w)).unwrap();
    // The destination reads 1 MiB, then goes away.
    let reader = std::thread::spawn(move || {
        r.set_read_timeout(Some(STEP)).unwrap();
        let mut first = vec![0u8; MIB];
        r.read_exact(&mut first).unwrap();
    });
    // Far more than the window: the stream cannot end before the sink breaks.
    let endless = std::io::repeat(7).take(1 << 40);
    let err = rx
        .send(Source::Reader(Box::new(endless)), "closing")
        .await
        .unwrap_err();
    reader.join().unwrap();
    match &err {
        SendError::Rejected(m) => {
            assert_eq!(m.code, ErrorCode::Storage, "{m:?}");
            assert!(m.message.contains("stopped taking data"), "{m:?}");
        }
        other => panic!("expected a refusal from the receiver, got {other:?}"),
    }
    match timeout(STEP, handle.outcome()).await.unwrap() {
        Err(SinkError::Failed { code, message }) => {
            assert_eq!(code, ErrorCode::Storage);
            assert!(message.contains("stopped taking data"), "{message}");
        }
        other => panic!("expected a failed outcome, got {other:?}"),
    }
    assert!(handle.delivered() >= MIB as u64);
    assert!(dir_is_empty(store.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_name_still_writes_a_file() {
    let store = tempfile::tempdir().unwrap();
    let mut rx = Rx::start(store.path(), Security::Insecure, STEP).await;
    let (writer, _reader) = sink_pair();
    let other = rx.sinks.expect("other", writer).unwrap();
    let data = pseudo_random(300_000, 3);
    let summary = rx
        .send(
            Source::Reader(Box::new(std::io::Cursor::new(data.clone()))),
            "plain.bin",
        )
        .await
        .unwrap();
    assert_eq!(summary.bytes, data.len() as u64);
    assert_eq!(std::fs::read(store.path().join("plain.bin")).unwrap(), data);
    let report = timeout(STEP, rx.done.recv()).await.unwrap().unwrap();
    assert_eq!(report.name, "plain.bin");
    assert_eq!(report.outcome, Ok(blake3::hash(&data).to_hex().to_string()));
    let state = other.status().borrow().clone();
    assert!(!state.claimed && state.outcome.is_none(), "{state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sinks_only_receiver_refuses_an_unregistered_name_and_writes_nothing() {
    let store = tempfile::tempdir().unwrap();
    let rx = Rx::start_with(store.path(), Security::Insecure, STEP, true).await;
    let data = pseudo_random(100_000, 4);
    let err = rx
        .send(
            Source::Reader(Box::new(std::io::Cursor::new(data))),
            "plain.bin",
        )
        .await
        .unwrap_err();
    let text = crate::amst::sender::error_chain(&err);
    assert!(
        text.contains("no stream named plain.bin is expected here"),
        "{text}"
    );
    assert!(dir_is_empty(store.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_session_for_a_consumed_name_is_refused() {
    let store = tempfile::tempdir().unwrap();
    let rx = Rx::start(store.path(), Security::Insecure, STEP).await;
    let (writer, reader) = sink_pair();
    let mut handle = rx.sinks.expect("once", writer).unwrap();
    let data = pseudo_random(100_000, 4);
    let cursor = || Source::Reader(Box::new(std::io::Cursor::new(data.clone())));
    rx.send(cursor(), "once").await.unwrap();
    assert_eq!(
        timeout(STEP, handle.outcome()).await.unwrap(),
        Ok(blake3::hash(&data))
    );
    assert_eq!(reader.join().unwrap().1, data.len() as u64);

    // Registered once, received once.
    match rx.send(cursor(), "once").await {
        Err(SendError::Rejected(m)) => assert_eq!(m.code, ErrorCode::Busy, "{m:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Withdrawn: still refused, never stored as a file.
    drop(handle);
    match rx.send(cursor(), "once").await {
        Err(SendError::Rejected(m)) => assert_eq!(m.code, ErrorCode::NoSession, "{m:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(dir_is_empty(store.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_arriving_after_the_handle_was_dropped_is_refused() {
    let store = tempfile::tempdir().unwrap();
    let rx = Rx::start(store.path(), Security::Insecure, STEP).await;
    let (writer, reader) = sink_pair();
    drop(rx.sinks.expect("late", writer).unwrap());
    // Withdrawing drops the writer: the destination sees EOF.
    assert_eq!(reader.join().unwrap().1, 0);
    let source = Source::Reader(Box::new(std::io::Cursor::new(vec![1u8; 1000])));
    match rx.send(source, "late").await {
        Err(SendError::Rejected(m)) => {
            assert_eq!(m.code, ErrorCode::NoSession, "{m:?}");
            assert!(m.message.contains("no longer expects"), "{m:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(dir_is_empty(store.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_into_a_sink_is_refused_without_consuming_it() {
    let src = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let rx = Rx::start(store.path(), Security::Insecure, STEP).await;
    let (writer, reader) = sink_pair();
    let mut handle = rx.sinks.expect("disk", writer).unwrap();
    let path = src.path().join("disk");
    let data = pseudo_random(50_000, 5);
    std::fs::write(&path, &data).unwrap();

    let mut resume = opts("disk");
    resume.resume = true;
    match rx.send_with(Source::File(path.clone()), resume).await {
        Err(SendError::Rejected(m)) => {
            assert_eq!(m.code, ErrorCode::NoSession, "{m:?}");
            assert!(m.message.contains("cannot be resumed"), "{m:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!handle.status().borrow().claimed);
    rx.send(Source::File(path), "disk").await.unwrap();
    assert_eq!(
        timeout(STEP, handle.outcome()).await.unwrap(),
        Ok(blake3::hash(&data))
    );
    assert_eq!(reader.join().unwrap().1, data.len() as u64);
    assert!(dir_is_empty(store.path()));
}

async fn a_small_write_arrives_while_the_source_stays_open(
    security: impl FnOnce(&Path) -> Security,
) {
    let tmp = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let rx = Rx::start(store.path(), security(tmp.path()), STEP).await;
    let (w, mut far) = UnixStream::pair().unwrap();
    let mut handle = rx.sinks.expect("nbd", Box::new(w)).unwrap();
    let (mut app, src) = UnixStream::pair().unwrap();
    let dialer = rx.dialer();
    let sending = tokio::spawn(async move {
        let (progress, _) = watch::channel(Progress::starting());
        send(Source::Stream(src), dialer, opts("nbd"), progress).await
    });

    app.write_all(b"0123456789").unwrap();
    // `app` stays open: the ten bytes must arrive without more data or EOF behind them.
    let got = tokio::task::spawn_blocking(move || {
        far.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = [0u8; 10];
        far.read_exact(&mut got).unwrap();
        (got, far)
    })
    .await
    .unwrap();
    assert_eq!(&got.0, b"0123456789");
    let (_, mut far) = got;

    drop(app);
    let summary = timeout(STEP, sending).await.unwrap().unwrap().unwrap();
    assert_eq!(summary.bytes, 10);
    assert_eq!(
        timeout(STEP, handle.outcome()).await.unwrap(),
        Ok(blake3::hash(b"0123456789"))
    );
    let mut rest = Vec::new();
    far.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_source_delivers_a_small_write_while_the_socket_stays_open() {
    a_small_write_arrives_while_the_source_stays_open(|_| Security::Insecure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_source_delivers_a_small_write_while_the_socket_stays_open_over_tls() {
    a_small_write_arrives_while_the_source_stays_open(loopback_tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_dropped_midway_reports_err_on_the_handle() {
    let store = tempfile::tempdir().unwrap();
    // A short idle timeout: the receiver gives up on the session soon after its connections go.
    let rx = Rx::start(store.path(), Security::Insecure, Duration::from_secs(1)).await;
    let (writer, reader) = sink_pair();
    let mut handle = rx.sinks.expect("dropped", writer).unwrap();
    let (mut app, src) = UnixStream::pair().unwrap();
    let dialer = rx.dialer();
    let sending = tokio::spawn(async move {
        let (progress, _) = watch::channel(Progress::starting());
        send(Source::Stream(src), dialer, opts("dropped"), progress).await
    });
    app.write_all(&pseudo_random(100_000, 6)).unwrap();
    let mut status = handle.status();
    timeout(STEP, status.wait_for(|s| s.delivered == 100_000))
        .await
        .unwrap()
        .unwrap();

    // The sending side disappears mid-stream, without an End.
    sending.abort();
    assert!(sending.await.unwrap_err().is_cancelled());
    match timeout(STEP, handle.outcome()).await.unwrap() {
        Err(SinkError::Failed { code, .. }) => assert_eq!(code, ErrorCode::Aborted),
        other => panic!("expected a failed outcome, got {other:?}"),
    }
    // The destination got what was delivered, then EOF.
    assert_eq!(reader.join().unwrap().1, 100_000);
    // Ends the producer's read of the source.
    drop(app);
    assert!(dir_is_empty(store.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_end_was_not_confirmed_fails_instead_of_ending() {
    let store = tempfile::tempdir().unwrap();
    let rx = Rx::start(store.path(), Security::Insecure, Duration::from_secs(5)).await;
    for confirm in [false, true] {
        let name = format!("confirmed-{confirm}");
        let (writer, reader) = sink_pair();
        let mut handle = rx.sinks.expect(&name, writer).unwrap();
        let data = pseudo_random(300_000, 7);
        let (source, feeder) = stream_of(data.clone());
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut o = opts(&name);
        o.end_confirmed = Some(std::sync::Arc::clone(&done));
        if confirm {
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let sent = rx.send_with(source, o).await;
        feeder.join().unwrap();
        let outcome = timeout(STEP, handle.outcome()).await.unwrap();
        let (_, len) = reader.join().unwrap();
        if confirm {
            sent.unwrap();
            outcome.unwrap();
            assert_eq!(len, data.len() as u64);
        } else {
            // The writer closed its end unconfirmed: a cut, on both ends. The receiver hears
            // it from the sender (not from its connections going quiet).
            let err = sent.unwrap_err();
            assert!(format!("{err:?}").contains("Cut"), "{err:?}");
            match outcome {
                Err(SinkError::Failed { code, message }) => {
                    assert_eq!(code, ErrorCode::Aborted);
                    assert!(message.contains("the stream was cut"), "{message}");
                }
                other => panic!("expected the sender's abort, got {other:?}"),
            }
        }
    }
}

#[test]
fn registrations_are_checked_and_bounded() {
    let reg = SinkRegistry::default();
    let sink = || -> Box<dyn Write + Send> { Box::new(std::io::sink()) };
    assert!(matches!(
        reg.expect("../x", sink()),
        Err(ExpectError::BadName(_))
    ));
    let first = reg.expect("a", sink()).unwrap();
    assert_eq!(first.name(), "a");
    assert!(matches!(
        reg.expect("a", sink()),
        Err(ExpectError::AlreadyRegistered(_))
    ));
    let mut held = vec![first];
    for i in 1..MAX_SINKS {
        held.push(reg.expect(&format!("s{i}"), sink()).unwrap());
    }
    assert!(matches!(
        reg.expect("one-more", sink()),
        Err(ExpectError::TooMany)
    ));
    // Dropping a handle frees its place, and the name may be registered again.
    held.truncate(1);
    held.clear();
    let again = reg.expect("a", sink()).unwrap();
    assert!(again.try_outcome().is_none());
}

#[test]
fn an_unclaimed_sink_dropped_by_its_session_reports_unfinished() {
    let reg = SinkRegistry::default();
    let handle = reg.expect("x", Box::new(std::io::sink())).unwrap();
    match reg.claim("x", false) {
        super::sink::Claim::Sink(out) => drop(out),
        _ => panic!("expected the sink"),
    }
    assert_eq!(handle.try_outcome(), Some(Err(SinkError::Unfinished)));
    assert!(handle.status().borrow().claimed);
    assert!(matches!(
        reg.claim("x", false),
        super::sink::Claim::Refused(_)
    ));
    assert!(matches!(reg.claim("y", false), super::sink::Claim::File));
}
