use std::time::{Duration, Instant};

/// [`CYCLE`] as a sample index.
#[allow(clippy::cast_possible_truncation, reason = "a small constant")]
const CYCLE_U32: u32 = CYCLE as u32;
/// [`BW_INTERVALS`] as a sample index.
#[allow(clippy::cast_possible_truncation, reason = "a small constant")]
const BW_U32: u32 = BW_INTERVALS as u32;

use super::{
    BW_INTERVALS, CYCLE, MIN_INTERVAL, Pacer, PacerSample, STARTUP_QUEUE_FACTOR, TokenBucket,
    gains, network_limited,
};

/// Probe and drain gains at [`RTT`] (intervals of two RTTs: an eighth up and down).
const PROBE: f64 = 1.125;
const DRAIN: f64 = 0.875;

const RTT: Duration = Duration::from_millis(150);
/// The interval the pacer uses at [`RTT`].
const STEP: Duration = Duration::from_millis(300);

/// A bottleneck of `rate` bytes per second with a queue: what a session paced at `cap`
/// delivers, and the RTT its queue adds. Always network-limited (frames wait in the queue).
struct Link {
    at: Instant,
    delivered: u64,
    held: Duration,
    /// Bytes standing in the bottleneck's queue.
    queue: f64,
    rate: f64,
    /// What the session offers uncapped: doubling every interval, as flows in startup.
    offer: f64,
}

impl Link {
    fn new(rate: f64) -> Self {
        Self {
            at: Instant::now(),
            delivered: 0,
            held: Duration::ZERO,
            queue: 0.0,
            rate,
            offer: rate / 8.0,
        }
    }

    /// One interval of sending at `cap` (uncapped: twice what it offered the interval before,
    /// from an eighth of the link's rate).
    fn step(&mut self, cap: Option<f64>) -> PacerSample {
        let secs = STEP.as_secs_f64();
        let offered = cap.unwrap_or(self.offer) * secs + self.queue;
        self.offer *= 2.0;
        let out = offered.min(self.rate * secs);
        self.queue = (offered - out).min(self.rate * RTT.as_secs_f64());
        self.delivered += crate::pba::auto::bytes_of(out);
        self.at += STEP;
        self.held += STEP;
        PacerSample {
            at: self.at,
            delivered: self.delivered,
            srtt: Some(RTT + Duration::from_secs_f64(self.queue / self.rate)),
            min_rtt: Some(RTT),
            backlogged: self.held,
        }
    }

    /// Runs `n` intervals under `pacer`; returns the caps it set.
    fn run(&mut self, pacer: &mut Pacer, n: usize) -> Vec<Option<f64>> {
        let mut caps = Vec::new();
        let first = self.step(pacer.cap());
        pacer.on_sample(first);
        for _ in 0..n {
            let s = self.step(pacer.cap());
            caps.push(pacer.on_sample(s));
        }
        caps
    }
}

fn mean(caps: &[Option<f64>]) -> f64 {
    caps.iter().map(|c| c.unwrap_or(f64::NAN)).sum::<f64>() / caps.len() as f64
}

#[test]
fn startup_is_uncapped_until_delivery_stops_growing_then_cruises_at_the_link_rate() {
    let rate = 12.5e6;
    let mut link = Link::new(rate);
    let mut pacer = Pacer::new();
    let caps = link.run(&mut pacer, 3 * CYCLE);
    assert_eq!(caps.first(), Some(&None), "startup sends uncapped");
    assert!(pacer.is_cruising());
    let cruise = caps.get(caps.len() - CYCLE..).unwrap_or_default();
    for cap in cruise {
        let cap = cap.unwrap_or(0.0);
        assert!(
            cap >= rate * DRAIN * 0.99 && cap <= rate * PROBE * 1.01,
            "cap {cap} strays from the link rate {rate}"
        );
    }
    let avg = mean(cruise);
    assert!(
        (avg / rate - 1.0).abs() < 0.05,
        "a cruise cycle averages {avg}, not about the link's {rate}"
    );
    assert!(
        link.queue < rate * RTT.as_secs_f64() * 0.5,
        "the queue stays under half a BDP"
    );
}

#[test]
fn the_cap_follows_a_link_that_gets_faster_or_slower() {
    let mut link = Link::new(10e6);
    let mut pacer = Pacer::new();
    link.run(&mut pacer, 3 * CYCLE);
    link.rate = 20e6;
    // Each cycle's probe finds more, until the faster link is full.
    let caps = link.run(&mut pacer, 5 * CYCLE);
    let best = caps.iter().flatten().copied().fold(0.0, f64::max);
    assert!(
        best >= 20e6,
        "the cap never reached the faster link: {best}"
    );
    assert!((pacer.bandwidth() / 20e6 - 1.0).abs() < 0.05);

    link.rate = 5e6;
    let caps = link.run(&mut pacer, BW_INTERVALS + CYCLE);
    let last = caps.get(caps.len() - CYCLE..).unwrap_or_default();
    let worst = last.iter().flatten().copied().fold(0.0, f64::max);
    assert!(
        worst <= 5e6 * PROBE * 1.01,
        "the old rate was not forgotten: {worst}"
    );
}

