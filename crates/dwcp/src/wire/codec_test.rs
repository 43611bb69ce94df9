//! Frame header and codec tests: round trips through `Frame::encode`/`Frame::decode` and the
//! async `write_frame`/`read_frame`, corruption and truncation, and every malformed header.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use proptest::prelude::*;
use tokio::io::{AsyncRead, ReadBuf};

use super::*;

fn data_frame(payload: &'static [u8]) -> Frame {
    Frame::new(
        FrameKind::Data,
        PayloadKind::Raw,
        SessionId([7; 16]),
        3,
        4096,
        Bytes::from_static(payload),
    )
    .unwrap()
}

/// Runs a future to completion on a fresh single-threaded runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

/// Reads every frame from `bytes` with `read_frame` until the first error or a clean end.
fn read_all(bytes: &[u8]) -> Result<Vec<Frame>, WireError> {
    block_on(async {
        let mut reader = bytes;
        let mut frames = Vec::new();
        while let Some(frame) = read_frame(&mut reader).await? {
            frames.push(frame);
        }
        Ok(frames)
    })
}

/// Reads exactly one frame from `bytes`.
fn read_one(bytes: &[u8]) -> Result<Option<Frame>, WireError> {
    block_on(async {
        let mut reader = bytes;
        read_frame(&mut reader).await
    })
}

/// A valid encoded header for a small data frame, to be patched by a test.
fn valid_header() -> [u8; HEADER_LEN] {
    data_frame(b"abc").header.encode()
}

/// Recomputes the header checksum so a patched header gets past it to the check under test.
fn reseal(mut head: [u8; HEADER_LEN]) -> [u8; HEADER_LEN] {
    let crc = crc32c::crc32c(&head[..52]);
    head[52..].copy_from_slice(&crc.to_be_bytes());
    head
}

/// A valid header with the big-endian `u16` at `at` replaced and the checksum fixed up.
fn header_with_u16(at: usize, value: u16) -> [u8; HEADER_LEN] {
    let mut head = valid_header();
    head[at..at + 2].copy_from_slice(&value.to_be_bytes());
    reseal(head)
}

/// A resealed header of `kind` declaring a payload of `length` bytes.
fn header_declaring(kind: FrameKind, length: u32) -> [u8; HEADER_LEN] {
    let mut head = valid_header();
    head[6..8].copy_from_slice(&(kind as u16).to_be_bytes());
    head[12..16].copy_from_slice(&length.to_be_bytes());
    reseal(head)
}

/// Serves a header in small pieces, then records whether anyone asked for more.
struct HeaderOnlyReader {
    header: [u8; HEADER_LEN],
    pos: usize,
    asked_past_header: bool,
}

impl HeaderOnlyReader {
    fn new(header: [u8; HEADER_LEN]) -> Self {
        Self {
            header,
            pos: 0,
            asked_past_header: false,
        }
    }
}

