//! Where the node keeps things under its data directory.
//!
//! ```text
//! DIR/store.redb               the state store
//! DIR/admin.token              the first admin token (mode 0600), written on first start
//! DIR/images/NAME/             an image: disk, and kernel/initrd for direct boot
//! DIR/images/.incoming-ID/     an image arriving ahead of migration ID, until checked
//! DIR/vms/ID/root.qcow2        a VM's root disk (overlay on its image's disk)
//! DIR/vms/ID/run/              QMP socket, pidfile, console.log, qemu.log
//! ```

use novacron_model::{Name, VmId};
use std::path::{Path, PathBuf};

/// Paths under one data directory.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    #[must_use]
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The data directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store file.
    #[must_use]
    pub fn store(&self) -> PathBuf {
        self.root.join("store.redb")
    }

    /// The first admin token.
    #[must_use]
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin.token")
    }

    /// Directory of all images.
    #[must_use]
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// Directory of one image.
    #[must_use]
    pub fn image(&self, name: &Name) -> PathBuf {
        self.images().join(name.as_str())
    }

    /// Directory of all VMs.
    #[must_use]
    pub fn vms(&self) -> PathBuf {
        self.root.join("vms")
    }

    /// Directory of one VM.
    #[must_use]
    pub fn vm(&self, id: VmId) -> PathBuf {
        self.vms().join(id.to_string())
    }

    /// A VM's root disk.
    #[must_use]
    pub fn vm_root_disk(&self, id: VmId) -> PathBuf {
        self.vm(id).join("root.qcow2")
    }

    /// A VM's QEMU run directory.
    #[must_use]
    pub fn vm_run(&self, id: VmId) -> PathBuf {
        self.vm(id).join("run")
    }
}
