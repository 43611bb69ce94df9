//! Facts about the host: name, CPUs, memory, QEMU version.

use std::time::Duration;

/// Reads the host name, `unknown` when it cannot be read.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Number of CPUs this process may use.
pub(crate) fn cpus() -> u32 {
    std::thread::available_parallelism()
        .ok()
        .and_then(|n| u32::try_from(n.get()).ok())
        .unwrap_or(1)
}

/// Total memory of the host in bytes, 0 when unknown.
pub(crate) fn memory_bytes() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib.saturating_mul(1024))
}

/// First line of `qemu-system-x86_64 --version`, or why it could not be run.
pub(crate) async fn qemu_version() -> String {
    let run = tokio::process::Command::new(novacron_qemu::launch::QEMU_BINARY)
        .arg("--version")
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Ok(out)) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("unknown")
            .to_owned(),
        Ok(Ok(out)) => format!("unusable: {}", out.status),
        Ok(Err(e)) => format!("not found: {e}"),
        Err(_) => "unusable: --version timed out".to_owned(),
    }
}
