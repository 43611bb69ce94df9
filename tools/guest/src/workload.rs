//! The workload: rewrite pages at the set rate, check them in sweeps, count and report.
//!
//! [`Workload::step`] is told how long the run has lasted and does the rewrites and checks due by
//! then; it never reads a clock, so tests drive it with made-up times. [`run`] is the loop around
//! it that sleeps, reads the clock and writes heartbeats:
//!
//! ```text
//! start ─► fill ─► ready ─► heartbeat ─► ┌ step ─ (heartbeat if due) ─ sleep ┐ ─► stop
//!                                        └── until nc.duration or told to ◄─┘
//! ```
//!
//! Rewritten pages are picked at random (from the seed) across all memory, as a busy guest's
//! writes spread; checks walk the pages in order, so every page is checked once per sweep.

use std::fs;
use std::io::{self, Write};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::memory::{GuestMemory, MemoryError};
use crate::pacer::Pacer;
use crate::page::{PAGE_SIZE, SplitMix64};
use crate::params::Params;
use crate::report::{CheckFailedLine, Heartbeat, ReadyLine, StartLine, StopLine};

/// How long the loop sleeps between steps, at most.
const TICK: Duration = Duration::from_millis(20);

/// Most `check-failed` lines written between two heartbeats; later failures are only counted.
const FAILURE_LINES_PER_BEAT: u32 = 16;

/// Mixed into the seed for the order of rewrites, apart from the page contents.
const PICKER_DOMAIN: u64 = 0x7069_636b_7069_636b;

/// The memory under test and the counters of the work done on it.
#[derive(Debug)]
pub(crate) struct Workload {
    /// The pages.
    memory: GuestMemory,
    /// Paces rewrites, in pages.
    dirty: Pacer,
    /// Paces checks, in pages.
    check: Pacer,
    /// Picks the page to rewrite next.
    picker: SplitMix64,
    /// The page to check next.
    cursor: usize,
    /// Heartbeats written so far.
    seq: u64,
    /// Page rewrites so far.
    dirtied: u64,
    /// Page checks so far.
    checked: u64,
    /// Failed page checks so far.
    failed: u64,
    /// `check-failed` lines that may still be written before the next heartbeat.
    failure_lines_left: u32,
}

impl Workload {
    /// Allocates and fills the memory that `params` ask for.
    ///
    /// # Errors
    ///
    /// Returns [`MemoryError`] when the memory cannot be allocated.
    pub(crate) fn new(params: &Params) -> Result<Self, MemoryError> {
        let memory = GuestMemory::new(params.seed, params.pages)?;
        // `dirty_bytes_per_sec` bytes a second are that many pages every PAGE_SIZE seconds; put
        // so, the pacer keeps the fraction of a page that a rate in bytes leaves over.
        let page_seconds = NonZeroU64::new(PAGE_SIZE as u64).unwrap_or(NonZeroU64::MIN);
        let sweep_seconds = NonZeroU64::new(params.sweep.as_secs()).unwrap_or(NonZeroU64::MIN);
        Ok(Self {
            memory,
            dirty: Pacer::new(params.dirty_bytes_per_sec, page_seconds),
            check: Pacer::new(params.pages.get(), sweep_seconds),
            picker: SplitMix64::new(params.seed ^ PICKER_DOMAIN),
            cursor: 0,
            seq: 0,
            dirtied: 0,
            checked: 0,
            failed: 0,
            failure_lines_left: FAILURE_LINES_PER_BEAT,
        })
    }

    /// Does the rewrites and checks due at `elapsed` since the start.
    ///
    /// A page that fails its check is counted, reported on `out` (up to
    /// [`FAILURE_LINES_PER_BEAT`] lines per heartbeat) and written again, so that one damage
    /// counts once.
    ///
    /// # Errors
    ///
    /// Returns the error of writing to `out`.
    pub(crate) fn step(&mut self, elapsed: Duration, out: &mut impl Write) -> io::Result<()> {
        let pages = self.memory.len() as u64;
        for _ in 0..self.dirty.take(elapsed) {
            let index = usize::try_from(self.picker.below(pages)).unwrap_or(0);
            self.memory.rewrite(index);
            self.dirtied += 1;
        }
        for _ in 0..self.check.take(elapsed) {
            if let Err(failure) = self.memory.check(self.cursor) {
                self.failed += 1;
                if let Some(left) = self.failure_lines_left.checked_sub(1) {
                    self.failure_lines_left = left;
                    writeln!(out, "{}", CheckFailedLine(failure))?;
                }
                self.memory.repair(self.cursor);
            }
            self.checked += 1;
            self.cursor = (self.cursor + 1)
                .checked_rem(self.memory.len())
                .unwrap_or(0);
        }
        Ok(())
    }

