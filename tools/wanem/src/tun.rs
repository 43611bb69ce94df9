//! TUN devices: creation in the calling thread's network namespace, packet reads and writes.
//!
//! Main export: [`Tun`]. A TUN device is created in the network namespace of the thread that
//! issues `TUNSETIFF`, so [`Tun::create`] is called from a thread that has entered the target
//! namespace (see [`crate::netns::run_in`]). The file descriptor keeps working from any thread
//! afterwards. The device is `IFF_TUN | IFF_NO_PI`: each read or write is one bare IP packet.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

/// Path of the TUN clone device.
const CLONE_DEVICE: &str = "/dev/net/tun";

/// Layout of `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags at the start of the
/// union, padded to the full 40 bytes of the kernel structure on 64-bit Linux.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TUN device, closed (and removed) when dropped.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Create the TUN device `name` in the calling thread's network namespace, in non-blocking
    /// mode.
    ///
    /// # Errors
    ///
    /// Fails if the name does not fit `IFNAMSIZ`, `/dev/net/tun` cannot be opened, or the kernel
    /// refuses `TUNSETIFF` (e.g. the name is taken by a device of another kind).
    pub fn create(name: &str) -> io::Result<Self> {
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        let bytes = name.as_bytes();
        // Keep one byte for the terminating NUL.
        let dst = req
            .name
            .get_mut(..bytes.len())
            .filter(|_| bytes.len() < libc::IFNAMSIZ && !bytes.is_empty())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("interface name {name:?} must be 1 to 15 bytes"),
                )
            })?;
        dst.copy_from_slice(bytes);
        let flags = libc::IFF_TUN | libc::IFF_NO_PI;
        req.flags = libc::c_short::try_from(flags)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "TUN flags overflow"))?;

        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(CLONE_DEVICE)?;
        // SAFETY: `file` is an open descriptor of /dev/net/tun; TUNSETIFF reads a `struct ifreq`
        // whose layout `IfReqFlags` reproduces (NUL-terminated name, flags, full size), and
        // `req` lives on the stack for the duration of the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut req) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            file,
            name: name.to_owned(),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Read one packet into `buf`. Returns `WouldBlock` when no packet is waiting.
    ///
    /// # Errors
    ///
    /// I/O errors of `read(2)` on the device.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Write one packet; the kernel delivers it to the namespace's stack.
    ///
    /// # Errors
    ///
    /// I/O errors of `write(2)` on the device (e.g. the interface is down).
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        (&self.file).write(packet)
    }

    /// Wait until a packet can be read or `timeout` has passed; `Ok(true)` when readable.
    /// An interrupted wait returns `Ok(false)`.
    ///
    /// # Errors
    ///
    /// Errors of `ppoll(2)` other than `EINTR`.
    pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
        };
        // SAFETY: `pfd` is one valid pollfd and `ts` a valid timespec, both on the stack for the
        // duration of the call; a null signal mask leaves the thread's mask unchanged.
        let rc = unsafe { libc::ppoll(&raw mut pfd, 1, &raw const ts, std::ptr::null()) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(err)
            };
        }
        if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            return Err(io::Error::other(format!(
                "TUN device {} reported poll events {:#x}",
                self.name, pfd.revents
            )));
        }
        Ok(rc > 0 && pfd.revents & libc::POLLIN != 0)
    }
}
