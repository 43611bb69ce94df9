//! Control payload tests: `Hello`, `HelloAck` and `ErrorMessage` round-trip on their own and
//! inside frames, and every malformed record is rejected.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::control::{MAX_MESSAGE_LEN, MAX_NAME_LEN};
use super::*;

fn hello() -> Hello {
    Hello {
        mode: HelloMode::Open,
        conn_index: 0,
        total_len: Some(1 << 30),
        chunk_size: 1 << 20,
        name: "disk.qcow2".to_owned(),
        features: 0,
    }
}

fn hello_ack() -> HelloAck {
    HelloAck {
        start_offset: 0,
        window: 64 << 20,
        max_streams: 8,
        features: 0,
    }
}

fn error_message() -> ErrorMessage {
    ErrorMessage {
        code: ErrorCode::Storage,
        message: "no space left on device".to_owned(),
    }
}

/// A `Hello` record laid out by hand, so fields the encoder would never write can be tested.
fn raw_hello(mode: u8, chunk_size: u32, name: &[u8], name_len: u16) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(mode);
    out.put_u16(0);
    out.put_u64(u64::MAX);
    out.put_u32(chunk_size);
    out.put_u16(name_len);
    out.put_slice(name);
    out.to_vec()
}

/// The `(what, reason)` of a [`WireError::MalformedControl`], or a failure for anything else.
fn malformed<T: std::fmt::Debug>(result: Result<T, WireError>) -> (&'static str, &'static str) {
    match result {
        Err(WireError::MalformedControl { what, reason }) => (what, reason),
        other => panic!("expected MalformedControl, got {other:?}"),
    }
}

/// Sends `payload` as a control frame of `kind` through `write_frame` and `read_frame`, and
/// returns the payload that arrived.
fn through_a_connection(kind: FrameKind, payload: Bytes) -> Bytes {
    let frame = Frame::control(kind, SessionId([9; 16]), 0, payload).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            let (mut tx, mut rx) = tokio::io::duplex(256);
            let send = async {
                write_frame(&mut tx, &frame).await.unwrap();
                drop(tx);
            };
            let (_, received) = tokio::join!(send, read_frame(&mut rx));
            let received = received.unwrap().unwrap();
            assert_eq!(received, frame);
            received.payload
        })
}

fn hello_mode() -> impl Strategy<Value = HelloMode> {
    prop_oneof![
        Just(HelloMode::Open),
        Just(HelloMode::Join),
        Just(HelloMode::Resume),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::Other),
        Just(ErrorCode::Protocol),
        Just(ErrorCode::BadName),
        Just(ErrorCode::Storage),
        Just(ErrorCode::Integrity),
        Just(ErrorCode::NoSession),
        Just(ErrorCode::Busy),
        Just(ErrorCode::Aborted),
    ]
}

/// A string of at most `max_bytes` UTF-8 bytes, with characters of every width.
fn string_within(max_bytes: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..=max_bytes / 4 + 8).prop_map(move |chars| {
        let mut out = String::new();
        for c in chars {
            if out.len() + c.len_utf8() > max_bytes {
                break;
            }
            out.push(c);
        }
        out
    })
}

fn any_hello() -> impl Strategy<Value = Hello> {
    (
        hello_mode(),
        any::<u16>(),
        // u64::MAX is the wire's "unknown length", so it cannot be a known length.
        proptest::option::of(0..u64::MAX),
        1..=MAX_PAYLOAD,
        string_within(MAX_NAME_LEN),
        any::<u32>(),
    )
        .prop_map(
            |(mode, conn_index, total_len, chunk_size, name, features)| Hello {
                mode,
                conn_index,
                total_len,
                chunk_size,
                name,
                features,
            },
        )
}

fn any_hello_ack() -> impl Strategy<Value = HelloAck> {
    (any::<u64>(), 1..=u64::MAX, 1..=u16::MAX, any::<u32>()).prop_map(
        |(start_offset, window, max_streams, features)| HelloAck {
            start_offset,
            window,
            max_streams,
            features,
        },
    )
}

