//! The layer applier: a tar stream in, a directory tree changed, nothing
//! outside the root touched.
//!
//! The `tar` crate only iterates entries; every filesystem change is ours and
//! goes through [`rooted::Rooted`], which resolves each entry's parent inside
//! the root and acts on the final component without following it.

mod compress;
mod meta;
pub(crate) mod rooted;
mod whiteout;
mod writer;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use tar::EntryType;

pub use compress::{Compression, decompress};
use meta::Meta;
pub(crate) use rooted::PathSet;
use rooted::{Rooted, lstat_at, open_in_root, remove_all};

use crate::error::{Error, Result};

/// What to do with whiteout entries (`.wh.NAME` and `.wh..wh..opq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Apply them: delete the named paths (and the hidden content of opaque
    /// directories) from the tree below. For flattening layers into one root.
    #[default]
    Remove,
    /// Keep them in overlayfs format: a 0/0 character device per whiteout and
    /// `trusted.overlay.opaque=y` on opaque directories. For snapshots that
    /// overlayfs stacks. Needs `CAP_MKNOD` and `CAP_SYS_ADMIN` (trusted xattrs).
    Overlay,
}

/// How [`apply`] treats a layer.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Whiteout strategy.
    pub whiteouts: WhiteoutMode,
    /// Give entries the uid/gid the layer names (needs `CAP_CHOWN`).
    /// Defaults to true when running as root.
    pub same_owner: bool,
    /// How the stream is compressed.
    pub compression: Compression,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            whiteouts: WhiteoutMode::Remove,
            same_owner: rustix::process::geteuid().is_root(),
            compression: Compression::Auto,
        }
    }
}

/// A hardlink whose target is not in the root being applied to: in overlay
/// mode the target lives in a lower layer, so the caller resolves it once
/// the lower layers are complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLink {
    /// The link's path, relative to the root.
    pub path: PathBuf,
    /// The target's path, relative to the root.
    pub target: PathBuf,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ApplyStats {
    /// Entries read from the stream.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Hardlinks left for the caller (overlay mode only).
    pub pending_links: Vec<PendingLink>,
}

/// Applies the layer read from `reader` to the directory `root`.
///
/// Every entry is resolved inside `root`: `..`, absolute paths and symlinks
/// (from this layer or the tree below) cannot lead outside it, so a hostile
/// layer can neither create, overwrite, link, chmod nor delete anything
/// outside. Directory metadata is set after all entries, so directory
/// mtimes survive the creation of their children. Errors name the entry.
pub fn apply<R: Read>(root: &Path, reader: R, opts: &ApplyOptions) -> Result<ApplyStats> {
    let stream = decompress(reader, opts.compression).map_err(|source| Error::ReadLayer {
        layer: "stream".into(),
        source,
    })?;
    apply_stream(root, stream, opts)
}

/// [`apply`] for an uncompressed stream that is already buffered in large
/// chunks: no extra buffer and copy in front of the tar reader.
pub(crate) fn apply_stream<R: Read>(
    root: &Path,
    stream: R,
    opts: &ApplyOptions,
) -> Result<ApplyStats> {
    let fs = Rooted::open(root).map_err(|source| Error::Io {
        op: "open layer root",
        path: root.to_path_buf(),
        source,
    })?;
    let failed = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(writer::QUEUE);
        let worker = s.spawn(|| writer::run(rx, &failed));
        let mut applier = Applier {
            fs,
            opts,
            touched: PathSet::default(),
            dirs: Vec::new(),
            stats: ApplyStats::default(),
            buf: vec![0; 256 * 1024],
            stale: false,
            umask: read_umask(),
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            writer: Some(tx),
            batch: Vec::new(),
            batch_bytes: 0,
            failed: &failed,
        };
        let res = applier.entries(stream).and_then(|()| {
            applier.flush().map_err(|source| Error::Entry {
                entry: "(end of layer)".into(),
                op: "hand files to the writer",
                source,
            })
        });
        // Every file's content and metadata is in place before directory
        // times are set and before returning.
        applier.writer = None;
        worker
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        res?;
        if let Some(e) = applier.take_failure() {
            return Err(e);
        }
        applier.finish_dirs()?;
        Ok(applier.stats)
    })
}

