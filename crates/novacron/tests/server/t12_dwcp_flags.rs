//! DWCP feature flags in the node daemon: read from `--dwcp-flags FILE` at start, shown and
//! replaced by admins through the API and the CLI (the file rewritten whole), read again on
//! SIGHUP; a missing or invalid file stops the daemon at start, and changes nothing on SIGHUP.
//! Each migration stream a node sends takes that node's flags in force when it starts.

use crate::fixtures::cluster::{free_port, migrate, start_node_with};
use crate::fixtures::{Api, Daemon, make_pki, novacron};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const FLAGS: &str = "/api/v1/node/dwcp-flags";

/// How long a change may take to show, in the API or in the log.
const SHOW_LIMIT: Duration = Duration::from_secs(15);

/// The arguments of a node `n1` with TLS from `pki` (made here) and `extra`.
fn node_args(pki: &Path, extra: &[OsString]) -> Vec<OsString> {
    make_pki(pki, &["n1"]);
    let mut args: Vec<OsString> = vec![
        "--tls-dir".into(),
        pki.as_os_str().to_owned(),
        "--node".into(),
        "n1".into(),
    ];
    args.extend_from_slice(extra);
    args
}

/// A TLS node `n1` under `dir`, with `--dwcp-flags flags` when given, and its admin client.
fn start(dir: &Path, flags: Option<&Path>) -> (Daemon, Api) {
    let pki = dir.join("pki");
    let extra: Vec<OsString> = flags
        .map(|f| vec!["--dwcp-flags".into(), f.as_os_str().to_owned()])
        .unwrap_or_default();
    let d = Daemon::start_with(dir, &node_args(&pki, &extra));
    let api = Api::https(d.addr, &d.admin, &pki.join("ca.crt"));
    (d, api)
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn get_flags(api: &Api) -> Value {
    let (s, v) = api.get(FLAGS);
    assert_eq!(s, 200, "{v}");
    v
}

/// Polls the flags until `done` holds, at most [`SHOW_LIMIT`].
fn wait_flags(api: &Api, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = get_flags(api);
        if done(&v) {
            return v;
        }
        assert!(start.elapsed() < SHOW_LIMIT, "flags still {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rule(enabled: bool, rollout_percent: u8) -> Value {
    json!({"enabled": enabled, "rollout_percent": rollout_percent})
}

fn metric_line(metrics: &str, name: &str) -> String {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
        .to_owned()
}

#[test]
fn flags_from_a_file_are_shown_and_changed_by_admins_only_and_written_back() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    let file = conf.join("dwcp-flags.json");
    let original = r#"{"hde": {"rollout_percent": 0}, "multistream": {"enabled": false}}"#;
    write(&file, original);
    let (d, admin) = start(dir.path(), Some(&file));

    let v = get_flags(&admin);
    assert_eq!(v["node"], "n1", "{v}");
    assert_eq!(v["file"], file.to_str().unwrap(), "{v}");
    assert_eq!(v["flags"]["kill_switch"], false, "{v}");
    assert_eq!(v["flags"]["hde"], rule(true, 0), "{v}");
    assert_eq!(v["flags"]["pba"], rule(true, 100), "{v}");
    assert_eq!(v["flags"]["multistream"], rule(false, 100), "{v}");
    assert_eq!(
        v["effective"],
        json!({"hde": false, "pba": true, "multistream": false, "dedup_store": true}),
        "{v}"
    );
    let metrics = admin.get_text("/metrics");
    for (name, value) in [
        ("novacron_dwcp_feature_enabled{component=\"hde\"}", 0),
        ("novacron_dwcp_feature_enabled{component=\"pba\"}", 1),
        (
            "novacron_dwcp_feature_enabled{component=\"multistream\"}",
            0,
        ),
        ("novacron_dwcp_kill_switch", 0),
    ] {
        assert_eq!(metric_line(&metrics, name), format!("{name} {value}"));
    }

    // Viewers and operators may neither read nor change them.
    let ca = dir.path().join("pki/ca.crt");
    for role in ["viewer", "operator"] {
        let token = admin.tenant_token(&format!("t-{role}"), role);
        let other = Api::https(d.addr, &token, &ca);
        let (s, e) = other.get(FLAGS);
        assert_eq!((s, e["error"].as_str()), (403, Some("forbidden")), "{e}");
        let (s, e) = other.put(FLAGS, &json!({"kill_switch": true}));
        assert_eq!((s, e["error"].as_str()), (403, Some("forbidden")), "{e}");
    }

    // Unknown keys and out-of-range values are refused by name; nothing changes.
    for (body, named) in [
        (json!({"hde": {"enabled": false}, "turbo": true}), "turbo"),
        (json!({"pba": {"enabld": false}}), "enabld"),
        (
            json!({"hde": {"rollout_percent": 101}}),
            "hde.rollout_percent",
        ),
    ] {
        let (s, e) = admin.put(FLAGS, &body);
        assert_eq!(s, 400, "{body}: {e}");
        assert_eq!(e["error"], "invalid_json", "{e}");
        assert!(e["message"].as_str().unwrap().contains(named), "{e}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    assert_eq!(get_flags(&admin)["flags"], v["flags"]);

    // An admin's document replaces the flags and the file, whole: absent keys are on.
    let (s, changed) = admin.put(
        FLAGS,
        &json!({"kill_switch": true, "pba": {"enabled": false}}),
    );
    assert_eq!(s, 200, "{changed}");
    assert_eq!(changed["flags"]["kill_switch"], true, "{changed}");
    assert_eq!(changed["flags"]["pba"], rule(false, 100), "{changed}");
    assert_eq!(changed["flags"]["hde"], rule(true, 100), "{changed}");
    assert_eq!(
        changed["effective"],
        json!({"hde": false, "pba": false, "multistream": false, "dedup_store": false}),
    );
    assert_eq!(get_flags(&admin), changed);
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(on_disk, changed["flags"], "the file holds the new document");
    let left: Vec<PathBuf> = std::fs::read_dir(&conf)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left, vec![file.clone()], "no temporary file left beside it");
    let metrics = admin.get_text("/metrics");
    assert_eq!(
        metric_line(&metrics, "novacron_dwcp_kill_switch"),
        "novacron_dwcp_kill_switch 1"
    );
    d.wait_log("DWCP feature flags changed through the API", 1, SHOW_LIMIT);
}

#[test]
fn sighup_rereads_the_file_and_a_bad_file_keeps_the_flags_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dwcp-flags.json");
    write(&file, "{}");
    let (d, admin) = start(dir.path(), Some(&file));
    assert_eq!(get_flags(&admin)["flags"]["hde"], rule(true, 100));

    write(
        &file,
        r#"{"hde": {"enabled": false}, "dedup_store": {"rollout_percent": 0}}"#,
    );
    d.signal(libc::SIGHUP);
    let v = wait_flags(&admin, |v| v["flags"]["hde"]["enabled"] == false);
    assert_eq!(v["flags"]["dedup_store"], rule(true, 0), "{v}");
    assert_eq!(
        v["effective"],
        json!({"hde": false, "pba": true, "multistream": true, "dedup_store": false}),
        "{v}"
    );
    d.wait_log("SIGHUP: DWCP feature flags re-read", 1, SHOW_LIMIT);

    // Broken JSON, an unknown key, then no file at all: each is logged with the reason, and
    // the flags read last stay in force.
    let refused = "SIGHUP: DWCP feature flags file refused";
    for (n, (text, reason)) in [
        (Some("{ \"hde\": "), "not valid JSON"),
        (
            Some(r#"{"hde": {"enabled": true}, "multistream": {"enabld": false}}"#),
            "unknown field `multistream.enabld`",
        ),
        (None, "could not read the DWCP flags file"),
    ]
    .into_iter()
    .enumerate()
    {
        match text {
            Some(t) => write(&file, t),
            None => std::fs::remove_file(&file).unwrap(),
        }
        d.signal(libc::SIGHUP);
        let lines = d.wait_log(refused, n + 1, SHOW_LIMIT);
        let line = lines.last().unwrap();
        assert!(line.contains(reason), "{line}");
        assert!(line.contains("WARN"), "{line}");
        assert_eq!(get_flags(&admin), v, "the flags changed after {line}");
    }
}

/// Runs `novacron server ARGS` and returns its exit status and standard error, once it has
/// ended (it must, within 60 s).
fn server_exits(args: &[OsString]) -> (Option<i32>, String) {
    let mut child = novacron()
        .arg("server")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the daemon did not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err)
}

#[test]
fn a_missing_or_invalid_flags_file_stops_the_daemon_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    let base = node_args(&dir.path().join("pki"), &[]);
    let args = |extra: &[&str]| -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--data-dir".into(),
            dir.path().join("data").into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--dwcp-flags".into(),
            file.clone().into(),
        ];
        a.extend(base.iter().cloned());
        a.extend(extra.iter().map(OsString::from));
        a
    };

    let (code, err) = server_exits(&args(&[]));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("could not load the DWCP feature flags"),
        "{err}"
    );
    assert!(err.contains(file.to_str().unwrap()), "{err}");

    write(&file, r#"{"hde": {"rollout_percent": 150}}"#);
    let (code, err) = server_exits(&args(&[]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("hde.rollout_percent"), "{err}");

    // Only a node that migrates sends DWCP streams.
    write(&file, "{}");
    let out = novacron()
        .args(["server", "--listen", "127.0.0.1:0", "--dwcp-flags"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-dir"), "{err}");
}

#[test]
fn the_cli_shows_and_changes_flags_that_live_in_memory_without_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (d, admin) = start(dir.path(), None);
    let v = get_flags(&admin);
    assert_eq!(v["file"], Value::Null, "{v}");
    assert_eq!(
        v["effective"],
        json!({"hde": true, "pba": true, "multistream": true, "dedup_store": true}),
    );
    let cli = |args: &[&str]| {
        let out = novacron()
            .args(["node", "dwcp-flags"])
            .args(args)
            .arg("--addr")
            .arg(format!("https://{}", d.addr))
            .args(["--token", &d.admin, "--ca-cert"])
            .arg(dir.path().join("pki/ca.crt"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, err) = cli(&["--kill-switch", "on"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("kill switch:  on\n"), "{out}");
    assert!(
        out.contains("\nhde          yes      100%     off\n"),
        "{out}"
    );
    assert_eq!(get_flags(&admin)["flags"]["kill_switch"], true);

    let doc = dir.path().join("new-flags.json");
    write(&doc, r#"{"pba": {"enabled": false}}"#);
    let (code, out, err) = cli(&["--set", doc.to_str().unwrap(), "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown, get_flags(&admin));
    assert_eq!(shown["flags"]["kill_switch"], false, "{shown}");
    assert_eq!(shown["effective"]["pba"], false, "{shown}");
    assert_eq!(shown["effective"]["hde"], true, "{shown}");

    write(&doc, r#"{"pba": {"enabled": false}, "zstd": 3}"#);
    let (code, _, err) = cli(&["--set", doc.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("unknown field `zstd`"), "{err}");
    assert_eq!(get_flags(&admin), shown);

    let (code, out, err) = cli(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("file:         none"), "{out}");
    assert!(
        out.contains("\npba          no       100%     off\n"),
        "{out}"
    );

    // A node that takes no part in migrations has no flags to show.
    let plain = Daemon::start(&dir.path().join("plain"));
    let (s, e) = plain.admin().get(FLAGS);
    assert_eq!((s, e["error"].as_str()), (503, Some("unavailable")), "{e}");
}

/// The DWCP settings node `d` logged for each migration stream it started sending (its log
/// is JSON lines).
fn streams_sent(d: &Daemon) -> Vec<Value> {
    d.log()
        .lines()
        .filter(|l| l.contains("DWCP features of a migration stream"))
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["fields"].clone())
        .collect()
}

/// `sent` is one stream: the answers of disk 0's export, under the kill switch or not.
fn assert_only_disk_answers(sent: &[Value], kill_switch: bool, d: &Daemon) {
    assert_eq!(sent.len(), 1, "{}", d.log());
    let name = sent[0]["stream"].as_str().unwrap();
    assert!(name.ends_with("-disk0-reply"), "{}", sent[0]);
    assert_eq!(sent[0]["kill_switch"], json!(kill_switch), "{}", sent[0]);
}

#[test]
fn each_migration_stream_takes_the_flags_of_its_node_when_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    make_pki(&pki, &["a", "b"]);
    let file = dir.path().join("a-flags.json");
    write(&file, r#"{"kill_switch": true}"#);
    let extra = |flags: Option<&Path>| {
        let mut args: Vec<OsString> = vec![
            "--dwcp-listen".into(),
            format!("127.0.0.1:{}", free_port()).into(),
            "--log".into(),
            "info,novacron_node::migrate::features=debug".into(),
            "--log-json".into(),
        ];
        if let Some(f) = flags {
            args.extend(["--dwcp-flags".into(), f.as_os_str().to_owned()]);
        }
        args
    };
    let (pa, pb) = (free_port(), free_port());
    let a = start_node_with(dir.path(), &pki, "a", pa, &[("b", pb)], &extra(Some(&file)));
    let b = start_node_with(dir.path(), &pki, "b", pb, &[("a", pa)], &extra(None));
    a.api.import_guest();
    b.api.import_guest();
    a.api.create_vm("mover");
    a.api.act_ok("mover", "start");
    a.api.wait_heartbeats("mover", 1, Duration::from_secs(90));

    // a's kill switch, from its file: raw frames on one connection, no deduplication.
    let done = a
        .api
        .wait(&migrate(&a.api, "mover", &json!({"target": "b"})));
    assert_eq!(done["status"], "succeeded", "{done}");
    let from_a = streams_sent(&a.daemon);
    assert!(!from_a.is_empty(), "{}", a.daemon.log());
    for s in &from_a {
        assert_eq!(
            (&s["reduce"], &s["streams"], &s["dedup"], &s["kill_switch"]),
            (
                &json!("off"),
                &json!("Fixed(1)"),
                &json!(false),
                &json!(true)
            ),
            "{s}"
        );
    }
    // b sent only the answers of its disk's export, with its own flags (all on).
    let replies_b = streams_sent(&b.daemon);
    assert_only_disk_answers(&replies_b, false, &b.daemon);
    assert_eq!(replies_b[0]["dedup"], json!(true));

    // b starts all on; with multistream turned off through the API, its streams are still
    // compressed as PBA decides and deduplicated, over one connection.
    let (s, v) = b
        .api
        .put(FLAGS, &json!({"multistream": {"enabled": false}}));
    assert_eq!(s, 200, "{v}");
    let done = b
        .api
        .wait(&migrate(&b.api, "mover", &json!({"target": "a"})));
    assert_eq!(done["status"], "succeeded", "{done}");
    let from_b = streams_sent(&b.daemon).split_off(replies_b.len());
    assert!(!from_b.is_empty(), "{}", b.daemon.log());
    for s in &from_b {
        assert_eq!(
            (&s["reduce"], &s["streams"], &s["dedup"], &s["kill_switch"]),
            (
                &json!("auto"),
                &json!("Fixed(1)"),
                &json!(true),
                &json!(false)
            ),
            "{s}"
        );
    }
    // a, the destination now, sent only its export's answers, still under its kill switch.
    let replies_a = streams_sent(&a.daemon).split_off(from_a.len());
    assert_only_disk_answers(&replies_a, true, &a.daemon);
}
