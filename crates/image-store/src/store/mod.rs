//! The store: an OCI image layout plus snapshots, leases and locks.
//!
//! ```text
//! <root>/oci-layout, index.json, blobs/sha256/<hex>   the OCI layout
//! <root>/.store/lock          shared by writers, exclusive for gc
//! <root>/.store/index.lock    serializes index.json updates
//! <root>/.store/tmp/          temp files, renamed into place when complete
//! <root>/.store/snapshots/<chain id hex>/fs   unpacked layers
//! <root>/.store/leases/<id>.json              what mounted rootfs use
//! <root>/.store/mounts/<id>/{upper,work}      overlay dirs per rootfs
//! ```

mod blobs;
mod gc;
mod import;
mod mount;
pub(crate) mod oci;
mod pipeline;
mod pull;
mod snapshot;
mod snapshot_tar;
mod unpack;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

pub use gc::GcStats;
pub use import::{ImportOptions, Imported};
pub use oci::{Descriptor, Platform, REF_NAME};
pub use pull::{PullOptions, Pulled};

use crate::digest::Digest;
use crate::error::{Error, Result, io_err};
use crate::reference::normalize_name;
use oci::{Index, Manifest};

/// Receives progress of long operations (imports, pulls, unpacks); called
/// from worker threads.
pub trait Progress: Sync {
    /// The total number of bytes the operation will read, once known.
    fn total(&self, _bytes: u64) {}
    /// `bytes` more have been read.
    fn advance(&self, _bytes: u64) {}
    /// Something happened to one layer (pulls).
    fn layer(&self, _event: &LayerEvent<'_>) {}
}

/// What happens to a layer during a pull, in this order for each layer
/// that is fetched; a layer whose snapshot and blob are already in the
/// store gets only [`LayerEvent::Present`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayerEvent<'a> {
    /// Already in the store; nothing to fetch.
    Present {
        /// The layer's blob digest.
        digest: &'a Digest,
    },
    /// Its download (or read) started; `size` is the blob's.
    Started {
        /// The layer's blob digest.
        digest: &'a Digest,
        /// The blob's size in bytes.
        size: u64,
    },
    /// `bytes` more of its blob were read.
    Bytes {
        /// The layer's blob digest.
        digest: &'a Digest,
        /// How many.
        bytes: u64,
    },
    /// Its blob digest and its diff_id both matched.
    Verified {
        /// The layer's blob digest.
        digest: &'a Digest,
    },
    /// Its snapshot is complete and visible.
    Done {
        /// The layer's blob digest.
        digest: &'a Digest,
    },
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// An image store rooted at a directory that is also an OCI image layout.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    meta: PathBuf,
}

/// One image in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The normalized name.
    pub name: String,
    /// The manifest's descriptor, as listed in `index.json`.
    pub manifest: Descriptor,
    /// The config's descriptor.
    pub config: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
}

/// One layer of an image.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The (possibly compressed) blob.
    pub blob: Descriptor,
    /// The digest of the uncompressed tar stream, from the config.
    pub diff_id: Digest,
    /// The chain id naming the snapshot of this layer and all below it.
    pub chain_id: Digest,
}

/// A lease keeps what a rootfs or container uses safe from [`Store::gc`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lease {
    /// The lease's id (a file name).
    pub id: String,
    /// Blob digests it holds.
    pub blobs: Vec<String>,
    /// Snapshot chain ids it holds.
    pub snapshots: Vec<String>,
    /// What the lease is for, e.g. a mount point.
    #[serde(default)]
    pub target: Option<PathBuf>,
}

