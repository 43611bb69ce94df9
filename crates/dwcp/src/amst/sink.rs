//! Stream sinks: the owner of a [`super::Receiver`] registers, before the sender connects, a
//! writer for a session name. A session whose `Hello` names a registered sink writes its
//! in-order stream into that writer instead of `NAME.partial`, and reports progress and its
//! outcome through the [`SinkHandle`] returned at registration.
//!
//! Registration is one-shot: the first session with the name consumes it and any later one is
//! refused. Dropping the handle withdraws the name: a session that arrives afterwards is refused
//! too, rather than falling back to storing a file (the receiver remembers the last
//! [`MAX_WITHDRAWN`] withdrawn names).

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::names::{NameError, validate_name};
use super::rx_session::{RxStatus, fail};
use crate::wire::{ErrorCode, ErrorMessage};

/// Most sinks registered at once (waiting for their session or in use).
pub const MAX_SINKS: usize = 64;
/// Withdrawn names remembered (and refused); older ones are forgotten first.
pub const MAX_WITHDRAWN: usize = 256;

/// Why a sink could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    /// The name would not be accepted from a sender either.
    #[error("invalid sink name")]
    BadName(#[source] NameError),
    /// A sink with this name is registered already (waiting or in use).
    #[error("a sink named {0} is already registered")]
    AlreadyRegistered(String),
    /// [`MAX_SINKS`] sinks are registered already.
    #[error("at most {MAX_SINKS} sinks may be registered at once")]
    TooMany,
}

/// Why a sink's session did not deliver a verified stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The session failed; the reason is also what the sender was told.
    #[error("the session failed: {message}")]
    Failed {
        /// Class of the failure.
        code: ErrorCode,
        /// One line for a person.
        message: String,
    },
    /// The session ended without an outcome (it was dropped while opening).
    #[error("the session ended before the stream was complete")]
    Unfinished,
}

/// What a sink's session has done so far, published on [`SinkHandle::status`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkState {
    /// Whether a session has taken the sink.
    pub claimed: bool,
    /// Bytes of the stream written into the sink's writer.
    pub delivered: u64,
    /// Set once when the session ends: the verified BLAKE3 of the whole stream, or why the
    /// session failed. Bytes already delivered are not taken back on failure.
    pub outcome: Option<Result<blake3::Hash, SinkError>>,
}

/// A registered sink, owned by its registrant. Dropping it before a session claimed the sink
/// withdraws the name; dropping it afterwards leaves the session running (it ends when the
/// stream does, or when the writer fails).
#[derive(Debug)]
pub struct SinkHandle {
    name: String,
    token: u64,
    registry: Arc<Mutex<Registry>>,
    status: watch::Receiver<SinkState>,
}

impl SinkHandle {
    /// The session name this sink receives.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A receiver of the sink's state: bytes delivered so far and, at the end, the outcome.
    #[must_use]
    pub fn status(&self) -> watch::Receiver<SinkState> {
        self.status.clone()
    }

    /// Bytes written into the sink's writer so far.
    #[must_use]
    pub fn delivered(&self) -> u64 {
        self.status.borrow().delivered
    }

    /// The outcome, if the session has ended.
    #[must_use]
    pub fn try_outcome(&self) -> Option<Result<blake3::Hash, SinkError>> {
        self.status.borrow().outcome.clone()
    }

    /// Waits until the session ends and returns its outcome: the verified BLAKE3 of the whole
    /// stream, or why it failed. Waits as long as no sender arrives: wrap it in a timeout.
    ///
    /// # Errors
    /// A [`SinkError`] when the session failed or the receiver went away.
    pub async fn outcome(&mut self) -> Result<blake3::Hash, SinkError> {
        let waited = self
            .status
            .wait_for(|s| s.outcome.is_some())
            .await
            .map(|state| state.outcome.clone());
        match waited {
            Ok(Some(outcome)) => outcome,
            // The publisher is gone without an outcome.
            Ok(None) | Err(_) => Err(SinkError::Unfinished),
        }
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        lock(&self.registry).withdraw(&self.name, self.token);
    }
}

/// The sinks of one receiver. Cheap to clone; every clone sees the same registrations.
#[derive(Debug, Clone, Default)]
pub struct SinkRegistry {
    inner: Arc<Mutex<Registry>>,
}

impl SinkRegistry {
    /// Registers `writer` for the session named `name`: the in-order stream of the first
    /// session with that name is written into it (blocking writes, on the session's writer
    /// thread) instead of a file.
    ///
    /// # Errors
    /// [`ExpectError`] for an invalid or already registered name, or when [`MAX_SINKS`] are
    /// registered.
    pub fn expect(
        &self,
        name: &str,
        writer: Box<dyn Write + Send>,
    ) -> Result<SinkHandle, ExpectError> {
        validate_name(name).map_err(ExpectError::BadName)?;
        let mut reg = lock(&self.inner);
        if matches!(
            reg.slots.get(name),
            Some(Slot::Pending { .. } | Slot::Taken { .. })
        ) {
            return Err(ExpectError::AlreadyRegistered(name.to_owned()));
        }
        let live = reg
            .slots
            .values()
            .filter(|s| !matches!(s, Slot::Withdrawn))
            .count();
        if live >= MAX_SINKS {
            return Err(ExpectError::TooMany);
        }
        reg.withdrawn.retain(|n| n != name);
        reg.next_token += 1;
        let token = reg.next_token;
        let (state, status) = watch::channel(SinkState::default());
        reg.slots.insert(
            name.to_owned(),
            Slot::Pending {
                token,
                out: Box::new(SinkOut {
                    name: name.to_owned(),
                    writer,
                    state,
                    session: None,
                }),
            },
        );
        Ok(SinkHandle {
            name: name.to_owned(),
            token,
            registry: Arc::clone(&self.inner),
            status,
        })
    }

