//! Live migration between two QEMUs on this host over a socket pair passed to both with
//! `getfd`, as the node daemon will do with the ends of its DWCP relay.
//!
//! The test guest (`tools/guest`) fills 32 MiB, rewrites 1 MiB/s of it and checks every page
//! continuously; proof that it survived is on the destination's console: heartbeats go on
//! (same `seq` sequence, same uptime clock) with `failed=0`.
//!
//! N.B. Each side has its own overlay of the same base disk, and the disk is not migrated: the
//! guest never writes to its disk, so both overlays stay identical to the base.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use novacron_qemu::launch::RunPaths;
use novacron_qemu::qmp::{MigrationParameters, migrate};
use novacron_qemu::{Accel, LaunchSpec, MigrationStatus, QemuProcess, RunState, img};
use tokio::time::Instant;

use crate::fixtures::{KillOnDrop, TestVm, guest_dir, qemu_binary, require};

/// Name under which each QEMU holds its end of the migration socket.
const FD_NAME: &str = "migration";

/// Boot to heartbeats, and a whole migration, on a busy 2-core host under TCG.
const BOOT_LIMIT: Duration = Duration::from_secs(90);
const MIGRATION_LIMIT: Duration = Duration::from_secs(120);

/// Starts the test guest (TCG, 128 MiB, `vmlinux`) with a fresh overlay of its disk, waiting
/// for a migration when `incoming`.
async fn start_guest(name: &str, incoming: bool) -> TestVm {
    let guest = guest_dir();
    let dir = tempfile::tempdir().unwrap();
    let overlay = dir.path().join("disk.qcow2");
    img::create_overlay(&guest.join("disk.qcow2"), &overlay, None)
        .await
        .unwrap();
    let cmdline = std::fs::read_to_string(guest.join("cmdline")).unwrap();
    let spec = LaunchSpec {
        name: name.to_owned(),
        uuid: None,
        vcpus: 1,
        memory_mib: 128,
        kernel: Some(guest.join("vmlinux")),
        initrd: Some(guest.join("initrd.img")),
        cmdline: Some(cmdline.trim().to_owned()),
        disks: vec![overlay],
        accel: Accel::Tcg,
        run_dir: dir.path().to_owned(),
        incoming,
        start_paused: false,
    };
    let process = QemuProcess::start(&spec).await.unwrap();
    let guard = KillOnDrop::new(&process);
    TestVm {
        process,
        guard,
        dir,
    }
}

/// One `NCGUEST heartbeat` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Heartbeat {
    seq: u64,
    uptime_ms: u64,
    failed: u64,
}

fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// The guest's console so far.
fn console(paths: &RunPaths) -> String {
    String::from_utf8_lossy(&std::fs::read(&paths.console_log).unwrap_or_default()).into_owned()
}

fn heartbeats(console: &str) -> Vec<Heartbeat> {
    console
        .lines()
        .filter(|line| line.contains("NCGUEST heartbeat "))
        .filter_map(|line| {
            Some(Heartbeat {
                seq: field(line, "seq")?,
                uptime_ms: field(line, "uptime_ms")?,
                failed: field(line, "failed")?,
            })
        })
        .collect()
}

/// Fails on any sign that the guest's memory or kernel was damaged.
fn assert_guest_healthy(console: &str) {
    for bad in ["check-failed", "Kernel panic", "Oops", "NCGUEST error"] {
        assert!(!console.contains(bad), "{bad} on the console:\n{console}");
    }
    for beat in heartbeats(console) {
        assert_eq!(beat.failed, 0, "failed checks:\n{console}");
    }
}

