//! Waiting for SIGINT and SIGTERM without a signal handler.
//!
//! Main export: [`StopSignals`]. The signals are blocked in the calling thread before any other
//! thread starts (threads inherit the mask), and the main thread takes them synchronously with
//! `sigtimedwait(2)`, so no code runs in signal context.

use std::io;
use std::mem::MaybeUninit;
use std::time::Duration;

/// SIGINT and SIGTERM, blocked in this process and waited for explicitly.
#[derive(Debug)]
pub struct StopSignals {
    set: libc::sigset_t,
}

impl StopSignals {
    /// Block SIGINT and SIGTERM in the calling thread (and every thread it starts later).
    ///
    /// # Errors
    ///
    /// The signal set cannot be built or the mask cannot be changed.
    pub fn block() -> io::Result<Self> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given; sigaddset then adds valid signal
        // numbers to that initialised set.
        let set = unsafe {
            if libc::sigemptyset(set.as_mut_ptr()) != 0
                || libc::sigaddset(set.as_mut_ptr(), libc::SIGINT) != 0
                || libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM) != 0
            {
                return Err(io::Error::last_os_error());
            }
            set.assume_init()
        };
        // SAFETY: `set` is an initialised signal set; the old mask is not asked for.
        let rc =
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(Self { set })
    }

    /// Wait up to `timeout` for one of the signals; returns its number, or `None` on timeout.
    ///
    /// # Errors
    ///
    /// `sigtimedwait` fails for a reason other than a timeout or an interruption.
    pub fn wait(&self, timeout: Duration) -> io::Result<Option<i32>> {
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
        };
        // SAFETY: `self.set` is an initialised signal set and `ts` a valid timespec, both alive
        // for the call; a null siginfo pointer is allowed.
        let sig =
            unsafe { libc::sigtimedwait(&raw const self.set, std::ptr::null_mut(), &raw const ts) };
        if sig >= 0 {
            return Ok(Some(sig));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) => Ok(None),
            _ => Err(err),
        }
    }
}
