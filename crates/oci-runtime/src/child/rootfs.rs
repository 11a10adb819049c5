//! The root filesystem: mounts, masked and read-only paths, then pivot_root into it.

use std::os::fd::RawFd;

use libc::c_ulong;

use super::devices::{dev_symlinks, make_device, setup_console};
use super::resolve::{Create, IN_ROOT, resolve};
use super::{ChildFds, Fail, R, Step, at};
use crate::plan::{EnterRoot, InitPlan, MountKind, MountPlan, RelPath, RootfsPlan};
use crate::sys::{self, Errno};

/// Mount flags that a remount must keep (they may be locked in a user namespace).
fn locked_flags(fd: RawFd) -> c_ulong {
    match sys::fstatfs(fd) {
        Ok(s) => {
            (s.f_flags as c_ulong)
                & (libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC
                    | libc::MS_NOATIME
                    | libc::MS_NODIRATIME)
        }
        Err(_) => 0,
    }
}

fn remount_bind(root: RawFd, rel: &RelPath, flags: c_ulong) -> Result<(), Errno> {
    let fd = sys::openat2(root, &rel.full, libc::O_PATH, IN_ROOT)?;
    let mut buf = [0u8; 32];
    let f = libc::MS_BIND | libc::MS_REMOUNT | flags | locked_flags(fd);
    let r = sys::mount(
        std::ptr::null(),
        sys::fd_path(fd, &mut buf),
        std::ptr::null(),
        f,
        std::ptr::null(),
    );
    sys::close(fd);
    r
}

fn set_propagation(root: RawFd, rel: &RelPath, flags: c_ulong) -> Result<(), Errno> {
    let fd = sys::openat2(root, &rel.full, libc::O_PATH, IN_ROOT)?;
    let mut buf = [0u8; 32];
    let r = sys::mount(
        std::ptr::null(),
        sys::fd_path(fd, &mut buf),
        std::ptr::null(),
        flags,
        std::ptr::null(),
    );
    sys::close(fd);
    r
}

