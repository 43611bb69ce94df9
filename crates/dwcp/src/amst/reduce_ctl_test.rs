//! The session's PBA loop as the sender feeds it: a period in which the session's frames
//! waited for a connection measures the link, one in which nothing waited does not.

use std::time::{Duration, Instant};

use super::SessionReduce;
use crate::amst::reduce::Reduction;

/// A session over a 50 ms link (internet: zstd-3 to start, a 12.5 MB/s guess) fed ten ticks a
/// second for three seconds of 25 MB/s acknowledged on the wire, the network holding it back
/// `waiting` of each tick (its frames waiting for a connection); returns the bandwidth PBA
/// then decides with.
fn bandwidth_after(waiting: Duration) -> f64 {
    let mut reduce = SessionReduce::new(Reduction::Auto, true, Duration::from_millis(50), None);
    let start = Instant::now();
    let tick = Duration::from_millis(100);
    for i in 1..=30u32 {
        let wire_acked = u64::from(i) * 2_500_000;
        reduce.tick(start + tick * i, wire_acked, 50_000, waiting * i);
    }
    reduce
        .auto
        .as_ref()
        .map(crate::pba::ReductionController::link_bandwidth)
        .unwrap_or_default()
}

#[test]
fn frames_waiting_for_a_connection_make_a_period_measure_the_link() {
    // Held back half of each tick (a paced session): the link's 25 MB/s.
    let held = bandwidth_after(Duration::from_millis(50));
    assert!((held - 25e6).abs() < 2.5e6, "{held}");
    // Never held back: only a lower bound, counted twice over (the sender may be the limit).
    let free = bandwidth_after(Duration::ZERO);
    assert!(free > 40e6, "{free}");
}

/// The codec a session over a 150 ms link (internet: zstd-3 to start) settles on after a
/// second in which, every 100 ms, zstd-3 compressed `blocks` literal blocks of 72 kB in all to
/// a third, in 14 ms, and the wire took 1 MB with the frames waiting for a connection half
/// the time.
fn codec_after_slow_blocks(blocks: u64) -> crate::pba::Codec {
    use crate::amst::hde_frame::Observation;
    use crate::hde::CodecChoice;
    let mut reduce = SessionReduce::new(Reduction::Auto, true, Duration::from_millis(150), None);
    let start = Instant::now();
    let tick = Duration::from_millis(100);
    for i in 1..=10u32 {
        for _ in 0..blocks {
            reduce.shared.observe(Observation {
                choice: CodecChoice::Zstd(3),
                original: 72_000 / blocks,
                compressed: 24_000 / blocks,
                cpu: Duration::from_millis(14) / u32::try_from(blocks).unwrap(),
            });
        }
        reduce.tick(
            start + tick * i,
            u64::from(i) * 1_000_000,
            50_000,
            tick / 2 * i,
        );
    }
    reduce.shared.codec()
}

#[test]
fn small_literal_blocks_do_not_time_the_compressor() {
    use crate::pba::Codec;
    let cheaper = |c| matches!(c, Codec::None | Codec::Lz4 | Codec::Zstd1);
    // 60 blocks of 1.2 kB: the time is the compressor's cost per call, and PBA keeps zstd-3
    // or moves up for the ratio.
    let small = codec_after_slow_blocks(60);
    assert!(!cheaper(small), "{small}");
    // One block of 72 kB in 14 ms: zstd-3 runs at 5 MB/s, under the link's raw 10 MB/s, and
    // PBA moves to a cheaper codec.
    let large = codec_after_slow_blocks(1);
    assert!(cheaper(large), "{large}");
}

#[test]
fn only_periods_of_large_blocks_time_the_compressor() {
    use crate::amst::reduce::Sums;
    let cpu = Duration::from_millis(3);
    let sums = |blocks, original| Sums {
        blocks,
        original,
        compressed: original / 2,
        cpu,
    };
    assert_eq!(super::timed_cpu(&sums(4, 4 * super::MIN_TIMED_BLOCK)), cpu);
    assert_eq!(
        super::timed_cpu(&sums(4, 4 * super::MIN_TIMED_BLOCK - 1)),
        Duration::ZERO
    );
}
