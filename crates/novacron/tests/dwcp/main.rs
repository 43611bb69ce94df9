//! End-to-end tests of `novacron dwcp serve` and `send`: real processes on loopback, with a
//! proxy that breaks and corrupts connections.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs,
    reason = "test crate"
)]

mod fixtures;

use std::io::{Read, Write};
use std::time::Duration;

use fixtures::proxy::{Fault, Proxy};
use fixtures::{Server, file_hash, make_pki, novacron, send, send_stdin, wait_until, write_file};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

#[test]
fn t01_round_trips_of_awkward_sizes_are_byte_identical() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let server = Server::start(dst.path(), &["--insecure"]);
    for (i, len) in [0, 1, 64 * KIB - 1, 512 * KIB + 3, 5 * MIB + 7]
        .into_iter()
        .enumerate()
    {
        let name = format!("f{i}");
        let path = write_file(src.path(), &name, len, i as u64);
        let out = send(
            &path,
            server.addr,
            &["--insecure", "--streams", "3", "--chunk-size", "64K"],
        );
        let summary = out.summary();
        assert_eq!(summary["bytes"], len as u64);
        let stored = dst.path().join(&name);
        assert_eq!(
            std::fs::read(&stored).unwrap(),
            std::fs::read(&path).unwrap()
        );
        assert_eq!(summary["blake3"], file_hash(&path));
        assert!(!dst.path().join(format!("{name}.partial")).exists());
    }
}

#[test]
fn t02_standard_input_is_sent_under_the_given_name() {
    let dst = tempfile::tempdir().unwrap();
    let server = Server::start(dst.path(), &["--insecure"]);
    let data = fixtures::pseudo_random(3 * MIB + 5, 42);
    let out = send_stdin(&data, server.addr, &["--insecure", "--name", "piped.bin"]);
    assert_eq!(out.summary()["bytes"], data.len() as u64);
    assert_eq!(std::fs::read(dst.path().join("piped.bin")).unwrap(), data);

    let out = send_stdin(b"x", server.addr, &["--insecure"]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("--name is required"), "{}", out.stderr);
}

#[test]
fn t03_several_gib_sparse_file_over_tls() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path(), &["rx", "tx"]);
    let path = src.path().join("sparse.img");
    let len: u64 = 3 * (1 << 30) + 17;
    {
        let mut f = std::fs::File::create(&path).unwrap();
        f.set_len(len).unwrap();
        use std::io::Seek;
        for (i, at) in [0u64, 1 << 30, 2 << 30, len - 4096].into_iter().enumerate() {
            f.seek(std::io::SeekFrom::Start(at)).unwrap();
            f.write_all(&fixtures::pseudo_random(4096, i as u64))
                .unwrap();
        }
    }
    let tls = |node: &str| -> Vec<String> {
        vec![
            "--tls-dir".into(),
            pki.path().display().to_string(),
            "--node".into(),
            node.into(),
        ]
    };
    let rx_args = tls("rx");
    let server = Server::start(
        dst.path(),
        &rx_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut tx_args = tls("tx");
    tx_args.extend(["--server-name".into(), "rx".into()]);
    let out = send(
        &path,
        server.addr,
        &tx_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let summary = out.summary();
    assert_eq!(summary["bytes"], len);
    assert_eq!(summary["tls"], true);
    let stored = dst.path().join("sparse.img");
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), len);
    assert_eq!(file_hash(&stored), file_hash(&path));
    assert_eq!(summary["blake3"], file_hash(&path));
}

