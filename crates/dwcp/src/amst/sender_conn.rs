//! One connection of a sending session: it takes frames from the shared queue and writes them,
//! and reads the receiver's acknowledgements, until it is told to close or the link breaks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Mutex, Notify, Semaphore, mpsc, watch};

use super::cutter::Cutter;
use super::dedup::literal_payload;
use super::hedge;
use super::inflight::{ConnId, InFlight, Outgoing};
use super::reduce::ReduceShared;
use super::segments;
use crate::transport::{BoxStream, Connection, set_max_pacing_rate, tcp_stats};
use crate::wire::{
    ErrorMessage, Frame, FrameKind, Hello, HelloAck, HelloMode, PayloadKind, SessionId, WireError,
    read_frame, write_frame,
};

/// How long the receiver may take to answer a `Hello`.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Why a `Hello` failed when no answer came within [`HELLO_TIMEOUT`].
const NO_ANSWER: &str = "receiver did not answer Hello in time";
/// Bytes a paced connection writes per draw from the session's token bucket.
pub(crate) const PACED_PIECE: u32 = 64 << 10;
/// How long a closing connection waits for its last frames to be acknowledged.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a connection tells the session about the stream as a whole.
#[derive(Debug)]
pub(crate) enum SessionEvent {
    /// The receiver verified and stored the stream; its BLAKE3.
    Done([u8; 32]),
    /// The receiver refused or aborted the session.
    Rejected(ErrorMessage),
    /// The receiver broke the protocol.
    Protocol(String),
}

/// State every connection of a sending session shares.
pub(crate) struct Shared {
    pub(crate) session: SessionId,
    pub(crate) inflight: InFlight,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) queue_tx: mpsc::UnboundedSender<Outgoing>,
    pub(crate) queue_rx: Mutex<mpsc::UnboundedReceiver<Outgoing>>,
    pub(crate) acked: Arc<Notify>,
    pub(crate) events: mpsc::UnboundedSender<SessionEvent>,
    /// Latest smoothed RTT seen on any connection, in microseconds (0 = unknown).
    pub(crate) srtt_us: AtomicU64,
    /// Lowest RTT any connection has measured, in microseconds (`u64::MAX` = unknown).
    pub(crate) min_rtt_us: AtomicU64,
    /// Lowest smoothed RTT among the connections that delivered bytes since the pacer last
    /// took it, in microseconds (`u64::MAX` = none did): a queue at the bottleneck delays
    /// every connection through it, where one connection's RTT may be its own (a handshake
    /// slowed by a busy host, a delayed acknowledgement, an idle connection's old figure).
    pub(crate) queue_rtt_us: AtomicU64,
    /// Bytes acknowledged at the TCP level, summed over all connections: a smooth measure of
    /// delivery for the stream tuner, unlike the stream offset, which jumps when a gap fills.
    pub(crate) tcp_acked: AtomicU64,
    /// Bytes delivered at the TCP level (segments acknowledged cumulatively or selectively,
    /// times the segment size), summed over all connections: what the pacer measures the
    /// link's rate by, as it does not wait for a loss's retransmission.
    pub(crate) tcp_delivered: AtomicU64,
    /// Each connection's kernel pacing cap, taken as it starts writing a frame and re-applied
    /// when it changed (see [`super::conn_pacing`]).
    pub(crate) pacing: super::conn_pacing::ConnPacing,
    /// The acknowledged offset, for the producer (which decides what the receiver holds).
    pub(crate) acked_hint: Arc<AtomicU64>,
    /// Payload bytes of the data frames acknowledged or reported held, for the producer
    /// ([`super::SendOptions::wire_limit`]).
    pub(crate) wire_acked_hint: Arc<AtomicU64>,
    /// How the producer cuts chunks into segments, when deduplication was negotiated.
    pub(crate) cutter: Option<Cutter>,
    /// Frames sent again as literals after a `Need`.
    pub(crate) needs: AtomicU64,
    /// End of the furthest data frame a connection has written: the stream up to it has left
    /// the work queue.
    pub(crate) written_end: AtomicU64,
    /// The pacer's rate, which the connections draw from piece by piece as they write.
    pub(crate) bucket: std::sync::Mutex<super::pacer::TokenBucket>,
    /// Told when a connection wrote the session's abort (an `Error` frame to the receiver).
    pub(crate) abort_written: Notify,
    /// Connections running now.
    pub(crate) live: AtomicU64,
    /// Connections that have segments out and have heard nothing for a round trip and more
    /// (see [`super::hedge`]): when most are, the path stalls, and sending again on the
    /// others would not help.
    pub(crate) silent: AtomicU64,
    /// Bytes of frames sent again because their connection waited on a retransmission timer,
    /// or as copies of the tail (see [`super::hedge`]).
    pub(crate) hedged: AtomicU64,
    /// Payload bytes of a tail worth copying ([`super::hedge::tail_budget`]), kept current by
    /// the session.
    pub(crate) tail_budget: AtomicU64,
    /// Whether the source is interactive (a socket to another process, see
    /// [`super::Source::Stream`]), whose end the other side waits on.
    pub(crate) interactive: bool,
    /// Whether the tail is copied: for an interactive stream, whose end is waited on (a
    /// migration's guest, stopped, waits for its last pages); a file's end is not worth the
    /// bytes. Cleared once it was copied.
    pub(crate) copy_tail: AtomicBool,
    /// The producer's figures: how far it framed the stream.
    pub(crate) produced: Arc<ReduceShared>,
    /// Where the stream starts (non-zero when resuming).
    pub(crate) start: u64,
    /// Whether the producer read the source to its end.
    pub(crate) source_done: AtomicBool,
}

