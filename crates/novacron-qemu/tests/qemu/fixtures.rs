//! Shared set-up: skipping without QEMU, a VM in a temporary run directory, a guard that
//! kills its QEMU (and prints its log) whatever way the test ends, and the test guest.

use std::path::{Path, PathBuf};
use std::process::Command;

use novacron_qemu::launch::{QEMU_BINARY, RunPaths, cmdline_matches};
use novacron_qemu::{Accel, LaunchSpec, QemuProcess};
use tempfile::TempDir;

/// Returns early, saying so, when the program is not installed.
macro_rules! require {
    ($program:expr) => {
        if !$crate::fixtures::installed($program) {
            eprintln!("skipped: {} is not installed", $program);
            return;
        }
    };
}
pub(crate) use require;

pub fn installed(program: &str) -> bool {
    match Command::new(program).arg("--version").output() {
        Ok(_) => true,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
        Err(err) => panic!("could not run {program}: {err}"),
    }
}

/// A small firmware-only VM in `run_dir`.
pub fn spec(name: &str, run_dir: &Path) -> LaunchSpec {
    LaunchSpec {
        name: name.to_owned(),
        uuid: None,
        vcpus: 1,
        memory_mib: 64,
        kernel: None,
        initrd: None,
        cmdline: None,
        disks: Vec::new(),
        accel: Accel::Tcg,
        run_dir: run_dir.to_owned(),
        incoming: false,
        start_paused: false,
    }
}

/// SIGKILLs the run directory's QEMU when dropped, if it still runs, and prints its log when
/// the test is failing.
pub struct KillOnDrop {
    /// `None`: whatever pid the pidfile names at drop time.
    pid: Option<u32>,
    paths: RunPaths,
}

impl KillOnDrop {
    pub fn new(process: &QemuProcess) -> Self {
        Self {
            pid: Some(process.pid()),
            paths: process.paths().clone(),
        }
    }

    /// For a QEMU started by another process, known only by its run directory.
    pub fn for_run_dir(run_dir: &Path) -> Self {
        Self {
            pid: None,
            paths: RunPaths::new(run_dir),
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = self.pid.or_else(|| {
            let text = std::fs::read_to_string(&self.paths.pidfile).ok()?;
            text.trim().parse().ok()
        });
        let Some(pid) = pid else { return };
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.paths.qemu_log).unwrap_or_default();
            eprintln!("--- qemu.log of pid {pid} ---\n{log}--- end ---");
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        // Only our QEMU: the pid may have been reused after it exited.
        if cmdline_matches(&cmdline, &self.paths) {
            // SAFETY: kill(2) with plain values.
            unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGKILL) };
        }
    }
}

/// A started VM in its own temporary run directory. Field order matters: the guard kills
/// QEMU before the directory is removed.
pub struct TestVm {
    pub process: QemuProcess,
    pub guard: KillOnDrop,
    pub dir: TempDir,
}

impl TestVm {
    pub async fn start(name: &str) -> Self {
        Self::start_spec(name, |_| {}).await
    }

    pub async fn start_spec(name: &str, adjust: impl FnOnce(&mut LaunchSpec)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(name, dir.path());
        adjust(&mut spec);
        let process = QemuProcess::start(&spec).await.unwrap();
        let guard = KillOnDrop::new(&process);
        Self {
            process,
            guard,
            dir,
        }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.process.run_dir().to_owned()
    }
}

/// The test guest built by `scripts/build-test-guest.sh`: `NOVACRON_TEST_GUEST`, or
/// `target/test-guest` of the workspace. Its absence fails the test: a migration test that
/// skips silently proves nothing.
pub fn guest_dir() -> PathBuf {
    let dir = std::env::var_os("NOVACRON_TEST_GUEST").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-guest"),
        PathBuf::from,
    );
    for file in ["vmlinux", "initrd.img", "cmdline", "disk.qcow2"] {
        assert!(
            dir.join(file).is_file(),
            "no {file} in the test guest directory {}: run scripts/build-test-guest.sh first",
            dir.display()
        );
    }
    dir
}

pub fn qemu_binary() -> &'static str {
    QEMU_BINARY
}
