//! Command line of `novacron-wanem` and its resolution into a checked [`UpConfig`].
//!
//! Main exports: [`Cli`] (parsed by clap), [`UpArgs::resolve`]. Flags given together with
//! `--preset` override that preset's values; without a preset, every impairment defaults to none.

use std::fmt;
use std::net::Ipv4Addr;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, Parser, Subcommand};

use crate::link::LinkParams;
use crate::presets::{Preset, WAN_MTU, default_queue_limit_bytes};

/// Default name of the namespace on side A.
pub const DEFAULT_NS_A: &str = "ncwan-a";
/// Default name of the namespace on side B.
pub const DEFAULT_NS_B: &str = "ncwan-b";

/// Smallest MTU accepted (the IPv4 minimum datagram every host must accept).
const MIN_MTU: u32 = 576;
/// Largest MTU a TUN device takes.
const MAX_MTU: u32 = 65_535;
/// Highest rate accepted, in Mbit/s (1 Tbit/s).
const MAX_RATE_MBIT: f64 = 1_000_000.0;
/// Longest one-way delay or jitter accepted, in milliseconds.
const MAX_DELAY_MS: f64 = 60_000.0;

/// User-space WAN link emulator: two network namespaces joined over TUN devices by a forwarder
/// that delays, jitters, drops and rate-limits packets in each direction.
#[derive(Debug, Parser)]
#[command(name = "novacron-wanem", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the namespaces and forward between them until SIGINT or SIGTERM, then delete them.
    Up(UpArgs),
    /// Delete namespaces left behind by an emulator that did not exit cleanly.
    Down(NamespaceArgs),
    /// Print the standard links and the emulator settings derived from them.
    Presets,
}

/// Names of the two namespaces.
#[derive(Debug, Args)]
pub struct NamespaceArgs {
    /// Namespace of side A.
    #[arg(long, default_value = DEFAULT_NS_A)]
    pub ns_a: String,
    /// Namespace of side B.
    #[arg(long, default_value = DEFAULT_NS_B)]
    pub ns_b: String,
}

/// Arguments of `up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Standard link to emulate; other flags override its values.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// One-way delay of each direction, in ms (a preset uses half its RTT).
    #[arg(long)]
    pub delay_ms: Option<f64>,
    /// Uniform jitter `±J` added to each packet's delay, in ms; packets are never reordered.
    #[arg(long)]
    pub jitter_ms: Option<f64>,
    /// Rate of each direction, in Mbit/s (10^6 bit/s of IP packets); 0 means unlimited.
    #[arg(long)]
    pub rate_mbit: Option<f64>,
    /// Loss of each direction, in percent of packets, independent per packet.
    #[arg(long)]
    pub loss_pct: Option<f64>,
    /// Tail-drop limit of each direction's queue, in KiB (default: one BDP, at least 100 packets).
    #[arg(long)]
    pub queue_kb: Option<u64>,
    /// MTU of both TUN devices, in bytes (default: 9000 for metro, 1500 otherwise).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Namespaces to create.
    #[command(flatten)]
    pub ns: NamespaceArgs,
    /// Address of side A.
    #[arg(long, default_value = "10.250.0.1")]
    pub addr_a: Ipv4Addr,
    /// Address of side B.
    #[arg(long, default_value = "10.250.0.2")]
    pub addr_b: Ipv4Addr,
    /// File written with the ready line once the link forwards, and removed on exit.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Seed of the loss and jitter draws (default: random); direction B->A uses seed + 1.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// A checked `up` request.
#[derive(Clone, Debug, PartialEq)]
pub struct UpConfig {
    /// Preset the link came from, if any.
    pub preset: Option<Preset>,
    /// Impairments of each direction (both directions get the same).
    pub link: LinkParams,
    /// MTU of both TUN devices, in bytes.
    pub mtu: u32,
    /// Namespace of side A.
    pub ns_a: String,
    /// Namespace of side B.
    pub ns_b: String,
    /// Address of side A.
    pub addr_a: Ipv4Addr,
    /// Address of side B.
    pub addr_b: Ipv4Addr,
    /// Where to write the ready line; `None` when not asked.
    pub ready_file: Option<PathBuf>,
    /// Seed of direction A->B.
    pub seed: u64,
}

