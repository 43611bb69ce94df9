//! Parsing of the lines QEMU sends on a QMP socket into typed messages.
//!
//! Every line is untrusted input: anything that is not one of the four shapes below is a
//! [`MessageError`], never a panic.
//!
//! ```text
//! greeting  {"QMP": {"version": {"qemu": {"major": 10, "minor": 0, "micro": 2}, "package": ".."},
//!                    "capabilities": ["oob"]}}
//! return    {"return": <any>, "id": <id>}
//! error     {"error": {"class": "GenericError", "desc": ".."}, "id": <id>}
//! event     {"event": "STOP", "data": {..}, "timestamp": {"seconds": 1, "microseconds": 2}}
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::{QemuVersion, QmpEvent};

/// One message from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The greeting QEMU sends when a client connects.
    Greeting {
        /// QEMU's version.
        version: QemuVersion,
        /// Capabilities QEMU offers (`oob`).
        capabilities: Vec<String>,
    },
    /// A successful reply.
    Return {
        /// The request id echoed back; `None` when absent or not one of ours (not a `u64`).
        id: Option<u64>,
        /// The returned value.
        value: Value,
    },
    /// A failed reply.
    Error {
        /// As for [`Message::Return`].
        id: Option<u64>,
        /// QMP error class, e.g. `GenericError`, `CommandNotFound`.
        class: String,
        /// Human-readable description.
        desc: String,
    },
    /// An asynchronous event.
    Event(QmpEvent),
}

/// Why a line is not a QMP message.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The line is not JSON.
    #[error("not JSON")]
    Json(#[source] serde_json::Error),
    /// The line is JSON but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// The object has none of `QMP`, `return`, `error`, `event`.
    #[error("not a QMP message")]
    UnknownShape {
        /// The request id, when one could be read: the reply was meant for that request.
        id: Option<u64>,
    },
    /// A known message with a field of the wrong type or missing.
    #[error("malformed `{field}` in a QMP message")]
    BadField {
        /// The field at fault.
        field: &'static str,
        /// As for [`MessageError::UnknownShape`].
        id: Option<u64>,
    },
}

impl MessageError {
    /// The id of the request the bad line answered, when it could be read.
    pub(crate) fn id(&self) -> Option<u64> {
        match self {
            Self::Json(_) | Self::NotAnObject => None,
            Self::UnknownShape { id } | Self::BadField { id, .. } => *id,
        }
    }
}

/// Parses one line (without its newline; surrounding whitespace is ignored).
///
/// Public so that the fuzz targets can reach it; the client is its only other caller.
///
/// # Errors
/// [`MessageError`] when the line is not JSON, not an object, or not one of the four shapes.
pub fn parse(line: &[u8]) -> Result<Message, MessageError> {
    let value: Value = serde_json::from_slice(line).map_err(MessageError::Json)?;
    let Value::Object(mut obj) = value else {
        return Err(MessageError::NotAnObject);
    };
    let id = obj.get("id").and_then(Value::as_u64);

    if let Some(value) = obj.remove("return") {
        return Ok(Message::Return { id, value });
    }
    if let Some(error) = obj.get("error") {
        let bad = |field| MessageError::BadField { field, id };
        let error = error.as_object().ok_or_else(|| bad("error"))?;
        let class = string_field(error, "class").ok_or_else(|| bad("error.class"))?;
        // N.B. `desc` is documented as always present, but a missing one is no reason to lose
        // the class: the caller still learns the command failed.
        let desc = string_field(error, "desc").unwrap_or_default();
        return Ok(Message::Error { id, class, desc });
    }
    if let Some(name) = obj.get("event") {
        let name = name
            .as_str()
            .ok_or(MessageError::BadField {
                field: "event",
                id: None,
            })?
            .to_owned();
        let data = obj.remove("data").unwrap_or(Value::Null);
        let timestamp = obj.get("timestamp").and_then(parse_timestamp);
        return Ok(Message::Event(QmpEvent {
            name,
            data,
            timestamp,
        }));
    }
    if let Some(greeting) = obj.get("QMP") {
        return parse_greeting(greeting);
    }
    Err(MessageError::UnknownShape { id })
}

fn parse_greeting(greeting: &Value) -> Result<Message, MessageError> {
    let bad = |field| MessageError::BadField { field, id: None };
    let version = greeting.get("version").ok_or_else(|| bad("QMP.version"))?;
    let qemu = version.get("qemu").ok_or_else(|| bad("QMP.version.qemu"))?;
    let number = |name, field| {
        qemu.get(name)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(field))
    };
    let version = QemuVersion {
        major: number("major", "QMP.version.qemu.major")?,
        minor: number("minor", "QMP.version.qemu.minor")?,
        micro: number("micro", "QMP.version.qemu.micro")?,
        package: version
            .get("package")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    };
    let capabilities = greeting
        .get("capabilities")
        .and_then(Value::as_array)
        .map(|caps| {
            caps.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Message::Greeting {
        version,
        capabilities,
    })
}

