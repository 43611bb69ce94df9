//! Writes the seed corpus of the `frame_decoder` target: valid frames of every kind, a whole
//! session's frames back to back, and bare control payloads.
//!
//! `cargo run --example write_seeds -- seeds/frame_decoder` (from `fuzz/`). Each seed starts
//! with the target's mode byte: 0 reads the rest as it is, 1 reseals its checksums first.

use std::path::PathBuf;

use bytes::Bytes;
use dwcp::hde::{Codec, Encoded, codec, encode_item};
use dwcp::wire::{
    ErrorCode, ErrorMessage, FEATURE_HDE, Frame, FrameKind, Hello, HelloAck, HelloMode,
    PayloadKind, SessionId,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: write_seeds OUTPUT_DIR")?,
    );
    std::fs::create_dir_all(&dir)?;

    let session = SessionId(*b"seed-session-id!");
    let stream = b"The quick brown fox jumps over the lazy dog.".repeat(4);
    let digest = [0x5a; 32];
    let hello = |mode, conn_index| Hello {
        mode,
        conn_index,
        total_len: Some(stream.len() as u64),
        chunk_size: 64,
        name: "vm-disk.raw".to_owned(),
        features: FEATURE_HDE,
    };
    let control = |kind, offset, payload: Bytes| Frame::control(kind, session, offset, payload);
    let data = |seq: u64, chunk: &[u8]| {
        Frame::new(
            FrameKind::Data,
            PayloadKind::Raw,
            session,
            seq,
            seq * 64,
            Bytes::copy_from_slice(chunk),
        )
    };
    let ack = HelloAck {
        start_offset: 0,
        window: 1 << 20,
        max_streams: 4,
        features: FEATURE_HDE,
    };
    let error = ErrorMessage {
        code: ErrorCode::Integrity,
        message: "BLAKE3 mismatch".to_owned(),
    };
    let pipe = Hello {
        total_len: None,
        ..hello(HelloMode::Resume, 0)
    };

    let mut session_frames = vec![
        control(FrameKind::Hello, 0, hello(HelloMode::Open, 0).encode())?,
        control(FrameKind::HelloAck, 0, ack.encode())?,
    ];
    for (seq, chunk) in (0u64..).zip(stream.chunks(64)) {
        session_frames.push(data(seq, chunk)?);
    }
    // The same stream once more as HDE items: a zero run, a compressed chunk, a raw item.
    let item = |e: &Encoded| -> Result<Bytes, Box<dyn std::error::Error>> {
        let mut out = Vec::new();
        encode_item(e, &mut out)?;
        Ok(Bytes::from(out))
    };
    let hde = |seq: u64, payload: Bytes| {
        Frame::new(
            FrameKind::Data,
            PayloadKind::Hde,
            session,
            seq,
            seq * 64,
            payload,
        )
    };
    let compressed = Encoded::Compressed {
        codec: Codec::Lz4,
        level: 0,
        bytes: codec::compress(Codec::Lz4, 0, &stream[..64])?,
    };
    session_frames.extend([
        hde(10, item(&Encoded::Zero { len: 64 })?)?,
        hde(11, item(&compressed)?)?,
        hde(12, item(&Encoded::Raw(stream[64..128].to_vec()))?)?,
    ]);
    let total = stream.len() as u64;
    session_frames.extend([
        control(FrameKind::Ack, total, Bytes::new())?,
        control(FrameKind::End, total, Bytes::copy_from_slice(&digest))?,
        control(FrameKind::Done, total, Bytes::copy_from_slice(&digest))?,
        control(FrameKind::Close, 0, Bytes::new())?,
    ]);

    let mut seeds: Vec<(String, Vec<u8>)> = vec![
        (
            "session".to_owned(),
            session_frames.iter().flat_map(Frame::encode).collect(),
        ),
        (
            "hello-join".to_owned(),
            control(FrameKind::Hello, 0, hello(HelloMode::Join, 1).encode())?.encode(),
        ),
        (
            "hello-resume-pipe".to_owned(),
            control(FrameKind::Hello, 0, pipe.encode())?.encode(),
        ),
        (
            "error".to_owned(),
            control(FrameKind::Error, 0, error.encode())?.encode(),
        ),
        ("data-empty".to_owned(), data(0, b"")?.encode()),
        (
            "payload-hello".to_owned(),
            hello(HelloMode::Open, 0).encode().to_vec(),
        ),
        ("payload-hello-ack".to_owned(), ack.encode().to_vec()),
        ("payload-error".to_owned(), error.encode().to_vec()),
    ];
    seeds.extend(session_frames.iter().map(|frame| {
        let name = format!("{:?}-{}", frame.header.kind, frame.header.seq).to_lowercase();
        (name, frame.encode())
    }));

    for (index, (name, bytes)) in seeds.into_iter().enumerate() {
        for mode in [0u8, 1] {
            let mut seed = vec![mode];
            seed.extend_from_slice(&bytes);
            std::fs::write(dir.join(format!("{index:02}-{name}-{mode}")), seed)?;
        }
    }
    Ok(())
}