    /// Decides where the session named `name` goes.
    pub(crate) fn claim(&self, name: &str, resume: bool) -> Claim {
        let mut reg = lock(&self.inner);
        let Some(slot) = reg.slots.get_mut(name) else {
            return Claim::File;
        };
        match slot {
            Slot::Pending { .. } if resume => Claim::Refused(fail(
                ErrorCode::NoSession,
                format!("{name} is received into a stream, which cannot be resumed"),
            )),
            Slot::Pending { token, .. } => {
                let taken = Slot::Taken { token: *token };
                match std::mem::replace(slot, taken) {
                    Slot::Pending { out, .. } => {
                        out.state.send_modify(|s| s.claimed = true);
                        Claim::Sink(out)
                    }
                    // Matched as pending just above.
                    Slot::Taken { .. } | Slot::Withdrawn => Claim::File,
                }
            }
            Slot::Taken { .. } => Claim::Refused(fail(
                ErrorCode::Busy,
                format!("{name} was already received by another session"),
            )),
            Slot::Withdrawn => Claim::Refused(fail(
                ErrorCode::NoSession,
                format!("the receiver no longer expects {name}"),
            )),
        }
    }
}

/// Where a new session goes.
pub(crate) enum Claim {
    /// No sink: store a file, as always.
    File,
    /// Into this sink.
    Sink(Box<SinkOut>),
    /// Nowhere: refuse the session.
    Refused(ErrorMessage),
}

#[derive(Debug, Default)]
struct Registry {
    slots: HashMap<String, Slot>,
    /// Withdrawn names, oldest first (each also has a [`Slot::Withdrawn`]).
    withdrawn: VecDeque<String>,
    next_token: u64,
}

impl Registry {
    fn withdraw(&mut self, name: &str, token: u64) {
        let ours = matches!(
            self.slots.get(name),
            Some(Slot::Pending { token: t, .. } | Slot::Taken { token: t }) if *t == token
        );
        if !ours {
            return;
        }
        self.slots.insert(name.to_owned(), Slot::Withdrawn);
        self.withdrawn.push_back(name.to_owned());
        while self.withdrawn.len() > MAX_WITHDRAWN {
            if let Some(old) = self.withdrawn.pop_front() {
                if matches!(self.slots.get(&old), Some(Slot::Withdrawn)) {
                    self.slots.remove(&old);
                }
            }
        }
    }
}

#[derive(Debug)]
enum Slot {
    /// Registered, waiting for its session.
    Pending { token: u64, out: Box<SinkOut> },
    /// Claimed by a session; the handle still lives.
    Taken { token: u64 },
    /// The handle was dropped: sessions with this name are refused.
    Withdrawn,
}

fn lock(m: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A claimed sink, driven by the session's writer thread. When it is dropped (the writer
/// thread ended, or the session never started) it publishes the session's outcome.
pub(crate) struct SinkOut {
    name: String,
    writer: Box<dyn Write + Send>,
    state: watch::Sender<SinkState>,
    session: Option<watch::Receiver<RxStatus>>,
}

impl std::fmt::Debug for SinkOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkOut")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SinkOut {
    /// The session name, for logs.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Ties the sink to its session, whose outcome it reports when dropped.
    pub(crate) fn attach(&mut self, session: watch::Receiver<RxStatus>) {
        self.session = Some(session);
    }

    /// Writes the next bytes of the stream (blocking) and publishes the count.
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<(), ErrorMessage> {
        self.writer.write_all(data).map_err(|e| self.broken(&e))?;
        let n = data.len() as u64;
        self.state.send_modify(|s| s.delivered += n);
        Ok(())
    }

    /// Flushes the writer: called whenever no more data is waiting, so small writes are not
    /// held back by a buffering writer.
    pub(crate) fn flush(&mut self) -> Result<(), ErrorMessage> {
        self.writer.flush().map_err(|e| self.broken(&e))
    }

    fn broken(&self, e: &std::io::Error) -> ErrorMessage {
        fail(
            ErrorCode::Storage,
            format!(
                "the receiver's destination for {} stopped taking data: {e}",
                self.name
            ),
        )
    }
}

impl Drop for SinkOut {
    fn drop(&mut self) {
        let outcome = match self
            .session
            .as_ref()
            .and_then(|s| s.borrow().outcome.clone())
        {
            Some(Ok(hash)) => Ok(blake3::Hash::from_bytes(hash)),
            Some(Err(msg)) => Err(SinkError::Failed {
                code: msg.code,
                message: msg.message,
            }),
            None => Err(SinkError::Unfinished),
        };
        self.state.send_if_modified(|s| {
            if s.outcome.is_some() {
                return false;
            }
            s.outcome = Some(outcome);
            true
        });
    }
}
