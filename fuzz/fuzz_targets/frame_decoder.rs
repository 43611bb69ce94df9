//! Feeds untrusted bytes to every DWCP wire decoder.
//!
//! The input is read three ways, and the ways must agree:
//! - `Frame::decode` in a loop, consuming each decoded frame, as a buffering reader would;
//! - `read_frame` on an in-memory reader, as a connection would;
//! - each control payload through its control decoder, and each `Hde` payload through the HDE
//!   item parser and decompressor with the receiver's bounds.
//!
//! Random bytes almost never carry valid CRC32Cs, which would keep the fuzzer at the header
//! checksum. So when the first byte is odd, the rest is "sealed" first: each header's and
//! payload's checksum is recomputed, letting mutations reach the version, kind, flag and length
//! checks and the control payload parsers.

#![no_main]

use std::sync::LazyLock;

use dwcp::hde::{Encoded, codec, decode_item, encode_item};
use dwcp::wire::{
    ErrorMessage, Frame, FrameKind, HEADER_LEN, Hello, HelloAck, PayloadKind, WireError, read_frame,
};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

/// Built once: a runtime per input would dominate the time spent per execution.
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime needs no I/O or timer driver")
});

/// How a pass over the input stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// Every byte was consumed by whole frames.
    Clean,
    /// The input ended inside a frame.
    Partial,
    /// A frame was invalid.
    Invalid,
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = if mode & 1 == 1 {
        seal(rest)
    } else {
        rest.to_vec()
    };

    let (decoded, decode_stop) = decode_all(&input);
    let (read, read_stop) = read_all(&input);
    assert_eq!(
        decoded, read,
        "decode and read_frame disagree on the frames"
    );
    assert_eq!(
        decode_stop, read_stop,
        "decode and read_frame stop differently"
    );

    for frame in &decoded {
        check_frame(frame);
    }
    // Control decoders on the raw input too, so they are fuzzed without the frame around them.
    check_control(rest);
});

/// Decodes frames from the front of `input` until it runs out or a frame is invalid.
fn decode_all(input: &[u8]) -> (Vec<Frame>, Stop) {
    let mut frames = Vec::new();
    let mut rest = input;
    loop {
        if rest.is_empty() {
            return (frames, Stop::Clean);
        }
        match Frame::decode(rest) {
            Ok(Some((frame, used))) => {
                assert!(used >= HEADER_LEN && used <= rest.len(), "used {used}");
                assert_eq!(frame.encode(), rest[..used], "decoding is not canonical");
                frames.push(frame);
                rest = &rest[used..];
            }
            Ok(None) => return (frames, Stop::Partial),
            Err(_) => return (frames, Stop::Invalid),
        }
    }
}

/// Reads frames from `input` with `read_frame` until a clean end or an error.
fn read_all(input: &[u8]) -> (Vec<Frame>, Stop) {
    RUNTIME.block_on(async {
        let mut reader = input;
        let mut frames = Vec::new();
        loop {
            match read_frame(&mut reader).await {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return (frames, Stop::Clean),
                Err(WireError::Truncated) => return (frames, Stop::Partial),
                Err(_) => return (frames, Stop::Invalid),
            }
        }
    })
}

/// Limits an `Hde` item is parsed with: a page and a 1 MiB chunk.
const ITEM_LIMITS: [usize; 2] = [4096, 1 << 20];

/// Parses an `Hde` payload as the receiver does (one item, bounded by the chunk size), and
/// decompresses it: nothing may panic or produce more than the limit, and a whole valid item
/// re-encodes to the same bytes.
fn check_hde(payload: &[u8]) {
    for limit in ITEM_LIMITS {
        let Ok((item, used)) = decode_item(payload, limit) else {
            continue;
        };
        assert!(used <= payload.len());
        let mut again = Vec::new();
        encode_item(&item, &mut again).expect("a decoded item re-encodes");
        assert_eq!(again, payload[..used], "HDE item is not canonical");
        if let Encoded::Compressed { codec, bytes, .. } = &item {
            if let Ok(out) = codec::decompress(*codec, bytes, limit) {
                assert!(out.len() <= limit, "decompressed past the limit");
            }
        }
    }
}

/// Checks a decoded frame, and its control payload when it carries one.
fn check_frame(frame: &Frame) {
    assert_eq!(frame.payload.len(), frame.header.length as usize);
    assert!(frame.header.length <= frame.header.kind.max_payload());
    if frame.header.payload_kind == PayloadKind::Hde {
        check_hde(&frame.payload);
        return;
    }
    if frame.header.payload_kind != PayloadKind::Control {
        return;
    }
    match frame.header.kind {
        FrameKind::Hello => {
            if let Ok(hello) = Hello::decode(&frame.payload) {
                assert_eq!(hello.encode(), frame.payload, "Hello is not canonical");
            }
        }
        FrameKind::HelloAck => {
            if let Ok(ack) = HelloAck::decode(&frame.payload) {
                assert_eq!(ack.encode(), frame.payload, "HelloAck is not canonical");
            }
        }
        FrameKind::Error => {
            if let Ok(error) = ErrorMessage::decode(&frame.payload) {
                // Unknown codes read as `Other`, so only the message must come back unchanged.
                assert_eq!(
                    error.encode()[2..],
                    frame.payload[2..],
                    "Error is not canonical"
                );
            }
        }
        FrameKind::Index => {
            if let Ok(index) = dwcp::hde::ContentIndex::decode(&frame.payload) {
                assert_eq!(index.encode(), frame.payload, "Index is not canonical");
            }
        }
        FrameKind::Invalid
        | FrameKind::Data
        | FrameKind::Ack
        | FrameKind::End
        | FrameKind::Done
        | FrameKind::Close
        | FrameKind::Need
        | FrameKind::Held => check_control(&frame.payload),
    }
}

/// Runs every control decoder over `bytes`; none may panic, and what decodes re-encodes.
fn check_control(bytes: &[u8]) {
    if let Ok(hello) = Hello::decode(bytes) {
        assert_eq!(hello.encode(), bytes);
    }
    if let Ok(ack) = HelloAck::decode(bytes) {
        assert_eq!(ack.encode(), bytes);
    }
    if let Ok(error) = ErrorMessage::decode(bytes) {
        assert_eq!(error.encode()[2..], bytes[2..]);
    }
}

/// Rewrites the header and payload checksums of each frame-shaped piece of `input`.
fn seal(input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let mut at = 0;
    while out.len() - at >= HEADER_LEN {
        let length = u32::from_be_bytes(out[at + 12..at + 16].try_into().unwrap()) as usize;
        let payload_end = (at + HEADER_LEN).saturating_add(length).min(out.len());
        let payload_crc = crc32c::crc32c(&out[at + HEADER_LEN..payload_end]);
        out[at + 48..at + 52].copy_from_slice(&payload_crc.to_be_bytes());
        let header_crc = crc32c::crc32c(&out[at..at + 52]);
        out[at + 52..at + HEADER_LEN].copy_from_slice(&header_crc.to_be_bytes());
        at = payload_end;
    }
    out
}
