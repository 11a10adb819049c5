//! A snapshot read back as a layer tar stream: overlayfs whiteouts (0/0
//! character devices) become `.wh.` entries, opaque directories get a
//! `.wh..wh..opq` entry, hardlinks within the snapshot stay links, xattrs
//! and nanosecond mtimes go in PAX records. A flattened unpack of an image
//! whose snapshots exist feeds this to the layer applier instead of
//! decompressing and hashing its blobs again.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::apply::PendingLink;

const OPAQUE: &str = "trusted.overlay.opaque";

/// The file beside a snapshot's `fs` dir listing the layer's hardlinks to
/// files of lower layers, which the snapshot holds as copies (as overlayfs
/// copies up): `path NUL target NUL`, repeated.
pub(crate) const LINKS: &str = "hardlinks";

pub(crate) fn encode_links(links: &[PendingLink]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in links {
        out.extend_from_slice(l.path.as_os_str().as_bytes());
        out.push(0);
        out.extend_from_slice(l.target.as_os_str().as_bytes());
        out.push(0);
    }
    out
}

fn decode_links(bytes: &[u8]) -> HashMap<PathBuf, PathBuf> {
    let mut parts = bytes.split(|&b| b == 0);
    let mut out = HashMap::new();
    while let (Some(p), Some(t)) = (parts.next(), parts.next()) {
        if !p.is_empty() && !t.is_empty() {
            out.insert(
                PathBuf::from(OsStr::from_bytes(p)),
                PathBuf::from(OsStr::from_bytes(t)),
            );
        }
    }
    out
}

/// Writes the snapshot at `snapshot` (holding `fs` and perhaps the
/// hardlink record) as a tar stream.
pub(crate) fn write<W: Write>(snapshot: &Path, out: W) -> io::Result<W> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Complete);
    let lower_links = match fs::read(snapshot.join(LINKS)) {
        Ok(bytes) => decode_links(&bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
        Err(e) => return Err(e),
    };
    let mut w = Walk {
        root: snapshot.join("fs"),
        links: HashMap::new(),
        lower_links,
    };
    w.walk(Path::new(""), &mut b)?;
    b.into_inner()
}

struct Walk {
    root: PathBuf,
    /// First path of each inode seen with more than one link.
    links: HashMap<(u64, u64), PathBuf>,
    /// Paths that were hardlinks to a lower layer's file.
    lower_links: HashMap<PathBuf, PathBuf>,
}

impl Walk {
    fn walk<W: Write>(&mut self, rel: &Path, b: &mut tar::Builder<W>) -> io::Result<()> {
        let root = self.root.clone();
        let dir = root.join(rel);
        let mut names: Vec<_> = fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let path = rel.join(&name);
            let full = root.join(&path);
            // Never follows a symlink: every entry is looked at, not through.
            let md = fs::symlink_metadata(&full)?;
            let ft = md.file_type();
            if ft.is_char_device() && md.rdev() == 0 {
                let mut wh = OsStr::new(".wh.").to_os_string();
                wh.push(&name);
                let mut h = header(&md, tar::EntryType::Regular);
                h.set_size(0);
                h.set_mode(0o644);
                b.append_data(&mut h, rel.join(wh), io::empty())?;
                continue;
            }
            if ft.is_socket() {
                // Not layer content.
                continue;
            }
            let xattrs = xattrs_of(&full)?;
            let opaque = xattrs
                .iter()
                .any(|(k, v)| k == OPAQUE && v.as_slice() == b"y");
            pax(b, &md, &xattrs)?;
            if ft.is_dir() {
                let mut h = header(&md, tar::EntryType::Directory);
                b.append_data(&mut h, &path, io::empty())?;
                if opaque {
                    let mut h = header(&md, tar::EntryType::Regular);
                    h.set_size(0);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path.join(".wh..wh..opq"), io::empty())?;
                }
                self.walk(&path, b)?;
            } else if ft.is_file() {
                if let Some(target) = self.lower_links.get(&path) {
                    let mut h = header(&md, tar::EntryType::Link);
                    b.append_link(&mut h, &path, target)?;
                    continue;
                }
                let links = &mut self.links;
                if md.nlink() > 1 {
                    if let Some(first) = links.get(&(md.dev(), md.ino())) {
                        let mut h = header(&md, tar::EntryType::Link);
                        b.append_link(&mut h, &path, first)?;
                        continue;
                    }
                    links.insert((md.dev(), md.ino()), path.clone());
                }
                let f = fs::File::open(&full)?;
                let mut h = header(&md, tar::EntryType::Regular);
                h.set_size(md.len());
                b.append_data(&mut h, &path, f)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&full)?;
                let mut h = header(&md, tar::EntryType::Symlink);
                b.append_link(&mut h, &path, target)?;
            } else {
                let kind = if ft.is_char_device() {
                    tar::EntryType::Char
                } else if ft.is_block_device() {
                    tar::EntryType::Block
                } else {
                    tar::EntryType::Fifo
                };
                let mut h = header(&md, kind);
                let rdev = md.rdev();
                h.set_device_major(rustix::fs::major(rdev))?;
                h.set_device_minor(rustix::fs::minor(rdev))?;
                b.append_data(&mut h, &path, io::empty())?;
            }
        }
        Ok(())
    }
}

fn header(md: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(u64::from(md.uid()));
    h.set_gid(u64::from(md.gid()));
    h.set_mtime(md.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// A PAX header with the entry's nanosecond mtime and its xattrs (other than
/// overlayfs's own, which the tar form expresses as entries).
fn pax<W: Write>(
    b: &mut tar::Builder<W>,
    md: &fs::Metadata,
    xattrs: &[(String, Vec<u8>)],
) -> io::Result<()> {
    let mut data = Vec::new();
    let mut record = |key: &[u8], value: &[u8]| {
        // "<len> <key>=<value>\n", the length counting itself.
        let body = key.len() + value.len() + 3;
        let mut len = body + 1;
        while body + len.to_string().len() != len {
            len = body + len.to_string().len();
        }
        data.extend_from_slice(len.to_string().as_bytes());
        data.push(b' ');
        data.extend_from_slice(key);
        data.push(b'=');
        data.extend_from_slice(value);
        data.push(b'\n');
    };
    if md.mtime_nsec() != 0 {
        let t = format!("{}.{:09}", md.mtime(), md.mtime_nsec());
        record(b"mtime", t.as_bytes());
    }
    for (k, v) in xattrs {
        if k.starts_with("trusted.overlay.") {
            continue;
        }
        record(format!("SCHILY.xattr.{k}").as_bytes(), v);
    }
    if data.is_empty() {
        return Ok(());
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    b.append_data(&mut h, "PaxHeader", &data[..])
}

fn xattrs_of(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(rustix::io::Errno::RANGE) => {
            let want = rustix::fs::llistxattr_query(path)?;
            names.resize(want, 0);
            rustix::fs::llistxattr(path, &mut names[..])?
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&c| c == 0).filter(|s| !s.is_empty()) {
        let key = OsStr::from_bytes(name);
        let len = rustix::fs::lgetxattr_query(path, key)?;
        let mut value = vec![0u8; len];
        let got = rustix::fs::lgetxattr(path, key, &mut value[..])?;
        value.truncate(got);
        out.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    Ok(out)
}
