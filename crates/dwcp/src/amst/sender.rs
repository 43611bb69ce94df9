//! The sending side of a session: opens the first connection, starts the producer, keeps the
//! right number of connections alive (re-dialing dropped ones), and reports progress until the
//! receiver confirms the stream.

mod pacing;
mod predial;
mod stall;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::MAX_STREAMS;
use super::dedup::Dedup;
use super::inflight::{Charge, ConnId, InFlight, Outgoing};
use super::pacer::{Pacer, TokenBucket, network_limited};
use super::progress::{Phase, Progress, TransferSummary};
use super::rate::RateMeter;
pub use super::rate::error_chain;
use super::reduce::Reduction;
use super::reduce_ctl::SessionReduce;
use super::send_opts::{SendError, SendOptions, StreamCount};
use super::sender_conn::{
    Admission, ConnExit, HelloFailure, SenderConn, SessionEvent, Shared, hello, hello_for,
    join_refused, measured_rtt, send_hello,
};
pub use super::source::Source;
use super::source::{Opened, ProduceError, Produced, Producer, open_source};
use super::tuner::StreamTuner;
use crate::bufpool::BufPool;
use crate::hde::ContentIndex;
use crate::pba::initial_codec;
use crate::transport::{Dialer, Security, tcp_stats};
use crate::wire::{
    ErrorCode, ErrorMessage, FEATURE_DEDUP, FEATURE_HDE, FEATURE_HELD, FEATURE_PREFIX,
    FEATURE_RECIPES, FEATURE_SHORT_REFS, Frame, FrameKind, HelloAck, HelloMode, MAX_PAYLOAD,
    SessionId, read_frame,
};
use stall::Blocked;

fn rejected_or_lost(f: HelloFailure) -> SendError {
    match f {
        HelloFailure::Rejected(m) => SendError::Rejected(m),
        HelloFailure::Protocol(p) => SendError::Protocol(p),
        HelloFailure::Link(reason) => SendError::Opening(reason),
    }
}

