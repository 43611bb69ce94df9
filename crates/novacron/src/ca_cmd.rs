//! `novacron ca`: create the cluster certificate authority and issue node certificates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

/// Certificate authority commands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new cluster CA (`ca.crt`, `ca.key`) in DIR.
    Init {
        /// Directory for the CA files; created if missing.
        #[arg(long, env = "NOVACRON_CA_DIR")]
        dir: PathBuf,
        /// Common name of the CA.
        #[arg(long, default_value = "novacron-cluster-ca")]
        name: String,
    },
    /// Issue a certificate for a node, signed by the CA in DIR.
    Issue {
        /// Node name; also the certificate's first subject alternative name.
        node: String,
        /// Directory holding `ca.crt` and `ca.key`.
        #[arg(long, env = "NOVACRON_CA_DIR")]
        dir: PathBuf,
        /// Extra names or IP addresses the node is reached by (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Where to write `NODE.crt` and `NODE.key` (default: the CA directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs a `ca` subcommand.
pub fn run(cmd: &CaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CaCommand::Init { dir, name } => {
            let paths = dwcp::pki::init_ca(dir, name)
                .with_context(|| format!("could not create a CA in {}", dir.display()))?;
            println!("CA certificate: {}", paths.cert.display());
            println!("CA key:         {} (keep it secret)", paths.key.display());
        }
        CaCommand::Issue {
            node,
            dir,
            sans,
            out,
        } => {
            let out = out.clone().unwrap_or_else(|| dir.clone());
            let paths = dwcp::pki::issue_node(dir, node, sans, &out)
                .with_context(|| format!("could not issue a certificate for {node}"))?;
            println!("certificate: {}", paths.cert.display());
            println!("key:         {}", paths.key.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
