use super::*;

const MIB: u64 = 1 << 20;

fn sample(secs: u64, pass: u64, remaining: u64) -> Sample {
    Sample {
        elapsed: Duration::from_secs(secs),
        pass,
        transferred: 0,
        remaining,
        memory_total: 256 * MIB,
        dirty_pages_rate: 0,
        page_size: 4096,
        throttle_percent: 0,
        stream_bytes: 0,
        acked_bytes: 0,
        wire_rate: 12_000_000,
        wire_bytes: 0,
        wire_acked: 0,
        link_rate: 0,
        ref_bytes: 0,
    }
}

/// The downtime limit QEMU gets from a verdict that lets the migration continue.
fn downtime_limit(v: Verdict) -> u64 {
    match v {
        Verdict::Continue {
            downtime_limit_ms, ..
        } => downtime_limit_ms,
        Verdict::Cancel(why) | Verdict::StartPostcopy(why) => panic!("{why}"),
    }
}

/// The window DWCP gets from a verdict that lets the migration continue.
fn window(v: Verdict) -> Option<u64> {
    match v {
        Verdict::Continue { window, .. } => window,
        Verdict::Cancel(why) | Verdict::StartPostcopy(why) => panic!("{why}"),
    }
}

/// The window and the bound on wire bytes DWCP gets from a verdict that lets the migration
/// continue.
fn windows(v: Verdict) -> (Option<u64>, Option<u64>) {
    match v {
        Verdict::Continue {
            window,
            wire_window,
            ..
        } => (window, wire_window),
        Verdict::Cancel(why) | Verdict::StartPostcopy(why) => panic!("{why}"),
    }
}

/// The switch-over bandwidth QEMU gets from a verdict that lets the migration continue.
fn bandwidth(v: Verdict) -> Option<u64> {
    match v {
        Verdict::Continue {
            switchover_bandwidth,
            ..
        } => switchover_bandwidth,
        Verdict::Cancel(why) | Verdict::StartPostcopy(why) => panic!("{why}"),
    }
}

#[test]
fn a_converging_migration_continues_with_the_operators_downtime() {
    let mut c = Convergence::new(Policy::default());
    for (t, pass, rem) in [(1, 1, 200 * MIB), (5, 2, 20 * MIB), (6, 3, 2 * MIB)] {
        let near = pass >= 2 && rem <= 12_000_000;
        assert_eq!(
            c.observe(&sample(t, pass, rem)),
            Verdict::Continue {
                // Until the window narrows near the end QEMU may not stop the guest by itself.
                downtime_limit_ms: if near { 300 } else { 1 },
                switchover_bandwidth: Some(12_000_000),
                window: (pass >= 2 && rem <= 12_000_000).then_some(3_600_000),
                // No link rate reported: no bound on the wire bytes.
                wire_window: None,
            }
        );
    }
}

#[test]
fn past_the_budget_it_is_cancelled_with_the_rates() {
    let mut c = Convergence::new(Policy {
        budget: Duration::from_secs(60),
        ..Policy::default()
    });
    let mut s = sample(61, 4, 50 * MIB);
    s.dirty_pages_rate = 180_000_000 / 4096;
    let Verdict::Cancel(why) = c.observe(&s) else {
        panic!("not cancelled")
    };
    assert!(why.contains("time budget of 60 s"), "{why}");
    assert!(why.contains("dirty rate 180 MB/s > link 12 MB/s"), "{why}");
}

#[test]
fn a_stream_that_stopped_moving_is_cancelled_as_such() {
    let mut c = Convergence::new(Policy {
        budget: Duration::from_secs(60),
        ..Policy::default()
    });
    let mut s = sample(61, 1, 72 * MIB);
    s.wire_rate = 0;
    s.dirty_pages_rate = 0;
    let Verdict::Cancel(why) = c.observe(&s) else {
        panic!("not cancelled")
    };
    assert_eq!(
        why,
        "not done within the time budget of 60 s: the stream made no progress lately \
         (75 MB still to send after 1 passes)"
    );
}

