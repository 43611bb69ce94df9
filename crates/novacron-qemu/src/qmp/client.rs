//! [`QmpClient`]: connection set-up, request/reply correlation, events.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};

use super::line::{LineError, LineReader};
use super::message::{self, Message};
use super::{DisconnectReason, QemuVersion, QmpError, QmpEvent, QmpOptions, fd};

/// Commands queued for the writer task before submitters wait.
const OUTGOING_QUEUE: usize = 64;

/// Longest excerpt of a bad line that goes to the log.
const LOGGED_LINE_MAX: usize = 256;

/// A connected, negotiated QMP session. Cheap to share behind an `Arc`: every method takes
/// `&self`, and concurrent commands are matched to their replies by id.
///
/// Dropping the client stops its tasks and closes the socket; QEMU keeps running.
#[derive(Debug)]
pub struct QmpClient {
    shared: Arc<Shared>,
    outgoing: mpsc::Sender<Outgoing>,
    next_id: AtomicU64,
    timeout: Duration,
    version: QemuVersion,
    capabilities: Vec<String>,
    peer_pid: Option<u32>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// State shared by the client and its reader and writer tasks.
#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    events: broadcast::Sender<QmpEvent>,
    closed: watch::Sender<Option<DisconnectReason>>,
}

type Waiter = oneshot::Sender<Result<Value, QmpError>>;

#[derive(Debug, Default)]
struct Pending {
    waiters: HashMap<u64, Waiter>,
    /// Set once, when the connection closes; no waiter is registered after that.
    closed: Option<DisconnectReason>,
}

/// One command line for the writer task, with the descriptor to pass, if any.
#[derive(Debug)]
struct Outgoing {
    line: Vec<u8>,
    fd: Option<OwnedFd>,
}

impl QmpClient {
    /// Connects to QEMU's QMP socket at `path`, reads the greeting and negotiates
    /// capabilities, each within `options.timeout`.
    ///
    /// # Errors
    /// [`QmpError::Connect`] or [`QmpError::Timeout`] when the socket does not answer, the
    /// greeting errors when QEMU's first line is not a greeting, [`QmpError::Negotiate`] when
    /// `qmp_capabilities` fails.
    pub async fn connect(path: &Path, options: &QmpOptions) -> Result<Self, QmpError> {
        let stream = timeout(options.timeout, UnixStream::connect(path))
            .await
            .map_err(|_| QmpError::Timeout {
                step: "connect".to_owned(),
                after: options.timeout,
            })?
            .map_err(|source| QmpError::Connect {
                path: path.to_owned(),
                source,
            })?;
        Self::from_stream(stream, options).await
    }

