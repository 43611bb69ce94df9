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