fn string_field(obj: &Map<String, Value>, name: &str) -> Option<String> {
    obj.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// QEMU's `{"seconds": s, "microseconds": us}`; `None` for negative or out-of-range values
/// (QEMU sends -1 when it could not read the clock).
fn parse_timestamp(ts: &Value) -> Option<SystemTime> {
    let seconds = ts.get("seconds")?.as_u64()?;
    let micros = ts.get("microseconds")?.as_u64()?;
    if micros >= 1_000_000 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds) + Duration::from_micros(micros))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_str(line: &str) -> Result<Message, MessageError> {
        parse(line.as_bytes())
    }

    #[test]
    fn greeting_gives_version_and_capabilities() {
        let line = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2"}, "capabilities": ["oob"]}}"#;
        let msg = parse_str(line).unwrap();
        assert_eq!(
            msg,
            Message::Greeting {
                version: QemuVersion {
                    major: 10,
                    minor: 0,
                    micro: 2,
                    package: "Debian 1:10.0.2".to_owned(),
                },
                capabilities: vec!["oob".to_owned()],
            }
        );
    }

    #[test]
    fn return_keeps_value_and_id() {
        let msg = parse_str(r#"{"return": {"running": true}, "id": 7}"#).unwrap();
        assert_eq!(
            msg,
            Message::Return {
                id: Some(7),
                value: json!({"running": true})
            }
        );
    }

    #[test]
    fn return_with_a_foreign_id_has_no_id() {
        let msg = parse_str(r#"{"return": {}, "id": "abc"}"#).unwrap();
        assert!(matches!(msg, Message::Return { id: None, .. }));
        let msg = parse_str(r#"{"return": {}, "id": -3}"#).unwrap();
        assert!(matches!(msg, Message::Return { id: None, .. }));
    }

    #[test]
    fn error_gives_class_and_desc() {
        let msg = parse_str(r#"{"error": {"class": "CommandNotFound", "desc": "nope"}, "id": 3}"#)
            .unwrap();
        assert_eq!(
            msg,
            Message::Error {
                id: Some(3),
                class: "CommandNotFound".to_owned(),
                desc: "nope".to_owned()
            }
        );
    }

    #[test]
    fn error_without_class_is_malformed_but_keeps_the_id() {
        let err = parse_str(r#"{"error": {"desc": "x"}, "id": 4}"#).unwrap_err();
        assert!(matches!(
            err,
            MessageError::BadField {
                field: "error.class",
                id: Some(4)
            }
        ));
        assert_eq!(err.id(), Some(4));
    }

    #[test]
    fn event_gives_name_data_and_timestamp() {
        let msg = parse_str(
            r#"{"timestamp": {"seconds": 1700000000, "microseconds": 250}, "event": "STOP"}"#,
        )
        .unwrap();
        let Message::Event(event) = msg else {
            panic!("not an event: {msg:?}")
        };
        assert_eq!(event.name, "STOP");
        assert_eq!(event.data, Value::Null);
        assert_eq!(
            event.timestamp,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_micros(250))
        );
    }

    #[test]
    fn event_with_bad_timestamp_has_none() {
        for ts in [
            r#"{"seconds": -1, "microseconds": -1}"#,
            r#"{"seconds": 1, "microseconds": 1000000}"#,
            r#""yesterday""#,
            r#"{"seconds": 18446744073709551615, "microseconds": 0}"#,
        ] {
            let line =
                format!(r#"{{"event": "RESET", "data": {{"guest": true}}, "timestamp": {ts}}}"#);
            let Message::Event(event) = parse_str(&line).unwrap() else {
                panic!("not an event")
            };
            assert_eq!(event.timestamp, None, "{ts}");
            assert_eq!(event.data, json!({"guest": true}));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            b"",
            b"   ",
            b"{",
            b"}",
            b"null",
            b"[1,2,3]",
            b"\"QMP\"",
            b"{\"QMP\": 1}",
            b"{\"QMP\": {\"version\": {\"qemu\": {\"major\": -1, \"minor\": 0, \"micro\": 0}}}}",
            b"{\"QMP\": {\"version\": {\"qemu\": {\"major\": 99999999999, \"minor\": 0, \"micro\": 0}}}}",
            b"{\"event\": 5}",
            b"{\"error\": \"boom\"}",
            b"{\"error\": {\"class\": 1}}",
            b"{\"id\": 9}",
            b"{\"hello\": \"world\"}",
            b"\xff\xfe\x00garbage",
            b"{\"return\": {\"a\": [1, 2, {\"b\": ",
            b"1e999999",
        ];
        for case in cases {
            assert!(parse(case).is_err(), "{:?}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn unknown_shape_with_an_id_reports_the_id() {
        let err = parse_str(r#"{"id": 12, "surprise": true}"#).unwrap_err();
        assert_eq!(err.id(), Some(12));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let line = "[".repeat(100_000);
        assert!(parse(line.as_bytes()).is_err());
    }
}
