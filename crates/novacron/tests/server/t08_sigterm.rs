//! SIGTERM stops the daemon within its grace period even with an event stream open, and the
//! VMs it runs go on; the next start takes them over.

use crate::fixtures::Daemon;
use std::io::Read;
use std::time::{Duration, Instant};

#[test]
fn sigterm_ends_the_daemon_despite_open_event_streams_and_leaves_vms_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let api = d.admin();
    api.import_guest();
    api.create_vm("stays");
    api.act_ok("stays", "start");
    let pid = api.get("/api/v1/vms/stays").1["runtime"]["pid"]
        .as_u64()
        .unwrap();

    let mut stream = api.open_events();
    let reader = std::thread::spawn(move || {
        let mut sink = Vec::new();
        // Ends when the daemon closes the stream.
        let _ = stream.read_to_end(&mut sink);
    });

    let start = Instant::now();
    let status = d.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    reader.join().unwrap();
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU outlives the daemon"
    );

    d.restart();
    let (_, v) = d.admin().get("/api/v1/vms/stays");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["runtime"]["pid"].as_u64(), Some(pid));
}
