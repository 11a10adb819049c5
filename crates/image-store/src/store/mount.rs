//! Container rootfs as overlayfs over the snapshots, one upper and work
//! dir per mount, held by a lease.

use std::fs;
use std::path::{Path, PathBuf};

use std::os::fd::AsRawFd;

use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, UnmountFlags};

use super::{Progress, Store};
use crate::digest::Digest;
use crate::error::{Error, Result, io_err};

impl Store {
    fn mount_id(target: &Path) -> String {
        format!(
            "mount-{}",
            &Digest::of(target.as_os_str().as_encoded_bytes()).hex()[..32]
        )
    }

    /// Mounts image `name` at `target` (created if needed) as overlayfs:
    /// the image's snapshots as lower dirs, a fresh upper and work dir.
    /// A lease keeps the snapshots from garbage collection until
    /// [`Store::umount`]. Needs `CAP_SYS_ADMIN`.
    pub fn mount(&self, name: &str, target: &Path, progress: &dyn Progress) -> Result<PathBuf> {
        self.mount_mapped(name, target, progress, None)
    }

    /// [`Store::mount`] for a container in the user namespace `userns` (a
    /// `/proc/PID/ns/user` path) whose root is host uid/gid `root`: every
    /// lower layer is id-mapped into it, so what the host's root owns its
    /// root owns, and the upper dir belongs to its root, so what it writes
    /// is its own on disk (Linux 5.19 and later; overlayfs itself cannot be
    /// id-mapped).
    pub fn mount_in_userns(
        &self,
        name: &str,
        target: &Path,
        progress: &dyn Progress,
        userns: &Path,
        root: (u32, u32),
    ) -> Result<PathBuf> {
        self.mount_mapped(name, target, progress, Some((userns, root)))
    }

    fn mount_mapped(
        &self,
        name: &str,
        target: &Path,
        progress: &dyn Progress,
        userns: Option<(&Path, (u32, u32))>,
    ) -> Result<PathBuf> {
        let image = self.image(name)?;
        let lowers = self.prepare_snapshots(&image, progress)?;
        let _g = self.lock_shared()?;
        fs::create_dir_all(target).map_err(io_err("create", target))?;
        let target = fs::canonicalize(target).map_err(io_err("resolve", target))?;
        let id = Self::mount_id(&target);
        let dir = self.meta.join("mounts").join(&id);
        if dir.exists() {
            return Err(Error::Mount {
                op: "mount overlay",
                path: target,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already mounted from this store",
                ),
            });
        }
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        for d in [&upper, &work] {
            fs::create_dir_all(d).map_err(io_err("create", d))?;
        }
        let mut all: Vec<&Path> = lowers.iter().rev().map(PathBuf::as_path).collect();
        all.push(&upper);
        all.push(&work);
        if let Some(bad) = all.iter().find(|p| {
            p.as_os_str()
                .as_encoded_bytes()
                .iter()
                .any(|b| matches!(b, b':' | b',' | b'\\'))
        }) {
            let _ = fs::remove_dir_all(&dir);
            return Err(Error::Mount {
                op: "mount overlay",
                path: bad.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "path contains ':', ',' or '\\'",
                ),
            });
        }
        let lease = self.lease_for(&id, &image, Some(target.clone()));
        self.add_lease(&lease)?;
        let mounted = match userns {
            None => {
                let tops: Vec<&Path> = lowers.iter().rev().map(PathBuf::as_path).collect();
                mount_overlay(&target, &tops, &upper, &work)
            }
            Some((ns, (uid, gid))) => fs::File::open(ns).and_then(|ns| {
                std::os::unix::fs::chown(&upper, Some(uid), Some(gid))?;
                // The clones live until the overlay holds them.
                let mut held = Vec::new();
                for l in lowers.iter().rev() {
                    held.push(idmapped_clone(l, &ns)?);
                }
                let lower_paths: Vec<PathBuf> = held
                    .iter()
                    .map(|fd| PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())))
                    .collect();
                let tops: Vec<&Path> = lower_paths.iter().map(PathBuf::as_path).collect();
                mount_overlay(&target, &tops, &upper, &work)
            }),
        };
        if let Err(e) = mounted {
            let _ = fs::remove_dir_all(&dir);
            let _ = self.remove_lease(&id);
            return Err(Error::Mount {
                op: "mount overlay",
                path: target,
                source: e,
            });
        }
        Ok(target)
    }

    /// The upper (writable) dir of a rootfs mounted by [`Store::mount`]
    /// at `target`: what the container wrote.
    pub fn mount_upper(&self, target: &Path) -> Result<PathBuf> {
        let target = fs::canonicalize(target).map_err(io_err("resolve", target))?;
        let dir = self.meta.join("mounts").join(Self::mount_id(&target));
        if !dir.exists() {
            return Err(Error::NotMounted { path: target });
        }
        Ok(dir.join("upper"))
    }

    /// Unmounts a rootfs mounted by [`Store::mount`] and drops its upper
    /// dir and lease.
    pub fn umount(&self, target: &Path) -> Result<()> {
        let target = fs::canonicalize(target).map_err(io_err("resolve", target))?;
        let id = Self::mount_id(&target);
        let dir = self.meta.join("mounts").join(&id);
        if !dir.exists() {
            return Err(Error::NotMounted { path: target });
        }
        match rustix::mount::unmount(&target, UnmountFlags::empty()) {
            // EINVAL: no longer a mount point (unmounted by hand); still clean up.
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => {
                return Err(Error::Mount {
                    op: "unmount",
                    path: target,
                    source: e.into(),
                });
            }
        }
        fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
        self.remove_lease(&id)
    }
}

