//! Images: the bases that VM root disks are made from.

use crate::{ByteSize, Name, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A base image held by the node under its data directory. A VM's root disk is a qcow2
/// overlay on `disk`; when `kernel` is set the VM boots it directly (with `initrd` and
/// `cmdline`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Image {
    /// Name, unique on the node.
    pub name: Name,
    /// Path of the base disk (qcow2 or raw) on the node.
    pub disk: String,
    /// Format of the base disk as `qemu-img` reports it (`qcow2`, `raw`).
    pub disk_format: String,
    /// Size the guest sees of the base disk.
    pub virtual_size: ByteSize,
    /// Kernel for direct boot, if any.
    pub kernel: Option<String>,
    /// Initial ramdisk for direct boot, if any.
    pub initrd: Option<String>,
    /// Kernel command line for direct boot, if any.
    pub cmdline: Option<String>,
    /// When it was imported.
    pub created_at: Timestamp,
    /// BLAKE3 of the image's content (disk, kernel, initrd and command line), in hex: two
    /// nodes hold the same image when their digests match. Images imported before digests
    /// were kept have none; it is then computed when needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}
