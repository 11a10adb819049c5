//! The receiving end of `--console-socket`: what conmon or a shim does with the
//! pty master the container's init sends.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use crate::error::{Error, Result};

/// Receives the pty master sent over `stream` (SCM_RIGHTS, as runc sends it).
pub fn receive_pty_master(stream: &UnixStream) -> Result<OwnedFd> {
    let mut buf = [0u8; 256];
    let mut cmsg = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is an empty header, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&cmsg);
    // SAFETY: `msg` points at `iov`, `buf` and `cmsg`, all alive for the call.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(Error::Sys {
            operation: "receiving the pty master",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: recvmsg filled `msg`; CMSG_FIRSTHDR only reads it.
    let c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    // SAFETY: a non-null `c` points into `cmsg`, which recvmsg wrote.
    if c.is_null() || unsafe { (*c).cmsg_type } != libc::SCM_RIGHTS {
        return Err(Error::Sys {
            operation: "receiving the pty master",
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no fd in the message"),
        });
    }
    // SAFETY: an SCM_RIGHTS payload starts with an int fd; read unaligned from `cmsg`.
    let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int) };
    // SAFETY: the kernel just installed this fd for us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
