//! `novacron dwcp serve|send`: receive into a directory, or send a file or standard input.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use dwcp::amst::{
    self, ReceivedFile, Receiver, ReceiverConfig, Reduction, SendError, SendOptions, Source,
    StreamCount,
};
use dwcp::flags::Flags;
use dwcp::tls::TlsFiles;
use dwcp::transport::{Acceptor, Dialer, Security, TcpTuning};

use crate::progress_view::ProgressView;
use crate::units::{parse_rate, parse_size};

/// DWCP commands.
#[derive(Debug, Subcommand)]
pub enum DwcpCommand {
    /// Receive streams into a directory.
    Serve(ServeArgs),
    /// Send a file (or `-` for standard input) to a receiver.
    Send(SendArgs),
}

/// Certificate options shared by `serve` and `send`.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Directory with `ca.crt`, `NODE.crt` and `NODE.key` (as written by `novacron ca`).
    #[arg(long, env = "NOVACRON_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// This node's name: picks `NODE.crt`/`NODE.key` in `--tls-dir`.
    #[arg(long, env = "NOVACRON_NODE")]
    node: Option<String>,
    /// CA certificate (overrides `--tls-dir`).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Node certificate (overrides `--tls-dir`).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Node private key (overrides `--tls-dir`).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Plaintext, unauthenticated connections. For benchmarks on links you own only.
    #[arg(long, conflicts_with_all = ["tls_dir", "ca", "cert", "key"])]
    insecure: bool,
    /// Congestion control for the connections (default: bbr where the kernel has it).
    #[arg(long, default_value = dwcp::transport::PREFERRED_CONGESTION)]
    congestion: String,
}

impl TlsArgs {
    fn files(&self) -> anyhow::Result<Option<TlsFiles>> {
        if self.insecure {
            return Ok(None);
        }
        let from_dir = match (&self.tls_dir, &self.node) {
            (Some(dir), Some(node)) => Some(TlsFiles::in_dir(dir, node)),
            _ => None,
        };
        let pick = |explicit: &Option<PathBuf>, from: Option<PathBuf>, what: &str| {
            explicit.clone().or(from).with_context(|| {
                format!(
                    "TLS needs the {what}: give --tls-dir and --node (or --ca, --cert and --key); \
                     --insecure turns TLS off for benchmarks"
                )
            })
        };
        Ok(Some(TlsFiles {
            ca: pick(
                &self.ca,
                from_dir.as_ref().map(|f| f.ca.clone()),
                "CA certificate",
            )?,
            cert: pick(
                &self.cert,
                from_dir.as_ref().map(|f| f.cert.clone()),
                "node certificate",
            )?,
            key: pick(
                &self.key,
                from_dir.as_ref().map(|f| f.key.clone()),
                "node key",
            )?,
        }))
    }

    fn tuning(&self) -> TcpTuning {
        TcpTuning {
            congestion: Some(self.congestion.clone()),
        }
    }
}

/// `novacron dwcp serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:7070")]
    listen: String,
    /// Directory to store received files in (never written outside).
    #[arg(long)]
    dir: PathBuf,
    /// Bytes buffered out of order per session.
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    window: u64,
    /// Seconds to keep a session whose sender went away, waiting for it to come back.
    #[arg(long, default_value_t = 60)]
    idle_timeout: u64,
    /// Exit after the first session ends (status 0 if it was stored, 1 if not).
    #[arg(long)]
    once: bool,
    /// Print one JSON line per finished session on standard output.
    #[arg(long)]
    json: bool,
    /// Content store directory: senders that ask get deduplication against it (segments
    /// already held go as references), and every segment received is kept in it.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Most bytes the content store keeps (least recently used evicted first).
    #[arg(long, default_value = "4G", value_parser = parse_size)]
    store_max: u64,
    #[command(flatten)]
    tls: TlsArgs,
}

