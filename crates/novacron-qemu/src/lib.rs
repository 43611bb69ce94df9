//! NovaCron QEMU driver: process supervision, QMP client, qemu-img, KVM probe.
//!
//! The node daemon uses this crate to run VMs; it knows nothing of the rest of NovaCron and
//! has its own small types.
//!
//! - [`kvm`]: [`probe_kvm`] chooses KVM where `/dev/kvm` really works, TCG otherwise.
//! - [`launch`]: [`LaunchSpec`] and QEMU's command line; [`RunPaths`] of a run directory.
//! - [`process`]: [`QemuProcess`] starts QEMU so that it outlives the daemon, re-attaches
//!   after a daemon restart, reports its exit, and stops it.
//! - [`qmp`]: the asynchronous QMP client, [`QmpClient`], with the live migration commands
//!   (`qmp::migrate`).
//! - [`logs`]: tails of the guest console and QEMU's log.
//! - [`img`]: `qemu-img` (overlays, image info).
//! - [`stats`]: CPU time and resident memory of a QEMU process.

pub mod img;
pub mod kvm;
pub mod launch;
pub mod logs;
mod pidfd;
pub mod process;
pub mod qmp;
pub mod stats;

pub use img::{ImageInfo, ImgError};
pub use kvm::{Accel, probe_kvm};
pub use launch::{LaunchSpec, RunPaths};
pub use logs::{console_tail, qemu_log_tail};
pub use process::{ProcessError, QemuExit, QemuProcess, ShutdownMethod, ShutdownOutcome};
pub use qmp::{
    MigrationInfo, MigrationParameters, MigrationStatus, QemuVersion, QmpClient, QmpError,
    QmpEvent, RunState, StatusInfo,
};
pub use stats::ProcessStats;
