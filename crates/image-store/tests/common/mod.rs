//! Helpers shared by the integration tests: a tar layer builder that can
//! write hostile entries, and a tree snapshot for comparisons.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

/// Builds a layer entry by entry; names and link targets go in raw, so
/// `..` and absolute paths survive (the tar crate's own setters refuse them).
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

pub struct Raw<'a> {
    pub kind: EntryType,
    pub path: &'a [u8],
    pub link: &'a [u8],
    pub data: &'a [u8],
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub dev: (u32, u32),
    pub pax: Vec<(&'a str, &'a [u8])>,
}

impl Default for Raw<'_> {
    fn default() -> Self {
        Raw {
            kind: EntryType::Regular,
            path: b"",
            link: b"",
            data: b"",
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            dev: (0, 0),
            pax: Vec::new(),
        }
    }
}

impl Layer {
    pub fn new() -> Self {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }

    pub fn raw(&mut self, r: Raw<'_>) -> &mut Self {
        let mut pax = r.pax.clone();
        if r.path.len() > 99 {
            pax.push(("path", r.path));
        }
        if r.link.len() > 99 {
            pax.push(("linkpath", r.link));
        }
        if !pax.is_empty() {
            self.b.append_pax_extensions(pax).unwrap();
        }
        let mut h = Header::new_ustar();
        h.set_entry_type(r.kind);
        h.set_size(r.data.len() as u64);
        h.set_mode(r.mode);
        h.set_uid(r.uid);
        h.set_gid(r.gid);
        h.set_mtime(r.mtime);
        if matches!(r.kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(r.dev.0).unwrap();
            h.set_device_minor(r.dev.1).unwrap();
        }
        let old = h.as_old_mut();
        let n = r.path.len().min(99);
        old.name[..n].copy_from_slice(&r.path[..n]);
        let n = r.link.len().min(99);
        old.linkname[..n].copy_from_slice(&r.link[..n]);
        h.set_cksum();
        self.b.append(&h, r.data).unwrap();
        self
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.raw(Raw {
            kind: EntryType::Directory,
            path: path.as_bytes(),
            mode,
            ..Raw::default()
        })
    }

    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.raw(Raw {
            path: path.as_bytes(),
            data,
            ..Raw::default()
        })
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(Raw {
            kind: EntryType::Symlink,
            path: path.as_bytes(),
            link: target.as_bytes(),
            mode: 0o777,
            ..Raw::default()
        })
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(Raw {
            kind: EntryType::Link,
            path: path.as_bytes(),
            link: target.as_bytes(),
            ..Raw::default()
        })
    }

    pub fn tar(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }

    pub fn gzip(self) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&self.tar()).unwrap();
        enc.finish().unwrap()
    }

    pub fn zstd(self) -> Vec<u8> {
        zstd::encode_all(&self.tar()[..], 3).unwrap()
    }
}

/// One node of a tree, as the comparisons see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: Vec<u8>,
    pub link: Option<PathBuf>,
    pub rdev: u64,
    pub mtime: (i64, i64),
}

/// Everything under `root` (root itself as ""), without following symlinks.
/// Also returns the inode of each path so callers can check hardlink groups.
pub fn snapshot(root: &Path) -> (BTreeMap<PathBuf, Node>, BTreeMap<PathBuf, u64>) {
    let mut nodes = BTreeMap::new();
    let mut inodes = BTreeMap::new();
    walk(root, root, &mut nodes, &mut inodes);
    (nodes, inodes)
}

fn walk(
    root: &Path,
    p: &Path,
    nodes: &mut BTreeMap<PathBuf, Node>,
    inodes: &mut BTreeMap<PathBuf, u64>,
) {
    let md = std::fs::symlink_metadata(p).unwrap();
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else {
        "socket"
    };
    let rel = p.strip_prefix(root).unwrap().to_path_buf();
    let content = if ft.is_file() {
        std::fs::read(p).unwrap()
    } else {
        Vec::new()
    };
    let link = if ft.is_symlink() {
        Some(std::fs::read_link(p).unwrap())
    } else {
        None
    };
    nodes.insert(
        rel.clone(),
        Node {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: if ft.is_file() { md.len() } else { 0 },
            content,
            link,
            rdev: md.rdev(),
            mtime: (md.mtime(), md.mtime_nsec()),
        },
    );
    inodes.insert(rel, md.ino());
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for n in names {
            walk(root, &p.join(n), nodes, inodes);
        }
    }
}

/// Whether the tests may do what only root can (devices, chown, trusted
/// xattrs, mounts). Outside CI a non-root run skips with a message; under
/// `CI=true` a skip is a failure.
pub fn require_root(name: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{name} needs root and CI=true forbids skipping");
    }
    eprintln!("skipping {name}: needs root");
    false
}
