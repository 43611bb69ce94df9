//! The last lines of a VM's logs (guest console, QEMU's own output), read from the end of the
//! file in chunks so that a log of gigabytes costs no more than its tail.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::launch::RunPaths;

/// Most bytes read from the end of a log for one tail: a guest that prints megabyte lines
/// gets the end of its last line, not our memory.
pub const MAX_TAIL_BYTES: u64 = 1024 * 1024;

/// Read size when walking back from the end of a file.
const CHUNK: u64 = 16 * 1024;

/// A log tail could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogTailError {
    /// Opening or reading the log failed.
    #[error("could not read {path}")]
    Read {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The blocking read task failed.
    #[error("log reading task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// The last `lines` lines of the guest console of the VM in `run_dir` (lossily decoded). A
/// log that does not exist yet reads as empty.
///
/// # Errors
/// [`LogTailError`] if the file exists but cannot be read.
pub async fn console_tail(run_dir: &Path, lines: usize) -> Result<String, LogTailError> {
    tail(RunPaths::new(run_dir).console_log, lines).await
}

/// The last `lines` lines of QEMU's own output for the VM in `run_dir`; as [`console_tail`].
///
/// # Errors
/// As for [`console_tail`].
pub async fn qemu_log_tail(run_dir: &Path, lines: usize) -> Result<String, LogTailError> {
    tail(RunPaths::new(run_dir).qemu_log, lines).await
}

/// The last `lines` lines of the file at `path`; as [`console_tail`].
///
/// # Errors
/// As for [`console_tail`].
pub async fn tail(path: PathBuf, lines: usize) -> Result<String, LogTailError> {
    tokio::task::spawn_blocking(move || {
        tail_lines(&path, lines, MAX_TAIL_BYTES)
            .map_err(|source| LogTailError::Read { path, source })
    })
    .await
    .map_err(LogTailError::Task)?
}

/// Blocking core of [`tail`]: at most `max_bytes` are read.
pub(crate) fn tail_lines(path: &Path, lines: usize, max_bytes: u64) -> io::Result<String> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(err) => return Err(err),
    };
    if lines == 0 {
        return Ok(String::new());
    }
    let len = file.metadata()?.len();
    let floor = len.saturating_sub(max_bytes);
    let mut pos = len;
    // Chunks from the end backwards; joined once at the end.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut newlines = 0usize;
    let mut ends_with_newline = None;
    while pos > floor {
        let start = pos.saturating_sub(CHUNK).max(floor);
        let size = usize::try_from(pos - start)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut chunk = vec![0; size];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        if ends_with_newline.is_none() {
            ends_with_newline = Some(chunk.last() == Some(&b'\n'));
        }
        newlines += chunk.iter().filter(|&&b| b == b'\n').count();
        chunks.push(chunk);
        pos = start;
        // `lines` full lines need `lines` newlines before them (one more if the file ends
        // with one): then the first of them starts after the extra newline.
        if newlines > lines + usize::from(ends_with_newline == Some(true)) {
            break;
        }
    }
    let mut bytes: Vec<u8> = chunks.into_iter().rev().flatten().collect();
    if ends_with_newline == Some(true) {
        bytes.pop();
    }
    let start = bytes
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(lines - 1)
        .map_or(0, |(index, _)| index + 1);
    Ok(String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file_with(content: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content).unwrap();
        file
    }

    #[test]
    fn last_lines_of_a_file_with_trailing_newline() {
        let file = file_with(b"a\nb\nc\nd\n");
        assert_eq!(tail_lines(file.path(), 2, 1024).unwrap(), "c\nd");
        assert_eq!(tail_lines(file.path(), 4, 1024).unwrap(), "a\nb\nc\nd");
        assert_eq!(tail_lines(file.path(), 10, 1024).unwrap(), "a\nb\nc\nd");
        assert_eq!(tail_lines(file.path(), 0, 1024).unwrap(), "");
    }

    #[test]
    fn last_line_without_newline_counts_as_a_line() {
        let file = file_with(b"a\nb\nc");
        assert_eq!(tail_lines(file.path(), 1, 1024).unwrap(), "c");
        assert_eq!(tail_lines(file.path(), 2, 1024).unwrap(), "b\nc");
    }

    #[test]
    fn lines_spanning_many_chunks_are_joined() {
        let long = "x".repeat(40_000);
        let content = format!("first\n{long}\nlast\n");
        let file = file_with(content.as_bytes());
        assert_eq!(
            tail_lines(file.path(), 2, u64::MAX).unwrap(),
            format!("{long}\nlast")
        );
    }

    #[test]
    fn reads_no_more_than_the_byte_cap() {
        let content = format!("{}\nend\n", "y".repeat(100_000));
        let file = file_with(content.as_bytes());
        let got = tail_lines(file.path(), 5, 1000).unwrap();
        assert_eq!(got.len(), 999);
        assert!(got.ends_with("yyy\nend"));
    }

    #[test]
    fn missing_and_empty_files_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(tail_lines(&dir.path().join("none"), 3, 1024).unwrap(), "");
        let file = file_with(b"");
        assert_eq!(tail_lines(file.path(), 3, 1024).unwrap(), "");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        let file = file_with(b"ok\n\xff\xfe\n");
        assert_eq!(
            tail_lines(file.path(), 1, 1024).unwrap(),
            "\u{fffd}\u{fffd}"
        );
    }

    #[tokio::test]
    async fn console_tail_reads_the_run_dir_console() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("console.log"), "boot\nlogin: ").unwrap();
        std::fs::write(dir.path().join("qemu.log"), "warning\n").unwrap();
        assert_eq!(console_tail(dir.path(), 1).await.unwrap(), "login: ");
        assert_eq!(qemu_log_tail(dir.path(), 5).await.unwrap(), "warning");
    }
}