fn any_error_message() -> impl Strategy<Value = ErrorMessage> {
    (error_code(), string_within(MAX_MESSAGE_LEN))
        .prop_map(|(code, message)| ErrorMessage { code, message })
}

#[test]
fn hello_layout_is_big_endian() {
    let bytes = hello().encode();
    let mut expected = vec![1, 0, 0];
    expected.extend_from_slice(&(1u64 << 30).to_be_bytes());
    expected.extend_from_slice(&(1u32 << 20).to_be_bytes());
    expected.extend_from_slice(&10u16.to_be_bytes());
    expected.extend_from_slice(b"disk.qcow2");
    assert_eq!(&bytes[..], &expected[..]);
}

#[test]
fn hello_ack_and_error_layouts_are_big_endian() {
    let mut expected = Vec::new();
    expected.extend_from_slice(&0u64.to_be_bytes());
    expected.extend_from_slice(&(64u64 << 20).to_be_bytes());
    expected.extend_from_slice(&8u16.to_be_bytes());
    assert_eq!(&hello_ack().encode()[..], &expected[..]);

    let mut expected = vec![0, 3, 0, 23];
    expected.extend_from_slice(b"no space left on device");
    assert_eq!(&error_message().encode()[..], &expected[..]);
}

#[test]
fn features_are_an_optional_trailing_field() {
    // Absent: the original record, what an old peer sends and expects.
    assert_eq!(Hello::decode(&hello().encode()).unwrap().features, 0);
    assert_eq!(hello_ack().encode().len(), 18);
    let asked = Hello {
        features: FEATURE_HDE,
        ..hello()
    };
    let bytes = asked.encode();
    assert_eq!(bytes.len(), hello().encode().len() + 4);
    assert_eq!(&bytes[bytes.len() - 4..], &[0, 0, 0, 1]);
    assert_eq!(Hello::decode(&bytes).unwrap(), asked);
    let confirmed = HelloAck {
        features: FEATURE_HDE,
        ..hello_ack()
    };
    let bytes = confirmed.encode();
    assert_eq!(bytes.len(), 22);
    assert_eq!(HelloAck::decode(&bytes).unwrap(), confirmed);
    // Unknown bits decode (the receiver confirms only what it knows).
    let mut bytes = hello().encode().to_vec();
    bytes.extend_from_slice(&0x8000_0001u32.to_be_bytes());
    assert_eq!(Hello::decode(&bytes).unwrap().features, 0x8000_0001);
}

#[test]
fn a_present_but_zero_or_short_features_field_is_rejected() {
    let mut bytes = hello().encode().to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(
        malformed(Hello::decode(&bytes)),
        ("Hello", "features field present but zero")
    );
    let mut bytes = hello_ack().encode().to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(
        malformed(HelloAck::decode(&bytes)),
        ("HelloAck", "features field present but zero")
    );
    let mut bytes = hello().encode().to_vec();
    bytes.push(1);
    assert_eq!(malformed(Hello::decode(&bytes)), ("Hello", "too short"));
}

#[test]
fn unknown_total_length_is_all_ones_on_the_wire() {
    let pipe = Hello {
        total_len: None,
        ..hello()
    };
    let bytes = pipe.encode();
    assert_eq!(&bytes[3..11], &[0xff; 8]);
    assert_eq!(Hello::decode(&bytes).unwrap().total_len, None);
}

#[test]
fn name_of_255_bytes_is_accepted() {
    let name = "n".repeat(MAX_NAME_LEN);
    let bytes = raw_hello(1, 4096, name.as_bytes(), 255);
    assert_eq!(Hello::decode(&bytes).unwrap().name, name);
}

#[test]
fn name_over_255_bytes_is_rejected() {
    let name = "n".repeat(MAX_NAME_LEN + 1);
    let bytes = raw_hello(1, 4096, name.as_bytes(), 256);
    assert_eq!(
        malformed(Hello::decode(&bytes)),
        ("Hello", "string over its length limit")
    );
    // The declared length alone decides: a huge one fails before the bytes are looked for.
    let bytes = raw_hello(1, 4096, b"", u16::MAX);
    assert_eq!(
        malformed(Hello::decode(&bytes)),
        ("Hello", "string over its length limit")
    );
}