#[test]
fn t04_a_connection_killed_mid_transfer_is_redialed_and_nothing_is_lost() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let server = Server::start(dst.path(), &["--insecure"]);
    // The second connection dies after 1 MiB; its unacknowledged frames go out again. Pacing
    // (a quarter of the rate cap per connection) makes every connection carry its share.
    let proxy = Proxy::start(server.addr, vec![Fault::None, Fault::KillAfter(MIB as u64)]);
    let path = write_file(src.path(), "big", 32 * MIB + 11, 4);
    let out = send(
        &path,
        proxy.addr,
        &[
            "--insecure",
            "--streams",
            "4",
            "--chunk-size",
            "64K",
            "--rate-limit",
            "200mbit",
        ],
    );
    let summary = out.summary();
    assert!(summary["reconnects"].as_u64().unwrap() >= 1, "{summary}");
    // Four connections, plus at least one dialed again after the kill.
    assert!(proxy.accepted.load(std::sync::atomic::Ordering::Relaxed) >= 5);
    assert_eq!(proxy.killed.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(
        summary["retransmitted_bytes"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert_eq!(file_hash(&dst.path().join("big")), file_hash(&path));
}

#[test]
fn t04b_a_connection_that_goes_silent_is_worked_around_without_redialing() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let server = Server::start(dst.path(), &["--insecure"]);
    // The first connection stops delivering after 1 MiB but stays open: the frames it holds
    // block the stream until they are sent again on the other connection.
    let proxy = Proxy::start(server.addr, vec![Fault::StallAfter(MIB as u64)]);
    let path = write_file(src.path(), "held", 16 * MIB + 3, 11);
    let out = send(
        &path,
        proxy.addr,
        &["--insecure", "--streams", "2", "--chunk-size", "256K"],
    );
    let summary = out.summary();
    assert_eq!(summary["reconnects"], 0, "{summary}");
    assert!(
        summary["retransmitted_bytes"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert_eq!(file_hash(&dst.path().join("held")), file_hash(&path));
}

#[test]
fn t04c_a_paced_session_measures_the_rate_it_is_held_to_and_stays_intact() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let server = Server::start(dst.path(), &["--insecure"]);
    let path = write_file(src.path(), "paced", 48 * MIB + 5, 21);
    // Held to 200 Mbit/s, the session is network-limited: the pacer leaves startup and
    // cruises at about the rate the connections deliver.
    let out = send(
        &path,
        server.addr,
        &[
            "--insecure",
            "--streams",
            "4",
            "--pacing",
            "on",
            "--rate-limit",
            "200mbit",
        ],
    );
    let s = out.summary();
    assert_eq!(s["paced"], true, "{s}");
    let mbit = s["pacing_mbit"]
        .as_f64()
        .unwrap_or_else(|| panic!("no pacing rate: {s}"));
    assert!(
        (100.0..=300.0).contains(&mbit),
        "paced at {mbit} Mbit/s: {s}"
    );
    assert_eq!(file_hash(&dst.path().join("paced")), file_hash(&path));

    // On loopback `auto` does not pace (a datacenter link); `off` never does.
    for pacing in ["auto", "off"] {
        let name = format!("unpaced-{pacing}");
        let path = write_file(src.path(), &name, MIB, 22);
        let out = send(&path, server.addr, &["--insecure", "--pacing", pacing]);
        let s = out.summary();
        assert_eq!(s["paced"], false, "{pacing}: {s}");
        assert!(s["pacing_mbit"].is_null(), "{pacing}: {s}");
    }

    let bad = novacron()
        .args(["dwcp", "send", "--insecure", "--pacing", "sometimes"])
        .arg(&path)
        .arg(server.addr.to_string())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("pacing must be auto, on or off"), "{err}");
}

#[test]
fn t05_a_frame_corrupted_in_flight_fails_the_transfer() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let server = Server::start(dst.path(), &["--insecure"]);
    let proxy = Proxy::start(server.addr, vec![Fault::FlipByteAt(MIB as u64 + 99)]);
    let path = write_file(src.path(), "victim", 4 * MIB, 5);
    let out = send(&path, proxy.addr, &["--insecure", "--streams", "1"]);
    assert_eq!(out.status, 4, "{}", out.stderr);
    assert!(out.stderr.contains("checksum mismatch"), "{}", out.stderr);
    assert!(!dst.path().join("victim").exists());
}

#[test]
fn t06_receiver_killed_then_send_resume_completes_from_the_stored_offset() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = write_file(src.path(), "vm.mem", 48 * MIB, 6);
    let partial = dst.path().join("vm.mem.partial");
    let mut server = Server::start(dst.path(), &["--insecure"]);
    let sender = slow_sender(&path, server.addr);
    wait_until(Duration::from_secs(30), "a partial file of 4 MiB", || {
        std::fs::metadata(&partial).is_ok_and(|m| m.len() >= 4 * MIB as u64)
    });
    server.kill9();
    let out = fixtures::wait_bounded(sender, Duration::from_secs(60));
    assert_eq!(out.status, 3, "{}", out.stderr);
    assert!(out.stderr.contains("--resume"), "{}", out.stderr);
    let held = std::fs::metadata(&partial).unwrap().len();
    assert!(held >= 4 * MIB as u64 && held < 48 * MIB as u64, "{held}");
    assert!(!dst.path().join("vm.mem").exists());

    let server = Server::start(dst.path(), &["--insecure"]);
    let out = send(&path, server.addr, &["--insecure", "--resume"]);
    let summary = out.summary();
    assert_eq!(summary["resumed_from"], held);
    assert_eq!(summary["bytes_sent"], 48 * MIB as u64 - held);
    assert_eq!(file_hash(&dst.path().join("vm.mem")), file_hash(&path));
    assert!(!partial.exists());
}

