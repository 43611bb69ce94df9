use bytes::Bytes;

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
        Err(WireError::PayloadChecksum { seq: 3, offset: 4096 })
    ));
}
