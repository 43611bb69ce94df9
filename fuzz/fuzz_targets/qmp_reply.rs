//! Feeds untrusted bytes to the parser of the lines QEMU sends on a QMP socket.
//!
//! Any input is read as one line, then split on newlines as the client's line reader would
//! and each piece read again. No line may panic the parser, and what it makes of a line must
//! agree with the JSON in it: the reply id is the `id` member when that is a `u64`, and a
//! message's kind is the first of `return`, `error`, `event`, `QMP` present.

#![no_main]

use libfuzzer_sys::fuzz_target;
use novacron_qemu::qmp::message::{Message, MessageError, parse};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.contains(&b'\n') {
        for line in data.split(|&b| b == b'\n') {
            check(line);
        }
    }
});

/// Parses `line` and checks the result against a plain JSON reading of it.
fn check(line: &[u8]) {
    let parsed = parse(line);
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(line) else {
        assert!(
            parsed.is_err(),
            "a line that is not a JSON object parsed: {parsed:?}"
        );
        return;
    };
    let id = obj.get("id").and_then(Value::as_u64);
    match parsed {
        Ok(Message::Return { id: got, value }) => {
            assert_eq!(got, id);
            assert_eq!(Some(&value), obj.get("return"));
        }
        Ok(Message::Error { id: got, class, .. }) => {
            assert!(!obj.contains_key("return"));
            assert_eq!(got, id);
            let want = obj.get("error").and_then(|e| e.get("class"));
            assert_eq!(want.and_then(Value::as_str), Some(class.as_str()));
        }
        Ok(Message::Event(event)) => {
            assert!(!obj.contains_key("return") && !obj.contains_key("error"));
            assert_eq!(
                obj.get("event").and_then(Value::as_str),
                Some(event.name.as_str())
            );
        }
        Ok(Message::Greeting { .. }) => {
            assert!(
                !["return", "error", "event"]
                    .iter()
                    .any(|k| obj.contains_key(*k))
            );
            assert!(obj.contains_key("QMP"));
        }
        Err(MessageError::Json(_) | MessageError::NotAnObject) => {
            panic!("a JSON object was refused as not one: {parsed:?}")
        }
        Err(MessageError::UnknownShape { id: got }) => {
            assert!(
                !["return", "error", "event", "QMP"]
                    .iter()
                    .any(|k| obj.contains_key(*k))
            );
            assert_eq!(got, id);
        }
        Err(MessageError::BadField { .. }) => {
            assert!(!obj.contains_key("return"));
        }
    }
}
