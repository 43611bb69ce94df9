//! The `novacron` command: CLI and daemon entry point. It wires the library crates together and
//! holds no logic of its own.

mod api_cmd;
mod ca_cmd;
mod dwcp_cmd;
mod progress_view;
mod server_cmd;
mod tls_listener;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// NovaCron: run and move QEMU/KVM virtual machines across sites.
#[derive(Debug, Parser)]
#[command(name = "novacron", version, about, propagate_version = true)]
struct Cli {
    /// Log filter (`info`, `debug`, `dwcp=trace`, ...); also read from `NOVACRON_LOG`.
    /// Default: `info` for `server`, `warn` otherwise.
    #[arg(long, global = true, env = "NOVACRON_LOG")]
    log: Option<String>,
    /// Write logs as JSON lines (for log collectors).
    #[arg(long, global = true, env = "NOVACRON_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Move files and streams over DWCP, the WAN transport.
    #[command(subcommand)]
    Dwcp(dwcp_cmd::DwcpCommand),
    /// Manage the cluster certificate authority and node certificates.
    #[command(subcommand)]
    Ca(ca_cmd::CaCommand),
    /// Create, list, start, stop and delete virtual machines.
    Vm(api_cmd::vm::VmArgs),
    /// List and import the images VM disks are made from.
    Image(api_cmd::image::ImageArgs),
    /// Show the node behind the API.
    Node(api_cmd::node::NodeArgs),
    /// List tenants and set their quotas (admin).
    Tenant(api_cmd::admin::TenantArgs),
    /// Issue API tokens (admin).
    Token(api_cmd::admin::TokenArgs),
    /// Run the node daemon: VMs on this host through the REST API.
    Server(server_cmd::ServerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Server(_)) {
        "info"
    } else {
        "warn"
    };
    let filter =
        tracing_subscriber::EnvFilter::try_new(cli.log.as_deref().unwrap_or(default_level))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let result = match cli.command {
        Command::Dwcp(cmd) => dwcp_cmd::run(cmd),
        Command::Ca(cmd) => ca_cmd::run(&cmd),
        Command::Vm(args) => api_cmd::vm::run(args),
        Command::Image(args) => api_cmd::image::run(args),
        Command::Node(args) => api_cmd::node::run(args),
        Command::Tenant(args) => api_cmd::admin::run_tenant(args),
        Command::Token(args) => api_cmd::admin::run_token(args),
        Command::Server(args) => server_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::from(api_cmd::exit_code_for(&err))
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
