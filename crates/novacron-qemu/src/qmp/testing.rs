//! A scripted stand-in for QEMU's side of a QMP socket, for unit tests.

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::line::LineReader;
use super::{QmpClient, QmpOptions};

/// The greeting QEMU 10.0.2 sends.
pub(crate) const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2"}, "capabilities": ["oob"]}}"#;

/// QEMU's end of the socket, driven line by line by the test.
pub(crate) struct FakeQemu {
    lines: LineReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl FakeQemu {
    /// A connected pair: the client's stream and the fake.
    pub(crate) fn pair() -> (UnixStream, Self) {
        let (client, server) = UnixStream::pair().unwrap();
        (client, Self::from_stream(server))
    }

    /// The fake over QEMU's end of an accepted or paired stream.
    pub(crate) fn from_stream(stream: UnixStream) -> Self {
        let (read, write) = stream.into_split();
        Self {
            lines: LineReader::new(read, 1 << 20),
            write,
        }
    }

    /// Sends `line` and a newline, as is.
    pub(crate) async fn send_raw(&mut self, line: &str) {
        self.write.write_all(line.as_bytes()).await.unwrap();
        self.write.write_all(b"\r\n").await.unwrap();
    }

    /// Sends a JSON value as one line.
    pub(crate) async fn send(&mut self, value: &Value) {
        self.send_raw(&value.to_string()).await;
    }

    /// Sends event `name` with `data`, as QEMU does (with a timestamp).
    pub(crate) async fn send_event(&mut self, name: &str, data: Value) {
        self.send(&serde_json::json!({
            "event": name,
            "data": data,
            "timestamp": {"seconds": 1, "microseconds": 0},
        }))
        .await;
    }

    /// Reads the next request; `None` at end of stream.
    pub(crate) async fn recv(&mut self) -> Option<Value> {
        let line = self.lines.read_line().await.unwrap()?;
        Some(serde_json::from_slice(&line).unwrap())
    }

    /// Reads the next request and checks that it executes `command`; returns its id.
    pub(crate) async fn expect(&mut self, command: &str) -> Value {
        let request = self.recv().await.expect("a request");
        assert_eq!(request["execute"], command, "{request}");
        request["id"].clone()
    }

    /// Answers request `id` with `value`.
    pub(crate) async fn reply(&mut self, id: &Value, value: Value) {
        self.send(&json!({"return": value, "id": id})).await;
    }

    /// Answers request `id` with a QMP error.
    pub(crate) async fn reply_error(&mut self, id: &Value, class: &str, desc: &str) {
        self.send(&json!({"error": {"class": class, "desc": desc}, "id": id}))
            .await;
    }

    /// Greets and accepts `qmp_capabilities`.
    pub(crate) async fn handshake(&mut self) {
        self.send_raw(GREETING).await;
        let id = self.expect("qmp_capabilities").await;
        self.reply(&id, json!({})).await;
    }

    /// Closes QEMU's end, as QEMU exiting does.
    pub(crate) fn hang_up(self) {
        drop(self);
    }

    /// Waits until the client has written something, then closes QEMU's end without reading
    /// it, as QEMU exiting with a command unread does: the kernel resets the connection.
    pub(crate) async fn hang_up_unread(self) {
        self.lines.get_ref().readable().await.unwrap();
        drop(self);
    }
}

/// A client connected to a fake that has completed the handshake.
pub(crate) async fn connected(options: QmpOptions) -> (QmpClient, FakeQemu) {
    let (stream, mut fake) = FakeQemu::pair();
    let (client, ()) = tokio::join!(QmpClient::from_stream(stream, &options), fake.handshake());
    (client.unwrap(), fake)
}