#[test]
fn a_stall_at_full_throttle_with_the_guest_outrunning_the_link_is_cancelled() {
    let mut c = Convergence::new(Policy::default());
    let dirty = 180_000_000 / 4096;
    let mut s = sample(1, 1, 100 * MIB);
    assert!(matches!(c.observe(&s), Verdict::Continue { .. }));
    s = sample(3, 3, 90 * MIB);
    s.dirty_pages_rate = dirty;
    assert!(matches!(c.observe(&s), Verdict::Continue { .. }));
    // No better than 90 MiB for more than the stall time, throttled to the maximum.
    s = sample(40, 9, 95 * MIB);
    s.dirty_pages_rate = dirty;
    s.throttle_percent = 99;
    let Verdict::Cancel(why) = c.observe(&s) else {
        panic!("not cancelled")
    };
    assert!(
        why.starts_with("cannot converge: dirty rate 180 MB/s > link 12 MB/s"),
        "{why}"
    );
}

#[test]
fn a_stall_without_full_throttle_goes_on_so_auto_converge_can_act() {
    let mut c = Convergence::new(Policy::default());
    let mut s = sample(3, 3, 90 * MIB);
    s.dirty_pages_rate = 180_000_000 / 4096;
    c.observe(&s);
    s.elapsed = Duration::from_secs(50);
    s.pass = 10;
    s.throttle_percent = 60;
    assert!(matches!(c.observe(&s), Verdict::Continue { .. }));
}

#[test]
fn the_dwcp_backlog_shortens_the_downtime_qemu_may_plan_for() {
    let mut c = Convergence::new(Policy::default());
    let mut s = sample(2, 2, 10 * MIB);
    // 1.2 MB not yet delivered at 12 MB/s: 100 ms of the 300 are already spoken for.
    s.stream_bytes = 5_000_000;
    s.acked_bytes = 3_800_000;
    assert_eq!(
        c.observe(&s),
        Verdict::Continue {
            downtime_limit_ms: 200,
            switchover_bandwidth: Some(12_000_000),
            // 10 MiB left at 12 MB/s: a second from the switch-over, so the window narrows.
            window: Some(3_600_000),
            wire_window: None,
        }
    );
    // A backlog longer than the whole downtime (4.4 MB, 367 ms), within the narrowed window and
    // a quarter, leaves a quarter of it.
    s.acked_bytes = 600_000;
    assert_eq!(downtime_limit(c.observe(&s)), 75);
    // One not yet down to the narrowed window (8 MB): not now.
    s.stream_bytes = 8_000_000;
    assert_eq!(downtime_limit(c.observe(&s)), 1);
    // Nothing acknowledged for a second (a stalled link): not now either.
    s.stream_bytes = 4_000_000;
    s.wire_rate = 0;
    assert_eq!(downtime_limit(c.observe(&s)), 1);
    // Far from the end, with nothing held: not now, the window not narrowed.
    let mut c = Convergence::new(Policy::default());
    assert_eq!(downtime_limit(c.observe(&sample(1, 1, 200 * MIB))), 1);
}

#[test]
fn progress_carries_rates_and_an_eta_only_while_copying_memory() {
    let mut s = sample(10, 2, 24_000_000);
    s.dirty_pages_rate = 1000;
    s.stream_bytes = 100;
    s.acked_bytes = 100;
    s.wire_bytes = 40;
    s.ref_bytes = 30;
    let p = progress("b", MigrationPhase::Memory, &s);
    assert_eq!(p.dirty_rate, 4_096_000);
    assert_eq!((p.stream_bytes, p.wire_bytes, p.ref_bytes), (100, 40, 30));
    assert_eq!(
        p.eta_secs,
        Some(24_000_000u64.div_ceil(12_000_000 - 2_048_000))
    );
    assert_eq!(p.elapsed_ms, 10_000);
    assert_eq!(p.target, "b");
    assert_eq!(progress("b", MigrationPhase::SwitchOver, &s).eta_secs, None);
    s.wire_rate = 0;
    assert_eq!(progress("b", MigrationPhase::Memory, &s).eta_secs, None);
}

