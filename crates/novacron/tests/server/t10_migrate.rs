//! Live migration between two daemons on loopback, over DWCP with mutual TLS: a running guest
//! moves and back (API, then CLI) and keeps its heartbeat and memory checks; a cancel, a
//! destination without the image and a target outside the cluster CA each leave the VM
//! running on the source and nothing behind on the destination.

use crate::fixtures::{
    Api, Daemon, assert_guest_healthy, guest_dir, last_heartbeat, make_pki, novacron,
};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

/// A port free now (the daemon binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon with TLS from `pki`, its DWCP receiver, and `peers` (name, API port).
struct Node {
    daemon: Daemon,
    api: Api,
    addr: SocketAddr,
}

fn start_node(dir: &Path, pki: &Path, name: &str, port: u16, peers: &[(&str, u16)]) -> Node {
    let mut args: Vec<OsString> = vec![
        "--tls-dir".into(),
        pki.as_os_str().to_owned(),
        "--node".into(),
        name.into(),
        "--listen".into(),
        format!("127.0.0.1:{port}").into(),
        "--dwcp-listen".into(),
        format!("127.0.0.1:{}", free_port()).into(),
    ];
    for (peer, peer_port) in peers {
        args.push("--peer".into());
        args.push(format!("{peer}=https://127.0.0.1:{peer_port}").into());
    }
    let daemon = Daemon::start_with(&dir.join(name), &args);
    let api = Api::https(daemon.addr, &daemon.admin, &pki.join("ca.crt"));
    Node {
        addr: daemon.addr,
        daemon,
        api,
    }
}

/// Two nodes `a` and `b` that know each other.
fn pair(dir: &Path) -> (Node, Node) {
    let pki = dir.join("pki");
    make_pki(&pki, &["a", "b"]);
    let (pa, pb) = (free_port(), free_port());
    let a = start_node(dir, &pki, "a", pa, &[("b", pb)]);
    let b = start_node(dir, &pki, "b", pb, &[("a", pa)]);
    (a, b)
}

/// Starts a migration and returns its operation.
fn migrate(from: &Api, vm: &str, body: &Value) -> Value {
    let (s, v) = from.post(&format!("/api/v1/vms/{vm}/migrate"), body);
    assert_eq!(s, 202, "{v}");
    v
}

/// Heartbeat sequence numbers of a console.
fn heartbeats(console: &str) -> Vec<u64> {
    console
        .lines()
        .filter(|l| l.contains("NCGUEST heartbeat"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("seq="))
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

/// Waits until the destination's console has heartbeats that continue the source's
/// sequence (`after`), with no failed check, panic or oops, and no reboot.
fn assert_guest_continues(api: &Api, vm: &str, after: u64) {
    let console = api.wait_heartbeats(vm, 3, Duration::from_secs(60));
    assert_guest_healthy(&console);
    assert!(
        !console.contains("NCGUEST start"),
        "the guest started afresh instead of continuing:\n{console}"
    );
    let seqs = heartbeats(&console);
    assert!(
        seqs.first().is_some_and(|first| *first > after),
        "heartbeats do not continue after {after}: {seqs:?}"
    );
}

fn vm_absent(api: &Api, vm: &str) {
    let (s, v) = api.get(&format!("/api/v1/vms/{vm}"));
    assert_eq!(s, 404, "{v}");
}

#[test]
fn a_running_guest_migrates_and_back_and_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path());
    a.api.import_guest();
    b.api.import_guest();
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

    vm_absent(&a.api, "mover");
    assert!(
        a.daemon.qemu_pids().is_empty(),
        "the source QEMU is still running"
    );
    let (s, vm) = b.api.get("/api/v1/vms/mover");
    assert_eq!(s, 200, "{vm}");
    assert_eq!(vm["state"], "running", "{vm}");
    assert_guest_continues(&b.api, "mover", before);

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
    vm_absent(&b.api, "mover");
    assert!(b.daemon.qemu_pids().is_empty());
    assert_guest_continues(&a.api, "mover", before);
}

#[test]
fn failed_and_cancelled_migrations_leave_the_guest_on_the_source() {
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
    let g = guest_dir();
    let (s, op) = a.api.post(
        "/api/v1/images",
        &json!({
            "name": "busy",
            "disk": g.join("disk.qcow2"),
            "kernel": g.join("vmlinux"),
            "initrd": g.join("initrd.img"),
            "cmdline": "console=ttyS0 quiet panic=-1 nc.mem=32M nc.dirty=512M",
        }),
    );
    assert_eq!(s, 202, "{op}");
    assert_eq!(a.api.wait(&op)["status"], "succeeded");
    let (s, vm) = a.api.post(
        "/api/v1/vms",
        &json!({"name": "stay", "vcpus": 1, "memory": "128M", "image": "busy"}),
    );
    assert_eq!(s, 201, "{vm}");
    a.api.act_ok("stay", "start");
    a.api.wait_heartbeats("stay", 1, Duration::from_secs(90));

    // Unknown target: refused at once, naming the field.
    let (s, v) = a
        .api
        .post("/api/v1/vms/stay/migrate", &json!({"target": "nowhere"}));
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["field"], "target", "{v}");

    // b lacks the image: the operation fails with b's reason.
    let done = a
        .api
        .wait(&migrate(&a.api, "stay", &json!({"target": "b"})));
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(error.contains("no image named \"busy\""), "{error}");
    assert_eq!(a.api.get("/api/v1/vms/stay").1["state"], "running");

    // c's certificate is not from the cluster CA: refused at the TLS handshake.
    let done = a
        .api
        .wait(&migrate(&a.api, "stay", &json!({"target": "c"})));
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(error.contains("c refused the migration"), "{error}");
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

    // Cancel: b has the image now; a guest dirtying faster than a 1 ms downtime allows
    // never converges, so the cancel finds it copying memory.
    let (s, op) = b.api.post(
        "/api/v1/images",
        &json!({
            "name": "busy",
            "disk": g.join("disk.qcow2"),
            "kernel": g.join("vmlinux"),
            "initrd": g.join("initrd.img"),
            "cmdline": "console=ttyS0 quiet panic=-1 nc.mem=32M nc.dirty=512M",
        }),
    );
    assert_eq!(s, 202, "{op}");
    assert_eq!(b.api.wait(&op)["status"], "succeeded");
    let op = migrate(
        &a.api,
        "stay",
        &json!({"target": "b", "max_downtime_ms": 1}),
    );
    let id = op["operation"]["id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    loop {
        let (_, now) = a.api.get(&format!("/api/v1/operations/{id}"));
        assert_eq!(now["status"], "running", "ended before the cancel: {now}");
        if now["migration"]["pass"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no second pass: {now}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (s, v) = a.api.post_empty(&format!("/api/v1/operations/{id}/cancel"));
    assert_eq!(s, 202, "{v}");
    let done = a.api.wait(&op);
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("cancelled by the operator"),
        "{done}"
    );
    assert_eq!(done["migration"]["phase"], "failed", "{done}");
    assert_eq!(a.api.get("/api/v1/vms/stay").1["state"], "running");
    vm_absent(&b.api, "stay");
    assert!(b.daemon.qemu_pids().is_empty(), "b kept a QEMU");
    let console = a.api.wait_heartbeats("stay", 2, Duration::from_secs(60));
    assert_guest_healthy(&console);
}
