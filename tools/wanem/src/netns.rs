//! Named network namespaces (`ip netns`) and running code inside one.
//!
//! Main exports: [`NamespacePair`], which creates the two namespaces of a link and deletes them
//! when dropped, [`run_in`], which runs a closure on a thread that has entered a namespace, and
//! [`ip`], which runs one `ip` command. Namespaces are named the way `ip netns` names them, so
//! `ip netns exec NAME …` reaches them; their handles live under [`NETNS_DIR`].

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::thread;

use anyhow::{Context, Result, bail};
use std::os::fd::AsRawFd;

/// Where `ip netns` keeps the bind mounts that name namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Longest namespace name accepted.
const MAX_NAME_LEN: usize = 64;

/// Path of the handle of namespace `name`.
pub fn handle_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Whether a namespace named `name` exists.
pub fn exists(name: &str) -> bool {
    handle_path(name).exists()
}

/// Check that `name` is a plain namespace name: ASCII letters, digits, `-`, `_` and `.`, not a
/// path component like `..`.
///
/// # Errors
///
/// Describes what is wrong with the name.
pub fn validate_name(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_chars || name.starts_with('.') {
        bail!(
            "invalid namespace name {name:?}: use 1 to {MAX_NAME_LEN} ASCII letters, digits, '-', '_' or '.', not starting with '.'"
        );
    }
    Ok(())
}

/// Run `ip ARGS…`, failing with its stderr when it exits non-zero.
///
/// # Errors
///
/// `ip` cannot be started or reports an error.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().with_context(|| {
        format!(
            "could not run `ip {}` (is iproute2 installed?)",
            args.join(" ")
        )
    })?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Delete namespace `name` if it exists; returns whether it existed.
///
/// # Errors
///
/// `ip netns delete` fails.
pub fn delete(name: &str) -> Result<bool> {
    if !exists(name) {
        return Ok(false);
    }
    ip(&["netns", "delete", name]).with_context(|| format!("could not delete namespace {name}"))?;
    Ok(true)
}

/// Run `f` on a new thread that has entered namespace `name`, and return its result.
///
/// `setns(2)` changes the namespace of the calling thread only, so the caller's own thread stays
/// where it is. Sockets and devices that `f` creates belong to `name`.
///
/// # Errors
///
/// The namespace cannot be opened or entered, or `f` fails.
pub fn run_in<T, F>(name: &str, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> Result<T> + Send,
{
    let path = handle_path(name);
    let handle = std::fs::File::open(&path)
        .with_context(|| format!("could not open namespace handle {}", path.display()))?;
    thread::scope(|scope| {
        let worker = thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn_scoped(scope, move || {
                // SAFETY: `handle` is an open descriptor of a network namespace bind mount and
                // CLONE_NEWNET asks for exactly that kind; setns only changes this thread.
                let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(io::Error::last_os_error())
                        .with_context(|| format!("could not enter namespace {name}"));
                }
                f()
            })
            .context("could not spawn a thread to enter a namespace")?;
        match worker.join() {
            Ok(result) => result,
            Err(_) => bail!("the thread that entered namespace {name} panicked"),
        }
    })
}

/// The two namespaces of one link, deleted on drop if this process created them.
#[derive(Debug)]
pub struct NamespacePair {
    names: Vec<String>,
}

impl NamespacePair {
    /// Create namespaces `a` and `b` and bring up their loopback interfaces.
    ///
    /// # Errors
    ///
    /// A name is invalid, a namespace already exists (run `down` first), or `ip` fails. Anything
    /// created before the failure is deleted again.
    pub fn create(a: &str, b: &str) -> Result<Self> {
        validate_name(a)?;
        validate_name(b)?;
        if a == b {
            bail!("the two namespaces need different names (both are {a:?})");
        }
        for name in [a, b] {
            if exists(name) {
                bail!(
                    "namespace {name} already exists; if no emulator is using it, remove it with `novacron-wanem down --ns-a {a} --ns-b {b}`"
                );
            }
        }
        let mut pair = Self { names: Vec::new() };
        for name in [a, b] {
            ip(&["netns", "add", name])
                .with_context(|| format!("could not create namespace {name}"))?;
            pair.names.push(name.to_owned());
            ip(&["-n", name, "link", "set", "lo", "up"])
                .with_context(|| format!("could not bring up lo in {name}"))?;
        }
        Ok(pair)
    }
}

impl Drop for NamespacePair {
    fn drop(&mut self) {
        for name in self.names.drain(..) {
            match delete(&name) {
                Ok(_) => tracing::info!(namespace = %name, "deleted namespace"),
                // Cleanup is best effort: report it and carry on with the other namespace.
                Err(err) => {
                    tracing::warn!(namespace = %name, error = %format!("{err:#}"), "could not delete namespace")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_plain_words() {
        assert!(validate_name("ncwan-a").is_ok());
        assert!(validate_name("bench_1.b").is_ok());
        for bad in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
