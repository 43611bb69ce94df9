//! End-to-end tests of `novacron server`: the real daemon on loopback with real QEMU guests
//! (TCG, small memory). Each test has its own data directory and daemon, and kills both and
//! every QEMU they started when it ends.

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
mod t02_daemon_restart;
mod t03_concurrent_creates;
mod t04_tenants;
mod t05_bad_input;
mod t06_openapi_metrics_events;
mod t07_cli;
mod t08_sigterm;
mod t09_tls;
mod t10_migrate;
mod t11_migrate_faults;
mod t12_dwcp_flags;