/// `novacron dwcp send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// File to send, or `-` for standard input.
    path: String,
    /// Receiver address, `host:port`.
    addr: String,
    /// Name to store under (default: the file's name; required for standard input).
    #[arg(long)]
    name: Option<String>,
    /// Connections: a number from 1 to 64, or `auto` to probe.
    #[arg(long, default_value = "auto")]
    streams: String,
    /// Payload bytes per frame, or `auto`: the default of the link's mode (1 MiB in a
    /// datacenter, 512K on a hybrid link, 1 MiB on an internet link).
    #[arg(long, default_value = "auto", value_parser = parse_chunk_size)]
    chunk_size: u64,
    /// Most unacknowledged bytes in flight.
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    window: u64,
    /// Continue a transfer the receiver holds part of (as NAME.partial).
    #[arg(long)]
    resume: bool,
    /// Cap on the sending rate (`100mbit`, `1gbit`, `12M` bytes/s).
    #[arg(long, value_parser = parse_rate)]
    rate_limit: Option<u64>,
    /// Session pacing: `auto` paces all connections together at the rate the link delivers
    /// except on datacenter links, `on` everywhere, `off` leaves each connection to its
    /// congestion control.
    #[arg(long, default_value = "auto")]
    pacing: dwcp::amst::Pacing,
    /// Seconds without any working connection before giving up.
    #[arg(long, default_value_t = 30)]
    reconnect_timeout: u64,
    /// Name the receiver's certificate must carry (default: the host in ADDR).
    #[arg(long)]
    server_name: Option<String>,
    /// Data reduction: `auto` (zero chunks elided, codec chosen from the measured link and
    /// compressor), `off` (raw frames), `none` (zero elision only), `lz4`, `zstd` or `zstd:N`
    /// (N from -7 to 22).
    #[arg(long, default_value = "auto", value_parser = parse_compress)]
    compress: Reduction,
    /// Feature flags document (JSON, as `dwcp::flags` reads it): with `hde` off for this node,
    /// or the kill switch on, the transfer uses raw frames; with `pba` off, `auto` is lz4.
    #[arg(long)]
    flags: Option<PathBuf>,
    /// This node's id for the flags' percentage rollout (default: `--node`).
    #[arg(long)]
    node_id: Option<String>,
    /// Deduplication against the receiver's content store (`on` or `off`): segments it
    /// already holds go as references. Only with compression on and a receiver with a store.
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    dedup: bool,
    /// How chunks are cut for deduplication: `auto` (one segment per guest page in a QEMU
    /// migration stream, content-defined elsewhere), `pages` (fixed 4 KiB, a raw memory image)
    /// or `content` (content-defined, about 4 KiB).
    #[arg(long, default_value = "auto")]
    segments: amst::Segmenting,
    /// Print a JSON summary on standard output when done.
    #[arg(long)]
    json: bool,
    /// No progress display.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

/// Runs a `dwcp` subcommand on a fresh runtime.
pub fn run(cmd: DwcpCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    match cmd {
        DwcpCommand::Serve(args) => runtime.block_on(serve(args)),
        DwcpCommand::Send(args) => runtime.block_on(send(args)),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let security = match args.tls.files()? {
        None => Security::Insecure,
        Some(files) => Security::Tls {
            client: None,
            server: Some(dwcp::tls::server_config(&files).context("could not load TLS files")?),
            server_name: None,
        },
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    let acceptor = Acceptor::new(listener, &security, args.tls.tuning())?;
    let mut cfg = ReceiverConfig::new(&args.dir);
    cfg.window = args.window;
    cfg.idle_timeout = Duration::from_secs(args.idle_timeout);
    if let Some(dir) = &args.store {
        let store = dwcp::hde::DiskStore::open(dir, args.store_max)
            .with_context(|| format!("could not open the content store {}", dir.display()))?;
        eprintln!(
            "content store {}: {} segments, {}",
            dir.display(),
            store.len(),
            crate::units::human_bytes(store.total_bytes())
        );
        cfg.store = Some(std::sync::Arc::new(std::sync::Mutex::new(store)));
    }
    let receiver = Receiver::new(acceptor, cfg)?;
    let addr = receiver.local_addr()?;
    let mode = match security {
        Security::Insecure => "INSECURE plaintext",
        Security::Tls { .. } => "mutual TLS 1.3",
    };
    eprintln!(
        "listening on {addr} ({mode}), storing into {}",
        args.dir.display()
    );
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut accept = tokio::spawn(receiver.run(done_tx));
    loop {
        tokio::select! {
            r = &mut accept => {
                r.context("receiver task failed")??;
                return Ok(ExitCode::SUCCESS);
            }
            Some(file) = done_rx.recv() => {
                report_received(&file, args.json);
                if args.once {
                    accept.abort();
                    return Ok(if file.outcome.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
                }
            }
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted; unfinished transfers stay as NAME.partial");
                return Ok(ExitCode::from(130));
            }
        }
    }
}

fn report_received(file: &ReceivedFile, json: bool) {
    if json {
        let value = serde_json::json!({
            "name": file.name,
            "path": file.path,
            "bytes": file.bytes,
            "resumed_from": file.resumed_from,
            "seconds": file.elapsed.as_secs_f64(),
            "ok": file.outcome.is_ok(),
            "blake3": file.outcome.as_ref().ok(),
            "error": file.outcome.as_ref().err(),
        });
        println!("{value}");
    }
    match &file.outcome {
        Ok(hash) => tracing::info!(name = %file.name, bytes = file.bytes, %hash, "stored"),
        Err(why) => eprintln!(
            "{}: not stored ({why}); {} bytes kept in {}",
            file.name,
            file.bytes,
            file.path.display()
        ),
    }
}

fn parse_compress(s: &str) -> Result<Reduction, String> {
    s.parse()
        .map_err(|e: amst::ParseReductionError| e.to_string())
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("expected on or off, not {other:?}")),
    }
}

