//! Thin raw-syscall helpers usable between `clone` and `exec`: no allocation,
//! no locks, errors as plain errno values.

use std::ffi::CStr;
use std::os::fd::RawFd;

use libc::{c_char, c_int, c_long, c_ulong};

/// An errno value.
pub(crate) type Errno = c_int;

pub(crate) fn errno() -> Errno {
    // SAFETY: `__errno_location` returns this thread's errno slot, always valid to read.
    unsafe { *libc::__errno_location() }
}

fn check(ret: c_long) -> Result<c_long, Errno> {
    if ret == -1 { Err(errno()) } else { Ok(ret) }
}

fn check_int(ret: c_int) -> Result<c_int, Errno> {
    if ret == -1 { Err(errno()) } else { Ok(ret) }
}

pub(crate) fn close(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: closing an fd this process owns; a stale number only yields EBADF.
        unsafe { libc::close(fd) };
    }
}

/// How often `openat2` is retried on `EAGAIN` before the error is returned.
const OPENAT2_RETRIES: u32 = 128;

/// `openat2` with `how.resolve` flags; `O_CLOEXEC` is always added.
///
/// With `RESOLVE_IN_ROOT` or `RESOLVE_BENEATH` the kernel answers `EAGAIN` when
/// any mount or rename on the system raced with the lookup (other containers
/// starting, say), so that error is retried, boundedly.
pub(crate) fn openat2(dir: RawFd, path: &CStr, flags: c_int, resolve: u64) -> Result<RawFd, Errno> {
    // SAFETY: open_how is plain data; all-zero is valid and the fields are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    let mut tries = 0;
    loop {
        // SAFETY: `path` is NUL-terminated and `how` is a valid open_how whose size we pass; both outlive the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                path.as_ptr(),
                &how as *const libc::open_how,
                size_of::<libc::open_how>(),
            )
        };
        match check(r) {
            Err(libc::EAGAIN) if tries < OPENAT2_RETRIES => tries += 1,
            r => return r.map(|fd| fd as RawFd),
        }
    }
}

pub(crate) fn openat(
    dir: RawFd,
    path: &CStr,
    flags: c_int,
    mode: libc::mode_t,
) -> Result<RawFd, Errno> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    check_int(unsafe {
        libc::openat(
            dir,
            path.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })
}

pub(crate) fn mkdirat(dir: RawFd, name: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    match check_int(unsafe { libc::mkdirat(dir, name.as_ptr(), mode) }) {
        Ok(_) => Ok(()),
        Err(libc::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) fn mount(
    src: *const c_char,
    target: *const c_char,
    fstype: *const c_char,
    flags: c_ulong,
    data: *const c_char,
) -> Result<(), Errno> {
    // SAFETY: callers pass NUL-terminated strings (or null where mount(2) allows it) that outlive the call.
    check_int(unsafe { libc::mount(src, target, fstype, flags, data.cast()) }).map(drop)
}

pub(crate) fn fstat(fd: RawFd) -> Result<libc::stat, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `st` is writable storage of the right size for fstat.
    check_int(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded and filled the struct.
    Ok(unsafe { st.assume_init() })
}

/// The kernel's `struct statfs` (64-bit layout), which unlike libc's exposes `f_flags`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Statfs {
    pub f_type: i64,
    pub f_bsize: i64,
    pub f_blocks: u64,
    pub f_bfree: u64,
    pub f_bavail: u64,
    pub f_files: u64,
    pub f_ffree: u64,
    pub f_fsid: [i32; 2],
    pub f_namelen: i64,
    pub f_frsize: i64,
    pub f_flags: i64,
    pub f_spare: [i64; 4],
}

pub(crate) fn fstatfs(fd: RawFd) -> Result<Statfs, Errno> {
    let mut st = Statfs::default();
    // SAFETY: `st` is writable storage laid out as the kernel's struct statfs.
    check(unsafe { libc::syscall(libc::SYS_fstatfs, fd, &mut st as *mut Statfs) })?;
    Ok(st)
}

pub(crate) fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid readable slice for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(errno());
        }
        buf = buf.get(n as usize..).unwrap_or(&[]);
    }
    Ok(())
}