#[test]
fn encoder_cuts_an_over_long_name_at_a_character_boundary() {
    // 127 two-byte characters plus one more: 256 bytes, cut back to 254.
    let long = Hello {
        name: "é".repeat(128),
        ..hello()
    };
    let decoded = Hello::decode(&long.encode()).unwrap();
    assert_eq!(decoded.name, "é".repeat(127));
}

#[test]
fn non_utf8_name_is_rejected() {
    let bytes = raw_hello(1, 4096, &[b'a', 0xff, 0xfe], 3);
    assert_eq!(
        malformed(Hello::decode(&bytes)),
        ("Hello", "string is not UTF-8")
    );
}

#[test]
fn zero_chunk_size_is_rejected() {
    let bytes = raw_hello(1, 0, b"x", 1);
    assert_eq!(
        malformed(Hello::decode(&bytes)),
        ("Hello", "chunk size out of range")
    );
}

#[test]
fn chunk_size_over_the_data_limit_is_rejected() {
    assert!(Hello::decode(&raw_hello(1, MAX_PAYLOAD, b"x", 1)).is_ok());
    let bytes = raw_hello(1, MAX_PAYLOAD + 1, b"x", 1);
    assert_eq!(
        malformed(Hello::decode(&bytes)),
        ("Hello", "chunk size out of range")
    );
}

#[test]
fn unknown_hello_mode_is_rejected() {
    for mode in [0, 4, u8::MAX] {
        let bytes = raw_hello(mode, 4096, b"x", 1);
        assert_eq!(
            malformed(Hello::decode(&bytes)),
            ("Hello", "unknown mode"),
            "mode {mode}"
        );
    }
}

#[test]
fn trailing_bytes_are_rejected_in_every_control_payload() {
    // After the optional features field, nothing may follow.
    let mut bytes = hello().encode().to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 1, 0]);
    assert_eq!(
        malformed(Hello::decode(&bytes)),
        ("Hello", "trailing bytes")
    );

    let mut bytes = hello_ack().encode().to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 1, 0]);
    assert_eq!(
        malformed(HelloAck::decode(&bytes)),
        ("HelloAck", "trailing bytes")
    );

    let mut bytes = error_message().encode().to_vec();
    bytes.push(0);
    assert_eq!(
        malformed(ErrorMessage::decode(&bytes)),
        ("Error", "trailing bytes")
    );
}

#[test]
fn every_short_control_payload_is_too_short() {
    type Decode = fn(&[u8]) -> Result<(), WireError>;
    let records: [(&[u8], Decode); 3] = [
        (&hello().encode(), |b| Hello::decode(b).map(drop)),
        (&hello_ack().encode(), |b| HelloAck::decode(b).map(drop)),
        (&error_message().encode(), |b| {
            ErrorMessage::decode(b).map(drop)
        }),
    ];
    for (bytes, decode) in records {
        for cut in 0..bytes.len() {
            let (_, reason) = malformed(decode(&bytes[..cut]));
            assert_eq!(reason, "too short", "cut {cut} of {bytes:?}");
        }
    }
}

#[test]
fn zero_window_or_stream_limit_is_rejected() {
    for ack in [
        HelloAck {
            window: 0,
            ..hello_ack()
        },
        HelloAck {
            max_streams: 0,
            ..hello_ack()
        },
    ] {
        assert_eq!(
            malformed(HelloAck::decode(&ack.encode())),
            ("HelloAck", "zero window or stream limit")
        );
    }
}

#[test]
fn error_message_over_its_limit_is_rejected() {
    let mut bytes = vec![0, 1];
    bytes.extend_from_slice(&u16::try_from(MAX_MESSAGE_LEN + 1).unwrap().to_be_bytes());
    bytes.extend_from_slice(&vec![b'x'; MAX_MESSAGE_LEN + 1]);
    assert_eq!(
        malformed(ErrorMessage::decode(&bytes)),
        ("Error", "string over its length limit")
    );
}

