//! The node's use of DWCP for migrations: a receiver that only accepts streams registered
//! for a prepared migration (sinks), and senders of QEMU's stream and of disks' NBD
//! connections.

use super::Cluster;
use dwcp::amst::{
    Progress, Receiver, ReceiverConfig, SendOptions, SinkHandle, SinkRegistry, Source,
    TransferSummary,
};
use dwcp::transport::{Acceptor, Dialer, Security, TcpTuning};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a migration stream may have no working connection before it is given up on:
/// the migration then fails and the guest stays on the source.
const LINK_LOST: Duration = Duration::from_secs(15);

/// Unacknowledged bytes a migration stream may have in flight. Enough for the bandwidth-delay
/// product of the standard links (100 Mbit/s × 150 ms is 1.9 MB), and small, because QEMU
/// counts what DWCP holds as sent: at switch-over all of it must still cross the link while
/// the guest is stopped. The policy narrows it further near the switch-over.
const WINDOW: u64 = novacron_migrate::MAX_WINDOW;

/// The receiving side: the sinks of the node's DWCP receiver.
pub(crate) struct Inbox {
    sinks: SinkRegistry,
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Inbox {
    /// Listens on `addr` with mutual TLS; sessions that name no registered sink are refused.
    pub(crate) async fn start(
        addr: SocketAddr,
        server: Arc<rustls::ServerConfig>,
        dir: &Path,
        store: Option<dwcp::hde::SharedStore>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let security = Security::Tls {
            client: None,
            server: Some(server),
            server_name: None,
        };
        let acceptor = Acceptor::new(listener, &security, TcpTuning::default())
            .map_err(std::io::Error::other)?;
        let mut cfg = ReceiverConfig::new(dir);
        cfg.sinks_only = true;
        cfg.idle_timeout = LINK_LOST;
        cfg.store = store;
        let receiver = Receiver::new(acceptor, cfg).map_err(std::io::Error::other)?;
        let sinks = receiver.sinks();
        let port = receiver.local_addr()?.port();
        let (done_tx, mut done_rx) =
            tokio::sync::mpsc::unbounded_channel::<dwcp::amst::ReceivedFile>();
        let task = tokio::spawn(async move {
            let drain = async {
                // Only file sessions report here, and this receiver refuses them.
                while let Some(f) = done_rx.recv().await {
                    tracing::warn!(name = %f.name, "unexpected DWCP file session");
                }
            };
            tokio::select! {
                ran = receiver.run(done_tx) => if let Err(e) = ran {
                    tracing::error!(error = %crate::vms::chain(&e), "the DWCP receiver stopped");
                },
                () = drain => {}
            }
        });
        Ok(Self { sinks, port, task })
    }

    /// The port migrations are sent to.
    pub(crate) const fn port(&self) -> u16 {
        self.port
    }

    /// Accepts the session `name` into `writer`.
    pub(crate) fn expect(
        &self,
        name: &str,
        writer: Box<dyn Write + Send>,
    ) -> Result<Expected, String> {
        self.sinks
            .expect(name, writer)
            .map(|handle| Expected { handle })
            .map_err(|e| format!("could not accept stream {name}: {}", crate::vms::chain(&e)))
    }
}

/// How often [`Expected::end_unless_still`] looks at the bytes written.
const STILL_CHECK: Duration = Duration::from_millis(100);

/// A stream expected from the source.
pub(crate) struct Expected {
    handle: SinkHandle,
}

impl Expected {
    /// Bytes of the stream written to its destination so far.
    pub(crate) fn delivered(&self) -> u64 {
        self.handle.delivered()
    }

    /// Waits for the end of the stream, as [`Self::outcome`], but no longer than the stream
    /// stands still: an error once no byte was written to its destination for `still`. A
    /// stream that keeps moving, however slowly, is waited for.
    pub(crate) async fn end_unless_still(&self, still: Duration) -> Result<(), String> {
        let outcome = self.outcome();
        tokio::pin!(outcome);
        let mut tick = tokio::time::interval(STILL_CHECK.min(still).max(Duration::from_millis(1)));
        let mut last = self.delivered();
        let mut moved = tokio::time::Instant::now();
        loop {
            tokio::select! {
                ended = &mut outcome => return ended,
                _ = tick.tick() => {
                    let now = self.delivered();
                    if now != last {
                        last = now;
                        moved = tokio::time::Instant::now();
                    } else if moved.elapsed() >= still {
                        return Err(format!(
                            "it stood still for {} s at {last} bytes",
                            still.as_secs_f64()
                        ));
                    }
                }
            }
        }
    }

