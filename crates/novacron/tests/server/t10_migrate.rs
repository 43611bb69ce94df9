//! Live migration between two daemons on loopback, over DWCP with mutual TLS: a running guest
//! moves to a node without its image (which gets the image) and back (API, then CLI) and keeps
//! its heartbeat and memory checks; a destination holding a different image of that name and
//! a target outside the cluster CA each leave the VM running on the source and nothing behind
//! on the destination.

use crate::fixtures::cluster::{
    Node, assert_guest_continues, free_port, migrate, pair, start_node, vm_absent,
};
use crate::fixtures::{Api, last_heartbeat, make_pki, novacron};
use serde_json::json;
use std::time::Duration;

#[test]
fn a_running_guest_migrates_and_back_and_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path());
    // b has no image: the migration brings it.
    a.api.import_guest();
    a.api.create_vm("mover");
    a.api.act_ok("mover", "start");
    let console = a.api.wait_heartbeats("mover", 2, Duration::from_secs(90));
    let before = last_heartbeat(&console).unwrap();

    let op = migrate(&a.api, "mover", &json!({"target": "b"}));
    let done = a.api.wait(&op);
    assert_eq!(done["status"], "succeeded", "{done}");
    let m = &done["migration"];
    assert_eq!(m["phase"], "done", "{done}");
    assert_eq!(m["target"], "b");
    assert!(m["downtime_ms"].as_u64().is_some(), "{done}");
    assert!(m["memory_total"].as_u64().unwrap() >= 128 << 20, "{done}");
    assert!(m["wire_bytes"].as_u64().unwrap() > 0, "{done}");
    // The image's files (a 64 MB kernel among them) crossed whole; b keeps the image.
    let image_total = m["image_total"].as_u64().unwrap();
    assert!(image_total > 60 << 20, "{done}");
    assert_eq!(m["image_copied"].as_u64(), Some(image_total), "{done}");
    let (s, ours) = a.api.get("/api/v1/images/guest");
    assert_eq!(s, 200, "{ours}");
    let (s, theirs) = b.api.get("/api/v1/images/guest");
    assert_eq!(s, 200, "{theirs}");
    assert_eq!(ours["digest"].as_str().map(str::len), Some(64), "{ours}");
    assert_eq!(theirs["digest"], ours["digest"], "{theirs}");
    assert_eq!(theirs["cmdline"], ours["cmdline"], "{theirs}");
    assert!(
        theirs["kernel"]
            .as_str()
            .unwrap()
            .starts_with(b.daemon.data.to_str().unwrap()),
        "{theirs}"
    );

    // Each node put the pages of the kernel and of the initrd's files (the test guest's
    // program and busybox among them) into its content store: a when it imported the image,
    // b once the image had arrived.
    for node in [&a, &b] {
        for (what, least) in [("kernel", 1000), ("initrd file", 500)] {
            let lines = node.daemon.wait_log(
                &format!("{what} pages put into the DWCP content store"),
                1,
                Duration::from_secs(30),
            );
            assert!(logged_number(&lines[0], "pages") > least, "{}", lines[0]);
        }
    }

    vm_absent(&a.api, "mover");
    assert!(
        a.daemon.qemu_pids().is_empty(),
        "the source QEMU is still running"
    );
    for (node, direction) in [(&a, "out"), (&b, "in")] {
        let metrics = node.api.get_text("/metrics");
        let line = format!(
            "novacron_migrations_ended_total{{direction=\"{direction}\",result=\"succeeded\"}} 1"
        );
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
    let (s, vm) = b.api.get("/api/v1/vms/mover");
    assert_eq!(s, 200, "{vm}");
    assert_eq!(vm["state"], "running", "{vm}");
    assert_guest_continues(&b.api, "mover", before);

    // b remembers how the migration ended: a's commit asked again gets the same answer, and
    // its abort is refused, as the guest runs on b.
    let as_a = Api::https_as_node(b.addr, &dir.path().join("pki"), "a");
    let commit = format!("/api/v1/peer/migrations/{}", done["id"].as_str().unwrap());
    let (s, again) = as_a.post_empty(&format!("{commit}/commit"));
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["id"], vm["id"], "{again}");
    assert_eq!(again["state"], "running", "{again}");
    let (s, refused) = as_a.delete(&commit);
    assert_eq!(s, 409, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("committed"),
        "{refused}"
    );
    let (s, vm) = b.api.get("/api/v1/vms/mover");
    assert_eq!(s, 200, "{vm}");
    assert_eq!(vm["state"], "running", "{vm}");

    // And back, with the CLI: progress on standard error, the summary at the end.
    let console = b.api.get_text("/api/v1/vms/mover/console?lines=200");
    let before = last_heartbeat(&console).unwrap();
    let out = novacron()
        .args(["vm", "migrate", "mover", "--to", "a", "--addr"])
        .arg(format!("https://{}", b.addr))
        .args(["--token", &b.daemon.admin, "--ca-cert"])
        .arg(dir.path().join("pki/ca.crt"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("migration to a done after"), "{err}");
    assert!(err.contains("downtime"), "{err}");
    // a kept what it sent in its content store: memory the guest did not change since comes
    // back as references.
    assert!(err.contains(" by reference)"), "{err}");
    vm_absent(&b.api, "mover");
    assert!(b.daemon.qemu_pids().is_empty());
    assert_guest_continues(&a.api, "mover", before);
}

