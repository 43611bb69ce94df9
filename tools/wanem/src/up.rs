//! `up`: build the link, forward until told to stop, tear the link down.
//!
//! Main export: [`run`]. The sequence:
//!
//! ```text
//! block SIGINT/SIGTERM ─► create namespaces A, B (lo up)
//!   ─► create TUN "ncwan0" in each (from a thread inside the namespace)
//!   ─► MTU, peer addresses, link up ─► one forwarding thread per direction
//!   ─► print ready line (and write --ready-file)
//!   ─► wait for a signal or a failed thread ─► stop and join threads
//!   ─► close devices ─► delete namespaces
//! ```

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use anyhow::{Context, Result, bail};

use crate::cli::UpConfig;
use crate::forward::{self, Direction, ForwardStats};
use crate::netns::{self, NamespacePair};
use crate::signals::StopSignals;
use crate::tun::Tun;

/// Name of the TUN device in each namespace.
pub const TUN_NAME: &str = "ncwan0";

/// Length of the TUN devices' transmit queues, in packets. The kernel queues there what the
/// forwarder has not read yet; it must absorb a sender's burst without drops the model did not
/// decide.
const TX_QUEUE_LEN: &str = "10000";

/// Run the link described by `cfg` until SIGINT or SIGTERM.
///
/// # Errors
///
/// Setting up the namespaces or devices fails, or a forwarding thread fails. The namespaces are
/// deleted in every case.
pub fn run(cfg: &UpConfig) -> Result<()> {
    // Blocked before any thread starts, so every thread inherits the mask and the signals wait
    // for the main thread.
    let signals = StopSignals::block().context("could not block SIGINT and SIGTERM")?;
    let namespaces = NamespacePair::create(&cfg.ns_a, &cfg.ns_b)?;
    let tun_a = Arc::new(setup_side(&cfg.ns_a, cfg)?);
    let tun_b = Arc::new(setup_side(&cfg.ns_b, cfg)?);
    address(&cfg.ns_a, cfg.addr_a, cfg.addr_b)?;
    address(&cfg.ns_b, cfg.addr_b, cfg.addr_a)?;

    let stop = Arc::new(AtomicBool::new(false));
    let mtu = usize::try_from(cfg.mtu).context("MTU does not fit usize")?;
    let directions = [
        Direction {
            label: "a->b".to_owned(),
            input: Arc::clone(&tun_a),
            output: Arc::clone(&tun_b),
            params: cfg.link.clone(),
            seed: cfg.seed,
            mtu,
            stop: Arc::clone(&stop),
        },
        Direction {
            label: "b->a".to_owned(),
            input: Arc::clone(&tun_b),
            output: Arc::clone(&tun_a),
            params: cfg.link.clone(),
            seed: cfg.seed.wrapping_add(1),
            mtu,
            stop: Arc::clone(&stop),
        },
    ];
    let mut workers = Vec::new();
    for dir in directions {
        let handle = thread::Builder::new()
            .name(format!("wanem-{}", dir.label))
            .spawn(move || forward::run(&dir).map(|stats| (dir.label, stats)));
        match handle {
            Ok(h) => workers.push(h),
            Err(err) => {
                stop.store(true, Ordering::Relaxed);
                // The spawn failure is the error to report; the started thread's result is logged.
                let _ = join_all(workers);
                return Err(err).context("could not start a forwarding thread");
            }
        }
    }

    let ready = format!(
        "ready: {} {} <-> {} {} {cfg}",
        cfg.ns_a, cfg.addr_a, cfg.ns_b, cfg.addr_b
    );
    let announced = announce(&ready, cfg);
    let outcome = match announced {
        Ok(()) => wait(&signals, &workers),
        Err(err) => Err(err),
    };
    stop.store(true, Ordering::Relaxed);
    let joined = join_all(workers);
    if let Some(path) = &cfg.ready_file {
        // Best effort: a stale ready file only misleads a script that ignores our exit.
        let _ = std::fs::remove_file(path);
    }
    drop((tun_a, tun_b));
    drop(namespaces);
    outcome.and(joined)
}

/// Create the TUN device inside namespace `ns` and bring it up with the configured MTU.
fn setup_side(ns: &str, cfg: &UpConfig) -> Result<Tun> {
    let tun = netns::run_in(ns, || {
        Tun::create(TUN_NAME)
            .with_context(|| format!("could not create TUN device {TUN_NAME} in {ns}"))
    })?;
    let mtu = cfg.mtu.to_string();
    netns::ip(&[
        "-n",
        ns,
        "link",
        "set",
        TUN_NAME,
        "mtu",
        &mtu,
        "txqueuelen",
        TX_QUEUE_LEN,
        "up",
    ])
    .with_context(|| format!("could not bring up {TUN_NAME} in {ns}"))?;
    Ok(tun)
}

/// Give the device in `ns` address `local` with `peer` on the other end (point to point).
fn address(ns: &str, local: std::net::Ipv4Addr, peer: std::net::Ipv4Addr) -> Result<()> {
    let local = local.to_string();
    let peer = format!("{peer}/32");
    netns::ip(&[
        "-n", ns, "addr", "add", &local, "peer", &peer, "dev", TUN_NAME,
    ])
    .with_context(|| format!("could not address {TUN_NAME} in {ns}"))
}

/// Print the ready line and write it to the ready file if one was asked for.
fn announce(ready: &str, cfg: &UpConfig) -> Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{ready}").context("could not print the ready line")?;
    out.flush().context("could not print the ready line")?;
    if let Some(path) = &cfg.ready_file {
        std::fs::write(path, format!("{ready}\n"))
            .with_context(|| format!("could not write ready file {}", path.display()))?;
    }
    tracing::info!(%ready, "link is up");
    Ok(())
}

type Worker = JoinHandle<Result<(String, ForwardStats)>>;

/// Wait for SIGINT/SIGTERM, or for a forwarding thread to end on its own (which is an error).
fn wait(signals: &StopSignals, workers: &[Worker]) -> Result<()> {
    loop {
        if let Some(sig) = signals.wait(std::time::Duration::from_millis(200))? {
            tracing::info!(signal = sig, "stopping");
            return Ok(());
        }
        if workers.iter().any(JoinHandle::is_finished) {
            // The cause is reported when the thread is joined.
            bail!("a forwarding thread stopped");
        }
    }
}

/// Join the forwarding threads, logging their counts; the first failure is returned.
fn join_all(workers: Vec<Worker>) -> Result<()> {
    let mut first_err = None;
    for worker in workers {
        match worker.join() {
            Ok(Ok((label, s))) => tracing::info!(
                direction = %label,
                forwarded = s.link.forwarded_packets,
                forwarded_bytes = s.link.forwarded_bytes,
                lost = s.link.lost_packets,
                queue_drops = s.link.queue_drops,
                overflow_drops = s.overflow_drops,
                write_errors = s.write_errors,
                mean_late_us = s.mean_lateness_us(),
                max_late_us = s.max_lateness_ns / 1000,
                "direction stopped"
            ),
            Ok(Err(err)) => {
                tracing::error!(error = %format!("{err:#}"), "forwarding failed");
                first_err.get_or_insert(err);
            }
            Err(_) => {
                first_err.get_or_insert_with(|| anyhow::anyhow!("a forwarding thread panicked"));
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}
