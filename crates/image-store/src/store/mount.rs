//! Container rootfs as overlayfs over the snapshots, one upper and work
//! dir per mount, held by a lease.

use std::fs;
use std::path::{Path, PathBuf};

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
        let lowerdir: Vec<String> = lowers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowerdir.join(":"),
            upper.display(),
            work.display()
        );
        let lease = self.lease_for(&id, &image, Some(target.clone()));
        self.add_lease(&lease)?;
        let data = std::ffi::CString::new(data).map_err(|e| Error::Mount {
            op: "mount overlay",
            path: target.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        if let Err(e) = rustix::mount::mount(
            "overlay",
            &target,
            "overlay",
            MountFlags::empty(),
            Some(data.as_c_str()),
        ) {
            let _ = fs::remove_dir_all(&dir);
            let _ = self.remove_lease(&id);
            return Err(Error::Mount {
                op: "mount overlay",
                path: target,
                source: e.into(),
            });
        }
        Ok(target)
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
