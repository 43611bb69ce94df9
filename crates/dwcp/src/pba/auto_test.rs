//! Decisions of the session-level PBA loop on synthetic measurements.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "synthetic byte counts from positive rates"
)]

use std::time::{Duration, Instant};

use super::*;

const MB: f64 = 1e6;

/// Runs `periods` one-second periods of a sender on a link of `link` bytes per second,
/// waiting for the window `blocked` of each second, compressing with whatever codec is in
/// force at `speed` bytes per second to `ratio`: the wire carries the smaller of the link and
/// what the compressor turns out.
fn run(
    ctl: &mut ReductionController,
    periods: u32,
    link: f64,
    blocked: f64,
    compress: impl Fn(Codec) -> (f64, f64),
) {
    let t0 = Instant::now();
    let mut acked = 0u64;
    let sample = |i: u32, acked: u64| SenderSample {
        at: t0 + Duration::from_secs(u64::from(i)),
        wire_acked: acked,
        blocked: Duration::from_secs_f64(blocked * f64::from(i)),
        rtt: Some(Duration::from_millis(40)),
    };
    ctl.on_sample(sample(0, 0));
    for i in 1..=periods {
        let codec = ctl.codec();
        let mut wire_rate = link;
        if codec != Codec::None {
            let (speed, ratio) = compress(codec);
            wire_rate = link.min(speed / ratio);
            let original = 64u64 << 20;
            let compressed = (original as f64 / ratio) as u64;
            ctl.observe(
                codec,
                original,
                compressed,
                Duration::from_secs_f64(original as f64 / speed),
            );
        }
        acked += wire_rate as u64;
        ctl.on_sample(sample(i, acked));
    }
}

fn controller(initial: Codec, guess: f64, cap: Option<f64>) -> ReductionController {
    let config = AutoConfig {
        first_after: Duration::from_secs(1),
        ..AutoConfig::default()
    };
    ReductionController::new(config, initial, guess, cap)
}

#[test]
fn a_slow_link_with_compressible_data_compresses_harder() {
    let mut ctl = controller(Codec::Lz4, 1.25e9, None);
    // 20 Mbit/s, the producer waits for the window most of the time; lz4 gets 3:1.
    run(&mut ctl, 5, 2.5 * MB, 0.9, |c| match c {
        Codec::Lz4 => (500.0 * MB, 3.0),
        _ => (c_speed(c), 4.0),
    });
    assert!(ctl.codec().zstd_level().is_some(), "{}", ctl.codec());
    assert!(ctl.link_bandwidth() < 3.0 * MB);
}

fn c_speed(c: Codec) -> f64 {
    c.typical().speed
}

#[test]
fn a_compressor_slower_than_the_link_gives_way_to_a_cheaper_codec() {
    let mut ctl = controller(Codec::Zstd9, 1.25e7, None);
    // zstd-9 compresses at 40 MB/s to 4:1, so 10 MB/s reach a 1 GB/s link and the producer
    // never waits: the link could take more. lz4 runs at 800 MB/s.
    run(&mut ctl, 10, 1000.0 * MB, 0.0, |c| match c {
        Codec::Lz4 => (800.0 * MB, 2.5),
        Codec::Zstd9 => (40.0 * MB, 4.0),
        other => (c_speed(other) / 2.0, 3.0),
    });
    let now = ctl.codec();
    assert!(matches!(now, Codec::Lz4 | Codec::None), "still {now}");
}

#[test]
fn incompressible_data_ends_up_uncompressed() {
    let mut ctl = controller(Codec::Lz4, 1.25e9, None);
    run(&mut ctl, 3, 100.0 * MB, 0.8, |_| (700.0 * MB, 1.0));
    assert_eq!(ctl.codec(), Codec::None);
}

#[test]
fn a_fast_link_with_a_slower_compressor_sends_raw() {
    let mut ctl = controller(Codec::Lz4, 1.25e9, None);
    // Loopback: 2 GB/s, lz4 at 600 MB/s with 2:1 cannot keep up; the producer never waits.
    run(&mut ctl, 4, 2000.0 * MB, 0.0, |_| (600.0 * MB, 2.0));
    assert_eq!(ctl.codec(), Codec::None);
}

#[test]
fn a_rate_limit_caps_the_bandwidth_decisions_use() {
    let ctl = controller(Codec::None, 1.25e9, Some(1.0 * MB));
    assert_eq!(ctl.link_bandwidth(), 1.0 * MB);
    let mut ctl = controller(Codec::None, 1.25e9, Some(1.0 * MB));
    run(&mut ctl, 3, 50.0 * MB, 0.9, |_| (500.0 * MB, 3.0));
    assert!(ctl.link_bandwidth() <= 1.0 * MB);
}

#[test]
fn no_decision_before_the_first_period() {
    let mut ctl = controller(Codec::Lz4, 1.25e9, None);
    let t0 = Instant::now();
    let at = |ms| SenderSample {
        at: t0 + Duration::from_millis(ms),
        wire_acked: ms * 1000,
        blocked: Duration::ZERO,
        rtt: None,
    };
    assert_eq!(ctl.on_sample(at(0)), None);
    assert_eq!(ctl.on_sample(at(500)), None);
    assert_eq!(ctl.decisions(), (0, 0));
}