#[test]
fn with_postcopy_allowed_the_guest_runs_on_the_destination_before_every_page_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path());
    // A guest that rewrites 32 MB/s: more than 1 ms of the link can carry at any pass.
    let cmdline = guest_cmdline().replace("nc.dirty=1M", "nc.dirty=32M");
    assert!(cmdline.contains("nc.dirty=32M"), "{cmdline}");
    start_guest_of(&[&a, &b], "busy", &cmdline, "pulled");

    // A downtime of 1 ms holds almost nothing, so the guest moves once the first pass is done,
    // with the pages it rewrote since still on the source. Its rewrites need CPU time, which
    // the migration itself takes on a small machine: a migration during which it rewrote
    // nothing between two passes ends in pre-copy, with nothing left to pull. So up to three
    // migrations, back and forth, until one moves it by post-copy.
    let nodes = [(&a, "a"), (&b, "b")];
    let mut by_postcopy = false;
    for attempt in 0..3 {
        let ((from, _), (to, to_name)) = (nodes[attempt % 2], nodes[(attempt + 1) % 2]);
        let console = from
            .api
            .wait_heartbeats("pulled", 2, Duration::from_secs(90));
        let before = last_heartbeat(&console).unwrap();
        let op = migrate(
            &from.api,
            "pulled",
            &json!({"target": to_name, "postcopy": true, "max_downtime_ms": 1}),
        );
        let done = from.api.wait(&op);
        assert_eq!(done["status"], "succeeded", "{done}");
        let m = &done["migration"];
        assert_eq!(m["phase"], "done", "{done}");
        assert!(m["downtime_ms"].as_u64().is_some(), "{done}");
        vm_absent(&from.api, "pulled");
        assert!(from.daemon.qemu_pids().is_empty());
        // Its memory checks pass on the destination: every page it pulled was the one it
        // left behind.
        assert_guest_continues(&to.api, "pulled", before);
        if m["postcopy"] == true {
            by_postcopy = true;
            break;
        }
    }
    assert!(
        by_postcopy,
        "no migration of three moved the guest by post-copy"
    );
}