#[test]
fn the_window_narrows_near_the_switch_over_to_the_downtime_and_follows_the_best_rate() {
    let mut c = Convergence::new(Policy::default());
    // First pass, or far from the end: the full window.
    assert_eq!(window(c.observe(&sample(1, 1, 2 * MIB))), None);
    assert_eq!(window(c.observe(&sample(2, 2, 100 * MIB))), None);
    // 300 ms of a 12 MB/s link.
    assert_eq!(window(c.observe(&sample(3, 3, 5 * MIB))), Some(3_600_000));
    assert_eq!(window(c.observe(&sample(4, 4, 100 * MIB))), Some(3_600_000));
    // Delivery got faster: the window follows; slower again: it stays.
    let mut s = sample(5, 5, 5 * MIB);
    s.wire_rate = 20_000_000;
    assert_eq!(window(c.observe(&s)), Some(6_000_000));
    s.wire_rate = 5_000_000;
    assert_eq!(window(c.observe(&s)), Some(6_000_000));
    // A first pass of zero pages and references went at 100 MB/s; the pages dirtied since
    // go at 12 MB/s: the window narrows by the latter.
    let mut c = Convergence::new(Policy::default());
    let mut s = sample(1, 1, 200 * MIB);
    s.wire_rate = 100_000_000;
    assert_eq!(window(c.observe(&s)), None);
    assert_eq!(window(c.observe(&sample(3, 3, 5 * MIB))), Some(3_600_000));
    // A slow link narrows to one chunk at least; a fast one to the narrowed bound at most,
    // below the stream's window before.
    let mut slow = Convergence::new(Policy::default());
    let mut s = sample(3, 3, 1000);
    s.wire_rate = 100_000;
    assert_eq!(window(slow.observe(&s)), Some(MIN_WINDOW));
    let mut fast = Convergence::new(Policy::default());
    s.wire_rate = 10_000_000_000;
    assert_eq!(window(fast.observe(&s)), Some(MAX_NARROWED_WINDOW));
}

/// A tracker under `policy` that has seen the first pass under way (200 MiB left).
fn after_first_sample(policy: Policy) -> Convergence {
    let mut c = Convergence::new(policy);
    assert!(matches!(
        c.observe(&sample(1, 1, 200 * MIB)),
        Verdict::Continue { .. }
    ));
    c
}

/// Post-copy allowed, with a downtime of 1 ms.
fn postcopy_in_1_ms() -> Policy {
    Policy {
        max_downtime: Duration::from_millis(1),
        ..postcopy()
    }
}

/// The default policy with post-copy allowed.
fn postcopy() -> Policy {
    Policy {
        postcopy: true,
        ..Policy::default()
    }
}

#[test]
fn with_postcopy_allowed_the_guest_moves_after_the_first_pass_once() {
    let mut c = after_first_sample(postcopy());
    let Verdict::StartPostcopy(why) = c.observe(&sample(5, 2, 40 * MIB)) else {
        panic!("post-copy not started")
    };
    assert!(why.contains("first pass done, 42 MB dirty again"), "{why}");
    // Started once: QEMU finishes it from there.
    assert!(matches!(
        c.observe(&sample(6, 3, 30 * MIB)),
        Verdict::Continue { .. }
    ));
}

#[test]
fn what_fits_in_the_downtime_needs_no_postcopy() {
    let mut c = Convergence::new(postcopy());
    // QEMU may not end the pre-copy by itself before a pass after the first says whether
    // post-copy is needed.
    assert_eq!(
        bandwidth(c.observe(&sample(1, 1, 200 * MIB))),
        Some(HOLD_BANDWIDTH)
    );
    // 12 MB/s for 300 ms is 3.6 MB: QEMU finishes the pre-copy.
    assert_eq!(
        bandwidth(c.observe(&sample(5, 2, 3 * MIB))),
        Some(12_000_000)
    );
    // Without post-copy QEMU counts on the stream's rate all along.
    let mut c = Convergence::new(Policy::default());
    assert_eq!(
        bandwidth(c.observe(&sample(1, 1, 200 * MIB))),
        Some(12_000_000)
    );
}

#[test]
fn without_postcopy_the_first_pass_goes_on_to_more_passes() {
    let mut c = after_first_sample(Policy::default());
    assert!(matches!(
        c.observe(&sample(5, 2, 40 * MIB)),
        Verdict::Continue { .. }
    ));
}

/// Post-copy allowed over a link of a 150 ms round trip.
fn postcopy_far() -> Policy {
    Policy {
        round_trip: Duration::from_millis(150),
        ..postcopy()
    }
}

#[test]
fn over_a_long_link_the_guest_stays_in_precopy() {
    // Ten round trips of 150 ms do not fit in 300 ms: the pre-copy goes on after a pass that
    // leaves more than fits, even with a guest dirtying 8 MB/s against a 12 MB/s stream, and
    // QEMU may end it by itself.
    let mut c = Convergence::new(postcopy_far());
    let mut s = sample(1, 1, 200 * MIB);
    s.dirty_pages_rate = 8_000_000 / 4096;
    assert_eq!(bandwidth(c.observe(&s)), Some(12_000_000));
    let mut s = sample(5, 2, 40 * MIB);
    s.dirty_pages_rate = 8_000_000 / 4096;
    assert_eq!(bandwidth(c.observe(&s)), Some(12_000_000));
    // The same guest over a link of 5 ms moves by post-copy.
    let mut c = after_first_sample(Policy {
        round_trip: Duration::from_millis(5),
        ..postcopy()
    });
    assert!(matches!(c.observe(&s), Verdict::StartPostcopy(_)));
}

