//! `novacron node`: the node behind the API, and its DWCP feature flags ([`super::dwcp_flags`]).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use novacron_api::types::NodeInfo;

use super::exit::EXIT_STATUS_HELP;
use super::table::{human_duration, key_values};
use super::{ApiArgs, print_json};
use crate::units::human_bytes;

/// `novacron node`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct NodeArgs {
    #[command(flatten)]
    pub(super) api: ApiArgs,
    #[command(subcommand)]
    pub(super) cmd: NodeCommand,
}

/// The `node` commands.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Show the node: versions, accelerator, capacity, and your VMs by state.
    Info,
    /// Show or change the DWCP feature flags of the migration streams the node sends (admin).
    DwcpFlags(super::dwcp_flags::DwcpFlagsArgs),
}

/// Runs a `node` command.
///
/// # Errors
/// Bad settings, or the command's failure (see the exit statuses).
pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let NodeArgs { api, cmd } = args;
    super::run(&api, |ctx| async move {
        match cmd {
            NodeCommand::Info => {
                let info = ctx
                    .client
                    .node_info()
                    .await
                    .context("could not read the node's information")?;
                if ctx.json {
                    return print_json(&info);
                }
                print!("{}", info_text(&info));
                Ok(())
            }
            NodeCommand::DwcpFlags(args) => super::dwcp_flags::run(&ctx, args).await,
        }
    })
}

fn info_text(n: &NodeInfo) -> String {
    let counts: Vec<String> = n
        .vms
        .iter()
        .filter(|c| c.count > 0)
        .map(|c| format!("{} {}", c.count, c.state))
        .collect();
    let vms = if counts.is_empty() {
        "none".to_owned()
    } else {
        counts.join(", ")
    };
    key_values(&[
        ("hostname", n.hostname.clone()),
        ("version", n.version.clone()),
        ("qemu", n.qemu_version.clone()),
        ("accel", n.accel.clone()),
        ("cpus", n.cpus.to_string()),
        ("memory", human_bytes(n.memory.bytes())),
        ("uptime", human_duration(Duration::from_secs(n.uptime_secs))),
        ("tenant", n.tenant.to_string()),
        ("role", n.role.to_string()),
        ("vms", vms),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use novacron_api::types::StateCount;
    use novacron_model::{ByteSize, Name, Role, VmState};

    #[test]
    fn info_lists_the_callers_vms_by_state() {
        let mut n = NodeInfo {
            hostname: "h1".into(),
            version: "0.1.0".into(),
            qemu_version: "QEMU emulator version 9.2".into(),
            accel: "kvm".into(),
            cpus: 8,
            memory: ByteSize(16 << 30),
            uptime_secs: 3700,
            tenant: Name::new("blue").unwrap(),
            role: Role::Operator,
            vms: vec![],
        };
        let text = info_text(&n);
        assert!(text.contains("memory:    16.0 GiB\n"), "{text}");
        assert!(text.contains("uptime:    1h1m\n"), "{text}");
        assert!(text.ends_with("vms:       none\n"), "{text}");
        n.vms = vec![
            StateCount {
                state: VmState::Running,
                count: 2,
            },
            StateCount {
                state: VmState::Paused,
                count: 0,
            },
            StateCount {
                state: VmState::Stopped,
                count: 1,
            },
        ];
        assert!(info_text(&n).ends_with("vms:       2 running, 1 stopped\n"));
    }
}
