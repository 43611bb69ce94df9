//! Live migration when things break: a DWCP connection cut mid-way (the migration goes on
//! over the others), a cancel, the destination or the source daemon killed mid-way (the guest
//! stays on the source; the destination is cleaned up), and two migrations at once.

use crate::fixtures::cluster::{
    Node, assert_guest_continues, free_port, migrate, pair, start_node, start_node_with, vm_absent,
};
use crate::fixtures::proxy::{Fault, Proxy};
use crate::fixtures::{assert_guest_healthy, guest_dir, last_heartbeat, make_pki};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn import(api: &crate::fixtures::Api, name: &str, cmdline: Option<&str>) {
    let g = guest_dir();
    let default = std::fs::read_to_string(g.join("cmdline")).unwrap();
    let (s, op) = api.post(
        "/api/v1/images",
        &json!({
            "name": name,
            "disk": g.join("disk.qcow2"),
            "kernel": g.join("vmlinux"),
            "initrd": g.join("initrd.img"),
            "cmdline": cmdline.unwrap_or(default.trim()),
        }),
    );
    assert_eq!(s, 202, "{op}");
    assert_eq!(api.wait(&op)["status"], "succeeded");
}

fn run_vm(node: &Node, name: &str, image: &str) -> u64 {
    let (s, vm) = node.api.post(
        "/api/v1/vms",
        &json!({"name": name, "vcpus": 1, "memory": "128M", "image": image}),
    );
    assert_eq!(s, 201, "{vm}");
    node.api.act_ok(name, "start");
    let console = node.api.wait_heartbeats(name, 2, Duration::from_secs(90));
    last_heartbeat(&console).unwrap()
}