/// A round trip kept in microseconds (`srtt_us`, `min_rtt_us`), once one was measured: 0 and
/// `u64::MAX` stand for none yet.
pub(crate) fn measured_rtt(us: u64) -> Option<Duration> {
    (us > 0 && us < u64::MAX).then(|| Duration::from_micros(us))
}

impl Shared {
    /// Whether every frame the producer made has been written to a connection: none waits in
    /// the work queue.
    pub(crate) fn all_written(&self) -> bool {
        self.start
            .saturating_add(self.produced.stream_bytes.load(Ordering::Relaxed))
            <= self.written_end.load(Ordering::Relaxed)
    }

    /// Whether the stream is in its tail: the source is read to its end and every frame made
    /// of it has been written to a connection (the link has room for copies).
    pub(crate) fn in_tail(&self) -> bool {
        self.source_done.load(Ordering::Relaxed) && self.all_written()
    }

    /// Whether there are other connections and most of them still hear from the receiver:
    /// otherwise the path itself stalls, and copies on them would wait as long.
    pub(crate) fn others_hear_back(&self) -> bool {
        let live = self.live.load(Ordering::Relaxed);
        live > 1 && self.silent.load(Ordering::Relaxed) * 2 <= live
    }

    /// Takes every unacknowledged frame written on `conn` and queues it again for the others
    /// (the receiver keeps whichever copy arrives first); returns how many frames and payload
    /// bytes.
    pub(crate) fn requeue_conn(&self, conn: ConnId) -> (usize, u64) {
        let frames = self.inflight.take_conn(conn);
        self.send_again(frames.into_iter().map(|f| (conn, f)))
    }

    /// Applies what a receiver's answer (`Ack`, `Held`) released: returns the window `permits`,
    /// wakes those waiting on acknowledgements, and copies the tail if what is left of it now
    /// fits its budget.
    pub(crate) fn release(&self, permits: u64) {
        self.wire_acked_hint
            .fetch_max(self.inflight.acked_wire(), Ordering::Relaxed);
        self.acked.notify_waiters();
        if permits > 0 {
            self.permits
                .add_permits(usize::try_from(permits).unwrap_or(usize::MAX));
            self.copy_tail();
        }
    }

