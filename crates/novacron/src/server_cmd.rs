//! `novacron server`: the node daemon. Opens the data directory, re-attaches to running VMs
//! and serves the API until SIGINT or SIGTERM; SIGHUP re-reads the DWCP feature flags file.
//! QEMU processes outlive it by design.

use crate::tls_listener::TlsListener;
use anyhow::Context;
use axum::serve::{Listener, ListenerExt};
use dwcp::flags::Flags;
use dwcp::tls::{ClientAuth, TlsFiles};
use novacron_node::{ClusterConfig, Node, NodeConfig};
use novacron_qemu::Accel;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::ServerConfig;

/// How long requests in flight (and event streams) may go on after SIGTERM or SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Port the API listens on by default.
pub const DEFAULT_PORT: u16 = 8640;

/// Arguments of `novacron server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Data directory: state store, images, VM disks and run files. Default:
    /// /var/lib/novacron as root, else $XDG_DATA_HOME/novacron or ~/.local/share/novacron.
    #[arg(long, env = "NOVACRON_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address the API listens on (port 0 picks a free one, printed at start).
    #[arg(long, env = "NOVACRON_LISTEN", default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))]
    listen: SocketAddr,
    /// Accelerator for VMs: auto (KVM when /dev/kvm really works, else TCG), kvm or tcg.
    #[arg(long, default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    accel: String,
    /// Default seconds to wait for a guest to power off before QEMU is stopped by force.
    #[arg(long, default_value_t = 30)]
    stop_timeout: u64,
    /// Serve the API over TLS 1.3 with this node's certificate from DIR (`ca.crt`,
    /// `NODE.crt`, `NODE.key`, as `novacron ca issue` writes them).
    #[arg(long, env = "NOVACRON_TLS_DIR", value_name = "DIR", requires = "node")]
    tls_dir: Option<PathBuf>,
    /// This node's name: picks `NODE.crt` and `NODE.key` in `--tls-dir`.
    #[arg(long, env = "NOVACRON_NODE", value_name = "NODE", requires = "tls_dir")]
    node: Option<String>,
    /// Refuse TLS clients without a certificate signed by the cluster CA (by default a client
    /// certificate is optional and API tokens authenticate).
    #[arg(long, requires = "tls_dir")]
    require_client_cert: bool,
    /// A peer node VMs can migrate to: NAME=URL of its API (`b=https://10.0.0.2:8640`).
    /// Repeatable. Live migration needs `--tls-dir` and `--node`.
    #[arg(long = "peer", value_name = "NAME=URL", value_parser = parse_peer, requires = "tls_dir")]
    peers: Vec<(String, String)>,
    /// Address the DWCP receiver of incoming migrations listens on (default: the API's
    /// address, next port; port 0 when the API's is 0).
    #[arg(long, value_name = "ADDR", requires = "tls_dir")]
    dwcp_listen: Option<SocketAddr>,
    /// Port peers send migration streams to, when it differs from the listening port (a port
    /// forwarded through NAT or a relay).
    #[arg(long, value_name = "PORT", requires = "tls_dir")]
    dwcp_advertise_port: Option<u16>,
    /// Most bytes of migration content the node keeps (DATA_DIR/dwcp-store) so that content a
    /// peer already holds, such as a VM's memory on its way back, goes as references; 0 keeps
    /// none.
    #[arg(long, value_name = "SIZE", default_value = "2G", value_parser = crate::units::parse_size, requires = "tls_dir")]
    dwcp_store_max: u64,
    /// DWCP feature flags of the migration streams this node sends (JSON: kill_switch, and
    /// hde, pba, multistream, dedup_store with enabled and rollout_percent). Read at start,
    /// read again on SIGHUP, rewritten by `PUT /api/v1/node/dwcp-flags`. Default: all on.
    #[arg(long, value_name = "FILE", requires = "tls_dir")]
    dwcp_flags: Option<PathBuf>,
}

/// `NAME=URL` of `--peer`.
fn parse_peer(s: &str) -> Result<(String, String), String> {
    let (name, url) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=URL, got {s:?}"))?;
    dwcp::pki::validate_node_name(name).map_err(|e| format!("peer name {name:?}: {e}"))?;
    if url.is_empty() {
        return Err(format!("peer {name}: the URL is empty"));
    }
    Ok((name.to_owned(), url.to_owned()))
}

/// Where the DWCP receiver listens unless told: the API's address, next port.
fn default_dwcp_listen(api: SocketAddr) -> SocketAddr {
    let port = match api.port() {
        0 => 0,
        p => p.saturating_add(1),
    };
    SocketAddr::new(api.ip(), port)
}

fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/novacron");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("novacron");
    }
    std::env::var_os("HOME").map_or_else(
        || PathBuf::from(".novacron"),
        |h| PathBuf::from(h).join(".local/share/novacron"),
    )
}

/// Runs the daemon until a signal.
///
/// # Errors
/// When the data directory, store or listen address cannot be used.
pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let tls = tls_config(&args)?;
    let flags = dwcp_flags(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("novacron-server")
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(serve(args, tls, flags))
}

/// The DWCP feature flags `--dwcp-flags` names, read and checked at start (blocking), and
/// the file's absolute path; all on without a file.
fn dwcp_flags(args: &ServerArgs) -> anyhow::Result<(Flags, Option<PathBuf>)> {
    let Some(path) = &args.dwcp_flags else {
        return Ok((Flags::default(), None));
    };
    // Absolute, so that the API shows where it is whatever the daemon's directory.
    let path = std::path::absolute(path)
        .with_context(|| format!("--dwcp-flags {}: no absolute path", path.display()))?;
    let flags = novacron_node::read_dwcp_flags(&path)
        .context("could not load the DWCP feature flags (--dwcp-flags)")?;
    Ok((flags, Some(path)))
}

