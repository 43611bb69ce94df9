//! `novacron vm migrate`: move a running VM to a peer node, with a live progress line.
//! Ctrl-C while waiting cancels the migration (the VM stays where it was).

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use novacron_api::migration::VmMigrateRequest;
use novacron_model::{MigrationPhase, MigrationProgress, Operation, OperationStatus};

use super::exit::CliError;
use super::wait::WaitArgs;
use super::{Ctx, print_json};
use crate::units::human_bytes;

/// How often the operation is read while the migration runs.
const REFRESH: Duration = Duration::from_millis(500);

/// `vm migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// VM name or id.
    pub vm: String,
    /// Peer node to move it to (as the server's `--peer` names it).
    #[arg(long = "to", value_name = "NODE")]
    pub to: String,
    /// Longest the guest may be stopped at switch-over, in milliseconds (server default 300).
    #[arg(long, value_name = "MS")]
    pub max_downtime: Option<u64>,
    /// Give up, leaving the VM where it is, after this many seconds (server default 600).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Allow post-copy: after the first pass the guest runs on the destination, which pulls
    /// the pages it lacks (finishes under any dirty rate; a link lost meanwhile leaves the
    /// guest paused on both nodes).
    #[arg(long)]
    pub postcopy: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// The request `args` ask for.
pub fn request(args: &MigrateArgs) -> VmMigrateRequest {
    VmMigrateRequest {
        target: args.to.clone(),
        max_downtime_ms: args.max_downtime,
        timeout_secs: args.timeout,
        postcopy: args.postcopy,
    }
}

/// Starts the migration and follows it to its end.
pub async fn run(ctx: &Ctx, args: &MigrateArgs) -> anyhow::Result<()> {
    let req = request(args);
    let op = ctx
        .client
        .migrate_vm(&args.vm, &req)
        .await
        .with_context(|| format!("could not migrate VM {} to {}", args.vm, args.to))?;
    if args.wait.no_wait {
        return if ctx.json {
            print_json(&op)
        } else {
            println!("{}", op.id);
            Ok(())
        };
    }
    let line = Line::start(&format!("migrate {} → {}", args.vm, args.to));
    let deadline = Instant::now() + Duration::from_secs(args.wait.wait_timeout);
    let mut op = op;
    let mut cancelled = false;
    while !op.status.is_done() {
        if Instant::now() >= deadline {
            line.abandon();
            return Err(CliError::WaitTimedOut {
                kind: op.kind,
                target: args.vm.clone(),
                id: op.id,
                after: Duration::from_secs(args.wait.wait_timeout),
            }
            .into());
        }
        tokio::select! {
            () = tokio::time::sleep(REFRESH) => {}
            _ = tokio::signal::ctrl_c(), if !cancelled => {
                cancelled = true;
                line.note("cancelling (the VM stays where it is)");
                ctx.client
                    .cancel_operation(op.id)
                    .await
                    .with_context(|| format!("could not cancel operation {}", op.id))?;
            }
        }
        op = ctx
            .client
            .operation(op.id)
            .await
            .with_context(|| format!("lost track of operation {}", op.id))?;
        if let Some(p) = &op.migration {
            line.show(&progress_line(p));
        }
    }
    line.finish();
    finish(ctx, &args.vm, &op, cancelled)
}

fn finish(ctx: &Ctx, vm: &str, op: &Operation, cancelled: bool) -> anyhow::Result<()> {
    if ctx.json {
        print_json(op)?;
    } else if let Some(p) = &op.migration {
        eprintln!("{}", summary_line(p, op.status));
    }
    match op.status {
        OperationStatus::Succeeded => Ok(()),
        _ if cancelled => Err(CliError::Interrupted {
            kind: op.kind,
            target: vm.to_owned(),
            id: op.id,
        }
        .into()),
        _ => Err(CliError::OperationFailed {
            kind: op.kind,
            target: vm.to_owned(),
            error: op
                .error
                .clone()
                .unwrap_or_else(|| "no reason given".to_owned()),
        }
        .into()),
    }
}

