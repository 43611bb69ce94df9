//! A running QEMU: start it so that it outlives the daemon, re-attach to it after a daemon
//! restart, learn when it exits, and stop it.
//!
//! ```text
//!  start(spec) ──> QEMU in its own session, stdio to RUN_DIR/qemu.log ──> QMP connected
//!                     │ we are the parent: exit status from wait()
//!  (daemon restarts)  │
//!  attach(run_dir) ──> pidfile ──> pidfd ──> /proc/PID/cmdline has our -pidfile ──> QMP
//!                        exit seen through the pidfd, without a status
//! ```
//!
//! Stopping: [`QemuProcess::shutdown_graceful`] presses the power button, then falls back to
//! `quit`, then to `SIGKILL`, each with a bounded wait.
//!
//! - `handle`: [`QemuProcess`] itself.
//! - `rundir`: finding the run directory's QEMU (pidfile, pidfd, command line).

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::launch::LaunchSpecError;
use crate::qmp::QmpError;

mod handle;
mod rundir;

pub use handle::QemuProcess;

/// How long QEMU may take to create its QMP socket and accept the handshake.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `quit` may take to end QEMU before `SIGKILL`.
pub const QUIT_GRACE: Duration = Duration::from_secs(5);

/// How long a `SIGKILL`ed QEMU may take to disappear (it may be in uninterruptible I/O).
pub const KILL_WAIT: Duration = Duration::from_secs(10);

/// How a QEMU process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuExit {
    /// It exited while we were its parent: the status is known.
    Exited {
        /// Exit code, when it exited normally.
        code: Option<i32>,
        /// Signal that killed it, when one did.
        signal: Option<i32>,
    },
    /// It exited while not supervised by this handle's parent process (re-attached after a
    /// daemon restart): the status went to its reaper, not to us.
    ExitedUnsupervised,
}

impl QemuExit {
    fn from_status(status: ExitStatus) -> Self {
        Self::Exited {
            code: status.code(),
            signal: status.signal(),
        }
    }
}

impl fmt::Display for QemuExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited {
                code: Some(code), ..
            } => write!(f, "exited with code {code}"),
            Self::Exited {
                signal: Some(signal),
                ..
            } => write!(f, "killed by signal {signal}"),
            Self::Exited { .. } => f.write_str("exited"),
            Self::ExitedUnsupervised => f.write_str("exited while not supervised"),
        }
    }
}

/// Which step of [`QemuProcess::shutdown_graceful`] ended QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMethod {
    /// It had exited before the shutdown began.
    AlreadyExited,
    /// The guest powered off after the ACPI power button.
    Powerdown,
    /// QMP `quit`.
    Quit,
    /// `SIGKILL`.
    Kill,
}

impl fmt::Display for ShutdownMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AlreadyExited => "already-exited",
            Self::Powerdown => "powerdown",
            Self::Quit => "quit",
            Self::Kill => "kill",
        })
    }
}

/// The result of [`QemuProcess::shutdown_graceful`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownOutcome {
    /// The step that ended QEMU.
    pub method: ShutdownMethod,
    /// How it ended.
    pub exit: QemuExit,
}

/// A failed start, attach or stop.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The spec is invalid.
    #[error("invalid launch spec")]
    Spec(#[from] LaunchSpecError),
    /// The run directory could not be created or resolved.
    #[error("could not prepare run directory {path}")]
    RunDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A QEMU of this run directory is already running.
    #[error("QEMU {pid} is already running in this run directory")]
    AlreadyRunning {
        /// Its pid.
        pid: u32,
    },
    /// A file of the run directory could not be opened, read or removed.
    #[error("could not use {path}")]
    RunFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// QEMU could not be executed.
    #[error("could not execute {program}")]
    Spawn {
        /// The program.
        program: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// QEMU exited while starting; `log_tail` holds the end of its output.
    #[error("QEMU {exit} while starting: {log_tail}")]
    ExitedWhileStarting {
        /// How it ended.
        exit: QemuExit,
        /// Last lines of `qemu.log`.
        log_tail: String,
    },
    /// The QMP socket did not accept a connection in time.
    #[error("QMP socket {path} not ready within {after:?}")]
    SocketTimeout {
        /// The socket.
        path: PathBuf,
        /// The deadline.
        after: Duration,
    },
    /// The QMP handshake failed.
    #[error("could not open a QMP session")]
    Qmp(#[source] QmpError),
    /// The pidfile does not hold a pid.
    #[error("pidfile {path} does not hold a pid")]
    BadPidfile {
        /// The pidfile.
        path: PathBuf,
    },
    /// No QEMU runs for this run directory.
    #[error("no QEMU is running for this run directory (pid {pid:?})")]
    NotRunning {
        /// The pid the pidfile named, if there was one.
        pid: Option<u32>,
    },
    /// The pid is alive but is not this run directory's QEMU (a reused pid).
    #[error("process {pid} is not the QEMU of this run directory")]
    NotOurQemu {
        /// The pid.
        pid: u32,
    },
    /// The QMP socket is served by another process than the pidfile names.
    #[error("QMP socket is served by pid {found:?}, not by QEMU {expected}")]
    PeerMismatch {
        /// The pid from the pidfile.
        expected: u32,
        /// The pid at the other end of the socket.
        found: Option<u32>,
    },
    /// A pidfd operation failed.
    #[error("could not watch process {pid}")]
    Pidfd {
        /// The pid.
        pid: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Signalling QEMU failed.
    #[error("could not signal QEMU {pid}")]
    Signal {
        /// The pid.
        pid: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// QEMU still ran after `SIGKILL` and the wait that follows.
    #[error("QEMU {pid} did not exit within {after:?} of SIGKILL")]
    KillTimeout {
        /// The pid.
        pid: u32,
        /// The wait.
        after: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_and_their_futures_can_move_between_tasks() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: &T) {}
        send_sync::<QemuProcess>();
        send_sync::<crate::qmp::QmpClient>();
        // Type-checked, never run: the daemon spawns these futures on its runtime.
        let _futures_are_send = |process: &QemuProcess, fd: std::os::fd::BorrowedFd<'_>| {
            send(&process.shutdown_graceful(Duration::ZERO));
            send(&process.kill());
            send(&process.wait_exit(Duration::ZERO));
            send(&process.qmp().query_status());
            send(&process.qmp().send_fd("fd", fd));
            send(&QemuProcess::attach(std::path::Path::new("/")));
        };
        let _start_is_send = |spec: &crate::LaunchSpec| send(&QemuProcess::start(spec));
    }

    #[test]
    fn exit_descriptions_say_how_qemu_ended() {
        let code = QemuExit::Exited {
            code: Some(1),
            signal: None,
        };
        let signal = QemuExit::Exited {
            code: None,
            signal: Some(9),
        };
        assert_eq!(code.to_string(), "exited with code 1");
        assert_eq!(signal.to_string(), "killed by signal 9");
        assert_eq!(
            QemuExit::ExitedUnsupervised.to_string(),
            "exited while not supervised"
        );
    }
}