impl AsyncRead for HeaderOnlyReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos >= HEADER_LEN {
            this.asked_past_header = true;
            return Poll::Ready(Ok(()));
        }
        // Seven bytes at a time, so the header read loop has to stitch it together.
        let n = buf.remaining().min(HEADER_LEN - this.pos).min(7);
        buf.put_slice(&this.header[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

fn frame_kind() -> impl Strategy<Value = FrameKind> {
    prop_oneof![
        Just(FrameKind::Hello),
        Just(FrameKind::HelloAck),
        Just(FrameKind::Data),
        Just(FrameKind::Ack),
        Just(FrameKind::End),
        Just(FrameKind::Done),
        Just(FrameKind::Error),
        Just(FrameKind::Close),
        Just(FrameKind::Held),
    ]
}

fn payload_kind() -> impl Strategy<Value = PayloadKind> {
    prop_oneof![
        Just(PayloadKind::Control),
        Just(PayloadKind::Raw),
        Just(PayloadKind::Hde)
    ]
}

/// Any frame a correct peer could send: every kind and field, payloads up to 4 KiB.
fn any_frame() -> impl Strategy<Value = Frame> {
    (
        frame_kind(),
        payload_kind(),
        any::<[u8; 16]>(),
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..4096),
    )
        .prop_map(|(kind, payload_kind, session, seq, offset, payload)| {
            Frame::new(
                kind,
                payload_kind,
                SessionId(session),
                seq,
                offset,
                Bytes::from(payload),
            )
            .unwrap()
        })
}

/// Header fields that are mostly plausible, behind a correct magic and checksum, so decoding
/// gets past both and exercises the version, kind, flag and length checks.
fn sealed_header_bytes() -> impl Strategy<Value = [u8; HEADER_LEN]> {
    (
        any::<[u8; HEADER_LEN]>(),
        prop_oneof![Just(VERSION), any::<u16>()],
        prop_oneof![0u16..10, any::<u16>()],
        prop_oneof![0u16..4, any::<u16>()],
        prop_oneof![Just(0u16), any::<u16>()],
        prop_oneof![0u32..128, any::<u32>()],
    )
        .prop_map(|(mut head, version, kind, payload_kind, flags, length)| {
            head[..4].copy_from_slice(&MAGIC);
            head[4..6].copy_from_slice(&version.to_be_bytes());
            head[6..8].copy_from_slice(&kind.to_be_bytes());
            head[8..10].copy_from_slice(&payload_kind.to_be_bytes());
            head[10..12].copy_from_slice(&flags.to_be_bytes());
            head[12..16].copy_from_slice(&length.to_be_bytes());
            reseal(head)
        })
}

#[test]
fn data_frame_round_trips() {
    let frame = data_frame(b"hello world");
    let bytes = frame.encode();
    let (decoded, used) = Frame::decode(&bytes).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(decoded, frame);
}

#[test]
fn partial_input_asks_for_more() {
    let bytes = data_frame(b"hello world").encode();
    for cut in 0..bytes.len() {
        assert!(Frame::decode(&bytes[..cut]).unwrap().is_none(), "cut {cut}");
    }
}

#[test]
fn flipped_payload_bit_is_caught() {
    let mut bytes = data_frame(b"hello world").encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    assert!(matches!(
        Frame::decode(&bytes),
        Err(WireError::PayloadChecksum {
            seq: 3,
            offset: 4096
        })
    ));
}

#[test]
fn header_layout_is_big_endian_at_documented_offsets() {
    let frame = Frame::new(
        FrameKind::Data,
        PayloadKind::Raw,
        SessionId(*b"0123456789abcdef"),
        0x0102_0304_0506_0708,
        0x1112_1314_1516_1718,
        Bytes::from_static(b"xyz"),
    )
    .unwrap();
    let head = frame.header.encode();
    assert_eq!(&head[0..4], b"DWCP");
    assert_eq!(&head[4..6], &[0, 1], "version");
    assert_eq!(&head[6..8], &[0, 3], "frame kind");
    assert_eq!(&head[8..10], &[0, 2], "payload kind");
    assert_eq!(&head[10..12], &[0, 0], "flags");
    assert_eq!(&head[12..16], &[0, 0, 0, 3], "length");
    assert_eq!(&head[16..32], b"0123456789abcdef", "session");
    assert_eq!(&head[32..40], &[1, 2, 3, 4, 5, 6, 7, 8], "seq");
    assert_eq!(
        &head[40..48],
        &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]
    );
    assert_eq!(&head[48..52], &crc32c::crc32c(b"xyz").to_be_bytes());
    assert_eq!(&head[52..56], &crc32c::crc32c(&head[..52]).to_be_bytes());
}

#[test]
fn every_single_bit_flip_in_a_small_frame_is_rejected() {
    let bytes = data_frame(b"hello world").encode();
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(Frame::decode(&damaged).is_err(), "bit {bit}");
        assert!(read_one(&damaged).is_err(), "bit {bit}");
    }
}

#[test]
fn empty_stream_is_a_clean_end() {
    assert!(read_one(&[]).unwrap().is_none());
}

#[test]
fn stream_ending_inside_header_is_truncated() {
    let bytes = data_frame(b"hello").encode();
    assert!(matches!(
        read_one(&bytes[..HEADER_LEN - 1]),
        Err(WireError::Truncated)
    ));
}

#[test]
fn stream_ending_inside_payload_is_truncated() {
    let bytes = data_frame(b"hello").encode();
    assert!(matches!(
        read_one(&bytes[..bytes.len() - 1]),
        Err(WireError::Truncated)
    ));
}

#[test]
fn short_slice_is_a_truncated_header() {
    assert!(matches!(
        FrameHeader::decode(&valid_header()[..HEADER_LEN - 1]),
        Err(WireError::Truncated)
    ));
}

#[test]
fn bad_magic_is_rejected() {
    let mut bytes = data_frame(b"hello").encode();
    bytes[..4].copy_from_slice(b"HTTP");
    assert!(matches!(
        Frame::decode(&bytes),
        Err(WireError::BadMagic { found }) if &found == b"HTTP"
    ));
    assert!(matches!(read_one(&bytes), Err(WireError::BadMagic { .. })));
}

#[test]
fn damaged_header_fails_its_checksum() {
    let mut head = valid_header();
    head[40] ^= 0x80;
    assert!(matches!(
        FrameHeader::decode(&head),
        Err(WireError::HeaderChecksum)
    ));
}

