//! Parameters of a run, read from the kernel command line.
//!
//! Every `nc.<key>=<value>` word of `/proc/cmdline` sets one parameter; other words belong to the
//! kernel and are skipped. An unknown `nc.` key is an error, so that a typo is not silently a
//! default.
//!
//! ```text
//! nc.mem=64M       memory to fill and check, bytes with K/M/G suffix    default 32M
//! nc.dirty=4M      bytes rewritten per second, 0 = none                 default 1M
//! nc.seed=7        seed of all page contents                            default 1
//! nc.interval=1    seconds between heartbeat lines                      default 1
//! nc.sweep=2       seconds for one check of every page                  default 2
//! nc.duration=0    seconds to run before stopping, 0 = for ever         default 0
//! ```

use std::fmt;
use std::num::NonZeroU64;
use std::time::Duration;

use crate::page::PAGE_SIZE;

/// Bytes in a mebibyte.
const MIB: u64 = 1 << 20;

/// The parameters of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Params {
    /// Pages of memory to fill and check (`nc.mem` divided by the page size, rounded down).
    pub(crate) pages: NonZeroU64,
    /// Bytes rewritten per second (`nc.dirty`); 0 = no rewriting.
    pub(crate) dirty_bytes_per_sec: u64,
    /// Seed of all page contents and of the order pages are rewritten in (`nc.seed`).
    pub(crate) seed: u64,
    /// Time between heartbeat lines (`nc.interval`, whole seconds, at least 1).
    pub(crate) interval: Duration,
    /// Time in which every page is checked once (`nc.sweep`, whole seconds, at least 1).
    pub(crate) sweep: Duration,
    /// How long to run before stopping (`nc.duration`); `None` = until the machine stops.
    pub(crate) duration: Option<Duration>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            pages: NonZeroU64::new(32 * MIB / PAGE_SIZE as u64).unwrap_or(NonZeroU64::MIN),
            dirty_bytes_per_sec: MIB,
            seed: 1,
            interval: Duration::from_secs(1),
            sweep: Duration::from_secs(2),
            duration: None,
        }
    }
}

impl Params {
    /// Memory filled, in bytes.
    pub(crate) fn mem_bytes(&self) -> u64 {
        self.pages.get().saturating_mul(PAGE_SIZE as u64)
    }

    /// Reads the parameters from a kernel command line, defaults where a key is absent.
    ///
    /// # Errors
    ///
    /// Returns which `nc.` word is unknown or has a value that does not parse or is out of range.
    pub(crate) fn from_cmdline(cmdline: &str) -> Result<Self, ParamError> {
        let mut params = Self::default();
        for word in cmdline.split_ascii_whitespace() {
            let Some(setting) = word.strip_prefix("nc.") else {
                continue;
            };
            let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
            params.set(key, value)?;
        }
        Ok(params)
    }

