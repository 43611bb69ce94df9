//! A short run with `nc.duration` writes the documented lines and exits cleanly; a bad parameter
//! is refused with an error line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_novacron-guest"))
        .args(args)
        .output()
        .expect("start novacron-guest")
}

/// The `key=value` fields of a line after its `NCGUEST <kind>` prefix, in order.
fn fields(line: &str) -> Vec<(&str, &str)> {
    line.split(' ')
        .skip(2)
        .map(|f| f.split_once('=').expect("key=value"))
        .collect()
}

#[test]
fn a_timed_run_reports_heartbeats_and_stops_cleanly() {
    let out = run(&[
        "nc.mem=2M",
        "nc.dirty=256K",
        "nc.seed=9",
        "nc.sweep=1",
        "nc.duration=2",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{:?}\n{stdout}", out.status);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "NCGUEST start mem=2097152 dirty=262144 seed=9");
    assert!(
        lines[1].starts_with("NCGUEST ready pages=512 "),
        "{}",
        lines[1]
    );

    let beats: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("NCGUEST heartbeat "))
        .collect();
    assert_eq!(beats.len(), 3, "{stdout}");
    for (n, beat) in beats.iter().enumerate() {
        let f = fields(beat);
        let keys: Vec<&str> = f.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "seq",
                "uptime_ms",
                "pages",
                "dirtied",
                "checked",
                "failed",
                "sum"
            ]
        );
        assert_eq!(f[0].1, (n + 1).to_string());
        assert_eq!(f[2].1, "512");
        assert_eq!(f[5].1, "0");
        assert_eq!(f[6].1.len(), 16);
        assert!(u64::from_str_radix(f[6].1, 16).is_ok());
    }
    // The first heartbeat comes right after the fill: nothing rewritten or checked yet.
    assert!(
        beats[0].contains(" dirtied=0 checked=0 failed=0 "),
        "{}",
        beats[0]
    );
    // A sweep a second over 512 pages, 64 rewrites a second.
    let last = fields(beats[2]);
    let checked: u64 = last[4].1.parse().unwrap();
    let dirtied: u64 = last[3].1.parse().unwrap();
    assert!((1024..1200).contains(&checked), "{}", beats[2]);
    assert!((128..150).contains(&dirtied), "{}", beats[2]);

    let stop = lines.last().unwrap();
    assert!(stop.starts_with("NCGUEST stop dirtied="), "{stop}");
    assert!(stop.ends_with(" failed=0"), "{stop}");
    assert!(!stdout.contains("check-failed"));
}

#[test]
fn an_unknown_parameter_is_refused() {
    let out = run(&["console=ttyS0", "nc.men=64M"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "NCGUEST error unknown parameter nc.men\n"
    );
}

#[test]
fn sigterm_ends_a_run_with_its_stop_line() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_novacron-guest"))
        .args(["nc.mem=1M", "nc.dirty=64K"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start novacron-guest");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let beat = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.starts_with("NCGUEST heartbeat "));
    assert!(beat.is_some(), "no heartbeat");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?} {rest:?}");
    let stop = rest.last().expect("a stop line");
    assert!(stop.starts_with("NCGUEST stop dirtied="), "{stop}");
    assert!(stop.ends_with(" failed=0"), "{stop}");
}
