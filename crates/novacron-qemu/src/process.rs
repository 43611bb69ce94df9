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

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout, timeout_at};

use crate::launch::{LaunchSpec, LaunchSpecError, QEMU_BINARY, RunPaths, cmdline_matches};
use crate::logs;
use crate::pidfd;
use crate::qmp::{QmpClient, QmpError, QmpOptions};

/// How long QEMU may take to create its QMP socket and accept the handshake.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `quit` may take to end QEMU before `SIGKILL`.
pub const QUIT_GRACE: Duration = Duration::from_secs(5);

/// How long a `SIGKILL`ed QEMU may take to disappear (it may be in uninterruptible I/O).
pub const KILL_WAIT: Duration = Duration::from_secs(10);

/// Interval between checks for the QMP socket while QEMU starts.
const SOCKET_POLL: Duration = Duration::from_millis(20);

/// Lines of `qemu.log` attached to a start failure.
const LOG_LINES_ON_FAILURE: usize = 20;

/// Largest pidfile or `/proc/PID/cmdline` we read.
const PIDFILE_MAX: u64 = 64;
const CMDLINE_MAX: u64 = 1024 * 1024;

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

/// A QEMU process and its QMP session.
///
/// Dropping the handle leaves QEMU running (that is the point: the daemon may restart and
/// [`QemuProcess::attach`] again); it only stops this handle's tasks.
#[derive(Debug)]
pub struct QemuProcess {
    pid: u32,
    paths: RunPaths,
    qmp: QmpClient,
    /// `None` only for a child whose pidfd could not be opened (then `kill(2)` is used,
    /// safely: an unreaped child's pid cannot be reused).
    pidfd: Option<OwnedFd>,
    supervised: bool,
    exit: watch::Receiver<Option<QemuExit>>,
    watcher: JoinHandle<()>,
}

impl QemuProcess {
    /// Starts QEMU for `spec` and connects QMP. QEMU runs in its own session with its output
    /// in `qemu.log` and no pipe to us, so it survives the daemon being killed.
    ///
    /// # Errors
    /// [`ProcessError::AlreadyRunning`] if the run directory's QEMU still runs; a spec,
    /// file or spawn error; [`ProcessError::ExitedWhileStarting`] with QEMU's last words;
    /// [`ProcessError::SocketTimeout`] or [`ProcessError::Qmp`]. QEMU is killed on any
    /// failure after it was spawned.
    pub async fn start(spec: &LaunchSpec) -> Result<Self, ProcessError> {
        spec.validate()?;
        let paths = prepare_run_dir(&spec.run_dir)?;
        let args = spec.qemu_args(&paths)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&paths.qemu_log)
            .map_err(|source| run_file(&paths.qemu_log, source))?;
        let log_err = log
            .try_clone()
            .map_err(|source| run_file(&paths.qemu_log, source))?;