/// Sends `source` to the receiver behind `dialer`, publishing progress on `progress`.
///
/// # Errors
/// A [`SendError`] saying what failed; the receiver keeps what it got as `NAME.partial`.
pub async fn send(
    source: Source,
    dialer: Dialer,
    opts: SendOptions,
    progress: watch::Sender<Progress>,
) -> Result<TransferSummary, SendError> {
    let started = Instant::now();
    let mut opts = opts;
    if opts.chunk_size > MAX_PAYLOAD {
        return Err(SendError::InvalidOption(format!(
            "chunk size must be 1..={MAX_PAYLOAD} bytes"
        )));
    }
    if opts.window < u64::from(opts.chunk_size) {
        return Err(SendError::InvalidOption(
            "window must hold at least one chunk".into(),
        ));
    }
    let Opened {
        reader,
        total_len,
        mut unblock,
    } = open_source(source, opts.resume)?;
    let session = SessionId::random();
    let mode = if opts.resume {
        HelloMode::Resume
    } else {
        HelloMode::Open
    };
    let mut features = match (opts.reduce, opts.dedup) {
        (Reduction::Off, _) => 0,
        (_, false) => FEATURE_HDE,
        (_, true) => {
            FEATURE_HDE | FEATURE_DEDUP | FEATURE_PREFIX | FEATURE_SHORT_REFS | FEATURE_RECIPES
        }
    };
    if opts.window_limit.is_some() || opts.wire_limit.is_some() {
        // A window its owner narrows counts what has yet to cross: frames the receiver holds
        // out of order leave it when it reports them (`Held`).
        features |= FEATURE_HELD;
    }
    let mut first = dialer.dial().await.map_err(SendError::Connect)?;
    // The handshakes measured the link: its mode says how large frames are, and how many
    // connections to dial while the first opens the session.
    let rtt = tcp_stats(first.fd).and_then(|s| s.rtt);
    let link_mode = rtt.map(|r| initial_codec(r, opts.rate_limit.map(|l| l as f64)).1);
    let predials = (0..predial::count(opts.streams, link_mode))
        .map(|_| predial::Predial::start(&dialer))
        .collect();
    if opts.chunk_size == 0 {
        opts.chunk_size = link_mode
            .map_or(super::DEFAULT_CHUNK_SIZE, |m| m.defaults().chunk_size)
            .min(u32::try_from(opts.window).unwrap_or(u32::MAX))
            .max(1);
    }
    let asked = Instant::now();
    let first_hello = hello_for(mode, 0, total_len, opts.chunk_size, &opts.name, features);
    let mut answer = hello(&mut first.stream, session, &first_hello).await;
    if features != 0
        && matches!(&answer, Err(HelloFailure::Rejected(m)) if m.code == ErrorCode::Protocol)
    {
        // A receiver older than the features field refuses the longer Hello (before it opens
        // anything): ask again without it, and send raw.
        tracing::info!("receiver does not take the Hello features field; sending raw frames");
        features = 0;
        first = dialer.dial().await.map_err(SendError::Connect)?;
        let plain = hello_for(mode, 0, total_len, opts.chunk_size, &opts.name, 0);
        answer = hello(&mut first.stream, session, &plain).await;
    }
    let ack: HelloAck = answer.map_err(rejected_or_lost)?;
    if ack.features & !features != 0 {
        return Err(SendError::Protocol(format!(
            "receiver confirmed features {:#x} that were not asked for",
            ack.features & !features
        )));
    }
    features = ack.features;
    if features & FEATURE_DEDUP != 0 && features & FEATURE_HDE == 0 {
        return Err(SendError::Protocol(
            "receiver confirmed deduplication without HDE".into(),
        ));
    }
    if features & FEATURE_PREFIX != 0 && features & FEATURE_DEDUP == 0 {
        return Err(SendError::Protocol(
            "receiver confirmed prefixed blocks without deduplication".into(),
        ));
    }
    if features & (FEATURE_SHORT_REFS | FEATURE_RECIPES) != 0 && features & FEATURE_DEDUP == 0 {
        return Err(SendError::Protocol(
            "receiver confirmed short references or recipes without deduplication".into(),
        ));
    }
    let dedup = if features & FEATURE_DEDUP != 0 {
        let index = read_index(&mut first.stream).await?;
        tracing::info!(
            index_bytes = index.len_bytes(),
            "receiver holds a content store"
        );
        Some(Dedup::new(
            opts.chunk_size as usize,
            opts.segmenting,
            Some(index),
            opts.record.clone(),
            features,
        ))
    } else {
        None
    };
    let cutter = dedup.as_ref().map(Dedup::cutter);
    let rtt = tcp_stats(first.fd)
        .and_then(|s| s.rtt)
        .unwrap_or_else(|| asked.elapsed());
    let reduce = SessionReduce::new(
        opts.reduce,
        features & FEATURE_HDE != 0,
        rtt,
        opts.rate_limit,
    );
    let pacer = opts.pacing.applies(reduce.guessed_mode()).then(Pacer::new);
    let start = ack.start_offset;
    if total_len.is_some_and(|len| start > len) {
        return Err(SendError::Protocol(format!(
            "receiver holds {start} bytes of a {}-byte source",
            total_len.unwrap_or_default()
        )));
    }
    let window = opts.window.min(ack.window).max(u64::from(opts.chunk_size));
    let max_streams = usize::from(ack.max_streams.min(MAX_STREAMS));
    tracing::info!(%session, start, window, max_streams, hde = reduce.hde, "session open");

    let (queue_tx, queue_rx) = mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::unbounded_channel();
    let charge = Charge::for_window(window);
    let permits = Arc::new(Semaphore::new(
        usize::try_from(window).unwrap_or(usize::MAX >> 4),
    ));
    if let Some(limit) = opts.window_limit.clone() {
        let floor = u64::from(opts.chunk_size);
        tokio::spawn(super::window::follow(
            limit,
            Arc::clone(&permits),
            window,
            floor,
            window,
        ));
    }
    let shared = Arc::new(Shared {
        session,
        inflight: InFlight::new(start, charge),
        permits: Arc::clone(&permits),
        queue_tx: queue_tx.clone(),
        queue_rx: Mutex::new(queue_rx),
        acked: Arc::new(Notify::new()),
        events: events_tx,
        srtt_us: AtomicU64::new(0),
        min_rtt_us: AtomicU64::new(u64::MAX),
        queue_rtt_us: AtomicU64::new(u64::MAX),
        tcp_acked: AtomicU64::new(0),
        tcp_delivered: AtomicU64::new(0),
        pacing: super::conn_pacing::ConnPacing::default(),
        acked_hint: Arc::new(AtomicU64::new(start)),
        wire_acked_hint: Arc::new(AtomicU64::new(0)),
        cutter,
        needs: AtomicU64::new(0),
        written_end: AtomicU64::new(start),
        bucket: std::sync::Mutex::new(TokenBucket::new(super::sender_conn::PACED_PIECE)),
        abort_written: Notify::new(),
        live: AtomicU64::new(0),
        silent: AtomicU64::new(0),
        hedged: AtomicU64::new(0),
        tail_budget: AtomicU64::new(super::hedge::TAIL_COPY_FLOOR),
        interactive: unblock.is_armed(),
        copy_tail: std::sync::atomic::AtomicBool::new(unblock.is_armed()),
        produced: Arc::clone(&reduce.shared),
        source_done: std::sync::atomic::AtomicBool::new(false),
        start,
    });
    let producer = Producer {
        session,
        chunk_size: opts.chunk_size as usize,
        total_len,
        prompt: unblock.is_armed(),
        cancelled: unblock.flag(),
        charge,
        start,
        permits: Arc::clone(&permits),
        queue: queue_tx,
        runtime: tokio::runtime::Handle::current(),
        encoder: reduce.encoder(dedup),
        reduce: Arc::clone(&reduce.shared),
        acked: Arc::clone(&shared.acked_hint),
        acked_changed: Arc::clone(&shared.acked),
        span: (features & FEATURE_HELD != 0).then_some(window),
        wire_limit: opts.wire_limit.clone(),
        wire_acked: Arc::clone(&shared.wire_acked_hint),
        end_confirmed: opts.end_confirmed.clone(),
        frames: BufPool::new(opts.chunk_size as usize, super::POOLED_FRAMES),
    };
    let producer = tokio::task::spawn_blocking(move || producer.run(reader));

    let mut sup = Supervisor {
        shared,
        dialer,
        opts,
        total_len,
        start,
        max_streams,
        conns: JoinSet::new(),
        predials,
        stops: BTreeMap::new(),
        next_id: 1,
        live: 0,
        streams_max: 0,
        reconnects: 0,
        retransmitted: 0,
        redial_at: VecDeque::new(),
        failures_in_row: 0,
        stalled_since: None,
        last_failure: String::new(),
        progress,
        started,
        features,
        reduce,
        pacer,
        paced: None,
        backlogged: Duration::ZERO,
        last_tick: Instant::now(),
    };
    let result = sup.run(first, producer, events).await;
    // Whatever happened, stop the connections and the producer.
    permits.close();
    sup.conns.abort_all();
    if result.is_ok() {
        unblock.disarm();
    }
    result
}

