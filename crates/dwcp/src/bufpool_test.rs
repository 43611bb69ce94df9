use super::*;

#[test]
fn a_frozen_buffer_comes_back_when_its_last_reference_drops() {
    let pool = BufPool::new(1024, 4);
    let mut buf = pool.take(1000);
    assert!(buf.capacity() >= 1024);
    buf.extend_from_slice(&[7; 1000]);
    let first = buf.as_ptr();
    let bytes = pool.freeze(buf);
    let slice = bytes.slice(10..20);
    drop(bytes);
    assert_eq!(pool.idle(), 0, "a slice still refers to the buffer");
    assert_eq!(&slice[..], &[7; 10]);
    drop(slice);
    assert_eq!(pool.idle(), 1);
    let again = pool.take(600);
    assert_eq!(again.as_ptr(), first, "the same memory is reused");
    assert!(again.is_empty(), "a reused buffer starts empty");
    assert_eq!(pool.idle(), 0);
}

#[test]
fn small_and_oversized_lengths_get_buffers_of_their_own() {
    let pool = BufPool::new(1024, 4);
    for len in [0, 100, 511, 1025, 4096] {
        assert!(!pool.serves(len), "{len}");
        let mut buf = pool.take(len);
        assert!(buf.capacity() >= len);
        buf.resize(len, 1);
        drop(pool.freeze(buf));
    }
    assert_eq!(pool.idle(), 0, "none of them was kept");
    assert!(pool.serves(512) && pool.serves(1024));
}

#[test]
fn the_pool_keeps_no_more_than_it_was_told() {
    let pool = BufPool::new(256, 2);
    let frozen: Vec<Bytes> = (0..5)
        .map(|i| {
            let mut buf = pool.take(256);
            buf.push(i);
            pool.freeze(buf)
        })
        .collect();
    assert_eq!(
        frozen.iter().map(|b| b[0]).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    drop(frozen);
    assert_eq!(pool.idle(), 2);
}

#[test]
fn a_buffer_that_grew_is_not_kept() {
    let pool = BufPool::new(256, 2);
    let mut buf = pool.take(200);
    buf.resize(300, 0);
    assert!(buf.capacity() > 256);
    drop(pool.freeze(buf));
    assert_eq!(pool.idle(), 0);
}

#[test]
fn buffers_dropped_on_other_threads_come_back() {
    let pool = BufPool::new(4096, 8);
    let frozen: Vec<Bytes> = (0..4)
        .map(|_| {
            let mut buf = pool.take(4096);
            buf.resize(4096, 3);
            pool.freeze(buf)
        })
        .collect();
    std::thread::scope(|s| {
        for b in frozen {
            s.spawn(move || assert_eq!(b.len(), 4096));
        }
    });
    assert_eq!(pool.idle(), 4);
}
