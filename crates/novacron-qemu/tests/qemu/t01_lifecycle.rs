//! Start, pause, continue, pass a descriptor, read stats and logs.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use novacron_qemu::process::ProcessError;
use novacron_qemu::{ProcessStats, QemuProcess, RunState, console_tail, img, qemu_log_tail};
use serde_json::Value;

use crate::fixtures::{TestVm, qemu_binary, require, spec};

#[tokio::test]
async fn started_vm_runs_pauses_and_continues() {
    require!(qemu_binary());
    let vm = TestVm::start("lifecycle").await;
    let qmp = vm.process.qmp();
    assert!(qmp.version().major >= 2, "{}", qmp.version());
    assert_eq!(qmp.peer_pid(), Some(vm.process.pid()));
    assert!(vm.process.is_supervised());
    assert_eq!(vm.process.exit(), None);

    let status = qmp.query_status().await.unwrap();
    assert!(status.running);
    assert_eq!(status.status, RunState::Running);

    let mut events = qmp.events();
    qmp.stop().await.unwrap();
    let status = qmp.query_status().await.unwrap();
    assert!(!status.running);
    assert_eq!(status.status, RunState::Paused);
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.name, "STOP");
    assert!(event.timestamp.is_some());

    qmp.cont().await.unwrap();
    assert_eq!(qmp.query_status().await.unwrap().status, RunState::Running);
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.name, "RESUME");
}

#[tokio::test]
async fn qemu_runs_in_its_own_session_with_output_in_the_run_dir() {
    require!(qemu_binary());
    let vm = TestVm::start("session").await;
    let pid = i32::try_from(vm.process.pid()).unwrap();
    // SAFETY: getsid(2) with a plain value.
    let sid = unsafe { libc::getsid(pid) };
    assert_eq!(sid, pid, "QEMU must lead its own session");

    let paths = vm.process.paths();
    let stdout = std::fs::read_link(format!("/proc/{pid}/fd/1")).unwrap();
    let stderr = std::fs::read_link(format!("/proc/{pid}/fd/2")).unwrap();
    assert_eq!(stdout, paths.qemu_log);
    assert_eq!(stderr, paths.qemu_log);
    let pidfile = std::fs::read_to_string(&paths.pidfile).unwrap();
    assert_eq!(pidfile.trim(), vm.process.pid().to_string());
    // The firmware prints nothing on the serial port, but the console log exists.
    assert!(paths.console_log.exists());
    assert_eq!(console_tail(&vm.run_dir(), 10).await.unwrap(), "");
}

#[tokio::test]
async fn getfd_accepts_a_passed_socket_and_closefd_releases_it() {
    require!(qemu_binary());
    let vm = TestVm::start("getfd").await;
    let qmp = vm.process.qmp();
    let (_ours, theirs) = UnixStream::pair().unwrap();
    qmp.send_fd("migration-out", theirs.as_fd()).await.unwrap();
    qmp.close_fd("migration-out").await.unwrap();
    // Closing it twice shows QEMU really held it the first time.
    let err = qmp.close_fd("migration-out").await.unwrap_err();
    assert_eq!(err.class(), Some("GenericError"), "{err}");
}

#[tokio::test]
async fn vcpus_threads_and_stats_are_visible() {
    require!(qemu_binary());
    let vm = TestVm::start_spec("cpus", |spec| spec.vcpus = 2).await;
    let cpus = vm.process.qmp().query_cpus_fast().await.unwrap();
    assert_eq!(cpus.len(), 2);
    assert_eq!(cpus[0].cpu_index, 0);
    assert_eq!(cpus[1].cpu_index, 1);
    assert_eq!(cpus[0].target, "x86_64");

    let stats = ProcessStats::read(vm.process.pid()).unwrap();
    assert!(stats.rss_bytes > 1024 * 1024, "{stats:?}");
    assert!(stats.cpu_seconds > 0.0, "{stats:?}");
}

#[tokio::test]
async fn disks_are_attached_as_named_virtio_blk_nodes() {
    require!(qemu_binary());
    require!(img::QEMU_IMG_BINARY);
    let images = tempfile::tempdir().unwrap();
    let disk = images.path().join("root.qcow2");
    img::create(&disk, "qcow2", 16 * 1024 * 1024).await.unwrap();
    let vm = TestVm::start_spec("disks", |spec| spec.disks = vec![disk.clone()]).await;

    let blocks = vm
        .process
        .qmp()
        .execute("query-block", Value::Null)
        .await
        .unwrap();
    let disk0 = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["inserted"]["node-name"] == "disk0")
        .unwrap_or_else(|| panic!("no disk0 in {blocks}"));
    assert!(
        disk0["qdev"].as_str().unwrap().contains("virtio-disk0"),
        "{disk0}"
    );
    assert_eq!(disk0["inserted"]["drv"], "qcow2");
}

#[tokio::test]
async fn second_start_in_a_run_dir_whose_qemu_runs_is_refused() {
    require!(qemu_binary());
    let vm = TestVm::start("twice").await;
    let err = QemuProcess::start(&spec("twice", &vm.run_dir()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProcessError::AlreadyRunning { pid } if pid == vm.process.pid()),
        "{err:?}"
    );
    // The first one is untouched.
    assert!(vm.process.qmp().query_status().await.unwrap().running);
}

#[tokio::test]
async fn qemu_failing_at_start_reports_its_last_words() {
    require!(qemu_binary());
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec("broken", dir.path());
    spec.disks = vec![dir.path().join("missing.qcow2")];
    let err = QemuProcess::start(&spec).await.unwrap_err();
    let ProcessError::ExitedWhileStarting { exit, log_tail } = err else {
        panic!("unexpected {err:?}")
    };
    assert!(
        matches!(exit, novacron_qemu::QemuExit::Exited { code: Some(1), .. }),
        "{exit}"
    );
    assert!(log_tail.contains("missing.qcow2"), "{log_tail}");
    assert_eq!(qemu_log_tail(dir.path(), 20).await.unwrap(), log_tail);
}
