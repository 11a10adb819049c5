//! Snapshots: one directory per layer, keyed by chain id, in overlayfs
//! format, unpacked in parallel and shared between images.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Timestamps};

use super::pipeline;
use super::{Image, Layer, Progress, Store, sync_parent};
use crate::apply::rooted::{Rooted, lstat_at, open_in_root};
use crate::apply::{ApplyOptions, ApplyStats, Compression, PendingLink, WhiteoutMode};
use crate::digest::Digest;
use crate::error::{Error, Result, io_err};

impl Store {
    /// The directory holding a snapshot's files.
    pub fn snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        self.meta.join("snapshots").join(chain_id.hex()).join("fs")
    }

    /// Applies one stored layer to `dest`: decompression and diff_id hashing
    /// run on a second thread; a diff_id mismatch fails the whole apply.
    pub(crate) fn apply_layer(
        &self,
        layer: &Layer,
        dest: &Path,
        mode: WhiteoutMode,
        progress: &dyn Progress,
    ) -> Result<ApplyStats> {
        let (decoder, reader) = pipeline::channel();
        self.apply_from(layer, dest, mode, progress, decoder, reader)
    }

    pub(crate) fn apply_from(
        &self,
        layer: &Layer,
        dest: &Path,
        mode: WhiteoutMode,
        progress: &dyn Progress,
        decoder: pipeline::Decoder,
        mut reader: pipeline::ChunkReader,
    ) -> Result<ApplyStats> {
        let opts = ApplyOptions {
            whiteouts: mode,
            compression: Compression::None,
            ..ApplyOptions::default()
        };
        std::thread::scope(|s| {
            let h = s.spawn(|| decoder.run(self, layer, progress));
            let mut res = crate::apply::apply_stream(dest, &mut reader, &opts);
            if res.is_ok()
                && let Err(source) = reader.drain()
            {
                res = Err(Error::ReadLayer {
                    layer: layer.blob.digest_str.clone(),
                    source,
                });
            }
            drop(reader);
            let decoded = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            finish(res, decoded, layer)
        })
    }

    /// Makes sure every layer of `image` has its snapshot, unpacking the
    /// missing ones in parallel. Returns the snapshot dirs, bottom first.
    pub fn prepare_snapshots(
        &self,
        image: &Image,
        progress: &dyn Progress,
    ) -> Result<Vec<PathBuf>> {
        let _g = self.lock_shared()?;
        let missing: Vec<&Layer> = image
            .layers
            .iter()
            .filter(|l| !self.snapshot_dir(&l.chain_id).exists())
            .collect();
        progress.total(missing.iter().map(|l| l.blob.size).sum());
        let results: Vec<(PathBuf, Result<ApplyStats>)> = std::thread::scope(|s| {
            let handles: Vec<_> = missing
                .iter()
                .map(|layer| {
                    let tmp = self.temp_path("snap");
                    s.spawn(move || {
                        let fs_dir = tmp.join("fs");
                        let res = fs::create_dir_all(&fs_dir)
                            .map_err(io_err("create snapshot dir", &fs_dir))
                            .and_then(|()| {
                                self.apply_layer(layer, &fs_dir, WhiteoutMode::Overlay, progress)
                            });
                        (tmp, res)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut first_err = None;
        let mut results_ok: Vec<(PathBuf, ApplyStats)> = Vec::new();
        let mut tmps: Vec<PathBuf> = Vec::new();
        for (tmp, r) in results {
            tmps.push(tmp.clone());
            match r {
                Ok(stats) => results_ok.push((tmp, stats)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let cleanup = || {
            for tmp in &tmps {
                let _ = fs::remove_dir_all(tmp);
            }
        };
        if let Some(e) = first_err {
            cleanup();
            return Err(e);
        }
        let results = results_ok;
        // Where each layer's files are right now: final dir or temp dir.
        let mut at: HashMap<&Digest, PathBuf> = HashMap::new();
        for l in &image.layers {
            at.insert(&l.chain_id, self.snapshot_dir(&l.chain_id));
        }
        for (l, (tmp, _)) in missing.iter().zip(&results) {
            at.insert(&l.chain_id, tmp.join("fs"));
        }
        for (idx, layer) in image.layers.iter().enumerate() {
            let Some(pos) = missing.iter().position(|m| m.chain_id == layer.chain_id) else {
                continue;
            };
            let stats = &results[pos].1;
            if stats.pending_links.is_empty() {
                continue;
            }
            let lowers: Vec<PathBuf> = image.layers[..idx]
                .iter()
                .rev()
                .map(|l| at[&l.chain_id].clone())
                .collect();
            let upper = at[&layer.chain_id].clone();
            for link in &stats.pending_links {
                if let Err(e) = copy_up(&upper, &lowers, link) {
                    cleanup();
                    return Err(e);
                }
            }
        }
        // Durable before visible: a snapshot dir that exists is complete.
        if let Some((tmp, _)) = results.first() {
            let f = fs::File::open(tmp).map_err(io_err("open", tmp))?;
            rustix::fs::syncfs(f.as_fd()).map_err(|e| Error::Io {
                op: "syncfs",
                path: tmp.clone(),
                source: e.into(),
            })?;
        }
        for (l, (tmp, _)) in missing.iter().zip(&results) {
            let dest = self.meta.join("snapshots").join(l.chain_id.hex());
            if dest.exists() {
                // Another process made the same snapshot meanwhile.
                let _ = fs::remove_dir_all(tmp);
                continue;
            }
            match fs::rename(tmp, &dest) {
                Ok(()) => {}
                Err(_) if dest.exists() => {
                    let _ = fs::remove_dir_all(tmp);
                }
                Err(e) => {
                    cleanup();
                    return Err(io_err("rename snapshot into place", &dest)(e));
                }
            }
        }
        if !missing.is_empty() {
            sync_parent(&self.meta.join("snapshots").join("x"))?;
        }
        Ok(image
            .layers
            .iter()
            .map(|l| self.snapshot_dir(&l.chain_id))
            .collect())
    }
}

/// Combines the applier's and the decoder's outcome. The decoder's error
/// wins (it names the blob, and a broken stream makes the applier fail
/// too), unless the decoder only stopped because the applier did.
pub(crate) fn finish(
    applied: Result<ApplyStats>,
    decoded: Result<bool>,
    layer: &Layer,
) -> Result<ApplyStats> {
    match (applied, decoded) {
        (_, Err(e)) => Err(e),
        (Err(Error::ReadLayer { source, .. }), Ok(_)) => Err(Error::ReadLayer {
            layer: layer.blob.digest_str.clone(),
            source,
        }),
        (Err(e), Ok(_)) => Err(e),
        (Ok(stats), Ok(_)) => Ok(stats),
    }
}

/// Resolves a hardlink to a lower layer's file in an overlay snapshot: as
/// overlayfs would on copy-up, the upper layer gets its own copy.
fn copy_up(upper: &Path, lowers: &[PathBuf], link: &PendingLink) -> Result<()> {
    let err = |source: io::Error| Error::Entry {
        entry: link.path.display().to_string(),
        op: "copy hardlink target from a lower layer",
        source,
    };
    let (tparent, tname) = (
        link.target.parent().unwrap_or(Path::new("")),
        link.target.file_name().unwrap_or(OsStr::new("")),
    );
    for lower in lowers {
        let root = rustix::fs::open(
            lower,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(e.into()))?;
        let parent = match open_in_root(
            root.as_fd(),
            tparent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        ) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err(e)),
        };
        let Some(st) = lstat_at(parent.as_fd(), tname).map_err(err)? else {
            continue;
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft == FileType::CharacterDevice && st.st_rdev == 0 {
            break; // whited out below this layer
        }
        let mut up = Rooted::open(upper).map_err(err)?;
        let (lparent, lname) = (
            link.path.parent().unwrap_or(Path::new("")),
            link.path.file_name().unwrap_or(OsStr::new("")),
        );
        let dir = up
            .dir(lparent, true)
            .map_err(err)?
            .ok_or_else(|| err(io::ErrorKind::NotFound.into()))?;
        let times = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec as _,
            },
        };
        match ft {
            FileType::RegularFile => {
                let src = rustix::fs::openat(
                    &parent,
                    tname,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| err(e.into()))?;
                let dst = rustix::fs::openat(
                    dir,
                    lname,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| err(e.into()))?;
                let mut src = fs::File::from(src);
                let mut dst = fs::File::from(dst);
                io::copy(&mut src, &mut dst).map_err(err)?;
                rustix::fs::fchown(
                    &dst,
                    Some(rustix::fs::Uid::from_raw(st.st_uid)),
                    Some(rustix::fs::Gid::from_raw(st.st_gid)),
                )
                .map_err(|e| err(e.into()))?;
                rustix::fs::fchmod(&dst, Mode::from_raw_mode(st.st_mode & 0o7777))
                    .map_err(|e| err(e.into()))?;
                rustix::fs::futimens(&dst, &times).map_err(|e| err(e.into()))?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(&parent, tname, Vec::new())
                    .map_err(|e| err(e.into()))?;
                rustix::fs::symlinkat(target.as_c_str(), dir, lname).map_err(|e| err(e.into()))?;
            }
            _ => {
                return Err(err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "hardlink target is not a file",
                )));
            }
        }
        return Ok(());
    }
    Err(err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("target {} is in no lower layer", link.target.display()),
    )))
}