#[test]
fn refused_migrations_leave_the_guest_on_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    make_pki(&pki, &["a", "b"]);
    // A node whose certificate comes from another CA, listed as a peer of a.
    let other = dir.path().join("other-pki");
    make_pki(&other, &["c"]);
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let a = start_node(dir.path(), &pki, "a", pa, &[("b", pb), ("c", pc)]);
    let b = start_node(dir.path(), &pki, "b", pb, &[("a", pa)]);
    let c = start_node(dir.path(), &other, "c", pc, &[]);
    a.api.import_guest();
    a.api.create_vm("stay");
    a.api.act_ok("stay", "start");
    a.api.wait_heartbeats("stay", 1, Duration::from_secs(90));

    // Unknown target: refused at once, naming the field.
    let (s, v) = a
        .api
        .post("/api/v1/vms/stay/migrate", &json!({"target": "nowhere"}));
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["field"], "target", "{v}");

    // b holds another image named guest (another command line): the operation fails with
    // b's reason, and b's image stays as it was.
    b.api.import_guest_as("guest", "console=ttyS0 panic=-1");
    let before = b.api.get("/api/v1/images/guest").1;
    let done = a
        .api
        .wait(&migrate(&a.api, "stay", &json!({"target": "b"})));
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(error.contains("b refused image guest"), "{error}");
    assert!(error.contains("digests differ"), "{error}");
    assert_eq!(b.api.get("/api/v1/images/guest").1, before);
    assert_eq!(a.api.get("/api/v1/vms/stay").1["state"], "running");
    vm_absent(&b.api, "stay");
    assert!(b.daemon.qemu_pids().is_empty());

    // c's certificate is not from the cluster CA: refused at the TLS handshake.
    let done = a
        .api
        .wait(&migrate(&a.api, "stay", &json!({"target": "c"})));
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(error.contains("c refused"), "{error}");
    assert!(
        c.api.get("/api/v1/vms").1["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Without a node certificate, the calls between nodes are forbidden.
    let (s, v) = a.api.post("/api/v1/peer/migrations", &json!({}));
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"], "node_only", "{v}");
}

/// `log` without its colours.
fn plain(log: &str) -> String {
    let mut plain = String::new();
    let mut in_escape = false;
    for c in log.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (false, c) => plain.push(c),
            (true, _) => {}
        }
    }
    plain
}