    /// Once the `End` frame is written and what is unacknowledged fits the tail's budget,
    /// sends all of it again on other connections, once per session, if the session copies
    /// its tail (see [`super::hedge`]).
    pub(crate) fn copy_tail(&self) {
        if !self.copy_tail.load(Ordering::Relaxed) {
            return;
        }
        let budget = self.tail_budget.load(Ordering::Relaxed);
        let Some(tail) = self.inflight.take_tail(budget) else {
            return;
        };
        // Copies of the End put it back in the record: not copied twice.
        self.copy_tail.store(false, Ordering::Relaxed);
        let (frames, bytes) = self.send_again(tail);
        self.hedged.fetch_add(bytes, Ordering::Relaxed);
        tracing::debug!(
            frames,
            bytes,
            "the stream's tail goes again on other connections"
        );
    }

    /// Sends the data frame at `offset`, just written on `conn`, again on another connection
    /// at once when it went out nearly alone: on an interactive stream, with at most
    /// [`hedge::LONE_COPY`] bytes outstanding (see [`super::hedge`]). Not a copy of a copy.
    pub(crate) fn copy_lone(&self, conn: ConnId, offset: u64) {
        if !self.interactive || self.live.load(Ordering::Relaxed) < 2 {
            return;
        }
        let Some(out) = self.inflight.take_lone(offset, hedge::LONE_COPY) else {
            return;
        };
        let (_, bytes) = self.send_again([(conn, out)]);
        self.hedged.fetch_add(bytes, Ordering::Relaxed);
        tracing::trace!(
            offset,
            bytes,
            "a lone frame goes again on another connection"
        );
    }

    /// Queues `frames` again, each to be left by the connection it was on; returns how many
    /// frames and payload bytes.
    fn send_again(&self, frames: impl IntoIterator<Item = (ConnId, Outgoing)>) -> (usize, u64) {
        let (mut count, mut bytes) = (0, 0);
        for (conn, mut frame) in frames {
            count += 1;
            bytes += u64::from(frame.frame.header.length);
            frame.avoid = Some(conn);
            // The queue lives as long as `self`.
            let _ = self.queue_tx.send(frame);
        }
        (count, bytes)
    }
}

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum ConnExit {
    /// Closed on request after its frames were acknowledged, or the session finished.
    Closed,
    /// The link broke or could not be set up; the reason for the log.
    Failed(String),
}

/// Sends `Hello` and reads the answer.
///
/// # Errors
/// A description of what went wrong; a receiver's `Error` frame is returned as
/// [`HelloFailure::Rejected`].
pub(crate) async fn hello(
    stream: &mut BoxStream,
    session: SessionId,
    hello: &Hello,
) -> Result<HelloAck, HelloFailure> {
    let exchange = async {
        send_hello(stream, session, hello).await?;
        read_hello_answer(stream).await
    };
    tokio::time::timeout(HELLO_TIMEOUT, exchange)
        .await
        .map_err(|_| HelloFailure::Link(NO_ANSWER.into()))?
}

/// Writes `Hello` (the answer is read by [`read_hello_answer`]).
///
/// # Errors
/// [`HelloFailure::Link`] when it cannot be written.
pub(crate) async fn send_hello(
    stream: &mut BoxStream,
    session: SessionId,
    hello: &Hello,
) -> Result<(), HelloFailure> {
    let frame = Frame::control(FrameKind::Hello, session, 0, hello.encode())
        .map_err(|e| HelloFailure::Link(e.to_string()))?;
    let written = async {
        write_frame(stream, &frame).await?;
        stream.flush().await.map_err(WireError::Io)
    };
    written.await.map_err(link_failure)
}

/// A `Hello` exchange's I/O failure.
fn link_failure(e: WireError) -> HelloFailure {
    match e {
        // With TLS 1.3 a refused client certificate shows on the first read.
        WireError::Io(io) => HelloFailure::Link(crate::tls::describe_handshake_error(&io)),
        other => HelloFailure::Link(other.to_string()),
    }
}