/// Milliseconds given on the command line as a [`Duration`].
fn millis(flag: &str, ms: f64) -> Result<Duration> {
    ensure!(
        ms.is_finite() && (0.0..=MAX_DELAY_MS).contains(&ms),
        "--{flag} must be between 0 and {MAX_DELAY_MS} ms, got {ms}"
    );
    Duration::try_from_secs_f64(ms / 1000.0)
        .with_context(|| format!("--{flag} {ms} is out of range"))
}

/// Mbit/s given on the command line in bit/s; 0 means unlimited.
fn rate_bps(mbit: f64) -> Result<Option<NonZeroU64>> {
    ensure!(
        mbit.is_finite() && (0.0..=MAX_RATE_MBIT).contains(&mbit),
        "--rate-mbit must be between 0 (unlimited) and {MAX_RATE_MBIT}, got {mbit}"
    );
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked above: finite, not negative, at most 10^12 which f64 holds exactly"
    )]
    let bps = (mbit * 1e6).round() as u64;
    Ok(NonZeroU64::new(bps))
}

impl UpArgs {
    /// Combine the preset and the flags into a checked configuration.
    ///
    /// # Errors
    ///
    /// The preset is `dc`, or a value is out of range.
    pub fn resolve(&self) -> Result<UpConfig> {
        let base = match self.preset {
            Some(preset) => match preset.link() {
                Some(link) => Some(link),
                None => bail!(
                    "preset {preset} is plain loopback (0.5 ms RTT, unlimited rate) and needs no emulator: run the benchmark over 127.0.0.1"
                ),
            },
            None => None,
        };
        let delay = match (self.delay_ms, base) {
            (Some(ms), _) => millis("delay-ms", ms)?,
            (None, Some(link)) => link.rtt / 2,
            (None, None) => Duration::ZERO,
        };
        let jitter = self
            .jitter_ms
            .map_or(Ok(Duration::ZERO), |ms| millis("jitter-ms", ms))?;
        let rate = match (self.rate_mbit, base) {
            (Some(mbit), _) => rate_bps(mbit)?,
            (None, Some(link)) => NonZeroU64::new(link.rate_bps),
            (None, None) => None,
        };
        let loss_pct = self.loss_pct.or(base.map(|l| l.loss_pct)).unwrap_or(0.0);
        ensure!(
            loss_pct.is_finite() && (0.0..=100.0).contains(&loss_pct),
            "--loss-pct must be between 0 and 100, got {loss_pct}"
        );
        let mtu = self.mtu.or(base.map(|l| l.mtu)).unwrap_or(WAN_MTU);
        ensure!(
            (MIN_MTU..=MAX_MTU).contains(&mtu),
            "--mtu must be between {MIN_MTU} and {MAX_MTU}, got {mtu}"
        );
        let queue_limit_bytes = match (self.queue_kb, rate) {
            (Some(kb), _) => {
                ensure!(kb > 0, "--queue-kb must be at least 1");
                kb.saturating_mul(1024)
            }
            (None, Some(rate)) => default_queue_limit_bytes(rate.get(), delay * 2, mtu),
            // Without a rate limit nothing ever waits for the serializer.
            (None, None) => u64::MAX,
        };
        ensure!(
            self.addr_a != self.addr_b,
            "--addr-a and --addr-b must differ (both are {})",
            self.addr_a
        );
        Ok(UpConfig {
            preset: self.preset,
            link: LinkParams {
                delay,
                jitter,
                rate_bps: rate,
                loss_probability: loss_pct / 100.0,
                queue_limit_bytes,
            },
            mtu,
            ns_a: self.ns.ns_a.clone(),
            ns_b: self.ns.ns_b.clone(),
            addr_a: self.addr_a,
            addr_b: self.addr_b,
            ready_file: self.ready_file.clone(),
            seed: self.seed.unwrap_or_else(rand::random),
        })
    }
}