/// The number logged as `key=N` in `line` (0 when there is none), its colours left out.
fn logged_number(line: &str, key: &str) -> u64 {
    plain(line)
        .split(&format!("{key}="))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The test guest's kernel command line.
fn guest_cmdline() -> String {
    let g = crate::fixtures::guest_dir();
    std::fs::read_to_string(g.join("cmdline"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Imports the test guest as image `image` with `cmdline` on each of `nodes`, then creates and
/// starts VM `vm` of it on the first.
fn start_guest_of(nodes: &[&Node], image: &str, cmdline: &str, vm: &str) {
    for node in nodes {
        node.api.import_guest_as(image, cmdline);
    }
    let (s, v) = nodes[0].api.post(
        "/api/v1/vms",
        &json!({"name": vm, "vcpus": 1, "memory": "128M", "image": image}),
    );
    assert_eq!(s, 201, "{v}");
    nodes[0].api.act_ok(vm, "start");
}

/// The highest `NCGUEST disk-write seq=N` on a console.
fn last_disk_write(console: &str) -> Option<u64> {
    console
        .lines()
        .filter(|l| l.contains("NCGUEST disk-write"))
        .filter_map(|l| l.split("seq=").nth(1)?.trim().parse().ok())
        .next_back()
}

/// Waits for a disk record numbered at least `seq` on `vm`'s console; returns the last one.
fn wait_disk_write(api: &crate::fixtures::Api, vm: &str, seq: u64) -> u64 {
    let start = std::time::Instant::now();
    loop {
        let console = api.get_text(&format!("/api/v1/vms/{vm}/console?lines=400"));
        if let Some(n) = last_disk_write(&console).filter(|n| *n >= seq) {
            return n;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no disk record {seq}:\n{console}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_guest_disk_moves_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path());
    let cmdline = format!("{} ncdisk=1", guest_cmdline());
    start_guest_of(&[&a, &b], "disky", &cmdline, "disky");
    let written_on_a = wait_disk_write(&a.api, "disky", 3);

    // The disk went by its mirror, started beside the memory's first pass (its overlay holds
    // far less than the guest's memory), and kept copying the guest's writes.
    let (done, log) = migrated_to_b(&a, "disky");
    assert!(log.contains("mirrors_beside=true"), "{log}");
    let copied = done["migration"]["disk_copied"].as_u64().unwrap();
    assert!(copied > 0, "{done}");
    assert!(
        copied <= done["migration"]["disk_total"].as_u64().unwrap(),
        "{done}"
    );
    let written = wait_disk_write(&b.api, "disky", written_on_a + 2);
    b.api.act_ok("disky", "stop");

    // Every record the guest reported, on the source and then here, is on b's disk.
    let disk = raw_disk(&b, "disky", dir.path());
    assert_records(&disk, written);
}

#[test]
fn a_large_overlay_is_copied_before_the_memory() {
    const AT: usize = 64 << 20;
    const LEN: usize = 40 << 20;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path());
    let cmdline = format!("{} ncdisk=1", guest_cmdline());
    for node in [&a, &b] {
        node.api.import_guest_as("bulky", &cmdline);
    }
    let (s, v) = a.api.post(
        "/api/v1/vms",
        &json!({"name": "bulky", "vcpus": 1, "memory": "128M", "image": "bulky",
                "disk_size": "128M"}),
    );
    assert_eq!(s, 201, "{v}");
    // 40 MiB written into the overlay before the guest starts, past its records: more than a
    // sixteenth of its memory.
    let overlay = v["disks"][0]["path"].as_str().unwrap();
    let write = format!("write -P 0x5a {AT} {LEN}");
    run_ok(std::process::Command::new("qemu-io").args(["-f", "qcow2", "-c", &write, overlay]));
    a.api.act_ok("bulky", "start");
    let written_on_a = wait_disk_write(&a.api, "bulky", 3);

    let (done, log) = migrated_to_b(&a, "bulky");
    assert!(log.contains("mirrors_beside=false"), "{log}");
    assert!(log.contains("disk mirrors ready"), "{log}");
    let copied = done["migration"]["disk_copied"].as_u64().unwrap();
    assert!(copied >= LEN as u64, "{done}");
    let written = wait_disk_write(&b.api, "bulky", written_on_a + 2);
    b.api.act_ok("bulky", "stop");

    let disk = raw_disk(&b, "bulky", dir.path());
    assert_records(&disk, written);
    let bulk = &disk[AT..AT + LEN];
    assert!(bulk.iter().all(|&x| x == 0x5a), "the overlay's data");
}

/// VM `vm`'s disk on `node` as raw bytes (converted in `dir`).
fn raw_disk(node: &Node, vm: &str, dir: &std::path::Path) -> Vec<u8> {
    let (_, v) = node.api.get(&format!("/api/v1/vms/{vm}"));
    let overlay = v["disks"][0]["path"].as_str().unwrap();
    let raw = dir.join(format!("{vm}.raw"));
    run_ok(
        std::process::Command::new("qemu-img")
            .args(["convert", "-O", "raw", overlay])
            .arg(&raw),
    );
    std::fs::read(&raw).unwrap()
}

/// Runs `cmd`, which must succeed.
fn run_ok(cmd: &mut std::process::Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Migrates `vm` from `a` to b: the operation, which succeeded, and `a`'s log without colours.
fn migrated_to_b(a: &Node, vm: &str) -> (serde_json::Value, String) {
    let done = a.api.wait(&migrate(&a.api, vm, &json!({"target": "b"})));
    assert_eq!(done["status"], "succeeded", "{done}");
    (done, plain(&a.daemon.log()))
}

/// Records 0 to `written` of the guest (`NCDISK %08d`, 16 bytes each from the disk's start)
/// are all in `disk`.
fn assert_records(disk: &[u8], written: u64) {
    for seq in 0..=written {
        let at = usize::try_from(seq * 16).unwrap();
        let record = String::from_utf8_lossy(&disk[at..at + 16]);
        assert_eq!(
            record,
            format!("NCDISK {seq:08}\n"),
            "record {seq} of {written}"
        );
    }
}