#[test]
fn t07_certificates_from_another_ca_are_refused_both_ways() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    make_pki(ours.path(), &["rx", "tx"]);
    make_pki(theirs.path(), &["tx"]);
    let ours_dir = ours.path().display().to_string();
    let theirs_dir = theirs.path().display().to_string();
    let server = Server::start(dst.path(), &["--tls-dir", &ours_dir, "--node", "rx"]);
    let path = write_file(src.path(), "secret", 100 * KIB, 7);

    let out = send(
        &path,
        server.addr,
        &[
            "--tls-dir",
            &theirs_dir,
            "--node",
            "tx",
            "--server-name",
            "rx",
        ],
    );
    assert_eq!(out.status, 3, "{}", out.stderr);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    assert!(!dst.path().join("secret").exists());

    // The right CA works against the same receiver, which is unharmed.
    let out = send(
        &path,
        server.addr,
        &[
            "--tls-dir",
            &ours_dir,
            "--node",
            "tx",
            "--server-name",
            "rx",
        ],
    );
    assert_eq!(out.summary()["tls"], true);

    // A receiver whose name is not the expected one is refused by the sender.
    let out = send(
        &path,
        server.addr,
        &[
            "--tls-dir",
            &ours_dir,
            "--node",
            "tx",
            "--server-name",
            "tx",
        ],
    );
    assert_eq!(out.status, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("not valid for the name"),
        "{}",
        out.stderr
    );
}