/// Reads the receiver's `Index`, sent right after a `HelloAck` that confirmed deduplication.
async fn read_index(stream: &mut crate::transport::BoxStream) -> Result<ContentIndex, SendError> {
    let read = tokio::time::timeout(super::sender_conn::HELLO_TIMEOUT, read_frame(stream));
    let frame = match read.await {
        Err(_) => {
            return Err(SendError::Opening(
                "receiver sent no content index in time".into(),
            ));
        }
        Ok(Err(e)) => return Err(SendError::Opening(e.to_string())),
        Ok(Ok(None)) => return Err(SendError::Opening("receiver closed the connection".into())),
        Ok(Ok(Some(f))) => f,
    };
    if frame.header.kind != FrameKind::Index {
        return Err(SendError::Protocol(format!(
            "expected Index after HelloAck, got {:?}",
            frame.header.kind
        )));
    }
    ContentIndex::decode(&frame.payload)
        .map_err(|e| SendError::Protocol(format!("bad content index: {e}")))
}

/// How a connection the supervisor starts reaches the session.
enum Link {
    /// Already in it: the connection that opened it.
    Joined(crate::transport::Connection),
    /// Joins it: dialed ahead of time, or now.
    Dial(Option<predial::Predial>),
}

struct Supervisor {
    shared: Arc<Shared>,
    dialer: Dialer,
    opts: SendOptions,
    total_len: Option<u64>,
    start: u64,
    max_streams: usize,
    conns: JoinSet<(ConnId, ConnExit)>,
    /// Connections dialed while the first opened the session, not yet joined.
    predials: Vec<predial::Predial>,
    stops: BTreeMap<ConnId, watch::Sender<bool>>,
    next_id: ConnId,
    live: usize,
    streams_max: usize,
    reconnects: u64,
    retransmitted: u64,
    redial_at: VecDeque<Instant>,
    failures_in_row: u32,
    /// Set at the first connection failure since the acknowledged offset last moved.
    stalled_since: Option<Instant>,
    last_failure: String,
    progress: watch::Sender<Progress>,
    started: Instant,
    /// Features the receiver confirmed; joining connections ask for the same.
    features: u32,
    reduce: SessionReduce,
    /// The session's pacing, when its mode calls for it.
    pacer: Option<Pacer>,
    /// The pacer's cap in force, bytes per second.
    paced: Option<f64>,
    /// Time frames waited in the work queue for a connection (as seen at each tick).
    backlogged: Duration,
    last_tick: Instant,
}

