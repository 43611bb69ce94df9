//! What compressing each chunk against the stream bytes before it costs (docs/dwcp-wire.md
//! 11.5): the start of a file cut in chunks of 64 KiB, 256 KiB and 1 MiB, each compressed with
//! zstd at levels 3 and 9 as the sender does (`dwcp::hde::codec::compress_prefixed`, a new
//! context per chunk) against no prefix, a prefix twice the chunk (at most 1 MiB), and 1 MiB
//! of the bytes before it. Prints, per setting, the input compressed per second, the output,
//! and both against the same chunks without a prefix, all measured in the same run.
//!
//! Usage: `cargo run --release -p dwcp --example prefix_cost -- FILE [MIB]` (default 64 MiB).

use std::error::Error;
use std::time::Instant;

use dwcp::hde::codec::compress_prefixed;

/// One pass over `data` in chunks of `chunk` bytes, each against at most `prefix` bytes
/// before it: seconds and compressed bytes.
fn pass(
    data: &[u8],
    level: i8,
    chunk: usize,
    prefix: usize,
) -> Result<(f64, usize), Box<dyn Error>> {
    let started = Instant::now();
    let mut out = 0;
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + chunk).min(data.len());
        let before = data
            .get(offset - prefix.min(offset)..offset)
            .unwrap_or_default();
        let block = data.get(offset..end).unwrap_or_default();
        out += compress_prefixed(level, before, block)?.len();
        offset = end;
    }
    Ok((started.elapsed().as_secs_f64(), out))
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: prefix_cost FILE [MIB]")?;
    let mib: usize = args.next().map_or(Ok(64), |m| m.parse())?;
    let mut data = std::fs::read(&path)?;
    data.truncate(mib << 20);
    let total = data.len() as f64;
    println!("{path}: first {:.1} MiB", total / f64::from(1 << 20));
    println!(
        "| zstd | chunk KiB | prefix KiB | MB/s | output MiB | speed / no prefix | output / no prefix |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for level in [3i8, 9] {
        for chunk in [64usize << 10, 256 << 10, 1 << 20] {
            let (base_s, base_out) = pass(&data, level, chunk, 0)?;
            let mut prefixes = vec![0, (2 * chunk).min(1 << 20), 1 << 20];
            prefixes.dedup();
            for prefix in prefixes {
                let (s, out) = if prefix == 0 {
                    (base_s, base_out)
                } else {
                    pass(&data, level, chunk, prefix)?
                };
                println!(
                    "| {level} | {} | {} | {:.0} | {:.2} | {:.2} | {:.3} |",
                    chunk >> 10,
                    prefix >> 10,
                    total / s / 1e6,
                    out as f64 / f64::from(1 << 20),
                    base_s / s,
                    out as f64 / base_out as f64,
                );
            }
        }
    }
    Ok(())
}
