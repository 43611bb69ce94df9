//! The live progress display of `dwcp send`: a bar on a terminal, a line every few seconds
//! otherwise.

use std::io::IsTerminal as _;
use std::time::Duration;

use dwcp::amst::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::units::human_bytes;

/// A running display; [`ProgressView::finish`] ends it.
pub struct ProgressView {
    task: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<bool>,
}

fn line(p: &Progress) -> String {
    let total = p.bytes_total.map_or_else(|| "?".to_owned(), human_bytes);
    let eta = p
        .eta()
        .map_or_else(|| "--".to_owned(), |d| format!("{}s", d.as_secs()));
    format!(
        "{} {}/{} {:.1} Mbit/s streams {} retransmitted {} eta {}",
        p.phase,
        human_bytes(p.bytes_acked),
        total,
        p.rate_bytes_per_sec * 8.0 / 1e6,
        p.streams,
        human_bytes(p.retransmitted_bytes),
        eta
    )
}

impl ProgressView {
    /// Starts showing `rx` on standard error.
    pub fn spawn(mut rx: watch::Receiver<Progress>) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<bool>();
        let task = tokio::spawn(async move {
            let tty = std::io::stderr().is_terminal();
            let bar = if tty {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template("{spinner} [{bar:30}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                bar.set_style(style);
                Some(bar)
            } else {
                None
            };
            let mut every = tokio::time::interval(if tty {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            });
            every.tick().await;
            loop {
                tokio::select! {
                    ok = &mut stopped => {
                        let p = rx.borrow().clone();
                        match &bar {
                            Some(bar) => {
                                bar.set_position(p.bytes_acked);
                                bar.set_message(line(&p));
                                if ok.unwrap_or(false) { bar.finish() } else { bar.abandon() }
                            }
                            None => eprintln!("{}", line(&p)),
                        }
                        return;
                    }
                    _ = every.tick() => {
                        let p = rx.borrow_and_update().clone();
                        match &bar {
                            Some(bar) => {
                                if let Some(total) = p.bytes_total {
                                    bar.set_length(total);
                                }
                                bar.set_position(p.bytes_acked);
                                bar.set_message(line(&p));
                            }
                            None => eprintln!("{}", line(&p)),
                        }
                    }
                }
            }
        });
        Self { task, stop }
    }

    /// Draws the last state and stops.
    pub async fn finish(self, ok: bool) {
        // The task only ends on this signal, so it is still there to receive it.
        let _ = self.stop.send(ok);
        let _ = self.task.await;
    }
}