fn read_err(source: io::Error) -> Error {
    Error::ReadLayer {
        layer: "stream".into(),
        source,
    }
}

/// Directory metadata, applied once the whole layer is in place.
struct DirMeta {
    rel: PathBuf,
    display: String,
    meta: Meta,
}

struct Applier<'o> {
    fs: Rooted,
    opts: &'o ApplyOptions,
    /// Small files' contents go to the writer thread.
    writer: Option<std::sync::mpsc::SyncSender<Vec<writer::Job>>>,
    /// The batch being filled for the writer, and its data size.
    batch: Vec<writer::Job>,
    batch_bytes: usize,
    /// The writer thread's first failure.
    failed: &'o std::sync::Mutex<Option<Error>>,
    /// Paths this layer wrote (and their ancestors): what an opaque marker
    /// keeps, whatever the entry order.
    touched: PathSet,
    dirs: Vec<DirMeta>,
    stats: ApplyStats,
    buf: Vec<u8>,
    /// A directory was removed or replaced: cached parents may be stale.
    stale: bool,
    /// The process umask, if known: lets file creation skip a chmod.
    umask: Option<u32>,
    euid: u32,
    egid: u32,
}

/// The umask from `/proc/self/status`; reading it there, unlike umask(2),
/// does not change it for other threads.
fn read_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}

/// Turns a layer path into a relative path with no `.`, `..` or root:
/// `..` is clamped at the root as the kernel clamps it at `/`.
pub(crate) fn normalize(raw: &[u8]) -> PathBuf {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = PathBuf::new();
    for p in parts {
        out.push(OsStr::from_bytes(p));
    }
    out
}

fn split(rel: &Path) -> (&Path, &OsStr) {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let name = rel.file_name().unwrap_or(OsStr::new(""));
    (parent, name)
}

