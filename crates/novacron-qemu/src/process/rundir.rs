//! Finding a run directory's QEMU: its pidfile, a pidfd pinning the process, and its command
//! line naming exactly that pidfile, so that a reused pid is never taken for it.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::ProcessError;
use crate::launch::{RunPaths, cmdline_matches};
use crate::pidfd;

/// Largest pidfile or `/proc/PID/cmdline` we read.
const PIDFILE_MAX: u64 = 64;
const CMDLINE_MAX: u64 = 1024 * 1024;

/// A [`ProcessError::RunFile`] for `path`.
pub(super) fn run_file(path: &Path, source: io::Error) -> ProcessError {
    ProcessError::RunFile {
        path: path.to_owned(),
        source,
    }
}

/// Creates and canonicalises the run directory, refuses one whose QEMU still runs, and
/// removes a dead QEMU's socket and pidfile so that their reappearance means the new one.
pub(super) fn prepare_run_dir(run_dir: &Path) -> Result<RunPaths, ProcessError> {
    let dir_error = |source| ProcessError::RunDir {
        path: run_dir.to_owned(),
        source,
    };
    fs::create_dir_all(run_dir).map_err(dir_error)?;
    let paths = RunPaths::new(&fs::canonicalize(run_dir).map_err(dir_error)?);
    if let Some((pid, _)) = find_running(&paths)? {
        return Err(ProcessError::AlreadyRunning { pid });
    }
    for stale in [&paths.qmp_socket, &paths.pidfile] {
        match fs::remove_file(stale) {
            Ok(()) => tracing::debug!(path = %stale.display(), "removed a stale run file"),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(run_file(stale, source)),
        }
    }
    Ok(paths)
}

/// The running QEMU of `paths`, with a pidfd on it, or `None` if there is none.
pub(super) fn find_running(paths: &RunPaths) -> Result<Option<(u32, OwnedFd)>, ProcessError> {
    let Some(pid) = read_pidfile(&paths.pidfile)? else {
        return Ok(None);
    };
    // Open the pidfd first: it pins the process we then identify, so a pid reused after
    // the check cannot be mistaken for QEMU.
    let pidfd = match pidfd::open(pid) {
        Ok(fd) => fd,
        Err(err) if err.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(source) => return Err(ProcessError::Pidfd { pid, source }),
    };
    let cmdline_path = PathBuf::from(format!("/proc/{pid}/cmdline"));
    let cmdline = match read_bounded(&cmdline_path, CMDLINE_MAX) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(run_file(&cmdline_path, source)),
    };
    let exited =
        pidfd::has_exited(pidfd.as_fd()).map_err(|source| ProcessError::Pidfd { pid, source })?;
    if exited {
        return Ok(None);
    }
    if !cmdline_matches(&cmdline, paths) {
        return Err(ProcessError::NotOurQemu { pid });
    }
    Ok(Some((pid, pidfd)))
}

/// The pid in `path`; `None` if there is no pidfile.
fn read_pidfile(path: &Path) -> Result<Option<u32>, ProcessError> {
    let bytes = match read_bounded(path, PIDFILE_MAX) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(run_file(path, source)),
    };
    parse_pid(&bytes)
        .map(Some)
        .ok_or_else(|| ProcessError::BadPidfile {
            path: path.to_owned(),
        })
}

/// A positive pid, in decimal, with surrounding whitespace.
fn parse_pid(bytes: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let pid: u32 = text.parse().ok()?;
    (pid > 0).then_some(pid)
}

fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidfile_contents_parse_strictly() {
        assert_eq!(parse_pid(b"1234\n"), Some(1234));
        assert_eq!(parse_pid(b"  77  "), Some(77));
        for bad in [&b""[..], b"0\n", b"-5", b"12x", b"\xff", b"99999999999"] {
            assert_eq!(parse_pid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_run_dir_without_pidfile_has_no_running_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let paths = RunPaths::new(dir.path());
        assert!(find_running(&paths).unwrap().is_none());
    }

    #[test]
    fn a_pidfile_naming_another_live_process_is_not_our_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let paths = RunPaths::new(dir.path());
        // This test process is alive and certainly not QEMU with that pidfile.
        fs::write(&paths.pidfile, format!("{}\n", std::process::id())).unwrap();
        let err = find_running(&paths).unwrap_err();
        assert!(matches!(err, ProcessError::NotOurQemu { .. }), "{err:?}");
    }

    #[test]
    fn a_pidfile_naming_a_dead_process_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let paths = RunPaths::new(dir.path());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        fs::write(&paths.pidfile, format!("{pid}\n")).unwrap();
        assert!(find_running(&paths).unwrap().is_none());
        // And a start in that directory clears it.
        let prepared = prepare_run_dir(dir.path()).unwrap();
        assert!(!prepared.pidfile.exists());
    }

    #[test]
    fn garbage_pidfile_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let paths = RunPaths::new(dir.path());
        fs::write(&paths.pidfile, "not a pid").unwrap();
        assert!(matches!(
            find_running(&paths),
            Err(ProcessError::BadPidfile { .. })
        ));
    }
}
