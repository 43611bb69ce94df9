//! `novacron-guest`: the workload of NovaCron's test guest.
//!
//! It runs inside a small VM (a Debian kernel and a busybox initramfs, built by
//! `scripts/build-test-guest.sh`), fills a chosen amount of memory with pages whose content is a
//! function of `(seed, page index, generation)`, keeps rewriting pages at a chosen rate and checks
//! every page against what it should hold, again and again. Once per interval it writes a
//! heartbeat line with its counters and a checksum of all the memory to stdout, the serial
//! console: a migration that loses or damages a page shows as `failed=` above 0.
//!
//! Parameters come from the kernel command line (`nc.mem=64M nc.dirty=4M …`, see [`params`]);
//! when arguments are given they are read instead, which is how it runs on a host for tests.
//!
//! Modules: [`params`] (the command line), [`page`] (what a page holds), [`memory`] (the pages and
//! their generations), [`pacer`] (rates over time), [`workload`] (the loop) and [`report`] (the
//! console lines).
//!
//! SIGTERM or SIGINT ends the run as `nc.duration` does, with the stop line: the guest's `/init`
//! sends SIGTERM when the VM's power button is pressed.
//!
//! Exit status: 0 after a run that ended (`nc.duration`, SIGTERM, SIGINT) with no failed check, 1
//! with failed checks, 2 for bad parameters, 3 when the memory cannot be had or the console
//! written.

mod memory;
mod pacer;
mod page;
mod params;
mod report;
mod workload;

use std::ffi::c_int;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::params::Params;
use crate::report::ErrorLine;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmdline = if args.is_empty() {
        match std::fs::read_to_string("/proc/cmdline") {
            Ok(text) => text,
            Err(err) => return fail(&err, 2),
        }
    } else {
        args.join(" ")
    };
    let params = match Params::from_cmdline(&cmdline) {
        Ok(params) => params,
        Err(err) => return fail(&err, 2),
    };
    stop_on_signals();
    match workload::run(&params, &mut io::stdout().lock(), &STOP) {
        Ok(stop) if stop.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(err) => fail(&err, 3),
    }
}

/// Set by SIGTERM and SIGINT: the workload ends at its next step and writes its stop line.
static STOP: AtomicBool = AtomicBool::new(false);

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;

unsafe extern "C" {
    /// `signal(2)` of the C library that std links; returns the previous handler (`SIG_ERR` on
    /// error, which leaves the default action: the signal then just ends the program).
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
}

/// Handler of SIGTERM and SIGINT.
extern "C" fn on_stop_signal(_signum: c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGTERM and SIGINT set [`STOP`] instead of ending the program.
fn stop_on_signals() {
    for signum in [SIGTERM, SIGINT] {
        // SAFETY: `signal` is called with a valid signal number and a handler that only stores
        // to an atomic, which is async-signal-safe; glibc's `signal` keeps the handler installed
        // and restarts interrupted system calls (BSD semantics), so no read or write fails with
        // EINTR because of it.
        unsafe { signal(signum, on_stop_signal) };
    }
}

/// Writes `err` as an `NCGUEST error` line and returns exit status `code`.
fn fail(err: &dyn std::error::Error, code: u8) -> ExitCode {
    // The console is the only place to report to; if it cannot be written either, the exit
    // status is all that is left.
    let _ = writeln!(io::stdout().lock(), "{}", ErrorLine(err));
    ExitCode::from(code)
}
