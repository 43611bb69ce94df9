//! Parsing sizes (`512K`, `64MiB`, `2G`) and rates (`100mbit`, `1gbit`, `12M`) from the command
//! line.

/// Parses a byte size: a number with an optional `K`, `M`, `G`, `T` suffix (powers of 1024,
/// `KiB`/`KB` spellings accepted, case-insensitive).
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<novacron_model::ByteSize>()
        .map(novacron_model::ByteSize::bytes)
        .map_err(|e| e.to_string())
}

/// Parses a rate into bytes per second: `100mbit`, `1gbit`, `500kbit` are bits per second
/// (powers of 1000); otherwise a size per second as in [`parse_size`].
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    for (suffix, mult) in [
        ("kbit", 1_000u64),
        ("mbit", 1_000_000),
        ("gbit", 1_000_000_000),
    ] {
        if let Some(num) = lower.strip_suffix(suffix) {
            let n: u64 = num
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a rate (examples: 100mbit, 1gbit, 12M)"))?;
            return n
                .checked_mul(mult)
                .map(|bits| bits / 8)
                .ok_or_else(|| format!("{s:?} is too large"));
        }
    }
    parse_size(s)
}

/// Formats a byte count for people: `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
    }

    #[test]
    fn sizes_reject_garbage_with_a_hint() {
        assert!(parse_size("").unwrap_err().contains("not a size"));
        assert!(parse_size("12Q").unwrap_err().contains("unknown unit"));
        assert!(parse_size("-1").is_err());
        assert!(
            parse_size("99999999999T")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn rates_in_bits_become_bytes_per_second() {
        assert_eq!(parse_rate("100mbit"), Ok(12_500_000));
        assert_eq!(parse_rate("1gbit"), Ok(125_000_000));
        assert_eq!(parse_rate("12M"), Ok(12 << 20));
        assert!(parse_rate("fastmbit").is_err());
    }

    #[test]
    fn human_bytes_picks_a_unit() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
