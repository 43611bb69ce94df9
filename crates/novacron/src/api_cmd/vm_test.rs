//! `vm` commands: arguments to requests, and the text output.

use super::*;
use crate::api_cmd::tests::{TestCommand, parse};
use novacron_model::{DiskInfo, VmId, VmRuntime, VmState};

fn vm_cmd(args: &[&str]) -> VmCommand {
    let mut all = vec!["vm"];
    all.extend_from_slice(args);
    match parse(&all) {
        Ok(TestCommand::Vm(v)) => v.cmd,
        other => panic!("{args:?}: {other:?}"),
    }
}

#[test]
fn create_arguments_become_the_spec_with_sizes_parsed() {
    let VmCommand::Create(a) = vm_cmd(&[
        "create",
        "web-1",
        "--image",
        "deb",
        "--vcpus",
        "2",
        "--memory",
        "512M",
        "--disk-size",
        "2G",
        "--start",
    ]) else {
        panic!()
    };
    assert!(a.start);
    let s = spec(&a);
    assert_eq!(s.name.as_str(), "web-1");
    assert_eq!(s.image.as_str(), "deb");
    assert_eq!(s.vcpus, 2);
    assert_eq!(s.memory, ByteSize(512 << 20));
    assert_eq!(s.disk_size, Some(ByteSize(2 << 30)));
}

#[test]
fn create_defaults_to_one_vcpu_and_512m_and_the_image_size() {
    let VmCommand::Create(a) = vm_cmd(&["create", "a", "--image", "i"]) else {
        panic!()
    };
    let s = spec(&a);
    assert_eq!(
        (s.vcpus, s.memory, s.disk_size),
        (1, ByteSize::mib(512), None)
    );
    assert!(!a.start && !a.wait.no_wait);
    assert_eq!(a.wait.wait_timeout, 600);
}

#[test]
fn create_refuses_bad_names_and_sizes() {
    for bad in [
        &["create", "Web", "--image", "i"][..],
        &["create", "a", "--image", "i", "--memory", "lots"],
        &["create", "a", "--image", "i", "--disk-size", "1.5G"],
        &["create", "a"],
    ] {
        let mut all = vec!["vm"];
        all.extend_from_slice(bad);
        let e = parse(&all).unwrap_err();
        assert_ne!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{bad:?}");
    }
}

#[test]
fn stop_flags_become_the_stop_request() {
    let VmCommand::Stop(a) = vm_cmd(&["stop", "web", "--timeout", "90"]) else {
        panic!()
    };
    assert_eq!(
        stop_action(&a),
        VmAction::Stop(VmStopRequest {
            timeout_secs: Some(90),
            force: false
        })
    );
    let VmCommand::Stop(a) = vm_cmd(&["stop", "web", "--force", "--no-wait"]) else {
        panic!()
    };
    assert!(a.wait.no_wait);
    assert_eq!(
        stop_action(&a),
        VmAction::Stop(VmStopRequest {
            timeout_secs: None,
            force: true
        })
    );
    assert!(parse(&["vm", "stop", "web", "--force", "--timeout", "5"]).is_err());
}

#[test]
fn every_action_and_delete_parse() {
    for (word, want) in [
        ("start", VmAction::Start),
        ("pause", VmAction::Pause),
        ("resume", VmAction::Resume),
        ("restart", VmAction::Restart),
    ] {
        let cmd = vm_cmd(&[word, "web"]);
        let (VmCommand::Start(a)
        | VmCommand::Pause(a)
        | VmCommand::Resume(a)
        | VmCommand::Restart(a)) = cmd
        else {
            panic!("{word}")
        };
        assert_eq!(a.vm, "web");
        assert_eq!(verb(&want), word);
    }
    let VmCommand::Delete(d) = vm_cmd(&["delete", "web", "--force"]) else {
        panic!()
    };
    assert!(d.force);
    let VmCommand::Console(c) = vm_cmd(&["console", "web", "--lines", "20", "--follow"]) else {
        panic!()
    };
    assert_eq!((c.lines, c.follow), (Some(20), true));
}

fn sample(name: &str, running: bool) -> Vm {
    Vm {
        id: "0f8fad5b-d9cb-469f-a165-70867728950e"
            .parse::<VmId>()
            .unwrap(),
        tenant: Name::new("t").unwrap(),
        spec: VmSpec {
            name: Name::new(name).unwrap(),
            vcpus: 2,
            memory: ByteSize::mib(512),
            image: Name::new("deb").unwrap(),
            disk_size: None,
        },
        state: if running {
            VmState::Running
        } else {
            VmState::Stopped
        },
        state_reason: None,
        disks: vec![DiskInfo {
            name: "root".into(),
            path: "/var/lib/novacron/vms/x/root.qcow2".into(),
            backing: Some("/var/lib/novacron/images/deb/disk".into()),
            virtual_size: ByteSize(2 << 30),
        }],
        runtime: running.then(|| VmRuntime {
            pid: 4242,
            started_at: Timestamp(1_000_000),
            accel: "tcg".into(),
        }),
        created_at: Timestamp(0),
        updated_at: Timestamp(1_000_000),
    }
}

#[test]
fn the_list_shows_one_row_per_vm_with_short_ids_and_uptime() {
    let now = Timestamp(1_000_000 + 252_000);
    let text = list_text(&[sample("web", true), sample("db-primary", false)], now);
    assert_eq!(
        text,
        "NAME        ID        STATE    VCPUS  MEMORY  IMAGE  UPTIME\n\
         web         0f8fad5b  running  2      512M    deb    4m12s\n\
         db-primary  0f8fad5b  stopped  2      512M    deb    -\n"
    );
}

#[test]
fn show_gives_state_reason_pid_and_disks() {
    let text = show_text(&sample("web", true), Timestamp(1_000_000 + 12_000));
    for want in [
        "name:          web\n",
        "state_reason:  -\n",
        "pid:           4242\n",
        "uptime:        12s\n",
        "disks:\n  root  2G  /var/lib/novacron/vms/x/root.qcow2  (backing /var/lib/novacron/images/deb/disk)\n",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    let mut stopped = sample("web", false);
    stopped.state_reason = Some("qemu exited with status 1".into());
    stopped.disks.clear();
    let text = show_text(&stopped, Timestamp(0));
    assert!(
        text.contains("state_reason:  qemu exited with status 1\n"),
        "{text}"
    );
    assert!(text.contains("pid:           -\n"), "{text}");
    assert!(text.ends_with("disks:         -\n"), "{text}");
}

#[test]
fn migrate_flags_become_the_request() {
    let VmCommand::Migrate(a) = vm_cmd(&[
        "migrate",
        "web",
        "--to",
        "b",
        "--max-downtime",
        "100",
        "--timeout",
        "60",
        "--postcopy",
    ]) else {
        panic!()
    };
    assert_eq!(
        super::migrate::request(&a),
        novacron_api::migration::VmMigrateRequest {
            target: "b".to_owned(),
            max_downtime_ms: Some(100),
            timeout_secs: Some(60),
            postcopy: true,
        }
    );
    let VmCommand::Migrate(a) = vm_cmd(&["migrate", "web", "--to", "b"]) else {
        panic!()
    };
    assert!(!super::migrate::request(&a).postcopy, "post-copy is opt-in");
    assert!(
        parse(&["vm", "migrate", "web"]).is_err(),
        "--to is required"
    );
}
