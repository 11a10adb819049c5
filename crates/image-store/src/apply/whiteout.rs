//! Whiteouts, as their own strategy: removing what they hide from a
//! flattened tree, or recording them the way overlayfs reads them.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

use super::rooted::{PathSet, list_dir_typed, remove_all};

/// Basename prefix of a whiteout entry.
pub(super) const PREFIX: &[u8] = b".wh.";
/// What follows [`PREFIX`] in an opaque-directory marker.
pub(super) const OPAQUE_SUFFIX: &[u8] = b".wh..opq";
/// The xattr overlayfs reads to treat a directory as opaque.
pub(crate) const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Removes everything under `dir` that this layer did not write: what an
/// opaque marker hides. Children this layer touched stay; directories among
/// them are cleaned the same way, since their lower content is hidden too.
pub(super) fn purge_lower(dir: BorrowedFd<'_>, rel: &Path, touched: &PathSet) -> io::Result<()> {
    for (name, ft) in list_dir_typed(dir)? {
        let child = rel.join(&name);
        if !touched.contains(&child) {
            remove_all(dir, &name)?;
            continue;
        }
        let is_dir = match ft {
            FileType::Directory => true,
            FileType::Unknown => rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)?,
            _ => false,
        };
        if is_dir {
            let sub = rustix::fs::openat(
                dir,
                &name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            purge_lower(sub.as_fd(), &child, touched)?;
        }
    }
    Ok(())
}

/// An overlayfs whiteout: a character device 0/0 named like the hidden
/// file. An entry of the same layer already there wins, since a whiteout
/// only hides lower layers.
pub(super) fn make_overlay_whiteout(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match rustix::fs::mknodat(
        parent,
        name,
        FileType::CharacterDevice,
        Mode::empty(),
        rustix::fs::makedev(0, 0),
    ) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Marks `dir` opaque for overlayfs.
pub(super) fn mark_overlay_opaque(dir: BorrowedFd<'_>) -> io::Result<()> {
    rustix::fs::fsetxattr(dir, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())?;
    Ok(())
}