/// A detached, id-mapped clone of the mount at `path` (recursive): files of
/// host uid/gid N appear as what the user namespace `userns` maps N to.
fn idmapped_clone(path: &Path, userns: &fs::File) -> std::io::Result<rustix::fd::OwnedFd> {
    use rustix::mount::{OpenTreeFlags, open_tree};
    let tree = open_tree(
        rustix::fs::CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE,
    )?;
    // struct mount_attr: attr_set, attr_clr, propagation, userns_fd.
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    let attr: [u64; 4] = [MOUNT_ATTR_IDMAP, 0, 0, userns.as_raw_fd() as u64];
    // SAFETY: mount_setattr on an fd we own, with a mount_attr of the
    // kernel's layout (four u64s) and its size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(tree)
}

/// Mounts overlayfs at `target` with `lowers` (topmost first).
///
/// The kernel takes mount options in one page, and 127 layers of full
/// snapshot paths do not fit in it. So the lower dirs are given one at a
/// time through the new mount API's `lowerdir+` (Linux 6.8), and where the
/// kernel does not know that key, as `/proc/self/fd/N` of an `O_PATH` fd
/// each, about 18 bytes a layer.
fn mount_overlay(
    target: &Path,
    lowers: &[&Path],
    upper: &Path,
    work: &Path,
) -> std::io::Result<()> {
    match mount_overlay_fsconfig(target, lowers, upper, work) {
        Ok(()) => return Ok(()),
        // ENOSYS: no new mount API; EINVAL: no `lowerdir+` key.
        Err(e)
            if matches!(
                rustix::io::Errno::from_io_error(&e),
                Some(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS)
            ) => {}
        Err(e) => return Err(e),
    }
    mount_overlay_proc_fds(target, lowers, upper, work)
}

/// The fallback of [`mount_overlay`]: classic `mount(2)` with every lower
/// dir named through `/proc/self/fd`.
fn mount_overlay_proc_fds(
    target: &Path,
    lowers: &[&Path],
    upper: &Path,
    work: &Path,
) -> std::io::Result<()> {
    let fds = lowers
        .iter()
        .map(|l| {
            rustix::fs::open(
                *l,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let lowerdir: Vec<String> = fds
        .iter()
        .map(|fd| format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        upper.display(),
        work.display()
    );
    let data = std::ffi::CString::new(data)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )?;
    Ok(())
}

fn mount_overlay_fsconfig(
    target: &Path,
    lowers: &[&Path],
    upper: &Path,
    work: &Path,
) -> std::io::Result<()> {
    use rustix::mount::{
        FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create,
        fsconfig_set_string, fsmount, fsopen, move_mount,
    };
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for l in lowers {
        fsconfig_set_string(&fs, "lowerdir+", *l)?;
    }
    fsconfig_set_string(&fs, "upperdir", upper)?;
    fsconfig_set_string(&fs, "workdir", work)?;
    fsconfig_create(&fs)?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of mounting take 127 lower dirs whose paths together are
    /// far longer than a page.
    #[test]
    fn overlay_with_127_long_lower_paths() {
        if !rustix::process::geteuid().is_root() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "needs root and CI=true forbids skipping"
            );
            eprintln!("skipping: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join(format!("{}/snapshots", "x".repeat(60)));
        let lowers: Vec<PathBuf> = (0..127)
            .map(|i| {
                let d = base.join(format!("{:064x}", i)).join("fs");
                fs::create_dir_all(&d).unwrap();
                fs::write(d.join(format!("f{i}")), b"").unwrap();
                d
            })
            .collect();
        let tops: Vec<&Path> = lowers.iter().rev().map(PathBuf::as_path).collect();
        assert!(
            lowers
                .iter()
                .map(|l| l.as_os_str().len() + 1)
                .sum::<usize>()
                > 4096
        );
        type Mounter = fn(&Path, &[&Path], &Path, &Path) -> std::io::Result<()>;
        let ways: [(&str, Mounter); 2] = [
            ("lowerdir+", mount_overlay_fsconfig),
            ("/proc/self/fd", mount_overlay_proc_fds),
        ];
        for (name, mount) in ways {
            let dir = tmp.path().join(name.replace('/', "_"));
            let (target, upper, work) = (dir.join("m"), dir.join("u"), dir.join("w"));
            for d in [&target, &upper, &work] {
                fs::create_dir_all(d).unwrap();
            }
            if let Err(e) = mount(&target, &tops, &upper, &work) {
                // Kernels before 6.8 have no lowerdir+; the VM test covers them.
                assert_eq!(name, "lowerdir+", "{name}: {e}");
                assert_eq!(
                    rustix::io::Errno::from_io_error(&e),
                    Some(rustix::io::Errno::INVAL)
                );
                continue;
            }
            let n = fs::read_dir(&target).unwrap().count();
            rustix::mount::unmount(&target, UnmountFlags::empty()).unwrap();
            assert_eq!(n, 127, "{name}");
        }
    }
}
