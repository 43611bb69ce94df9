//! [`QemuProcess`]: start, attach, exit watching and stopping.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout, timeout_at};

use super::rundir::{find_running, prepare_run_dir, run_file};
use super::{
    KILL_WAIT, ProcessError, QUIT_GRACE, QemuExit, START_TIMEOUT, ShutdownMethod, ShutdownOutcome,
};
use crate::launch::{LaunchSpec, QEMU_BINARY, RunPaths};
use crate::logs;
use crate::pidfd;
use crate::qmp::{QmpClient, QmpError, QmpOptions};

/// Interval between checks for the QMP socket while QEMU starts.
const SOCKET_POLL: Duration = Duration::from_millis(20);

/// How long a failed QMP handshake waits for QEMU's exit, to report that instead.
const EXIT_AFTER_BROKEN_HANDSHAKE: Duration = Duration::from_secs(2);

/// Lines of `qemu.log` attached to a start failure.
const LOG_LINES_ON_FAILURE: usize = 20;

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
            // Not the daemon's working directory, which QEMU would keep busy.
            .current_dir(&paths.run_dir)
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
    /// N.B. QEMU serves one QMP client at a time: while another session to it is open (an
    /// earlier handle not yet dropped), the greeting does not come and this times out.
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
            match pidfd::wait_exit(watch_fd).await {
                Ok(()) => {
                    exit_tx.send_replace(Some(QemuExit::ExitedUnsupervised));
                }
                // Claiming an exit we did not see would be worse than reporting none.
                Err(err) => tracing::error!(pid, %err, "lost track of QEMU's exit"),
            }
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
        // Copied out first: the watch guard must not live across the await below.
        let status = *exit.borrow();
        if let Some(status) = status {
            return Err(exited(status).await);
        }
        match tokio::net::UnixStream::connect(&paths.qmp_socket).await {
            Ok(stream) => {
                // The handshake gets what is left of the start deadline; the session keeps
                // the default deadlines for its commands.
                let options = QmpOptions::default();
                let handshake = QmpClient::from_stream(stream, &options);
                let err = match timeout_at(deadline, handshake).await {
                    Ok(Ok(qmp)) => return Ok(qmp),
                    Ok(Err(err)) => ProcessError::Qmp(err),
                    Err(_) => ProcessError::SocketTimeout {
                        path: paths.qmp_socket.clone(),
                        after: START_TIMEOUT,
                    },
                };
                // A QEMU that dies after creating its socket breaks the handshake: its own
                // words say more than the broken session does.
                return match wait_exit(exit, EXIT_AFTER_BROKEN_HANDSHAKE).await {
                    Some(status) => Err(exited(status).await),
                    None => Err(err),
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
