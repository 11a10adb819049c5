//! Network namespaces pinned by a bind mount on a file, as containerd and
//! CRI-O keep a pod's: the namespace outlives every process in it (so a DEL
//! still finds it after the pod's processes died) until [`remove`].

use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io_err};

/// Creates a new network namespace pinned at `dir/name`; returns the path.
/// Needs CAP_SYS_ADMIN. The calling thread's namespaces are not touched: a
/// thread of its own makes the namespace and pins it.
pub fn create(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = pin_file(dir, name)?;
    let target = path.clone();
    let made = std::thread::spawn(move || -> std::io::Result<()> {
        // SAFETY: unshare affects only this thread, which does nothing else
        // and exits right after.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lo_up()?;
        rustix::mount::mount_bind("/proc/thread-self/ns/net", &target).map_err(std::io::Error::from)
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the netns thread panicked")));
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(io_err("pinning a new network namespace at", &path)(e));
    }
    Ok(path)
}

/// Pins an existing network namespace (`/proc/PID/ns/net` of a process that
/// made it, say one in a user namespace of its own, which then owns it) at
/// `dir/name`; returns the path.
pub fn pin(source: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    let path = pin_file(dir, name)?;
    if let Err(e) = rustix::mount::mount_bind(source, &path) {
        let _ = std::fs::remove_file(&path);
        return Err(io_err("pinning the network namespace at", &path)(e.into()));
    }
    Ok(path)
}

/// Sets `lo` up in this thread's network namespace, as runtimes do for
/// every pod (the loopback plugin's work): a pod talks to itself on
/// 127.0.0.1.
fn lo_up() -> std::io::Result<()> {
    // SAFETY: a plain datagram socket for the interface ioctls, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a zeroed ifreq is valid; the name fits with its NUL.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write this ifreq only.
    let r = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            -1
        } else {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr)
        }
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the socket made above.
    unsafe { libc::close(fd) };
    if r < 0 { Err(err) } else { Ok(()) }
}

/// Sets `lo` up in the network namespace at `path` (one a process made,
/// pinned with [`pin`]).
pub fn loopback_up(path: &Path) -> Result<()> {
    let p = path.to_path_buf();
    std::thread::spawn(move || -> std::io::Result<()> {
        let f = std::fs::File::open(&p)?;
        use std::os::fd::AsRawFd;
        // SAFETY: setns on this thread only, which ends right after.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lo_up()
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the netns thread panicked")))
    .map_err(io_err("setting lo up in", path))
}

/// The empty file at `dir/name` a namespace is bind-mounted on.
fn pin_file(dir: &Path, name: &str) -> Result<PathBuf> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::Invalid {
            what: "netns name",
            reason: format!("{name:?} is not a file name"),
        });
    }
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("creating the netns pin", &path))?;
    Ok(path)
}

/// Unpins and removes a namespace made by [`create`] or [`pin`]; a missing
/// one is fine.
pub fn remove(path: &Path) -> Result<()> {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(io_err("unmounting the netns pin", path)(e.into())),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing the netns pin", path)(e)),
    }
}

/// Whether `path` is a pinned network namespace.
pub fn is_pinned(path: &Path) -> bool {
    std::fs::File::open(path)
        .ok()
        .and_then(|f| {
            // NS_GET_NSTYPE answers only on namespace files.
            const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
            use std::os::fd::AsRawFd;
            // SAFETY: an ioctl without arguments on an fd we own.
            let t = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE as _) };
            (t >= 0).then_some(t)
        })
        .is_some_and(|t| t == libc::CLONE_NEWNET)
}
