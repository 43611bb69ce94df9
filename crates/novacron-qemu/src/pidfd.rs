//! Process file descriptors (`pidfd_open`, Linux 5.3+): a handle on one process that cannot
//! be confused with a later process given the same pid, usable to signal it and to learn, by
//! polling, that it exited, whether or not we are its parent.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Polling interval when a pidfd cannot be watched through the reactor.
const POLL_FALLBACK: Duration = Duration::from_millis(200);

/// Opens a pidfd for `pid`. `ESRCH` means no such process.
pub(crate) fn open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags by value and touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `signal` to the process of `pidfd`. A process that already exited is not an error:
/// the caller wanted it gone or was going to learn of its exit anyway.
pub(crate) fn send_signal(pidfd: BorrowedFd<'_>, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: pidfd_send_signal takes an open descriptor, a signal number, a null siginfo
    // pointer (meaning: as kill(2) would) and zero flags; it touches no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(err);
    }
    Ok(())
}

/// Whether the process of `pidfd` has exited, without waiting.
pub(crate) fn has_exited(pidfd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut poll = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1, zero timeout: poll only writes `revents`.
    let rc = unsafe { libc::poll(&raw mut poll, 1, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc > 0 && poll.revents & libc::POLLIN != 0)
}

/// Waits until the process of `pidfd` exits: through the reactor, or by polling every
/// [`POLL_FALLBACK`] if the descriptor cannot be registered with it.
pub(crate) async fn wait_exit(pidfd: OwnedFd) -> io::Result<()> {
    // SAFETY: `pidfd` is an open descriptor owned by the `OwnedFd` that the `AsyncFd` takes
    // ownership of: it stays open, and `as_raw_fd` returns that same descriptor, until the
    // `AsyncFd` drops.
    match unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) } {
        Ok(fd) => loop {
            let mut ready = fd.readable().await?;
            if has_exited(fd.get_ref().as_fd())? {
                return Ok(());
            }
            ready.clear_ready();
        },
        Err(err) => {
            let (pidfd, cause) = err.into_parts();
            tracing::debug!(%cause, "pidfd not pollable by the reactor; polling it");
            while !has_exited(pidfd.as_fd())? {
                tokio::time::sleep(POLL_FALLBACK).await;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn pidfd_sees_a_child_exit_and_signals_reach_it() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pidfd = open(child.id()).unwrap();
        assert!(!has_exited(pidfd.as_fd()).unwrap());

        send_signal(pidfd.as_fd(), libc::SIGKILL).unwrap();
        let watched = pidfd.try_clone().unwrap();
        tokio::time::timeout(Duration::from_secs(10), wait_exit(watched))
            .await
            .unwrap()
            .unwrap();
        assert!(has_exited(pidfd.as_fd()).unwrap());

        child.wait().unwrap();
        // Signalling a process that is gone (and reaped) is not an error.
        send_signal(pidfd.as_fd(), libc::SIGKILL).unwrap();
    }

    #[test]
    fn opening_a_pid_that_does_not_exist_is_esrch() {
        // Pids above the kernel's maximum (at most 2^22) never exist.
        let err = open(1 << 30).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
    }
}
