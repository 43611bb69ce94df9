//! Behaviour of the pure link model.

use std::num::NonZeroU64;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::*;

const MS: u64 = 1_000_000;

fn params(delay_ms: u64, rate_bps: Option<u64>, loss: f64, queue: u64) -> LinkParams {
    LinkParams {
        delay: Duration::from_millis(delay_ms),
        jitter: Duration::ZERO,
        rate_bps: rate_bps.map(|r| NonZeroU64::new(r).unwrap()),
        loss_probability: loss,
        queue_limit_bytes: queue,
    }
}

fn model(p: &LinkParams) -> LinkModel<SmallRng> {
    LinkModel::new(p, SmallRng::seed_from_u64(7))
}

fn release(v: Verdict) -> Nanos {
    match v {
        Verdict::Forward { release } => release,
        other => panic!("expected forward, got {other:?}"),
    }
}

#[test]
fn lone_packet_gets_serialization_plus_delay() {
    // 1500 B at 100 Mbit/s = 120 µs, plus 25 ms.
    let mut m = model(&params(25, Some(100_000_000), 0.0, 1 << 20));
    let r = release(m.admit(Nanos(10 * MS), 1500));
    assert_eq!(r, Nanos(10 * MS + 120_000 + 25 * MS));
}

#[test]
fn unlimited_rate_adds_only_delay() {
    let mut m = model(&params(5, None, 0.0, 0));
    assert_eq!(release(m.admit(Nanos(0), 9000)), Nanos(5 * MS));
    assert_eq!(release(m.admit(Nanos(0), 9000)), Nanos(5 * MS));
    assert_eq!(m.backlog_bytes(Nanos(0)), 0);
}

#[test]
fn back_to_back_packets_are_spaced_by_serialization_time() {
    // 9000 B at 1 Gbit/s = 72 µs each.
    let mut m = model(&params(5, Some(1_000_000_000), 0.0, 1 << 30));
    let releases: Vec<Nanos> = (0..10).map(|_| release(m.admit(Nanos(0), 9000))).collect();
    for (i, r) in releases.iter().enumerate() {
        let i = u64::try_from(i).unwrap();
        assert_eq!(*r, Nanos((i + 1) * 72_000 + 5 * MS));
    }
}

#[test]
fn sustained_rate_matches_configured_rate() {
    // Offer 2× the rate for one second of arrivals; the departures must run at the rate.
    let rate = 20_000_000u64;
    let mut m = model(&params(40, Some(rate), 0.0, u64::MAX));
    let gap = 1500 * 8 * 1_000_000_000 / (2 * rate);
    let mut last = Nanos(0);
    let mut n = 0u64;
    for i in 0..(1_000_000_000 / gap) {
        last = release(m.admit(Nanos(i * gap), 1500));
        n += 1;
    }
    let busy_ns = last.0 - 40 * MS;
    let achieved = n * 1500 * 8 * 1_000_000_000 / busy_ns;
    assert!(
        achieved.abs_diff(rate) < rate / 1000,
        "achieved {achieved} bit/s"
    );
}

#[test]
fn backlog_drains_at_the_rate() {
    // 10 × 1000 B at 8 Mbit/s: 1 ms each, 10 kB queued.
    let mut m = model(&params(0, Some(8_000_000), 0.0, u64::MAX));
    for _ in 0..10 {
        m.admit(Nanos(0), 1000);
    }
    assert_eq!(m.backlog_bytes(Nanos(0)), 10_000);
    assert_eq!(m.backlog_bytes(Nanos(4 * MS)), 6_000);
    assert_eq!(m.backlog_bytes(Nanos(20 * MS)), 0);
}