        let mut command = tokio::process::Command::new(QEMU_BINARY);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(false);
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe functions may be called; setsid(2) is one, and the closure
        // allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(|| {
                // A session of its own: no terminal hang-up and no signal to the daemon's
                // process group reaches QEMU.
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
            program: QEMU_BINARY,
            source,
        })?;
        let Some(pid) = child.id() else {
            // Only after a wait() has reaped it; this child has not been waited for.
            let status = child.wait().await.ok();
            return Err(ProcessError::ExitedWhileStarting {
                exit: status.map_or(QemuExit::ExitedUnsupervised, QemuExit::from_status),
                log_tail: String::new(),
            });
        };
        let pidfd = pidfd::open(pid)
            .inspect_err(|err| tracing::warn!(pid, %err, "no pidfd; signalling by pid"))
            .ok();

        let (exit_tx, exit) = watch::channel(None);
        let watcher = tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => QemuExit::from_status(status),
                Err(err) => {
                    tracing::warn!(pid, %err, "could not wait for QEMU");
                    QemuExit::ExitedUnsupervised
                }
            };
            exit_tx.send_replace(Some(exit));
        });
        tracing::info!(pid, name = %spec.name, run_dir = %paths.run_dir.display(), "QEMU started");

        // N.B. Not cancel-safe from here: a caller that drops this future leaves QEMU
        // running, as a daemon crash would, and `attach` can take it over.
        let mut process = PartialProcess {
            pid,
            pidfd,
            exit,
            watcher,
        };
        match connect_while_starting(&paths, &mut process.exit).await {
            Ok(qmp) => Ok(process.complete(paths, qmp, true)),
            Err(err) => {
                process.kill_after_failed_start().await;
                process.watcher.abort();
                Err(err)
            }
        }
    }

    /// Re-attaches to the QEMU of `run_dir`, started earlier (by this daemon before a
    /// restart). Its exit will be seen, but without a status.
    ///
    /// # Errors
    /// [`ProcessError::NotRunning`] when no QEMU runs there, [`ProcessError::NotOurQemu`] when
    /// the pidfile's pid now belongs to another process, [`ProcessError::PeerMismatch`] when
    /// the socket is served by another process, and file, pidfd or QMP errors.
    pub async fn attach(run_dir: &Path) -> Result<Self, ProcessError> {
        let run_dir = fs::canonicalize(run_dir).map_err(|source| ProcessError::RunDir {
            path: run_dir.to_owned(),
            source,
        })?;
        let paths = RunPaths::new(&run_dir);
        let (pid, pidfd) = find_running(&paths)?.ok_or(ProcessError::NotRunning { pid: None })?;

        let qmp = QmpClient::connect(&paths.qmp_socket, &QmpOptions::default())
            .await
            .map_err(ProcessError::Qmp)?;
        if qmp.peer_pid() != Some(pid) {
            return Err(ProcessError::PeerMismatch {
                expected: pid,
                found: qmp.peer_pid(),
            });
        }

        let (exit_tx, exit) = watch::channel(None);
        let watch_fd = pidfd
            .try_clone()
            .map_err(|source| ProcessError::Pidfd { pid, source })?;
        let watcher = tokio::spawn(async move {
            if let Err(err) = pidfd::wait_exit(watch_fd).await {
                tracing::warn!(pid, %err, "could not watch QEMU through its pidfd");
            }
            exit_tx.send_replace(Some(QemuExit::ExitedUnsupervised));
        });
        tracing::info!(pid, run_dir = %run_dir.display(), "attached to running QEMU");
        let process = PartialProcess {
            pid,
            pidfd: Some(pidfd),
            exit,
            watcher,
        };
        Ok(process.complete(paths, qmp, false))
    }

    /// QEMU's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The QMP session.
    #[must_use]
    pub fn qmp(&self) -> &QmpClient {
        &self.qmp
    }

    /// The run directory (canonical path).
    #[must_use]
    pub fn run_dir(&self) -> &Path {
        &self.paths.run_dir
    }

    /// The files of the run directory.
    #[must_use]
    pub fn paths(&self) -> &RunPaths {
        &self.paths
    }

    /// Whether this handle started QEMU (and will learn its exit status), rather than
    /// attached to it.
    #[must_use]
    pub fn is_supervised(&self) -> bool {
        self.supervised
    }

    /// How QEMU ended, or `None` while it runs.
    #[must_use]
    pub fn exit(&self) -> Option<QemuExit> {
        *self.exit.borrow()
    }

    /// A receiver that sees `Some(exit)` once QEMU ends, for `select!` loops.
    #[must_use]
    pub fn exit_watch(&self) -> watch::Receiver<Option<QemuExit>> {
        self.exit.clone()
    }

    /// Waits up to `limit` for QEMU to exit; `None` if it still runs.
    pub async fn wait_exit(&self, limit: Duration) -> Option<QemuExit> {
        wait_exit(&self.exit, limit).await
    }

    /// Stops QEMU: presses the ACPI power button and waits up to `powerdown_timeout` for the guest to
    /// power off; then `quit`, waiting up to [`QUIT_GRACE`]; then `SIGKILL`, waiting up to
    /// [`KILL_WAIT`]. Each QMP failure only moves to the next step.
    ///
    /// # Errors
    /// Only when even `SIGKILL` fails or does not end QEMU in time.
    pub async fn shutdown_graceful(
        &self,
        powerdown_timeout: Duration,
    ) -> Result<ShutdownOutcome, ProcessError> {
        if let Some(exit) = self.exit() {
            return Ok(outcome(ShutdownMethod::AlreadyExited, exit));
        }
        if let Err(err) = self.qmp.system_powerdown().await {
            tracing::warn!(pid = self.pid, %err, "system_powerdown failed");
        }
        if let Some(exit) = self.wait_exit(powerdown_timeout).await {
            return Ok(outcome(ShutdownMethod::Powerdown, exit));
        }
        tracing::info!(
            pid = self.pid,
            ?powerdown_timeout,
            "guest did not power off; sending quit"
        );
        match self
            .qmp
            .execute_with_timeout("quit", Value::Null, QUIT_GRACE)
            .await
        {
            Ok(_) | Err(QmpError::Disconnected(_)) => {}
            Err(err) => tracing::warn!(pid = self.pid, %err, "quit failed"),
        }
        if let Some(exit) = self.wait_exit(QUIT_GRACE).await {
            return Ok(outcome(ShutdownMethod::Quit, exit));
        }
        tracing::warn!(pid = self.pid, "QEMU ignored quit; killing it");
        let exit = self.kill().await?;
        Ok(outcome(ShutdownMethod::Kill, exit))
    }

    /// Sends `SIGKILL` and waits up to [`KILL_WAIT`] for QEMU to be gone.
    ///
    /// # Errors
    /// [`ProcessError::Signal`] if the signal cannot be sent, [`ProcessError::KillTimeout`]
    /// if QEMU outlives the wait.
    pub async fn kill(&self) -> Result<QemuExit, ProcessError> {
        if let Some(exit) = self.exit() {
            return Ok(exit);
        }
        signal(self.pid, self.pidfd.as_ref(), libc::SIGKILL)?;
        self.wait_exit(KILL_WAIT)
            .await
            .ok_or(ProcessError::KillTimeout {
                pid: self.pid,
                after: KILL_WAIT,
            })
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        // QEMU goes on running; a later `attach` takes over.
        self.watcher.abort();
    }
}