/// Reads until `buf` is full or EOF; returns the bytes read.
pub(crate) fn read_full(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        // SAFETY: `rest` is a valid writable slice for its length.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(errno());
        }
        if n == 0 {
            break;
        }
        got += n as usize;
    }
    Ok(got)
}

pub(crate) fn prctl(op: c_int, a: c_ulong, b: c_ulong) -> Result<c_int, Errno> {
    // SAFETY: prctl with integer arguments only; no pointers are passed.
    check_int(unsafe { libc::prctl(op, a, b, 0 as c_ulong, 0 as c_ulong) })
}

/// Raw `setresuid`/`setresgid`/`setgroups`: glibc's wrappers signal every thread of the
/// parent, which do not exist in a freshly cloned child.
pub(crate) fn setresuid(uid: u32) -> Result<(), Errno> {
    // SAFETY: plain integer syscall.
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
}

pub(crate) fn setresgid(gid: u32) -> Result<(), Errno> {
    // SAFETY: plain integer syscall.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
}

pub(crate) fn setgroups(groups: &[libc::gid_t]) -> Result<(), Errno> {
    // SAFETY: `groups` is a valid slice of gid_t for its length.
    check(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) }).map(drop)
}

/// Writes `/proc/self/fd/<fd>` into `buf` and returns a pointer to the C string.
pub(crate) fn fd_path(fd: RawFd, buf: &mut [u8; 32]) -> *const c_char {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    let mut i = 0;
    for b in PREFIX {
        buf[i] = *b;
        i += 1;
    }
    i += write_decimal(fd.max(0) as u64, &mut buf[i..31]);
    buf[i] = 0;
    buf.as_ptr().cast()
}

/// Writes `n` in decimal into `out` (which must hold 20 bytes); returns the length.
pub(crate) fn write_decimal(mut n: u64, out: &mut [u8]) -> usize {
    let mut tmp = [0u8; 20];
    let mut len = 0;
    loop {
        tmp[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 || len == tmp.len() {
            break;
        }
    }
    let len = len.min(out.len());
    for (j, slot) in out.iter_mut().take(len).enumerate() {
        *slot = tmp[len - 1 - j];
    }
    len
}

/// Sends `fd` over the unix socket `sock` with `name` as the message body (SCM_RIGHTS).
pub(crate) fn send_fd(sock: RawFd, fd: RawFd, name: &[u8]) -> Result<(), Errno> {
    #[repr(C)]
    struct Cmsg {
        hdr: libc::cmsghdr,
        fd: c_int,
        _pad: c_int,
    }
    let mut cmsg = Cmsg {
        hdr: libc::cmsghdr {
            cmsg_len: size_of::<libc::cmsghdr>() + size_of::<c_int>(),
            cmsg_level: libc::SOL_SOCKET,
            cmsg_type: libc::SCM_RIGHTS,
        },
        fd,
        _pad: 0,
    };
    let mut iov = libc::iovec {
        iov_base: name.as_ptr() as *mut _,
        iov_len: name.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid empty header that we fill below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut cmsg as *mut Cmsg).cast();
    msg.msg_controllen = size_of::<Cmsg>();
    // SAFETY: `msg` points at `iov` and `cmsg`, both alive on this stack frame for the call.
    check(unsafe { libc::sendmsg(sock, &msg, 0) } as c_long).map(drop)
}

/// Monotonic clock in milliseconds.
pub(crate) fn now_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is writable timespec storage.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

pub(crate) fn sleep_ms(ms: i64) {
    let ts = libc::timespec {
        tv_sec: ms / 1000,
        tv_nsec: (ms % 1000) * 1_000_000,
    };
    // SAFETY: `ts` is a valid timespec; the remainder pointer may be null.
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}
