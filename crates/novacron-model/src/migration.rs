//! Live migration: its phases and the progress figures the API, events and CLI show.

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// Where a live migration is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    /// The destination is being asked to receive: VM record, disks, QEMU waiting.
    Prepare,
    /// The VM's image (base disk, kernel, initrd) is being copied to a destination that
    /// lacks it.
    Image,
    /// Local disks are being copied.
    Disk,
    /// Memory is being copied while the guest runs (pass N is in `pass`).
    Memory,
    /// The guest is stopped on the source; the last pages, devices and disks are moving.
    SwitchOver,
    /// The guest runs on the destination and pulls the pages it still lacks.
    Postcopy,
    /// The guest runs on the destination; the source is cleaned up.
    Done,
    /// The migration stopped; the guest runs on the source.
    Failed,
}

impl MigrationPhase {
    /// The lowercase name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Prepare => "prepare",
            Self::Image => "image",
            Self::Disk => "disk",
            Self::Memory => "memory",
            Self::SwitchOver => "switch_over",
            Self::Postcopy => "postcopy",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for MigrationPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a live migration got. Rates are in bytes per second; `stream_bytes` over
/// `wire_bytes` is the data-reduction ratio.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MigrationProgress {
    /// Node the VM moves to.
    pub target: String,
    /// Phase now.
    pub phase: Option<MigrationPhase>,
    /// Memory pass (1 for the first full copy, then one per re-send of dirtied pages).
    pub pass: u64,
    /// Bytes of guest memory and disk QEMU has sent so far.
    pub bytes_sent: u64,
    /// Bytes QEMU estimates are still to send.
    pub bytes_remaining: u64,
    /// Size of the guest's memory.
    pub memory_total: u64,
    /// Bytes of QEMU's migration stream handed to DWCP.
    pub stream_bytes: u64,
    /// Bytes DWCP put on the wire for them, after zero elision, deduplication and
    /// compression (frame payloads, first transmissions).
    pub wire_bytes: u64,
    /// Bytes of the stream sent as references to content the destination already held (from
    /// earlier migrations either way), included in `stream_bytes`.
    #[serde(default)]
    pub ref_bytes: u64,
    /// How fast the guest dirties memory.
    pub dirty_rate: u64,
    /// How fast the stream moves over the link.
    pub wire_rate: u64,
    /// Estimated seconds to the end, when one can be given.
    pub eta_secs: Option<u64>,
    /// Milliseconds since the migration began.
    pub elapsed_ms: u64,
    /// How long the guest was stopped at switch-over, once known: from its stop on the source
    /// to its start on the destination (the answer's way back taken as half the commit's
    /// transit, at most half the round trip measured before the migration).
    pub downtime_ms: Option<u64>,
    /// The vCPU throttle QEMU applies to make the migration converge, in percent.
    pub throttle_percent: u64,
    /// Bytes of the VM's disks the mirror copied to the destination so far; it goes on
    /// copying the guest's writes until the switch-over.
    #[serde(default)]
    pub disk_copied: u64,
    /// Bytes the mirror has to copy (what the disks' overlays hold, and writes since).
    #[serde(default)]
    pub disk_total: u64,
    /// Bytes of the VM's image copied to the destination, which lacked it, so far.
    #[serde(default)]
    pub image_copied: u64,
    /// Bytes of the image's files to copy (0: the destination held the image).
    #[serde(default)]
    pub image_total: u64,
    /// Whether the migration switched to post-copy (the guest ran on the destination while
    /// it pulled the pages it lacked).
    #[serde(default)]
    pub postcopy: bool,
}