/// A spawned or found QEMU before its QMP session is up.
struct PartialProcess {
    pid: u32,
    pidfd: Option<OwnedFd>,
    exit: watch::Receiver<Option<QemuExit>>,
    watcher: JoinHandle<()>,
}

impl PartialProcess {
    fn complete(self, paths: RunPaths, qmp: QmpClient, supervised: bool) -> QemuProcess {
        QemuProcess {
            pid: self.pid,
            paths,
            qmp,
            pidfd: self.pidfd,
            supervised,
            exit: self.exit,
            watcher: self.watcher,
        }
    }

    async fn kill_after_failed_start(&self) {
        if self.exit.borrow().is_some() {
            return;
        }
        if let Err(err) = signal(self.pid, self.pidfd.as_ref(), libc::SIGKILL) {
            tracing::error!(pid = self.pid, %err, "could not kill QEMU after a failed start");
            return;
        }
        // The watcher reaps it; wait so that the caller does not race a dying QEMU.
        if wait_exit(&self.exit, KILL_WAIT).await.is_none() {
            tracing::error!(pid = self.pid, "QEMU outlived SIGKILL after a failed start");
        }
    }
}

fn outcome(method: ShutdownMethod, exit: QemuExit) -> ShutdownOutcome {
    ShutdownOutcome { method, exit }
}

fn run_file(path: &Path, source: io::Error) -> ProcessError {
    ProcessError::RunFile {
        path: path.to_owned(),
        source,
    }
}

async fn wait_exit(exit: &watch::Receiver<Option<QemuExit>>, limit: Duration) -> Option<QemuExit> {
    let mut exit = exit.clone();
    let seen = match timeout(limit, exit.wait_for(Option::is_some)).await {
        Ok(Ok(state)) => *state,
        // The watcher is gone (handle dropping): nothing more will be learnt.
        Ok(Err(_)) | Err(_) => None,
    };
    seen.or(*exit.borrow())
}

fn signal(pid: u32, pidfd: Option<&OwnedFd>, sig: libc::c_int) -> Result<(), ProcessError> {
    let result = match pidfd {
        Some(fd) => pidfd::send_signal(fd.as_fd(), sig),
        None => kill_pid(pid, sig),
    };
    result.map_err(|source| ProcessError::Signal { pid, source })
}

fn kill_pid(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kill(2) takes plain values. Only used for our own unreaped child, whose pid
    // cannot have been reused.
    if unsafe { libc::kill(pid, sig) } < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            return Err(err);
        }
    }
    Ok(())
}

/// Creates and canonicalises the run directory, refuses one whose QEMU still runs, and
/// removes a dead QEMU's socket and pidfile so that their reappearance means the new one.
fn prepare_run_dir(run_dir: &Path) -> Result<RunPaths, ProcessError> {
    let dir_error = |source| ProcessError::RunDir {
        path: run_dir.to_owned(),
        source,
    };
    fs::create_dir_all(run_dir).map_err(dir_error)?;
    let paths = RunPaths::new(&fs::canonicalize(run_dir).map_err(dir_error)?);
    if let Some((pid, _)) = find_running(&paths)? {
        return Err(ProcessError::AlreadyRunning { pid });
    }
    for stale in [&paths.qmp_socket, &paths.pidfile] {
        match fs::remove_file(stale) {
            Ok(()) => tracing::debug!(path = %stale.display(), "removed a stale run file"),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(run_file(stale, source)),
        }
    }
    Ok(paths)
}