/// Reads the receiver's answer to a `Hello`.
///
/// # Errors
/// As [`hello`].
pub(crate) async fn read_hello_answer<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
) -> Result<HelloAck, HelloFailure> {
    let answer = read_frame(rd)
        .await
        .map_err(link_failure)?
        .ok_or_else(|| HelloFailure::Link("receiver closed the connection".into()))?;
    match answer.header.kind {
        FrameKind::HelloAck => {
            HelloAck::decode(&answer.payload).map_err(|e| HelloFailure::Protocol(e.to_string()))
        }
        FrameKind::Error => Err(HelloFailure::Rejected(
            ErrorMessage::decode(&answer.payload)
                .map_err(|e| HelloFailure::Protocol(e.to_string()))?,
        )),
        other => Err(HelloFailure::Protocol(format!(
            "expected HelloAck, got {other:?}"
        ))),
    }
}

/// Why a `Hello` exchange failed.
#[derive(Debug)]
pub(crate) enum HelloFailure {
    /// The connection failed; worth another try.
    Link(String),
    /// The receiver refused.
    Rejected(ErrorMessage),
    /// The receiver answered nonsense.
    Protocol(String),
}

/// Whether the receiver answered a connection's `Hello` before the connection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// It did (the connection that opened the session).
    Answered,
    /// Not yet: a connection joining the session writes frames right behind its `Hello` and
    /// reads the answer first of all. Over `intercontinental` a joining connection waited
    /// 150 ms for its answer before its first frame, while the one that opened the session
    /// was already sending; a receiver reads the frames after a `Hello` it admits, and one it
    /// refuses closes the connection, whose frames then go on the others.
    Pending,
}

/// Why a joining connection was refused, for the log; the session hears of a refusal that
/// another try would not cure.
pub(crate) fn join_refused(shared: &Shared, failure: HelloFailure) -> String {
    match failure {
        HelloFailure::Link(reason) => reason,
        // The receiver still counts connections it has not yet seen close; a full session is
        // worth another try later, not a failure.
        HelloFailure::Rejected(m) if m.code == crate::wire::ErrorCode::Busy => m.message,
        HelloFailure::Rejected(m) => {
            let reason = m.message.clone();
            let _ = shared.events.send(SessionEvent::Rejected(m));
            reason
        }
        HelloFailure::Protocol(p) => {
            let _ = shared.events.send(SessionEvent::Protocol(p.clone()));
            p
        }
    }
}

/// One connection's task.
pub(crate) struct SenderConn {
    pub(crate) id: ConnId,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stop: watch::Receiver<bool>,
}

impl SenderConn {
    /// Runs the connection until it closes or fails. `conn` has sent its `Hello`, answered or
    /// not (`admission`).
    pub(crate) async fn run(mut self, conn: Connection, admission: Admission) -> ConnExit {
        let fd = conn.fd;
        let (mut rd, mut wr) = tokio::io::split(conn.stream);
        let shared = Arc::clone(&self.shared);
        let held = AtomicBool::new(false);
        let silent = AtomicBool::new(false);
        let id = self.id;
        shared.live.fetch_add(1, Ordering::Relaxed);
        let result = tokio::select! {
            r = self.write_loop(&mut wr, fd, &held) => r,
            r = read_loop(&shared, &mut rd, admission) => r,
            r = sample_tcp(&shared, fd, id, (&held, &silent)) => r,
        };
        shared.live.fetch_sub(1, Ordering::Relaxed);
        if silent.load(Ordering::Relaxed) {
            shared.silent.fetch_sub(1, Ordering::Relaxed);
        }
        match result {
            Ok(()) => ConnExit::Closed,
            Err(reason) => ConnExit::Failed(reason),
        }
    }