#[test]
fn the_mode_follows_the_measured_link() {
    let mut ctl = controller(Codec::None, 1.25e9, None);
    let t0 = Instant::now();
    for i in 0..=4u64 {
        ctl.on_sample(SenderSample {
            at: t0 + Duration::from_secs(i),
            wire_acked: i * 1_000_000_000,
            blocked: Duration::from_millis(500 * i),
            rtt: Some(Duration::from_micros(300)),
        });
    }
    assert!(ctl.mode_measured());
    assert_eq!(ctl.mode(), Mode::Datacenter);

    let mut ctl = controller(Codec::Lz4, 1.25e9, None);
    run(&mut ctl, 3, 2.5 * MB, 0.9, |_| (500.0 * MB, 2.0));
    assert_eq!(ctl.mode(), Mode::Internet);
}

#[test]
fn a_session_shorter_than_a_period_is_classified_at_the_end() {
    let mut ctl = controller(Codec::None, 1.25e9, None);
    let t0 = Instant::now();
    let first = SenderSample {
        at: t0,
        wire_acked: 0,
        blocked: Duration::ZERO,
        rtt: None,
    };
    let end = SenderSample {
        at: t0 + Duration::from_millis(200),
        wire_acked: 400_000_000,
        blocked: Duration::ZERO,
        rtt: Some(Duration::from_micros(200)),
    };
    ctl.finish(first, end);
    assert!(ctl.mode_measured());
    assert_eq!(ctl.mode(), Mode::Datacenter);
}

#[test]
fn the_first_look_sets_the_initial_codec() {
    assert_eq!(
        initial_codec(Duration::from_micros(200), None),
        (Codec::None, Mode::Datacenter)
    );
    assert_eq!(
        initial_codec(Duration::from_millis(30), None),
        (Codec::Lz4, Mode::Hybrid)
    );
    assert_eq!(
        initial_codec(Duration::from_micros(200), Some(12.5 * MB)),
        (Codec::Zstd3, Mode::Internet)
    );
    assert_eq!(
        initial_codec(Duration::from_millis(150), None),
        (Codec::Zstd3, Mode::Internet)
    );
}

#[test]
fn a_first_period_still_ramping_up_does_not_lower_the_guess() {
    // An internet link guessed at 12.5 MB/s; the first quarter second, a few round trips of
    // slow start, delivers 0.45 MB/s and the producer never waited for the window.
    let mut ctl = ReductionController::new(AutoConfig::default(), Codec::Zstd3, 12.5 * MB, None);
    let t0 = Instant::now();
    let at = |ms: u64, acked: u64| SenderSample {
        at: t0 + Duration::from_millis(ms),
        wire_acked: acked,
        blocked: Duration::ZERO,
        rtt: Some(Duration::from_millis(150)),
    };
    ctl.on_sample(at(0, 0));
    ctl.on_sample(at(250, 112_500));
    assert!(
        ctl.link_bandwidth() >= 12.5 * MB,
        "{}",
        ctl.link_bandwidth()
    );
    // Whatever it chose compresses faster than the guessed link carries (not zstd-19).
    assert!(c_speed(ctl.codec()) > 12.5 * MB, "{}", ctl.codec());
    // A sender-limited period faster than the guess still raises it.
    ctl.on_sample(at(1250, 112_500 + 10_000_000));
    assert!(ctl.link_bandwidth() > 12.5 * MB, "{}", ctl.link_bandwidth());
}

#[test]
fn link_limited_periods_still_ramping_up_raise_the_bandwidth_but_never_lower_it() {
    // `intercontinental`, guessed at 12.5 MB/s: handshakes and slow start deliver 53 kB/s in
    // the first quarter second and 2 MB/s in the next second, frames waiting for connections
    // all along; then the link's 12.4 MB/s.
    let mut ctl = ReductionController::new(AutoConfig::default(), Codec::Zstd3, 12.5 * MB, None);
    let t0 = Instant::now();
    let mut acked = 0u64;
    let mut at_ms = 0u64;
    let mut period = |ctl: &mut ReductionController, ms: u64, rate: f64| {
        at_ms += ms;
        acked += (rate * ms as f64 / 1000.0) as u64;
        ctl.on_sample(SenderSample {
            at: t0 + Duration::from_millis(at_ms),
            wire_acked: acked,
            // Held back all along.
            blocked: Duration::from_millis(at_ms),
            rtt: Some(Duration::from_millis(150)),
        });
    };
    period(&mut ctl, 0, 0.0);
    for (ms, rate) in [(250, 53e3), (1000, 2.0 * MB)] {
        period(&mut ctl, ms, rate);
        let bw = ctl.link_bandwidth();
        assert!(bw >= 12.5 * MB, "after {rate} B/s: {bw}");
        assert!(c_speed(ctl.codec()) > 12.5 * MB, "{}", ctl.codec());
    }
    // Still growing, and above the guess: it raises the bandwidth.
    period(&mut ctl, 1000, 20.0 * MB);
    assert!(ctl.link_bandwidth() > 12.5 * MB, "{}", ctl.link_bandwidth());
    // No longer growing: the link's rate, below the guess, lowers it.
    for _ in 0..4 {
        period(&mut ctl, 1000, 5.0 * MB);
    }
    let bw = ctl.link_bandwidth();
    assert!(bw > 0.0 && bw <= 6.0 * MB, "{bw}");
}

#[test]
fn the_compressor_output_is_its_measured_speed_over_its_ratio() {
    let mut ctl = controller(Codec::Zstd3, 2.5 * MB, None);
    // 64 MiB compressed to a quarter in half a second.
    ctl.observe(Codec::Zstd3, 64 << 20, 16 << 20, Duration::from_millis(500));
    let output = ctl.compressor_output();
    let want = f64::from(32u32 << 20);
    assert!((output - want).abs() < 1.0, "{output} against {want}");
    assert!(
        controller(Codec::None, 2.5 * MB, None)
            .compressor_output()
            .is_infinite()
    );
}
