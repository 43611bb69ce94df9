//! `qemu-img`: overlays on base images, blank images, conversion, and image facts.
//!
//! Each call runs `qemu-img` with a deadline (it is killed when the deadline passes), reads
//! at most [`MAX_OUTPUT`] bytes of its output, and on failure carries the start of its
//! stderr ([`MAX_STDERR`] bytes).

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// The `qemu-img` binary, looked up in `PATH`.
pub const QEMU_IMG_BINARY: &str = "qemu-img";

/// Deadline of the quick subcommands (`info`, `create`).
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(60);

/// Most bytes of stdout accepted (`info` of a long backing chain is a few KiB).
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// Most bytes of stderr kept for an error.
pub const MAX_STDERR: usize = 4096;

/// Facts about an image, from `qemu-img info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Format (`qcow2`, `raw`...).
    pub format: String,
    /// Size the guest sees, in bytes.
    pub virtual_size: u64,
    /// Bytes the image occupies on the host; `None` when QEMU cannot tell.
    pub actual_size: Option<u64>,
    /// Backing file, resolved to a full path where QEMU could; `None` for a standalone image.
    pub backing: Option<PathBuf>,
    /// Format of the backing file; `None` when there is none or it was not recorded.
    pub backing_format: Option<String>,
}

/// A failed `qemu-img` run.
#[derive(Debug, thiserror::Error)]
pub enum ImgError {
    /// `qemu-img` could not be executed.
    #[error("could not execute qemu-img")]
    Spawn(#[source] io::Error),
    /// Reading its output or waiting for it failed.
    #[error("could not collect the result of qemu-img {subcommand}")]
    Collect {
        /// The subcommand.
        subcommand: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// It did not finish in time and was killed.
    #[error("qemu-img {subcommand} did not finish within {after:?}")]
    Timeout {
        /// The subcommand.
        subcommand: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// It exited with a failure.
    #[error("qemu-img {subcommand} failed ({exit}): {stderr}")]
    Failed {
        /// The subcommand.
        subcommand: &'static str,
        /// Exit code or signal, as text.
        exit: String,
        /// The start of its stderr.
        stderr: String,
    },
    /// It printed more than [`MAX_OUTPUT`] bytes.
    #[error("qemu-img {subcommand} printed more than {limit} bytes")]
    OutputTooLarge {
        /// The subcommand.
        subcommand: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Its JSON output did not parse.
    #[error("unexpected output from qemu-img {subcommand}")]
    Parse {
        /// The subcommand.
        subcommand: &'static str,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A path could not be made absolute.
    #[error("could not resolve {path}")]
    Resolve {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// `qemu-img info`: format, sizes and backing file of the image at `path`. Works on images in
/// use by a running QEMU (`--force-share`).
///
/// # Errors
/// [`ImgError`] when `qemu-img` fails (missing file, unknown format) or its output is odd.
pub async fn info(path: &Path) -> Result<ImageInfo, ImgError> {
    let args: [&OsStr; 3] = ["--output=json".as_ref(), "-U".as_ref(), path.as_os_str()];
    let out = run("info", &args, QUICK_TIMEOUT).await?;
    parse_info(&out)
}

/// Creates `overlay`, a qcow2 image whose reads fall through to `base` (whose format is read
/// with [`info`]). `size` in bytes, when given, sets the overlay's virtual size (at least the
/// base's); otherwise it is the base's. The base is recorded by absolute path.
///
/// # Errors
/// As for [`info`] on the base, then as for `qemu-img create` (the overlay exists already,
/// the directory is missing...).
pub async fn create_overlay(
    base: &Path,
    overlay: &Path,
    size: Option<u64>,
) -> Result<(), ImgError> {
    let base = std::fs::canonicalize(base).map_err(|source| ImgError::Resolve {
        path: base.to_owned(),
        source,
    })?;
    let base_info = info(&base).await?;
    let mut args: Vec<OsString> = vec![
        "-f".into(),
        "qcow2".into(),
        "-F".into(),
        base_info.format.into(),
        "-b".into(),
        base.into_os_string(),
        overlay.as_os_str().to_owned(),
    ];
    if let Some(size) = size {
        args.push(size.to_string().into());
    }
    run("create", &args, QUICK_TIMEOUT).await.map(drop)
}

/// Points the qcow2 image `overlay` at another backing file, `base` (format read with
/// [`info`]), rewriting only its header (`qemu-img rebase -u`): for a disk that arrived from
/// another node, whose base image is the same content under another path.
///
/// # Errors
/// As for [`info`] on the base, then as for `qemu-img rebase`.
pub async fn rebase_unsafe(overlay: &Path, base: &Path) -> Result<(), ImgError> {
    let base = std::fs::canonicalize(base).map_err(|source| ImgError::Resolve {
        path: base.to_owned(),
        source,
    })?;
    let base_info = info(&base).await?;
    let args: Vec<OsString> = vec![
        "-u".into(),
        "-f".into(),
        "qcow2".into(),
        "-F".into(),
        base_info.format.into(),
        "-b".into(),
        base.into_os_string(),
        overlay.as_os_str().to_owned(),
    ];
    run("rebase", &args, QUICK_TIMEOUT).await.map(drop)
}

/// Creates a blank image of `format` (`qcow2`, `raw`) and `size` bytes at `path`.
///
/// # Errors
/// As for `qemu-img create`.
pub async fn create(path: &Path, format: &str, size: u64) -> Result<(), ImgError> {
    let size = size.to_string();
    let args: [&OsStr; 4] = [
        "-f".as_ref(),
        format.as_ref(),
        path.as_os_str(),
        size.as_ref(),
    ];
    run("create", &args, QUICK_TIMEOUT).await.map(drop)
}

/// Converts `source` into a new image `target` of `format`, flattening any backing chain.
/// This copies the whole image, so the caller chooses the deadline.
///
/// # Errors
/// As for `qemu-img convert`, and [`ImgError::Timeout`] past `limit`.
pub async fn convert(
    source: &Path,
    target: &Path,
    format: &str,
    limit: Duration,
) -> Result<(), ImgError> {
    let args: [&OsStr; 4] = [
        "-O".as_ref(),
        format.as_ref(),
        source.as_os_str(),
        target.as_os_str(),
    ];
    run("convert", &args, limit).await.map(drop)
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawInfo {
    format: String,
    virtual_size: u64,
    actual_size: Option<u64>,
    backing_filename: Option<PathBuf>,
    full_backing_filename: Option<PathBuf>,
    backing_filename_format: Option<String>,
}

/// Parses `qemu-img info --output=json` of one image.
pub(crate) fn parse_info(json: &[u8]) -> Result<ImageInfo, ImgError> {
    let raw: RawInfo = serde_json::from_slice(json).map_err(|source| ImgError::Parse {
        subcommand: "info",
        source,
    })?;
    Ok(ImageInfo {
        format: raw.format,
        virtual_size: raw.virtual_size,
        actual_size: raw.actual_size,
        backing: raw.full_backing_filename.or(raw.backing_filename),
        backing_format: raw.backing_filename_format,
    })
}

/// Runs `qemu-img SUBCOMMAND ARGS...` and returns its stdout.
async fn run<S: AsRef<OsStr>>(
    subcommand: &'static str,
    args: &[S],
    limit: Duration,
) -> Result<Vec<u8>, ImgError> {
    let mut child = Command::new(QEMU_IMG_BINARY)
        .arg(subcommand)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A deadline that passes drops the child: kill it rather than leave it running.
        .kill_on_drop(true)
        .spawn()
        .map_err(ImgError::Spawn)?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let collect = async {
        let (out, err) = tokio::join!(
            read_capped(stdout, MAX_OUTPUT),
            read_capped(stderr, MAX_STDERR)
        );
        let status = child.wait().await;
        (out, err, status)
    };
    let (out, err, status) =
        tokio::time::timeout(limit, collect)
            .await
            .map_err(|_| ImgError::Timeout {
                subcommand,
                after: limit,
            })?;
    let collect_error = |source| ImgError::Collect { subcommand, source };
    let status = status.map_err(collect_error)?;
    let (out, out_overflow) = out.map_err(collect_error)?;
    let (err, err_overflow) = err.map_err(collect_error)?;
    if !status.success() {
        let mut stderr = String::from_utf8_lossy(&err).trim_end().to_owned();
        if err_overflow {
            stderr.push_str(" [...]");
        }
        return Err(ImgError::Failed {
            subcommand,
            exit: status.to_string(),
            stderr,
        });
    }
    if out_overflow {
        return Err(ImgError::OutputTooLarge {
            subcommand,
            limit: MAX_OUTPUT,
        });
    }
    Ok(out)
}

/// Reads up to `cap` bytes; the rest is read and dropped (so the writer never blocks on a
/// full pipe). Returns the bytes and whether there was more.
async fn read_capped<R: AsyncRead + Unpin>(
    reader: Option<R>,
    cap: usize,
) -> io::Result<(Vec<u8>, bool)> {
    let Some(mut reader) = reader else {
        return Ok((Vec::new(), false));
    };
    let mut kept = Vec::new();
    let limit = u64::try_from(cap).unwrap_or(u64::MAX);
    (&mut reader).take(limit).read_to_end(&mut kept).await?;
    let dropped = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await?;
    Ok((kept, dropped > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_of_an_overlay_gives_format_sizes_and_full_backing_path() {
        let json = br#"{
            "children": [{"name": "file", "info": {"format": "file", "virtual-size": 1}}],
            "backing-filename-format": "qcow2",
            "virtual-size": 10485760,
            "filename": "o.qcow2",
            "cluster-size": 65536,
            "format": "qcow2",
            "actual-size": 200704,
            "full-backing-filename": "/tmp/qt/b.qcow2",
            "backing-filename": "b.qcow2",
            "dirty-flag": false
        }"#;
        assert_eq!(
            parse_info(json).unwrap(),
            ImageInfo {
                format: "qcow2".to_owned(),
                virtual_size: 10_485_760,
                actual_size: Some(200_704),
                backing: Some(PathBuf::from("/tmp/qt/b.qcow2")),
                backing_format: Some("qcow2".to_owned()),
            }
        );
    }

    #[test]
    fn info_of_a_standalone_raw_image_has_no_backing() {
        let json = br#"{"virtual-size": 512, "filename": "r.img", "format": "raw"}"#;
        let info = parse_info(json).unwrap();
        assert_eq!(info.format, "raw");
        assert_eq!(info.actual_size, None);
        assert_eq!(info.backing, None);
    }

    #[test]
    fn info_falls_back_to_the_recorded_backing_name() {
        let json = br#"{"virtual-size": 1, "format": "qcow2", "backing-filename": "base.img"}"#;
        assert_eq!(
            parse_info(json).unwrap().backing,
            Some(PathBuf::from("base.img"))
        );
    }

    #[test]
    fn odd_info_output_is_a_parse_error() {
        for bad in [
            &b""[..],
            b"[]",
            b"{\"format\": \"qcow2\"}",
            b"{\"format\": \"qcow2\", \"virtual-size\": -1}",
            b"{\"format\": 7, \"virtual-size\": 1}",
        ] {
            assert!(
                matches!(
                    parse_info(bad),
                    Err(ImgError::Parse {
                        subcommand: "info",
                        ..
                    })
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[tokio::test]
    async fn capped_reader_keeps_the_start_and_reports_the_rest() {
        let data = vec![b'z'; 10_000];
        let (kept, more) = read_capped(Some(data.as_slice()), 100).await.unwrap();
        assert_eq!(kept.len(), 100);
        assert!(more);
        let (kept, more) = read_capped(Some(&b"short"[..]), 100).await.unwrap();
        assert_eq!(kept, b"short");
        assert!(!more);
    }
}
