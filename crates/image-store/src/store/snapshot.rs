//! Snapshots: one directory per layer, keyed by chain id, in overlayfs
//! format, unpacked in parallel and shared between images.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Timestamps};

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::pipeline;
use super::{Image, Layer, LayerEvent, Progress, Store, sync_parent};
use crate::apply::rooted::{Rooted, lstat_at, open_in_root};
use crate::apply::{ApplyOptions, ApplyStats, Compression, PendingLink, WhiteoutMode};
use crate::digest::{Digest, Hasher};
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
        self.apply_from(layer, dest, mode, progress, None)
    }

    pub(crate) fn apply_from(
        &self,
        layer: &Layer,
        dest: &Path,
        mode: WhiteoutMode,
        progress: &dyn Progress,
        source: Option<&mut (dyn io::Read + Send)>,
    ) -> Result<ApplyStats> {
        let (decoder, mut reader) = pipeline::channel();
        let opts = ApplyOptions {
            whiteouts: mode,
            compression: Compression::None,
            ..ApplyOptions::default()
        };
        std::thread::scope(|s| {
            let h = s.spawn(|| match source {
                Some(src) => decoder.run_from(src, layer, progress),
                None => decoder.run(self, layer, progress),
            });
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
        self.make_snapshots(&image.layers, &|_| Ok(None), usize::MAX, progress)?;
        Ok(image
            .layers
            .iter()
            .map(|l| self.snapshot_dir(&l.chain_id))
            .collect())
    }

    /// Makes the missing snapshots of `layers` (an image's, bottom first),
    /// at most `jobs` at a time. `fetch` gives a layer's compressed bytes
    /// when its blob is to come from elsewhere (a registry): they are then
    /// stored as the blob, verified, decompressed, checked against the
    /// diff_id and applied in one pass. `None` reads the stored blob.
    /// Nothing is visible until every layer has matched. The caller holds
    /// the shared store lock.
    pub(crate) fn make_snapshots(
        &self,
        layers: &[Layer],
        fetch: &Fetch<'_>,
        jobs: usize,
        progress: &dyn Progress,
    ) -> Result<()> {
        let missing: Vec<&Layer> = layers
            .iter()
            .filter(|l| !self.snapshot_dir(&l.chain_id).exists())
            .collect();
        progress.total(missing.iter().map(|l| l.blob.size).sum());
        let next = AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<Outcome>>> = missing.iter().map(|_| Mutex::new(None)).collect();
        let workers = jobs.clamp(1, missing.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(layer) = missing.get(i) else {
                            return;
                        };
                        let tmp = self.temp_path("snap");
                        let fs_dir = tmp.join("fs");
                        let res = fs::create_dir_all(&fs_dir)
                            .map_err(io_err("create snapshot dir", &fs_dir))
                            .and_then(|()| self.snapshot_one(layer, &fs_dir, fetch, progress));
                        *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some((tmp, res));
                    }
                });
            }
        });
        let results: Vec<Outcome> = slots
            .into_iter()
            .filter_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
            .collect();
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
        for l in layers {
            at.insert(&l.chain_id, self.snapshot_dir(&l.chain_id));
        }
        for (l, (tmp, _)) in missing.iter().zip(&results) {
            at.insert(&l.chain_id, tmp.join("fs"));
        }
        for (idx, layer) in layers.iter().enumerate() {
            let Some(pos) = missing.iter().position(|m| m.chain_id == layer.chain_id) else {
                continue;
            };
            let stats = &results[pos].1;
            if stats.pending_links.is_empty() {
                continue;
            }
            let lowers: Vec<PathBuf> = layers[..idx]
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
            // Remembered beside the files, so that a flattened unpack from
            // the snapshot links them again as the layer did.
            let record = results[pos].0.join(super::snapshot_tar::LINKS);
            if let Err(e) = fs::write(
                &record,
                super::snapshot_tar::encode_links(&stats.pending_links),
            ) {
                cleanup();
                return Err(io_err("write", &record)(e));
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
        for l in &missing {
            if let Ok(d) = l.blob.digest() {
                progress.layer(&LayerEvent::Done { digest: &d });
            }
        }
        Ok(())
    }

    /// Unpacks one layer into `fs_dir`, from `fetch`'s bytes (also stored
    /// as the blob) or from the stored blob.
    fn snapshot_one(
        &self,
        layer: &Layer,
        fs_dir: &Path,
        fetch: &Fetch<'_>,
        progress: &dyn Progress,
    ) -> Result<ApplyStats> {
        let Some(source) = fetch(layer)? else {
            return self.apply_layer(layer, fs_dir, WhiteoutMode::Overlay, progress);
        };
        let digest = layer.blob.digest()?;
        progress.layer(&LayerEvent::Started {
            digest: &digest,
            size: layer.blob.size,
        });
        let mut tee = BlobTee::new(self, source, &digest, layer.blob.size, progress)?;
        let applied = self.apply_from(
            layer,
            fs_dir,
            WhiteoutMode::Overlay,
            progress,
            Some(&mut tee),
        );
        // The blob is checked (and kept) even when the layer failed to
        // apply: a verified blob is good for a retry.
        let stored = tee.finish();
        // A blob that does not match explains a failed apply best.
        let stats = match (applied, stored) {
            (_, Err(e @ (Error::DigestMismatch { .. } | Error::SizeMismatch { .. }))) => {
                return Err(e);
            }
            (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
            (Ok(stats), Ok(())) => stats,
        };
        progress.layer(&LayerEvent::Verified { digest: &digest });
        Ok(stats)
    }
}

/// A layer's temp snapshot dir and how its unpacking went.
type Outcome = (PathBuf, Result<ApplyStats>);

/// Where a missing layer's compressed bytes come from; `None`: the store.
pub(crate) type Fetch<'f> =
    dyn Fn(&Layer) -> Result<Option<Box<dyn io::Read + Send + 'f>>> + Sync + 'f;

/// Passes a blob's bytes through to the unpacker while writing them to a
/// temp file and hashing them; [`BlobTee::finish`] checks size and digest
/// and only then moves the file into the store.
struct BlobTee<'a> {
    store: &'a Store,
    inner: Box<dyn io::Read + Send + 'a>,
    file: Option<fs::File>,
    tmp: PathBuf,
    hasher: Hasher,
    digest: &'a Digest,
    size: u64,
    progress: &'a dyn Progress,
}