#[test]
fn a_queue_in_the_rtt_is_taken_out_and_the_estimate_restarts_from_the_bottleneck() {
    let mut pacer = Pacer::new();
    let start = Instant::now();
    let sample = |i: u32, bytes: u64, srtt: Duration| PacerSample {
        at: start + STEP * i,
        delivered: u64::from(i) * bytes,
        srtt: Some(srtt),
        min_rtt: Some(RTT),
        backlogged: STEP * i,
    };
    pacer.on_sample(sample(0, 3_000_000, RTT));
    // Flat delivery with a queue ends startup at once.
    pacer.on_sample(sample(1, 3_000_000, RTT));
    assert!(!pacer.is_cruising());
    pacer.on_sample(sample(2, 3_000_000, RTT * 2));
    assert!(pacer.is_cruising());
    // A queue of one BDP (RTT twice the minimum): the next interval sends less by what brings
    // it back to a quarter of a BDP, 0.75 × RTT of delay out of a 2-RTT interval.
    let rate = 3_000_000.0 / STEP.as_secs_f64();
    let cap = pacer
        .on_sample(sample(3, 3_000_000, RTT * 2))
        .unwrap_or(0.0);
    let expected = rate * (1.0_f64 - 0.75 / 2.0).max(super::MIN_GAIN);
    assert!((cap - expected).abs() < 1.0, "{cap} != {expected}");

    // Without a queue the probe comes back within a cycle.
    let caps: Vec<f64> = (4..4 + CYCLE_U32)
        .filter_map(|i| pacer.on_sample(sample(i, 3_000_000, RTT)))
        .collect();
    assert!(caps.iter().any(|c| *c > rate * 1.1), "{caps:?}");

    // Higher samples from before are forgotten once a queue shows what the bottleneck carries.
    let mut pacer = Pacer::new();
    pacer.on_sample(sample(0, 4_000_000, RTT));
    for i in 1..=4 {
        pacer.on_sample(sample(i, 4_000_000, RTT));
    }
    assert!(pacer.is_cruising());
    let at = |i: u32, delivered: u64, srtt: Duration| PacerSample {
        at: start + STEP * i,
        delivered,
        srtt: Some(srtt),
        min_rtt: Some(RTT),
        backlogged: STEP * i,
    };
    let cap = pacer.on_sample(at(5, 4 * 4_000_000 + 3_000_000, RTT * 2));
    assert!(cap.is_some_and(|c| c < rate), "{cap:?}");
    assert!(
        (pacer.bandwidth() - rate).abs() < 1.0,
        "{}",
        pacer.bandwidth()
    );
}

#[test]
fn intervals_the_source_set_the_pace_of_neither_end_startup_nor_lower_the_estimate() {
    let mut pacer = Pacer::new();
    let start = Instant::now();
    // A source trickling 1 MB per interval, never waiting: startup never ends on it.
    for i in 0..20u32 {
        let cap = pacer.on_sample(PacerSample {
            at: start + STEP * i,
            delivered: u64::from(i) * 1_000_000,
            srtt: Some(RTT),
            min_rtt: Some(RTT),
            backlogged: Duration::ZERO,
        });
        assert_eq!(cap, None);
    }
    assert!(!pacer.is_cruising());

    // Network-limited at 12.5 MB/s until cruising, then the source slows down again.
    let mut link = Link::new(12.5e6);
    let mut pacer = Pacer::new();
    link.run(&mut pacer, 3 * CYCLE);
    let bandwidth = pacer.bandwidth();
    for i in 1..=3 * BW_U32 {
        pacer.on_sample(PacerSample {
            at: link.at + STEP * i,
            delivered: link.delivered + u64::from(i) * 100_000,
            srtt: Some(RTT),
            min_rtt: Some(RTT),
            backlogged: link.held,
        });
    }
    assert!((pacer.bandwidth() - bandwidth).abs() < 1.0);
    assert!(pacer.cap().is_some_and(|c| c >= bandwidth * DRAIN));
}

