//! [`ByteSize`]: a byte count that people can write as `512M` or `2G`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// A number of bytes. Reads a plain count (`1048576`) or a number with a `K`, `M`, `G` or `T`
/// suffix in powers of 1024 (`KiB`/`KB` spellings too, any case), from a JSON string or number.
/// Written to JSON as a plain number of bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = u64, example = 536_870_912)]
pub struct ByteSize(pub u64);

/// Why a string is not a [`ByteSize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByteSizeError {
    /// No number where one was expected.
    #[error("{0:?} is not a size (examples: 4096, 512K, 64M, 2G)")]
    NotANumber(String),
    /// A suffix other than K, M, G, T.
    #[error("{0:?} has an unknown unit (use K, M, G or T)")]
    UnknownUnit(String),
    /// More than `u64::MAX` bytes.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

impl ByteSize {
    /// One mebibyte.
    pub const MIB: u64 = 1 << 20;

    /// `n` mebibytes, saturating.
    #[must_use]
    pub const fn mib(n: u64) -> Self {
        Self(n.saturating_mul(Self::MIB))
    }

    /// The size in bytes.
    #[must_use]
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The size in whole mebibytes, rounded down.
    #[must_use]
    pub const fn as_mib(self) -> u64 {
        self.0 / Self::MIB
    }
}

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| ByteSizeError::NotANumber(s.to_owned()))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => return Err(ByteSizeError::UnknownUnit(s.to_owned())),
        };
        n.checked_mul(mult)
            .map(Self)
            .ok_or_else(|| ByteSizeError::TooLarge(s.to_owned()))
    }
}

impl fmt::Display for ByteSize {
    /// Exact when possible (`512M`, `2G`), otherwise bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
            let m = 1u64 << shift;
            if self.0 >= m && self.0 % m == 0 {
                return write!(f, "{}{unit}", self.0 / m);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 536870912, \"512M\" or \"2G\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size must not be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_suffixes_in_powers_of_1024() {
        assert_eq!("512M".parse(), Ok(ByteSize(512 << 20)));
        assert_eq!("2G".parse(), Ok(ByteSize(2 << 30)));
        assert_eq!("2gib".parse(), Ok(ByteSize(2 << 30)));
        assert_eq!("64 KiB".parse(), Ok(ByteSize(64 << 10)));
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
    }

    #[test]
    fn sizes_reject_garbage_units_and_overflow() {
        assert!(matches!(
            "".parse::<ByteSize>(),
            Err(ByteSizeError::NotANumber(_))
        ));
        assert!(matches!(
            "-1".parse::<ByteSize>(),
            Err(ByteSizeError::NotANumber(_))
        ));
        assert!(matches!(
            "1.5G".parse::<ByteSize>(),
            Err(ByteSizeError::UnknownUnit(_))
        ));
        assert!(matches!(
            "3X".parse::<ByteSize>(),
            Err(ByteSizeError::UnknownUnit(_))
        ));
        assert!(matches!(
            "99999999999T".parse::<ByteSize>(),
            Err(ByteSizeError::TooLarge(_))
        ));
    }

    #[test]
    fn sizes_deserialize_from_numbers_and_strings() {
        let a: ByteSize = serde_json::from_str("\"512M\"").unwrap();
        let b: ByteSize = serde_json::from_str("536870912").unwrap();
        assert_eq!(a, b);
        assert!(serde_json::from_str::<ByteSize>("-5").is_err());
        assert!(serde_json::from_str::<ByteSize>("true").is_err());
        assert_eq!(serde_json::to_string(&a).unwrap(), "536870912");
    }

    #[test]
    fn sizes_display_exactly() {
        assert_eq!(ByteSize(512 << 20).to_string(), "512M");
        assert_eq!(ByteSize(3 << 30).to_string(), "3G");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }
}
