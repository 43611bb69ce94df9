//! Tests for mode detection: each class, the boundaries, hysteresis against oscillating
//! samples, and a property that noise cannot change the mode more often than the
//! persistence allows.

use proptest::prelude::*;

use super::*;

const GBIT: f64 = FAST_LINK_BYTES_PER_SEC;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sample(rtt_ms: f64, gbit: f64) -> LinkSample {
    LinkSample::new(Duration::from_secs_f64(rtt_ms / 1000.0), gbit * GBIT)
}

/// A detector that has settled in `mode` after one sample of it.
fn settled_in(s: LinkSample) -> ModeDetector {
    let mut d = ModeDetector::default();
    d.on_sample(s);
    d
}

#[test]
fn classifies_each_standard_link() {
    // The standard links of ARCHITECTURE.md, with `dc` measured at 10 Gbit/s on loopback.
    assert_eq!(Mode::classify(sample(0.5, 10.0)), Mode::Datacenter);
    assert_eq!(Mode::classify(sample(10.0, 1.0)), Mode::Hybrid, "metro");
    assert_eq!(
        Mode::classify(sample(50.0, 0.2)),
        Mode::Internet,
        "continent"
    );
    assert_eq!(Mode::classify(sample(150.0, 0.1)), Mode::Internet);
    assert_eq!(Mode::classify(sample(80.0, 0.02)), Mode::Internet, "edge");
}

#[test]
fn boundaries_follow_the_strict_and_inclusive_thresholds() {
    // RTT < 10 ms is datacenter; exactly 10 ms is hybrid.
    assert_eq!(
        Mode::classify(LinkSample::new(ms(10) - Duration::from_nanos(1), GBIT)),
        Mode::Datacenter
    );
    assert_eq!(Mode::classify(LinkSample::new(ms(10), GBIT)), Mode::Hybrid);
    // RTT > 50 ms is internet; exactly 50 ms is still hybrid.
    assert_eq!(Mode::classify(LinkSample::new(ms(50), GBIT)), Mode::Hybrid);
    assert_eq!(
        Mode::classify(LinkSample::new(ms(50) + Duration::from_nanos(1), GBIT)),
        Mode::Internet
    );
    // Exactly 1 Gbit/s is fast; one byte per second less is internet, whatever the RTT.
    assert_eq!(
        Mode::classify(LinkSample::new(ms(1), GBIT)),
        Mode::Datacenter
    );
    assert_eq!(
        Mode::classify(LinkSample::new(ms(1), GBIT - 1.0)),
        Mode::Internet
    );
    assert_eq!(
        Mode::classify(LinkSample::new(ms(20), GBIT - 1.0)),
        Mode::Internet
    );
}

#[test]
fn starts_as_internet_and_adopts_the_first_sample_at_once() {
    let mut d = ModeDetector::default();
    assert_eq!(d.mode(), Mode::Internet);
    assert!(!d.is_measured());
    assert_eq!(d.on_sample(sample(0.5, 10.0)), Some(Mode::Datacenter));
    assert!(d.is_measured());
    assert_eq!(d.mode(), Mode::Datacenter);

    let mut d = ModeDetector::default();
    assert_eq!(d.on_sample(sample(80.0, 0.02)), None, "already internet");
    assert!(d.is_measured());
}

#[test]
fn switches_after_three_consecutive_samples_outside() {
    let mut d = settled_in(sample(1.0, 10.0));
    assert_eq!(d.on_sample(sample(100.0, 0.1)), None);
    assert_eq!(d.on_sample(sample(100.0, 0.1)), None);
    assert_eq!(d.on_sample(sample(100.0, 0.1)), Some(Mode::Internet));
    assert_eq!(d.mode(), Mode::Internet);
}

#[test]
fn a_sample_back_inside_resets_the_count() {
    let mut d = settled_in(sample(1.0, 10.0));
    for _ in 0..10 {
        assert_eq!(d.on_sample(sample(100.0, 0.1)), None);
        assert_eq!(d.on_sample(sample(100.0, 0.1)), None);
        assert_eq!(d.on_sample(sample(1.0, 10.0)), None);
    }
    assert_eq!(d.mode(), Mode::Datacenter);
}

#[test]
fn the_margin_keeps_the_current_mode_near_a_threshold() {
    // In datacenter, 11 ms (within 20 % of 10 ms) and 0.85 Gbit/s still count as datacenter.
    let mut d = settled_in(sample(1.0, 10.0));
    for _ in 0..20 {
        assert_eq!(d.on_sample(sample(11.0, 10.0)), None);
        assert_eq!(d.on_sample(sample(5.0, 0.85)), None);
    }
    assert_eq!(d.mode(), Mode::Datacenter);
    // 12.5 ms is beyond the margin: hybrid after three samples.
    d.on_sample(sample(12.5, 10.0));
    d.on_sample(sample(12.5, 10.0));
    assert_eq!(d.on_sample(sample(12.5, 10.0)), Some(Mode::Hybrid));
    // And back in hybrid, 9 ms is within the margin of hybrid's lower edge.
    for _ in 0..20 {
        assert_eq!(d.on_sample(sample(9.0, 10.0)), None);
    }
    assert_eq!(d.mode(), Mode::Hybrid);
}

