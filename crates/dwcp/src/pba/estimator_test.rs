//! Tests for the link estimator: convergence after a step change, the Holt prediction of a
//! ramp, RTT smoothing and windowed minimum, and decaying loss.

use super::*;

const MB: f64 = 1_000_000.0;

/// Feeds `intervals` intervals of 100 ms at `mb_per_sec` MB/s, one acknowledgement every 10 ms.
fn feed(est: &mut LinkEstimator, t: &mut Instant, mb_per_sec: u32, intervals: u32) {
    let per_ack = u64::from(mb_per_sec) * 10_000;
    for _ in 0..intervals * 10 {
        *t += Duration::from_millis(10);
        est.on_ack(*t, per_ack);
    }
}

fn started() -> (LinkEstimator, Instant) {
    let mut est = LinkEstimator::default();
    let t = Instant::now();
    est.on_ack(t, 123_456);
    (est, t)
}

#[test]
fn knows_nothing_before_the_first_interval() {
    let (mut est, t) = started();
    assert_eq!(est.bandwidth(), None, "the first ack only starts measuring");
    assert_eq!(est.on_ack(t + Duration::from_millis(50), 1_000), None);
    assert_eq!(est.predict(Duration::from_secs(1)), None);
    assert_eq!(
        est.estimate(),
        LinkEstimate {
            bandwidth: None,
            rtt: None,
            loss_rate: 0.0
        }
    );
}

#[test]
fn one_interval_gives_its_exact_rate() {
    let (mut est, t) = started();
    assert_eq!(est.on_ack(t + Duration::from_millis(60), 600_000), None);
    // 1 MB over 100 ms: 10 MB/s.
    assert_eq!(
        est.on_ack(t + Duration::from_millis(100), 400_000),
        Some(10.0 * MB)
    );
    assert_eq!(est.bandwidth(), Some(10.0 * MB));
    assert_eq!(est.predict(Duration::from_secs(1)), Some(10.0 * MB));
}

#[test]
fn converges_on_a_step_change() {
    let (mut est, mut t) = started();
    feed(&mut est, &mut t, 10, 20);
    let level = est.bandwidth().unwrap();
    assert!((level - 10.0 * MB).abs() < 0.01 * MB, "{level}");
    feed(&mut est, &mut t, 50, 1);
    let after_one = est.bandwidth().unwrap();
    assert!(
        after_one > 15.0 * MB && after_one < 25.0 * MB,
        "{after_one}"
    );
    // With gain 0.25, the error shrinks by 0.75 per interval: under 5 % after 12 intervals.
    feed(&mut est, &mut t, 50, 11);
    let level = est.bandwidth().unwrap();
    assert!((level - 50.0 * MB).abs() < 2.5 * MB, "{level}");
    // And the same downwards.
    feed(&mut est, &mut t, 5, 12);
    let level = est.bandwidth().unwrap();
    assert!((level - 5.0 * MB).abs() < 2.5 * MB, "{level}");
}

#[test]
fn predicts_a_ramp_ahead_of_the_smoothed_level() {
    let (mut est, mut t) = started();
    // The rate climbs by 10 MB/s every second (1 MB/s per 100 ms interval).
    for i in 0..40 {
        feed(&mut est, &mut t, 10 + i, 1);
    }
    let now = 49.0 * MB;
    let level = est.bandwidth().unwrap();
    let in_one_second = est.predict(Duration::from_secs(1)).unwrap();
    assert!(level < now, "the EWMA lags a ramp: {level}");
    assert!(
        (in_one_second - (now + 10.0 * MB)).abs() < 2.0 * MB,
        "Holt follows the trend: {in_one_second}"
    );
    let trend = est.trend().unwrap();
    assert!((trend - 10.0 * MB).abs() < 1.0 * MB, "{trend}");
}

#[test]
fn prediction_never_goes_below_zero() {
    let (mut est, mut t) = started();
    for i in (0..20).rev() {
        feed(&mut est, &mut t, i, 1);
    }
    assert!(est.trend().unwrap() < 0.0);
    assert_eq!(est.predict(Duration::from_secs(60)), Some(0.0));
}

#[test]
fn restart_interval_forgets_an_idle_gap() {
    let (mut est, mut t) = started();
    feed(&mut est, &mut t, 10, 5);
    est.restart_interval();
    t += Duration::from_secs(30);
    assert_eq!(
        est.on_ack(t, 1),
        None,
        "the first ack after idle starts again"
    );
    feed(&mut est, &mut t, 10, 1);
    let level = est.bandwidth().unwrap();
    assert!((level - 10.0 * MB).abs() < 0.01 * MB, "{level}");
}

#[test]
fn acks_out_of_order_in_time_do_not_panic_or_close_an_interval() {
    let (mut est, t) = started();
    assert_eq!(est.on_ack(t - Duration::from_secs(1), 1_000), None);
}

#[test]
fn rtt_is_smoothed_with_gain_one_eighth_and_keeps_the_minimum() {
    let mut est = LinkEstimator::default();
    let t = Instant::now();
    est.on_rtt(t, Duration::from_millis(80));
    est.on_rtt(t, Duration::from_millis(160));
    let rtt = est.rtt().unwrap();
    assert_eq!(rtt.smoothed, Duration::from_millis(90));
    assert_eq!(rtt.min, Duration::from_millis(80));
    assert_eq!(rtt.latest, Duration::from_millis(160));
    est.on_rtt(t + Duration::from_secs(1), Duration::from_millis(50));
    assert_eq!(est.rtt().unwrap().min, Duration::from_millis(50));
}

#[test]
fn a_stale_minimum_rtt_gives_way_to_a_larger_sample() {
    let mut est = LinkEstimator::default();
    let t = Instant::now();
    est.on_rtt(t, Duration::from_millis(20));
    est.on_rtt(t + Duration::from_secs(5), Duration::from_millis(60));
    assert_eq!(
        est.rtt().unwrap().min,
        Duration::from_millis(20),
        "still fresh"
    );
    // The path changed: 11 s after the 20 ms sample, 60 ms is the new floor.
    est.on_rtt(t + Duration::from_secs(11), Duration::from_millis(60));
    assert_eq!(est.rtt().unwrap().min, Duration::from_millis(60));
}

#[test]
fn loss_rate_is_retransmitted_over_sent_and_fades() {
    let mut est = LinkEstimator::new(EstimatorConfig {
        loss_memory_bytes: 1_000_000,
        ..EstimatorConfig::default()
    });
    est.on_sent(100_000, 1_000);
    assert!((est.loss_rate() - 0.01).abs() < 1e-12);
    // Retransmitted bytes are never counted above the bytes sent.
    est.on_sent(10, 1_000);
    assert!((est.loss_rate() - 1_010.0 / 100_010.0).abs() < 1e-12);
    // A long loss-free run fades the old losses.
    for _ in 0..100 {
        est.on_sent(100_000, 0);
    }
    assert!(est.loss_rate() < 0.001, "{}", est.loss_rate());
}
