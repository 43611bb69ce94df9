//! The receiving side: accepts connections, routes each to its session (open, join or resume),
//! writes the stream under the receiver's directory, and reports finished files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::names::validate_name;
use super::rx_session::{RxSession, RxStatus};
use super::segments;
use super::sender_conn::HELLO_TIMEOUT;
use super::sink::{Claim, SinkRegistry};
use super::{DEFAULT_WINDOW, MAX_STREAMS};
use crate::hde::{ContentIndex, SharedStore};
use crate::transport::{Acceptor, BoxStream, Connection, TransportError};
use crate::wire::{
    ErrorCode, ErrorMessage, FEATURE_DEDUP, FEATURE_HDE, FEATURE_HELD, FEATURE_PREFIX,
    FEATURE_RECIPES, FEATURE_SHORT_REFS, Frame, FrameKind, Hello, HelloAck, HelloMode, PayloadKind,
    SessionId, read_frame, read_frame_in, write_frame,
};

/// Settings of a receiver.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Directory files are stored in; nothing is written outside it.
    pub dir: PathBuf,
    /// Bytes buffered out of order per session.
    pub window: u64,
    /// Connections accepted per session.
    pub max_streams: u16,
    /// Sessions open at once.
    pub max_sessions: usize,
    /// How long a session with no connection is kept for the sender to come back.
    pub idle_timeout: Duration,
    /// Accept only sessions for registered sinks; refuse any that would store a file.
    pub sinks_only: bool,
    /// Confirm HDE to senders that ask for it (data frames of payload kind `Hde`). Off, the
    /// receiver answers as one that does not know the feature, and senders send raw.
    pub hde: bool,
    /// The content store: with HDE on, senders that ask get deduplication against it (an
    /// index of it when the session opens, references resolved from it, every literal
    /// segment received stored in it). `None` declines deduplication.
    pub store: Option<SharedStore>,
}

impl ReceiverConfig {
    /// Defaults for storing into `dir`.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            window: DEFAULT_WINDOW,
            max_streams: MAX_STREAMS,
            max_sessions: 8,
            idle_timeout: Duration::from_secs(60),
            sinks_only: false,
            hde: true,
            store: None,
        }
    }
}

/// A session that ended, successfully or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFile {
    /// The name the sender asked for.
    pub name: String,
    /// Where it is: `DIR/NAME` on success, `DIR/NAME.partial` otherwise.
    pub path: PathBuf,
    /// Bytes stored.
    pub bytes: u64,
    /// Offset the session resumed from.
    pub resumed_from: u64,
    /// Time from session open to its end.
    pub elapsed: Duration,
    /// BLAKE3 of the stored stream, or why it failed.
    pub outcome: Result<String, String>,
}

/// Why the receiver could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The storage directory is missing or not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// Accepting connections failed.
    #[error("accepting connections failed")]
    Accept(#[source] std::io::Error),
}

type Sessions = Arc<Mutex<HashMap<SessionId, Arc<RxSession>>>>;

/// Accepts DWCP sessions and stores their streams, or hands them to registered sinks
/// ([`Receiver::sinks`]).
pub struct Receiver {
    acceptor: Arc<Acceptor>,
    cfg: Arc<ReceiverConfig>,
    sessions: Sessions,
    sinks: SinkRegistry,
    conn_limit: Arc<Semaphore>,
}

/// Most connections handled at once, over all sessions.
const MAX_CONNECTIONS: usize = 1024;
/// Acknowledge at least every this many bytes written...
const ACK_EVERY_BYTES: u64 = 4 << 20;
/// ...or this often while data is being written, whichever comes first.
const ACK_EVERY: Duration = Duration::from_millis(10);
/// How often finished and idle sessions are looked for.
const REAP_EVERY: Duration = Duration::from_millis(500);
/// How long a finished session stays, so a sender that missed `Done` can ask again.
const FINISHED_LINGER: Duration = Duration::from_secs(10);
/// How long a refusal may hold its connection: its `Error` written, then what the peer still
/// sends drained until it closes. A joining sender writes frames right behind its `Hello`;
/// closing with them unread would reset the connection, and a reset can discard the refusal on
/// its way. The sender closes once it has read the refusal.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