/// `continent`: 25 MB/s, 50 ms, a queue of one BDP; samples every 100 ms, intervals of 200 ms
/// (the first opens on the first sample). Connections in startup offer `offered` bytes per
/// second on the first sample and double it every sample. Asserts that startup ends at the
/// first sample with a queue of a quarter BDP, `expected`, and returns the queue two samples
/// later and the bytes that overflowed.
fn startup_on_continent(offered: f64, expected: u32) -> (f64, f64) {
    let (rate, rtt, tick) = (25e6, Duration::from_millis(50), Duration::from_millis(100));
    let bdp = rate * rtt.as_secs_f64();
    let start = Instant::now();
    let mut pacer = Pacer::new();
    let (mut queue, mut delivered, mut offered, mut dropped) = (0.0f64, 0u64, offered, 0.0f64);
    let (mut ended_at, mut drained) = (None, f64::MAX);
    for i in 1..=20u32 {
        let cap = pacer.cap();
        let sent = cap.unwrap_or(offered) * tick.as_secs_f64() + queue;
        let out = sent.min(rate * tick.as_secs_f64());
        queue = sent - out;
        dropped += (queue - bdp).max(0.0);
        queue = queue.min(bdp);
        delivered += crate::pba::auto::bytes_of(out);
        offered *= 2.0;
        let srtt = rtt + Duration::from_secs_f64(queue / rate);
        let cap = pacer.on_sample(PacerSample {
            at: start + tick * i,
            delivered,
            srtt: Some(srtt),
            min_rtt: Some(rtt),
            backlogged: tick * i,
        });
        let full = srtt.as_secs_f64() > rtt.as_secs_f64() * STARTUP_QUEUE_FACTOR + 0.002;
        match ended_at {
            None if full => {
                // The first sample with a queue caps the session, whether its interval
                // closed or not, at no more than the link's rate.
                let cap = cap.unwrap_or(0.0);
                assert!(
                    (rate * 0.7..=rate).contains(&cap),
                    "cap {cap} at the first queue, link {rate}"
                );
                assert!(pacer.is_cruising());
                ended_at = Some(i);
            }
            None => assert_eq!(cap, None, "sample {i}: uncapped before any queue"),
            Some(end) if i == end + 2 => drained = queue,
            Some(_) => {}
        }
    }
    assert_eq!(ended_at, Some(expected), "startup ends when the link fills");
    assert!(
        drained < bdp / 2.0,
        "two samples later the queue holds {drained}"
    );
    (drained, dropped)
}

#[test]
fn startup_ends_at_the_first_sample_that_shows_the_bottleneck_full() {
    // Offered 32 MB/s on the fourth sample: in the middle of the interval opened on the third.
    let (_, dropped) = startup_on_continent(4e6, 4);
    assert!(dropped <= 0.0, "{dropped} bytes overflowed the queue");
    // Offered 32 MB/s on the third sample, which closes the first interval.
    let (_, dropped) = startup_on_continent(8e6, 3);
    assert!(dropped <= 0.0, "{dropped} bytes overflowed the queue");
    let (start, rtt, tick) = (
        Instant::now(),
        Duration::from_millis(50),
        Duration::from_millis(100),
    );

    // A queue while the source set the pace (no frame waited): startup goes on.
    let mut pacer = Pacer::new();
    for i in 0..4u32 {
        let cap = pacer.on_sample(PacerSample {
            at: start + tick * i,
            delivered: u64::from(i) * 1_000_000,
            srtt: Some(rtt * 3),
            min_rtt: Some(rtt),
            backlogged: Duration::ZERO,
        });
        assert_eq!(cap, None);
    }
    assert!(!pacer.is_cruising());
}

#[test]
fn no_rtt_no_cap_and_a_window_without_delivery_starts_over() {
    let mut pacer = Pacer::new();
    let start = Instant::now();
    let at = |i: u32, delivered: u64, min_rtt: Option<Duration>| PacerSample {
        at: start + MIN_INTERVAL * i,
        delivered,
        srtt: min_rtt,
        min_rtt,
        backlogged: MIN_INTERVAL * i,
    };
    for i in 0..10 {
        assert_eq!(pacer.on_sample(at(i, u64::from(i) * 1_000_000, None)), None);
    }
    let rtt = Some(Duration::from_millis(20));
    for i in 10..20 {
        pacer.on_sample(at(i, 5_000_000, rtt));
    }
    assert_eq!(pacer.cap(), None, "nothing delivered: no rate to pace at");
    assert!(!pacer.is_cruising());
}

#[test]
fn a_probe_queues_at_most_a_quarter_bdp_however_many_round_trips_an_interval_spans() {
    assert_eq!(gains(RTT, STEP), (PROBE, DRAIN));
    // metro: 10 ms round trips, 200 ms intervals.
    let rtt = Duration::from_millis(10);
    let (probe, drain) = gains(rtt, MIN_INTERVAL);
    let queued_bdp = (probe - 1.0) * MIN_INTERVAL.as_secs_f64() / rtt.as_secs_f64();
    assert!(
        (queued_bdp - super::PROBE_QUEUE).abs() < 1e-9,
        "{queued_bdp}"
    );
    assert!((probe + drain - 2.0).abs() < 1e-9);
    // Never more than a quarter up, even when an interval is shorter than it should be.
    assert_eq!(
        gains(RTT, Duration::from_millis(10)).0,
        super::MAX_PROBE_GAIN
    );
}

