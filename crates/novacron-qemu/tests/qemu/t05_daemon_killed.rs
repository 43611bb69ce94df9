//! QEMU outlives a daemon killed with SIGKILL, and the next daemon takes it over.
//!
//! The "daemon" is this test binary run again with only
//! [`daemon_role_starts_qemu_and_waits_to_be_killed`] selected and the run directory in
//! [`RUN_DIR_ENV`]; in a normal test run that function sees no variable and returns at once.

use std::process::Stdio;
use std::time::Duration;

use novacron_qemu::{QemuExit, QemuProcess, RunState};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::fixtures::{KillOnDrop, qemu_binary, require, spec};

const RUN_DIR_ENV: &str = "NOVACRON_QEMU_TEST_DAEMON_RUN_DIR";
const READY: &str = "daemon-ready pid=";

#[tokio::test]
async fn daemon_role_starts_qemu_and_waits_to_be_killed() {
    let Ok(run_dir) = std::env::var(RUN_DIR_ENV) else {
        return;
    };
    let process = QemuProcess::start(&spec("orphan", run_dir.as_ref()))
        .await
        .unwrap();
    process.qmp().stop().await.unwrap();
    println!("{READY}{}", process.pid());
    // Bounded, in case the parent test dies before killing us.
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test]
async fn qemu_survives_its_daemon_being_killed_and_is_taken_over() {
    require!(qemu_binary());
    let dir = tempfile::tempdir().unwrap();
    let run_dir = std::fs::canonicalize(dir.path()).unwrap();
    // Whatever happens below, the daemon's QEMU dies with the test.
    let _guard = KillOnDrop::for_run_dir(&run_dir);
    let mut daemon = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "t05_daemon_killed::daemon_role_starts_qemu_and_waits_to_be_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RUN_DIR_ENV, &run_dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(daemon.stdout.take().unwrap()).lines();
    let qemu_pid: u32 = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            // libtest prints the test's name on the same line first.
            if let Some((_, pid)) = line.split_once(READY) {
                return pid.trim().parse().unwrap();
            }
        }
        panic!("the daemon ended without starting QEMU");
    })
    .await
    .unwrap();

    daemon.start_kill().unwrap();
    let status = daemon.wait().await.unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );

    let attached = QemuProcess::attach(&run_dir).await.unwrap();
    assert_eq!(attached.pid(), qemu_pid);
    assert_eq!(
        attached.qmp().query_status().await.unwrap().status,
        RunState::Paused
    );
    let outcome = attached
        .shutdown_graceful(Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(outcome.exit, QemuExit::ExitedUnsupervised);
}