    /// Runs the QMP handshake on an already connected stream.
    ///
    /// # Errors
    /// As for [`QmpClient::connect`], without the connect step.
    pub async fn from_stream(stream: UnixStream, options: &QmpOptions) -> Result<Self, QmpError> {
        let deadline = Instant::now() + options.timeout;
        let peer_pid = stream
            .peer_cred()
            .ok()
            .and_then(|cred| cred.pid())
            .and_then(|pid| u32::try_from(pid).ok());
        let (read, write) = stream.into_split();
        let mut lines = LineReader::new(read, options.max_line);

        let first = timeout_at(deadline, lines.read_line())
            .await
            .map_err(|_| QmpError::Timeout {
                step: "greeting".to_owned(),
                after: options.timeout,
            })?
            .map_err(QmpError::ReadGreeting)?
            .ok_or(QmpError::NoGreeting)?;
        let (version, capabilities) = match message::parse(&first) {
            Ok(Message::Greeting {
                version,
                capabilities,
            }) => (version, capabilities),
            Ok(_) => return Err(QmpError::NotAGreeting),
            Err(err) => return Err(QmpError::BadGreeting(err)),
        };

        let (events, _) = broadcast::channel(options.event_capacity.max(1));
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            events,
            closed: watch::Sender::new(None),
        });
        let (outgoing, queue) = mpsc::channel(OUTGOING_QUEUE);
        let reader = tokio::spawn(read_loop(lines, Arc::clone(&shared)));
        let writer = tokio::spawn(write_loop(
            queue,
            write,
            Arc::clone(&shared),
            options.timeout,
        ));
        let client = Self {
            shared,
            outgoing,
            next_id: AtomicU64::new(0),
            timeout: options.timeout,
            version,
            capabilities,
            peer_pid,
            reader,
            writer,
        };

        let remaining = deadline.saturating_duration_since(Instant::now());
        client
            .execute_inner("qmp_capabilities", Value::Null, None, remaining)
            .await
            .map_err(|err| QmpError::Negotiate(Box::new(err)))?;
        tracing::debug!(version = %client.version, ?peer_pid, "QMP session ready");
        Ok(client)
    }

    /// QEMU's version, from the greeting.
    #[must_use]
    pub fn version(&self) -> &QemuVersion {
        &self.version
    }

    /// Capabilities QEMU offered in its greeting (none are enabled by this client).
    #[must_use]
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// Pid of the process at the other end of the socket (`SO_PEERCRED`); `None` if the
    /// kernel could not tell.
    #[must_use]
    pub fn peer_pid(&self) -> Option<u32> {
        self.peer_pid
    }

    /// A receiver of the asynchronous events that arrive from now on. A receiver that falls
    /// more than [`QmpOptions::event_capacity`] events behind gets `Lagged` and skips ahead.
    #[must_use]
    pub fn events(&self) -> broadcast::Receiver<QmpEvent> {
        self.shared.events.subscribe()
    }

    /// Why the connection closed, or `None` while it is open.
    #[must_use]
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        *self.shared.closed.borrow()
    }

    /// Waits until the connection closes. This has no deadline of its own: QEMU may run for
    /// months; wrap it in a timeout where one is wanted.
    pub async fn closed(&self) -> DisconnectReason {
        let mut rx = self.shared.closed.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.unwrap_or(DisconnectReason::Eof),
            // The sender lives in `self.shared`, so this cannot happen while `self` exists.
            Err(_) => DisconnectReason::Eof,
        }
    }

    /// Executes `command` with `arguments` (`Value::Null` for none) and returns QEMU's
    /// `return` value, within the client's timeout.
    ///
    /// # Errors
    /// [`QmpError::Command`] when QEMU refuses the command, [`QmpError::Timeout`] when no reply
    /// comes in time, [`QmpError::Disconnected`] when the connection closes first,
    /// [`QmpError::MalformedReply`] when the reply is not valid QMP.
    pub async fn execute(&self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        self.execute_inner(command, arguments, None, self.timeout)
            .await
    }

    /// As [`QmpClient::execute`], with another deadline.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`].
    pub async fn execute_with_timeout(
        &self,
        command: &str,
        arguments: Value,
        deadline: Duration,
    ) -> Result<Value, QmpError> {
        self.execute_inner(command, arguments, None, deadline).await
    }

    /// Sends `getfd` with `fd` attached (`SCM_RIGHTS`), so that QEMU holds a copy of it under
    /// `name` for later commands (`migrate` to `fd:NAME`, `closefd`). Our descriptor stays ours.
    ///
    /// # Errors
    /// [`QmpError::DuplicateFd`] if the descriptor cannot be duplicated for sending, otherwise
    /// as for [`QmpClient::execute`].
    pub async fn send_fd(&self, name: &str, fd: BorrowedFd<'_>) -> Result<(), QmpError> {
        let owned = fd.try_clone_to_owned().map_err(QmpError::DuplicateFd)?;
        let mut arguments = Map::new();
        arguments.insert("fdname".to_owned(), Value::from(name));
        self.execute_inner("getfd", Value::Object(arguments), Some(owned), self.timeout)
            .await
            .map(drop)
    }

    async fn execute_inner(
        &self,
        command: &str,
        arguments: Value,
        fd: Option<OwnedFd>,
        limit: Duration,
    ) -> Result<Value, QmpError> {
        let deadline = Instant::now() + limit;
        let timed_out = || QmpError::Timeout {
            step: format!("reply to `{command}`"),
            after: limit,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = encode_request(command, arguments, id)?;
        let reply = self.shared.register(id)?;
        // Removes the waiter however this call ends (reply, timeout, or the caller dropping us).
        let _registered = Registered {
            shared: &self.shared,
            id,
        };

        match timeout_at(deadline, self.outgoing.send(Outgoing { line, fd })).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(_)) => return Err(QmpError::Disconnected(self.shared.reason())),
            Ok(Ok(())) => {}
        }
        match timeout_at(deadline, reply).await {
            Err(_) => Err(timed_out()),
            Ok(Err(_)) => Err(QmpError::Disconnected(self.shared.reason())),
            Ok(Ok(result)) => result,
        }
    }
}

