//! The child's own procfs instance, for sysctls, `oom_score_adj` and the AppArmor
//! exec attribute.

use std::ffi::CStr;
use std::os::fd::RawFd;

use crate::sys::{self, Errno};

/// Opens a private procfs instance that nothing in the container can mount over.
pub(super) fn private_procfs() -> Result<RawFd, Errno> {
    // SAFETY: "proc" is a static NUL-terminated fs name.
    let fs = unsafe {
        libc::syscall(
            libc::SYS_fsopen,
            c"proc".as_ptr(),
            1u32, /* FSOPEN_CLOEXEC */
        )
    };
    if fs == -1 {
        return Err(sys::errno());
    }
    let fs = fs as RawFd;
    // SAFETY: FSCONFIG_CMD_CREATE (6) takes no key or value.
    let r = unsafe { libc::syscall(libc::SYS_fsconfig, fs, 6u32, 0usize, 0usize, 0u32) };
    if r == -1 {
        let e = sys::errno();
        sys::close(fs);
        return Err(e);
    }
    // SAFETY: `fs` is the configured fs context; FSMOUNT_CLOEXEC (1) with no attributes.
    let m = unsafe { libc::syscall(libc::SYS_fsmount, fs, 1u32, 0u32) };
    let e = sys::errno();
    sys::close(fs);
    if m == -1 { Err(e) } else { Ok(m as RawFd) }
}

/// Writes a procfs file through the private instance, refusing symlinks and mount crossings.
pub(super) fn write_proc(procfd: RawFd, path: &CStr, value: &[u8]) -> Result<(), Errno> {
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_XDEV | libc::RESOLVE_NO_MAGICLINKS;
    let fd = sys::openat2(procfd, path, libc::O_WRONLY | libc::O_NOFOLLOW, resolve)?;
    let st = sys::fstatfs(fd);
    let r = match st {
        Ok(s) if s.f_type == libc::PROC_SUPER_MAGIC => sys::write_all(fd, value),
        Ok(_) => Err(libc::EXDEV),
        Err(e) => Err(e),
    };
    sys::close(fd);
    r
}