    /// Waits for the end of the stream: `Ok` once it arrived whole and verified.
    pub(crate) async fn outcome(&self) -> Result<(), String> {
        self.verified().await.map(drop)
    }

    /// Waits for the end of the stream: its BLAKE3, verified against the sender's, once it
    /// arrived whole.
    pub(crate) async fn verified(&self) -> Result<blake3::Hash, String> {
        let mut status = self.handle.status();
        let outcome = status
            .wait_for(|s| s.outcome.is_some())
            .await
            .map(|s| s.outcome.clone());
        match outcome {
            Ok(Some(Ok(hash))) => Ok(hash),
            Ok(Some(Err(e))) => Err(e.to_string()),
            Ok(None) | Err(_) => Err("the DWCP receiver stopped".to_owned()),
        }
    }
}

/// Figures of a stream being sent.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SendFigures {
    /// Bytes the receiver acknowledged.
    pub(crate) acked: u64,
    /// Bytes beyond `acked` the receiver holds out of order: they crossed the link too.
    pub(crate) held: u64,
    /// Smoothed delivery rate (acknowledged and held bytes), bytes per second.
    pub(crate) rate: u64,
    /// Payload bytes framed for the stream so far (after data reduction).
    pub(crate) wire: u64,
    /// Of `wire`, those the receiver acknowledged.
    pub(crate) wire_acked: u64,
    /// Recent rate of `wire_acked`, bytes per second.
    pub(crate) wire_rate: u64,
    /// Stream bytes sent as references to content the peer held.
    pub(crate) refs: u64,
}

/// A stream being sent; dropping it stops the transfer.
pub(crate) struct Sending {
    progress: watch::Receiver<Progress>,
    result: watch::Receiver<Option<Result<TransferSummary, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A rate in bytes per second as a whole number (0 for a negative or NaN one).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a rate is finite and far below 2^64; the cast saturates and maps NaN to 0"
)]
fn whole_rate(rate: f64) -> u64 {
    rate.max(0.0) as u64
}

impl Sending {
    /// Acknowledged bytes and rate now.
    pub(crate) fn figures(&self) -> SendFigures {
        let p = self.progress.borrow();
        SendFigures {
            acked: p.bytes_acked,
            held: p.bytes_held,
            wire: p.wire_bytes,
            refs: p.ref_bytes,
            rate: whole_rate(p.rate_bytes_per_sec),
            wire_acked: p.wire_acked,
            wire_rate: whole_rate(p.wire_rate_bytes_per_sec),
        }
    }

    /// Whether the receiver confirmed the whole stream.
    pub(crate) fn succeeded(&self) -> bool {
        matches!(*self.result.borrow(), Some(Ok(_)))
    }

    /// Why the transfer failed, if it already has.
    pub(crate) fn failure(&self) -> Option<String> {
        self.result
            .borrow()
            .as_ref()
            .and_then(|r| r.as_ref().err().cloned())
    }

    /// Resolves only if the transfer fails, with why.
    pub(crate) async fn failed(&self) -> String {
        let mut result = self.result.clone();
        let failure = result
            .wait_for(|r| matches!(r, Some(Err(_))))
            .await
            .ok()
            .and_then(|r| r.as_ref().and_then(|r| r.as_ref().err().cloned()));
        match failure {
            Some(e) => e,
            // The task is gone without a failure: nothing to report, ever.
            None => std::future::pending().await,
        }
    }

    /// Waits at most `wait` for the receiver's confirmation of the whole stream.
    pub(crate) async fn finished(&self, wait: Duration) -> Result<TransferSummary, String> {
        let mut result = self.result.clone();
        match tokio::time::timeout(wait, result.wait_for(Option::is_some)).await {
            Err(_) => Err(format!("not confirmed within {} s", wait.as_secs())),
            Ok(Err(_)) => Err("the DWCP sender stopped".to_owned()),
            Ok(Ok(r)) => r.clone().unwrap_or_else(|| Err("no result".to_owned())),
        }
    }
}