/// Waits for at least `count` heartbeats with `seq > after` on the console of `paths`.
async fn wait_heartbeats(paths: &RunPaths, after: u64, count: usize) -> Vec<Heartbeat> {
    let deadline = Instant::now() + BOOT_LIMIT;
    loop {
        let text = console(paths);
        let beats: Vec<Heartbeat> = heartbeats(&text)
            .into_iter()
            .filter(|beat| beat.seq > after)
            .collect();
        if beats.len() >= count {
            return beats;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {count} heartbeats after seq {after} in {BOOT_LIMIT:?}; console:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Gives each QEMU one end of a new socket pair under [`FD_NAME`]; our copies are closed so
/// that either side closing its end is seen by the other.
async fn connect_pair(source: &QemuProcess, destination: &QemuProcess) {
    let (out, into) = UnixStream::pair().unwrap();
    source.qmp().send_fd(FD_NAME, out.as_fd()).await.unwrap();
    destination
        .qmp()
        .send_fd(FD_NAME, into.as_fd())
        .await
        .unwrap();
}

/// Waits until QEMU reports `want`, within a few seconds.
async fn wait_run_state(process: &QemuProcess, want: &RunState) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = process.qmp().query_status().await.unwrap();
        if &status.status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {} not {want}",
            status.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn paths_of(vm: &TestVm) -> RunPaths {
    vm.process.paths().clone()
}

#[tokio::test]
async fn guest_migrates_over_a_passed_socket_and_runs_on_at_the_destination() {
    require!(qemu_binary());
    require!(img::QEMU_IMG_BINARY);
    let source = start_guest("mig-source", false).await;
    let source_paths = paths_of(&source);
    wait_heartbeats(&source_paths, 0, 2).await;

    let destination = start_guest("mig-destination", true).await;
    let destination_paths = paths_of(&destination);
    assert_ne!(source.process.run_dir(), destination.process.run_dir());
    let status = destination.process.qmp().query_status().await.unwrap();
    assert_eq!(status.status, RunState::Inmigrate);
    assert!(!status.running);

    for side in [&source, &destination] {
        side.process
            .qmp()
            .migrate_set_capabilities(&[(migrate::CAPABILITY_EVENTS, true)])
            .await
            .unwrap();
    }
    connect_pair(&source.process, &destination.process).await;
    destination
        .process
        .qmp()
        .migrate_incoming_fd(FD_NAME)
        .await
        .unwrap();
    let started = Instant::now();
    source.process.qmp().migrate_to_fd(FD_NAME).await.unwrap();

    let deadline = started + MIGRATION_LIMIT;
    let (sent, received) = tokio::join!(
        migrate::wait_migration(source.process.qmp(), deadline),
        migrate::wait_migration(destination.process.qmp(), deadline),
    );
    let took = started.elapsed();
    let sent = sent.unwrap();
    let received = received.unwrap();
    // The raw replies, for the record and for decoding fixtures.
    for side in [&source, &destination] {
        let raw = side
            .process
            .qmp()
            .execute("query-migrate", serde_json::Value::Null)
            .await
            .unwrap();
        eprintln!(
            "query-migrate of {}: {raw}",
            side.process.paths().run_dir.display()
        );
    }
    assert_eq!(sent.status, MigrationStatus::Completed, "{sent:?}");
    assert_eq!(received.status, MigrationStatus::Completed, "{received:?}");
    let ram = sent.ram.clone().unwrap();
    // Guest RAM plus the firmware's and option ROMs' regions.
    assert!(ram.total >= 128 * 1024 * 1024, "{ram:?}");
    assert!(ram.transferred > 32 * 1024 * 1024, "{ram:?}");
    assert_eq!(ram.remaining, 0, "{ram:?}");
    let downtime = sent.downtime.unwrap();
    eprintln!(
        "migration: {took:?} measured, total-time {:?}, downtime {downtime:?}, \
         {} bytes sent, {} dirty syncs",
        sent.total_time, ram.transferred, ram.dirty_sync_count
    );

    // The source stops for good; the destination runs the same guest on.
    wait_run_state(&source.process, &RunState::Postmigrate).await;
    wait_run_state(&destination.process, &RunState::Running).await;
    assert!(
        destination
            .process
            .qmp()
            .query_status()
            .await
            .unwrap()
            .running
    );

    let before = heartbeats(&console(&source_paths));
    let last = *before.last().unwrap();
    let after = wait_heartbeats(&destination_paths, last.seq, 2).await;
    let first = after.first().unwrap();
    assert!(
        first.uptime_ms > last.uptime_ms,
        "uptime restarted: {last:?} then {first:?}"
    );
    let destination_console = console(&destination_paths);
    assert_guest_healthy(&console(&source_paths));
    assert_guest_healthy(&destination_console);
    assert!(
        !destination_console.contains("NCGUEST start"),
        "the guest booted again instead of going on:\n{destination_console}"
    );

    source.process.kill().await.unwrap();
    destination.process.kill().await.unwrap();
}

#[tokio::test]
async fn cancelled_migration_leaves_the_source_running() {
    require!(qemu_binary());
    require!(img::QEMU_IMG_BINARY);
    let source = start_guest("cancel-source", false).await;
    let source_paths = paths_of(&source);
    wait_heartbeats(&source_paths, 0, 1).await;
    let destination = start_guest("cancel-destination", true).await;

    let qmp = source.process.qmp();
    qmp.migrate_set_capabilities(&[(migrate::CAPABILITY_EVENTS, true)])
        .await
        .unwrap();
    // 1 MiB/s: the guest's 32 MiB of filled pages alone take half a minute, so the migration
    // is still active when it is cancelled.
    qmp.migrate_set_parameters(&MigrationParameters {
        max_bandwidth: Some(1024 * 1024),
        ..MigrationParameters::default()
    })
    .await
    .unwrap();
    connect_pair(&source.process, &destination.process).await;
    destination
        .process
        .qmp()
        .migrate_incoming_fd(FD_NAME)
        .await
        .unwrap();
    qmp.migrate_to_fd(FD_NAME).await.unwrap();

    let deadline = Instant::now() + MIGRATION_LIMIT;
    let active =
        migrate::wait_migration_for(qmp, deadline, |status| *status == MigrationStatus::Active)
            .await
            .unwrap();
    assert_eq!(active.status, MigrationStatus::Active, "{active:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let raw = qmp
        .execute("query-migrate", serde_json::Value::Null)
        .await
        .unwrap();
    eprintln!("query-migrate while active: {raw}");
    let info = qmp.query_migrate().await.unwrap();
    assert_eq!(info.status, MigrationStatus::Active, "{info:?}");
    let ram = info.ram.unwrap();
    assert!(ram.transferred > 0 && ram.remaining > 0, "{ram:?}");

    qmp.migrate_cancel().await.unwrap();
    let ended = migrate::wait_migration(qmp, deadline).await.unwrap();
    assert_eq!(ended.status, MigrationStatus::Cancelled, "{ended:?}");
    assert_eq!(
        qmp.query_migrate().await.unwrap().status,
        MigrationStatus::Cancelled
    );

    // The guest never stopped: it runs on at the source and keeps passing its checks.
    let status = qmp.query_status().await.unwrap();
    assert!(status.running, "{status:?}");
    assert_eq!(status.status, RunState::Running);
    let last = heartbeats(&console(&source_paths)).last().unwrap().seq;
    wait_heartbeats(&source_paths, last, 1).await;
    assert_guest_healthy(&console(&source_paths));

    source.process.kill().await.unwrap();
    // The destination may already have exited on the broken stream; the guard covers the rest.
    drop(destination);
}
