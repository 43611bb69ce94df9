//! The lines written to the console, one type per line kind.
//!
//! Every line starts with `NCGUEST ` and a kind, then `key=value` fields separated by single
//! spaces, so a reader on the host finds them with a prefix match and a split:
//!
//! ```text
//! NCGUEST start mem=<bytes> dirty=<bytes/s> seed=<n>
//! NCGUEST ready pages=<n> fill_ms=<ms> sum=<hex>
//! NCGUEST heartbeat seq=<n> uptime_ms=<ms> pages=<n> dirtied=<n> checked=<n> failed=<n> sum=<hex>
//! NCGUEST check-failed page=<i> gen=<g> kind=<k> offset=<o> expected=<hex> found=<hex> bad_bytes=<n>
//! NCGUEST stop dirtied=<n> checked=<n> failed=<n>
//! NCGUEST error <message>
//! ```
//!
//! `sum` is 16 lowercase hex digits; `expected` and `found` are one byte as two hex digits.

use std::fmt;

use crate::memory::CheckFailure;

/// The first line: the parameters in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StartLine {
    /// Memory filled, in bytes.
    pub(crate) mem_bytes: u64,
    /// Bytes rewritten per second.
    pub(crate) dirty_bytes_per_sec: u64,
    /// Seed of the page contents.
    pub(crate) seed: u64,
}

impl fmt::Display for StartLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NCGUEST start mem={} dirty={} seed={}",
            self.mem_bytes, self.dirty_bytes_per_sec, self.seed
        )
    }
}

/// Written once all memory is filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReadyLine {
    /// Number of pages.
    pub(crate) pages: usize,
    /// Time the fill took, in milliseconds.
    pub(crate) fill_ms: u128,
    /// Checksum of the whole memory after the fill.
    pub(crate) sum: u64,
}

impl fmt::Display for ReadyLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NCGUEST ready pages={} fill_ms={} sum={:016x}",
            self.pages, self.fill_ms, self.sum
        )
    }
}

/// Written every interval: the counters so far and a checksum of the memory at that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    /// Number of this heartbeat, from 1.
    pub(crate) seq: u64,
    /// Time since the machine booted, in milliseconds.
    pub(crate) uptime_ms: u64,
    /// Number of pages.
    pub(crate) pages: usize,
    /// Page rewrites so far.
    pub(crate) dirtied: u64,
    /// Page checks so far.
    pub(crate) checked: u64,
    /// Failed page checks so far.
    pub(crate) failed: u64,
    /// Checksum of the whole memory.
    pub(crate) sum: u64,
}

impl fmt::Display for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NCGUEST heartbeat seq={} uptime_ms={} pages={} dirtied={} checked={} failed={} sum={:016x}",
            self.seq, self.uptime_ms, self.pages, self.dirtied, self.checked, self.failed, self.sum
        )
    }
}

/// Written for a page that failed its check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CheckFailedLine(pub(crate) CheckFailure);

impl fmt::Display for CheckFailedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let CheckFailure {
            index,
            generation,
            mismatch,
        } = self.0;
        write!(
            f,
            "NCGUEST check-failed page={index} gen={generation} kind={} offset={} expected={:02x} \
             found={:02x} bad_bytes={}",
            mismatch.kind, mismatch.offset, mismatch.expected, mismatch.found, mismatch.bad_bytes
        )
    }
}

/// The last line of a run with a set duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StopLine {
    /// Page rewrites in the run.
    pub(crate) dirtied: u64,
    /// Page checks in the run.
    pub(crate) checked: u64,
    /// Failed page checks in the run.
    pub(crate) failed: u64,
}

impl fmt::Display for StopLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NCGUEST stop dirtied={} checked={} failed={}",
            self.dirtied, self.checked, self.failed
        )
    }
}

/// The line for an error that ends the program, with its chain of causes.
pub(crate) struct ErrorLine<'a>(pub(crate) &'a dyn std::error::Error);

impl fmt::Display for ErrorLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NCGUEST error {}", self.0)?;
        let mut cause = self.0.source();
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::{Mismatch, PageKind};

    #[test]
    fn start_line_format() {
        let line = StartLine {
            mem_bytes: 67_108_864,
            dirty_bytes_per_sec: 1_048_576,
            seed: 1,
        };
        assert_eq!(
            line.to_string(),
            "NCGUEST start mem=67108864 dirty=1048576 seed=1"
        );
    }

    #[test]
    fn ready_line_format() {
        let line = ReadyLine {
            pages: 8192,
            fill_ms: 250,
            sum: 0xab,
        };
        assert_eq!(
            line.to_string(),
            "NCGUEST ready pages=8192 fill_ms=250 sum=00000000000000ab"
        );
    }

    #[test]
    fn heartbeat_format() {
        let line = Heartbeat {
            seq: 3,
            uptime_ms: 4500,
            pages: 8192,
            dirtied: 768,
            checked: 12288,
            failed: 0,
            sum: 0x0123_4567_89ab_cdef,
        };
        assert_eq!(
            line.to_string(),
            "NCGUEST heartbeat seq=3 uptime_ms=4500 pages=8192 dirtied=768 checked=12288 \
             failed=0 sum=0123456789abcdef"
        );
    }

    #[test]
    fn check_failed_format() {
        let line = CheckFailedLine(CheckFailure {
            index: 17,
            generation: 2,
            mismatch: Mismatch {
                kind: PageKind::Text,
                offset: 64,
                expected: 0x61,
                found: 0x0,
                bad_bytes: 4032,
            },
        });
        assert_eq!(
            line.to_string(),
            "NCGUEST check-failed page=17 gen=2 kind=text offset=64 expected=61 found=00 \
             bad_bytes=4032"
        );
    }

    #[test]
    fn stop_line_format() {
        let line = StopLine {
            dirtied: 1,
            checked: 2,
            failed: 3,
        };
        assert_eq!(
            line.to_string(),
            "NCGUEST stop dirtied=1 checked=2 failed=3"
        );
    }

    #[test]
    fn error_line_prints_the_cause_chain() {
        let inner = std::io::Error::other("disk on fire");
        let outer = Wrapped(inner);
        assert_eq!(
            ErrorLine(&outer).to_string(),
            "NCGUEST error wrapped: disk on fire"
        );
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