/// What the caller controls of a stream it sends.
#[derive(Default)]
pub(crate) struct Controls {
    /// Narrows the bytes in flight while the stream runs.
    pub(crate) window_limit: Option<watch::Receiver<u64>>,
    /// Bounds the payload bytes on the wire while the stream runs.
    pub(crate) wire_limit: Option<watch::Receiver<u64>>,
    /// The stream ends only once this is set: an end of the socket before it is a cut, and
    /// the stream fails (the receiver never takes it for whole).
    pub(crate) end_confirmed: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// The owner's side of a stream's window ([`Controls::window_limit`]) and wire bound
/// ([`Controls::wire_limit`]): the full window and no bound until narrowed.
pub(crate) struct Narrowing {
    window: watch::Sender<u64>,
    wire: watch::Sender<u64>,
}

impl Narrowing {
    /// Starts at `window` with no bound on the wire; the controls to send the stream with.
    pub(crate) fn new(window: u64) -> (Self, Controls) {
        let (window, window_rx) = watch::channel(window);
        let (wire, wire_rx) = watch::channel(u64::MAX);
        let controls = Controls {
            window_limit: Some(window_rx),
            wire_limit: Some(wire_rx),
            ..Controls::default()
        };
        (Self { window, wire }, controls)
    }

    /// Narrows the window to `window` stream bytes and the wire to `wire` payload bytes
    /// (`None`: no bound).
    pub(crate) fn narrow(&self, window: u64, wire: Option<u64>) {
        self.window
            .send_if_modified(|w| std::mem::replace(w, window) != window);
        let wire = wire.unwrap_or(u64::MAX);
        self.wire
            .send_if_modified(|w| std::mem::replace(w, wire) != wire);
    }

    /// Opens both: the window to `window`, the wire with no bound.
    pub(crate) fn open(&self, window: u64) {
        self.narrow(window, None);
    }
}

fn start(
    cluster: &Cluster,
    addr: &str,
    peer: &str,
    name: &str,
    source: Source,
    controls: Controls,
) -> Sending {
    let (progress_tx, progress) = watch::channel(Progress::starting());
    let (result_tx, result) = watch::channel(None);
    let security = match dwcp::tls::server_name(peer) {
        Ok(server_name) => Ok(Security::Tls {
            client: Some(Arc::clone(&cluster.dwcp_client)),
            server: None,
            server_name: Some(server_name),
        }),
        Err(e) => Err(format!("peer name {peer:?} cannot be a TLS name: {e}")),
    };
    let dialer = security.map(|security| Dialer {
        addr: addr.to_owned(),
        security,
        tuning: TcpTuning::default(),
    });
    let mut opts = SendOptions::new(name);
    opts.reconnect_timeout = LINK_LOST;
    if matches!(source, Source::Stream(_)) {
        // A live stream: what DWCP holds, QEMU counts as sent. A file keeps DWCP's window,
        // and its frames are as large as the link's mode wants.
        opts.window = WINDOW;
    } else {
        opts.chunk_size = 0;
    }
    opts.window_limit = controls.window_limit;
    opts.wire_limit = controls.wire_limit;
    opts.end_confirmed = controls.end_confirmed;
    // Segments the peer holds (from earlier migrations either way) go as references; what is
    // sent is recorded so that it can be referenced when it comes back.
    opts.dedup = cluster.content.is_some();
    opts.record = cluster.content.clone();
    // Zero chunks elided, the rest compressed as PBA decides for the link, over as many
    // connections as pay off: as far as the node's feature flags allow, read once now.
    super::features::for_stream(&mut opts, cluster);
    let task = tokio::spawn(async move {
        let outcome = match dialer {
            Ok(dialer) => dwcp::amst::send(source, dialer, opts, progress_tx)
                .await
                .map_err(|e| crate::vms::chain(&e)),
            Err(e) => Err(e),
        };
        result_tx.send_replace(Some(outcome));
    });
    Sending {
        progress,
        result,
        task,
    }
}

/// Sends what arrives on `socket` (QEMU's migration stream, an NBD connection's requests or
/// answers) as session `name` to the peer's receiver at `addr`, whose certificate must name
/// `peer`, under the caller's `controls`.
pub(crate) fn send_stream(
    cluster: &Cluster,
    addr: &str,
    peer: &str,
    name: &str,
    socket: UnixStream,
    controls: Controls,
) -> Sending {
    start(cluster, addr, peer, name, Source::Stream(socket), controls)
}

/// Sends the file at `path` as session `name` to the peer's receiver at `addr`, whose
/// certificate must name `peer`.
pub(crate) fn send_file(
    cluster: &Cluster,
    addr: &str,
    peer: &str,
    name: &str,
    path: &Path,
) -> Sending {
    start(
        cluster,
        addr,
        peer,
        name,
        Source::File(path.to_path_buf()),
        Controls::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_that_stands_still_is_not_waited_for() {
        let sinks = SinkRegistry::default();
        let expected = Expected {
            handle: sinks.expect("memory", Box::new(std::io::sink())).unwrap(),
        };
        let started = std::time::Instant::now();
        let err = expected
            .end_unless_still(Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(err, "it stood still for 0.3 s at 0 bytes");
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
