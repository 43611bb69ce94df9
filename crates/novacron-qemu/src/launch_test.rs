//! Tests of command-line building and process identification.

use super::*;

fn spec() -> LaunchSpec {
    LaunchSpec {
        name: "vm1".to_owned(),
        uuid: None,
        vcpus: 2,
        memory_mib: 64,
        kernel: None,
        initrd: None,
        cmdline: None,
        disks: Vec::new(),
        accel: Accel::Tcg,
        run_dir: PathBuf::from("/run/novacron/vm1"),
        incoming: false,
        start_paused: false,
    }
}

fn args_of(spec: &LaunchSpec) -> Vec<String> {
    let paths = RunPaths::new(&spec.run_dir);
    spec.qemu_args(&paths)
        .unwrap()
        .into_iter()
        .map(|arg| arg.into_string().unwrap())
        .collect()
}

/// The value following the first occurrence of `flag`.
fn value_of<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let pos = args.iter().position(|a| a == flag)?;
    args.get(pos + 1).map(String::as_str)
}

/// Every value following `flag`.
fn values_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

#[test]
fn minimal_spec_gives_a_headless_machine_with_qmp_pidfile_and_console() {
    let args = args_of(&spec());
    assert_eq!(value_of(&args, "-name"), Some("guest=vm1,debug-threads=on"));
    assert_eq!(value_of(&args, "-machine"), Some("pc"));
    assert_eq!(value_of(&args, "-accel"), Some("tcg"));
    assert_eq!(value_of(&args, "-smp"), Some("2"));
    assert_eq!(value_of(&args, "-m"), Some("64M"));
    assert_eq!(value_of(&args, "-display"), Some("none"));
    assert!(args.iter().any(|a| a == "-nodefaults"));
    assert!(args.iter().any(|a| a == "-no-user-config"));
    assert_eq!(
        value_of(&args, "-pidfile"),
        Some("/run/novacron/vm1/qemu.pid")
    );
    assert_eq!(
        values_of(&args, "-chardev"),
        [
            "file,id=console,append=on,path=/run/novacron/vm1/console.log",
            "socket,id=qmp,server=on,wait=off,path=/run/novacron/vm1/qmp.sock",
        ]
    );
    assert_eq!(value_of(&args, "-serial"), Some("chardev:console"));
    assert_eq!(value_of(&args, "-mon"), Some("chardev=qmp,mode=control"));
    for absent in [
        "-uuid",
        "-kernel",
        "-initrd",
        "-append",
        "-blockdev",
        "-device",
        "-incoming",
    ] {
        assert!(!args.iter().any(|a| a == absent), "{absent} in {args:?}");
    }
}

#[test]
fn kvm_accel_is_passed_through() {
    let args = args_of(&LaunchSpec {
        accel: Accel::Kvm,
        ..spec()
    });
    assert_eq!(value_of(&args, "-accel"), Some("kvm"));
}

#[test]
fn incoming_destination_waits_with_incoming_defer() {
    let args = args_of(&LaunchSpec {
        incoming: true,
        start_paused: false,
        ..spec()
    });
    assert_eq!(value_of(&args, "-incoming"), Some("defer"));
    assert_eq!(values_of(&args, "-incoming").len(), 1);
    assert!(!args.iter().any(|a| a == "-S"));
}

#[test]
fn start_paused_adds_dash_s_once() {
    let args = args_of(&LaunchSpec {
        incoming: true,
        start_paused: true,
        ..spec()
    });
    assert_eq!(args.iter().filter(|a| *a == "-S").count(), 1);
}

#[test]
fn direct_boot_passes_kernel_initrd_and_cmdline_verbatim() {
    let args = args_of(&LaunchSpec {
        kernel: Some("/img/vmlinuz,1".into()),
        initrd: Some("/img/initrd.img".into()),
        cmdline: Some("console=ttyS0 quiet, panic=1".to_owned()),
        uuid: Some("0e6e2d7a-1b1c-4bb8-9a55-2f7f5a3c9d10".to_owned()),
        ..spec()
    });
    assert_eq!(value_of(&args, "-kernel"), Some("/img/vmlinuz,1"));
    assert_eq!(value_of(&args, "-initrd"), Some("/img/initrd.img"));
    assert_eq!(
        value_of(&args, "-append"),
        Some("console=ttyS0 quiet, panic=1")
    );
    assert_eq!(
        value_of(&args, "-uuid"),
        Some("0e6e2d7a-1b1c-4bb8-9a55-2f7f5a3c9d10")
    );
}

#[test]
fn disks_become_named_qcow2_nodes_on_virtio_blk() {
    let args = args_of(&LaunchSpec {
        disks: vec!["/d/root.qcow2".into(), "/d/data.qcow2".into()],
        ..spec()
    });
    assert_eq!(
        values_of(&args, "-blockdev"),
        [
            "driver=qcow2,node-name=disk0,file.driver=file,file.filename=/d/root.qcow2",
            "driver=qcow2,node-name=disk1,file.driver=file,file.filename=/d/data.qcow2",
        ]
    );
    assert_eq!(
        values_of(&args, "-device"),
        [
            "virtio-blk-pci,drive=disk0,id=virtio-disk0",
            "virtio-blk-pci,drive=disk1,id=virtio-disk1",
        ]
    );
}

