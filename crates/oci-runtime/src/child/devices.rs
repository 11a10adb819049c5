//! /dev inside the container: device nodes, the standard symlinks and the console.

use std::ffi::CStr;
use std::os::fd::RawFd;

use super::resolve::{Create, IN_ROOT, resolve};
use crate::sys::{self, Errno};

pub(super) fn make_device(
    root: RawFd,
    d: &crate::plan::DevicePlan,
    new_user: bool,
) -> Result<(), Errno> {
    let parent = resolve(root, &d.parent, Create::Dir)?;
    let res = (|| {
        // SAFETY: `d.name` is NUL-terminated; unlinking inside the resolved parent dir.
        let r = unsafe { libc::unlinkat(parent, d.name.as_ptr(), 0) };
        if r == -1 && sys::errno() != libc::ENOENT {
            return Err(sys::errno());
        }
        if new_user {
            // mknod is not allowed in a user namespace: bind the host's node instead.
            let f = sys::openat(
                parent,
                &d.name,
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
                0o644,
            )?;
            sys::close(f);
            let t = sys::openat(parent, &d.name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
            let mut b = [0u8; 32];
            let r = sys::mount(
                d.host.as_ptr(),
                sys::fd_path(t, &mut b),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            );
            sys::close(t);
            return r;
        }
        // SAFETY: `d.name` is NUL-terminated; mode and rdev are plain integers.
        if unsafe { libc::mknodat(parent, d.name.as_ptr(), d.mode, d.rdev) } == -1 {
            return Err(sys::errno());
        }
        // SAFETY: as above; AT_SYMLINK_NOFOLLOW so a raced symlink is not followed.
        if unsafe {
            libc::fchownat(
                parent,
                d.name.as_ptr(),
                d.uid,
                d.gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } == -1
        {
            return Err(sys::errno());
        }
        Ok(())
    })();
    sys::close(parent);
    res
}

pub(super) fn dev_symlinks(root: RawFd) -> Result<(), Errno> {
    let dev = sys::openat2(root, c"dev", libc::O_PATH | libc::O_DIRECTORY, IN_ROOT)?;
    let links: [(&CStr, &CStr); 6] = [
        (c"/proc/self/fd", c"fd"),
        (c"/proc/self/fd/0", c"stdin"),
        (c"/proc/self/fd/1", c"stdout"),
        (c"/proc/self/fd/2", c"stderr"),
        (c"pts/ptmx", c"ptmx"),
        (c"/proc/kcore", c"core"),
    ];
    for (target, name) in links {
        // As runc: /dev/core only where the kernel has /proc/kcore (CONFIG_PROC_KCORE),
        // rather than a link to nothing.
        if name == c"core" && !host_has_kcore() {
            continue;
        }
        // SAFETY: both strings are static and NUL-terminated; `dev` is an open dir fd.
        if unsafe { libc::symlinkat(target.as_ptr(), dev, name.as_ptr()) } == -1
            && sys::errno() != libc::EEXIST
        {
            let e = sys::errno();
            sys::close(dev);
            return Err(e);
        }
    }
    sys::close(dev);
    Ok(())
}

/// Whether this kernel has /proc/kcore; asked of the caller's /proc, still mounted
/// while the rootfs is prepared.
fn host_has_kcore() -> bool {
    match sys::openat(libc::AT_FDCWD, c"/proc/kcore", libc::O_PATH, 0) {
        Ok(fd) => {
            sys::close(fd);
            true
        }
        Err(_) => false,
    }
}

/// Allocates the container's pty, sends the master to the console socket and binds
/// the slave on /dev/console. Returns the slave fd.
/// With `bind_console` false (exec) the container's /dev/console is left alone.
pub(super) fn setup_console(
    root: RawFd,
    sock: RawFd,
    size: Option<(u16, u16)>,
    bind_console: bool,
) -> Result<RawFd, Errno> {
    const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;
    let master = sys::openat2(root, c"dev/ptmx", libc::O_RDWR | libc::O_NOCTTY, IN_ROOT)?;
    let res = (|| {
        // The ptmx must belong to the container's devpts, not whatever the image put there.
        if sys::fstatfs(master)?.f_type != DEVPTS_SUPER_MAGIC {
            return Err(libc::EXDEV);
        }
        let unlock: libc::c_int = 0;
        // SAFETY: TIOCSPTLCK reads an int from the pointer, which is valid for the call.
        if unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &unlock) } == -1 {
            return Err(sys::errno());
        }
        let mut n: libc::c_uint = 0;
        // SAFETY: TIOCGPTN writes an unsigned int into `n`.
        if unsafe { libc::ioctl(master, libc::TIOCGPTN, &mut n) } == -1 {
            return Err(sys::errno());
        }
        // SAFETY: TIOCGPTPEER takes open flags and returns a new fd for the slave.
        let slave = unsafe {
            libc::ioctl(
                master,
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        };
        if slave == -1 {
            return Err(sys::errno());
        }
        if let Some((rows, cols)) = size {
            let ws = libc::winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCSWINSZ reads a winsize from the pointer.
            unsafe { libc::ioctl(slave, libc::TIOCSWINSZ, &ws) };
        }
        let mut name = [0u8; 32];
        let prefix = b"/dev/pts/";
        name[..prefix.len()].copy_from_slice(prefix);
        let len = prefix.len() + sys::write_decimal(n as u64, &mut name[prefix.len()..31]);
        sys::send_fd(sock, master, name.get(..len).unwrap_or(&[]))?;
        if !bind_console {
            return Ok(slave);
        }
        // /dev/console: must be a plain file or device we create, never a symlink.
        let dev = sys::openat2(root, c"dev", libc::O_PATH | libc::O_DIRECTORY, IN_ROOT)?;
        let made = match sys::openat(
            dev,
            c"console",
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
            0o600,
        ) {
            Ok(f) => {
                sys::close(f);
                Ok(())
            }
            Err(libc::EEXIST) => Ok(()),
            Err(e) => Err(e),
        };
        let target =
            made.and_then(|()| sys::openat(dev, c"console", libc::O_PATH | libc::O_NOFOLLOW, 0));
        sys::close(dev);
        let target = target?;
        let st = sys::fstat(target)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            sys::close(target);
            return Err(libc::ELOOP);
        }
        let mut b1 = [0u8; 32];
        let mut b2 = [0u8; 32];
        let r = sys::mount(
            sys::fd_path(slave, &mut b1),
            sys::fd_path(target, &mut b2),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        );
        sys::close(target);
        r.map(|()| slave)
    })();
    sys::close(master);
    res
}