/// Waits until the migration `op` has streamed at least `bytes` of memory.
fn wait_streaming(api: &crate::fixtures::Api, op: &Value, bytes: u64) {
    let id = op["operation"]["id"].as_str().unwrap();
    let start = Instant::now();
    loop {
        let (_, now) = api.get(&format!("/api/v1/operations/{id}"));
        assert_eq!(now["status"], "running", "ended too early: {now}");
        if now["migration"]["bytes_sent"].as_u64().unwrap_or(0) >= bytes {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not streaming: {now}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `cond` holds, at most `limit`.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_runs_on(node: &Node, vm: &str) {
    let (s, v) = node.api.get(&format!("/api/v1/vms/{vm}"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "running", "{v}");
    let console = node.api.wait_heartbeats(vm, 2, Duration::from_secs(60));
    assert_guest_healthy(&console);
}

#[test]
fn a_dwcp_connection_cut_mid_way_does_not_stop_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    make_pki(&pki, &["a", "b"]);
    let (pa, pb, b_dwcp) = (free_port(), free_port(), free_port());
    // b's receiver is reached through a proxy that cuts each of the first twelve connections
    // after 1 MiB: the disk's mirror opens its session (at most eight connections, carrying
    // less than that) before the memory stream opens its own.
    let proxy = Proxy::start(
        format!("127.0.0.1:{b_dwcp}").parse().unwrap(),
        vec![Fault::KillAfter(1 << 20); 12],
    );
    let a = start_node(dir.path(), &pki, "a", pa, &[("b", pb)]);
    let b = start_node_with(
        dir.path(),
        &pki,
        "b",
        pb,
        &[("a", pa)],
        &[
            "--dwcp-listen".into(),
            format!("127.0.0.1:{b_dwcp}").into(),
            "--dwcp-advertise-port".into(),
            proxy.addr.port().to_string().into(),
        ],
    );
    import(&a.api, "guest", None);
    import(&b.api, "guest", None);
    let before = run_vm(&a, "cut", "guest");
    let done = a.api.wait(&migrate(&a.api, "cut", &json!({"target": "b"})));
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(
        proxy.killed.load(Ordering::Relaxed) >= 1,
        "the fault did not fire"
    );
    assert!(proxy.accepted.load(Ordering::Relaxed) >= 2);
    vm_absent(&a.api, "cut");
    assert_guest_continues(&b.api, "cut", before);
}

/// Two nodes, `b`'s DWCP receiver behind a proxy whose connections all go silent after
/// 4 MiB, and a guest on `a` whose migration to `b` is under way and stays so.
fn stalled_migration(dir: &Path) -> (Node, Node, Value, Proxy) {
    let pki = dir.join("pki");
    make_pki(&pki, &["a", "b"]);
    let (pa, pb, b_dwcp) = (free_port(), free_port(), free_port());
    let proxy = Proxy::start(
        format!("127.0.0.1:{b_dwcp}").parse().unwrap(),
        vec![Fault::StallAfter(4 << 20); 128],
    );
    let a = start_node(dir, &pki, "a", pa, &[("b", pb)]);
    let b = start_node_with(
        dir,
        &pki,
        "b",
        pb,
        &[("a", pa)],
        &[
            "--dwcp-listen".into(),
            format!("127.0.0.1:{b_dwcp}").into(),
            "--dwcp-advertise-port".into(),
            proxy.addr.port().to_string().into(),
        ],
    );
    import(&a.api, "guest", None);
    import(&b.api, "guest", None);
    run_vm(&a, "stay", "guest");
    let op = migrate(&a.api, "stay", &json!({"target": "b"}));
    wait_streaming(&a.api, &op, 8 << 20);
    (a, b, op, proxy)
}

#[test]
fn a_cancelled_migration_leaves_the_guest_on_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, op, _proxy) = stalled_migration(dir.path());
    let id = op["operation"]["id"].as_str().unwrap();
    // While it runs, Prometheus sees it.
    let metrics = a.api.get_text("/metrics");
    let sent = metrics
        .lines()
        .find(|l| l.starts_with("novacron_migration_sent_bytes{") && l.contains("target=\"b\""))
        .unwrap_or_else(|| panic!("no migration gauge:\n{metrics}"));
    assert!(sent.contains("name=\"stay\""), "{sent}");
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
    assert_runs_on(&a, "stay");
    vm_absent(&b.api, "stay");
    assert!(b.daemon.qemu_pids().is_empty(), "b kept a QEMU");
    // A finished operation cannot be cancelled.
    let (s, v) = a.api.post_empty(&format!("/api/v1/operations/{id}/cancel"));
    assert_eq!(s, 409, "{v}");
    let metrics = a.api.get_text("/metrics");
    assert!(
        metrics.contains("novacron_migrations_ended_total{direction=\"out\",result=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("novacron_migration_sent_bytes{"),
        "{metrics}"
    );
}

#[test]
fn the_destination_daemon_killed_mid_way_leaves_the_guest_on_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let (a, mut b, op, proxy) = stalled_migration(dir.path());
    b.daemon.kill9();
    // The silent connections close, as the dead node's would.
    drop(proxy);
    let done = a.api.wait(&op);
    assert_eq!(done["status"], "failed", "{done}");
    assert!(done["error"].as_str().unwrap().contains("DWCP"), "{done}");
    assert_runs_on(&a, "stay");
    // b comes back without the half-arrived VM or its QEMU.
    b.daemon.restart();
    let api = crate::fixtures::Api::https(
        b.daemon.addr,
        &b.daemon.admin,
        &dir.path().join("pki/ca.crt"),
    );
    vm_absent(&api, "stay");
    assert!(b.daemon.qemu_pids().is_empty(), "b kept a QEMU");
}

#[test]
fn the_source_daemon_killed_mid_way_keeps_the_guest_there() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, b, _op, proxy) = stalled_migration(dir.path());
    a.daemon.kill9();
    drop(proxy);
    a.daemon.restart();
    let api = crate::fixtures::Api::https(
        a.daemon.addr,
        &a.daemon.admin,
        &dir.path().join("pki/ca.crt"),
    );
    let (s, vm) = api.get("/api/v1/vms/stay");
    assert_eq!(s, 200, "{vm}");
    assert_eq!(vm["state"], "running", "{vm}");
    assert!(
        vm["state_reason"]
            .as_str()
            .unwrap()
            .contains("migration to b was interrupted"),
        "{vm}"
    );
    let console = api.wait_heartbeats("stay", 2, Duration::from_secs(60));
    assert_guest_healthy(&console);
    // b gives up on the stream that stopped and removes what it prepared.
    wait_until(Duration::from_secs(60), "b dropped the incoming VM", || {
        b.api.get("/api/v1/vms/stay").0 == 404 && b.daemon.qemu_pids().is_empty()
    });
}

#[test]
fn two_migrations_at_once_both_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path());
    import(&a.api, "guest", None);
    import(&b.api, "guest", None);
    let first = run_vm(&a, "one", "guest");
    let second = run_vm(&a, "two", "guest");
    let ops = [
        migrate(&a.api, "one", &json!({"target": "b"})),
        migrate(&a.api, "two", &json!({"target": "b"})),
    ];
    for op in &ops {
        let done = a.api.wait(op);
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    assert!(a.daemon.qemu_pids().is_empty());
    assert_guest_continues(&b.api, "one", first);
    assert_guest_continues(&b.api, "two", second);
}
