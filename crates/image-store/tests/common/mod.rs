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

/// Writes `data` as a blob of an OCI layout; returns its descriptor JSON.
pub fn put_blob(layout: &Path, media_type: &str, data: &[u8]) -> serde_json::Value {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(data));
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&hex), data).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": data.len()})
}

pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// How layers are stored in a generated layout.
#[derive(Clone, Copy, Debug)]
pub enum Comp {
    Gzip,
    Zstd,
    Plain,
}

/// Writes a manifest + config for `layers` (uncompressed tars) into a
/// layout and returns the manifest descriptor.
pub fn put_image(layout: &Path, layers: &[Vec<u8>], comp: Comp, arch: &str) -> serde_json::Value {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        diff_ids.push(sha256(tar));
        let (mt, data) = match comp {
            Comp::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(tar).unwrap();
                (
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    enc.finish().unwrap(),
                )
            }
            Comp::Zstd => (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                zstd::encode_all(&tar[..], 3).unwrap(),
            ),
            Comp::Plain => ("application/vnd.oci.image.layer.v1.tar", tar.clone()),
        };
        descs.push(put_blob(layout, mt, &data));
    }
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = put_blob(
        layout,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": descs,
    });
    put_blob(
        layout,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    )
}

/// Writes `index.json` and `oci-layout` naming each descriptor.
pub fn put_index(layout: &Path, named: &[(Option<&str>, serde_json::Value)]) {
    let manifests: Vec<_> = named
        .iter()
        .map(|(name, d)| {
            let mut d = d.clone();
            if let Some(n) = name {
                d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": n});
            }
            d
        })
        .collect();
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
}

/// A small two-layer test image: a base and an upper layer with a
/// whiteout, an opaque dir and a hardlink into the base.
pub fn sample_layers() -> Vec<Vec<u8>> {
    let mut base = Layer::new();
    base.dir("bin", 0o755)
        .raw(Raw {
            path: b"bin/busybox",
            data: b"#!/bin/true\n",
            mode: 0o755,
            ..Raw::default()
        })
        .symlink("bin/sh", "busybox")
        .dir("etc", 0o755)
        .file("etc/hostname", b"base\n")
        .file("etc/remove-me", b"x")
        .dir("var", 0o755)
        .dir("var/cache", 0o700)
        .file("var/cache/old", b"old")
        .raw(Raw {
            path: b"etc/shadow",
            data: b"root:*:1::::::\n",
            mode: 0o640,
            gid: 42,
            ..Raw::default()
        });
    let mut upper = Layer::new();
    upper
        .file("etc/.wh.remove-me", b"")
        .file("etc/hostname", b"upper\n")
        .dir("var/cache", 0o755)
        .file("var/cache/.wh..wh..opq", b"")
        .file("var/cache/new", b"new")
        .hardlink("bin/ls", "bin/busybox")
        .raw(Raw {
            path: b"usr/bin/suid",
            data: b"s",
            mode: 0o4755,
            uid: 0,
            gid: 0,
            ..Raw::default()
        });
    vec![base.tar(), upper.tar()]
}

/// Tar of a directory tree (an OCI layout), as `oci-archive` writes one.
pub fn tar_dir(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap()
}

/// Runs a command; returns (success, stdout+stderr).
pub fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    match std::process::Command::new(cmd).args(args).output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("{cmd}: {e}")),
    }
}

/// Whether a peer tool is installed; under CI a missing tool is a failure.
pub fn require_tool(tool: &str, test: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test} needs {tool} and CI=true forbids skipping");
        }
        eprintln!("skipping {test}: needs {tool}");
    }
    found
}
