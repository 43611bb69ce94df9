//! Tests for the compression and stream-count choices: exact decisions on constructed links
//! and data, hysteresis, incompressible data, and the stream formula on the standard links.

use super::*;

const MBIT: f64 = 125_000.0;
const GBIT: f64 = 125_000_000.0;

/// A table where zstd-3 measured a ratio of 4 (text, logs): the others scale from it.
fn text() -> CodecTable {
    let mut t = CodecTable::default();
    t.observe(Codec::Zstd3, 4_000_000, 1_000_000, Duration::ZERO);
    t
}

fn pick(table: &CodecTable, link_bw: f64, cores: u32) -> Codec {
    CompressionChooser::new(Codec::None).decide(table, link_bw, cores)
}

#[test]
fn unmeasured_codecs_scale_from_the_measured_one() {
    let t = text();
    assert!((t.ratio(Codec::Zstd3) - 4.0).abs() < 1e-12);
    // 1 + (typical - 1) × (4 - 1) / (3.2 - 1)
    assert!((t.ratio(Codec::Zstd19) - (1.0 + 3.0 * 3.0 / 2.2)).abs() < 1e-12);
    assert!((t.ratio(Codec::Lz4) - (1.0 + 1.1 * 3.0 / 2.2)).abs() < 1e-12);
    assert!((t.ratio(Codec::None) - 1.0).abs() < f64::EPSILON);
}

#[test]
fn slow_link_with_text_compresses_hardest() {
    // 10 Mbit/s: zstd-19 delivers 1.25 MB/s × 5.09 = 6.4 MB/s, under its 4 × 3 MB/s of CPU.
    assert_eq!(pick(&text(), 10.0 * MBIT, 4), Codec::Zstd19);
    // On one core zstd-19 manages only 3 MB/s: zstd-9 (5.6 MB/s) wins.
    assert_eq!(pick(&text(), 10.0 * MBIT, 1), Codec::Zstd9);
}

#[test]
fn mid_speed_links_get_mid_levels() {
    // 100 and 200 Mbit/s: zstd-9's ratio wins and 240 MB/s of CPU is not the limit.
    assert_eq!(pick(&text(), 100.0 * MBIT, 4), Codec::Zstd9);
    assert_eq!(pick(&text(), 200.0 * MBIT, 4), Codec::Zstd9);
    // 1 Gbit/s: zstd-6 and zstd-9 are CPU-bound (440, 240 MB/s); zstd-3 delivers 500.
    assert_eq!(pick(&text(), GBIT, 4), Codec::Zstd3);
}

#[test]
fn fast_link_compresses_lightly_or_not_at_all() {
    // 10 Gbit/s on 4 cores: lz4 (2.8 GB/s of CPU) beats raw (1.25 GB/s).
    assert_eq!(pick(&text(), 10.0 * GBIT, 4), Codec::Lz4);
    // On one core lz4's 700 MB/s is below the link: raw.
    assert_eq!(pick(&text(), 10.0 * GBIT, 1), Codec::None);
    // 100 Gbit/s: no compressor keeps up.
    assert_eq!(pick(&text(), 100.0 * GBIT, 16), Codec::None);
}

#[test]
fn incompressible_data_goes_raw_on_any_link() {
    let mut t = CodecTable::default();
    // Random data: zstd-1 made it slightly bigger.
    t.observe(Codec::Zstd1, 1_000_000, 1_000_040, Duration::from_millis(2));
    for link in [MBIT, 10.0 * MBIT, GBIT, 10.0 * GBIT] {
        assert_eq!(pick(&t, link, 8), Codec::None, "at {link} B/s");
    }
    let mut c = CompressionChooser::new(Codec::Zstd19);
    assert_eq!(
        c.decide(&t, 10.0 * MBIT, 8),
        Codec::None,
        "leaves a codec that costs"
    );
}