/// The reduction and deduplication the flags allow for this node, decided once for the
/// transfer.
fn gated_reduction(args: &SendArgs) -> anyhow::Result<(Reduction, bool)> {
    let Some(path) = &args.flags else {
        return Ok((args.compress, args.dedup));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the flags file {}", path.display()))?;
    let flags = Flags::from_json(&text)
        .with_context(|| format!("invalid flags file {}", path.display()))?;
    let node = args
        .node_id
        .clone()
        .or_else(|| args.tls.node.clone())
        .context("--flags needs the node's id: give --node-id (or --node)")?;
    let reduce = args.compress.gated(&flags, &node);
    if reduce != args.compress {
        tracing::info!(asked = %args.compress, using = %reduce, node, "compression set by the feature flags");
    }
    let dedup = args.dedup && flags.is_enabled(dwcp::flags::Component::DedupStore, &node);
    if dedup != args.dedup {
        tracing::info!(node, "deduplication off by the feature flags");
    }
    Ok((reduce, dedup))
}

/// `auto` (0: the link's mode decides) or a size of at least one byte.
fn parse_chunk_size(s: &str) -> Result<u64, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(0);
    }
    match parse_size(s)? {
        0 => Err("must be `auto` or at least 1 byte".to_owned()),
        n => Ok(n),
    }
}

fn parse_streams(s: &str) -> anyhow::Result<StreamCount> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(StreamCount::default());
    }
    match s.parse::<u16>() {
        Ok(n) if (1..=amst::MAX_STREAMS).contains(&n) => Ok(StreamCount::Fixed(n)),
        _ => bail!(
            "--streams must be `auto` or a number from 1 to {}",
            amst::MAX_STREAMS
        ),
    }
}