fn do_mount(root: RawFd, m: &MountPlan, i: usize) -> R<()> {
    let mut buf = [0u8; 32];
    let data = m.data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr());
    match &m.kind {
        MountKind::Bind {
            source,
            recursive,
            source_is_dir,
        } => {
            let create = if *source_is_dir {
                Create::Dir
            } else {
                Create::File
            };
            let dst = resolve(root, &m.dest, create).map_err(at(Step::MountTarget, i))?;
            let rec = if *recursive { libc::MS_REC } else { 0 };
            let r = sys::mount(
                source.as_ptr(),
                sys::fd_path(dst, &mut buf),
                std::ptr::null(),
                libc::MS_BIND | rec,
                std::ptr::null(),
            );
            sys::close(dst);
            r.map_err(at(Step::Mount, i))?;
            let extra = m.flags & !libc::MS_REC;
            if extra != 0 {
                remount_bind(root, &m.dest, extra).map_err(at(Step::MountRemount, i))?;
            }
        }
        MountKind::Fs { fstype, source } => {
            let tmpfs = fstype.as_bytes() == b"tmpfs";
            // As runc: a tmpfs on a directory that exists takes that directory's mode,
            // unless the options give one.
            let keep_mode = if tmpfs && !has_mode_option(m) {
                existing_dir_mode(root, &m.dest)
            } else {
                None
            };
            let dst = resolve(root, &m.dest, Create::Dir).map_err(at(Step::MountTarget, i))?;
            let special = matches!(fstype.as_bytes(), b"proc" | b"sysfs");
            if special {
                // A symlinked /proc or /sys in the image would move the mount elsewhere.
                let link =
                    sys::openat2(root, &m.dest.full, libc::O_PATH | libc::O_NOFOLLOW, IN_ROOT);
                let is_link = match link {
                    Ok(fd) => {
                        let st = sys::fstat(fd);
                        sys::close(fd);
                        st.map(|s| s.st_mode & libc::S_IFMT != libc::S_IFDIR)
                            .unwrap_or(true)
                    }
                    Err(_) => true,
                };
                if is_link {
                    sys::close(dst);
                    return Err(Fail {
                        step: Step::MountSymlink,
                        index: i as u32,
                        errno: libc::ELOOP,
                    });
                }
            }
            let flags = if delays_readonly(m) {
                m.flags & !libc::MS_RDONLY
            } else {
                m.flags
            };
            let r = sys::mount(
                source.as_ptr(),
                sys::fd_path(dst, &mut buf),
                fstype.as_ptr(),
                flags,
                data,
            );
            sys::close(dst);
            r.map_err(at(Step::Mount, i))?;
            if let Some(mode) = keep_mode {
                chmod_in_root(root, &m.dest, mode).map_err(at(Step::Mount, i))?;
            }
        }
        MountKind::CgroupV1 { dirs, links, fresh } => {
            let dst = resolve(root, &m.dest, Create::Dir).map_err(at(Step::MountTarget, i))?;
            let base = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            let r = sys::mount(
                c"tmpfs".as_ptr(),
                sys::fd_path(dst, &mut buf),
                c"tmpfs".as_ptr(),
                base,
                c"mode=755".as_ptr(),
            );
            sys::close(dst);
            r.map_err(at(Step::Mount, i))?;
            let t = sys::openat2(
                root,
                &m.dest.full,
                libc::O_PATH | libc::O_DIRECTORY,
                IN_ROOT,
            )
            .map_err(at(Step::MountTarget, i))?;
            for (k, (name, host)) in dirs.iter().enumerate() {
                let step = || -> Result<(), Errno> {
                    sys::mkdirat(t, name, 0o755)?;
                    let sub = sys::openat(
                        t,
                        name,
                        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                        0,
                    )?;
                    let mut b = [0u8; 32];
                    let r = match fresh.get(k) {
                        Some((source, options)) => sys::mount(
                            source.as_ptr(),
                            sys::fd_path(sub, &mut b),
                            c"cgroup".as_ptr(),
                            base,
                            options.as_ptr(),
                        ),
                        None => sys::mount(
                            host.as_ptr(),
                            sys::fd_path(sub, &mut b),
                            std::ptr::null(),
                            libc::MS_BIND | libc::MS_REC,
                            std::ptr::null(),
                        ),
                    };
                    sys::close(sub);
                    r?;
                    let sub = sys::openat(
                        t,
                        name,
                        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                        0,
                    )?;
                    let flags = libc::MS_BIND
                        | libc::MS_REMOUNT
                        | libc::MS_RDONLY
                        | base
                        | locked_flags(sub);
                    let r = sys::mount(
                        std::ptr::null(),
                        sys::fd_path(sub, &mut b),
                        std::ptr::null(),
                        flags,
                        std::ptr::null(),
                    );
                    sys::close(sub);
                    r
                };
                if let Err(e) = step() {
                    sys::close(t);
                    return Err(Fail {
                        step: Step::Mount,
                        index: i as u32,
                        errno: e,
                    });
                }
            }
            for (link, target) in links {
                if link != target {
                    // SAFETY: both strings are NUL-terminated and live in the plan.
                    let _ = unsafe { libc::symlinkat(target.as_ptr(), t, link.as_ptr()) };
                }
            }
            // `ro` applies to the hierarchies; the tmpfs holding them stays writable,
            // as runc leaves it.
            sys::close(t);
        }
    }
    for p in &m.propagation {
        set_propagation(root, &m.dest, *p).map_err(at(Step::MountPropagation, i))?;
    }
    Ok(())
}

/// Whether a read-only mount is made writable first and read-only at the end, as
/// runc does: a tmpfs may get a mode and mount points, /dev its device nodes.
fn delays_readonly(m: &MountPlan) -> bool {
    match &m.kind {
        MountKind::Fs { fstype, .. } => {
            fstype.as_bytes() == b"tmpfs" || m.dest.full.as_bytes() == b"dev"
        }
        _ => false,
    }
}

fn has_mode_option(m: &MountPlan) -> bool {
    m.data.as_ref().is_some_and(|d| {
        d.to_bytes()
            .split(|b| *b == b',')
            .any(|o| o.starts_with(b"mode="))
    })
}

