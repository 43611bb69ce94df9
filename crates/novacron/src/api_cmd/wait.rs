//! Waiting for an operation: long polls of `GET /operations/{id}/wait` until it ends, with a
//! spinner (kind, target, elapsed time) on a terminal and plain lines otherwise.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use novacron_model::{Operation, OperationStatus};

use super::exit::CliError;
use super::{Ctx, print_json};

/// Longest single long poll; the loop asks again until the operation ends or the wait is over.
const POLL: Duration = Duration::from_secs(60);

/// How an action's operation is followed.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Print the operation id and return at once instead of waiting for the operation.
    #[arg(long)]
    pub no_wait: bool,
    /// Longest wait for the operation, in seconds (then exit status 10; it goes on).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub wait_timeout: u64,
}

/// Follows `op` (started on `target`, named as the user gave it): returns it once it
/// succeeded, or at once with `--no-wait`. Prints the operation as JSON with `--json`, its id
/// with `--no-wait`, and a result line on standard error otherwise.
///
/// # Errors
/// [`CliError::OperationFailed`], [`CliError::WaitTimedOut`], [`CliError::Interrupted`], or a
/// client error while polling.
pub async fn follow(
    ctx: &Ctx,
    op: Operation,
    target: &str,
    args: &WaitArgs,
    print: bool,
) -> anyhow::Result<Operation> {
    if args.no_wait {
        if print {
            if ctx.json {
                print_json(&op)?;
            } else {
                println!("{}", op.id);
            }
        }
        return Ok(op);
    }
    let what = format!("{} {target}", op.kind);
    let spinner = Spinner::start(&what, &op);
    let limit = Duration::from_secs(args.wait_timeout);
    let waited = tokio::select! {
        r = poll(ctx, op.clone(), limit) => r,
        _ = tokio::signal::ctrl_c() => {
            spinner.abandon();
            return Err(CliError::Interrupted {
                kind: op.kind,
                target: target.to_owned(),
                id: op.id,
            }
            .into());
        }
    };
    let done = match waited {
        Ok(Some(done)) => done,
        Ok(None) => {
            spinner.abandon();
            return Err(CliError::WaitTimedOut {
                kind: op.kind,
                target: target.to_owned(),
                id: op.id,
                after: limit,
            }
            .into());
        }
        Err(e) => {
            spinner.abandon();
            return Err(e).with_context(|| format!("lost track of operation {}", op.id));
        }
    };
    spinner.finish(&what, &done);
    match done.status {
        OperationStatus::Succeeded => {
            if print && ctx.json {
                print_json(&done)?;
            }
            Ok(done)
        }
        OperationStatus::Failed | OperationStatus::Running => Err(CliError::OperationFailed {
            kind: done.kind,
            target: target.to_owned(),
            error: done
                .error
                .clone()
                .unwrap_or_else(|| "no reason given".to_owned()),
        }
        .into()),
    }
}

/// The operation once it has ended, `None` if it still runs after `limit`.
async fn poll(
    ctx: &Ctx,
    mut op: Operation,
    limit: Duration,
) -> Result<Option<Operation>, novacron_api::client::ClientError> {
    let deadline = Instant::now() + limit;
    while !op.status.is_done() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        op = ctx.client.wait_operation(op.id, left.min(POLL)).await?;
    }
    Ok(Some(op))
}

/// The live line while waiting: an indicatif spinner on a terminal, else nothing until the
/// result line.
struct Spinner {
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Spinner {
    fn start(what: &str, op: &Operation) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_message(what.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if bar.is_none() {
            eprintln!("{what}: waiting (operation {})", op.id);
        }
        Self {
            bar,
            started: Instant::now(),
        }
    }

    fn finish(self, what: &str, op: &Operation) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "{what}: {} after {:.1} s",
            status_word(op.status),
            self.started.elapsed().as_secs_f64()
        );
    }

    fn abandon(self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

fn status_word(s: OperationStatus) -> &'static str {
    match s {
        OperationStatus::Running => "still running",
        OperationStatus::Succeeded => "succeeded",
        OperationStatus::Failed => "failed",
    }
}
