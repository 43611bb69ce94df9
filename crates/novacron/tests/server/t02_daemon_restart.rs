//! kill -9 of the daemon loses no VM: running QEMUs are re-attached on start, and a VM whose
//! QEMU died meanwhile is marked failed with the reason.

use crate::fixtures::Daemon;
use std::time::Duration;

#[test]
fn daemon_kill9_and_restart_reattaches_running_vms_and_marks_dead_ones_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let api = d.admin();
    api.import_guest();
    api.create_vm("keeps");
    api.create_vm("dies");
    api.act_ok("keeps", "start");
    api.act_ok("dies", "start");
    api.act_ok("keeps", "pause");
    let pid_keeps = api.get("/api/v1/vms/keeps").1["runtime"]["pid"]
        .as_u64()
        .unwrap();
    let pid_dies = api.get("/api/v1/vms/dies").1["runtime"]["pid"]
        .as_u64()
        .unwrap();

    d.kill9();
    // While the daemon is down, one QEMU dies.
    // SAFETY: kill(2) on a pid this test started through the daemon.
    unsafe { libc::kill(i32::try_from(pid_dies).unwrap(), libc::SIGKILL) };
    wait_gone(pid_dies);
    d.restart();
    let api = d.admin();

    let (_, keeps) = api.get("/api/v1/vms/keeps");
    assert_eq!(
        keeps["state"], "paused",
        "state kept across the restart: {keeps}"
    );
    assert_eq!(
        keeps["runtime"]["pid"].as_u64(),
        Some(pid_keeps),
        "same QEMU"
    );
    let (_, dies) = api.get("/api/v1/vms/dies");
    assert_eq!(dies["state"], "failed", "{dies}");
    let reason = dies["state_reason"].as_str().unwrap();
    assert!(reason.contains("not running"), "{reason}");

    // The re-attached VM is fully controllable: resume, heartbeats go on, stop.
    api.act_ok("keeps", "resume");
    api.wait_heartbeats("keeps", 2, Duration::from_secs(60));
    // A failed VM can be started again.
    api.act_ok("dies", "start");
    api.wait_heartbeats("dies", 1, Duration::from_secs(90));

    // The supervisor of a re-attached VM still notices its QEMU dying.
    // SAFETY: as above.
    unsafe { libc::kill(i32::try_from(pid_keeps).unwrap(), libc::SIGKILL) };
    let start = std::time::Instant::now();
    loop {
        let (_, v) = api.get("/api/v1/vms/keeps");
        if v["state"] == "failed" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "QEMU death not seen: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `pid` has exited and been reaped (or is a zombie awaiting its reaper).
fn wait_gone(pid: u64) {
    let start = std::time::Instant::now();
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')) =>
            {
                return;
            }
            Ok(_) => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "QEMU {pid} outlived SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
