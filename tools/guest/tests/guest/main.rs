//! Runs the `novacron-guest` binary on the host, as the test guest's init runs it, and reads its
//! console lines.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test crate"
)]

mod t01_host_run;
