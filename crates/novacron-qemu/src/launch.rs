//! What to run: [`LaunchSpec`] describes a VM, [`RunPaths`] names the files QEMU keeps in the
//! VM's run directory, and [`LaunchSpec::qemu_args`] turns both into QEMU's command line.
//!
//! Run directory layout:
//!
//! ```text
//! RUN_DIR/qmp.sock     QMP socket (QEMU listens, the daemon connects)
//! RUN_DIR/qemu.pid     QEMU's pid, written by QEMU, removed when it exits
//! RUN_DIR/console.log  the guest's serial console, appended across restarts
//! RUN_DIR/qemu.log     QEMU's own stdout and stderr, appended
//! ```
//!
//! A destination of a live migration is the same VM with [`LaunchSpec::incoming`] set: the
//! same devices in the same order (QEMU's migration stream requires it), plus `-incoming defer`.
//!
//! The machine type is `pc` (i440FX): under TCG it has the least device emulation to set up
//! (no PCIe root ports, no AHCI), and with `-nodefaults` it reaches the firmware as fast as
//! `q35` does, so it is never slower.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::kvm::Accel;

/// The QEMU binary, looked up in `PATH`.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// The machine type every VM gets.
pub const MACHINE_TYPE: &str = "pc";

/// Longest Unix socket path the kernel accepts (`sun_path` is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Most vCPUs a `pc` machine takes without an IOMMU and x2APIC.
pub const MAX_VCPUS: u32 = 255;

/// A VM to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// VM name, shown in QEMU's window title, logs and thread names.
    pub name: String,
    /// SMBIOS UUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`); `None` lets QEMU use its default.
    pub uuid: Option<String>,
    /// Number of vCPUs, 1 to [`MAX_VCPUS`].
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Kernel for direct boot; `None` boots through the firmware from the disks.
    pub kernel: Option<PathBuf>,
    /// Initramfs for direct boot; needs `kernel`.
    pub initrd: Option<PathBuf>,
    /// Kernel command line; needs `kernel`.
    pub cmdline: Option<String>,
    /// qcow2 images, attached in order as virtio-blk disks (`disk0`, `disk1`...).
    pub disks: Vec<PathBuf>,
    /// Accelerator.
    pub accel: Accel,
    /// Directory for the QMP socket, pidfile and logs; created if missing.
    pub run_dir: PathBuf,
    /// Start as the destination of a live migration: QEMU gets `-incoming defer`, sets up the
    /// machine without running it (run state `inmigrate`) and waits for `migrate-incoming`.
    /// `false` for an ordinary start.
    pub incoming: bool,
    /// Keep the vCPUs stopped (`-S`) until a `cont`: for a migration destination, so that
    /// the guest runs only once the node daemon has confirmed the switch-over.
    pub start_paused: bool,
}

/// Why a [`LaunchSpec`] cannot be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchSpecError {
    /// The name is empty or has control characters.
    #[error("VM name must be non-empty printable text")]
    Name,
    /// The UUID is not in the 8-4-4-4-12 hexadecimal form.
    #[error("UUID {uuid:?} is not in the 8-4-4-4-12 hexadecimal form")]
    Uuid {
        /// The UUID given.
        uuid: String,
    },
    /// vCPU count out of range.
    #[error("vCPU count {vcpus} is not within 1..={max}")]
    Vcpus {
        /// The count given.
        vcpus: u32,
        /// The largest count accepted.
        max: u32,
    },
    /// Zero memory.
    #[error("memory must be at least 1 MiB")]
    Memory,
    /// `initrd` or `cmdline` without `kernel`.
    #[error("an initrd or kernel command line needs a kernel")]
    BootWithoutKernel,
    /// The QMP socket path would be too long for a Unix socket.
    #[error("QMP socket path is {len} bytes; Unix sockets take at most {max}")]
    SocketPathTooLong {
        /// Length of the path in bytes.
        len: usize,
        /// The most the kernel accepts.
        max: usize,
    },
}

/// The files of a run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    /// The run directory itself.
    pub run_dir: PathBuf,
    /// QMP socket.
    pub qmp_socket: PathBuf,
    /// QEMU's pidfile.
    pub pidfile: PathBuf,
    /// Guest serial console log.
    pub console_log: PathBuf,
    /// QEMU's own stdout and stderr.
    pub qemu_log: PathBuf,
}

impl RunPaths {
    /// The paths inside `run_dir`.
    #[must_use]
    pub fn new(run_dir: &Path) -> Self {
        Self {
            run_dir: run_dir.to_owned(),
            qmp_socket: run_dir.join("qmp.sock"),
            pidfile: run_dir.join("qemu.pid"),
            console_log: run_dir.join("console.log"),
            qemu_log: run_dir.join("qemu.log"),
        }
    }
}