/// A held `flock`; released on drop.
#[derive(Debug)]
pub(crate) struct LockGuard {
    _file: File,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating if needed) the store at `root`. Temp files left by
    /// a killed process are removed when no other process uses the store.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let meta = root.join(".store");
        for d in [
            root.join("blobs/sha256"),
            meta.join("tmp"),
            meta.join("snapshots"),
            meta.join("leases"),
            meta.join("mounts"),
        ] {
            fs::create_dir_all(&d).map_err(io_err("create store dir", &d))?;
        }
        let store = Self { root, meta };
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            store.write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = store.root.join("index.json");
        if !index.exists() {
            let _g = store.lock_file("index.lock", FlockOperation::LockExclusive)?;
            if !index.exists() {
                store.write_index(&empty_index())?;
            }
        }
        store.clean_stale_temp()?;
        Ok(store)
    }

    /// The store's root directory (the OCI layout).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the store holds a blob.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).exists()
    }

    fn clean_stale_temp(&self) -> Result<()> {
        // Only when no other process holds the store: their temp files are live.
        let Some(_g) = self.try_lock_exclusive()? else {
            return Ok(());
        };
        let tmp = self.meta.join("tmp");
        for e in fs::read_dir(&tmp).map_err(io_err("read dir", &tmp))? {
            let e = e.map_err(io_err("read dir", &tmp))?;
            let p = e.path();
            let res = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            res.map_err(io_err("remove stale temp file", &p))?;
        }
        Ok(())
    }

    fn lock_file(&self, name: &str, op: FlockOperation) -> Result<LockGuard> {
        let path = self.meta.join(name);
        let file = match File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(f) => f,
            // A read-only store can still be read: flock works on a file
            // opened for reading (a writer then fails at its first write,
            // saying why).
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
                File::open(&path).map_err(io_err("open lock", &path))?
            }
            Err(e) => return Err(io_err("open lock", &path)(e)),
        };
        rustix::fs::flock(file.as_fd(), op).map_err(|e| Error::Io {
            op: "lock",
            path,
            source: e.into(),
        })?;
        Ok(LockGuard { _file: file })
    }

    /// Writers (imports, snapshot creation, mounts) share the store.
    pub(crate) fn lock_shared(&self) -> Result<LockGuard> {
        self.lock_file("lock", FlockOperation::LockShared)
    }

    /// Garbage collection excludes everything else.
    pub(crate) fn lock_exclusive(&self) -> Result<LockGuard> {
        self.lock_file("lock", FlockOperation::LockExclusive)
    }

    fn try_lock_exclusive(&self) -> Result<Option<LockGuard>> {
        match self.lock_file("lock", FlockOperation::NonBlockingLockExclusive) {
            Ok(g) => Ok(Some(g)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::WouldBlock => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// A fresh path under `.store/tmp`.
    pub(crate) fn temp_path(&self, prefix: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        self.meta
            .join("tmp")
            .join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()))
    }

    /// Writes `data` to `path` atomically: temp file, fsync, rename, fsync
    /// of the directory.
    ///
    /// Holds the shared store lock meanwhile, so another process opening
    /// the store does not take the temp file for a stale one. Never called
    /// under the exclusive lock (gc), which would wait for itself.
    pub(crate) fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<()> {
        let _g = self.lock_shared()?;
        let tmp = self.temp_path("write");
        let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(data).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
        sync_parent(path)
    }

    pub(crate) fn read_index(&self) -> Result<Index> {
        let p = self.root.join("index.json");
        let bytes = fs::read(&p).map_err(io_err("read", &p))?;
        oci::parse(p.display(), &bytes)
    }

    fn write_index(&self, index: &Index) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(index).map_err(|source| Error::Json {
            what: "index.json".into(),
            source,
        })?;
        self.write_atomic(&self.root.join("index.json"), &bytes)
    }

    /// Read-modify-write of `index.json` under its lock.
    pub(crate) fn update_index(&self, f: impl FnOnce(&mut Index)) -> Result<()> {
        let _g = self.lock_file("index.lock", FlockOperation::LockExclusive)?;
        let mut index = self.read_index()?;
        f(&mut index);
        self.write_index(&index)
    }

    /// Every named image: normalized name and manifest descriptor.
    pub fn list(&self) -> Result<Vec<(String, Descriptor)>> {
        let index = self.read_index()?;
        let mut out: Vec<_> = index
            .manifests
            .into_iter()
            .filter_map(|d| Some((d.annotation(REF_NAME)?.to_string(), d)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Looks an image up by name (normalized first) and reads its manifest
    /// and config.
    pub fn image(&self, name: &str) -> Result<Image> {
        let name = normalize_name(name)?;
        let desc = self
            .list()?
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| d)
            .ok_or_else(|| Error::ImageNotFound { name: name.clone() })?;
        let digest = desc.digest()?;
        let manifest: Manifest = oci::parse(&digest, &self.read_blob(&digest)?)?;
        let config_digest = manifest.config.digest()?;
        let config: oci::ConfigRootfs =
            oci::parse(&config_digest, &self.read_blob(&config_digest)?)?;
        let layers = layers_of(&manifest, &config, &digest)?;
        Ok(Image {
            name,
            manifest: desc,
            config: manifest.config,
            layers,
        })
    }

    /// Every named image, sorted by name.
    pub fn images(&self) -> Result<Vec<Image>> {
        self.list()?
            .into_iter()
            .map(|(name, _)| self.image(&name))
            .collect()
    }

    /// Finds an image the way a CRI client names one: by name (normalized:
    /// `busybox`), by image id (its config digest, `sha256:<hex>` or the bare
    /// hex), or by repo digest (`name@sha256:<manifest digest>`). `None` if
    /// no image matches.
    pub fn find(&self, key: &str) -> Result<Option<Image>> {
        let hex_id = key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
        if key.starts_with("sha256:") || hex_id {
            let id = if hex_id {
                Digest::parse(&format!("sha256:{key}"))?
            } else {
                Digest::parse(key)?
            };
            for img in self.images()? {
                if img.config.digest()? == id {
                    return Ok(Some(img));
                }
            }
            return Ok(None);
        }
        let name = normalize_name(key)?;
        if let Some((repo, digest)) = name.split_once('@') {
            // A repo digest: any name of that repository on that manifest.
            let repo = match repo.rsplit_once(':') {
                Some((r, tag)) if !tag.contains('/') => r,
                _ => repo,
            };
            for img in self.images()? {
                let img_repo = img.name.split('@').next().unwrap_or(&img.name);
                let img_repo = match img_repo.rsplit_once(':') {
                    Some((r, tag)) if !tag.contains('/') => r,
                    _ => img_repo,
                };
                if img_repo == repo && img.manifest.digest_str == digest {
                    return Ok(Some(img));
                }
            }
            return Ok(None);
        }
        match self.image(&name) {
            Ok(img) => Ok(Some(img)),
            Err(Error::ImageNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Bytes and inodes used under the store's root.
    pub fn usage(&self) -> Result<(u64, u64)> {
        fn walk(dir: &Path, bytes: &mut u64, inodes: &mut u64) -> std::io::Result<()> {
            use std::os::unix::fs::MetadataExt;
            for e in fs::read_dir(dir)? {
                let e = e?;
                let md = e.metadata()?;
                *inodes += 1;
                *bytes += md.blocks() * 512;
                if md.is_dir() {
                    walk(&e.path(), bytes, inodes)?;
                }
            }
            Ok(())
        }
        let (mut bytes, mut inodes) = (0, 0);
        walk(&self.root, &mut bytes, &mut inodes).map_err(io_err("measure", &self.root))?;
        Ok((bytes, inodes))
    }

    /// The image's config, parsed (entrypoint, env, user, ...), for building
    /// a runtime bundle.
    pub fn config(&self, image: &Image) -> Result<oci_spec::image::ImageConfiguration> {
        let digest = image.config.digest()?;
        let bytes = self.read_blob(&digest)?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: digest.to_string(),
            source,
        })
    }

    /// Reads a whole (small) blob: manifests, indexes, configs.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        const LIMIT: u64 = 16 << 20;
        let p = self.blob_path(digest);
        let md = match fs::metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::MissingBlob {
                    digest: digest.to_string(),
                    source_name: "the store".into(),
                });
            }
            Err(e) => return Err(io_err("stat blob", &p)(e)),
        };
        if md.len() > LIMIT {
            return Err(Error::InvalidImage {
                what: digest.to_string(),
                reason: format!("document of {} bytes is larger than {LIMIT}", md.len()),
            });
        }
        fs::read(&p).map_err(io_err("read blob", &p))
    }

    /// Removes a name. Its blobs and snapshots stay until [`Store::gc`].
    pub fn remove(&self, name: &str) -> Result<()> {
        let name = normalize_name(name)?;
        let mut found = false;
        self.update_index(|index| {
            index.manifests.retain(|d| {
                let hit = d.annotation(REF_NAME) == Some(name.as_str());
                found |= hit;
                !hit
            });
        })?;
        if !found {
            return Err(Error::ImageNotFound { name });
        }
        Ok(())
    }

    /// Records a lease.
    pub fn add_lease(&self, lease: &Lease) -> Result<()> {
        check_lease_id(&lease.id)?;
        let bytes = serde_json::to_vec_pretty(lease).map_err(|source| Error::Json {
            what: format!("lease {}", lease.id),
            source,
        })?;
        self.write_atomic(
            &self.meta.join("leases").join(format!("{}.json", lease.id)),
            &bytes,
        )
    }

    /// Drops a lease; what it held becomes collectable.
    pub fn remove_lease(&self, id: &str) -> Result<()> {
        check_lease_id(id)?;
        let p = self.meta.join("leases").join(format!("{id}.json"));
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove lease", &p)(e)),
        }
    }

    /// Every lease.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        let dir = self.meta.join("leases");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("read dir", &dir))? {
            let p = e.map_err(io_err("read dir", &dir))?.path();
            if p.extension().is_some_and(|x| x == "json") {
                let bytes = fs::read(&p).map_err(io_err("read lease", &p))?;
                out.push(oci::parse(p.display(), &bytes)?);
            }
        }
        Ok(out)
    }

    /// A lease holding everything `image` needs.
    pub fn lease_for(&self, id: &str, image: &Image, target: Option<PathBuf>) -> Lease {
        let mut blobs = vec![
            image.manifest.digest_str.clone(),
            image.config.digest_str.clone(),
        ];
        blobs.extend(image.layers.iter().map(|l| l.blob.digest_str.clone()));
        Lease {
            id: id.to_string(),
            blobs,
            snapshots: image
                .layers
                .iter()
                .map(|l| l.chain_id.to_string())
                .collect(),
            target,
        }
    }
}

