//! The commands that talk to a node's REST API: `vm`, `image`, `node`, `tenant`, `token`.
//!
//! Each group flattens [`ApiArgs`] (server, token, config file, `--json`); [`run`] resolves
//! them ([`config`]), makes a [`Client`] and runs the command on a small runtime. Actions that
//! start an operation wait for it ([`wait`]). Errors carry a [`ClientError`] or
//! [`exit::CliError`] that [`exit_code_for`] turns into the documented exit status.
//!
//! [`ClientError`]: novacron_api::client::ClientError

pub mod admin;
mod config;
mod console;
pub mod dwcp_flags;
pub mod exit;
pub mod image;
mod migrate;
pub mod node;
mod table;
pub mod vm;
mod wait;

pub use exit::exit_code_for;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use novacron_api::client::{Client, ClientError, TlsClientOptions};
use serde::Serialize;

/// Server, credentials and output format, shared by the API command groups.
#[derive(Debug, Args)]
#[command(next_help_heading = "API options")]
pub struct ApiArgs {
    /// Server base URL [env: NOVACRON_ADDR; config: addr; default: http://127.0.0.1:8640].
    #[arg(long, global = true, value_name = "URL")]
    addr: Option<String>,
    /// API token [env: NOVACRON_TOKEN; config: token].
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// File holding the API token [env: NOVACRON_TOKEN_FILE; config: token_file].
    #[arg(long, global = true, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Config file (TOML: addr, token, token_file) [env: NOVACRON_CONFIG; default:
    /// $XDG_CONFIG_HOME/novacron/config.toml or ~/.config/novacron/config.toml].
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the API's JSON answer (one document) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Cluster CA certificate (PEM) an `https://` server must be certified by.
    #[arg(long, global = true, env = "NOVACRON_CA_CERT", value_name = "PATH")]
    ca_cert: Option<PathBuf>,
}

/// What a command runs with.
pub struct Ctx {
    /// The API.
    pub client: Client,
    /// `--json`.
    pub json: bool,
}

impl ApiArgs {
    fn flags(&self) -> config::Flags {
        config::Flags {
            addr: self.addr.clone(),
            token: self.token.clone(),
            token_file: self.token_file.clone(),
            config: self.config.clone(),
        }
    }
}

/// Resolves `args`, connects, and runs `command` to completion on a fresh runtime.
///
/// # Errors
/// Bad settings, or whatever `command` fails with.
pub fn run<F, Fut>(args: &ApiArgs, command: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let settings = config::resolve(&args.flags(), &|name| std::env::var(name).ok())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let tls = match &args.ca_cert {
        Some(path) => Some(TlsClientOptions {
            ca_pem: std::fs::read(path)
                .with_context(|| format!("could not read the CA certificate {}", path.display()))?,
            ..TlsClientOptions::default()
        }),
        None => None,
    };
    runtime.block_on(async {
        let client = match &tls {
            Some(tls) => Client::with_tls(&settings.addr, &settings.token, tls),
            None => Client::new(&settings.addr, &settings.token),
        }
        .context("invalid server address, token or CA certificate")?;
        let https = client.base_url().starts_with("https://");
        let result = command(Ctx {
            client,
            json: args.json,
        })
        .await;
        match result {
            Err(e) if https && tls.is_none() && is_connect_error(&e) => Err(e.context(
                "an https server is trusted only with the cluster CA certificate: give --ca-cert",
            )),
            other => other,
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `err` is a failure to connect (a refused certificate among them).
fn is_connect_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ClientError>(),
            Some(ClientError::Connect { .. })
        )
    })
}

/// Prints `value` as pretty JSON on standard output.
///
/// # Errors
/// Serialization failure (not expected for API types).
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("could not write JSON")?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    /// A stand-in for the top-level parser, with the API groups.
    #[derive(Debug, clap::Parser)]
    pub(super) struct TestCli {
        #[command(subcommand)]
        cmd: TestCommand,
    }

    #[derive(Debug, clap::Subcommand)]
    pub(super) enum TestCommand {
        Vm(vm::VmArgs),
        Image(image::ImageArgs),
        Node(node::NodeArgs),
        Tenant(admin::TenantArgs),
        Token(admin::TokenArgs),
    }

    pub(super) fn parse(args: &[&str]) -> Result<TestCommand, clap::Error> {
        TestCli::try_parse_from(std::iter::once("novacron").chain(args.iter().copied()))
            .map(|c| c.cmd)
    }

    #[test]
    fn connection_flags_are_accepted_before_and_after_the_subcommand() {
        let Ok(TestCommand::Vm(v)) = parse(&["vm", "--addr", "h:1", "list", "--json"]) else {
            panic!("no parse")
        };
        assert_eq!(v.api.addr.as_deref(), Some("h:1"));
        assert!(v.api.json);
        let e = parse(&["vm", "list", "--token", "a", "--token-file", "f"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn the_vm_group_help_lists_the_exit_codes() {
        let e = parse(&["vm", "--help"]).unwrap_err();
        let help = e.to_string();
        assert!(help.contains("Exit status:"), "{help}");
        assert!(help.contains("9    the operation ran and failed"), "{help}");
    }

    #[test]
    fn every_group_parses_its_commands() {
        for args in [
            &["image", "list"][..],
            &[
                "image", "import", "deb", "--disk", "d.qcow2", "--kernel", "k",
            ],
            &["node", "info"],
            &["node", "dwcp-flags"],
            &["node", "dwcp-flags", "--set", "flags.json"],
            &["node", "dwcp-flags", "--kill-switch", "on"],
            &["tenant", "list"],
            &["tenant", "put", "blue", "--max-vms", "3"],
            &["token", "create", "--tenant", "blue", "--role", "viewer"],
        ] {
            parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        assert!(parse(&["token", "create", "--tenant", "b", "--role", "root"]).is_err());
        assert!(parse(&["image", "import", "i", "--disk", "d", "--initrd", "x"]).is_err());
        assert!(parse(&["node", "dwcp-flags", "--kill-switch", "maybe"]).is_err());
        let both = ["node", "dwcp-flags", "--set", "f", "--kill-switch", "off"];
        assert_eq!(
            parse(&both).unwrap_err().kind(),
            clap::error::ErrorKind::ArgumentConflict
        );
    }
}