fn lock(s: &Sessions) -> std::sync::MutexGuard<'_, HashMap<SessionId, Arc<RxSession>>> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Receiver {
    /// A receiver storing into `cfg.dir`.
    ///
    /// # Errors
    /// [`ReceiveError::NotADirectory`] when the directory does not exist.
    pub fn new(acceptor: Acceptor, cfg: ReceiverConfig) -> Result<Self, ReceiveError> {
        if !cfg.dir.is_dir() {
            return Err(ReceiveError::NotADirectory(cfg.dir));
        }
        Ok(Self {
            acceptor: Arc::new(acceptor),
            cfg: Arc::new(cfg),
            sessions: Arc::default(),
            sinks: SinkRegistry::default(),
            conn_limit: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        })
    }

    /// The address connections are accepted on.
    ///
    /// # Errors
    /// The OS error if the socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.acceptor.local_addr()
    }

    /// The registry of stream sinks: register a sink there before its sender connects. The
    /// registry stays usable (it is shared) after [`Self::run`] takes the receiver.
    #[must_use]
    pub fn sinks(&self) -> SinkRegistry {
        self.sinks.clone()
    }

    /// Accepts connections until the task is dropped, sending each ended file session to
    /// `done` (sink sessions report through their [`super::SinkHandle`] instead).
    ///
    /// # Errors
    /// [`ReceiveError::Accept`] when the listening socket fails.
    pub async fn run(self, done: mpsc::UnboundedSender<ReceivedFile>) -> Result<(), ReceiveError> {
        let mut tasks = JoinSet::new();
        tasks.spawn(reap(
            Arc::clone(&self.sessions),
            Arc::clone(&self.cfg),
            done,
        ));
        loop {
            let (tcp, peer) = match self.acceptor.accept_tcp().await {
                Ok(c) => c,
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(ReceiveError::Accept(e)),
            };
            let Ok(permit) = Arc::clone(&self.conn_limit).try_acquire_owned() else {
                tracing::warn!(%peer, "connection limit reached; refusing");
                continue;
            };
            let acceptor = Arc::clone(&self.acceptor);
            let sessions = Arc::clone(&self.sessions);
            let cfg = Arc::clone(&self.cfg);
            let sinks = self.sinks.clone();
            tasks.spawn(async move {
                let _permit = permit;
                match acceptor.handshake(tcp, peer).await {
                    Ok(conn) => serve_conn(conn, sessions, cfg, sinks).await,
                    // A sender whose session ended while it dialed closes its handshakes.
                    Err(e @ TransportError::Handshake { closed: true, .. }) => {
                        tracing::debug!(%peer, error = %e, "connection closed in its handshake");
                    }
                    Err(e) => tracing::warn!(%peer, error = %e, "refused connection"),
                }
            });
            // Reap finished connection tasks so the set does not grow.
            while tasks.try_join_next().is_some() {}
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED)
    )
}

/// Sends `err` and ends the connection: the write side is shut, and what the peer still sends
/// is read and dropped until it closes; all of it within [`REFUSAL_LINGER`].
async fn send_error(stream: &mut BoxStream, session: SessionId, err: &ErrorMessage) {
    let Ok(frame) = Frame::control(FrameKind::Error, session, 0, err.encode()) else {
        return;
    };
    let refused = async {
        // The peer may already be gone; the refusal is logged either way.
        let _ = write_frame(stream, &frame).await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
        let mut sink = vec![0u8; 64 << 10];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, refused).await;
}

