//! `novacron-wanem`: a user-space WAN link emulator for tests and benchmarks.
//!
//! The kernel this project runs on has no `netem`, so links with delay, jitter, loss and a rate
//! limit are emulated here: two network namespaces (`ncwan-a`, `ncwan-b` by default), each with a
//! TUN device, joined by this process, which forwards every packet from one device to the other
//! after the [`link`] model of that direction has delayed, paced or dropped it.
//!
//! ```text
//!  ncwan-a                         novacron-wanem                          ncwan-b
//!  10.250.0.1 ── ncwan0 ══ read ─► [queue ─ serializer ─ loss ─ delay] ─ write ══ ncwan0 ── 10.250.0.2
//!                      ══ write ◄─ [delay ─ loss ─ serializer ─ queue] ◄─ read ══
//! ```
//!
//! Modules: [`cli`] (flags and their checks), [`presets`] (the standard links), [`link`] (pure
//! pacing, queue and loss model), [`forward`] (one forwarding thread per direction), [`tun`],
//! [`netns`], [`signals`] and [`up`] (setup and teardown).

pub mod cli;
pub mod forward;
pub mod link;
pub mod netns;
pub mod presets;
pub mod signals;
pub mod tun;
pub mod up;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, NamespaceArgs};
use crate::presets::{Preset, default_queue_limit_bytes};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("novacron-wanem: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up(args) => up::run(&args.resolve()?),
        Command::Down(ns) => down(&ns),
        Command::Presets => {
            print_presets();
            Ok(())
        }
    }
}

/// Delete the namespaces if they exist.
fn down(ns: &NamespaceArgs) -> Result<()> {
    for name in [&ns.ns_a, &ns.ns_b] {
        netns::validate_name(name)?;
        if netns::delete(name)? {
            println!("deleted namespace {name}");
        } else {
            println!("namespace {name} does not exist");
        }
    }
    Ok(())
}

fn print_presets() {
    println!("preset            rtt_ms  rate_mbit  loss_pct  mtu   queue_bytes");
    for preset in Preset::ALL {
        match preset.link() {
            Some(l) => println!(
                "{:<16}  {:>6}  {:>9}  {:>8}  {:>4}  {:>11}",
                preset.to_string(),
                l.rtt.as_millis(),
                l.rate_bps / 1_000_000,
                l.loss_pct,
                l.mtu,
                default_queue_limit_bytes(l.rate_bps, l.rtt, l.mtu)
            ),
            None => println!("{preset:<16}  loopback, no emulator needed"),
        }
    }
}