/// The permission bits of `rel` if it is an existing directory.
fn existing_dir_mode(root: RawFd, rel: &RelPath) -> Option<libc::mode_t> {
    let fd = sys::openat2(root, &rel.full, libc::O_PATH, IN_ROOT).ok()?;
    let st = sys::fstat(fd);
    sys::close(fd);
    st.ok()
        .filter(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .map(|s| s.st_mode & 0o7777)
}

fn chmod_in_root(root: RawFd, rel: &RelPath, mode: libc::mode_t) -> Result<(), Errno> {
    let fd = sys::openat2(root, &rel.full, libc::O_PATH, IN_ROOT)?;
    let mut b = [0u8; 32];
    // SAFETY: the path is the NUL-terminated /proc/self/fd name of `fd`, alive for the call.
    let r = unsafe { libc::fchmodat(libc::AT_FDCWD, sys::fd_path(fd, &mut b), mode, 0) };
    let e = sys::errno();
    sys::close(fd);
    if r == -1 { Err(e) } else { Ok(()) }
}

/// Mounts, devices, masks, read-only paths and the console, all relative to the
/// rootfs fd; returns the rootfs fd for [`enter_root`].
pub(super) fn prepare_rootfs(
    r: &RootfsPlan,
    plan: &InitPlan,
    fds: ChildFds,
    slave: &mut RawFd,
) -> R<RawFd> {
    let null = std::ptr::null();
    // Keep our mounts from propagating back to the host. Not when the container
    // shares the caller's mount namespace: there it would change the propagation
    // of the host's whole tree, and the container's mounts are the host's anyway.
    if !r.enter.shares_mount_ns() {
        sys::mount(null, c"/".as_ptr(), null, early_propagation(r), null)
            .map_err(at(Step::RootPropagation, 0))?;
        // A shared tree keeps its peers on the host, so a bidirectional
        // mount's source stays the host's peer; only the mount the rootfs
        // is on goes private, so the rootfs bind below stays here and
        // pivot_root takes it (runc 1.1 does the same).
        if r.propagation & libc::MS_SHARED != 0 {
            private_mount_of(&r.rootfs).map_err(at(Step::RootPropagation, 2))?;
        }
    }
    // pivot_root needs the new root to be a mount point; in a shared mount
    // namespace the bind holds every container mount, so delete detaches them at once.
    sys::mount(
        r.rootfs.as_ptr(),
        r.rootfs.as_ptr(),
        null,
        libc::MS_BIND | libc::MS_REC,
        null,
    )
    .map_err(at(Step::RootBind, 0))?;
    let root = sys::openat(
        libc::AT_FDCWD,
        &r.rootfs,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .map_err(at(Step::OpenRoot, 0))?;
    for (i, m) in r.mounts.iter().enumerate() {
        do_mount(root, m, i)?;
    }
    for (i, d) in r.devices.iter().enumerate() {
        make_device(root, d, plan.bind_devices).map_err(at(Step::Device, i))?;
    }
    if r.populate_dev {
        dev_symlinks(root).map_err(at(Step::DevSymlink, 0))?;
    }
    if plan.process.terminal && fds.console >= 0 {
        *slave = setup_console(root, fds.console, plan.process.console_size, true)
            .map_err(at(Step::Console, 0))?;
    }
    let cwd = resolve(root, &r.cwd, Create::Dir).map_err(at(Step::Cwd, 0))?;
    sys::close(cwd);
    // The delayed read-only tmpfs and /dev mounts, before read-only paths and masks
    // as in runc: a mask bound from a read-only /dev/null is read-only too.
    for (i, m) in r.mounts.iter().enumerate() {
        if m.flags & libc::MS_RDONLY != 0 && delays_readonly(m) {
            remount_bind(root, &m.dest, m.flags).map_err(at(Step::MountRemount, i))?;
        }
    }
    let mut b1 = [0u8; 32];
    let mut b2 = [0u8; 32];
    for (i, p) in r.readonly.iter().enumerate() {
        let fd = match sys::openat2(root, &p.full, libc::O_PATH, IN_ROOT) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => continue,
            Err(e) => {
                return Err(Fail {
                    step: Step::Readonly,
                    index: i as u32,
                    errno: e,
                });
            }
        };
        let target = sys::fd_path(fd, &mut b2);
        let res = sys::mount(target, target, null, libc::MS_BIND | libc::MS_REC, null);
        sys::close(fd);
        res.map_err(at(Step::Readonly, i))?;
        remount_bind(root, p, libc::MS_RDONLY).map_err(at(Step::Readonly, i))?;
    }
    // Masks after read-only paths, as runc, so the same mounts stack in the same order.
    // The container's /dev/null as runc binds it, else the host's, either opened in
    // this mount namespace (a bind source must be in it) and checked to be the null
    // device: a symlinked /dev/null in the image cannot redirect the masking binds.
    let devnull = if r.masked.is_empty() {
        -1
    } else {
        open_devnull(root).map_err(at(Step::Mask, usize::MAX))?
    };
    for (i, p) in r.masked.iter().enumerate() {
        let fd = match sys::openat2(root, &p.full, libc::O_PATH, IN_ROOT) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => continue,
            Err(e) => {
                return Err(Fail {
                    step: Step::Mask,
                    index: i as u32,
                    errno: e,
                });
            }
        };
        // Stat first: binding /dev/null onto a directory fails, and a failed mount is slow.
        let st = sys::fstat(fd).map_err(at(Step::Mask, i));
        let res = st.and_then(|st| {
            let target = sys::fd_path(fd, &mut b2);
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                // An empty read-only tmpfs with no other options, as runc masks a directory.
                sys::mount(
                    c"tmpfs".as_ptr(),
                    target,
                    c"tmpfs".as_ptr(),
                    libc::MS_RDONLY,
                    null,
                )
            } else {
                sys::mount(
                    sys::fd_path(devnull, &mut b1),
                    target,
                    null,
                    libc::MS_BIND,
                    null,
                )
            }
            .map_err(at(Step::Mask, i))
        });
        sys::close(fd);
        if res.is_err() {
            sys::close(devnull);
        }
        res?;
    }
    sys::close(devnull);
    Ok(root)
}