#[test]
fn small_gains_do_not_switch_and_large_ones_do() {
    let t = text();
    let mut c = CompressionChooser::new(Codec::None);
    assert_eq!(c.decide(&t, GBIT, 4), Codec::Zstd3);
    // At 760 Mbit/s zstd-6 (4.27 × 95 MB/s = 406) beats zstd-3 (380) by only 6.8 %.
    assert_eq!(best_codec(&t, 760.0 * MBIT, 4), Codec::Zstd6);
    for _ in 0..10 {
        assert_eq!(c.decide(&t, 760.0 * MBIT, 4), Codec::Zstd3);
        assert_eq!(c.decide(&t, GBIT, 4), Codec::Zstd3);
    }
    // At 200 Mbit/s zstd-9 beats zstd-3 by 11.9 %: switch.
    assert_eq!(c.decide(&t, 200.0 * MBIT, 4), Codec::Zstd9);
    assert_eq!(c.current(), Codec::Zstd9);
    // Back at 1 Gbit/s zstd-9 is CPU-bound (240 MB/s) and the cheaper zstd-3 does better.
    assert_eq!(c.decide(&t, GBIT, 4), Codec::Zstd3);
}

#[test]
fn a_cheaper_codec_that_does_as_well_is_taken_at_once() {
    // zstd-6 and zstd-3 on 10 Gbit/s: both CPU-bound, lz4 best (2.8 GB/s vs 1.2 GB/s).
    let mut c = CompressionChooser::new(Codec::Zstd6);
    assert_eq!(c.decide(&text(), 10.0 * GBIT, 4), Codec::Lz4);
    // From lz4 at 1 Gbit/s, zstd-3 (500 MB/s) beats lz4 (312) by far more than 10 %.
    assert_eq!(c.decide(&text(), GBIT, 4), Codec::Zstd3);
}

#[test]
fn redecides_as_the_link_changes_mid_transfer() {
    let t = text();
    let mut c = CompressionChooser::new(Codec::None);
    let seq: Vec<Codec> = [10.0 * GBIT, GBIT, 10.0 * MBIT, GBIT, 10.0 * GBIT]
        .into_iter()
        .map(|bw| c.decide(&t, bw, 4))
        .collect();
    assert_eq!(
        seq,
        vec![
            Codec::Lz4,
            Codec::Zstd3,
            Codec::Zstd19,
            Codec::Zstd3,
            Codec::Lz4
        ]
    );
}

#[test]
fn unusable_bandwidth_keeps_the_current_codec() {
    let mut c = CompressionChooser::new(Codec::Zstd3);
    for bw in [f64::NAN, 0.0, -1.0, f64::INFINITY] {
        assert_eq!(c.decide(&text(), bw, 4), Codec::Zstd3);
    }
}

#[test]
fn observations_update_ratio_and_speed() {
    let mut t = CodecTable::default();
    assert!((t.speed(Codec::Lz4) - 700e6).abs() < 1.0);
    t.observe(Codec::Lz4, 1_000_000, 500_000, Duration::from_millis(1));
    assert!((t.ratio(Codec::Lz4) - 2.0).abs() < 1e-12);
    assert!((t.speed(Codec::Lz4) - 1e9).abs() < 1.0);
    // The second measurement moves the estimate by OBSERVE_GAIN of the difference.
    t.observe(Codec::Lz4, 1_000_000, 250_000, Duration::from_millis(1));
    assert!((t.ratio(Codec::Lz4) - 2.6).abs() < 1e-12);
    // Nothing is learnt from raw or empty observations.
    t.observe(Codec::None, 1_000, 1_000, Duration::from_millis(1));
    t.observe(Codec::Zstd1, 0, 0, Duration::ZERO);
    assert!((t.ratio(Codec::Zstd1) - (1.0 + 1.9 * (2.6 - 1.0) / 1.1)).abs() < 1e-12);
    t.forget_ratios();
    assert!((t.ratio(Codec::Lz4) - 2.1).abs() < 1e-12);
    assert!((t.speed(Codec::Lz4) - 1e9).abs() < 1.0, "speeds are kept");
}