    /// Sets the parameter `key` from its text `value`.
    fn set(&mut self, key: &str, value: &str) -> Result<(), ParamError> {
        let bad = || ParamError::BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
        };
        match key {
            "mem" => {
                let bytes = parse_size(value).ok_or_else(bad)?;
                self.pages = NonZeroU64::new(bytes / PAGE_SIZE as u64).ok_or(
                    ParamError::TooLittleMemory {
                        bytes,
                        page_size: PAGE_SIZE,
                    },
                )?;
            }
            "dirty" => self.dirty_bytes_per_sec = parse_size(value).ok_or_else(bad)?,
            "seed" => self.seed = value.parse().map_err(|_| bad())?,
            "interval" => self.interval = parse_seconds(value).ok_or_else(bad)?,
            "sweep" => self.sweep = parse_seconds(value).ok_or_else(bad)?,
            "duration" => {
                let secs: u64 = value.parse().map_err(|_| bad())?;
                self.duration = (secs > 0).then(|| Duration::from_secs(secs));
            }
            _ => {
                return Err(ParamError::UnknownKey {
                    key: key.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// A whole number of seconds, at least 1.
fn parse_seconds(value: &str) -> Option<Duration> {
    let secs: u64 = value.parse().ok()?;
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// A byte count: digits and an optional binary suffix `K`, `M` or `G` (either case).
pub(crate) fn parse_size(value: &str) -> Option<u64> {
    let (digits, unit) = match value.char_indices().last()? {
        (at, 'k' | 'K') => (value.get(..at)?, 1 << 10),
        (at, 'm' | 'M') => (value.get(..at)?, 1 << 20),
        (at, 'g' | 'G') => (value.get(..at)?, 1 << 30),
        _ => (value, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// A parameter on the command line that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ParamError {
    /// An `nc.` key this program does not know.
    UnknownKey {
        /// The key, without `nc.`.
        key: String,
    },
    /// A value that does not parse or is out of range for its key.
    BadValue {
        /// The key, without `nc.`.
        key: String,
        /// The value as written.
        value: String,
    },
    /// `nc.mem` smaller than one page.
    TooLittleMemory {
        /// The bytes asked for.
        bytes: u64,
        /// The bytes in one page.
        page_size: usize,
    },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey { key } => write!(f, "unknown parameter nc.{key}"),
            Self::BadValue { key, value } => write!(f, "bad value {value:?} for nc.{key}"),
            Self::TooLittleMemory { bytes, page_size } => {
                write!(
                    f,
                    "nc.mem={bytes} is less than one page of {page_size} bytes"
                )
            }
        }
    }
}

impl std::error::Error for ParamError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_command_line_gives_the_defaults() {
        let params = Params::from_cmdline("").unwrap();
        assert_eq!(params, Params::default());
        assert_eq!(params.mem_bytes(), 32 * MIB);
        assert_eq!(params.dirty_bytes_per_sec, MIB);
        assert_eq!(params.seed, 1);
        assert_eq!(params.interval, Duration::from_secs(1));
        assert_eq!(params.duration, None);
    }

    #[test]
    fn nc_words_are_read_and_kernel_words_skipped() {
        let params = Params::from_cmdline(
            "console=ttyS0 quiet panic=-1 nc.mem=64M nc.dirty=4M nc.seed=7 nc.interval=2 \
             nc.sweep=3 nc.duration=10\n",
        )
        .unwrap();
        assert_eq!(
            params,
            Params {
                pages: NonZeroU64::new(64 * MIB / 4096).unwrap(),
                dirty_bytes_per_sec: 4 * MIB,
                seed: 7,
                interval: Duration::from_secs(2),
                sweep: Duration::from_secs(3),
                duration: Some(Duration::from_secs(10)),
            }
        );
    }

    #[test]
    fn the_last_setting_of_a_key_wins() {
        let params = Params::from_cmdline("nc.seed=1 nc.seed=9").unwrap();
        assert_eq!(params.seed, 9);
    }

    #[test]
    fn dirty_zero_means_no_rewriting_and_duration_zero_means_for_ever() {
        let params = Params::from_cmdline("nc.dirty=0 nc.duration=0").unwrap();
        assert_eq!(params.dirty_bytes_per_sec, 0);
        assert_eq!(params.duration, None);
    }

    #[test]
    fn memory_is_rounded_down_to_whole_pages() {
        let params = Params::from_cmdline("nc.mem=10000").unwrap();
        assert_eq!(params.pages.get(), 2);
        assert_eq!(params.mem_bytes(), 8192);
    }

    #[test]
    fn sizes_take_binary_suffixes_in_either_case() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("3m"), Some(3 * MIB));
        assert_eq!(parse_size("2G"), Some(2 << 30));
    }

    #[test]
    fn malformed_sizes_are_refused() {
        for bad in [
            "",
            "M",
            "-1",
            "+1",
            "1.5M",
            "1T",
            "1MB",
            " 1",
            "99999999999999999999G",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_unknown_key_is_an_error() {
        assert_eq!(
            Params::from_cmdline("nc.men=64M"),
            Err(ParamError::UnknownKey { key: "men".into() })
        );
        assert_eq!(
            Params::from_cmdline("nc.mem=64M").map(|p| p.pages.get()),
            Ok(16384)
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (word, key, value) in [
            ("nc.mem=lots", "mem", "lots"),
            ("nc.dirty=", "dirty", ""),
            ("nc.seed=-3", "seed", "-3"),
            ("nc.interval=0", "interval", "0"),
            ("nc.sweep=x", "sweep", "x"),
            ("nc.duration=1s", "duration", "1s"),
            ("nc.seed", "seed", ""),
        ] {
            assert_eq!(
                Params::from_cmdline(word),
                Err(ParamError::BadValue {
                    key: key.into(),
                    value: value.into()
                }),
                "{word}"
            );
        }
    }

    #[test]
    fn less_than_a_page_of_memory_is_refused() {
        let err = Params::from_cmdline("nc.mem=4095").unwrap_err();
        assert_eq!(
            err,
            ParamError::TooLittleMemory {
                bytes: 4095,
                page_size: 4096
            }
        );
        assert_eq!(
            err.to_string(),
            "nc.mem=4095 is less than one page of 4096 bytes"
        );
    }
}