/// Handles one connection from `Hello` to close.
async fn serve_conn(
    mut conn: Connection,
    sessions: Sessions,
    cfg: Arc<ReceiverConfig>,
    sinks: SinkRegistry,
) {
    let peer = conn.peer;
    let first = match tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut conn.stream)).await {
        Ok(Ok(Some(f))) => f,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "bad first frame");
            let err = ErrorMessage {
                code: ErrorCode::Protocol,
                message: e.to_string(),
            };
            send_error(&mut conn.stream, SessionId::default(), &err).await;
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "no Hello in time");
            return;
        }
    };
    let id = first.header.session;
    let (session, features, opened) = match admit(&first, &sessions, &cfg, &sinks).await {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(%peer, session = %id, reason = %err.message, "session refused");
            send_error(&mut conn.stream, id, &err).await;
            return;
        }
    };
    session.conns.fetch_add(1, Ordering::AcqRel);
    let ack = HelloAck {
        start_offset: session.status().written,
        window: cfg.window,
        max_streams: cfg.max_streams,
        features,
    };
    let result = match Frame::control(FrameKind::HelloAck, id, 0, ack.encode()) {
        Ok(frame) => {
            let index = if opened && features & FEATURE_DEDUP != 0 {
                index_frame(id, cfg.store.clone()).await
            } else {
                None
            };
            let sent = async {
                write_frame(&mut conn.stream, &frame).await?;
                if let Some(index) = &index {
                    write_frame(&mut conn.stream, index).await?;
                }
                conn.stream.flush().await?;
                Ok::<_, crate::wire::WireError>(())
            };
            match sent.await {
                Ok(()) => run_conn(conn.stream, &session).await,
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    if let Err(reason) = result {
        tracing::debug!(%peer, session = %id, %reason, "connection ended");
    }
    session.conns.fetch_sub(1, Ordering::AcqRel);
}

/// The `Index` frame of what `store` holds, built on the blocking pool (the store may hold
/// millions of entries). If it cannot be built, an empty one: the sender then references only
/// what it sends in this session, which is always safe.
async fn index_frame(id: SessionId, store: Option<SharedStore>) -> Option<Frame> {
    let store = store?;
    let built = tokio::task::spawn_blocking(move || {
        let store = store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ContentIndex::build(store.len(), store.hashes())
    })
    .await;
    let index = built.unwrap_or_else(|e| {
        tracing::warn!(session = %id, error = %e, "could not index the content store; sending an empty index");
        ContentIndex::build(0, std::iter::empty())
    });
    Frame::control(FrameKind::Index, id, 0, index.encode()).ok()
}

/// The features a receiver with `cfg` offers a new session: `Held` reports always.
fn offered(cfg: &ReceiverConfig) -> u32 {
    FEATURE_HELD
        | match (cfg.hde, cfg.store.is_some()) {
            (false, _) => 0,
            (true, false) => FEATURE_HDE,
            (true, true) => {
                FEATURE_HDE | FEATURE_DEDUP | FEATURE_PREFIX | FEATURE_SHORT_REFS | FEATURE_RECIPES
            }
        }
}

/// Decides what a `Hello` opens or joins, and which of the features it asks for the session
/// has (a subset of those asked for: an old sender, asking for none, gets the old `HelloAck`);
/// the flag says whether it opened (or resumed) a session rather than joined one.
async fn admit(
    first: &Frame,
    sessions: &Sessions,
    cfg: &Arc<ReceiverConfig>,
    sinks: &SinkRegistry,
) -> Result<(Arc<RxSession>, u32, bool), ErrorMessage> {
    let protocol = |m: String| ErrorMessage {
        code: ErrorCode::Protocol,
        message: m,
    };
    if first.header.kind != FrameKind::Hello {
        return Err(protocol(format!(
            "expected Hello, got {:?}",
            first.header.kind
        )));
    }
    let hello = Hello::decode(&first.payload).map_err(|e| protocol(e.to_string()))?;
    let id = first.header.session;
    if hello.mode == HelloMode::Join {
        let session = lock(sessions).get(&id).cloned().ok_or(ErrorMessage {
            code: ErrorCode::NoSession,
            message: format!("no session {id} on this receiver"),
        })?;
        if session.conn_count() >= usize::from(cfg.max_streams) {
            return Err(ErrorMessage {
                code: ErrorCode::Busy,
                message: format!("session already has {} connections", cfg.max_streams),
            });
        }
        let features = hello.features & session.features;
        return Ok((session, features, false));
    }
    let mut features = hello.features & offered(cfg);
    if features & FEATURE_HDE == 0 {
        features &= !FEATURE_DEDUP;
    }
    if features & FEATURE_DEDUP == 0 {
        features &= !(FEATURE_PREFIX | FEATURE_SHORT_REFS | FEATURE_RECIPES);
    }
    validate_name(&hello.name).map_err(|e| ErrorMessage {
        code: ErrorCode::BadName,
        message: e.to_string(),
    })?;
    let resume = hello.mode == HelloMode::Resume;
    // A sink session is bounded by the registrations (MAX_SINKS), not by `max_sessions`, and
    // never touches the directory.
    let sink = match sinks.claim(&hello.name, resume) {
        Claim::File if cfg.sinks_only => {
            return Err(ErrorMessage {
                code: ErrorCode::NoSession,
                message: format!("no stream named {} is expected here", hello.name),
            });
        }
        Claim::File => None,
        Claim::Sink(s) => Some(s),
        Claim::Refused(err) => return Err(err),
    };
    let files_open =
        |map: &HashMap<SessionId, Arc<RxSession>>| map.values().filter(|s| !s.sink).count();
    {
        let map = lock(sessions);
        if map.contains_key(&id) {
            return Err(protocol(format!("session {id} is already open")));
        }
        if sink.is_none() && files_open(&map) >= cfg.max_sessions {
            return Err(ErrorMessage {
                code: ErrorCode::Busy,
                message: format!("receiver is at its limit of {} sessions", cfg.max_sessions),
            });
        }
        if map
            .values()
            .any(|s| s.name == hello.name && s.status().outcome.is_none())
        {
            return Err(ErrorMessage {
                code: ErrorCode::Busy,
                message: format!("{} is being received by another session", hello.name),
            });
        }
    }
    let dir = cfg.dir.clone();
    let window = cfg.window;
    let name = hello.name.clone();
    let session = match sink {
        Some(sink) => RxSession::open_sink(id, &name, hello.total_len, window, sink)?,
        None => tokio::task::spawn_blocking(move || {
            RxSession::open(id, &dir, &name, hello.total_len, window, resume)
        })
        .await
        .map_err(|e| ErrorMessage {
            code: ErrorCode::Storage,
            message: format!("could not open the session: {e}"),
        })??,
    };
    let session = session
        .with_frames_of(hello.chunk_size)
        .with_features(features);
    let session = if features & FEATURE_HDE != 0 {
        session.with_hde(hello.chunk_size)
    } else {
        session
    };
    let session = match &cfg.store {
        Some(store) if features & FEATURE_DEDUP != 0 => session.with_dedup(Arc::clone(store)),
        _ => session,
    };
    let session = Arc::new(session);
    tracing::info!(session = %id, name = %session.name, start = session.start, resume, sink = session.sink, hde = session.hde, "session open");
    let mut map = lock(sessions);
    if !session.sink && files_open(&map) >= cfg.max_sessions {
        session.stop_writer();
        return Err(ErrorMessage {
            code: ErrorCode::Busy,
            message: "receiver is at its session limit".into(),
        });
    }
    map.insert(id, Arc::clone(&session));
    Ok((session, features, true))
}

/// Reads frames into the session and writes acknowledgements until the connection ends.
async fn run_conn(stream: BoxStream, session: &Arc<RxSession>) -> Result<(), String> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut status = session.subscribe();
    // `Need` and `Held` reports: at most one per frame read, and the writer takes them as
    // they come.
    let (report_tx, mut report_rx) = mpsc::unbounded_channel();
    let id = session.id;
    // Content a frame referenced is missing: ask for the frame again with it as literals
    // (from whichever connection: the sender finds the frame by its offset).
    let need = |offset: u64, missing: &[crate::hde::ContentHash]| {
        let _ = report_tx.send((FrameKind::Need, offset, segments::need_payload(missing)));
    };
    let reader = async {
        loop {
            let frame = match read_frame_in(&mut rd, session.frames.as_ref()).await {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                // A connection that broke (even mid-frame) is the sender's to re-dial; only
                // frames that arrived whole but wrong end the session.
                Err(crate::wire::WireError::Io(e)) => return Err(e.to_string()),
                Err(e @ crate::wire::WireError::Truncated) => return Err(e.to_string()),
                Err(e) => {
                    // Corruption or a protocol violation: the session cannot be trusted.
                    let msg = ErrorMessage {
                        code: ErrorCode::Protocol,
                        message: format!("bad frame: {e}"),
                    };
                    session.abort(msg);
                    return Err(e.to_string());
                }
            };
            if frame.header.session != id {
                session.abort(ErrorMessage {
                    code: ErrorCode::Protocol,
                    message: "frame for another session".into(),
                });
                return Err("frame for another session".into());
            }
            let h = frame.header;
            let mut needed = false;
            let taken = match (h.kind, h.payload_kind) {
                (FrameKind::Data, PayloadKind::Hde) => match session.decode_hde(frame).await {
                    Ok(bytes) => session.on_data(h.offset, bytes),
                    Err(msg) => Err(msg),
                },
                (FrameKind::Data, PayloadKind::Segments) => session
                    .take_segments(frame, &need)
                    .await
                    .map(|asked| needed = asked),
                _ => session.on_frame(frame),
            };
            // Frames that waited for the bytes before them, which may now be in.
            let taken = match taken {
                Ok(()) if session.has(FEATURE_PREFIX) && h.kind == FrameKind::Data => {
                    session.take_parked(&need).await
                }
                other => other,
            };
            if let Err(msg) = taken {
                let text = msg.message.clone();
                session.abort(msg);
                return Err(text);
            }
            // A frame held ahead of the written bytes has crossed: the sender stops counting
            // it against its window.
            if session.has(FEATURE_HELD)
                && h.kind == FrameKind::Data
                && !needed
                && h.offset > session.status().written
            {
                let _ = report_tx.send((FrameKind::Held, h.offset, Bytes::new()));
            }
        }
    };
    let writer = async {
        let mut sent = session.start;
        let mut sent_at = Instant::now();
        let mut report = None;
        loop {
            let mut reported = false;
            while let Some((kind, offset, payload)) =
                report.take().or_else(|| report_rx.try_recv().ok())
            {
                let frame = Frame::control(kind, id, offset, payload).map_err(|e| e.to_string())?;
                write_frame(&mut wr, &frame)
                    .await
                    .map_err(|e| e.to_string())?;
                reported = true;
            }
            if reported {
                wr.flush().await.map_err(|e| e.to_string())?;
            }
            let st: RxStatus = status.borrow_and_update().clone();
            let due = st.written.saturating_sub(sent) >= ACK_EVERY_BYTES
                || sent_at.elapsed() >= ACK_EVERY
                || st.outcome.is_some();
            if st.written != sent && due {
                sent = st.written;
                sent_at = Instant::now();
                let ack = Frame::control(FrameKind::Ack, id, sent, bytes::Bytes::new())
                    .map_err(|e| e.to_string())?;
                write_frame(&mut wr, &ack)
                    .await
                    .map_err(|e| e.to_string())?;
                wr.flush().await.map_err(|e| e.to_string())?;
            }
            if let Some(outcome) = st.outcome {
                let frame = match outcome {
                    Ok(hash) => Frame::control(
                        FrameKind::Done,
                        id,
                        st.written,
                        bytes::Bytes::copy_from_slice(&hash),
                    ),
                    Err(msg) => Frame::control(FrameKind::Error, id, st.written, msg.encode()),
                }
                .map_err(|e| e.to_string())?;
                write_frame(&mut wr, &frame)
                    .await
                    .map_err(|e| e.to_string())?;
                wr.flush().await.map_err(|e| e.to_string())?;
                // Let the sender close; don't hold the connection forever if it doesn't.
                tokio::time::sleep(FINISHED_LINGER).await;
                return Ok(());
            }
            // Progress not yet acknowledged: wait for more, but no longer than ACK_EVERY.
            let wait = if st.written != sent {
                ACK_EVERY.saturating_sub(sent_at.elapsed())
            } else {
                Duration::MAX
            };
            tokio::select! {
                changed = tokio::time::timeout(wait, status.changed()) => {
                    if let Ok(Err(_)) = changed {
                        return Ok(());
                    }
                }
                Some(r) = report_rx.recv() => report = Some(r),
            }
        }
    };
    tokio::select! {
        r = reader => r,
        r = writer => r,
    }
}

/// Reports each session once when it ends, and removes sessions that ended or whose sender
/// went away.
async fn reap(
    sessions: Sessions,
    cfg: Arc<ReceiverConfig>,
    done: mpsc::UnboundedSender<ReceivedFile>,
) {
    let mut idle_since: HashMap<SessionId, Instant> = HashMap::new();
    let mut reported: std::collections::HashSet<SessionId> = std::collections::HashSet::new();
    let mut tick = tokio::time::interval(REAP_EVERY);
    loop {
        tick.tick().await;
        let mut finished = Vec::new();
        let mut abandoned = Vec::new();
        {
            let mut map = lock(&sessions);
            map.retain(|id, s| {
                let ended = s.status().outcome.is_some();
                if ended && reported.insert(*id) {
                    finished.push(Arc::clone(s));
                }
                if s.conn_count() > 0 {
                    idle_since.remove(id);
                    return true;
                }
                let since = *idle_since.entry(*id).or_insert_with(Instant::now);
                let linger = if ended {
                    FINISHED_LINGER
                } else {
                    cfg.idle_timeout
                };
                if since.elapsed() < linger {
                    return true;
                }
                idle_since.remove(id);
                reported.remove(id);
                if !ended {
                    abandoned.push(Arc::clone(s));
                }
                false
            });
        }
        for s in abandoned {
            s.abort(ErrorMessage {
                code: ErrorCode::Aborted,
                message: "the sender went away".into(),
            });
            finished.push(s);
        }
        for s in finished {
            if s.sink {
                // Reported through the sink's handle; there is no file.
                continue;
            }
            // Nobody listening for reports is fine: the log has them too.
            let _ = done.send(report(&cfg.dir, &s));
        }
    }
}

fn report(dir: &Path, s: &RxSession) -> ReceivedFile {
    let st = s.status();
    let (path, outcome) = match st.outcome {
        Some(Ok(hash)) => (
            dir.join(&s.name),
            Ok(blake3::Hash::from_bytes(hash).to_hex().to_string()),
        ),
        Some(Err(e)) => (
            super::rx_session::partial_path(dir, &s.name),
            Err(e.message),
        ),
        None => (
            super::rx_session::partial_path(dir, &s.name),
            Err("unfinished".into()),
        ),
    };
    ReceivedFile {
        name: s.name.clone(),
        path,
        bytes: st.written,
        resumed_from: s.start,
        elapsed: s.started.elapsed(),
        outcome,
    }
}