#[test]
fn t08_names_that_leave_the_directory_are_refused_by_sender_and_receiver() {
    let src = tempfile::tempdir().unwrap();
    let outer = tempfile::tempdir().unwrap();
    let dst = outer.path().join("inbox");
    std::fs::create_dir(&dst).unwrap();
    let server = Server::start(&dst, &["--insecure"]);
    let path = write_file(src.path(), "x", 10, 8);
    let out = send(&path, server.addr, &["--insecure", "--name", "../escape"]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("not a plain name"), "{}", out.stderr);

    // A hostile sender that skips the CLI's check gets a refusal from the receiver.
    use dwcp::wire::{ErrorCode, ErrorMessage, Frame, FrameKind, Hello, HelloMode, SessionId};
    for name in ["../escape", "/tmp/abs", "a/b", ".."] {
        let hello = Hello {
            mode: HelloMode::Open,
            conn_index: 0,
            total_len: Some(10),
            chunk_size: 1024,
            name: name.into(),
            features: 0,
        };
        let frame =
            Frame::control(FrameKind::Hello, SessionId::random(), 0, hello.encode()).unwrap();
        let mut tcp = std::net::TcpStream::connect(server.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(&frame.encode()).unwrap();
        let mut buf = Vec::new();
        let _ = tcp.read_to_end(&mut buf);
        let (reply, _) = Frame::decode(&buf).unwrap().unwrap();
        assert_eq!(reply.header.kind, FrameKind::Error, "{name}");
        let err = ErrorMessage::decode(&reply.payload).unwrap();
        assert_eq!(err.code, ErrorCode::BadName, "{name}: {}", err.message);
    }
    assert!(!outer.path().join("escape").exists());
    assert!(!outer.path().join("escape.partial").exists());
    assert_eq!(std::fs::read_dir(&dst).unwrap().count(), 0);
}

#[test]
fn t09_unreachable_receiver_and_bad_arguments_give_one_clear_line() {
    let src = tempfile::tempdir().unwrap();
    let path = write_file(src.path(), "x", 10, 9);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = send(&path, closed, &["--insecure"]);
    assert_eq!(out.status, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("error: could not reach the receiver"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);

    let out = send(&src.path().join("missing"), closed, &["--insecure"]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("No such file"), "{}", out.stderr);

    let out = send(&path, closed, &[]);
    assert_eq!(out.status, 1);
    assert!(
        out.stderr.contains("--insecure turns TLS off"),
        "{}",
        out.stderr
    );
}

#[test]
fn t10_a_full_disk_is_reported_and_leaves_only_the_partial_file() {
    let src = tempfile::tempdir().unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "this test needs root to mount a small tmpfs"
    );
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(mnt.path());
    let server = Server::start(mnt.path(), &["--insecure"]);
    let path = write_file(src.path(), "huge", 8 * MIB, 10);
    let out = send(&path, server.addr, &["--insecure"]);
    assert_eq!(out.status, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    assert!(!mnt.path().join("huge").exists());
    assert!(mnt.path().join("huge.partial").exists());
}

/// Log-like text: compresses several times over.
/// `dwcp send` of `path` at 40 Mbit/s, giving up 2 s after it loses the receiver: slow enough
/// to be interrupted mid-way, quick to fail once it is.
fn slow_sender(path: &std::path::Path, addr: std::net::SocketAddr) -> std::process::Child {
    novacron()
        .args(["dwcp", "send"])
        .arg(path)
        .arg(addr.to_string())
        .args(["--insecure", "--quiet", "--rate-limit", "40mbit"])
        .args(["--reconnect-timeout", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn log_file(dir: &std::path::Path, name: &str, len: usize) -> std::path::PathBuf {
    let mut text = String::with_capacity(len + 128);
    let mut i = 0u64;
    while text.len() < len {
        text.push_str(&format!(
            "2026-11-25T12:{:02}:{:02} INFO node-{} migrated page range {}..{} in {} us\n",
            (i / 60) % 60,
            i % 60,
            i % 7,
            i * 4096,
            i * 4096 + 4095,
            (i * 37) % 1000
        ));
        i += 1;
    }
    text.truncate(len);
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn t11_compression_settings_reduce_the_wire_bytes_and_report_it() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let server = Server::start(dst.path(), &["--insecure"]);
    let text = log_file(src.path(), "app.log", 6 * MIB + 3);
    for (compress, codec) in [("zstd:3", "zstd-3"), ("lz4", "lz4")] {
        let out = send(&text, server.addr, &["--insecure", "--compress", compress]);
        let s = out.summary();
        assert_eq!(s["hde"], true, "{s}");
        assert_eq!(s["compression"], compress);
        assert_eq!(s["codec"], codec);
        assert_eq!(s["stream_bytes"], 6 * MIB as u64 + 3);
        let wire = s["wire_bytes"].as_u64().unwrap();
        assert!(wire < 3 * MIB as u64, "{s}");
        assert!(s["reduction_ratio"].as_f64().unwrap() > 2.0, "{s}");
        assert!(s["mode"].is_string(), "{s}");
        assert_eq!(file_hash(&dst.path().join("app.log")), file_hash(&text));
    }
    let out = send(&text, server.addr, &["--insecure", "--compress", "off"]);
    let s = out.summary();
    assert_eq!(s["hde"], false, "{s}");
    assert_eq!(s["wire_bytes"], s["stream_bytes"]);

    // Random data with the default (auto): raw, within 0.5 %.
    let noise = write_file(src.path(), "noise", 8 * MIB, 12);
    let s = send(&noise, server.addr, &["--insecure"]).summary();
    assert_eq!(s["compression"], "auto");
    let (wire, stream) = (
        s["wire_bytes"].as_f64().unwrap(),
        s["stream_bytes"].as_f64().unwrap(),
    );
    assert!(wire <= stream * 1.005, "{s}");
    assert_eq!(file_hash(&dst.path().join("noise")), file_hash(&noise));

    // The human line names the mode and the reduction.
    let out = novacron()
        .args(["dwcp", "send"])
        .arg(&text)
        .arg(server.addr.to_string())
        .args(["--insecure", "--quiet", "--compress", "lz4"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(" link, codec lz4, reduction "), "{stderr}");
}

#[test]
fn t12_feature_flags_switch_compression_off_per_node() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let server = Server::start(dst.path(), &["--insecure"]);
    let text = log_file(src.path(), "flagged.log", 2 * MIB);
    let flags = src.path().join("flags.json");
    let run = |doc: &str| {
        std::fs::write(&flags, doc).unwrap();
        let flags = flags.display().to_string();
        send(
            &text,
            server.addr,
            &[
                "--insecure",
                "--compress",
                "lz4",
                "--flags",
                &flags,
                "--node-id",
                "n1",
            ],
        )
    };
    assert_eq!(
        run(r#"{"hde": {"enabled": false}}"#).summary()["hde"],
        false
    );
    assert_eq!(run(r#"{"kill_switch": true}"#).summary()["hde"], false);
    assert_eq!(
        run(r#"{"hde": {"rollout_percent": 100}}"#).summary()["hde"],
        true
    );
    let bad = run(r#"{"hde": {"enabled": "yes"}}"#);
    assert_eq!(bad.status, 1);
    assert!(bad.stderr.contains("hde.enabled"), "{}", bad.stderr);
}

#[test]
fn t13_a_receiver_with_a_content_store_takes_known_segments_by_reference() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let store = dst.path().join(".store");
    let store_arg = store.display().to_string();
    let server = Server::start(dst.path(), &["--insecure", "--store", &store_arg]);
    let v1 = write_file(src.path(), "disk-v1.img", 12 * MIB, 31);
    let first = send(&v1, server.addr, &["--insecure"]).summary();
    assert_eq!(first["dedup"], true, "{first}");
    assert_eq!(first["ref_bytes"], 0, "{first}");

    // A later image: 64 KiB rewritten in the middle.
    let mut bytes = std::fs::read(&v1).unwrap();
    for b in &mut bytes[6 * MIB..6 * MIB + 64 * KIB] {
        *b = b.wrapping_add(1);
    }
    let v2 = src.path().join("disk-v2.img");
    std::fs::write(&v2, &bytes).unwrap();
    let second = send(&v2, server.addr, &["--insecure"]).summary();
    assert_eq!(file_hash(&dst.path().join("disk-v2.img")), file_hash(&v2));
    let wire = second["wire_bytes"].as_u64().unwrap();
    assert!(wire < 256 * KIB as u64, "{second}");
    assert!(
        second["ref_bytes"].as_u64().unwrap() > 11 * MIB as u64,
        "{second}"
    );

    // Asked not to, the sender sends everything.
    let off = send(
        &v2,
        server.addr,
        &["--insecure", "--dedup", "off", "--name", "v3"],
    )
    .summary();
    assert_eq!(off["dedup"], false, "{off}");
    assert!(
        off["wire_bytes"].as_u64().unwrap() >= 12 * MIB as u64,
        "{off}"
    );
    // The store survives the server: a new one starts with what the old one held.
    drop(server);
    let server = Server::start(dst.path(), &["--insecure", "--store", &store_arg]);
    let again = send(&v2, server.addr, &["--insecure", "--name", "v4"]).summary();
    assert!(
        again["ref_bytes"].as_u64().unwrap() > 11 * MIB as u64,
        "{again}"
    );
}

#[test]
fn t14_a_content_store_killed_mid_write_reopens_usable() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let store = dst.path().join(".store");
    let store_arg = store.display().to_string();
    let path = write_file(src.path(), "vm.mem", 48 * MIB, 14);
    let mut server = Server::start(dst.path(), &["--insecure", "--store", &store_arg]);
    let sender = slow_sender(&path, server.addr);
    let stored = || {
        std::fs::read_dir(&store).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
    };
    wait_until(
        Duration::from_secs(30),
        "4 MiB in the content store",
        || stored() >= 4 * MIB as u64,
    );
    // Killed while segments are being appended.
    server.kill9();
    let out = fixtures::wait_bounded(sender, Duration::from_secs(60));
    assert_eq!(out.status, 3, "{}", out.stderr);

    // The store opens again, and what it kept is used: the same file goes partly by reference.
    let server = Server::start(dst.path(), &["--insecure", "--store", &store_arg]);
    let s = send(&path, server.addr, &["--insecure", "--name", "again"]).summary();
    assert_eq!(file_hash(&dst.path().join("again")), file_hash(&path));
    let refs = s["ref_bytes"].as_u64().unwrap();
    assert!(refs >= 3 * MIB as u64 && refs < 48 * MIB as u64, "{s}");
}
