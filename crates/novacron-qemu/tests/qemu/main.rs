//! Integration tests against real `qemu-system-x86_64` (under TCG, 64 MiB, no kernel: the
//! firmware idles, which is all QMP needs) and real `qemu-img`; the migration tests boot the
//! test guest of `tools/guest` instead.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "test crate"
)]

mod fixtures;
mod t01_lifecycle;
mod t02_attach;
mod t03_shutdown;
mod t04_img;
mod t05_daemon_killed;
mod t06_migrate;