#[test]
fn oscillating_around_the_internet_threshold_does_not_flap() {
    // A link whose RTT swings 45..55 ms around the 50 ms threshold, at 2 Gbit/s.
    for start in [sample(45.0, 2.0), sample(55.0, 2.0)] {
        let mut d = settled_in(start);
        let first = d.mode();
        for i in 0..300 {
            let rtt = if i % 2 == 0 { 45.0 } else { 55.0 };
            assert_eq!(d.on_sample(sample(rtt, 2.0)), None, "flapped at {i}");
        }
        assert_eq!(d.mode(), first);
    }
}

#[test]
fn oscillating_around_the_bandwidth_threshold_does_not_flap() {
    let mut d = settled_in(sample(2.0, 1.1));
    assert_eq!(d.mode(), Mode::Datacenter);
    for i in 0..300 {
        let gbit = [1.1, 0.9, 0.95, 1.05][i % 4];
        assert_eq!(d.on_sample(sample(2.0, gbit)), None, "flapped at {i}");
    }
}

#[test]
fn ignores_samples_without_a_usable_bandwidth() {
    let mut d = settled_in(sample(1.0, 10.0));
    for bad in [f64::NAN, f64::INFINITY, -1.0] {
        for _ in 0..5 {
            assert_eq!(d.on_sample(LinkSample::new(ms(200), bad)), None);
        }
    }
    assert_eq!(d.mode(), Mode::Datacenter);
}

#[test]
fn out_of_range_hysteresis_is_clamped() {
    let mut d = ModeDetector::new(Hysteresis {
        margin: f64::NAN,
        switch_after: 0,
    });
    d.on_sample(sample(1.0, 10.0));
    // switch_after 0 behaves as 1: the next sample outside switches.
    assert_eq!(d.on_sample(sample(100.0, 0.1)), Some(Mode::Internet));
}

#[test]
fn names_round_trip_through_display_and_from_str() {
    for m in [Mode::Datacenter, Mode::Internet, Mode::Hybrid] {
        assert_eq!(m.to_string().parse::<Mode>().unwrap(), m);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            format!("\"{m}\""),
            "serde uses the same names"
        );
    }
    assert_eq!("wan".parse::<Mode>(), Err(ParseModeError("wan".to_owned())));
}

#[test]
fn defaults_differ_by_mode_as_documented() {
    let dc = Mode::Datacenter.defaults();
    let hy = Mode::Hybrid.defaults();
    let inet = Mode::Internet.defaults();
    assert_eq!(
        (dc.initial_streams, dc.chunk_size, dc.compression, dc.pacing),
        (4, 1 << 20, CompressionPolicy::None, false)
    );
    assert_eq!(
        (hy.initial_streams, hy.chunk_size, hy.compression, hy.pacing),
        (8, 512 << 10, CompressionPolicy::Light, true)
    );
    assert_eq!(
        (
            inet.initial_streams,
            inet.chunk_size,
            inet.compression,
            inet.pacing
        ),
        (8, 1 << 20, CompressionPolicy::Adaptive, true)
    );
    for d in [dc, hy, inet] {
        assert!(d.chunk_size <= crate::wire::MAX_PAYLOAD);
        assert!(d.initial_streams <= crate::amst::MAX_STREAMS);
    }
}

proptest! {
    /// Under any noise, two mode changes are at least `switch_after` samples apart.
    #[test]
    fn mode_changes_at_most_once_per_switch_after_samples(
        switch_after in 1u32..6,
        samples in proptest::collection::vec((0.1f64..200.0, 0.01f64..20.0), 1..400),
    ) {
        let mut d = ModeDetector::new(Hysteresis { margin: 0.2, switch_after });
        let mut last_change: Option<usize> = None;
        for (i, (rtt_ms, gbit)) in samples.into_iter().enumerate() {
            if d.on_sample(sample(rtt_ms, gbit)).is_some() {
                if let Some(prev) = last_change {
                    prop_assert!(
                        i - prev >= switch_after as usize,
                        "changes at samples {prev} and {i} with switch_after {switch_after}"
                    );
                }
                last_change = Some(i);
            }
        }
    }

    /// Noise confined to one mode's plain region never moves the detector out of it.
    #[test]
    fn noise_within_a_class_keeps_it(
        noise in proptest::collection::vec((0.0f64..1.0, 0.0f64..1.0), 1..200),
    ) {
        let mut d = settled_in(sample(20.0, 2.0));
        for (a, b) in noise {
            // Hybrid: 10..=50 ms, >= 1 Gbit/s.
            let s = sample(10.0 + 40.0 * a, 1.0 + 9.0 * b);
            prop_assert_eq!(d.on_sample(s), None);
        }
        prop_assert_eq!(d.mode(), Mode::Hybrid);
    }
}