    /// The next heartbeat, with a checksum of the memory as it is now.
    pub(crate) fn heartbeat(&mut self, uptime_ms: u64) -> Heartbeat {
        self.seq += 1;
        self.failure_lines_left = FAILURE_LINES_PER_BEAT;
        Heartbeat {
            seq: self.seq,
            uptime_ms,
            pages: self.memory.len(),
            dirtied: self.dirtied,
            checked: self.checked,
            failed: self.failed,
            sum: self.memory.sum(),
        }
    }

    /// The counters for the last line of a run.
    pub(crate) fn stop_line(&self) -> StopLine {
        StopLine {
            dirtied: self.dirtied,
            checked: self.checked,
            failed: self.failed,
        }
    }

    /// The memory, for tests to damage.
    #[cfg(test)]
    pub(crate) fn memory_mut(&mut self) -> &mut GuestMemory {
        &mut self.memory
    }
}

/// Runs the workload of `params`, writing its lines to `out`, until `params.duration` has passed
/// (for ever when it is `None`) or `stop` is set (checked once a step, at least every [`TICK`]);
/// returns the last counters, which it also writes as the stop line.
///
/// # Errors
///
/// Returns [`RunError`] when the memory cannot be allocated or `out` cannot be written.
pub(crate) fn run(
    params: &Params,
    out: &mut impl Write,
    stop: &AtomicBool,
) -> Result<StopLine, RunError> {
    let start_line = StartLine {
        mem_bytes: params.mem_bytes(),
        dirty_bytes_per_sec: params.dirty_bytes_per_sec,
        seed: params.seed,
    };
    writeln!(out, "{start_line}").map_err(RunError::Write)?;
    let fill_started = Instant::now();
    let mut workload = Workload::new(params).map_err(RunError::Memory)?;
    let ready = ReadyLine {
        pages: workload.memory.len(),
        fill_ms: fill_started.elapsed().as_millis(),
        sum: workload.memory.sum(),
    };
    writeln!(out, "{ready}").map_err(RunError::Write)?;

    let started = Instant::now();
    let mut next_beat = Duration::ZERO;
    loop {
        let elapsed = started.elapsed();
        workload.step(elapsed, out).map_err(RunError::Write)?;
        if elapsed >= next_beat {
            let uptime_ms = uptime_ms().unwrap_or_else(|| millis(started.elapsed()));
            writeln!(out, "{}", workload.heartbeat(uptime_ms)).map_err(RunError::Write)?;
            next_beat += params.interval;
            if next_beat <= elapsed {
                // Late by more than an interval (the machine was paused): skip, don't burst.
                next_beat = elapsed + params.interval;
            }
        }
        if params.duration.is_some_and(|d| elapsed >= d) || stop.load(Ordering::Relaxed) {
            let last = workload.stop_line();
            writeln!(out, "{last}").map_err(RunError::Write)?;
            return Ok(last);
        }
        let now = started.elapsed();
        let pause = TICK
            .saturating_sub(now.saturating_sub(elapsed))
            .min(next_beat.saturating_sub(now));
        thread::sleep(pause);
    }
}

/// Whole milliseconds of `d`, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Time since boot from `/proc/uptime` (10 ms resolution), in milliseconds.
fn uptime_ms() -> Option<u64> {
    parse_uptime(&fs::read_to_string("/proc/uptime").ok()?)
}

/// Milliseconds from the text of `/proc/uptime`: `"<seconds>.<centiseconds> <idle>"`.
fn parse_uptime(text: &str) -> Option<u64> {
    let first = text.split_ascii_whitespace().next()?;
    let (secs, frac) = first.split_once('.').unwrap_or((first, "0"));
    let secs: u64 = secs.parse().ok()?;
    let frac_ms = match frac.get(..3.min(frac.len()))? {
        f if f.len() == 3 => f.parse::<u64>().ok()?,
        f if f.len() == 2 => f.parse::<u64>().ok()? * 10,
        f => f.parse::<u64>().ok()? * 100,
    };
    secs.checked_mul(1000)?.checked_add(frac_ms)
}

/// The run could not go on.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The memory could not be set up.
    Memory(MemoryError),
    /// The console could not be written.
    Write(io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Memory(_) => "could not set up the test memory",
            Self::Write(_) => "could not write to the console",
        })
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Memory(err) => Some(err),
            Self::Write(err) => Some(err),
        }
    }
}

#[cfg(test)]
#[path = "workload_test.rs"]
mod tests;