/// How often progress is published.
const TICK: Duration = Duration::from_millis(100);
/// How long a failing session waits for its abort to be written.
const ABORT_GRACE: Duration = Duration::from_secs(2);
/// How often an abort looks whether the receiver closed the connections.
const ABORT_POLL: Duration = Duration::from_millis(10);

impl Supervisor {
    async fn run(
        &mut self,
        first: crate::transport::Connection,
        mut producer: tokio::task::JoinHandle<Result<Produced, ProduceError>>,
        mut events: mpsc::UnboundedReceiver<SessionEvent>,
    ) -> Result<TransferSummary, SendError> {
        let mut tuner = StreamTuner::for_session(
            self.opts.streams,
            Some(self.reduce.guessed_mode()),
            self.max_streams,
        );
        self.set_pacing(tuner.current());
        self.spawn_conn(Link::Joined(first), 0);
        for _ in 1..tuner.current() {
            self.spawn_dial();
        }
        // Dialed for a count the receiver or the tuner lowered: not needed.
        self.predials.clear();
        self.progress.send_modify(|p| {
            p.phase = if self.start > 0 {
                Phase::HashingPrefix
            } else {
                Phase::Transferring
            };
            p.bytes_total = self.total_len;
            p.start_offset = self.start;
            p.bytes_acked = self.start;
        });

        let mut produced: Option<Produced> = None;
        let mut tick = tokio::time::interval(TICK);
        let mut startup_tick = tokio::time::interval(super::pacer::STARTUP_TICK);
        startup_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rate = RateMeter::new(self.start);
        let mut wire_rate = RateMeter::new(0);
        let mut window_start = (Instant::now(), 0u64, self.held_back());
        let mut warmup = true;
        let mut last_acked = self.start;
        // The acknowledged offset at which a wait for the stream's end was last reported.
        let mut end_wait_told = None;
        let mut blocked = Blocked {
            acked: self.start,
            since: Instant::now(),
            resent_at: None,
        };
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(SessionEvent::Done(hash)) => {
                        // The End frame is queued just before the producer returns, so its
                        // result may not have been taken yet when the receiver's answer is.
                        let done = match produced {
                            Some(p) => p,
                            None => match (&mut producer).await {
                                Ok(Ok(p)) => p,
                                Ok(Err(e)) => return Err(e.into()),
                                Err(join) => return Err(SendError::Source(Box::new(join))),
                            },
                        };
                        if hash != *done.hash.as_bytes() {
                            return Err(SendError::Integrity {
                                sent: done.hash.to_hex().to_string(),
                                stored: blake3::Hash::from_bytes(hash).to_hex().to_string(),
                            });
                        }
                        let elapsed = self.started.elapsed();
                        let average = (done.len - self.start) as f64 / elapsed.as_secs_f64().max(1e-9);
                        self.progress.send_modify(|p| {
                            p.phase = Phase::Done;
                            p.rate_bytes_per_sec = average;
                            p.bytes_acked = done.len;
                            p.bytes_held = 0;
                            p.bytes_total = Some(done.len);
                            p.elapsed = elapsed;
                        });
                        return Ok(self.summary(done));
                    }
                    Some(SessionEvent::Rejected(m)) if m.code == ErrorCode::NoSession => {
                        return Err(SendError::Lost {
                            acked: self.shared.inflight.acked(),
                            reason: format!("receiver no longer has the session: {}", m.message),
                        });
                    }
                    Some(SessionEvent::Rejected(m)) => return Err(SendError::Rejected(m)),
                    Some(SessionEvent::Protocol(p)) => return Err(SendError::Protocol(p)),
                    None => return Err(SendError::Protocol("session events closed".into())),
                },
                res = &mut producer, if produced.is_none() => {
                    match res {
                        Ok(Ok(p)) => {
                            tracing::debug!(len = p.len, "source read to the end");
                            produced = Some(p);
                            self.shared.source_done.store(true, Ordering::Relaxed);
                            self.progress.send_modify(|pr| pr.bytes_total = Some(p.len));
                        }
                        // The receiver is told at once (it keeps what it got as
                        // NAME.partial), instead of finding out when the connections go.
                        Ok(Err(e)) => {
                            self.abort(&e).await;
                            return Err(e.into());
                        }
                        Err(join) => {
                            return Err(SendError::Source(Box::new(join)));
                        }
                    }
                }
                Some(joined) = self.conns.join_next(), if !self.conns.is_empty() => {
                    if let Ok((id, exit)) = joined {
                        self.on_exit(id, exit, tuner.current());
                    }
                }
                // The pacer in startup samples more often than the tick (see
                // `STARTUP_TICK`).
                _ = startup_tick.tick(), if self.pacer.as_ref().is_some_and(|p| !p.is_cruising()) => {
                    self.account_backlog();
                    self.pace(tuner.current());
                }
                _ = tick.tick() => {
                    let (acked, held) = self.shared.inflight.acked_and_held();
                    rate.sample(acked + held);
                    let acked_wire = self.shared.inflight.acked_wire();
                    wire_rate.sample(acked_wire);
                    let budget = super::hedge::tail_budget(
                        wire_rate.peak(),
                        measured_rtt(self.shared.min_rtt_us.load(Ordering::Relaxed)),
                    );
                    self.shared.tail_budget.store(budget, Ordering::Relaxed);
                    self.publish(
                        (acked, held, acked_wire),
                        (rate.rate(), wire_rate.rate()),
                        produced.is_some(),
                    );
                    self.redial_due(tuner.current());
                    if acked > last_acked {
                        last_acked = acked;
                        self.stalled_since = None;
                        self.failures_in_row = 0;
                    }
                    self.unblock(acked, rate.peak(), &mut blocked);
                    self.tell_end_wait(&blocked, &mut end_wait_told);
                    self.account_backlog();
                    self.reduce.tick(
                        Instant::now(),
                        self.shared.tcp_acked.load(Ordering::Relaxed),
                        self.shared.srtt_us.load(Ordering::Relaxed),
                        self.held_back(),
                    );
                    self.pace(tuner.current());
                    if self.stalled_since.is_some_and(|t| t.elapsed() > self.opts.reconnect_timeout) {
                        return Err(SendError::Lost { acked, reason: self.last_failure.clone() });
                    }
                    // Auto stream count: one window of warm-up after each change, then measure.
                    if matches!(self.opts.streams, StreamCount::Auto { .. }) {
                        let (t0, a0, b0) = window_start;
                        let delivered = self.shared.tcp_acked.load(Ordering::Relaxed);
                        if t0.elapsed() >= self.probe_window() {
                            let waited = self.held_back().saturating_sub(b0);
                            if warmup {
                                warmup = false;
                            } else if !network_limited(waited, t0.elapsed()) {
                                // The source set the pace (a migration between passes, a slow
                                // pipe): the window says nothing about the connection count.
                                tracing::trace!(?waited, "stream tuner: window limited by the source");
                            } else {
                                let goodput = delivered.saturating_sub(a0) as f64 / t0.elapsed().as_secs_f64();
                                let before = tuner.current();
                                let after = tuner.on_sample(goodput);
                                tracing::debug!(before, after, goodput, "stream tuner");
                                if after != before {
                                    self.resize(after);
                                    warmup = true;
                                }
                            }
                            window_start = (Instant::now(), delivered, self.held_back());
                        }
                    }
                }
            }
        }
    }

    /// Tells the receiver that the session is given up because its source failed: an `Error`
    /// frame (code `Aborted`, the reason as its message) on whichever connection is free,
    /// waiting at most [`ABORT_GRACE`] for it to be written.
    async fn abort(&self, reason: &ProduceError) {
        let message = ErrorMessage {
            code: ErrorCode::Aborted,
            message: format!("the sender gave up: {reason}"),
        };
        let Ok(frame) = Frame::control(FrameKind::Error, self.shared.session, 0, message.encode())
        else {
            return;
        };
        let written = self.shared.abort_written.notified();
        let deadline = tokio::time::Instant::now() + ABORT_GRACE;
        if self.shared.queue_tx.send(Outgoing::plain(frame)).is_err() {
            return;
        }
        if tokio::time::timeout_at(deadline, written).await.is_err() {
            tracing::debug!("no connection wrote the abort in time");
            return;
        }
        // The receiver closes the session's connections once it read the `Error`; until then
        // they stay open (see `SenderConn::write_loop`), within the same grace.
        while self.shared.live.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(ABORT_POLL).await;
        }
    }

    /// The tuner's measurement window (and the warm-up after each change): 32 round trips,
    /// within 1..4 s, so that new connections are past slow start when measured and loss
    /// recoveries (whose selectively acknowledged bytes count only when the gap fills) average
    /// out.
    fn probe_window(&self) -> Duration {
        let rtt = Duration::from_micros(self.shared.srtt_us.load(Ordering::Relaxed));
        (rtt * 32).clamp(Duration::from_secs(1), Duration::from_secs(4))
    }

    /// Bytes of frames sent again: those of dropped and stalled connections, and those hedged
    /// in the tail.
    fn retransmitted(&self) -> u64 {
        self.retransmitted + self.shared.hedged.load(Ordering::Relaxed)
    }

    /// Publishes the progress at this tick: the stream's acknowledged and held bytes, the
    /// wire's, and their rates.
    fn publish(
        &self,
        (acked, held, acked_wire): (u64, u64, u64),
        (rate, wire_rate): (f64, f64),
        source_done: bool,
    ) {
        let live = self.live;
        let retransmitted = self.retransmitted();
        let elapsed = self.started.elapsed();
        let wire = self.reduce.shared.wire_bytes.load(Ordering::Relaxed);
        let refs = self.reduce.shared.ref_bytes.load(Ordering::Relaxed);
        self.progress.send_modify(|p| {
            p.bytes_acked = acked;
            p.bytes_held = held;
            p.wire_bytes = wire;
            p.wire_acked = acked_wire;
            p.wire_rate_bytes_per_sec = wire_rate;
            p.ref_bytes = refs;
            p.rate_bytes_per_sec = rate;
            p.streams = live;
            p.retransmitted_bytes = retransmitted;
            p.elapsed = elapsed;
            if acked > self.start {
                p.phase = Phase::Transferring;
            }
            if source_done && p.bytes_total == Some(acked) {
                p.phase = Phase::Verifying;
            }
        });
    }

    /// Time the network held the session back: frames waited for a connection, or the
    /// producer for room in the window (frames in flight waiting for their acknowledgement).
    /// The rest of the time the source set the pace.
    fn held_back(&self) -> Duration {
        let blocked = self.reduce.shared.blocked_ns.load(Ordering::Relaxed);
        self.backlogged + Duration::from_nanos(blocked)
    }

    /// Adds the time since the last tick to [`Self::backlogged`] if frames wait in the work
    /// queue for a connection (the network, not the source, sets the pace).
    fn account_backlog(&mut self) {
        let now = Instant::now();
        if !self.shared.all_written() {
            self.backlogged += now.saturating_duration_since(self.last_tick);
        }
        self.last_tick = now;
    }

    fn spawn_conn(&mut self, link: Link, index: u16) {
        let id = self.next_id;
        self.next_id += 1;
        let (stop_tx, stop_rx) = watch::channel(false);
        self.stops.insert(id, stop_tx);
        let task = SenderConn {
            id,
            shared: Arc::clone(&self.shared),
            stop: stop_rx,
        };
        let dialer = self.dialer.clone();
        let join = hello_for(
            HelloMode::Join,
            index,
            self.total_len,
            self.opts.chunk_size,
            &self.opts.name,
            self.features,
        );
        let session = self.shared.session;
        self.live += 1;
        self.streams_max = self.streams_max.max(self.live);
        self.conns.spawn(async move {
            let (conn, admission) = match link {
                Link::Joined(c) => (c, Admission::Answered),
                Link::Dial(predial) => {
                    let dialed = match predial {
                        Some(p) => p.connection().await,
                        None => dialer.dial().await.map_err(|e| error_chain(&e)),
                    };
                    let mut c = match dialed {
                        Ok(c) => c,
                        Err(e) => return (id, ConnExit::Failed(e)),
                    };
                    if let Err(failure) = send_hello(&mut c.stream, session, &join).await {
                        return (id, ConnExit::Failed(join_refused(&task.shared, failure)));
                    }
                    (c, Admission::Pending)
                }
            };
            (id, task.run(conn, admission).await)
        });
    }

    /// Dials one more connection, unless the session is at the receiver's limit (connections
    /// still closing after a step down count: the receiver counts them too). When those
    /// finish closing, [`Self::on_exit`] dials the missing ones.
    fn spawn_dial(&mut self) {
        if self.live >= self.max_streams {
            return;
        }
        let index = u16::try_from(self.next_id).unwrap_or(u16::MAX);
        let predial = self.predials.pop();
        self.spawn_conn(Link::Dial(predial), index);
    }

    fn on_exit(&mut self, id: ConnId, exit: ConnExit, target: usize) {
        self.live = self.live.saturating_sub(1);
        let stopped = self.stops.remove(&id).is_some_and(|s| *s.borrow());
        let (_, bytes) = self.shared.requeue_conn(id);
        match exit {
            ConnExit::Closed if stopped => tracing::debug!(id, "connection closed"),
            ConnExit::Closed => {}
            ConnExit::Failed(reason) => {
                self.retransmitted += bytes;
                self.failures_in_row += 1;
                tracing::warn!(id, %reason, requeued = bytes, "connection dropped");
                self.last_failure = reason;
                self.stalled_since.get_or_insert_with(Instant::now);
            }
        }
        let wanted = target.saturating_sub(self.live + self.redial_at.len());
        for _ in 0..wanted {
            let backoff = Duration::from_millis(100)
                * 2u32.saturating_pow(self.failures_in_row.min(5).saturating_sub(1));
            self.redial_at
                .push_back(Instant::now() + backoff.min(Duration::from_secs(2)));
        }
    }

    fn redial_due(&mut self, target: usize) {
        while self.redial_at.front().is_some_and(|t| *t <= Instant::now()) {
            self.redial_at.pop_front();
            if self.live < target {
                self.reconnects += 1;
                self.spawn_dial();
            }
        }
    }

    fn resize(&mut self, target: usize) {
        self.set_pacing(target);
        let open: Vec<ConnId> = self
            .stops
            .iter()
            .filter(|(_, s)| !*s.borrow())
            .map(|(id, _)| *id)
            .collect();
        if target > open.len() {
            for _ in open.len()..target {
                self.spawn_dial();
            }
        } else {
            for id in open.iter().rev().take(open.len() - target) {
                if let Some(stop) = self.stops.get(id) {
                    stop.send_replace(true);
                }
            }
        }
    }

    fn summary(&mut self, done: Produced) -> TransferSummary {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        let r = self.reduce.report(
            self.shared.tcp_acked.load(Ordering::Relaxed),
            self.shared.srtt_us.load(Ordering::Relaxed),
            self.held_back(),
        );
        let bytes_sent = done.len - self.start;
        let goodput = bytes_sent as f64 / seconds;
        TransferSummary {
            name: self.opts.name.clone(),
            bytes: done.len,
            bytes_sent,
            resumed_from: self.start,
            seconds,
            goodput_bytes_per_sec: goodput,
            goodput_mbit: goodput * 8.0 / 1e6,
            chunk_size: self.opts.chunk_size,
            streams_max: self.streams_max,
            streams_final: self.live,
            retransmitted_bytes: self.retransmitted(),
            reconnects: self.reconnects,
            blake3: done.hash.to_hex().to_string(),
            tls: matches!(self.dialer.security, Security::Tls { .. }),
            compression: self.reduce.requested.to_string(),
            hde: self.reduce.hde,
            mode: r.mode,
            mode_measured: r.mode_measured,
            codec: r.codec,
            codec_changes: r.codec_changes,
            reduction_ratio: if r.wire_bytes == 0 {
                1.0
            } else {
                r.stream_bytes as f64 / r.wire_bytes as f64
            },
            stream_bytes: r.stream_bytes,
            wire_bytes: r.wire_bytes,
            dedup: self.features & FEATURE_DEDUP != 0,
            ref_bytes: self.reduce.shared.ref_bytes.load(Ordering::Relaxed),
            content_requests: self.shared.needs.load(Ordering::Relaxed),
            paced: self.pacer.is_some(),
            pacing_mbit: self.paced.map(|rate| rate * 8.0 / 1e6),
        }
    }
}