#[test]
fn full_queue_tail_drops_and_recovers_after_draining() {
    // 1000 B at 8 Mbit/s = 1 ms each; queue of 5000 B.
    let mut m = model(&params(0, Some(8_000_000), 0.0, 5000));
    let verdicts: Vec<Verdict> = (0..8).map(|_| m.admit(Nanos(0), 1000)).collect();
    let forwarded = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Forward { .. }))
        .count();
    assert_eq!(forwarded, 5);
    assert!(
        verdicts[5..].iter().all(|v| *v == Verdict::QueueFull),
        "{verdicts:?}"
    );
    assert_eq!(m.stats().queue_drops, 3);
    // After 2 ms, two packets have left the serializer: two more fit.
    assert!(matches!(
        m.admit(Nanos(2 * MS), 1000),
        Verdict::Forward { .. }
    ));
    assert!(matches!(
        m.admit(Nanos(2 * MS), 1000),
        Verdict::Forward { .. }
    ));
    assert_eq!(m.admit(Nanos(2 * MS), 1000), Verdict::QueueFull);
}

#[test]
fn packet_larger_than_queue_passes_an_idle_link() {
    let mut m = model(&params(0, Some(8_000_000), 0.0, 100));
    assert!(matches!(m.admit(Nanos(0), 1500), Verdict::Forward { .. }));
    assert_eq!(m.admit(Nanos(0), 1500), Verdict::QueueFull);
}

#[test]
fn jitter_stays_within_bounds_and_never_reorders() {
    let mut p = params(20, None, 0.0, 0);
    p.jitter = Duration::from_millis(5);
    let mut m = model(&p);
    let mut prev = Nanos(0);
    let mut min_extra = u64::MAX;
    let mut max_extra = 0;
    let mut delayed_by_order = 0;
    for i in 0..10_000u64 {
        let now = Nanos(i * 100_000); // one packet every 0.1 ms, far less than the jitter
        let r = release(m.admit(now, 100));
        assert!(r >= prev, "packet {i} released before its predecessor");
        let extra = r.ns_since(now);
        assert!(extra >= 15 * MS, "packet {i} left {extra} ns after arrival");
        if extra > 25 * MS {
            delayed_by_order += 1;
        }
        min_extra = min_extra.min(extra);
        max_extra = max_extra.max(extra);
        prev = r;
    }
    // The jitter is really applied: the spread covers most of ±5 ms.
    assert!(min_extra < 16 * MS, "min {min_extra}");
    assert!(max_extra > 24 * MS, "max {max_extra}");
    // Holding order only delays; it never pushes a packet past the last packet's own due time,
    // which is at most +5 ms.
    assert_eq!(delayed_by_order, 0);
}

#[test]
fn jitter_larger_than_delay_never_releases_before_serialization() {
    let mut p = params(1, Some(8_000_000), 0.0, u64::MAX);
    p.jitter = Duration::from_millis(10);
    let mut m = model(&p);
    for i in 0..1000u64 {
        let now = Nanos(i * 10 * MS);
        let r = release(m.admit(now, 1000));
        assert!(r >= now.add_ns(MS), "released before serialization ended");
    }
}

#[test]
fn seeded_loss_rate_is_within_tolerance() {
    let mut m = model(&params(0, None, 0.01, 0));
    let n = 200_000u64;
    for _ in 0..n {
        m.admit(Nanos(0), 100);
    }
    let stats = m.stats();
    assert_eq!(stats.lost_packets + stats.forwarded_packets, n);
    // Expected 2000 ± 3σ (σ ≈ 44.5).
    assert!(
        stats.lost_packets.abs_diff(2000) < 140,
        "lost {}",
        stats.lost_packets
    );
}

#[test]
fn same_seed_gives_same_losses() {
    let p = params(0, None, 0.1, 0);
    let run = || {
        let mut m = model(&p);
        (0..1000)
            .map(|_| m.admit(Nanos(0), 100) == Verdict::Lost)
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn lost_packets_still_use_link_time() {
    let mut m = model(&params(0, Some(8_000_000), 1.0, u64::MAX));
    assert_eq!(m.admit(Nanos(0), 1000), Verdict::Lost);
    assert_eq!(m.backlog_bytes(Nanos(0)), 1000);
}

#[test]
fn zero_loss_never_drops() {
    let mut m = model(&params(0, None, 0.0, 0));
    for _ in 0..100_000 {
        assert!(matches!(m.admit(Nanos(0), 100), Verdict::Forward { .. }));
    }
}
