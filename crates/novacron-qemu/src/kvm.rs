//! Choice of accelerator: KVM where `/dev/kvm` really works, TCG otherwise.
//!
//! A `/dev/kvm` node can exist and still be useless (no permission, a nested hypervisor that
//! refuses to create VMs). [`probe_kvm`] therefore goes as far as creating a VM and a vCPU
//! before it answers [`Accel::Kvm`]; any failure answers [`Accel::Tcg`] and logs the reason.
//!
//! It also asks which CPU features KVM can give a guest and requires SSE3, which every CPU
//! with hardware virtualisation has. Some nested hypervisors expose a KVM that creates VMs and
//! runs real-mode code but offers a crippled CPUID (no SSE3, no SSSE3, no SSE4) and hangs
//! Linux guests right after the kernel decompresses: that KVM must count as not working.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// Where the KVM device lives.
pub const KVM_DEVICE: &str = "/dev/kvm";

/// The only KVM API version there has ever been; anything else is not a KVM we know.
const KVM_API_VERSION: libc::c_int = 12;

// Request numbers from <linux/kvm.h>: _IO(KVMIO = 0xAE, nr).
const KVM_GET_API_VERSION: libc::Ioctl = 0xAE00;
const KVM_CREATE_VM: libc::Ioctl = 0xAE01;
const KVM_CREATE_VCPU: libc::Ioctl = 0xAE41;
// _IOWR(KVMIO, 0x05, struct kvm_cpuid2): 0xC0000000 | (8 << 16) | 0xAE05.
const KVM_GET_SUPPORTED_CPUID: libc::Ioctl = 0xC008_AE05;

/// Entries room for `KVM_GET_SUPPORTED_CPUID`; KVM reports well under 100 today.
const CPUID_ENTRIES: usize = 256;

/// CPUID leaf 1, ECX bit 0: SSE3 (`pni` in /proc/cpuinfo).
const CPUID_1_ECX_SSE3: u32 = 1;

/// `struct kvm_cpuid_entry2` from <linux/kvm.h>.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CpuidEntry2 {
    function: u32,
    index: u32,
    flags: u32,
    eax: u32,
    ebx: u32,
    ecx: u32,
    edx: u32,
    padding: [u32; 3],
}

/// `struct kvm_cpuid2` with room for [`CPUID_ENTRIES`] entries.
#[repr(C)]
struct Cpuid2 {
    nent: u32,
    padding: u32,
    entries: [CpuidEntry2; CPUID_ENTRIES],
}

/// The accelerator QEMU runs guests with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulator: slow, but works everywhere.
    Tcg,
}

impl Accel {
    /// The value of QEMU's `-accel` option.
    #[must_use]
    pub fn qemu_name(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.qemu_name())
    }
}

