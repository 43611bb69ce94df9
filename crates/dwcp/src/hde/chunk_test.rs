//! Chunk mode tests: mixed streams round-trip byte-identical whatever the write sizes,
//! repeated content goes by reference, and invalid items are refused.

use super::chunk::{ChunkDecoder, ChunkEncoder, ChunkError, ChunkParams};
use super::item::{RAW_HEADER_LEN, decode_item, encode_item};
use super::page_test::{noise, text};
use super::{Codec, CodecChoice, ContentHash, DeltaCodec, Encoded, MemStore};

fn small() -> ChunkParams {
    ChunkParams::new(2048, 8192, 32768).unwrap()
}

/// Encodes `stream` written in pieces of `write` bytes; returns the items.
fn encode(enc: &mut ChunkEncoder, stream: &[u8], write: usize) -> Vec<Encoded> {
    let mut items = Vec::new();
    for piece in stream.chunks(write) {
        items.extend(enc.push(piece).unwrap());
    }
    items.extend(enc.finish().unwrap());
    items
}

/// Decodes `items` through their serialized form; returns the stream.
fn decode(dec: &mut ChunkDecoder<MemStore>, items: &[Encoded], params: ChunkParams) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        let mut buf = Vec::new();
        encode_item(item, &mut buf).unwrap();
        let (back, _) = decode_item(&buf, params.max()).unwrap();
        out.extend(dec.decode(&back).unwrap());
    }
    out
}

fn mixed() -> Vec<u8> {
    let block = noise(7, 100_000);
    [
        vec![0u8; 200_000],
        text(1, 150_000),
        block.clone(),
        noise(8, 50_000),
        block,
        vec![0u8; 10],
    ]
    .concat()
}

#[test]
fn mixed_stream_round_trips_and_repeats_go_by_reference() {
    let params = small();
    let stream = mixed();
    let mut enc = ChunkEncoder::new(params, CodecChoice::Zstd(3), 4096);
    let items = encode(&mut enc, &stream, 70_000);
    let mut dec = ChunkDecoder::new(MemStore::new(16 << 20), params);
    let out = decode(&mut dec, &items, params);
    assert_eq!(blake3::hash(&out), blake3::hash(&stream));
    let count = |name: &str| items.iter().filter(|i| i.kind_name() == name).count();
    assert!(
        count("zero") >= 1 && count("ref") >= 1 && count("compressed") >= 1 && count("raw") >= 1
    );
    let wire: usize = items.iter().map(Encoded::wire_len).sum();
    assert!(wire < stream.len() / 2, "{wire} of {}", stream.len());
}

#[test]
fn write_sizes_do_not_change_the_chunks() {
    let params = small();
    let stream = mixed();
    let whole = encode(
        &mut ChunkEncoder::new(params, CodecChoice::Lz4, 4096),
        &stream,
        stream.len(),
    );
    for write in [1000, 4096, 33_333] {
        let pieces = encode(
            &mut ChunkEncoder::new(params, CodecChoice::Lz4, 4096),
            &stream,
            write,
        );
        assert_eq!(pieces, whole, "writes of {write}");
    }
}

#[test]
fn a_second_transfer_after_an_insertion_is_mostly_references() {
    let params = ChunkParams::default();
    let image = noise(3, 2 << 20);
    let mut enc = ChunkEncoder::new(params, CodecChoice::Lz4, 4096);
    let mut dec = ChunkDecoder::new(MemStore::new(64 << 20), params);
    let first = encode(&mut enc, &image, 1 << 20);
    assert_eq!(decode(&mut dec, &first, params), image);
    let later = [&image[..300_000], b"inserted bytes", &image[300_000..]].concat();
    let second = encode(&mut enc, &later, 1 << 20);
    assert_eq!(decode(&mut dec, &second, params), later);
    let wire: usize = second.iter().map(Encoded::wire_len).sum();
    assert!(wire < later.len() / 4, "{wire} of {}", later.len());
}

#[test]
fn random_chunks_expand_by_at_most_the_item_header() {
    let params = small();
    let stream = noise(11, 500_000);
    let items = encode(
        &mut ChunkEncoder::new(params, CodecChoice::Zstd(19), 16),
        &stream,
        65_536,
    );
    let wire: usize = items.iter().map(Encoded::wire_len).sum();
    assert!(wire <= stream.len() + items.len() * RAW_HEADER_LEN);
    assert!(wire * 1000 < stream.len() * 1005);
}

#[test]
fn invalid_params_are_refused() {
    for (min, avg, max) in [
        (1, 8192, 32768),
        (2048, 8192, 1024),
        (8192, 2048, 32768),
        (2049, 8192, 32768),
        (2048, 8192, 32 << 20),
    ] {
        assert!(matches!(
            ChunkParams::new(min, avg, max),
            Err(ChunkError::InvalidParams { .. })
        ));
    }
}

#[test]
fn decoder_refuses_deltas_oversize_chunks_and_unknown_references() {
    let params = small();
    let mut dec = ChunkDecoder::new(MemStore::new(1 << 20), params);
    let delta = Encoded::Delta {
        base_index: 0,
        codec: DeltaCodec::Rle,
        bytes: vec![0; 4],
    };
    assert!(matches!(
        dec.decode(&delta),
        Err(ChunkError::UnexpectedDelta)
    ));
    assert!(matches!(
        dec.decode(&Encoded::Zero { len: 32769 }),
        Err(ChunkError::WrongLength { len: 32769, .. })
    ));
    assert!(matches!(
        dec.decode(&Encoded::Raw(Vec::new())),
        Err(ChunkError::WrongLength { len: 0, .. })
    ));
    let bomb = zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap();
    let item = Encoded::Compressed {
        codec: Codec::Zstd,
        level: 3,
        bytes: bomb,
    };
    assert!(matches!(dec.decode(&item), Err(ChunkError::Codec(_))));
    let hash = ContentHash::of(b"never sent");
    assert!(
        matches!(dec.decode(&Encoded::Ref(hash)), Err(ChunkError::MissingContent(h)) if h == hash)
    );
}
