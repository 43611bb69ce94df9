//! Stopping QEMU: graceful with fallbacks, and kill.

use std::time::{Duration, Instant};

use novacron_qemu::process::{KILL_WAIT, QUIT_GRACE};
use novacron_qemu::{QemuExit, ShutdownMethod};

use crate::fixtures::{TestVm, qemu_binary, require};

#[tokio::test]
async fn graceful_shutdown_of_a_guest_without_acpi_falls_back_to_quit() {
    require!(qemu_binary());
    let vm = TestVm::start("powerdown").await;
    let powerdown = Duration::from_secs(2);
    let started = Instant::now();
    let outcome = vm.process.shutdown_graceful(powerdown).await.unwrap();
    let took = started.elapsed();

    // The firmware alone does not act on the power button; quit does the job.
    assert_eq!(outcome.method, ShutdownMethod::Quit);
    assert_eq!(
        outcome.exit,
        QemuExit::Exited {
            code: Some(0),
            signal: None
        }
    );
    assert!(took >= powerdown, "{took:?}");
    assert!(took < powerdown + QUIT_GRACE + KILL_WAIT, "{took:?}");
    // QEMU cleans up after itself on a quit.
    assert!(!vm.process.paths().pidfile.exists());
}

#[tokio::test]
async fn kill_ends_qemu_with_sigkill() {
    require!(qemu_binary());
    let vm = TestVm::start("kill").await;
    let exit = vm.process.kill().await.unwrap();
    assert_eq!(
        exit,
        QemuExit::Exited {
            code: None,
            signal: Some(libc::SIGKILL)
        }
    );
    assert_eq!(vm.process.exit(), Some(exit));
    // Stopping what already ended reports so, at once.
    let outcome = vm
        .process
        .shutdown_graceful(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(outcome.method, ShutdownMethod::AlreadyExited);
    assert_eq!(outcome.exit, exit);
    assert_eq!(vm.process.kill().await.unwrap(), exit);
}

#[tokio::test]
async fn guest_stopped_by_quit_is_reported_with_exit_code_zero() {
    require!(qemu_binary());
    let vm = TestVm::start("quit").await;
    vm.process.qmp().quit().await.unwrap();
    let exit = vm.process.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(
        exit,
        Some(QemuExit::Exited {
            code: Some(0),
            signal: None
        })
    );
}