/// The TLS configuration `--tls-dir` asks for, read from its files (blocking, at startup).
fn tls_config(args: &ServerArgs) -> anyhow::Result<Option<Arc<ServerConfig>>> {
    let (Some(dir), Some(node)) = (&args.tls_dir, &args.node) else {
        return Ok(None);
    };
    let files = TlsFiles::in_dir(dir, node);
    let auth = if args.require_client_cert {
        ClientAuth::Required
    } else {
        ClientAuth::Optional
    };
    let config = dwcp::tls::server_config_with(&files, auth).with_context(|| {
        format!(
            "could not load the TLS files of node {node} from {}",
            dir.display()
        )
    })?;
    Ok(Some(config))
}

async fn serve(
    args: ServerArgs,
    tls: Option<Arc<ServerConfig>>,
    (dwcp_flags, dwcp_flags_file): (Flags, Option<PathBuf>),
) -> anyhow::Result<ExitCode> {
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let mut config = NodeConfig::new(data_dir.clone());
    config.accel = match args.accel.as_str() {
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg),
        _ => None,
    };
    config.stop_timeout = Duration::from_secs(args.stop_timeout);
    if let (Some(dir), Some(node)) = (&args.tls_dir, &args.node) {
        let mut peers = std::collections::BTreeMap::new();
        for (name, url) in &args.peers {
            if peers.insert(name.clone(), url.clone()).is_some() {
                anyhow::bail!("--peer {name} is given twice");
            }
        }
        let source = dwcp_flags_file
            .as_deref()
            .map_or_else(|| "no file".into(), |p| format!("file {}", p.display()));
        novacron_node::log_dwcp_flags(&dwcp_flags, node, &source, "DWCP feature flags");
        config.cluster = Some(ClusterConfig {
            node_name: node.clone(),
            tls: TlsFiles::in_dir(dir, node),
            peers,
            dwcp_listen: args
                .dwcp_listen
                .unwrap_or_else(|| default_dwcp_listen(args.listen)),
            dwcp_advertise_port: args.dwcp_advertise_port,
            store_max: args.dwcp_store_max,
            dwcp_flags,
            dwcp_flags_file,
        });
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    let (node, token_path) = Node::open(config)
        .await
        .with_context(|| format!("could not open the node in {}", data_dir.display()))?;
    let addr = listener
        .local_addr()
        .context("could not read the listening address")?;
    if let Some(path) = token_path {
        println!(
            "first start: admin token written to {} (export NOVACRON_TOKEN=$(cat {}))",
            path.display(),
            path.display()
        );
    }
    // Before the address goes out: from then on a SIGHUP re-reads the flags rather than
    // ending the daemon.
    let reloads = reload_on_sighup(node.clone(), args.node.clone());
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "novacron server listening on {scheme}://{addr} (data in {})",
        data_dir.display()
    );
    if let Some(port) = node.dwcp_port() {
        println!("migrations: DWCP receiver on port {port}");
        tracing::info!(port, "DWCP receiver for incoming migrations");
    }
    tracing::info!(%addr, scheme, data_dir = %data_dir.display(), "serving");
    // Answers go out at once rather than waiting on Nagle's algorithm for the last segment.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let app = novacron_api::app(Arc::new(node));
    let served = match tls {
        Some(config) => {
            serve_until_signal(
                TlsListener::new(listener, config),
                crate::tls_listener::WithPeerNode(app),
            )
            .await
        }
        None => serve_until_signal(listener, app.into_make_service()).await,
    };
    if let Some(task) = reloads {
        task.abort();
    }
    served?;
    tracing::info!("stopped; VMs keep running and are re-attached at the next start");
    Ok(ExitCode::SUCCESS)
}

/// Serves `make_service` on `listener` until SIGTERM or SIGINT, then gives requests in
/// flight [`SHUTDOWN_GRACE`].
async fn serve_until_signal<L, M, S>(listener: L, make_service: M) -> anyhow::Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
    M: for<'a> tower::Service<
            axum::serve::IncomingStream<'a, L>,
            Error = std::convert::Infallible,
            Response = S,
        > + Send
        + 'static,
    for<'a> <M as tower::Service<axum::serve::IncomingStream<'a, L>>>::Future: Send,
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, make_service).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("signal received; finishing requests in flight");
        // The receiver lives until the end of this function.
        let _ = stopping_tx.send(true);
    });
    // Event streams never end by themselves: after the signal, requests get a grace period.
    let grace = async {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served.context("the API server failed")?,
        () = grace => tracing::info!(grace = ?SHUTDOWN_GRACE, "closing connections still open"),
    }
    Ok(())
}

/// Re-reads the DWCP feature flags file on each SIGHUP until aborted; a file that cannot be
/// read or is invalid is logged with the reason and the flags in force stay. `None` when
/// SIGHUP cannot be watched (it then ends the daemon, as by default).
fn reload_on_sighup(node: Node, name: Option<String>) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP: the DWCP flags file is read at start only");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match node.reload_dwcp_flags().await {
                Ok(Some(flags)) => novacron_node::log_dwcp_flags(
                    &flags,
                    name.as_deref().unwrap_or_default(),
                    "SIGHUP",
                    "SIGHUP: DWCP feature flags re-read",
                ),
                Ok(None) => tracing::info!(
                    "SIGHUP: no DWCP feature flags file to re-read (--dwcp-flags, with --tls-dir)"
                ),
                Err(e) => tracing::warn!(
                    error = %format!("{:#}", anyhow::Error::new(e)),
                    "SIGHUP: DWCP feature flags file refused; the flags in force stay"
                ),
            }
        }
    }))
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
