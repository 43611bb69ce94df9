//! `novacron vm`: create, list, show, act on and delete virtual machines.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use novacron_api::types::{VmAction, VmStopRequest};
use novacron_model::{ByteSize, Name, Timestamp, Vm, VmSpec};

use super::console::{self, ConsoleArgs};
use super::exit::EXIT_STATUS_HELP;
use super::migrate::{self, MigrateArgs};
use super::table::{human_duration, key_values, or_dash, short_id, table};
use super::wait::{WaitArgs, follow};
use super::{ApiArgs, Ctx, print_json};

/// `novacron vm`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_STATUS_HELP)]
pub struct VmArgs {
    #[command(flatten)]
    pub(super) api: ApiArgs,
    #[command(subcommand)]
    pub(super) cmd: VmCommand,
}

/// The `vm` commands.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Create a VM with a root disk made from an image (stopped unless --start).
    Create(CreateArgs),
    /// List your VMs.
    List,
    /// Show one VM.
    Show {
        /// VM name or id.
        vm: String,
    },
    /// Start QEMU and boot the VM.
    Start(ActionArgs),
    /// Power the VM down: ACPI request, then forced after the timeout.
    Stop(StopArgs),
    /// Stop the VM's vCPUs.
    Pause(ActionArgs),
    /// Restart the vCPUs of a paused VM.
    Resume(ActionArgs),
    /// Reset the guest (QEMU keeps running).
    Restart(ActionArgs),
    /// Delete a VM and its disks.
    Delete(DeleteArgs),
    /// Print the last lines of the VM's serial console.
    Console(ConsoleArgs),
    /// Move a running VM to a peer node while it keeps running (Ctrl-C cancels).
    Migrate(MigrateArgs),
}

/// `vm create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the VM: a-z, 0-9 and '-', up to 63 characters.
    pub name: Name,
    /// Image the root disk is made from.
    #[arg(long)]
    pub image: Name,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    /// Guest memory (512M, 2G; a whole number of MiB).
    #[arg(long, default_value = "512M")]
    pub memory: ByteSize,
    /// Size of the root disk (default: the image's size).
    #[arg(long, value_name = "SIZE")]
    pub disk_size: Option<ByteSize>,
    /// Start the VM once created.
    #[arg(long)]
    pub start: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `vm start|pause|resume|restart`.
#[derive(Debug, Args)]
pub struct ActionArgs {
    /// VM name or id.
    pub vm: String,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `vm stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// VM name or id.
    pub vm: String,
    /// Stop QEMU at once, without asking the guest to power off.
    #[arg(long)]
    pub force: bool,
    /// Seconds the guest gets to power off before QEMU is stopped (server default 30).
    #[arg(long, value_name = "SECS", conflicts_with = "force")]
    pub timeout: Option<u64>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `vm delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// VM name or id.
    pub vm: String,
    /// Stop the VM first if it runs (otherwise a running VM is refused).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Runs a `vm` command.
///
/// # Errors
/// Bad settings, or the command's failure (see the exit statuses).
pub fn run(args: VmArgs) -> anyhow::Result<ExitCode> {
    let VmArgs { api, cmd } = args;
    super::run(&api, |ctx| async move { dispatch(&ctx, cmd).await })
}

async fn dispatch(ctx: &Ctx, cmd: VmCommand) -> anyhow::Result<()> {
    match cmd {
        VmCommand::Create(a) => create(ctx, &a).await,
        VmCommand::List => list(ctx).await,
        VmCommand::Show { vm } => show(ctx, &vm).await,
        VmCommand::Start(a) => act(ctx, &a.vm, VmAction::Start, &a.wait).await,
        VmCommand::Stop(a) => act(ctx, &a.vm, stop_action(&a), &a.wait).await,
        VmCommand::Pause(a) => act(ctx, &a.vm, VmAction::Pause, &a.wait).await,
        VmCommand::Resume(a) => act(ctx, &a.vm, VmAction::Resume, &a.wait).await,
        VmCommand::Restart(a) => act(ctx, &a.vm, VmAction::Restart, &a.wait).await,
        VmCommand::Migrate(a) => migrate::run(ctx, &a).await,
        VmCommand::Delete(a) => delete(ctx, &a).await,
        VmCommand::Console(a) => console::run(ctx, &a).await,
    }
}

/// The spec `vm create` asks for.
fn spec(args: &CreateArgs) -> VmSpec {
    VmSpec {
        name: args.name.clone(),
        vcpus: args.vcpus,
        memory: args.memory,
        image: args.image.clone(),
        disk_size: args.disk_size,
    }
}

/// The stop request `vm stop` sends.
fn stop_action(args: &StopArgs) -> VmAction {
    VmAction::Stop(VmStopRequest {
        timeout_secs: args.timeout,
        force: args.force,
    })
}

/// The word of an action, for messages.
fn verb(action: &VmAction) -> &'static str {
    match action {
        VmAction::Start => "start",
        VmAction::Stop(_) => "stop",
        VmAction::Pause => "pause",
        VmAction::Resume => "resume",
        VmAction::Restart => "restart",
    }
}

