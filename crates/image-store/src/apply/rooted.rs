//! Directory handles resolved strictly inside a root.
//!
//! Every path a layer names goes through here. Parents are opened with
//! `openat2(RESOLVE_IN_ROOT)`, so `..` and symlinks (absolute or relative, in
//! this layer or an earlier one) are clamped at the root exactly as if the
//! root were `/`. The final component is then acted on relative to that
//! parent fd with `*at` calls that never follow it.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// How many parent directory fds stay cached; layers list entries depth
/// first, so a small cache catches nearly every lookup.
const CACHE_LIMIT: usize = 256;

pub(crate) struct Rooted {
    root: OwnedFd,
    root_plain: bool,
    /// Keyed by the path's bytes: normalized paths compare bytewise, and
    /// hashing bytes is much cheaper than hashing `Path` components.
    cache: HashMap<Vec<u8>, CachedDir>,
}

struct CachedDir {
    fd: OwnedFd,
    plain: bool,
}

/// A set of normalized relative paths, keyed by their bytes.
#[derive(Debug, Default)]
pub(crate) struct PathSet(HashSet<Vec<u8>>);

impl PathSet {
    /// Adds `p`; false if it was there.
    pub(crate) fn insert(&mut self, p: &Path) -> bool {
        let b = p.as_os_str().as_bytes();
        if self.0.contains(b) {
            return false;
        }
        self.0.insert(b.to_vec())
    }

    pub(crate) fn contains(&self, p: &Path) -> bool {
        self.0.contains(p.as_os_str().as_bytes())
    }
}

/// Whether files created in `dir` simply get the creator's group and the
/// mode asked for (less the umask): no setgid bit, no default ACL.
fn is_plain_dir(dir: BorrowedFd<'_>) -> bool {
    let Ok(st) = rustix::fs::fstat(dir) else {
        return false;
    };
    if st.st_mode & 0o2000 != 0 {
        return false;
    }
    matches!(
        rustix::fs::fgetxattr_query(dir, "system.posix_acl_default"),
        Err(Errno::NODATA) | Err(Errno::OPNOTSUPP)
    )
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// `openat2` retried on `EAGAIN`, which the kernel returns when a rename
/// raced with an in-root lookup.
pub(crate) fn open_in_root(root: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(root, rel, flags, Mode::empty(), resolve_flags()) {
            Err(Errno::AGAIN) if tries < 64 => tries += 1,
            r => return r.map_err(io::Error::from),
        }
    }
}

impl Rooted {
    pub(crate) fn open(root: &Path) -> io::Result<Self> {
        let root = rustix::fs::open(root, dir_flags(), Mode::empty())?;
        let root_plain = is_plain_dir(root.as_fd());
        Ok(Self {
            root,
            root_plain,
            cache: HashMap::new(),
        })
    }

    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Forgets cached parents; called whenever a directory may have been
    /// removed or replaced, so no later entry lands in a stale directory.
    pub(crate) fn invalidate(&mut self) {
        self.cache.clear();
    }

    /// Opens the directory `rel` (relative, already normalized) inside the
    /// root. With `create`, missing components are made with mode 0755.
    /// Without it, a missing directory is `Ok(None)`.
    pub(crate) fn dir(&mut self, rel: &Path, create: bool) -> io::Result<Option<BorrowedFd<'_>>> {
        Ok(self.dir_plain(rel, create)?.map(|(fd, _)| fd))
    }

    /// Like [`Rooted::dir`], also telling whether the directory is plain
    /// (see `is_plain_dir`), which lets file creation skip chown and chmod.
    pub(crate) fn dir_plain(
        &mut self,
        rel: &Path,
        create: bool,
    ) -> io::Result<Option<(BorrowedFd<'_>, bool)>> {
        if rel.as_os_str().is_empty() {
            return Ok(Some((self.root.as_fd(), self.root_plain)));
        }
        let key = rel.as_os_str().as_bytes();
        if !self.cache.contains_key(key) {
            let fd = match open_in_root(self.root.as_fd(), rel, dir_flags()) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(None);
                    }
                    self.create_dirs(rel)?
                }
                Err(e) => return Err(e),
            };
            if self.cache.len() >= CACHE_LIMIT {
                self.cache.clear();
            }
            let plain = is_plain_dir(fd.as_fd());
            self.cache.insert(key.to_vec(), CachedDir { fd, plain });
        }
        Ok(self.cache.get(key).map(|c| (c.fd.as_fd(), c.plain)))
    }

    fn create_dirs(&mut self, rel: &Path) -> io::Result<OwnedFd> {
        let mut cur = rustix::fs::openat(&self.root, ".", dir_flags(), Mode::empty())?;
        let mut prefix = PathBuf::new();
        for comp in rel.iter() {
            prefix.push(comp);
            cur = match open_in_root(self.root.as_fd(), &prefix, dir_flags()) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match rustix::fs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    open_in_root(self.root.as_fd(), &prefix, dir_flags())?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(cur)
    }
}

/// What sits at `name` in `dir`, without following a symlink.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes `name` from `dir` whatever it is; a directory goes with all its
/// content. Symlinks are removed, never followed. Returns whether a
/// directory was removed.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(false),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = rustix::fs::openat(dir, name, dir_flags() | OFlags::NOFOLLOW, Mode::empty())?;
    empty_dir(sub.as_fd(), &mut |_| false)?;
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Removes every child of `dir` for which `keep` says no.
pub(crate) fn empty_dir(
    dir: BorrowedFd<'_>,
    keep: &mut dyn FnMut(&OsStr) -> bool,
) -> io::Result<()> {
    for name in list_dir(dir)? {
        if !keep(&name) {
            remove_all(dir, &name)?;
        }
    }
    Ok(())
}

/// The names in `dir` (without `.` and `..`) and whether each is a directory.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    Ok(list_dir_typed(dir)?.into_iter().map(|(n, _)| n).collect())
}

/// The names in `dir` with their file types as `readdir` reports them.
pub(crate) fn list_dir_typed(dir: BorrowedFd<'_>) -> io::Result<Vec<(OsString, FileType)>> {
    // A fresh fd: reading a directory moves its offset, and callers keep theirs.
    let fd = rustix::fs::openat(dir, ".", dir_flags(), Mode::empty())?;
    let mut out = Vec::new();
    for ent in Dir::read_from(&fd)? {
        let ent = ent?;
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((OsStr::from_bytes(name).to_os_string(), ent.file_type()));
    }
    Ok(out)
}
