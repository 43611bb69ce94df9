//! The `novacron` command: CLI and daemon entry point. It wires the library crates together and
//! holds no logic of its own.

mod ca_cmd;
mod dwcp_cmd;
mod progress_view;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// NovaCron: run and move QEMU/KVM virtual machines across sites.
#[derive(Debug, Parser)]
#[command(name = "novacron", version, about, propagate_version = true)]
struct Cli {
    /// Log filter (`info`, `debug`, `dwcp=trace`, ...); also read from `NOVACRON_LOG`.
    #[arg(long, global = true, env = "NOVACRON_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once at start-up")]
enum Command {
    /// Move files and streams over DWCP, the WAN transport.
    #[command(subcommand)]
    Dwcp(dwcp_cmd::DwcpCommand),
    /// Manage the cluster certificate authority and node certificates.
    #[command(subcommand)]
    Ca(ca_cmd::CaCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Dwcp(cmd) => dwcp_cmd::run(cmd),
        Command::Ca(cmd) => ca_cmd::run(&cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::from(dwcp_cmd::exit_code_for(&err))
        }
    }
}

/// The error and its causes on one line: `what failed: because: because`.
fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