impl fmt::Display for UpConfig {
    /// The settings as `key=value` words, as printed on the ready line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.preset {
            Some(p) => write!(f, "preset={p}")?,
            None => f.write_str("preset=custom")?,
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            " delay_ms={} jitter_ms={}",
            ms(self.link.delay),
            ms(self.link.jitter)
        )?;
        match self.link.rate_bps {
            Some(r) => write!(f, " rate_mbit={}", r.get() as f64 / 1e6)?,
            None => f.write_str(" rate_mbit=unlimited")?,
        }
        write!(f, " loss_pct={}", self.link.loss_probability * 100.0)?;
        if self.link.queue_limit_bytes == u64::MAX {
            f.write_str(" queue_bytes=unlimited")?;
        } else {
            write!(f, " queue_bytes={}", self.link.queue_limit_bytes)?;
        }
        write!(f, " mtu={} seed={}", self.mtu, self.seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<UpConfig> {
        let mut argv = vec!["novacron-wanem", "up"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Up(up) => up.resolve(),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn preset_gives_half_rtt_rate_loss_mtu_and_bdp_queue() {
        let cfg = parse(&["--preset", "continent", "--seed", "1"]).unwrap();
        assert_eq!(cfg.link.delay, Duration::from_millis(25));
        assert_eq!(cfg.link.jitter, Duration::ZERO);
        assert_eq!(cfg.link.rate_bps, NonZeroU64::new(200_000_000));
        assert!((cfg.link.loss_probability - 0.001).abs() < 1e-12);
        assert_eq!(cfg.link.queue_limit_bytes, 1_250_000);
        assert_eq!(cfg.mtu, 1500);
        assert_eq!(
            (cfg.ns_a.as_str(), cfg.ns_b.as_str()),
            ("ncwan-a", "ncwan-b")
        );
        assert_eq!(cfg.addr_b, Ipv4Addr::new(10, 250, 0, 2));
    }

    #[test]
    fn metro_uses_jumbo_frames() {
        let cfg = parse(&["--preset", "metro"]).unwrap();
        assert_eq!(cfg.mtu, 9000);
        assert_eq!(cfg.link.queue_limit_bytes, 1_250_000);
    }

    #[test]
    fn flags_override_the_preset() {
        let cfg = parse(&[
            "--preset",
            "edge",
            "--delay-ms",
            "7.5",
            "--jitter-ms",
            "1",
            "--rate-mbit",
            "0",
            "--queue-kb",
            "64",
            "--mtu",
            "1400",
        ])
        .unwrap();
        assert_eq!(cfg.link.delay, Duration::from_micros(7500));
        assert_eq!(cfg.link.jitter, Duration::from_millis(1));
        assert_eq!(cfg.link.rate_bps, None);
        assert_eq!(cfg.link.queue_limit_bytes, 65_536);
        assert_eq!(cfg.mtu, 1400);
        assert!((cfg.link.loss_probability - 0.01).abs() < 1e-12);
    }

    #[test]
    fn no_preset_means_no_impairment() {
        let cfg = parse(&[]).unwrap();
        assert_eq!(cfg.link.delay, Duration::ZERO);
        assert_eq!(cfg.link.rate_bps, None);
        assert_eq!(cfg.link.loss_probability, 0.0);
        assert_eq!(cfg.link.queue_limit_bytes, u64::MAX);
    }

    #[test]
    fn dc_preset_is_rejected_with_a_reason() {
        let err = parse(&["--preset", "dc"]).unwrap_err();
        assert!(format!("{err}").contains("loopback"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        for args in [
            &["--loss-pct", "101"][..],
            &["--delay-ms", "-1"],
            &["--rate-mbit", "NaN"],
            &["--mtu", "100"],
            &["--queue-kb", "0"],
            &["--addr-b", "10.250.0.1"],
        ] {
            assert!(parse(args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn ready_line_settings_are_readable() {
        let cfg = parse(&["--preset", "edge", "--seed", "9"]).unwrap();
        assert_eq!(
            cfg.to_string(),
            "preset=edge delay_ms=40 jitter_ms=0 rate_mbit=20 loss_pct=1 queue_bytes=200000 mtu=1500 seed=9"
        );
    }
}