impl Applier<'_> {
    fn entries<R: Read>(&mut self, stream: R) -> Result<()> {
        let mut archive = tar::Archive::new(stream);
        let entries = archive.entries().map_err(read_err)?;
        for entry in entries {
            let entry = entry.map_err(read_err)?;
            self.entry(entry)?;
            if let Some(e) = self.take_failure() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sends the pending batch to the writer thread.
    fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        match &self.writer {
            Some(tx) => tx
                .send(batch)
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "file writer stopped")),
            None => Ok(()),
        }
    }

    fn take_failure(&self) -> Option<Error> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        self.stats.entries += 1;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&raw).into_owned();
        let rel = normalize(&raw);
        let meta = Meta::read(&mut entry).map_err(|source| Error::Entry {
            entry: display.clone(),
            op: "read metadata",
            source,
        })?;
        let wrap = |op: &'static str| {
            let display = display.clone();
            move |source: io::Error| Error::Entry {
                entry: display,
                op,
                source,
            }
        };
        if rel.as_os_str().is_empty() {
            // The root itself: only its metadata may change.
            if kind != EntryType::Directory {
                return Err(Error::BadEntry {
                    entry: display,
                    reason: "would replace the root directory",
                });
            }
            self.dirs.push(DirMeta { rel, display, meta });
            return Ok(());
        }
        let (parent_rel, name) = split(&rel);
        let name_bytes = name.as_bytes();
        if let Some(hidden) = name_bytes.strip_prefix(whiteout::PREFIX) {
            let parent_rel = parent_rel.to_path_buf();
            let res = if hidden == whiteout::OPAQUE_SUFFIX {
                self.opaque(&parent_rel)
            } else if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(Error::BadEntry {
                    entry: display,
                    reason: "whiteout names no file",
                });
            } else {
                self.whiteout(&parent_rel, OsStr::from_bytes(hidden))
            };
            self.settle();
            return res.map_err(wrap("apply whiteout"));
        }
        if self.opts.whiteouts == WhiteoutMode::Remove {
            self.touch(&rel);
        }
        let res = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                // A sparse entry's header size is not its file size.
                let inline = (kind != EntryType::GNUSparse).then(|| entry.size());
                self.file(&mut entry, parent_rel, name, meta, display.clone(), inline)
                    .map_err(wrap("write file"))
            }
            EntryType::Directory => self
                .dir(&rel, display.clone(), meta)
                .map_err(wrap("make directory")),
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| Error::BadEntry {
                    entry: display.clone(),
                    reason: "symlink without a target",
                })?;
                let target = target.into_owned();
                self.symlink(parent_rel, name, &target, &meta)
                    .map_err(wrap("make symlink"))
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| Error::BadEntry {
                    entry: display.clone(),
                    reason: "hardlink without a target",
                })?;
                let target = normalize(&target);
                if target.as_os_str().is_empty() {
                    return Err(Error::BadEntry {
                        entry: display,
                        reason: "hardlink to the root directory",
                    });
                }
                self.hardlink(&rel, &target).map_err(wrap("make hardlink"))
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (ft, dev) = match kind {
                    EntryType::Fifo => (FileType::Fifo, 0),
                    other => {
                        let h = entry.header();
                        let major = h.device_major().ok().flatten().unwrap_or(0);
                        let minor = h.device_minor().ok().flatten().unwrap_or(0);
                        let ft = if other == EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (ft, rustix::fs::makedev(major, minor))
                    }
                };
                self.node(parent_rel, name, ft, dev, &meta)
                    .map_err(wrap("make device node"))
            }
            _ => Err(Error::BadEntry {
                entry: display,
                reason: "unsupported entry type",
            }),
        };
        self.settle();
        res
    }

    /// Drops cached parents after a directory went away.
    fn settle(&mut self) {
        if self.stale {
            self.fs.invalidate();
            self.stale = false;
        }
    }

    fn touch(&mut self, rel: &Path) {
        let mut p = Some(rel);
        while let Some(cur) = p {
            if cur.as_os_str().is_empty() || !self.touched.insert(cur) {
                break;
            }
            p = cur.parent();
        }
    }

    /// Clears whatever is at `name` so a new entry can take its place.
    /// Returns true if a directory is there and `keep_dir` asked to keep it.
    fn clear(
        parent: BorrowedFd<'_>,
        name: &OsStr,
        keep_dir: bool,
        stale: &mut bool,
    ) -> io::Result<bool> {
        if let Some(st) = lstat_at(parent, name)? {
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            if is_dir && keep_dir {
                return Ok(true);
            }
            if remove_all(parent, name)? {
                *stale = true;
            }
        }
        Ok(false)
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut R,
        parent_rel: &Path,
        name: &OsStr,
        meta: Meta,
        display: String,
        size: Option<u64>,
    ) -> io::Result<()> {
        let (parent, plain) = self.fs.dir_plain(parent_rel, true)?.ok_or(Errno::NOENT)?;
        let want = meta.mode().as_raw_mode();
        // In a plain directory a new file is owned by us with exactly the
        // mode asked for, less the umask: then chown and chmod can be skipped.
        let exact_mode = plain && want & 0o7000 == 0 && self.umask.is_some_and(|u| want & u == 0);
        let skip_chown =
            plain && meta.uid().as_raw() == self.euid && meta.gid().as_raw() == self.egid;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(if exact_mode { want } else { 0o600 });
        let fd = match rustix::fs::openat(parent, name, flags, mode) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => {
                Self::clear(parent, name, false, &mut self.stale)?;
                rustix::fs::openat(parent, name, flags, mode)?
            }
            Err(e) => return Err(e.into()),
        };
        let mut file = File::from(fd);
        let chown = self.opts.same_owner && !skip_chown;
        if let Some(size) = size
            && size <= writer::INLINE_MAX
            && self.writer.is_some()
        {
            let mut data = Vec::with_capacity(size as usize);
            entry.take(size).read_to_end(&mut data)?;
            self.stats.bytes += data.len() as u64;
            self.batch_bytes += data.len();
            self.batch.push(writer::Job {
                file,
                data,
                meta,
                chown,
                chmod: !exact_mode,
                entry: display,
            });
            if self.batch.len() >= writer::BATCH_FILES || self.batch_bytes >= writer::BATCH_BYTES {
                self.flush()?;
            }
            return Ok(());
        }
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            file.write_all(&self.buf[..n])?;
            self.stats.bytes += n as u64;
        }
        writer::finish_file(&file, &meta, chown, !exact_mode)
    }

    fn dir(&mut self, rel: &Path, display: String, meta: Meta) -> io::Result<()> {
        let (parent_rel, name) = split(rel);
        let parent = self.fs.dir(parent_rel, true)?.ok_or(Errno::NOENT)?;
        let mode = Mode::from_raw_mode(0o755);
        match rustix::fs::mkdirat(parent, name, mode) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                if !Self::clear(parent, name, true, &mut self.stale)? {
                    rustix::fs::mkdirat(parent, name, mode)?;
                }
            }
            Err(e) => return Err(e.into()),
        }
        if meta.has_xattrs() {
            let fd = rustix::fs::openat(
                parent,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            meta.set_xattrs(fd.as_fd())?;
        }
        self.dirs.push(DirMeta {
            rel: rel.to_path_buf(),
            display,
            meta,
        });
        Ok(())
    }

    fn symlink(
        &mut self,
        parent_rel: &Path,
        name: &OsStr,
        target: &[u8],
        meta: &Meta,
    ) -> io::Result<()> {
        let parent = self.fs.dir(parent_rel, true)?.ok_or(Errno::NOENT)?;
        let target = OsStr::from_bytes(target);
        match rustix::fs::symlinkat(target, parent, name) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                Self::clear(parent, name, false, &mut self.stale)?;
                rustix::fs::symlinkat(target, parent, name)?;
            }
            Err(e) => return Err(e.into()),
        }
        // Xattrs on symlinks are left out: Linux allows only trusted and
        // security ones there, and layers do not carry them in practice.
        finish_node(parent, name, meta, self.opts.same_owner, false)
    }

    fn node(
        &mut self,
        parent_rel: &Path,
        name: &OsStr,
        ft: FileType,
        dev: u64,
        meta: &Meta,
    ) -> io::Result<()> {
        let parent = self.fs.dir(parent_rel, true)?.ok_or(Errno::NOENT)?;
        let mode = meta.mode();
        match rustix::fs::mknodat(parent, name, ft, mode, dev) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                Self::clear(parent, name, false, &mut self.stale)?;
                rustix::fs::mknodat(parent, name, ft, mode, dev)?;
            }
            Err(e) => return Err(e.into()),
        }
        finish_node(parent, name, meta, self.opts.same_owner, true)
    }

    fn hardlink(&mut self, rel: &Path, target: &Path) -> io::Result<()> {
        if rel == target {
            return Ok(());
        }
        let (tparent_rel, tname) = split(target);
        let tparent = match open_in_root(
            self.fs.root(),
            tparent_rel,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        ) {
            Ok(fd) => Some(fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let (parent_rel, name) = split(rel);
        let overlay = self.opts.whiteouts == WhiteoutMode::Overlay;
        let Some(tparent) = tparent else {
            if overlay {
                return self.defer_link(rel, target);
            }
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("target {} is missing", target.display()),
            ));
        };
        let parent = self.fs.dir(parent_rel, true)?.ok_or(Errno::NOENT)?;
        // Without AT_SYMLINK_FOLLOW, linkat links a symlink itself, never
        // what it points to.
        match rustix::fs::linkat(&tparent, tname, parent, name, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                let a = lstat_at(tparent.as_fd(), tname)?;
                let b = lstat_at(parent, name)?;
                if let (Some(a), Some(b)) = (a, b)
                    && a.st_ino == b.st_ino
                    && a.st_dev == b.st_dev
                {
                    return Ok(());
                }
                Self::clear(parent, name, false, &mut self.stale)?;
                rustix::fs::linkat(&tparent, tname, parent, name, AtFlags::empty())?;
                Ok(())
            }
            Err(Errno::NOENT) if overlay => self.defer_link(rel, target),
            Err(Errno::NOENT) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("target {} is missing", target.display()),
            )),
            Err(e) => Err(e.into()),
        }
    }

    fn defer_link(&mut self, rel: &Path, target: &Path) -> io::Result<()> {
        self.stats.pending_links.push(PendingLink {
            path: rel.to_path_buf(),
            target: target.to_path_buf(),
        });
        Ok(())
    }

    fn whiteout(&mut self, parent_rel: &Path, hidden: &OsStr) -> io::Result<()> {
        match self.opts.whiteouts {
            WhiteoutMode::Remove => {
                // A whiteout hides lower layers only, never this layer's own entry.
                if self.touched.contains(&parent_rel.join(hidden)) {
                    return Ok(());
                }
                let Some(parent) = self.fs.dir(parent_rel, false)? else {
                    return Ok(());
                };
                if remove_all(parent, hidden)? {
                    self.stale = true;
                }
                Ok(())
            }
            WhiteoutMode::Overlay => {
                let parent = self.fs.dir(parent_rel, true)?.ok_or(Errno::NOENT)?;
                whiteout::make_overlay_whiteout(parent, hidden)
            }
        }
    }

    fn opaque(&mut self, dir_rel: &Path) -> io::Result<()> {
        match self.opts.whiteouts {
            WhiteoutMode::Remove => {
                self.touch(dir_rel);
                let Some(dir) = self.fs.dir(dir_rel, false)? else {
                    return Ok(());
                };
                whiteout::purge_lower(dir, dir_rel, &self.touched)?;
                self.stale = true;
                Ok(())
            }
            WhiteoutMode::Overlay => {
                let dir = self.fs.dir(dir_rel, true)?.ok_or(Errno::NOENT)?;
                whiteout::mark_overlay_opaque(dir)
            }
        }
    }

    fn finish_dirs(&mut self) -> Result<()> {
        let mut done: HashSet<&Path> = HashSet::new();
        for d in self.dirs.iter().rev() {
            if !done.insert(&d.rel) {
                continue;
            }
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = match open_in_root(self.fs.root(), &d.rel, flags) {
                Ok(fd) => fd,
                // Replaced by a later entry of the same layer.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc_errno::ENOENT | libc_errno::ENOTDIR | libc_errno::ELOOP)
                    ) =>
                {
                    continue;
                }
                Err(source) => {
                    return Err(Error::Entry {
                        entry: d.display.clone(),
                        op: "open directory",
                        source,
                    });
                }
            };
            let set = || -> io::Result<()> {
                if self.opts.same_owner {
                    rustix::fs::fchown(&fd, Some(d.meta.uid()), Some(d.meta.gid()))?;
                }
                rustix::fs::fchmod(&fd, d.meta.mode())?;
                rustix::fs::futimens(&fd, &d.meta.times())?;
                Ok(())
            };
            set().map_err(|source| Error::Entry {
                entry: d.display.clone(),
                op: "set directory metadata",
                source,
            })?;
        }
        Ok(())
    }
}