fn open_devnull(root: RawFd) -> Result<RawFd, Errno> {
    // Anything but the null device there (a symlink, a file) falls back to the host's.
    if let Ok(fd) = sys::openat2(root, c"dev/null", libc::O_PATH | libc::O_NOFOLLOW, IN_ROOT)
        && let Ok(fd) = check_devnull(fd)
    {
        return Ok(fd);
    }
    let fd = sys::openat(
        libc::AT_FDCWD,
        c"/dev/null",
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
    )?;
    check_devnull(fd)
}

/// Keeps `fd` if it is the null character device (1:3), else closes it.
fn check_devnull(fd: RawFd) -> Result<RawFd, Errno> {
    match sys::fstat(fd) {
        Ok(st)
            if st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3) =>
        {
            Ok(fd)
        }
        Ok(_) => {
            sys::close(fd);
            Err(libc::ENODEV)
        }
        Err(e) => {
            sys::close(fd);
            Err(e)
        }
    }
}

/// The root propagation set before the rootfs is prepared: the plan's, all
/// of the tree. A shared one is set on the new root again after pivot_root
/// (pivot_root refuses a shared new root or parent, so [`private_mount_of`]
/// makes the rootfs's mount private first).
fn early_propagation(r: &RootfsPlan) -> c_ulong {
    r.propagation
}