fn check_lease_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidImage {
            what: format!("lease id {id:?}"),
            reason: "must be letters, digits, '-', '_' or '.'".into(),
        })
    }
}

pub(crate) fn empty_index() -> Index {
    Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.into()),
        manifests: Vec::new(),
        extra: BTreeMap::new(),
    }
}

/// fsyncs the directory holding `path`, so a rename into it is durable.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let f = File::open(dir).map_err(io_err("open dir", dir))?;
    f.sync_all().map_err(io_err("fsync dir", dir))
}

/// Pairs a manifest's layers with the config's diff_ids and chain ids.
pub(crate) fn layers_of(
    manifest: &Manifest,
    config: &oci::ConfigRootfs,
    what: &Digest,
) -> Result<Vec<Layer>> {
    if manifest.layers.len() != config.rootfs.diff_ids.len() {
        return Err(Error::InvalidImage {
            what: what.to_string(),
            reason: format!(
                "{} layers but {} diff_ids in the config",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            ),
        });
    }
    let mut chain: Option<Digest> = None;
    let mut out = Vec::new();
    for (blob, diff) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        blob.digest()?;
        let diff_id = Digest::parse(diff)?;
        let chain_id = match &chain {
            None => diff_id.clone(),
            Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
        };
        chain = Some(chain_id.clone());
        out.push(Layer {
            blob: blob.clone(),
            diff_id,
            chain_id,
        });
    }
    Ok(out)
}