    async fn write_loop(
        &mut self,
        wr: &mut WriteHalf<BoxStream>,
        fd: std::os::fd::RawFd,
        held: &AtomicBool,
    ) -> Result<(), String> {
        let mut paced = 0u64;
        loop {
            if *self.stop.borrow() {
                return self.drain(wr).await;
            }
            if held.load(Ordering::Relaxed) {
                // Its frames went to the others; it takes new ones once it hears back.
                tokio::time::sleep(SAMPLE_EVERY).await;
                continue;
            }
            let frame = tokio::select! {
                biased;
                changed = self.stop.changed() => {
                    if changed.is_err() {
                        // The session owner is gone: nothing more will be asked of us.
                        return Ok(());
                    }
                    continue;
                }
                f = async { self.shared.queue_rx.lock().await.recv().await } => f,
            };
            let Some(mut out) = frame else {
                // The queue closed: the session is over.
                return Ok(());
            };
            let avoid = out.avoid.take();
            // A copy, or a frame sent again: not copied once more as it goes (see `copy_lone`).
            let again = avoid.is_some();
            if avoid == Some(self.id) && self.shared.live.load(Ordering::Relaxed) > 1 {
                // A copy of a frame this connection carries: another takes it if one is free
                // within a sampling period; otherwise it comes back here and goes after all.
                let _ = self.shared.queue_tx.send(out);
                tokio::time::sleep(SAMPLE_EVERY).await;
                continue;
            }
            if !self.shared.inflight.written(&out, self.id) {
                // Already acknowledged (a re-queued frame the receiver had after all).
                let permits = self.shared.inflight.acknowledged_before_resent(&out);
                self.shared.release(permits);
                continue;
            }
            let (_writing, pacing) = self.shared.pacing.writing();
            if pacing != paced {
                set_max_pacing_rate(fd, if pacing == 0 { u64::MAX } else { pacing });
                paced = pacing;
            }
            if let Err(err) = self.write_paced(wr, &out.frame).await {
                return Err(err.to_string());
            }
            if out.stream_len > 0 {
                let end = out.frame.header.offset.saturating_add(out.stream_len);
                self.shared.written_end.fetch_max(end, Ordering::Relaxed);
            }
            wr.flush().await.map_err(|e| e.to_string())?;
            match out.frame.header.kind {
                FrameKind::Error => {
                    // Nothing follows an abort. The write side ends (FIN after the `Error`),
                    // and the read side reads on until the receiver closes: a socket closed
                    // with unread answers is reset, and a reset can drop the `Error` before
                    // the receiver reads it.
                    let _ = wr.shutdown().await;
                    self.shared.abort_written.notify_one();
                    return std::future::pending().await;
                }
                FrameKind::End => self.shared.copy_tail(),
                FrameKind::Data if !again => {
                    self.shared.copy_lone(self.id, out.frame.header.offset);
                }
                _ => {}
            }
        }
    }

    /// Writes a frame; while the session is paced, in pieces of [`PACED_PIECE`] bytes, each
    /// after drawing its bytes from the session's token bucket. A whole frame can hold more
    /// than the link carries in a round trip, so drawing for it at once would let every
    /// connection push one out together.
    async fn write_paced(
        &self,
        wr: &mut WriteHalf<BoxStream>,
        frame: &Frame,
    ) -> Result<(), crate::wire::WireError> {
        let take = |bytes: usize| {
            self.shared
                .bucket
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(Instant::now(), bytes as u64)
        };
        if !self
            .shared
            .bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_capped()
        {
            return write_frame(wr, frame).await;
        }
        let header = frame.header.encode();
        let mut buf = bytes::Buf::chain(&header[..], &frame.payload[..]);
        while bytes::Buf::has_remaining(&buf) {
            let piece = bytes::Buf::remaining(&buf).min(PACED_PIECE as usize);
            let wait = take(piece);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let mut part = bytes::Buf::take(&mut buf, piece);
            wr.write_all_buf(&mut part).await?;
        }
        Ok(())
    }