#[test]
fn the_token_bucket_holds_writers_to_the_rate_whoever_draws() {
    let start = Instant::now();
    let mut bucket = TokenBucket::new(64 << 10);
    assert!(!bucket.is_capped());
    assert_eq!(bucket.take(start, 10 << 20), Duration::ZERO);
    // 10 MB/s: the bucket starts empty, so each 64 KiB draw waits its turn, the waits adding
    // up whether one writer or several draw.
    bucket.set_rate(start, Some(10e6));
    assert!(bucket.is_capped());
    let mut last = Duration::ZERO;
    for _ in 0..10 {
        let wait = bucket.take(start, 64 << 10);
        assert!(wait > last, "{wait:?} after {last:?}");
        last = wait;
    }
    let expected = 10.0 * f64::from(64u32 << 10) / 10e6;
    assert!((last.as_secs_f64() - expected).abs() < 1e-6, "{last:?}");
    // Time pays the debt back, and an idle bucket saves at most its depth.
    let later = start + Duration::from_secs(10);
    assert_eq!(bucket.take(later, 64 << 10), Duration::ZERO);
    let depth = 10e6 * super::BUCKET_DEPTH.as_secs_f64();
    let over = bucket.take(later, 2 * crate::pba::auto::bytes_of(depth));
    assert!(over > Duration::ZERO);
    // Lifting the cap stops all waiting.
    bucket.set_rate(later, None);
    assert_eq!(bucket.take(later, 1 << 30), Duration::ZERO);
}

#[test]
fn a_span_counts_as_network_limited_when_frames_waited_a_quarter_of_it() {
    let span = Duration::from_secs(4);
    assert!(network_limited(span, span));
    assert!(network_limited(Duration::from_secs(1), span));
    // A migration between its passes, a slow pipe: the frames hardly ever waited.
    assert!(!network_limited(Duration::from_millis(999), span));
    assert!(!network_limited(Duration::ZERO, span));
}

#[test]
fn probes_the_link_takes_whole_follow_each_other_until_one_finds_it_full() {
    let mut link = Link::new(10e6);
    let mut pacer = Pacer::new();
    link.run(&mut pacer, 3 * CYCLE);
    assert!((pacer.bandwidth() / 10e6 - 1.0).abs() < 0.05);
    // The link becomes four times as fast: a probe per cycle would take eleven cycles to
    // find it (1.125^11 ≈ 3.7); probing again after every probe that found more, two do.
    link.rate = 40e6;
    let caps = link.run(&mut pacer, 2 * CYCLE);
    let best = caps.iter().flatten().copied().fold(0.0, f64::max);
    assert!(best >= 40e6, "the cap reached only {best}");
    // Once the link is full the cycle is back: at most one probe in the last cycle, and the
    // queue under half a BDP.
    let caps = link.run(&mut pacer, 2 * CYCLE);
    let last = caps.get(caps.len() - CYCLE..).unwrap_or_default();
    let probes = last
        .iter()
        .flatten()
        .filter(|&&c| c > pacer.bandwidth() * 1.05)
        .count();
    assert!(
        probes <= 1,
        "{probes} probes in a cycle at the link's rate: {last:?}"
    );
    assert!((pacer.bandwidth() / 40e6 - 1.0).abs() < 0.05);
    assert!(link.queue < 40e6 * RTT.as_secs_f64() * 0.5);
}

#[test]
fn a_queue_in_the_first_round_trip_does_not_end_startup() {
    let mut pacer = Pacer::new();
    let start = Instant::now();
    // A queue of 58 ms over a 150 ms path from the first sample on (another session's burst),
    // frames waiting for connections, a few kilobytes delivered so far.
    let sample = |ms: u64, delivered: u64| PacerSample {
        at: start + Duration::from_millis(ms),
        delivered,
        srtt: Some(Duration::from_millis(208)),
        min_rtt: Some(Duration::from_millis(150)),
        backlogged: Duration::from_millis(ms),
    };
    for (ms, delivered) in [(0, 0), (10, 300), (20, 1_000), (100, 20_000), (140, 60_000)] {
        assert_eq!(pacer.on_sample(sample(ms, delivered)), None, "at {ms} ms");
    }
    assert!(!pacer.is_cruising());
    // A round trip on, the queue still there: the bottleneck is full, at what it delivered.
    let cap = pacer.on_sample(sample(160, 1_300_000));
    assert!(pacer.is_cruising());
    assert!(cap.is_some_and(|c| c > 1e6), "{cap:?}");
}
