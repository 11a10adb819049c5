//! Garbage collection: blobs and snapshots that no name and no lease
//! reaches are removed.

use std::collections::HashSet;
use std::fs;

use super::oci::{self, Index, Manifest};
use super::{Store, layers_of};
use crate::digest::Digest;
use crate::error::{Result, io_err};

/// What [`Store::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcStats {
    /// Blobs removed.
    pub blobs_removed: usize,
    /// Bytes those blobs took.
    pub bytes_freed: u64,
    /// Snapshots removed.
    pub snapshots_removed: usize,
}

impl Store {
    /// Removes every blob and snapshot no image name and no lease
    /// reaches, and leftover temp files. Runs alone: it waits for imports,
    /// unpacks and mounts in progress, and they wait for it.
    pub fn gc(&self) -> Result<GcStats> {
        let _g = self.lock_exclusive()?;
        let mut blobs: HashSet<String> = HashSet::new();
        let mut snaps: HashSet<String> = HashSet::new();
        for (_, desc) in self.list()? {
            self.mark(&desc, &mut blobs, &mut snaps, 0)?;
        }
        for lease in self.leases()? {
            for b in &lease.blobs {
                blobs.insert(Digest::parse(b)?.hex().to_string());
            }
            for s in &lease.snapshots {
                snaps.insert(Digest::parse(s)?.hex().to_string());
            }
        }
        let mut stats = GcStats::default();
        let dir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&dir).map_err(io_err("read dir", &dir))? {
            let e = e.map_err(io_err("read dir", &dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if Digest::from_hex(&name).is_err() || blobs.contains(&name) {
                continue;
            }
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(e.path()).map_err(io_err("remove blob", e.path()))?;
            stats.blobs_removed += 1;
            stats.bytes_freed += len;
        }
        let dir = self.meta.join("snapshots");
        for e in fs::read_dir(&dir).map_err(io_err("read dir", &dir))? {
            let e = e.map_err(io_err("read dir", &dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if snaps.contains(&name) {
                continue;
            }
            fs::remove_dir_all(e.path()).map_err(io_err("remove snapshot", e.path()))?;
            stats.snapshots_removed += 1;
        }
        let tmp = self.meta.join("tmp");
        for e in fs::read_dir(&tmp)
            .map_err(io_err("read dir", &tmp))?
            .flatten()
        {
            let p = e.path();
            let _ = if e.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
        Ok(stats)
    }

    fn mark(
        &self,
        desc: &oci::Descriptor,
        blobs: &mut HashSet<String>,
        snaps: &mut HashSet<String>,
        depth: u32,
    ) -> Result<()> {
        let digest = desc.digest()?;
        blobs.insert(digest.hex().to_string());
        if depth > 4 || !self.has_blob(&digest) {
            return Ok(());
        }
        if oci::is_index(&desc.media_type) {
            let index: Index = oci::parse(&digest, &self.read_blob(&digest)?)?;
            for m in &index.manifests {
                self.mark(m, blobs, snaps, depth + 1)?;
            }
            return Ok(());
        }
        let manifest: Manifest = oci::parse(&digest, &self.read_blob(&digest)?)?;
        let config_digest = manifest.config.digest()?;
        blobs.insert(config_digest.hex().to_string());
        for l in &manifest.layers {
            blobs.insert(l.digest()?.hex().to_string());
        }
        if self.has_blob(&config_digest) {
            let config: oci::ConfigRootfs =
                oci::parse(&config_digest, &self.read_blob(&config_digest)?)?;
            for l in layers_of(&manifest, &config, &digest)? {
                snaps.insert(l.chain_id.hex().to_string());
            }
        }
        Ok(())
    }
}