#[test]
fn over_a_long_link_a_stalled_copy_moves_by_postcopy() {
    // A guest outrunning the link, throttled to the maximum, with nothing left shrinking for
    // longer than the stall time: post-copy, not a cancel.
    let mut c = after_first_sample(postcopy_far());
    let dirty = 30_000_000 / 4096;
    let mut s = sample(3, 3, 90 * MIB);
    s.dirty_pages_rate = dirty;
    assert!(matches!(c.observe(&s), Verdict::Continue { .. }));
    let mut s = sample(40, 9, 95 * MIB);
    s.dirty_pages_rate = dirty;
    s.throttle_percent = 99;
    let Verdict::StartPostcopy(why) = c.observe(&s) else {
        panic!("post-copy not started")
    };
    assert!(why.starts_with("cannot converge"), "{why}");
}

#[test]
fn the_reserve_for_the_commit_comes_off_the_downtime_qemu_and_the_window_may_use() {
    let mut c = Convergence::new(Policy {
        reserve: Duration::from_millis(100),
        ..Policy::default()
    });
    // Near the end: 200 ms of a 12 MB/s link.
    assert!(matches!(
        c.observe(&sample(2, 2, 2 * MIB)),
        Verdict::Continue {
            downtime_limit_ms: 200,
            window: Some(2_400_000),
            ..
        }
    ));
    // A reserve above half the downtime leaves half of it.
    let mut c = Convergence::new(Policy {
        reserve: Duration::from_millis(250),
        ..Policy::default()
    });
    assert!(matches!(
        c.observe(&sample(2, 2, 2 * MIB)),
        Verdict::Continue {
            downtime_limit_ms: 150,
            ..
        }
    ));
}

#[test]
fn postcopy_waits_for_the_dwcp_backlog_to_fit_in_the_downtime() {
    let mut c = after_first_sample(postcopy());
    // 8 MB held by DWCP: 300 ms of a 12 MB/s link is 3.6 MB, so the window narrows first
    // (and QEMU is held from switching over by itself: it may count on 1 byte per ms).
    let mut s = sample(5, 2, 40 * MIB);
    s.stream_bytes = 100_000_000;
    s.acked_bytes = 92_000_000;
    s.wire_bytes = 50_000_000;
    s.wire_acked = 46_000_000;
    assert_eq!(
        c.observe(&s),
        Verdict::Continue {
            downtime_limit_ms: 1,
            switchover_bandwidth: Some(HOLD_BANDWIDTH),
            window: Some(3_600_000),
            wire_window: None,
        }
    );
    // Within the window, but 3 MB of stream at 12 MB/s take 250 ms, more than the three
    // quarters of the downtime the backlog may have: it waits on, past one sample.
    s.elapsed = Duration::from_millis(5250);
    s.acked_bytes = 97_000_000;
    s.wire_acked = 49_000_000;
    s.link_rate = 12_000_000;
    assert!(matches!(c.observe(&s), Verdict::Continue { .. }));
    // 2 MB of stream (167 ms), but of new pages: 3 MB of frames at 12 MB/s take 250 ms.
    s.elapsed = Duration::from_millis(5500);
    s.acked_bytes = 98_000_000;
    s.wire_acked = 47_000_000;
    assert!(matches!(c.observe(&s), Verdict::Continue { .. }));
    // Both within it.
    s.elapsed = Duration::from_millis(5750);
    s.wire_acked = 48_500_000;
    assert!(matches!(c.observe(&s), Verdict::StartPostcopy(_)));
}

#[test]
fn postcopy_waits_for_no_less_than_a_window_at_its_floor() {
    // 1 ms of downtime on a 2 MB/s stream: the window narrows to its floor, which holds
    // more than that (and more than 50 ms).
    let mut c = after_first_sample(postcopy_in_1_ms());
    let mut s = sample(5, 2, 40 * MIB);
    s.wire_rate = 2_000_000;
    s.stream_bytes = 100_000_000;
    s.acked_bytes = 99_000_000;
    s.link_rate = 12_000_000;
    assert_eq!(window(c.observe(&s)), Some(MIN_WINDOW));
    // Once the backlog is within it, the guest moves.
    s.elapsed += Duration::from_millis(250);
    s.acked_bytes = 99_600_000;
    assert!(matches!(c.observe(&s), Verdict::StartPostcopy(_)));
}