impl Drop for QmpClient {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// Deregisters a waiter when dropped.
struct Registered<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shared.lock().waiters.remove(&self.id);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // N.B. No code holding this lock can panic, but a poisoned lock must not take the
        // whole client down either.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, id: u64) -> Result<oneshot::Receiver<Result<Value, QmpError>>, QmpError> {
        let mut pending = self.lock();
        if let Some(reason) = pending.closed {
            return Err(QmpError::Disconnected(reason));
        }
        let (tx, rx) = oneshot::channel();
        pending.waiters.insert(id, tx);
        Ok(rx)
    }

    fn resolve(&self, id: u64, result: Result<Value, QmpError>) {
        let waiter = self.lock().waiters.remove(&id);
        match waiter {
            // A send error means the caller stopped waiting (timeout): nothing to do.
            Some(waiter) => drop(waiter.send(result)),
            None => tracing::debug!(id, "QMP reply for a request nobody waits for"),
        }
    }

    fn reason(&self) -> DisconnectReason {
        self.lock().closed.unwrap_or(DisconnectReason::Eof)
    }

    /// Marks the connection closed (first reason wins) and fails every waiter.
    fn close(&self, reason: DisconnectReason) {
        let (reason, waiters) = {
            let mut pending = self.lock();
            let reason = *pending.closed.get_or_insert(reason);
            (reason, std::mem::take(&mut pending.waiters))
        };
        for (_, waiter) in waiters {
            // The caller may have given up already; nothing to tell it then.
            drop(waiter.send(Err(QmpError::Disconnected(reason))));
        }
        self.closed.send_if_modified(|closed| {
            let changed = closed.is_none();
            closed.get_or_insert(reason);
            changed
        });
    }

    fn dispatch(&self, line: &[u8]) {
        match message::parse(line) {
            Ok(Message::Return {
                id: Some(id),
                value,
            }) => self.resolve(id, Ok(value)),
            Ok(Message::Error {
                id: Some(id),
                class,
                desc,
            }) => self.resolve(id, Err(QmpError::Command { class, desc })),
            Ok(Message::Return { id: None, .. } | Message::Error { id: None, .. }) => {
                tracing::warn!(line = %excerpt(line), "QMP reply without a request id of ours");
            }
            Ok(Message::Event(event)) => {
                tracing::debug!(event = %event.name, "QMP event");
                // No subscriber is not an error: events are optional to consume.
                drop(self.events.send(event));
            }
            Ok(Message::Greeting { .. }) => {
                tracing::warn!("QMP greeting in the middle of a session; ignored");
            }
            Err(err) => match err.id() {
                Some(id) => self.resolve(id, Err(QmpError::MalformedReply(err))),
                None => {
                    tracing::warn!(error = %err, line = %excerpt(line), "ignoring a bad QMP line")
                }
            },
        }
    }
}

fn encode_request(command: &str, arguments: Value, id: u64) -> Result<Vec<u8>, QmpError> {
    let mut request = Map::new();
    request.insert("execute".to_owned(), Value::from(command));
    if !arguments.is_null() {
        request.insert("arguments".to_owned(), arguments);
    }
    request.insert("id".to_owned(), Value::from(id));
    let mut line = serde_json::to_vec(&request).map_err(QmpError::Encode)?;
    line.push(b'\n');
    Ok(line)
}

/// The start of a line, lossily decoded, for logs.
fn excerpt(line: &[u8]) -> String {
    let head = line.get(..LOGGED_LINE_MAX).unwrap_or(line);
    String::from_utf8_lossy(head).into_owned()
}

/// Reads lines until the connection ends, then closes the session. Waiting for the next line
/// has no deadline: an idle QEMU sends nothing, and callers bound their own waits.
async fn read_loop(mut lines: LineReader<OwnedReadHalf>, shared: Arc<Shared>) {
    let reason = loop {
        match lines.read_line().await {
            Ok(Some(line)) => shared.dispatch(&line),
            Ok(None) => break DisconnectReason::Eof,
            Err(LineError::TooLong { limit }) => break DisconnectReason::LineTooLong { limit },
            // QEMU exiting with our bytes unread resets the socket instead of closing it.
            Err(LineError::Io(err)) if err.kind() == std::io::ErrorKind::ConnectionReset => {
                break DisconnectReason::Eof;
            }
            Err(LineError::Io(err)) => break DisconnectReason::Read(err.kind()),
        }
    };
    tracing::debug!(%reason, "QMP connection closed");
    shared.close(reason);
}

/// Writes queued commands in order, each whole, within `limit` per command. A failed write
/// leaves the stream in an unknown state, so it closes the session.
async fn write_loop(
    mut queue: mpsc::Receiver<Outgoing>,
    mut write: OwnedWriteHalf,
    shared: Arc<Shared>,
    limit: Duration,
) {
    while let Some(outgoing) = queue.recv().await {
        let reason = match timeout(limit, write_one(&mut write, &outgoing)).await {
            Ok(Ok(())) => continue,
            Ok(Err(err)) => DisconnectReason::Write(err.kind()),
            Err(_) => DisconnectReason::WriteTimeout,
        };
        tracing::warn!(%reason, "QMP write failed; closing the session");
        shared.close(reason);
        // Best effort: tell QEMU we are gone; the session is closed either way.
        drop(timeout(limit, write.shutdown()).await);
        return;
    }
}

async fn write_one(write: &mut OwnedWriteHalf, outgoing: &Outgoing) -> std::io::Result<()> {
    let mut rest = outgoing.line.as_slice();
    if let Some(pass) = &outgoing.fd {
        let stream: &UnixStream = write.as_ref();
        let sent = stream
            .async_io(Interest::WRITABLE, || {
                fd::send_with_fd(stream.as_fd(), &outgoing.line, pass.as_fd())
            })
            .await?;
        rest = outgoing.line.get(sent..).unwrap_or_default();
    }
    write.write_all(rest).await?;
    write.flush().await
}