impl<'a> BlobTee<'a> {
    fn new(
        store: &'a Store,
        inner: Box<dyn io::Read + Send + 'a>,
        digest: &'a Digest,
        size: u64,
        progress: &'a dyn Progress,
    ) -> Result<Self> {
        let tmp = store.temp_path("blob");
        let file = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
        Ok(Self {
            store,
            inner,
            file: Some(file),
            tmp,
            hasher: Hasher::default(),
            digest,
            size,
            progress,
        })
    }

    /// Reads what the unpacker left (a compressed stream may end before
    /// its data does), then verifies and stores the blob.
    fn finish(mut self) -> Result<()> {
        let drained = io::copy(&mut self, &mut io::sink());
        let res = self.commit(drained);
        if res.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        res
    }

    fn commit(&mut self, drained: io::Result<u64>) -> Result<()> {
        if let Err(e) = drained {
            return Err(Error::ReadLayer {
                layer: self.digest.to_string(),
                source: e,
            });
        }
        let size = self.hasher.len();
        if size != self.size {
            return Err(Error::SizeMismatch {
                digest: self.digest.to_string(),
                expected: self.size,
                actual: size,
            });
        }
        let actual = self.hasher.clone().finish();
        if &actual != self.digest {
            return Err(Error::DigestMismatch {
                what: "blob",
                expected: self.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let file = self.file.take().ok_or_else(|| Error::ReadLayer {
            layer: self.digest.to_string(),
            source: io::Error::other("blob file already closed"),
        })?;
        file.sync_all().map_err(io_err("fsync", &self.tmp))?;
        drop(file);
        let dest = self.store.blob_path(self.digest);
        fs::rename(&self.tmp, &dest).map_err(io_err("rename blob into place", &dest))?;
        sync_parent(&dest)
    }
}

impl io::Read for BlobTee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.hasher.len() + n as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} is larger than its {} bytes",
                    self.digest, self.size
                ),
            ));
        }
        if let Some(f) = self.file.as_mut() {
            io::Write::write_all(f, &buf[..n])?;
        }
        self.hasher.update(&buf[..n]);
        self.progress.layer(&LayerEvent::Bytes {
            digest: self.digest,
            bytes: n as u64,
        });
        Ok(n)
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