#[test]
fn postcopy_waits_for_no_backlog_that_crosses_in_50_ms() {
    // 1 ms of downtime over a fast link: 5 MB held cross in 42 ms at 120 MB/s.
    let mut c = after_first_sample(postcopy_in_1_ms());
    let mut s = sample(5, 2, 40 * MIB);
    s.wire_rate = 120_000_000;
    s.stream_bytes = 100_000_000;
    s.acked_bytes = 95_000_000;
    assert!(matches!(c.observe(&s), Verdict::StartPostcopy(_)));
}

#[test]
fn postcopy_waits_for_a_backlog_that_does_not_drain_no_longer_than_its_bound() {
    let mut c = after_first_sample(postcopy());
    let mut s = sample(5, 2, 40 * MIB);
    s.stream_bytes = 100_000_000;
    s.acked_bytes = 92_000_000;
    s.wire_bytes = 50_000_000;
    s.wire_acked = 42_000_000;
    s.link_rate = 12_000_000;
    assert!(matches!(c.observe(&s), Verdict::Continue { .. }));
    s.elapsed += POSTCOPY_DRAIN - Duration::from_millis(1);
    // QEMU is held from ending the pre-copy by itself all along.
    assert_eq!(bandwidth(c.observe(&s)), Some(HOLD_BANDWIDTH));
    s.elapsed += Duration::from_millis(1);
    assert!(matches!(c.observe(&s), Verdict::StartPostcopy(_)));
    // Once it moves, QEMU counts on the link again.
    s.elapsed += Duration::from_millis(250);
    assert_eq!(bandwidth(c.observe(&s)), Some(12_000_000));
}

#[test]
fn qemu_gets_the_downtime_the_backlogs_wire_bytes_leave() {
    // Near the end, the window narrowed to 300 ms of 12 MB/s (3.6 MB), 0.6 MB of stream held:
    // 50 ms at the stream's rate.
    let near = |wire_left: u64| {
        let mut c = Convergence::new(Policy::default());
        let mut s = sample(2, 2, 2 * MIB);
        s.stream_bytes = 100_000_000;
        s.acked_bytes = 99_400_000;
        s.wire_bytes = 40_000_000;
        s.wire_acked = 40_000_000 - wire_left;
        s.link_rate = 6_000_000;
        downtime_limit(c.observe(&s))
    };
    // Zero pages and references: 60 kB of frames cross in 10 ms, the stream's 50 ms count.
    assert_eq!(near(60_000), 250);
    // New pages: 1.2 MB of frames at the link's 6 MB/s take 200 ms.
    assert_eq!(near(1_200_000), 100);
    // More than the budget: QEMU keeps a quarter of it.
    assert_eq!(near(3_000_000), 75);
}

