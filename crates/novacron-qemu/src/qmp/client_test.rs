//! Tests of [`QmpClient`] against a scripted fake QEMU.

use std::os::fd::AsFd;
use std::time::Duration;

use serde_json::{Value, json};

use super::testing::{FakeQemu, GREETING, connected};
use super::{DisconnectReason, QmpClient, QmpError, QmpOptions};

fn quick() -> QmpOptions {
    QmpOptions {
        timeout: Duration::from_millis(500),
        ..QmpOptions::default()
    }
}

#[tokio::test]
async fn handshake_exposes_qemu_version_and_capabilities() {
    let (client, _fake) = connected(QmpOptions::default()).await;
    assert_eq!(client.version().major, 10);
    assert_eq!(client.version().to_string(), "10.0.2 (Debian 1:10.0.2)");
    assert_eq!(client.capabilities(), ["oob"]);
    assert_eq!(client.peer_pid(), Some(std::process::id()));
    assert_eq!(client.disconnect_reason(), None);
}

#[tokio::test]
async fn request_carries_command_arguments_and_id() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let call = client.execute("human-monitor-command", json!({"command-line": "info"}));
    let serve = async {
        let request = fake.recv().await.unwrap();
        assert_eq!(request["execute"], "human-monitor-command");
        assert_eq!(request["arguments"], json!({"command-line": "info"}));
        assert!(request["id"].is_u64());
        fake.reply(&request["id"], json!("ok")).await;
    };
    let (result, ()) = tokio::join!(call, serve);
    assert_eq!(result.unwrap(), json!("ok"));
}

#[tokio::test]
async fn command_without_arguments_sends_no_arguments_member() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let serve = async {
        let request = fake.recv().await.unwrap();
        assert!(request.get("arguments").is_none(), "{request}");
        fake.reply(&request["id"], json!({})).await;
    };
    let (result, ()) = tokio::join!(client.execute("stop", Value::Null), serve);
    result.unwrap();
}

#[tokio::test]
async fn replies_out_of_order_reach_their_own_callers() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let first = client.execute("first", Value::Null);
    let second = client.execute("second", Value::Null);
    let serve = async {
        let a = fake.recv().await.unwrap();
        let b = fake.recv().await.unwrap();
        // Answer in reverse order, each with its own command name.
        fake.reply(&b["id"], b["execute"].clone()).await;
        fake.reply(&a["id"], a["execute"].clone()).await;
    };
    let (first, second, ()) = tokio::join!(first, second, serve);
    assert_eq!(first.unwrap(), json!("first"));
    assert_eq!(second.unwrap(), json!("second"));
}

#[tokio::test]
async fn error_reply_is_typed_with_class_and_desc() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let serve = async {
        let id = fake.expect("nope").await;
        fake.reply_error(
            &id,
            "CommandNotFound",
            "The command nope has not been found",
        )
        .await;
    };
    let (result, ()) = tokio::join!(client.execute("nope", Value::Null), serve);
    let err = result.unwrap_err();
    assert_eq!(err.class(), Some("CommandNotFound"));
    match err {
        QmpError::Command { class, desc } => {
            assert_eq!(class, "CommandNotFound");
            assert_eq!(desc, "The command nope has not been found");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn events_between_replies_go_to_subscribers() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let mut events = client.events();
    let serve = async {
        let id = fake.expect("stop").await;
        fake.send_raw(
            r#"{"timestamp": {"seconds": 1700000000, "microseconds": 5}, "event": "STOP"}"#,
        )
        .await;
        fake.reply(&id, json!({})).await;
    };
    let (result, ()) = tokio::join!(client.stop(), serve);
    result.unwrap();
    let event = events.recv().await.unwrap();
    assert_eq!(event.name, "STOP");
    assert!(event.timestamp.is_some());
}

#[tokio::test]
async fn garbage_lines_are_skipped_and_the_session_goes_on() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let serve = async {
        let id = fake.expect("query-status").await;
        for junk in [
            "",
            "not json at all",
            "[1,2,3]",
            "{\"return\": {}}",
            "{\"return\": {}, \"id\": 9999}",
            "{\"event\": 17}",
            "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 1, \"minor\": 2, \"micro\": 3}}}}",
            "\u{fffd}\u{0}",
        ] {
            fake.send_raw(junk).await;
        }
        fake.reply(&id, json!({"running": true, "status": "running"}))
            .await;
    };
    let (status, ()) = tokio::join!(client.query_status(), serve);
    assert!(status.unwrap().running);
    assert_eq!(client.disconnect_reason(), None);
}