/// `memory pass 2 · 212.0 MiB of 256.0 MiB sent, 40.0 MiB left · 85.3 MiB/s · dirty 1.2 MiB/s · ETA 1 s`.
pub fn progress_line(p: &MigrationProgress) -> String {
    let phase = p.phase.map_or("starting", |ph| ph.as_str());
    let mut parts = vec![if p.pass > 0 && phase == "memory" {
        format!("memory pass {}", p.pass)
    } else {
        phase.replace('_', "-")
    }];
    if p.image_total > 0 && p.phase == Some(MigrationPhase::Image) {
        parts.push(format!(
            "image {} of {} copied",
            human_bytes(p.image_copied),
            human_bytes(p.image_total)
        ));
    }
    if p.disk_total > 0 {
        parts.push(format!(
            "disks {} of {} copied",
            human_bytes(p.disk_copied),
            human_bytes(p.disk_total)
        ));
    }
    if p.memory_total > 0 {
        parts.push(format!(
            "{} of {} sent, {} left",
            human_bytes(p.bytes_sent),
            human_bytes(p.memory_total),
            human_bytes(p.bytes_remaining)
        ));
    }
    if p.wire_rate > 0 {
        parts.push(format!("{}/s", human_bytes(p.wire_rate)));
    }
    if p.dirty_rate > 0 {
        parts.push(format!("dirty {}/s", human_bytes(p.dirty_rate)));
    }
    if p.throttle_percent > 0 {
        parts.push(format!("throttle {} %", p.throttle_percent));
    }
    if let Some(eta) = p.eta_secs {
        parts.push(format!("ETA {eta} s"));
    }
    parts.join(" · ")
}

/// The result line: time, downtime, bytes and the data-reduction ratio.
pub fn summary_line(p: &MigrationProgress, status: OperationStatus) -> String {
    #[allow(
        clippy::cast_precision_loss,
        reason = "display only: milliseconds and byte counts far below 2^53"
    )]
    let (secs, ratio) = (
        p.elapsed_ms as f64 / 1000.0,
        (p.wire_bytes > 0).then(|| p.stream_bytes as f64 / p.wire_bytes as f64),
    );
    let word = match status {
        OperationStatus::Succeeded => "done",
        OperationStatus::Failed => "failed",
        OperationStatus::Running => "running",
    };
    let mut line = format!("migration to {} {word} after {secs:.1} s", p.target);
    if let Some(d) = p.downtime_ms {
        line.push_str(&format!(", downtime {d} ms"));
    }
    if p.stream_bytes > 0 {
        line.push_str(&format!(", {} streamed", human_bytes(p.stream_bytes)));
    }
    if let Some(r) = ratio {
        line.push_str(&format!(
            " (stream/wire {r:.2}, {} on the wire",
            human_bytes(p.wire_bytes)
        ));
        if p.ref_bytes > 0 {
            line.push_str(&format!(", {} by reference", human_bytes(p.ref_bytes)));
        }
        line.push(')');
    }
    line
}

/// The live line: an indicatif spinner on a terminal, a line per phase change otherwise.
struct Line {
    bar: Option<ProgressBar>,
    what: String,
    last_phase: std::cell::RefCell<String>,
}

impl Line {
    fn start(what: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_prefix(what.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if bar.is_none() {
            eprintln!("{what}: started");
        }
        Self {
            bar,
            what: what.to_owned(),
            last_phase: std::cell::RefCell::new(String::new()),
        }
    }

    fn show(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(text.to_owned()),
            None => {
                let phase = text.split(" · ").next().unwrap_or_default().to_owned();
                if *self.last_phase.borrow() != phase {
                    eprintln!("{}: {text}", self.what);
                    self.last_phase.replace(phase);
                }
            }
        }
    }

    fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("{}: {text}", self.what)),
            None => eprintln!("{}: {text}", self.what),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use novacron_model::MigrationPhase;

    #[test]
    fn the_progress_line_names_the_pass_sizes_rates_and_eta() {
        let p = MigrationProgress {
            target: "b".into(),
            phase: Some(MigrationPhase::Memory),
            pass: 2,
            bytes_sent: 200 << 20,
            bytes_remaining: 40 << 20,
            memory_total: 256 << 20,
            wire_rate: 80 << 20,
            dirty_rate: 1 << 20,
            eta_secs: Some(1),
            ..MigrationProgress::default()
        };
        let line = progress_line(&p);
        assert!(line.starts_with("memory pass 2 · "), "{line}");
        for part in ["of 256", "left", "/s · dirty", "ETA 1 s"] {
            assert!(line.contains(part), "{part} missing: {line}");
        }
        let p = MigrationProgress {
            phase: Some(MigrationPhase::SwitchOver),
            ..MigrationProgress::default()
        };
        assert_eq!(progress_line(&p), "switch-over");
    }

    #[test]
    fn the_summary_gives_time_downtime_and_ratio() {
        let p = MigrationProgress {
            target: "b".into(),
            elapsed_ms: 2500,
            downtime_ms: Some(42),
            stream_bytes: 3000,
            wire_bytes: 1000,
            ..MigrationProgress::default()
        };
        let line = summary_line(&p, OperationStatus::Succeeded);
        assert!(
            line.starts_with("migration to b done after 2.5 s, downtime 42 ms"),
            "{line}"
        );
        assert!(
            line.ends_with("(stream/wire 3.00, 1000 B on the wire)"),
            "{line}"
        );
        let p = MigrationProgress {
            ref_bytes: 2048,
            ..p
        };
        let line = summary_line(&p, OperationStatus::Succeeded);
        assert!(line.ends_with(", 2.0 KiB by reference)"), "{line}");
    }
}
