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
//! Exit status: 0 after a run with `nc.duration` and no failed check, 1 with failed checks, 2 for
//! bad parameters, 3 when the memory cannot be had or the console written.

mod memory;
mod pacer;
mod page;
mod params;
mod report;
mod workload;

use std::io::{self, Write};
use std::process::ExitCode;

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
    match workload::run(&params, &mut io::stdout().lock()) {
        Ok(stop) if stop.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(err) => fail(&err, 3),
    }
}

/// Writes `err` as an `NCGUEST error` line and returns exit status `code`.
fn fail(err: &dyn std::error::Error, code: u8) -> ExitCode {
    // The console is the only place to report to; if it cannot be written either, the exit
    // status is all that is left.
    let _ = writeln!(io::stdout().lock(), "{}", ErrorLine(err));
    ExitCode::from(code)
}
