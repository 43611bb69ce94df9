//! Re-attaching to a running QEMU, as the daemon does after a restart.

use std::time::Duration;

use novacron_qemu::process::ProcessError;
use novacron_qemu::qmp::DisconnectReason;
use novacron_qemu::{QemuExit, QemuProcess, RunState};

use crate::fixtures::{TestVm, qemu_binary, require};

#[tokio::test]
async fn reattached_handle_controls_the_same_qemu() {
    require!(qemu_binary());
    let TestVm {
        process,
        guard: _guard,
        dir: _dir,
    } = TestVm::start("reattach").await;
    let pid = process.pid();
    let run_dir = process.run_dir().to_owned();
    process.qmp().stop().await.unwrap();
    // The daemon goes away: its handle and QMP session with it. QEMU runs on.
    drop(process);

    let attached = QemuProcess::attach(&run_dir).await.unwrap();
    assert_eq!(attached.pid(), pid);
    assert!(!attached.is_supervised());
    assert_eq!(attached.exit(), None);
    let status = attached.qmp().query_status().await.unwrap();
    assert_eq!(
        status.status,
        RunState::Paused,
        "state survived the restart"
    );
    attached.qmp().cont().await.unwrap();
    assert!(attached.qmp().query_status().await.unwrap().running);

    // Its exit is seen, without a status: we were not its parent as far as this handle knows.
    let exit = attached.kill().await.unwrap();
    assert_eq!(exit, QemuExit::ExitedUnsupervised);
}

#[tokio::test]
async fn attached_handle_sees_an_exit_it_did_not_cause() {
    require!(qemu_binary());
    let TestVm {
        process,
        guard: _guard,
        dir: _dir,
    } = TestVm::start("external-kill").await;
    let run_dir = process.run_dir().to_owned();
    drop(process);
    let attached = QemuProcess::attach(&run_dir).await.unwrap();
    let pid = i32::try_from(attached.pid()).unwrap();

    // SAFETY: kill(2) with plain values; the pid is our live QEMU (the handle pins it).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let exit = attached.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(exit, Some(QemuExit::ExitedUnsupervised));
    let reason = tokio::time::timeout(Duration::from_secs(10), attached.qmp().closed())
        .await
        .unwrap();
    assert_eq!(reason, DisconnectReason::Eof);
}

#[tokio::test]
async fn attach_to_a_run_dir_without_qemu_says_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let err = QemuProcess::attach(dir.path()).await.unwrap_err();
    assert!(
        matches!(err, ProcessError::NotRunning { pid: None }),
        "{err:?}"
    );
}

#[tokio::test]
async fn attach_after_qemu_exited_says_not_running() {
    require!(qemu_binary());
    let vm = TestVm::start("gone").await;
    let run_dir = vm.run_dir();
    vm.process.kill().await.unwrap();
    let err = QemuProcess::attach(&run_dir).await.unwrap_err();
    assert!(matches!(err, ProcessError::NotRunning { .. }), "{err:?}");
}

#[tokio::test]
async fn attach_does_not_mistake_a_reused_pid_for_qemu() {
    require!(qemu_binary());
    let vm = TestVm::start("reused").await;
    let run_dir = vm.run_dir();
    // Another process now holds the pid the pidfile names.
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let qemu_pid = vm.process.pid();
    vm.process.kill().await.unwrap();
    std::fs::write(run_dir.join("qemu.pid"), format!("{}\n", other.id())).unwrap();

    let err = QemuProcess::attach(&run_dir).await.unwrap_err();
    assert!(
        matches!(err, ProcessError::NotOurQemu { pid } if pid == other.id()),
        "{err:?}"
    );
    assert_ne!(other.id(), qemu_pid);
    other.kill().unwrap();
    other.wait().unwrap();
}