#[test]
fn commas_in_names_and_paths_are_doubled_where_qemu_parses_options() {
    let args = args_of(&LaunchSpec {
        name: "a,b".to_owned(),
        run_dir: "/run/x,y".into(),
        disks: vec!["/d/a,b.qcow2".into()],
        ..spec()
    });
    assert_eq!(
        value_of(&args, "-name"),
        Some("guest=a,,b,debug-threads=on")
    );
    assert!(
        values_of(&args, "-chardev")
            .contains(&"socket,id=qmp,server=on,wait=off,path=/run/x,,y/qmp.sock")
    );
    assert_eq!(
        value_of(&args, "-blockdev"),
        Some("driver=qcow2,node-name=disk0,file.driver=file,file.filename=/d/a,,b.qcow2")
    );
    // -pidfile is not an option list: verbatim.
    assert_eq!(value_of(&args, "-pidfile"), Some("/run/x,y/qemu.pid"));
}

#[test]
fn invalid_specs_are_refused_with_the_reason() {
    let cases = [
        (
            LaunchSpec {
                name: String::new(),
                ..spec()
            },
            LaunchSpecError::Name,
        ),
        (
            LaunchSpec {
                name: "a\nb".to_owned(),
                ..spec()
            },
            LaunchSpecError::Name,
        ),
        (
            LaunchSpec { vcpus: 0, ..spec() },
            LaunchSpecError::Vcpus {
                vcpus: 0,
                max: MAX_VCPUS,
            },
        ),
        (
            LaunchSpec {
                vcpus: 256,
                ..spec()
            },
            LaunchSpecError::Vcpus {
                vcpus: 256,
                max: MAX_VCPUS,
            },
        ),
        (
            LaunchSpec {
                memory_mib: 0,
                ..spec()
            },
            LaunchSpecError::Memory,
        ),
        (
            LaunchSpec {
                initrd: Some("/i".into()),
                ..spec()
            },
            LaunchSpecError::BootWithoutKernel,
        ),
        (
            LaunchSpec {
                cmdline: Some("quiet".to_owned()),
                ..spec()
            },
            LaunchSpecError::BootWithoutKernel,
        ),
        (
            LaunchSpec {
                uuid: Some("not-a-uuid".to_owned()),
                ..spec()
            },
            LaunchSpecError::Uuid {
                uuid: "not-a-uuid".to_owned(),
            },
        ),
        (
            LaunchSpec {
                uuid: Some("0e6e2d7a-1b1c-4bb8-9a55-2f7f5a3c9d1g".to_owned()),
                ..spec()
            },
            LaunchSpecError::Uuid {
                uuid: "0e6e2d7a-1b1c-4bb8-9a55-2f7f5a3c9d1g".to_owned(),
            },
        ),
    ];
    for (spec, expected) in cases {
        assert_eq!(spec.validate(), Err(expected.clone()), "{spec:?}");
        let paths = RunPaths::new(&spec.run_dir);
        assert_eq!(spec.qemu_args(&paths), Err(expected));
    }
}

#[test]
fn a_run_dir_too_deep_for_a_socket_is_refused() {
    let deep = LaunchSpec {
        run_dir: PathBuf::from(format!("/{}", "d".repeat(120))),
        ..spec()
    };
    let paths = RunPaths::new(&deep.run_dir);
    assert!(matches!(
        deep.qemu_args(&paths),
        Err(LaunchSpecError::SocketPathTooLong {
            max: MAX_SOCKET_PATH,
            ..
        })
    ));
}

#[test]
fn cmdline_match_needs_the_exact_pidfile() {
    let paths = RunPaths::new(Path::new("/run/vm1"));
    let ours = b"qemu-system-x86_64\0-name\0guest=vm1\0-pidfile\0/run/vm1/qemu.pid\0-m\x0064M\0";
    assert!(cmdline_matches(ours, &paths));

    let other_vm = b"qemu-system-x86_64\0-pidfile\0/run/vm10/qemu.pid\0";
    assert!(!cmdline_matches(other_vm, &paths));
    let reused_pid = b"/usr/bin/sleep\0/run/vm1/qemu.pid\0";
    assert!(!cmdline_matches(reused_pid, &paths));
    assert!(!cmdline_matches(b"", &paths));
    assert!(!cmdline_matches(b"-pidfile", &paths));
    assert!(!cmdline_matches(b"-pidfile\0", &paths));
}

#[test]
fn built_command_line_is_recognised_as_ours() {
    let spec = spec();
    let paths = RunPaths::new(&spec.run_dir);
    let mut cmdline = b"qemu-system-x86_64\0".to_vec();
    for arg in spec.qemu_args(&paths).unwrap() {
        cmdline.extend_from_slice(arg.as_bytes());
        cmdline.push(0);
    }
    assert!(cmdline_matches(&cmdline, &paths));
    assert!(!cmdline_matches(
        &cmdline,
        &RunPaths::new(Path::new("/run/novacron/vm2"))
    ));
}