#[test]
fn the_narrowed_window_holds_no_more_than_the_link_carries_in_the_downtime() {
    let mut c = Convergence::new(Policy::default());
    // The first pass: zero pages at 40 MB/s of stream, the link at 2.5 MB/s (20 Mbit/s).
    let mut s = sample(1, 1, 200 * MIB);
    s.wire_rate = 40_000_000;
    s.link_rate = 2_500_000;
    s.acked_bytes = 100_000_000;
    s.wire_acked = 20_000_000;
    assert_eq!(window(c.observe(&s)), None);
    // Near the end: 300 ms of the stream's 40 MB/s would be 12 MB (8 MiB at most), but three
    // quarters of 300 ms of the link carry 562.5 kB of wire bytes: until 4 MB of stream or
    // 1 MB of wire bytes crossed, at three bytes of stream per wire byte.
    let mut s = sample(2, 2, 5 * MIB);
    s.wire_rate = 40_000_000;
    s.acked_bytes = 110_000_000;
    s.wire_acked = 21_000_000;
    assert_eq!(window(c.observe(&s)), Some(1_687_500));
    // Then at the ratio of what crossed since: 4 MB of stream in 1 MB of frames.
    s.elapsed = Duration::from_secs(3);
    s.acked_bytes = 114_000_000;
    s.wire_acked = 22_000_000;
    assert_eq!(window(c.observe(&s)), Some(2_250_000));
    // A stream of references shows 40 bytes of stream per wire byte: its window grows to
    // the most a narrowed one holds, but the wire bytes in it stay within the 562.5 kB.
    s.elapsed = Duration::from_secs(4);
    s.acked_bytes = 154_000_000;
    s.wire_acked = 23_000_000;
    assert_eq!(
        windows(c.observe(&s)),
        (Some(MAX_NARROWED_WINDOW), Some(562_500))
    );
    // With more left than the link carries of new pages in a second (7.5 MB), the window
    // stays narrowed but the wire is not bounded: the link would be held below the guest's
    // dirty rate long before QEMU may stop.
    s.elapsed = Duration::from_secs(5);
    s.remaining = 10 * MIB;
    assert_eq!(windows(c.observe(&s)), (Some(MAX_NARROWED_WINDOW), None));
    // Over a slower link the wire's bound is at least a chunk of new pages under zstd.
    let mut slow = Convergence::new(Policy::default());
    s.link_rate = 500_000;
    s.remaining = MIB;
    assert_eq!(windows(slow.observe(&s)).1, Some(MIN_WIRE_WINDOW));
    // Without a link rate (a destination that does not report one): the stream's rate alone.
    let mut c = Convergence::new(Policy::default());
    assert_eq!(window(c.observe(&sample(3, 3, 5 * MIB))), Some(3_600_000));
}

#[test]
fn near_the_end_qemu_counts_on_the_link_for_its_last_pages_not_on_references() {
    let mut c = Convergence::new(Policy::default());
    // A first pass of references at 90 MB/s of stream over a 5 MB/s link: QEMU gets the
    // stream's rate while it cannot stop anyway.
    let mut s = sample(1, 1, 200 * MIB);
    s.wire_rate = 90_000_000;
    s.link_rate = 5_000_000;
    s.acked_bytes = 150_000_000;
    s.wire_acked = 8_000_000;
    assert_eq!(bandwidth(c.observe(&s)), Some(90_000_000));
    // Near the end: three times the link's rate, until the reduction since is measured.
    let mut s = sample(2, 2, 15 * MIB);
    s.wire_rate = 90_000_000;
    s.acked_bytes = 160_000_000;
    s.wire_acked = 8_500_000;
    assert_eq!(bandwidth(c.observe(&s)), Some(15_000_000));
    // Then at most three stream bytes per wire byte, however many went as references.
    s.elapsed = Duration::from_secs(3);
    s.acked_bytes = 190_000_000;
    s.wire_acked = 10_000_000;
    assert_eq!(bandwidth(c.observe(&s)), Some(15_000_000));
    // Fewer when the last pages compress less: 1.5 MB of stream per MB of wire.
    let mut c = Convergence::new(Policy::default());
    let mut s = sample(2, 2, 5 * MIB);
    s.link_rate = 5_000_000;
    s.wire_acked = 10_000_000;
    // (The stream's own 12 MB/s is lower.)
    assert_eq!(bandwidth(c.observe(&s)), Some(12_000_000));
    s.elapsed = Duration::from_secs(3);
    s.acked_bytes = 3_000_000;
    s.wire_acked = 12_000_000;
    assert_eq!(bandwidth(c.observe(&s)), Some(7_500_000));
}

#[test]
fn the_link_rate_is_the_fastest_of_one_second_averages() {
    // A 12 MB/s link whose samples jump to 18 MB/s when a held-back frame is acknowledged:
    // QEMU's last pages (and the narrowed window) count on 13.5 MB/s, the mean of the second
    // that held the jump, times three stream bytes per wire byte.
    let mut c = after_first_sample(Policy::default());
    let mut s = sample(2, 2, 2 * MIB);
    s.wire_rate = 100_000_000;
    let mut bandwidth_at = |c: &mut Convergence, ms: u64, rate: u64| {
        s.elapsed = Duration::from_millis(ms);
        s.link_rate = rate;
        bandwidth(c.observe(&s))
    };
    for ms in [2000, 2250, 2500] {
        assert_eq!(bandwidth_at(&mut c, ms, 12_000_000), Some(36_000_000));
    }
    assert_eq!(bandwidth_at(&mut c, 2750, 18_000_000), Some(40_500_000));
    // Samples older than a second no longer count; the fastest average still does.
    assert_eq!(bandwidth_at(&mut c, 4000, 12_000_000), Some(40_500_000));
}