async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let streams = parse_streams(&args.streams)?;
    let (reduce, dedup) = gated_reduction(&args)?;
    let (source, default_name) = if args.path == "-" {
        (Source::Reader(Box::new(std::io::stdin())), None)
    } else {
        let path = PathBuf::from(&args.path);
        let meta =
            std::fs::metadata(&path).with_context(|| format!("cannot send {}", path.display()))?;
        if !meta.is_file() {
            bail!("cannot send {}: not a regular file", path.display());
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        (Source::File(path), name)
    };
    let name = args
        .name
        .clone()
        .or(default_name)
        .context("--name is required when sending standard input")?;
    amst::validate_name(&name).with_context(|| format!("cannot store as {name:?}"))?;
    let security = match args.tls.files()? {
        None => Security::Insecure,
        Some(files) => {
            let host = args
                .server_name
                .clone()
                .unwrap_or_else(|| host_of(&args.addr).to_owned());
            Security::Tls {
                client: Some(dwcp::tls::client_config(&files).context("could not load TLS files")?),
                server: None,
                server_name: Some(dwcp::tls::server_name(&host)?),
            }
        }
    };
    let dialer = Dialer {
        addr: args.addr.clone(),
        security,
        tuning: args.tls.tuning(),
    };
    let mut opts = SendOptions::new(name);
    opts.streams = streams;
    // 0 is `auto`.
    opts.chunk_size = u32::try_from(args.chunk_size)
        .ok()
        .filter(|c| *c <= dwcp::wire::MAX_PAYLOAD)
        .with_context(|| {
            format!(
                "--chunk-size must be 1 byte to {} MiB",
                dwcp::wire::MAX_PAYLOAD >> 20
            )
        })?;
    opts.window = args.window;
    opts.resume = args.resume;
    opts.rate_limit = args.rate_limit;
    opts.pacing = args.pacing;
    opts.reconnect_timeout = Duration::from_secs(args.reconnect_timeout);
    opts.reduce = reduce;
    opts.dedup = dedup;
    opts.segmenting = args.segments;

    let (tx, rx) = tokio::sync::watch::channel(amst::Progress::starting());
    let view = (!args.quiet).then(|| ProgressView::spawn(rx));
    let result = amst::send(source, dialer, opts, tx).await;
    if let Some(view) = view {
        view.finish(result.is_ok()).await;
    }
    let summary = result.map_err(anyhow::Error::new)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        let reduction = if summary.hde {
            let dedup = if summary.dedup {
                format!(
                    ", {} by reference",
                    crate::units::human_bytes(summary.ref_bytes)
                )
            } else {
                String::new()
            };
            format!(
                "codec {}, reduction {:.2}x ({} on the wire{dedup})",
                summary.codec,
                summary.reduction_ratio,
                crate::units::human_bytes(summary.wire_bytes)
            )
        } else {
            "no reduction".to_owned()
        };
        eprintln!(
            "sent {} in {:.2} s: {:.1} Mbit/s over up to {} connections, {} link, {}, blake3 {}",
            crate::units::human_bytes(summary.bytes_sent),
            summary.seconds,
            summary.goodput_mbit,
            summary.streams_max,
            summary.mode,
            reduction,
            summary.blake3
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

/// Exit status for an error: 3 could not reach or lost the receiver, 4 the receiver refused,
/// 5 the end-to-end check failed, 1 anything else (2 is the usage error status).
pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<SendError>() {
        Some(SendError::Connect(_) | SendError::Opening(_) | SendError::Lost { .. }) => 3,
        Some(SendError::Rejected(_)) => 4,
        Some(SendError::Integrity { .. }) => 5,
        Some(
            SendError::InvalidOption(_)
            | SendError::OpenSource { .. }
            | SendError::Source(_)
            | SendError::ResumeNeedsFile
            | SendError::Protocol(_),
        )
        | None => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_taken_from_addresses() {
        assert_eq!(host_of("node-a:7070"), "node-a");
        assert_eq!(host_of("127.0.0.1:1"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7070"), "::1");
    }

    #[test]
    fn compress_values_parse_or_explain() {
        assert_eq!(parse_compress("auto").unwrap(), Reduction::Auto);
        assert_eq!(parse_compress("off").unwrap(), Reduction::Off);
        assert!(parse_compress("zstd:30").unwrap_err().contains("zstd:N"));
    }

    #[test]
    fn chunk_sizes_are_auto_or_a_size() {
        assert_eq!(parse_chunk_size("auto"), Ok(0));
        assert_eq!(parse_chunk_size("1M"), Ok(1 << 20));
        assert!(parse_chunk_size("0").is_err());
        assert!(parse_chunk_size("lots").is_err());
    }

    #[test]
    fn stream_counts_parse_or_explain() {
        assert_eq!(parse_streams("auto").unwrap(), StreamCount::default());
        assert_eq!(parse_streams("8").unwrap(), StreamCount::Fixed(8));
        assert!(parse_streams("0").is_err());
        assert!(
            parse_streams("65")
                .unwrap_err()
                .to_string()
                .contains("1 to 64")
        );
    }
}
