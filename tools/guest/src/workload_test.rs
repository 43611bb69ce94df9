//! The workload's pacing, checking and reporting, driven with made-up times.

use super::*;

fn params(cmdline: &str) -> Params {
    Params::from_cmdline(cmdline).unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn lines(out: &[u8]) -> Vec<String> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn rewrites_and_checks_follow_their_rates() {
    // 256 pages, 64 KiB/s = 16 pages/s rewritten, a sweep of 256 pages every 2 s.
    let mut w = Workload::new(&params("nc.mem=1M nc.dirty=64K nc.sweep=2")).unwrap();
    let mut out = Vec::new();
    w.step(Duration::from_millis(500), &mut out).unwrap();
    let beat = w.heartbeat(0);
    assert_eq!((beat.dirtied, beat.checked, beat.failed), (8, 64, 0));
    w.step(Duration::from_millis(1500), &mut out).unwrap();
    w.step(secs(2), &mut out).unwrap();
    let beat = w.heartbeat(0);
    assert_eq!((beat.dirtied, beat.checked, beat.failed), (32, 256, 0));
    assert!(out.is_empty());
}

#[test]
fn a_long_pause_is_not_caught_up() {
    let mut w = Workload::new(&params("nc.mem=1M nc.dirty=64K nc.sweep=2")).unwrap();
    let mut out = Vec::new();
    w.step(secs(1), &mut out).unwrap();
    w.step(secs(30), &mut out).unwrap();
    let beat = w.heartbeat(0);
    // One second's worth after the pause: 16 rewrites, 128 checks.
    assert_eq!((beat.dirtied, beat.checked), (16 + 16, 128 + 128));
}

#[test]
fn heartbeats_count_up_and_follow_the_memory() {
    let mut w = Workload::new(&params("nc.mem=256K nc.dirty=64K")).unwrap();
    let mut out = Vec::new();
    let first = w.heartbeat(10);
    let again = w.heartbeat(20);
    assert_eq!((first.seq, again.seq), (1, 2));
    assert_eq!((first.uptime_ms, again.uptime_ms), (10, 20));
    assert_eq!(first.pages, 64);
    assert_eq!(first.sum, again.sum);
    w.step(secs(1), &mut out).unwrap();
    assert_ne!(w.heartbeat(30).sum, first.sum);
}

#[test]
fn the_same_parameters_give_the_same_sums() {
    let mut a = Workload::new(&params("nc.mem=512K nc.dirty=128K nc.seed=5")).unwrap();
    let mut b = Workload::new(&params("nc.mem=512K nc.dirty=128K nc.seed=5")).unwrap();
    let mut out = Vec::new();
    for s in 1..4 {
        a.step(secs(s), &mut out).unwrap();
        b.step(secs(s), &mut out).unwrap();
        assert_eq!(a.heartbeat(0), b.heartbeat(0));
    }
}

#[test]
fn a_damaged_page_is_reported_once() {
    let mut w = Workload::new(&params("nc.mem=256K nc.dirty=0 nc.sweep=1")).unwrap();
    w.memory_mut().page_mut(7).unwrap()[12] ^= 1;
    let mut out = Vec::new();
    w.step(secs(1), &mut out).unwrap();
    w.step(secs(2), &mut out).unwrap();
    let report = lines(&out);
    assert_eq!(report.len(), 1, "{report:?}");
    assert!(
        report[0].starts_with("NCGUEST check-failed page=7 gen=0 kind="),
        "{}",
        report[0]
    );
    assert!(report[0].contains(" offset=12 "), "{}", report[0]);
    let beat = w.heartbeat(0);
    assert_eq!((beat.checked, beat.failed), (128, 1));
}

#[test]
fn failure_lines_are_capped_between_heartbeats() {
    let mut w = Workload::new(&params("nc.mem=256K nc.dirty=0 nc.sweep=1")).unwrap();
    for index in 0..40 {
        w.memory_mut().page_mut(index).unwrap()[0] ^= 1;
    }
    let mut out = Vec::new();
    w.step(secs(1), &mut out).unwrap();
    assert_eq!(lines(&out).len(), 16);
    assert_eq!(w.heartbeat(0).failed, 40);
    for index in 0..40 {
        w.memory_mut().page_mut(index).unwrap()[0] ^= 1;
    }
    w.step(secs(2), &mut out).unwrap();
    assert_eq!(lines(&out).len(), 32);
    assert_eq!(w.heartbeat(0).failed, 80);
}

#[test]
fn a_run_with_a_duration_writes_start_ready_heartbeats_and_stop() {
    let mut out = Vec::new();
    let stop = run(
        &params("nc.mem=128K nc.dirty=64K nc.seed=3 nc.interval=1 nc.sweep=1 nc.duration=1"),
        &mut out,
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(stop.failed, 0);
    let report = lines(&out);
    assert_eq!(report[0], "NCGUEST start mem=131072 dirty=65536 seed=3");
    assert!(report[1].starts_with("NCGUEST ready pages=32 fill_ms="));
    let beats: Vec<&String> = report
        .iter()
        .filter(|l| l.starts_with("NCGUEST heartbeat "))
        .collect();
    assert_eq!(beats.len(), 2, "{report:?}");
    assert!(beats[0].starts_with("NCGUEST heartbeat seq=1 uptime_ms="));
    assert!(beats[1].starts_with("NCGUEST heartbeat seq=2 "));
    assert!(beats.iter().all(|b| b.contains(" pages=32 ")));
    assert!(beats.iter().all(|b| b.contains(" failed=0 sum=")));
    assert_eq!(
        report.last().unwrap(),
        &format!(
            "NCGUEST stop dirtied={} checked={} failed=0",
            stop.dirtied, stop.checked
        )
    );
    // 16 pages/s and a sweep of 32 pages a second, over one second and a little scheduling delay.
    assert!((16..=18).contains(&stop.dirtied), "{stop:?}");
    assert!((32..=36).contains(&stop.checked), "{stop:?}");
}

#[test]
fn a_run_told_to_stop_writes_its_stop_line_at_once() {
    let mut out = Vec::new();
    let started = Instant::now();
    let stop = run(
        &params("nc.mem=128K nc.dirty=64K nc.seed=3"),
        &mut out,
        &AtomicBool::new(true),
    )
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    let report = lines(&out);
    assert_eq!(report.len(), 4, "{report:?}");
    assert!(report[2].starts_with("NCGUEST heartbeat seq=1 "));
    assert_eq!(report[3], "NCGUEST stop dirtied=0 checked=0 failed=0");
    assert_eq!((stop.dirtied, stop.checked, stop.failed), (0, 0, 0));
}

#[test]
fn uptime_is_read_in_milliseconds() {
    assert_eq!(parse_uptime("12345.67 54321.00\n"), Some(12_345_670));
    assert_eq!(parse_uptime("3.5 1.0"), Some(3500));
    assert_eq!(parse_uptime("7 1"), Some(7000));
    assert_eq!(parse_uptime(""), None);
    assert_eq!(parse_uptime("x.y 1"), None);
}