async fn create(ctx: &Ctx, args: &CreateArgs) -> anyhow::Result<()> {
    let name = args.name.as_str();
    let mut vm = ctx
        .client
        .create_vm(&spec(args))
        .await
        .with_context(|| format!("could not create VM {name}"))?;
    if args.start {
        let op = ctx
            .client
            .vm_action(name, &VmAction::Start)
            .await
            .with_context(|| format!("VM {name} was created but could not be started"))?;
        if args.wait.no_wait {
            eprintln!("{name}: starting (operation {})", op.id);
        }
        follow(ctx, op, name, &args.wait, false).await?;
        vm = ctx
            .client
            .get_vm(name)
            .await
            .with_context(|| format!("could not read VM {name}"))?;
    }
    if ctx.json {
        print_json(&vm)
    } else {
        print!("{}", show_text(&vm, Timestamp::now()));
        Ok(())
    }
}

async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let vms = ctx.client.list_vms().await.context("could not list VMs")?;
    if ctx.json {
        return print_json(&vms);
    }
    print!("{}", list_text(&vms, Timestamp::now()));
    Ok(())
}

async fn show(ctx: &Ctx, vm: &str) -> anyhow::Result<()> {
    let found = ctx
        .client
        .get_vm(vm)
        .await
        .with_context(|| format!("could not show VM {vm}"))?;
    if ctx.json {
        return print_json(&found);
    }
    print!("{}", show_text(&found, Timestamp::now()));
    Ok(())
}

async fn act(ctx: &Ctx, vm: &str, action: VmAction, wait: &WaitArgs) -> anyhow::Result<()> {
    let op = ctx
        .client
        .vm_action(vm, &action)
        .await
        .with_context(|| format!("could not {} VM {vm}", verb(&action)))?;
    follow(ctx, op, vm, wait, true).await.map(drop)
}

async fn delete(ctx: &Ctx, args: &DeleteArgs) -> anyhow::Result<()> {
    let vm = &args.vm;
    let op = ctx
        .client
        .delete_vm(vm, args.force)
        .await
        .with_context(|| format!("could not delete VM {vm}"))?;
    follow(ctx, op, vm, &args.wait, true).await.map(drop)
}

fn uptime(vm: &Vm, now: Timestamp) -> Option<String> {
    vm.runtime
        .as_ref()
        .map(|r| human_duration(r.started_at.until(now)))
}

/// The `vm list` table.
fn list_text(vms: &[Vm], now: Timestamp) -> String {
    let rows: Vec<Vec<String>> = vms
        .iter()
        .map(|vm| {
            vec![
                vm.spec.name.to_string(),
                short_id(&vm.id),
                vm.state.to_string(),
                vm.spec.vcpus.to_string(),
                vm.spec.memory.to_string(),
                vm.spec.image.to_string(),
                or_dash(uptime(vm, now)),
            ]
        })
        .collect();
    table(
        &["NAME", "ID", "STATE", "VCPUS", "MEMORY", "IMAGE", "UPTIME"],
        &rows,
    )
}

/// The `vm show` block.
fn show_text(vm: &Vm, now: Timestamp) -> String {
    let rt = vm.runtime.as_ref();
    let mut out = key_values(&[
        ("name", vm.spec.name.to_string()),
        ("id", vm.id.to_string()),
        ("tenant", vm.tenant.to_string()),
        ("state", vm.state.to_string()),
        ("state_reason", or_dash(vm.state_reason.as_deref())),
        ("vcpus", vm.spec.vcpus.to_string()),
        ("memory", vm.spec.memory.to_string()),
        ("image", vm.spec.image.to_string()),
        ("disk_size", or_dash(vm.spec.disk_size)),
        ("pid", or_dash(rt.map(|r| r.pid))),
        ("accel", or_dash(rt.map(|r| r.accel.as_str()))),
        ("started_at", or_dash(rt.map(|r| r.started_at))),
        ("uptime", or_dash(uptime(vm, now))),
        ("created_at", vm.created_at.to_string()),
        ("updated_at", vm.updated_at.to_string()),
    ]);
    if vm.disks.is_empty() {
        out.push_str("disks:         -\n");
    } else {
        out.push_str("disks:\n");
        let rows: Vec<Vec<String>> = vm
            .disks
            .iter()
            .map(|d| {
                vec![
                    format!("  {}", d.name),
                    d.virtual_size.to_string(),
                    d.path.clone(),
                    d.backing
                        .as_deref()
                        .map_or_else(String::new, |b| format!("(backing {b})")),
                ]
            })
            .collect();
        let text = table(&["", "", "", ""], &rows);
        // The header row of empty titles is only there for the column widths.
        out.extend(text.lines().skip(1).map(|l| format!("{l}\n")));
    }
    out
}

#[cfg(test)]
#[path = "vm_test.rs"]
mod tests;