#[test]
fn error_encoder_cuts_an_over_long_message() {
    let long = ErrorMessage {
        code: ErrorCode::Protocol,
        message: "x".repeat(MAX_MESSAGE_LEN + 100),
    };
    let decoded = ErrorMessage::decode(&long.encode()).unwrap();
    assert_eq!(decoded.message.len(), MAX_MESSAGE_LEN);
}

#[test]
fn non_utf8_error_message_is_rejected() {
    let bytes = [0, 1, 0, 2, 0xc3, 0x28];
    assert_eq!(
        malformed(ErrorMessage::decode(&bytes)),
        ("Error", "string is not UTF-8")
    );
}

#[test]
fn unknown_error_code_reads_as_other_and_keeps_its_message() {
    for code in [8u16, 0x100, u16::MAX] {
        let mut bytes = code.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 2, b'h', b'i']);
        let decoded = ErrorMessage::decode(&bytes).unwrap();
        assert_eq!(decoded.code, ErrorCode::Other, "code {code}");
        assert_eq!(decoded.message, "hi");
    }
}

#[test]
fn error_codes_have_their_documented_values() {
    let codes = [
        (ErrorCode::Other, 0u16),
        (ErrorCode::Protocol, 1),
        (ErrorCode::BadName, 2),
        (ErrorCode::Storage, 3),
        (ErrorCode::Integrity, 4),
        (ErrorCode::NoSession, 5),
        (ErrorCode::Busy, 6),
        (ErrorCode::Aborted, 7),
    ];
    for (code, value) in codes {
        let bytes = ErrorMessage {
            code,
            message: String::new(),
        }
        .encode();
        assert_eq!(&bytes[..2], &value.to_be_bytes(), "{code:?}");
        assert_eq!(ErrorMessage::decode(&bytes).unwrap().code, code);
    }
}

proptest! {
    #[test]
    fn any_hello_round_trips(hello in any_hello()) {
        let bytes = hello.encode();
        prop_assert_eq!(Hello::decode(&bytes).unwrap(), hello.clone());
        let received = through_a_connection(FrameKind::Hello, bytes);
        prop_assert_eq!(Hello::decode(&received).unwrap(), hello);
    }

    #[test]
    fn any_hello_ack_round_trips(ack in any_hello_ack()) {
        let bytes = ack.encode();
        prop_assert_eq!(HelloAck::decode(&bytes).unwrap(), ack);
        let received = through_a_connection(FrameKind::HelloAck, bytes);
        prop_assert_eq!(HelloAck::decode(&received).unwrap(), ack);
    }

    #[test]
    fn any_error_message_round_trips(error in any_error_message()) {
        let bytes = error.encode();
        prop_assert_eq!(ErrorMessage::decode(&bytes).unwrap(), error.clone());
        let received = through_a_connection(FrameKind::Error, bytes);
        prop_assert_eq!(ErrorMessage::decode(&received).unwrap(), error);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_control_decoders(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        // Whatever decodes must be the record's own encoding (for errors, up to the code).
        if let Ok(hello) = Hello::decode(&bytes) {
            prop_assert_eq!(&hello.encode()[..], &bytes[..]);
        }
        if let Ok(ack) = HelloAck::decode(&bytes) {
            prop_assert_eq!(&ack.encode()[..], &bytes[..]);
        }
        if let Ok(error) = ErrorMessage::decode(&bytes) {
            prop_assert_eq!(&error.encode()[2..], &bytes[2..]);
        }
    }

    #[test]
    fn hello_shaped_bytes_never_panic_and_decode_canonically(
        mode in 0u8..5,
        chunk_size in prop_oneof![0..=MAX_PAYLOAD + 1, any::<u32>()],
        name in proptest::collection::vec(any::<u8>(), 0..300),
        name_len in prop_oneof![0u16..300, any::<u16>()],
        trailing in proptest::collection::vec(any::<u8>(), 0..6),
    ) {
        let mut bytes = raw_hello(mode, chunk_size, &name, name_len);
        bytes.extend_from_slice(&trailing);
        if let Ok(hello) = Hello::decode(&bytes) {
            prop_assert_eq!(&hello.encode()[..], &bytes[..]);
        }
    }
}
