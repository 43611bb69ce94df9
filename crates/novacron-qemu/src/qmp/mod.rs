//! An asynchronous QMP (QEMU Machine Protocol) client over a Unix socket.
//!
//! [`QmpClient`] reads QEMU's greeting, negotiates capabilities, then runs one reader task
//! that matches replies to requests by id (so any number of callers may execute commands
//! concurrently) and publishes asynchronous events on a broadcast channel. A writer task owns
//! the socket's write side, so a caller that gives up (timeout, cancellation) can never leave
//! half a command on the wire.
//!
//! ```text
//! client                                   QEMU
//!   |  <------------------ {"QMP": {"version": .., "capabilities": [..]}}
//!   |  {"execute": "qmp_capabilities", "id": 0} ------------------>
//!   |  <------------------ {"return": {}, "id": 0}
//!   |  {"execute": "query-status", "id": 1} ---------------------->
//!   |  <------------------ {"event": "STOP", ..}          (any time, to the broadcast)
//!   |  <------------------ {"return": {"status": "paused", ..}, "id": 1}
//! ```
//!
//! Every wait has a deadline ([`QmpOptions::timeout`]), and every line read is bounded
//! ([`QmpOptions::max_line`]): a longer line closes the connection.
//!
//! - [`client`]: [`QmpClient`], `execute` and events.
//! - [`commands`]: typed helpers for the commands the node daemon needs.
//! - [`block`]: NBD server, exports and client nodes, mirror jobs (disks that move with a
//!   migration).
//! - [`migrate`]: live migration commands ([`MigrationInfo`], [`MigrationParameters`]) and
//!   [`wait_migration`].
//! - `message`: parsing of QEMU's lines; `line`: bounded line reads; `fd`: `SCM_RIGHTS`.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub mod block;
pub mod client;
pub mod commands;
mod fd;
pub mod line;
pub mod message;
pub mod migrate;

#[cfg(test)]
mod block_test;
#[cfg(test)]
mod client_test;
#[cfg(test)]
mod commands_test;
#[cfg(test)]
mod testing;

pub use client::QmpClient;
pub use commands::{CpuInfo, RunState, StatusInfo};
pub use migrate::{
    MigrationEvent, MigrationInfo, MigrationParameters, MigrationStatus, RamStats,
    WaitMigrationError, next_migration_event, wait_migration, wait_migration_for,
};

/// Default deadline for connecting, the greeting, and each command's reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default cap on one line from QEMU. Real replies are far smaller; the cap exists so that a
/// broken peer cannot make us allocate without bound.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

/// Default number of events kept for slow subscribers before they see `Lagged`.
pub const DEFAULT_EVENT_CAPACITY: usize = 256;

/// Tunables of a [`QmpClient`].
#[derive(Debug, Clone)]
pub struct QmpOptions {
    /// Deadline for connecting, for the greeting plus negotiation, and for each command's
    /// reply (from the moment it is submitted).
    pub timeout: Duration,
    /// Longest line accepted from QEMU, in bytes.
    pub max_line: usize,
    /// Capacity of the event broadcast channel, in events.
    pub event_capacity: usize,
}

impl Default for QmpOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_line: DEFAULT_MAX_LINE,
            event_capacity: DEFAULT_EVENT_CAPACITY,
        }
    }
}

/// QEMU's version, from the QMP greeting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QemuVersion {
    /// Major version (10 for QEMU 10.0.2).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Micro version.
    pub micro: u32,
    /// Distribution package string; empty when QEMU was built without one.
    pub package: String,
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)?;
        if !self.package.is_empty() {
            write!(f, " ({})", self.package)?;
        }
        Ok(())
    }
}

/// An asynchronous event from QEMU (`STOP`, `RESUME`, `SHUTDOWN`, `MIGRATION`...).
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// Event name, as QEMU spells it (`SHUTDOWN`).
    pub name: String,
    /// Event data; `Null` when the event has none.
    pub data: serde_json::Value,
    /// When QEMU emitted the event; `None` when QEMU sent no valid timestamp.
    pub timestamp: Option<SystemTime>,
}

/// Why a QMP connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// QEMU closed the socket (usually: it exited), or reset it by closing with bytes unread.
    Eof,
    /// QEMU sent a line longer than the limit.
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// Reading failed.
    Read(io::ErrorKind),
    /// Writing failed.
    Write(io::ErrorKind),
    /// A write did not complete within the deadline.
    WriteTimeout,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Eof => f.write_str("closed by QEMU"),
            Self::LineTooLong { limit } => write!(f, "QEMU sent a line over {limit} bytes"),
            Self::Read(kind) => write!(f, "read failed: {kind}"),
            Self::Write(kind) => write!(f, "write failed: {kind}"),
            Self::WriteTimeout => f.write_str("write timed out"),
        }
    }
}

/// A failed QMP operation.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// Connecting to the socket failed.
    #[error("could not connect to the QMP socket {path}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A step did not finish within its deadline.
    #[error("QMP {step} did not finish within {after:?}")]
    Timeout {
        /// The step: `connect`, `greeting`, or `reply to <command>`.
        step: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// Reading the greeting failed.
    #[error("could not read the QMP greeting")]
    ReadGreeting(#[source] line::LineError),
    /// The socket closed before a greeting arrived.
    #[error("QMP socket closed before the greeting")]
    NoGreeting,
    /// The first line was not a valid greeting.
    #[error("invalid QMP greeting")]
    BadGreeting(#[source] message::MessageError),
    /// The first message was valid QMP but not a greeting.
    #[error("QMP peer did not start with a greeting")]
    NotAGreeting,
    /// `qmp_capabilities` failed.
    #[error("QMP capabilities negotiation failed")]
    Negotiate(#[source] Box<QmpError>),
    /// QEMU answered a command with an error.
    #[error("QMP command failed: {class}: {desc}")]
    Command {
        /// QMP error class (`GenericError`, `CommandNotFound`, `DeviceNotActive`...).
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// The connection closed; the command may or may not have run.
    #[error("QMP connection closed: {0}")]
    Disconnected(DisconnectReason),
    /// QEMU's reply to our request was not valid QMP.
    #[error("malformed QMP reply")]
    MalformedReply(#[source] message::MessageError),
    /// A typed helper could not decode a successful reply.
    #[error("unexpected reply to `{command}`")]
    UnexpectedReturn {
        /// The command.
        command: &'static str,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The request could not be encoded as JSON.
    #[error("could not encode the QMP request")]
    Encode(#[source] serde_json::Error),
    /// The descriptor to pass could not be duplicated for sending.
    #[error("could not duplicate the descriptor to pass")]
    DuplicateFd(#[source] io::Error),
    /// A path to pass is not UTF-8, which QMP's JSON cannot carry.
    #[error("path {} is not UTF-8", .0.display())]
    NonUtf8Path(PathBuf),
}

impl QmpError {
    /// The QMP error class when QEMU refused the command.
    #[must_use]
    pub fn class(&self) -> Option<&str> {
        match self {
            Self::Command { class, .. } => Some(class),
            _ => None,
        }
    }
}