    /// Tells the receiver this connection is done and waits for its frames to be acknowledged.
    async fn drain(&mut self, wr: &mut WriteHalf<BoxStream>) -> Result<(), String> {
        let close = Frame::control(
            FrameKind::Close,
            self.shared.session,
            0,
            bytes::Bytes::new(),
        )
        .map_err(|e| e.to_string())?;
        write_frame(wr, &close).await.map_err(|e| e.to_string())?;
        wr.flush().await.map_err(|e| e.to_string())?;
        let waited = tokio::time::timeout(DRAIN_TIMEOUT, async {
            loop {
                let notified = self.shared.acked.notified();
                if self.shared.inflight.pending_on(self.id) == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await;
        waited.map_err(|_| "closing connection's frames were never acknowledged".to_owned())
    }
}

/// How often a connection reads its kernel statistics.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Adds this connection's TCP-acknowledged and delivered bytes to the session totals and
/// records its RTT (smoothed, and the session's lowest), every [`SAMPLE_EVERY`], for as long
/// as the connection runs (it never returns on its own; it lives inside the connection's
/// task, so its descriptor cannot outlive the socket). Holds the connection (`held`) while it
/// waits on a retransmission timer, its frames sent again on the others ([`super::hedge`]).
async fn sample_tcp(
    shared: &Shared,
    fd: std::os::fd::RawFd,
    id: ConnId,
    (held, silent): (&AtomicBool, &AtomicBool),
) -> Result<(), String> {
    let mut last = None::<(u64, u32)>;
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let Some(stats) = tcp_stats(fd) else {
            continue;
        };
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // The first sample is the baseline: the handshake's bytes are not stream delivery.
        if let Some((acked, delivered)) = last {
            let delta = stats.bytes_acked.saturating_sub(acked);
            shared.tcp_acked.fetch_add(delta, Ordering::Relaxed);
            let segments = stats.delivered.wrapping_sub(delivered);
            let bytes = u64::from(segments) * u64::from(stats.mss);
            shared.tcp_delivered.fetch_add(bytes, Ordering::Relaxed);
            if let Some(rtt) = stats.rtt.filter(|_| segments > 0) {
                shared
                    .queue_rtt_us
                    .fetch_min(micros(rtt), Ordering::Relaxed);
            }
        }
        last = Some((stats.bytes_acked, stats.delivered));
        if let Some(rtt) = stats.rtt {
            shared.srtt_us.store(micros(rtt), Ordering::Relaxed);
        }
        if let Some(min) = stats.min_rtt {
            shared.min_rtt_us.fetch_min(micros(min), Ordering::Relaxed);
        }
        let quiet = !hedge::recovered(&stats);
        if quiet != silent.swap(quiet, Ordering::Relaxed) {
            if quiet {
                shared.silent.fetch_add(1, Ordering::Relaxed);
            } else {
                shared.silent.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if held.load(Ordering::Relaxed) {
            if !quiet {
                held.store(false, Ordering::Relaxed);
            }
        } else if quiet
            && shared.in_tail()
            && shared.others_hear_back()
            && hedge::stuck(&stats, shared.inflight.oldest_on(id), Instant::now())
        {
            let (frames, bytes) = shared.requeue_conn(id);
            if frames > 0 {
                held.store(true, Ordering::Relaxed);
                shared.hedged.fetch_add(bytes, Ordering::Relaxed);
                tracing::debug!(conn = id, frames, bytes, since_ack = ?stats.since_ack, "connection waits on a retransmission timer; its frames go on the others");
            }
        }
    }
}

async fn read_loop(
    shared: &Shared,
    rd: &mut ReadHalf<BoxStream>,
    admission: Admission,
) -> Result<(), String> {
    if admission == Admission::Pending {
        match tokio::time::timeout(HELLO_TIMEOUT, read_hello_answer(rd)).await {
            Err(_) => return Err(NO_ANSWER.into()),
            Ok(Err(failure)) => return Err(join_refused(shared, failure)),
            Ok(Ok(_)) => {}
        }
    }
    loop {
        let frame = match read_frame(rd).await {
            Ok(Some(f)) => f,
            Ok(None) => return Err("receiver closed the connection".into()),
            Err(WireError::Io(e)) => return Err(format!("connection failed: {e}")),
            Err(e) => {
                let _ = shared.events.send(SessionEvent::Protocol(e.to_string()));
                return Err(e.to_string());
            }
        };
        if frame.header.session != shared.session {
            let msg = format!("frame for session {} on this session", frame.header.session);
            let _ = shared.events.send(SessionEvent::Protocol(msg.clone()));
            return Err(msg);
        }
        match frame.header.kind {
            FrameKind::Ack => {
                shared
                    .acked_hint
                    .fetch_max(frame.header.offset, Ordering::Relaxed);
                // Even when frames reported held released nothing now: the producer may wait
                // for the acknowledged offset itself (see `Producer::span`).
                shared.release(shared.inflight.ack(frame.header.offset));
            }
            FrameKind::Held => shared.release(shared.inflight.held(frame.header.offset)),
            FrameKind::Need => {
                if let Err(msg) = on_need(shared, frame.header.offset, &frame.payload) {
                    let _ = shared.events.send(SessionEvent::Protocol(msg.clone()));
                    return Err(msg);
                }
            }
            FrameKind::Done => {
                let mut hash = [0u8; 32];
                if frame.payload.len() != 32 {
                    let msg = "Done frame without a 32-byte BLAKE3".to_owned();
                    let _ = shared.events.send(SessionEvent::Protocol(msg.clone()));
                    return Err(msg);
                }
                hash.copy_from_slice(&frame.payload);
                shared.inflight.ack(frame.header.offset);
                // The session owner may already be gone if another connection got here first.
                let _ = shared.events.send(SessionEvent::Done(hash));
                return Ok(());
            }
            FrameKind::Error => {
                let msg = ErrorMessage::decode(&frame.payload).map_err(|e| e.to_string())?;
                let text = msg.message.clone();
                let _ = shared.events.send(SessionEvent::Rejected(msg));
                return Err(text);
            }
            other => {
                let msg = format!("unexpected {other:?} frame from the receiver");
                let _ = shared.events.send(SessionEvent::Protocol(msg.clone()));
                return Err(msg);
            }
        }
    }
}

/// Sends the frame at `offset` again, the content the receiver lacked as literals: what the
/// `Need` names (`payload`, see [`segments::parse_need`]), or every segment when it names
/// nothing, whether or not the receiver had reported holding it. A frame no longer in flight
/// (acknowledged, or already queued again) needs nothing.
fn on_need(shared: &Shared, offset: u64, payload: &[u8]) -> Result<(), String> {
    let Some(cutter) = shared.cutter else {
        return Err("Need frame on a session without deduplication".into());
    };
    let missing = segments::parse_need(payload).map_err(|e| e.to_string())?;
    let Some(out) = shared.inflight.take_offset(offset) else {
        tracing::debug!(offset, "Need for a frame no longer in flight");
        return Ok(());
    };
    let again = match &out.original {
        Some(chunk) => {
            let h = out.frame.header;
            let named = if missing.is_empty() {
                None
            } else {
                segments::with_literals(&out.frame.payload, chunk, &missing)
                    .inspect_err(|e| tracing::debug!(offset, error = %e, "could not send only the missing content; sending every segment"))
                    .ok()
            };
            // Still with references when only what was missing went as literals: the receiver
            // may lack another by the time it arrives, and asks again.
            let (payload, original) = match named {
                Some(payload) => (payload, Some(chunk.clone())),
                None => (literal_payload(cutter, chunk, h.offset), None),
            };
            let frame = Frame::new(
                FrameKind::Data,
                PayloadKind::Segments,
                shared.session,
                h.seq,
                h.offset,
                payload,
            )
            .map_err(|e| e.to_string())?;
            // The literals cross instead of the references: the stream's wire bytes count
            // them, as its acknowledged wire bytes will.
            let grown = frame.header.length.saturating_sub(h.length);
            shared
                .produced
                .wire_bytes
                .fetch_add(u64::from(grown), Ordering::Relaxed);
            Outgoing {
                frame,
                stream_len: out.stream_len,
                original,
                avoid: None,
                prepaid: out.prepaid,
            }
        }
        // The receiver asked for a frame without references: send it as it was.
        None => out,
    };
    shared.needs.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        offset,
        named = missing.len(),
        bytes = again.frame.header.length,
        "receiver lacked referenced content; sending it as literals"
    );
    // The queue lives as long as `shared`.
    let _ = shared.queue_tx.send(again);
    Ok(())
}

/// Builds the `Hello` for connection `index`.
pub(crate) fn hello_for(
    mode: HelloMode,
    index: u16,
    total_len: Option<u64>,
    chunk_size: u32,
    name: &str,
    features: u32,
) -> Hello {
    Hello {
        mode,
        conn_index: index,
        total_len,
        chunk_size,
        name: name.to_owned(),
        features,
    }
}