/// The running QEMU of `paths`, with a pidfd on it, or `None` if there is none.
fn find_running(paths: &RunPaths) -> Result<Option<(u32, OwnedFd)>, ProcessError> {
    let Some(pid) = read_pidfile(&paths.pidfile)? else {
        return Ok(None);
    };
    // Open the pidfd first: it pins the process we then identify, so a pid reused after
    // the check cannot be mistaken for QEMU.
    let pidfd = match pidfd::open(pid) {
        Ok(fd) => fd,
        Err(err) if err.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(source) => return Err(ProcessError::Pidfd { pid, source }),
    };
    let cmdline_path = PathBuf::from(format!("/proc/{pid}/cmdline"));
    let cmdline = match read_bounded(&cmdline_path, CMDLINE_MAX) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(run_file(&cmdline_path, source)),
    };
    let exited =
        pidfd::has_exited(pidfd.as_fd()).map_err(|source| ProcessError::Pidfd { pid, source })?;
    if exited {
        return Ok(None);
    }
    if !cmdline_matches(&cmdline, paths) {
        return Err(ProcessError::NotOurQemu { pid });
    }
    Ok(Some((pid, pidfd)))
}

/// The pid in `path`; `None` if there is no pidfile.
fn read_pidfile(path: &Path) -> Result<Option<u32>, ProcessError> {
    let bytes = match read_bounded(path, PIDFILE_MAX) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(run_file(path, source)),
    };
    parse_pid(&bytes)
        .map(Some)
        .ok_or_else(|| ProcessError::BadPidfile {
            path: path.to_owned(),
        })
}

/// A positive pid, in decimal, with surrounding whitespace.
fn parse_pid(bytes: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let pid: u32 = text.parse().ok()?;
    (pid > 0).then_some(pid)
}

fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Connects QMP to a QEMU that is starting, until [`START_TIMEOUT`]: QEMU creates the socket
/// some time after exec, and may exit instead (bad option, missing file).
async fn connect_while_starting(
    paths: &RunPaths,
    exit: &mut watch::Receiver<Option<QemuExit>>,
) -> Result<QmpClient, ProcessError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let exited = |exit: QemuExit| async move {
        let log_tail = logs::tail(paths.qemu_log.clone(), LOG_LINES_ON_FAILURE)
            .await
            .unwrap_or_default();
        ProcessError::ExitedWhileStarting { exit, log_tail }
    };
    loop {
        if let Some(status) = *exit.borrow() {
            return Err(exited(status).await);
        }
        match tokio::net::UnixStream::connect(&paths.qmp_socket).await {
            Ok(stream) => {
                // The handshake gets what is left of the start deadline; the session keeps
                // the default deadlines for its commands.
                let options = QmpOptions::default();
                let handshake = QmpClient::from_stream(stream, &options);
                return match timeout_at(deadline, handshake).await {
                    Ok(result) => result.map_err(ProcessError::Qmp),
                    Err(_) => Err(ProcessError::SocketTimeout {
                        path: paths.qmp_socket.clone(),
                        after: START_TIMEOUT,
                    }),
                };
            }
            // Not there yet, or bound but not yet listening.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) => {}
            Err(source) => return Err(run_file(&paths.qmp_socket, source)),
        }
        if Instant::now() >= deadline {
            return Err(ProcessError::SocketTimeout {
                path: paths.qmp_socket.clone(),
                after: START_TIMEOUT,
            });
        }
        // Wake early if QEMU exits meanwhile.
        if let Ok(Err(_)) = timeout(SOCKET_POLL, exit.changed()).await {
            // The watcher is gone; the exit check above decides on the next round.
            sleep(SOCKET_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfile_contents_parse_strictly() {
        assert_eq!(parse_pid(b"1234\n"), Some(1234));
        assert_eq!(parse_pid(b"  77  "), Some(77));
        for bad in [&b""[..], b"0\n", b"-5", b"12x", b"\xff", b"99999999999"] {
            assert_eq!(parse_pid(bad), None, "{bad:?}");
        }
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

    #[test]
    fn a_run_dir_without_pidfile_has_no_running_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let paths = RunPaths::new(dir.path());
        assert!(find_running(&paths).unwrap().is_none());
    }

    #[test]
    fn a_pidfile_naming_another_live_process_is_not_our_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let paths = RunPaths::new(dir.path());
        // This test process is alive and certainly not QEMU with that pidfile.
        fs::write(&paths.pidfile, format!("{}\n", std::process::id())).unwrap();
        let err = find_running(&paths).unwrap_err();
        assert!(matches!(err, ProcessError::NotOurQemu { .. }), "{err:?}");
    }

    #[test]
    fn a_pidfile_naming_a_dead_process_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let paths = RunPaths::new(dir.path());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        fs::write(&paths.pidfile, format!("{pid}\n")).unwrap();
        assert!(find_running(&paths).unwrap().is_none());
        // And a start in that directory clears it.
        let prepared = prepare_run_dir(dir.path()).unwrap();
        assert!(!prepared.pidfile.exists());
    }

    #[test]
    fn garbage_pidfile_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let paths = RunPaths::new(dir.path());
        fs::write(&paths.pidfile, "not a pid").unwrap();
        assert!(matches!(
            find_running(&paths),
            Err(ProcessError::BadPidfile { .. })
        ));
    }
}