#[test]
fn untimed_codecs_scale_their_speed_from_the_timed_one() {
    let mut t = CodecTable::default();
    // zstd-3 at 50 MB/s, a sixth of its typical 300, with a ratio of 2.5.
    t.observe(
        Codec::Zstd3,
        5_000_000,
        2_000_000,
        Duration::from_millis(100),
    );
    assert!((t.speed(Codec::Zstd3) - 50e6).abs() < 1.0);
    assert!((t.speed(Codec::Zstd6) - 110e6 / 6.0).abs() < 1.0);
    assert!((t.speed(Codec::Zstd1) - 500e6 / 6.0).abs() < 1.0);
    // Over 25 MB/s zstd-3 is held to 50 MB/s by the CPU: zstd-6 would be held to 18 MB/s, not
    // deliver 25 × 2.6; the cheaper zstd-1 (83 MB/s of CPU) delivers more, and is taken.
    let mut chooser = CompressionChooser::new(Codec::Zstd3);
    assert_eq!(chooser.decide(&t, 25e6, 1), Codec::Zstd1);
    // Ratios forgotten (new data): speeds still scale.
    t.forget_ratios();
    assert!((t.speed(Codec::Zstd9) - 60e6 / 6.0).abs() < 1.0);
}

#[test]
fn codec_names() {
    let names: Vec<String> = Codec::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "none", "lz4", "zstd-1", "zstd-3", "zstd-6", "zstd-9", "zstd-19"
        ]
    );
}

fn streams(mbit: f64, rtt_ms: u64, loss: f64) -> u16 {
    suggest_streams(
        mbit * MBIT,
        Duration::from_millis(rtt_ms),
        loss,
        StreamParams::default(),
    )
}

#[test]
fn stream_count_on_the_standard_links() {
    // Window bound only: 1 Gbit/s × 10 ms = 1.25 MB fits one 3 MiB window.
    assert_eq!(streams(1_000.0, 10, 0.0), 1, "metro");
    // 10 Gbit/s × 10 ms = 12.5 MB: 3.97 windows.
    assert_eq!(streams(10_000.0, 10, 0.0), 4);
    // Loss bound: Mathis gives 1.12 MB/s per connection at 50 ms and 0.1 %: 22.4 → 23.
    assert_eq!(streams(200.0, 50, 0.001), 23, "continent");
    // 80 ms and 1 %: 221 kB/s per connection for 2.5 MB/s: 11.3 → 12.
    assert_eq!(streams(20.0, 80, 0.01), 12, "edge");
    // 150 ms and 0.5 % would need 76: capped.
    assert_eq!(streams(100.0, 150, 0.005), 64, "intercontinental");
    // Under BBR the caller passes no loss: one window per 3 MiB of BDP.
    assert_eq!(streams(100.0, 150, 0.0), 1);
}

#[test]
fn stream_count_stays_in_range_on_odd_inputs() {
    let p = StreamParams::default();
    assert_eq!(
        suggest_streams(f64::NAN, Duration::from_millis(10), 0.0, p),
        1
    );
    assert_eq!(suggest_streams(1e9, Duration::ZERO, 0.5, p), 1);
    assert_eq!(
        suggest_streams(1e12, Duration::from_secs(1), f64::NAN, p),
        64
    );
    assert_eq!(suggest_streams(1e12, Duration::from_secs(1), 2.0, p), 64);
    let small = StreamParams {
        max_streams: 0,
        ..p
    };
    assert_eq!(suggest_streams(1e12, Duration::from_secs(1), 0.0, small), 1);
    let huge = StreamParams {
        max_streams: 1_000,
        ..p
    };
    assert_eq!(suggest_streams(1e12, Duration::from_secs(1), 0.0, huge), 64);
}