/// Makes the mount that `path` is on private (that mount only): the first
/// of `path` and its parents that is a mount point. No allocation: the
/// path is cut back in a buffer of its own.
fn private_mount_of(path: &std::ffi::CStr) -> Result<(), i32> {
    let bytes = path.to_bytes();
    let mut buf = [0u8; libc::PATH_MAX as usize];
    if bytes.is_empty() || bytes.len() >= buf.len() || bytes[0] != b'/' {
        return Err(libc::EINVAL);
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    let mut len = bytes.len();
    loop {
        buf[len] = 0;
        let null = std::ptr::null();
        let at = buf.as_ptr().cast::<libc::c_char>();
        match sys::mount(null, at, null, libc::MS_PRIVATE, null) {
            Ok(()) => return Ok(()),
            // Not a mount point: its parent, up to "/".
            Err(libc::EINVAL) if len > 1 => {
                len = buf[..len]
                    .iter()
                    .rposition(|b| *b == b'/')
                    .unwrap_or(0)
                    .max(1);
            }
            Err(e) => return Err(e),
        }
    }
}

/// pivot_root (or MS_MOVE + chroot, or only chroot) into the prepared rootfs, then the read-only root.
pub(super) fn enter_root(r: &RootfsPlan, root: RawFd) -> R<()> {
    let null = std::ptr::null();
    // The old root, to detach it after pivot_root: "." then is the new root, so the
    // rslave and unmount below must go through this fd.
    let old_root = if r.enter == EnterRoot::Pivot {
        sys::openat(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(at(Step::Pivot, 7))?
    } else {
        -1
    };
    // SAFETY: `root` is the rootfs dir fd from prepare_rootfs.
    if unsafe { libc::fchdir(root) } == -1 {
        sys::close(old_root);
        return Err(Fail {
            step: Step::Pivot,
            index: 0,
            errno: sys::errno(),
        });
    }
    sys::close(root);
    if r.enter == EnterRoot::Pivot {
        // SAFETY: both paths are static "."; pivot_root stacks the old root under the new one.
        let pivoted = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
        let errno = sys::errno();
        let back = if pivoted == -1 {
            0
        } else {
            // SAFETY: `old_root` is the O_PATH dir fd opened above; fchdir accepts O_PATH fds.
            unsafe { libc::fchdir(old_root) }
        };
        let back_errno = sys::errno();
        sys::close(old_root);
        if pivoted == -1 {
            return Err(Fail {
                step: Step::Pivot,
                index: 1,
                errno,
            });
        }
        if back == -1 {
            return Err(Fail {
                step: Step::Pivot,
                index: 8,
                errno: back_errno,
            });
        }
        // "." is the old root now; keep its unmount from reaching the host, then detach it.
        sys::mount(
            null,
            c".".as_ptr(),
            null,
            libc::MS_SLAVE | libc::MS_REC,
            null,
        )
        .map_err(at(Step::Pivot, 2))?;
        // SAFETY: "." is a static path; MNT_DETACH lazily drops the old root.
        if unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) } == -1 {
            return Err(Fail {
                step: Step::Pivot,
                index: 3,
                errno: sys::errno(),
            });
        }
    } else {
        if r.enter == EnterRoot::MoveChroot {
            sys::mount(c".".as_ptr(), c"/".as_ptr(), null, libc::MS_MOVE, null)
                .map_err(at(Step::Pivot, 4))?;
        }
        // SAFETY: "." is a static path.
        if unsafe { libc::chroot(c".".as_ptr()) } == -1 {
            return Err(Fail {
                step: Step::Pivot,
                index: 5,
                errno: sys::errno(),
            });
        }
    }
    // SAFETY: "/" is a static path.
    if unsafe { libc::chdir(c"/".as_ptr()) } == -1 {
        return Err(Fail {
            step: Step::Pivot,
            index: 6,
            errno: sys::errno(),
        });
    }
    // A shared or unbindable rootfsPropagation is for the new root, so it comes
    // after pivot_root (see early_propagation), as in runc 1.4.
    if !r.enter.shares_mount_ns() && r.propagation & (libc::MS_PRIVATE | libc::MS_SLAVE) == 0 {
        sys::mount(null, c"/".as_ptr(), null, r.propagation, null)
            .map_err(at(Step::RootPropagation, 1))?;
    }
    if r.readonly_root {
        let fd = sys::openat(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(at(Step::ReadonlyRoot, 0))?;
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked_flags(fd);
        sys::close(fd);
        sys::mount(null, c"/".as_ptr(), null, flags, null).map_err(at(Step::ReadonlyRoot, 0))?;
    }
    Ok(())
}
