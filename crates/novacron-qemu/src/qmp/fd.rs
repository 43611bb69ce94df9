//! Sending a file descriptor with data over a Unix socket (`SCM_RIGHTS`), as QMP's `getfd` and
//! `add-fd` expect: the descriptor rides on the first byte of the command line.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

/// Room for one `cmsghdr` carrying one `c_int`, aligned for `cmsghdr` (16 bytes of header and
/// 4 of payload, rounded up: 24 on 64-bit Linux; 32 leaves margin).
#[repr(C, align(8))]
struct ControlBuffer([u8; 32]);

/// Sends `data` on the connected Unix socket `socket` with `fd` attached, in one `sendmsg`.
/// Returns the number of bytes of `data` sent, which may be fewer than `data.len()`: the
/// caller writes the rest normally (the descriptor travels with the first byte).
///
/// The socket may be non-blocking: `WouldBlock` is returned as an error for the caller's
/// readiness loop.
pub(crate) fn send_with_fd(
    socket: BorrowedFd<'_>,
    data: &[u8],
    fd: BorrowedFd<'_>,
) -> io::Result<usize> {
    if data.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a descriptor needs at least one byte of data to travel with",
        ));
    }
    let fd_len = libc::c_uint::try_from(mem::size_of::<libc::c_int>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: CMSG_SPACE only computes a size from its argument.
    let space = unsafe { libc::CMSG_SPACE(fd_len) } as usize;
    let mut control = ControlBuffer([0; 32]);
    if space > control.0.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }

    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = space;

    // SAFETY: `msg.msg_control` points to `space` writable bytes aligned for `cmsghdr` (checked
    // above against the buffer size), so CMSG_FIRSTHDR returns a pointer to a header inside
    // `control`, and CMSG_DATA points into it with room for one c_int (CMSG_SPACE(4) bytes).
    // The data pointer may be unaligned for c_int, hence `write_unaligned`.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        if cmsg.is_null() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fd_len) as usize;
        ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd.as_raw_fd());
    }

    // SAFETY: `socket` is an open descriptor borrowed for the call; `msg` points to `iov`
    // (valid for `data.len()` readable bytes) and to `control`, all alive until sendmsg
    // returns. MSG_NOSIGNAL turns a closed peer into EPIPE instead of SIGPIPE.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &raw const msg, libc::MSG_NOSIGNAL) };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
pub(crate) mod testing {
    //! The receiving side, for tests.

    use std::os::fd::{FromRawFd, OwnedFd};

    use super::*;

    /// Receives up to `buf.len()` bytes and at most one descriptor from a blocking socket.
    pub(crate) fn recv_with_fd(
        socket: BorrowedFd<'_>,
        buf: &mut [u8],
    ) -> io::Result<(usize, Option<OwnedFd>)> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = ControlBuffer([0; 32]);
        // SAFETY: all-zero is a valid msghdr.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = control.0.len();
        // SAFETY: buffers outlive the call; the kernel writes within the given lengths.
        let got =
            unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
        let got = usize::try_from(got).map_err(|_| io::Error::last_os_error())?;
        // SAFETY: the kernel filled `msg`; CMSG_FIRSTHDR checks msg_controllen.
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
        if cmsg.is_null() {
            return Ok((got, None));
        }
        // SAFETY: a non-null header lies within `control`; an SCM_RIGHTS one carries a c_int
        // that is a new descriptor now owned by this process.
        let fd = unsafe {
            if (*cmsg).cmsg_level != libc::SOL_SOCKET || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
                return Ok((got, None));
            }
            let raw = ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
            OwnedFd::from_raw_fd(raw)
        };
        Ok((got, Some(fd)))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn descriptor_arrives_with_the_data_and_refers_to_the_same_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut passed_peer, passed) = UnixStream::pair().unwrap();

        let sent = send_with_fd(a.as_fd(), b"hello", passed.as_fd()).unwrap();
        assert_eq!(sent, 5);

        let mut buf = [0u8; 16];
        let (got, fd) = testing::recv_with_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..got], b"hello");
        let fd = fd.expect("a descriptor");

        // Writing through the received descriptor reaches the peer of the passed socket.
        let mut received = UnixStream::from(fd);
        drop(passed);
        received.write_all(b"via fd").unwrap();
        drop(received);
        let mut out = String::new();
        passed_peer.read_to_string(&mut out).unwrap();
        assert_eq!(out, "via fd");
    }

    #[test]
    fn empty_data_is_refused() {
        let (a, _b) = UnixStream::pair().unwrap();
        let err = send_with_fd(a.as_fd(), b"", a.as_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn closed_peer_is_an_error_not_a_signal() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let err = send_with_fd(a.as_fd(), b"x", a.as_fd()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    }
}