/// Ownership, mode and times of a node made by name: none of these calls
/// follows the final component.
fn finish_node(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    meta: &Meta,
    same_owner: bool,
    chmod: bool,
) -> io::Result<()> {
    if same_owner {
        rustix::fs::chownat(
            parent,
            name,
            Some(meta.uid()),
            Some(meta.gid()),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    if chmod {
        // The node was made by mknodat a moment ago and only this
        // sequential applier writes the tree, so the name is not a
        // symlink here and fchmodat (which would follow one) is safe.
        rustix::fs::chmodat(parent, name, meta.mode(), AtFlags::empty())?;
    }
    rustix::fs::utimensat(parent, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Errno numbers compared against `io::Error::raw_os_error`.
mod libc_errno {
    pub(super) const ENOENT: i32 = rustix::io::Errno::NOENT.raw_os_error();
    pub(super) const ENOTDIR: i32 = rustix::io::Errno::NOTDIR.raw_os_error();
    pub(super) const ELOOP: i32 = rustix::io::Errno::LOOP.raw_os_error();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_clamps_at_root() {
        assert_eq!(normalize(b"../../etc/passwd"), PathBuf::from("etc/passwd"));
        assert_eq!(normalize(b"/abs/./x/../y"), PathBuf::from("abs/y"));
        assert_eq!(normalize(b"./"), PathBuf::from(""));
        assert_eq!(normalize(b"a//b/"), PathBuf::from("a/b"));
    }
}
