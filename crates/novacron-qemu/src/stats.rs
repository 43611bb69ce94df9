//! CPU time and resident memory of a process, from `/proc`, for the daemon's metrics.

use std::fs;
use std::io;
use std::path::PathBuf;

/// Resource use of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time consumed so far, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub rss_bytes: u64,
}

/// Why stats could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// A `/proc` file could not be read (the process is gone, usually).
    #[error("could not read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A `/proc` file did not have the expected content.
    #[error("unexpected content in {path}: no {field}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The field that could not be read.
        field: &'static str,
    },
    /// The kernel's clock tick rate is unknown.
    #[error("could not read the clock tick rate")]
    ClockTicks,
}

impl ProcessStats {
    /// Reads the stats of `pid` from `/proc/PID/stat` and `/proc/PID/status`.
    ///
    /// # Errors
    /// [`StatsError::Read`] when the process does not exist (any more), and the other
    /// variants when `/proc` reads oddly.
    pub fn read(pid: u32) -> Result<Self, StatsError> {
        let stat_path = PathBuf::from(format!("/proc/{pid}/stat"));
        let status_path = PathBuf::from(format!("/proc/{pid}/status"));
        let stat = read_proc(&stat_path)?;
        let ticks = parse_cpu_ticks(&stat).ok_or(StatsError::Parse {
            path: stat_path,
            field: "utime/stime",
        })?;
        let status = read_proc(&status_path)?;
        let rss_kib = parse_rss_kib(&status).ok_or(StatsError::Parse {
            path: status_path,
            field: "VmRSS",
        })?;
        Ok(Self {
            cpu_seconds: ticks as f64 / clock_ticks_per_second()? as f64,
            rss_bytes: rss_kib.saturating_mul(1024),
        })
    }
}

fn read_proc(path: &PathBuf) -> Result<String, StatsError> {
    fs::read_to_string(path).map_err(|source| StatsError::Read {
        path: path.clone(),
        source,
    })
}

fn clock_ticks_per_second() -> Result<u64, StatsError> {
    // SAFETY: sysconf takes a constant and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks)
        .ok()
        .filter(|&t| t > 0)
        .ok_or(StatsError::ClockTicks)
}

/// `utime + stime` (fields 14 and 15, in clock ticks) of `/proc/PID/stat`. The command name
/// (field 2) is in parentheses and may itself hold spaces and parentheses, so fields are
/// counted from the last `)`.
pub(crate) fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    // after_comm starts at field 3 (state): utime is field 14, the 12th from there.
    let mut fields = after_comm.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// `VmRSS` of `/proc/PID/status`, in KiB.
pub(crate) fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?;
    let mut parts = line.split_ascii_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    (parts.next()? == "kB").then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4973 (qemu-system-x86) S 1 4973 4973 0 -1 4194560 12000 0 0 0 250 75 0 0 20 0 5 0 1234 1000000 5000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn cpu_ticks_are_utime_plus_stime() {
        assert_eq!(parse_cpu_ticks(STAT), Some(325));
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_fields() {
        let stat = STAT.replace("(qemu-system-x86)", "(a) b (c))");
        assert_eq!(parse_cpu_ticks(&stat), Some(325));
    }

    #[test]
    fn truncated_or_garbled_stat_is_refused() {
        assert_eq!(parse_cpu_ticks(""), None);
        assert_eq!(parse_cpu_ticks("4973 (qemu) S 1 2 3"), None);
        assert_eq!(parse_cpu_ticks(&STAT.replace(" 250 ", " x ")), None);
        assert_eq!(
            parse_cpu_ticks("no parenthesis here 1 2 3 4 5 6 7 8 9 10 11 12 13 14"),
            None
        );
    }

    #[test]
    fn rss_is_read_from_vmrss_in_kib() {
        let status = "Name:\tqemu\nVmPeak:\t  999 kB\nVmRSS:\t   53248 kB\nThreads:\t5\n";
        assert_eq!(parse_rss_kib(status), Some(53_248));
        assert_eq!(parse_rss_kib("Name:\tzombie\nState:\tZ\n"), None);
        assert_eq!(parse_rss_kib("VmRSS:\t12 MB\n"), None);
        assert_eq!(parse_rss_kib("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn own_process_has_cpu_time_and_memory() {
        let stats = ProcessStats::read(std::process::id()).unwrap();
        assert!(stats.rss_bytes > 0);
        assert!(stats.cpu_seconds >= 0.0);
    }

    #[test]
    fn missing_process_is_a_read_error() {
        assert!(matches!(
            ProcessStats::read(1 << 30),
            Err(StatsError::Read { .. })
        ));
    }
}