/// Why KVM cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KvmProbeError {
    /// The device could not be opened (absent, or no permission).
    #[error("could not open the KVM device")]
    Open(#[source] io::Error),
    /// `KVM_GET_API_VERSION` failed.
    #[error("KVM_GET_API_VERSION failed")]
    GetApiVersion(#[source] io::Error),
    /// The kernel speaks another KVM API version.
    #[error("KVM API version is {found}, expected {expected}")]
    ApiVersion {
        /// Version the kernel reported.
        found: i32,
        /// Version this driver speaks.
        expected: i32,
    },
    /// `KVM_CREATE_VM` failed: the device exists but cannot run guests.
    #[error("KVM_CREATE_VM failed")]
    CreateVm(#[source] io::Error),
    /// `KVM_CREATE_VCPU` failed on a freshly created VM.
    #[error("KVM_CREATE_VCPU failed")]
    CreateVcpu(#[source] io::Error),
    /// `KVM_GET_SUPPORTED_CPUID` failed.
    #[error("KVM_GET_SUPPORTED_CPUID failed")]
    GetSupportedCpuid(#[source] io::Error),
    /// KVM cannot give guests a CPU feature that every virtualisation-capable CPU has.
    #[error("KVM does not offer guests the {feature} CPU feature (a crippled nested KVM)")]
    MissingCpuFeature {
        /// The feature, as /proc/cpuinfo names it.
        feature: &'static str,
    },
}

/// Answers [`Accel::Kvm`] if KVM really works on this host, [`Accel::Tcg`] otherwise. The
/// reason for a fallback is logged at `warn`.
#[must_use]
pub fn probe_kvm() -> Accel {
    match check_kvm(Path::new(KVM_DEVICE)) {
        Ok(()) => {
            tracing::info!(device = KVM_DEVICE, "KVM works; guests run accelerated");
            Accel::Kvm
        }
        Err(err) => {
            tracing::warn!(
                device = KVM_DEVICE,
                error = %err,
                cause = ?std::error::Error::source(&err).map(ToString::to_string),
                "KVM is not usable; guests run under TCG"
            );
            Accel::Tcg
        }
    }
}

/// Checks that the KVM device at `device` can create a VM with one vCPU.
///
/// # Errors
/// The first step that failed, with the OS error.
pub fn check_kvm(device: &Path) -> Result<(), KvmProbeError> {
    let kvm = File::options()
        .read(true)
        .write(true)
        .open(device)
        .map_err(KvmProbeError::Open)?;

    // SAFETY: `kvm` is an open file descriptor owned by this function; KVM_GET_API_VERSION
    // takes no argument and touches no memory of ours.
    let version = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version < 0 {
        return Err(KvmProbeError::GetApiVersion(io::Error::last_os_error()));
    }
    if version != KVM_API_VERSION {
        return Err(KvmProbeError::ApiVersion {
            found: version,
            expected: KVM_API_VERSION,
        });
    }

    // SAFETY: as above; the argument 0 asks for the default machine type. The call returns a
    // new descriptor that we take ownership of below.
    let vm = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_CREATE_VM, 0) };
    let vm = owned_or_error(vm).map_err(KvmProbeError::CreateVm)?;

    // SAFETY: `vm` is the VM descriptor just created and owned here; the argument is vCPU id 0.
    let vcpu = unsafe { libc::ioctl(vm.as_raw_fd(), KVM_CREATE_VCPU, 0) };
    let _vcpu = owned_or_error(vcpu).map_err(KvmProbeError::CreateVcpu)?;

    let leaf1 = supported_cpuid(&kvm)?
        .into_iter()
        .find(|entry| entry.function == 1 && entry.index == 0);
    if leaf1.is_none_or(|entry| entry.ecx & CPUID_1_ECX_SSE3 == 0) {
        return Err(KvmProbeError::MissingCpuFeature { feature: "pni" });
    }
    Ok(())
}

/// The CPUID entries KVM can offer guests.
fn supported_cpuid(kvm: &File) -> Result<Vec<CpuidEntry2>, KvmProbeError> {
    let mut cpuid = Box::new(Cpuid2 {
        nent: u32::try_from(CPUID_ENTRIES).unwrap_or(0),
        padding: 0,
        entries: [CpuidEntry2::default(); CPUID_ENTRIES],
    });
    // SAFETY: the argument points to a `kvm_cpuid2` whose `nent` says how many entries follow
    // it in the same allocation; the kernel writes at most that many and updates `nent`.
    let rc = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_SUPPORTED_CPUID, &raw mut *cpuid) };
    if rc < 0 {
        return Err(KvmProbeError::GetSupportedCpuid(io::Error::last_os_error()));
    }
    let count = usize::try_from(cpuid.nent).unwrap_or(0).min(CPUID_ENTRIES);
    Ok(cpuid.entries.iter().take(count).copied().collect())
}

/// Takes ownership of a descriptor returned by an ioctl, or turns -1 into the OS error.
fn owned_or_error(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns, so it
    // is open and closing it once (when the `OwnedFd` drops) is correct.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_is_an_open_error() {
        let err = check_kvm(Path::new("/nonexistent/kvm")).unwrap_err();
        assert!(matches!(err, KvmProbeError::Open(_)), "{err:?}");
    }

    #[test]
    fn a_file_that_is_not_kvm_fails_the_version_ioctl() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = check_kvm(file.path()).unwrap_err();
        assert!(matches!(err, KvmProbeError::GetApiVersion(_)), "{err:?}");
    }

    #[test]
    fn probe_answers_without_panicking() {
        // Either answer is right depending on the host; the probe must simply not fail.
        let accel = probe_kvm();
        assert!(matches!(accel, Accel::Kvm | Accel::Tcg));
        let detail = check_kvm(Path::new(KVM_DEVICE)).map_err(|e| e.to_string());
        eprintln!("KVM on this host: {accel} ({detail:?})");
    }

    #[test]
    fn accel_names_match_qemu_options() {
        assert_eq!(Accel::Kvm.qemu_name(), "kvm");
        assert_eq!(Accel::Tcg.to_string(), "tcg");
    }
}
