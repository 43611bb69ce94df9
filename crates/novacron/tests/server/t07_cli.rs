//! The command line against a real daemon: output and the exit statuses scripts rely on.

use crate::fixtures::{Daemon, novacron};
use std::process::Output;

fn cli(d: &Daemon, token: &str, args: &[&str]) -> Output {
    novacron()
        .args(args)
        .env("NOVACRON_ADDR", format!("http://{}", d.addr))
        .env("NOVACRON_TOKEN", token)
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn cli_creates_lists_and_reports_errors_with_stable_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    d.admin().import_guest();
    let admin = d.admin.clone();

    let o = cli(
        &d,
        &admin,
        &[
            "vm", "create", "cli-vm", "--image", "guest", "--memory", "64M", "--json",
        ],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let vm: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(vm["spec"]["memory"], 64 << 20);

    let o = cli(&d, &admin, &["vm", "list"]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 0);
    assert!(table.lines().next().unwrap().starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("cli-vm") && l.contains("stopped")),
        "{table}"
    );

    // Not found, conflict, invalid input, refused token, unreachable server.
    let o = cli(&d, &admin, &["vm", "show", "nope"]);
    assert_eq!(code(&o), 6, "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli(
        &d,
        &admin,
        &[
            "vm", "create", "cli-vm", "--image", "guest", "--memory", "64M",
        ],
    );
    assert_eq!(code(&o), 7, "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli(
        &d,
        &admin,
        &["vm", "create", "big", "--image", "guest", "--vcpus", "999"],
    );
    assert_eq!(code(&o), 8, "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli(&d, "nct_wrong", &["vm", "list"]);
    assert_eq!(code(&o), 4, "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "one error line: {stderr}");
    let o = novacron()
        .args(["vm", "list"])
        .env("NOVACRON_ADDR", "http://127.0.0.1:9")
        .env("NOVACRON_TOKEN", &admin)
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli(&d, &admin, &["vm", "frobnicate"]);
    assert_eq!(code(&o), 2);

    // Delete through the CLI waits for the operation and leaves nothing.
    let o = cli(&d, &admin, &["vm", "delete", "cli-vm"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        d.admin().get("/api/v1/vms").1["items"],
        serde_json::json!([])
    );
}