#[tokio::test]
async fn malformed_reply_to_our_request_fails_that_request() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let serve = async {
        let id = fake.expect("cont").await;
        fake.send(&json!({"error": "boom", "id": id})).await;
    };
    let (result, ()) = tokio::join!(client.cont(), serve);
    assert!(
        matches!(result, Err(QmpError::MalformedReply(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn missing_reply_times_out_and_a_late_reply_is_ignored() {
    let (client, mut fake) = connected(quick()).await;
    let err = client.execute("slow", Value::Null).await.unwrap_err();
    assert!(
        matches!(&err, QmpError::Timeout { step, .. } if step == "reply to `slow`"),
        "{err:?}"
    );
    // The late reply arrives after the caller gave up; the next command still works.
    let id = fake.expect("slow").await;
    fake.reply(&id, json!("late")).await;
    let serve = async {
        let id = fake.expect("next").await;
        fake.reply(&id, json!("on time")).await;
    };
    let (result, ()) = tokio::join!(client.execute("next", Value::Null), serve);
    assert_eq!(result.unwrap(), json!("on time"));
}

#[tokio::test]
async fn hang_up_fails_pending_and_later_commands() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let serve = async {
        fake.expect("quit-ish").await;
        fake.hang_up();
    };
    let (result, ()) = tokio::join!(client.execute("quit-ish", Value::Null), serve);
    assert!(
        matches!(result, Err(QmpError::Disconnected(DisconnectReason::Eof))),
        "{result:?}"
    );
    assert_eq!(client.closed().await, DisconnectReason::Eof);
    let again = client.execute("query-status", Value::Null).await;
    assert!(matches!(
        again,
        Err(QmpError::Disconnected(DisconnectReason::Eof))
    ));
}

#[tokio::test]
async fn a_reset_from_qemu_counts_as_its_exit() {
    let (client, fake) = connected(QmpOptions::default()).await;
    let (result, ()) = tokio::join!(
        client.execute("query-status", Value::Null),
        fake.hang_up_unread()
    );
    assert!(
        matches!(result, Err(QmpError::Disconnected(DisconnectReason::Eof))),
        "{result:?}"
    );
    assert_eq!(client.closed().await, DisconnectReason::Eof);
}

#[tokio::test]
async fn quit_counts_a_hang_up_as_success() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let serve = async {
        fake.expect("quit").await;
        fake.hang_up();
    };
    let (result, ()) = tokio::join!(client.quit(), serve);
    result.unwrap();
}

#[tokio::test]
async fn a_line_over_the_limit_closes_the_session() {
    let options = QmpOptions {
        max_line: 1024,
        ..QmpOptions::default()
    };
    let (client, mut fake) = connected(options).await;
    let serve = async {
        let id = fake.expect("big").await;
        let huge = "x".repeat(4096);
        fake.reply(&id, json!(huge)).await;
        fake
    };
    let (result, _fake) = tokio::join!(client.execute("big", Value::Null), serve);
    assert!(
        matches!(
            result,
            Err(QmpError::Disconnected(DisconnectReason::LineTooLong {
                limit: 1024
            }))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn greeting_garbage_is_a_bad_greeting() {
    let (stream, mut fake) = FakeQemu::pair();
    fake.send_raw("hello, I am not QEMU").await;
    let err = QmpClient::from_stream(stream, &quick()).await.unwrap_err();
    assert!(matches!(err, QmpError::BadGreeting(_)), "{err:?}");
}

#[tokio::test]
async fn a_reply_instead_of_a_greeting_is_refused() {
    let (stream, mut fake) = FakeQemu::pair();
    fake.send_raw(r#"{"return": {}}"#).await;
    let err = QmpClient::from_stream(stream, &quick()).await.unwrap_err();
    assert!(matches!(err, QmpError::NotAGreeting), "{err:?}");
}

#[tokio::test]
async fn hang_up_before_greeting_is_no_greeting() {
    let (stream, fake) = FakeQemu::pair();
    fake.hang_up();
    let err = QmpClient::from_stream(stream, &quick()).await.unwrap_err();
    assert!(matches!(err, QmpError::NoGreeting), "{err:?}");
}

#[tokio::test]
async fn silent_peer_times_out_waiting_for_the_greeting() {
    let (stream, _fake) = FakeQemu::pair();
    let err = QmpClient::from_stream(stream, &quick()).await.unwrap_err();
    assert!(
        matches!(&err, QmpError::Timeout { step, .. } if step == "greeting"),
        "{err:?}"
    );
}

#[tokio::test]
async fn refused_capabilities_is_a_negotiation_error() {
    let (stream, mut fake) = FakeQemu::pair();
    let serve = async {
        fake.send_raw(GREETING).await;
        let id = fake.expect("qmp_capabilities").await;
        fake.reply_error(&id, "GenericError", "no").await;
    };
    let options = quick();
    let (result, ()) = tokio::join!(QmpClient::from_stream(stream, &options), serve);
    let err = result.unwrap_err();
    assert!(
        matches!(&err, QmpError::Negotiate(inner) if inner.class() == Some("GenericError")),
        "{err:?}"
    );
}

#[tokio::test]
async fn connect_to_a_missing_socket_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sock");
    let err = QmpClient::connect(&path, &quick()).await.unwrap_err();
    assert!(
        matches!(&err, QmpError::Connect { path: p, .. } if *p == path),
        "{err:?}"
    );
}

#[tokio::test]
async fn connect_over_a_listening_socket_completes_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let serve = async {
        let (stream, _) = listener.accept().await.unwrap();
        let mut fake = FakeQemu::from_stream(stream);
        fake.handshake().await;
        fake
    };
    let options = quick();
    let (client, _fake) = tokio::join!(QmpClient::connect(&path, &options), serve);
    assert_eq!(client.unwrap().version().minor, 0);
}

#[tokio::test]
async fn send_fd_attaches_the_descriptor_to_getfd() {
    use std::io::Read;
    use std::os::unix::net::UnixStream as StdStream;

    let (client_std, server) = StdStream::pair().unwrap();
    client_std.set_nonblocking(true).unwrap();
    let stream = tokio::net::UnixStream::from_std(client_std).unwrap();

    // QEMU's side, blocking, on its own thread: recvmsg is how QEMU receives descriptors.
    let qemu = std::thread::spawn(move || {
        use std::io::Write;
        let mut server = server;
        writeln!(server, "{GREETING}").unwrap();
        let mut buf = [0u8; 4096];
        let n = server.read(&mut buf).unwrap();
        let caps: Value = serde_json::from_slice(&buf[..n]).unwrap();
        writeln!(server, "{}", json!({"return": {}, "id": caps["id"]})).unwrap();

        let (n, fd) = super::fd::testing::recv_with_fd(server.as_fd(), &mut buf).unwrap();
        let request: Value = serde_json::from_slice(&buf[..n]).unwrap();
        assert_eq!(request["execute"], "getfd");
        assert_eq!(request["arguments"]["fdname"], "migration");
        writeln!(server, "{}", json!({"return": {}, "id": request["id"]})).unwrap();
        fd.expect("getfd carries a descriptor")
    });

    let client = QmpClient::from_stream(stream, &QmpOptions::default())
        .await
        .unwrap();
    let (mut ours, theirs) = StdStream::pair().unwrap();
    client.send_fd("migration", theirs.as_fd()).await.unwrap();

    // The received descriptor is the same socket: what QEMU writes, we read.
    let received = tokio::task::spawn_blocking(move || qemu.join().unwrap())
        .await
        .unwrap();
    drop(theirs);
    let mut received = StdStream::from(received);
    std::io::Write::write_all(&mut received, b"stream").unwrap();
    drop(received);
    let mut out = String::new();
    ours.read_to_string(&mut out).unwrap();
    assert_eq!(out, "stream");
}
