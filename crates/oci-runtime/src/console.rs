//! The receiving end of `--console-socket`: what conmon or a shim does with the
//! pty master the container's init sends.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use crate::error::{Error, Result};

/// Receives the pty master sent over `stream` (SCM_RIGHTS, as runc sends it).
pub fn receive_pty_master(stream: &UnixStream) -> Result<OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let fail = |source| Error::Sys {
        operation: "receiving the pty master",
        source,
    };
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| fail(e.into()))?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(|e| fail(e.into()))? {
        if let ControlMessageOwned::ScmRights(received) = c {
            fds.extend(received);
        }
    }
    let mut fds = fds.into_iter().map(|fd| {
        // SAFETY: the kernel just installed this fd for us; nobody else owns it.
        unsafe { OwnedFd::from_raw_fd(fd) }
    });
    let first = fds.next();
    // Any further fds are closed as they drop: only one was asked for.
    drop(fds);
    first.ok_or_else(|| {
        fail(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no fd in the message",
        ))
    })
}