#[test]
fn unknown_version_is_rejected_naming_both_versions() {
    for version in [0, 2, u16::MAX] {
        let head = header_with_u16(4, version);
        let err = FrameHeader::decode(&head).unwrap_err();
        assert!(
            matches!(err, WireError::UnsupportedVersion { found } if found == version),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(&format!("version {version}")), "{text}");
        assert!(text.contains(&format!("speaks {VERSION}")), "{text}");
    }
}

#[test]
fn header_encoded_with_another_version_is_rejected() {
    let header = FrameHeader {
        version: VERSION + 1,
        ..data_frame(b"abc").header
    };
    assert!(matches!(
        FrameHeader::decode(&header.encode()),
        Err(WireError::UnsupportedVersion { found }) if found == VERSION + 1
    ));
}

#[test]
fn unknown_frame_kind_is_rejected() {
    for kind in [0, 12, 0x100, u16::MAX] {
        assert!(
            matches!(
                FrameHeader::decode(&header_with_u16(6, kind)),
                Err(WireError::UnknownFrameKind(k)) if k == kind
            ),
            "kind {kind}"
        );
    }
}

#[test]
fn unknown_payload_kind_is_rejected() {
    for kind in [0, 5, u16::MAX] {
        assert!(
            matches!(
                FrameHeader::decode(&header_with_u16(8, kind)),
                Err(WireError::UnknownPayloadKind(k)) if k == kind
            ),
            "payload kind {kind}"
        );
    }
}

#[test]
fn reserved_flags_are_rejected() {
    for bit in 0..16 {
        let flags = 1u16 << bit;
        assert!(
            matches!(
                FrameHeader::decode(&header_with_u16(10, flags)),
                Err(WireError::ReservedFlags(f)) if f == flags
            ),
            "flags {flags:#06x}"
        );
    }
}

#[test]
fn data_length_at_limit_is_accepted_and_one_over_is_rejected() {
    let at_limit = FrameHeader::decode(&header_declaring(FrameKind::Data, MAX_PAYLOAD)).unwrap();
    assert_eq!(at_limit.length, 16 << 20);
    assert!(matches!(
        FrameHeader::decode(&header_declaring(FrameKind::Data, MAX_PAYLOAD + 1)),
        Err(WireError::PayloadTooLarge { length, limit })
            if length == u64::from(MAX_PAYLOAD) + 1 && limit == MAX_PAYLOAD
    ));
}

#[test]
fn control_length_at_limit_is_accepted_and_one_over_is_rejected() {
    let control_kinds = [
        FrameKind::Hello,
        FrameKind::HelloAck,
        FrameKind::Ack,
        FrameKind::End,
        FrameKind::Done,
        FrameKind::Error,
        FrameKind::Close,
    ];
    for kind in control_kinds {
        let head = header_declaring(kind, MAX_CONTROL_PAYLOAD);
        assert_eq!(FrameHeader::decode(&head).unwrap().length, 64 << 10);
        assert!(
            matches!(
                FrameHeader::decode(&header_declaring(kind, MAX_CONTROL_PAYLOAD + 1)),
                Err(WireError::PayloadTooLarge { limit, .. }) if limit == MAX_CONTROL_PAYLOAD
            ),
            "{kind:?}"
        );
    }
}

#[test]
fn read_frame_rejects_over_limit_length_at_the_header() {
    let cases = [
        (FrameKind::Data, MAX_PAYLOAD + 1),
        (FrameKind::Data, u32::MAX),
        (FrameKind::Hello, MAX_CONTROL_PAYLOAD + 1),
        (FrameKind::Error, u32::MAX),
    ];
    for (kind, length) in cases {
        let mut reader = HeaderOnlyReader::new(header_declaring(kind, length));
        let result = block_on(read_frame(&mut reader));
        assert!(
            matches!(result, Err(WireError::PayloadTooLarge { length: l, .. }) if l == u64::from(length)),
            "{kind:?} {length}: {result:?}"
        );
        // Asking for payload bytes would mean a payload buffer had been sized from the header.
        assert!(!reader.asked_past_header, "{kind:?} {length}");
    }
}

#[test]
fn read_frame_reads_a_header_delivered_in_pieces() {
    let mut reader = HeaderOnlyReader::new(data_frame(b"").header.encode());
    let frame = block_on(read_frame(&mut reader)).unwrap().unwrap();
    assert_eq!(frame, data_frame(b""));
    assert!(!reader.asked_past_header);
}

