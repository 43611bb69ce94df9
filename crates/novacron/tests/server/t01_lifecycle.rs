//! A VM's whole life on one daemon: create, start (the guest runs: heartbeats on its
//! console), pause (heartbeats stop), resume, restart, stop (the guest powers off on the ACPI
//! power button), delete.

use crate::fixtures::{Daemon, last_heartbeat};
use std::time::Duration;

#[test]
fn vm_lifecycle_runs_a_real_guest() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.admin();
    api.import_guest();
    let vm = api.create_vm("life");
    let id = vm["id"].as_str().unwrap().to_owned();
    assert_eq!(vm["state"], "stopped");
    assert!(
        std::path::Path::new(vm["disks"][0]["path"].as_str().unwrap()).is_file(),
        "root disk created: {vm}"
    );

    api.act_ok("life", "start");
    let (_, v) = api.get("/api/v1/vms/life");
    assert_eq!(v["state"], "running", "{v}");
    let pid = v["runtime"]["pid"].as_u64().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    api.wait_heartbeats("life", 2, Duration::from_secs(90));

    // Paused: the guest's clock stops, so no heartbeat comes.
    api.act_ok("life", "pause");
    assert_eq!(api.get(&format!("/api/v1/vms/{id}")).1["state"], "paused");
    let before = last_heartbeat(&api.get_text("/api/v1/vms/life/console"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        last_heartbeat(&api.get_text("/api/v1/vms/life/console")),
        before
    );
    api.act_ok("life", "resume");
    api.wait_heartbeats("life", 1, Duration::from_secs(60));

    // Restart resets the guest: it boots again and prints its start line a second time.
    api.act_ok("life", "restart");
    let start = std::time::Instant::now();
    loop {
        let console = api.get_text("/api/v1/vms/life/console?lines=1000");
        if console.matches("NCGUEST start").count() >= 2
            && console
                .rsplit("NCGUEST start")
                .next()
                .unwrap_or("")
                .contains("NCGUEST heartbeat")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "guest did not reboot:\n{console}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // A running VM is not deleted without force.
    let (s, e) = api.delete("/api/v1/vms/life");
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["error"], "conflict");

    api.act_ok("life", "stop");
    // The stop was graceful: the guest powered off on the ACPI power button (it writes this line
    // then) rather than being ended with `quit` when the stop timeout ran out.
    let console = api.get_text("/api/v1/vms/life/console?lines=1000");
    let last_boot = console.rsplit("NCGUEST start").next().unwrap_or("");
    assert!(
        last_boot.contains("NCGUEST poweroff"),
        "the guest did not power off on the button:\n{console}"
    );
    let (_, v) = api.get("/api/v1/vms/life");
    assert_eq!(v["state"], "stopped", "{v}");
    assert!(v["runtime"].is_null());
    assert!(d.qemu_pids().is_empty(), "QEMU still running after stop");

    let (s, op) = api.delete("/api/v1/vms/life");
    assert_eq!(s, 202, "{op}");
    assert_eq!(api.wait(&op)["status"], "succeeded");
    assert_eq!(api.get("/api/v1/vms/life").0, 404);
    assert!(!d.data.join("vms").join(&id).exists(), "VM files removed");
}

#[test]
fn forced_delete_kills_a_running_vm() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.admin();
    api.import_guest();
    api.create_vm("doomed");
    api.act_ok("doomed", "start");
    assert_eq!(d.qemu_pids().len(), 1);
    let (s, op) = api.delete("/api/v1/vms/doomed?force=true");
    assert_eq!(s, 202, "{op}");
    assert_eq!(api.wait(&op)["status"], "succeeded");
    assert!(d.qemu_pids().is_empty(), "QEMU killed");
    assert_eq!(api.get("/api/v1/vms").1["items"], serde_json::json!([]));
}