impl LaunchSpec {
    /// Checks what QEMU would otherwise reject later, or misread.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), LaunchSpecError> {
        if self.name.is_empty() || self.name.chars().any(char::is_control) {
            return Err(LaunchSpecError::Name);
        }
        if let Some(uuid) = &self.uuid {
            if !is_uuid(uuid) {
                return Err(LaunchSpecError::Uuid { uuid: uuid.clone() });
            }
        }
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(LaunchSpecError::Vcpus {
                vcpus: self.vcpus,
                max: MAX_VCPUS,
            });
        }
        if self.memory_mib == 0 {
            return Err(LaunchSpecError::Memory);
        }
        if self.kernel.is_none() && (self.initrd.is_some() || self.cmdline.is_some()) {
            return Err(LaunchSpecError::BootWithoutKernel);
        }
        Ok(())
    }

    /// QEMU's arguments (without the program name) for this VM, with its files at `paths`.
    ///
    /// # Errors
    /// What [`LaunchSpec::validate`] finds, and a socket path that is too long.
    pub fn qemu_args(&self, paths: &RunPaths) -> Result<Vec<OsString>, LaunchSpecError> {
        self.validate()?;
        let socket_len = paths.qmp_socket.as_os_str().len();
        if socket_len > MAX_SOCKET_PATH {
            return Err(LaunchSpecError::SocketPathTooLong {
                len: socket_len,
                max: MAX_SOCKET_PATH,
            });
        }

        let mut args = Args::default();
        args.flag("-name")
            .value(format!("guest={},debug-threads=on", escape_str(&self.name)));
        if let Some(uuid) = &self.uuid {
            args.flag("-uuid").value(uuid);
        }
        args.flag("-machine").value(MACHINE_TYPE);
        args.flag("-accel").value(self.accel.qemu_name());
        args.flag("-smp").value(self.vcpus.to_string());
        args.flag("-m").value(format!("{}M", self.memory_mib));
        args.flag("-nodefaults")
            .flag("-no-user-config")
            .flag("-display")
            .value("none");
        args.flag("-msg").value("timestamp=on");

        // The console goes through a file chardev in append mode, so the log of an earlier
        // run survives a restart in the same run directory.
        args.flag("-chardev").value(opt_with_path(
            "file,id=console,append=on,path=",
            &paths.console_log,
        ));
        args.flag("-serial").value("chardev:console");

        // `-chardev` + `-mon` rather than `-qmp unix:PATH`: this form escapes commas in PATH.
        args.flag("-chardev").value(opt_with_path(
            "socket,id=qmp,server=on,wait=off,path=",
            &paths.qmp_socket,
        ));
        args.flag("-mon").value("chardev=qmp,mode=control");
        args.flag("-pidfile").value(&paths.pidfile);

        // -kernel, -initrd and -append take their value verbatim: no escaping.
        if let Some(kernel) = &self.kernel {
            args.flag("-kernel").value(kernel);
        }
        if let Some(initrd) = &self.initrd {
            args.flag("-initrd").value(initrd);
        }
        if let Some(cmdline) = &self.cmdline {
            args.flag("-append").value(cmdline);
        }

        for (index, disk) in self.disks.iter().enumerate() {
            // Named block nodes (`diskN`) so that later block jobs (mirror for migration)
            // can address them.
            let prefix =
                format!("driver=qcow2,node-name=disk{index},file.driver=file,file.filename=");
            args.flag("-blockdev").value(opt_with_path(&prefix, disk));
            args.flag("-device").value(format!(
                "virtio-blk-pci,drive=disk{index},id=virtio-disk{index}"
            ));
        }

        // `defer` rather than a URI: the migration channel is a descriptor passed later over
        // QMP (`getfd`, then `migrate-incoming` with `fd:NAME`), so QEMU opens no socket itself.
        if self.incoming {
            args.flag("-incoming").value("defer");
        }
        if self.start_paused {
            args.flag("-S");
        }
        Ok(args.0)
    }
}

/// Whether a process command line (`/proc/PID/cmdline`: NUL-separated arguments) is a QEMU
/// started for the run directory of `paths`: it must pass exactly that pidfile. A pid reused
/// by another process, or a QEMU of another VM, does not match.
#[must_use]
pub fn cmdline_matches(cmdline: &[u8], paths: &RunPaths) -> bool {
    let pidfile = paths.pidfile.as_os_str().as_bytes();
    let mut args = cmdline.split(|&b| b == 0);
    while let Some(arg) = args.next() {
        if arg == b"-pidfile" {
            return args.next() == Some(pidfile);
        }
    }
    false
}

/// Builder of an argument vector.
#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flag(&mut self, flag: &str) -> &mut Self {
        self.0.push(flag.into());
        self
    }

    fn value(&mut self, value: impl AsRef<OsStr>) -> &mut Self {
        self.0.push(value.as_ref().to_owned());
        self
    }
}

/// QEMU's option syntax separates `key=value` pairs with commas; a comma inside a value is
/// written twice.
fn escape_str(value: &str) -> String {
    value.replace(',', ",,")
}

/// `prefix` followed by `path` with its commas doubled, for paths that need not be UTF-8.
fn opt_with_path(prefix: &str, path: &Path) -> OsString {
    let mut out = prefix.as_bytes().to_vec();
    for &byte in path.as_os_str().as_bytes() {
        out.push(byte);
        if byte == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

fn is_uuid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
#[path = "launch_test.rs"]
mod tests;