#[test]
fn oversized_payload_cannot_be_framed() {
    let control = Bytes::from(vec![0; MAX_CONTROL_PAYLOAD as usize + 1]);
    assert!(matches!(
        Frame::control(FrameKind::Hello, SessionId::default(), 0, control),
        Err(WireError::PayloadTooLarge { length, limit })
            if length == u64::from(MAX_CONTROL_PAYLOAD) + 1 && limit == MAX_CONTROL_PAYLOAD
    ));
    let data = Bytes::from(vec![0; MAX_PAYLOAD as usize + 1]);
    assert!(matches!(
        Frame::new(FrameKind::Data, PayloadKind::Raw, SessionId::default(), 0, 0, data),
        Err(WireError::PayloadTooLarge { limit, .. }) if limit == MAX_PAYLOAD
    ));
}

#[test]
fn largest_data_frame_round_trips() {
    let payload = Bytes::from(vec![0xa5; MAX_PAYLOAD as usize]);
    let frame = Frame::new(
        FrameKind::Data,
        PayloadKind::Raw,
        SessionId([1; 16]),
        1,
        0,
        payload,
    )
    .unwrap();
    let bytes = frame.encode();
    assert_eq!(Frame::decode(&bytes).unwrap().unwrap().0, frame);
    assert_eq!(read_one(&bytes).unwrap().unwrap(), frame);
}

#[test]
fn read_frame_reports_payload_checksum_with_seq_and_offset() {
    let mut bytes = data_frame(b"hello").encode();
    bytes[HEADER_LEN] ^= 0x10;
    assert!(matches!(
        read_one(&bytes),
        Err(WireError::PayloadChecksum {
            seq: 3,
            offset: 4096
        })
    ));
}

#[test]
fn write_frame_writes_exactly_the_encoding() {
    let frame = data_frame(b"payload");
    let written = block_on(async {
        let mut out = Vec::new();
        write_frame(&mut out, &frame).await.unwrap();
        out
    });
    assert_eq!(written, frame.encode());
}

proptest! {
    #[test]
    fn any_frame_round_trips_through_encode_and_decode(frame in any_frame()) {
        let bytes = frame.encode();
        prop_assert_eq!(bytes.len(), HEADER_LEN + frame.payload.len());
        let (decoded, used) = Frame::decode(&bytes).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(decoded, frame);
    }

    #[test]
    fn back_to_back_frames_decode_in_order(
        frames in proptest::collection::vec(any_frame(), 1..6),
    ) {
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut rest = &bytes[..];
        let mut decoded = Vec::new();
        while let Some((frame, used)) = Frame::decode(rest).unwrap() {
            decoded.push(frame);
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
        prop_assert_eq!(&decoded, &frames);
        prop_assert_eq!(read_all(&bytes).unwrap(), frames);
    }

    #[test]
    fn any_frames_round_trip_through_a_duplex_pipe(
        frames in proptest::collection::vec(any_frame(), 1..6),
        pipe_capacity in 1usize..512,
    ) {
        // A small pipe makes the reader see frames split at arbitrary points.
        let received = block_on(async {
            let (mut tx, mut rx) = tokio::io::duplex(pipe_capacity);
            let send = async {
                for frame in &frames {
                    write_frame(&mut tx, frame).await.unwrap();
                }
                drop(tx);
            };
            let receive = async {
                let mut got = Vec::new();
                while let Some(frame) = read_frame(&mut rx).await.unwrap() {
                    got.push(frame);
                }
                got
            };
            tokio::join!(send, receive).1
        });
        prop_assert_eq!(received, frames);
    }

    #[test]
    fn any_single_bit_flip_is_rejected(frame in any_frame(), pick in any::<prop::sample::Index>()) {
        let mut bytes = frame.encode();
        let bit = pick.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        let decoded = Frame::decode(&bytes);
        prop_assert!(decoded.is_err(), "bit {}: {:?}", bit, decoded);
        let read = read_one(&bytes);
        prop_assert!(read.is_err(), "bit {}: {:?}", bit, read);
    }

    #[test]
    fn any_truncation_asks_for_more_or_is_truncated(
        frame in any_frame(),
        pick in any::<prop::sample::Index>(),
    ) {
        let bytes = frame.encode();
        let cut = 1 + pick.index(bytes.len() - 1);
        prop_assert!(Frame::decode(&bytes[..cut]).unwrap().is_none());
        prop_assert!(matches!(read_one(&bytes[..cut]), Err(WireError::Truncated)));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_frame_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let _ = Frame::decode(&bytes);
        let _ = read_all(&bytes);
    }

    #[test]
    fn sealed_header_decodes_only_to_its_own_encoding(
        head in sealed_header_bytes(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        if let Ok(header) = FrameHeader::decode(&head) {
            prop_assert_eq!(header.encode(), head);
        }
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(&payload);
        if let Ok(Some((frame, used))) = Frame::decode(&bytes) {
            prop_assert_eq!(frame.encode(), &bytes[..used]);
        }
        let _ = read_all(&bytes);
    }
}
