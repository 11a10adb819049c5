//! Importing OCI layout dirs, `oci-archive` tarballs and `docker save`
//! tarballs.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::oci::{self, Descriptor, Index, Manifest, Platform, REF_NAME};

/// The annotation containerd names an exported image by.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
use super::pipeline::diff_id_of;
use super::{Progress, Store, layers_of};
use crate::apply::{Compression, decompress, normalize};
use crate::digest::Digest;
use crate::error::{Error, Result, io_err};
use crate::reference::{is_bare_tag, normalize_name};

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Name for the image, replacing the names in the source; only for a
    /// source that holds a single image.
    pub name: Option<String>,
    /// Which manifest of an image index to take.
    pub platform: Platform,
    /// Decompress every layer at import and check it against the config's
    /// diff_id (unpacking checks them again in any case).
    pub verify_diff_ids: bool,
    /// Also make the snapshots of every layer, in the same pass that copies
    /// and verifies it (each layer is read once). The diff_ids are checked
    /// then whatever `verify_diff_ids` says.
    pub snapshots: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            name: None,
            platform: Platform::host(),
            verify_diff_ids: true,
            snapshots: false,
        }
    }
}

/// One image an import made visible.
#[derive(Debug, Clone)]
pub struct Imported {
    /// Its normalized name.
    pub name: String,
    /// Its manifest.
    pub manifest: Descriptor,
}

/// Small metadata files of a tarball are kept in memory; anything larger is
/// not metadata.
const SMALL_LIMIT: u64 = 16 << 20;

enum Source {
    /// An OCI layout directory.
    Dir(PathBuf),
    /// A tarball whose files were streamed into the store as blobs.
    Archive {
        path: PathBuf,
        /// Path in the tarball → blob written for it.
        files: HashMap<String, (Digest, u64)>,
        /// Small JSON files by path.
        small: HashMap<String, Vec<u8>>,
    },
}

impl Source {
    fn name(&self) -> String {
        match self {
            Source::Dir(p) | Source::Archive { path: p, .. } => p.display().to_string(),
        }
    }

    fn small(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Source::Dir(p) => {
                let f = p.join(name);
                match fs::read(&f) {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io_err("read", &f)(e)),
                }
            }
            Source::Archive { small, .. } => Ok(small.get(name).cloned()),
        }
    }
}

impl Store {
    /// Imports every image of an OCI layout dir, `oci-archive` tarball or
    /// `docker save` tarball. Each image becomes visible (in `index.json`)
    /// only once every blob it references is in the store and verified.
    pub fn import(
        &self,
        path: &Path,
        opts: &ImportOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<Imported>> {
        let _g = self.lock_shared()?;
        let md = fs::metadata(path).map_err(io_err("stat", path))?;
        let source = if md.is_dir() {
            Source::Dir(path.to_path_buf())
        } else {
            let file = File::open(path).map_err(io_err("open", path))?;
            progress.total(md.len());
            self.scan_archive(path.to_path_buf(), file, progress)?
        };
        self.import_source(source, &layout_name(path), opts, progress)
    }

    /// Imports an `oci-archive` or `docker save` tarball (gzip or zstd
    /// compressed, or not) read from `reader`: a socket, a pipe. `what`
    /// names it in errors; images named only by a tag are listed as
    /// `localhost/<what>:<tag>`. Each blob is verified as it streams into
    /// the store.
    pub fn import_reader(
        &self,
        what: &str,
        reader: impl Read,
        opts: &ImportOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<Imported>> {
        let _g = self.lock_shared()?;
        let source = self.scan_archive(PathBuf::from(what), reader, progress)?;
        self.import_source(source, &layout_name(Path::new(what)), opts, progress)
    }

    fn import_source(
        &self,
        source: Source,
        base: &str,
        opts: &ImportOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<Imported>> {
        let base = base.to_string();
        let is_docker =
            matches!(&source, Source::Archive { small, .. } if small.contains_key("manifest.json"));
        let plans = if is_docker {
            self.plan_docker(&source, opts)?
        } else {
            self.plan_oci(&source, opts, &base, progress)?
        };
        if plans.is_empty() {
            return Err(Error::InvalidImage {
                what: source.name(),
                reason: "holds no image to import".into(),
            });
        }
        let mut done = Vec::new();
        for (name, desc) in plans {
            if opts.snapshots {
                self.snapshot_import(&source, &desc, progress)?;
            }
            self.check_manifest(&desc, opts)?;
            done.push(Imported {
                name,
                manifest: desc,
            });
        }
        self.update_index(|index| {
            for imp in &done {
                index
                    .manifests
                    .retain(|d| d.annotation(REF_NAME) != Some(imp.name.as_str()));
                let mut d = imp.manifest.clone();
                d.platform = None;
                d.annotations = Some(BTreeMap::from([(REF_NAME.to_string(), imp.name.clone())]));
                index.manifests.push(d);
            }
        })?;
        Ok(done)
    }

    /// Streams every file of a tarball into the store: `blobs/sha256/<hex>`
    /// files are verified against their names; small JSON files are kept.
    fn scan_archive(
        &self,
        path: PathBuf,
        reader: impl Read,
        progress: &dyn Progress,
    ) -> Result<Source> {
        let counting = Counting {
            inner: reader,
            progress,
        };
        let read_err = |source| Error::ReadLayer {
            layer: path.display().to_string(),
            source,
        };
        let stream = decompress(counting, Compression::Auto).map_err(read_err)?;
        let mut archive = tar::Archive::new(stream);
        let mut files = HashMap::new();
        let mut small = HashMap::new();
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            if !matches!(
                entry.header().entry_type(),
                tar::EntryType::Regular | tar::EntryType::Continuous
            ) {
                continue;
            }
            let name = normalize(&entry.path_bytes())
                .to_string_lossy()
                .into_owned();
            let size = entry.size();
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                let digest = Digest::from_hex(hex)?;
                if self.has_blob(&digest) {
                    files.insert(name, (digest, size));
                    continue;
                }
                let (d, s) =
                    self.write_blob(&mut entry, Some((&digest, size)), &super::NoProgress)?;
                files.insert(name, (d, s));
            } else if name.ends_with(".json") || name == "oci-layout" || name == "repositories" {
                if size > SMALL_LIMIT {
                    return Err(Error::InvalidImage {
                        what: format!("{} in {}", name, path.display()),
                        reason: "metadata file too large".into(),
                    });
                }
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf).map_err(read_err)?;
                small.insert(name, buf);
            } else if name.ends_with(".tar") || name.ends_with("/layer.tar") {
                let (d, s) = self.write_blob(&mut entry, None, &super::NoProgress)?;
                files.insert(name, (d, s));
            }
        }
        Ok(Source::Archive { path, files, small })
    }

    /// Makes sure the blob `desc` names is in the store, copying and
    /// verifying it from the source if needed.
    fn ensure_blob(
        &self,
        source: &Source,
        desc: &Descriptor,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let digest = desc.digest()?;
        let dest = self.blob_path(&digest);
        if let Ok(md) = fs::metadata(&dest) {
            if md.len() != desc.size {
                return Err(Error::SizeMismatch {
                    digest: digest.to_string(),
                    expected: desc.size,
                    actual: md.len(),
                });
            }
            return Ok(digest);
        }
        let missing = || Error::MissingBlob {
            digest: digest.to_string(),
            source_name: source.name(),
        };
        match source {
            Source::Dir(root) => {
                let p = root.join("blobs/sha256").join(digest.hex());
                let f = match File::open(&p) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
                    Err(e) => return Err(io_err("open blob", &p)(e)),
                };
                self.write_blob(f, Some((&digest, desc.size)), progress)?;
                Ok(digest)
            }
            Source::Archive { .. } => Err(missing()),
        }
    }

    fn read_doc<T: serde::de::DeserializeOwned>(
        &self,
        source: &Source,
        desc: &Descriptor,
    ) -> Result<T> {
        let digest = self.ensure_blob(source, desc, &super::NoProgress)?;
        oci::parse(&digest, &self.read_blob(&digest)?)
    }

    fn plan_oci(
        &self,
        source: &Source,
        opts: &ImportOptions,
        base: &str,
        progress: &dyn Progress,
    ) -> Result<Vec<(String, Descriptor)>> {
        let bytes = source
            .small("index.json")?
            .ok_or_else(|| Error::InvalidImage {
                what: source.name(),
                reason:
                    "neither an OCI layout (index.json) nor a docker save tarball (manifest.json)"
                        .into(),
            })?;
        let index: Index = oci::parse(format!("{}/index.json", source.name()), &bytes)?;
        let single = index.manifests.len() == 1;
        if opts.name.is_some() && !single {
            return Err(Error::InvalidImage {
                what: source.name(),
                reason: format!(
                    "holds {} images; a name can be given only for one",
                    index.manifests.len()
                ),
            });
        }
        let mut plans = Vec::new();
        for desc in &index.manifests {
            // containerd's exports (`ctr images export`, its CRI) name the
            // full reference here, and only a tag in `ref.name`.
            let containerd_name = desc.annotation(CONTAINERD_NAME);
            let name = match (&opts.name, desc.annotation(REF_NAME)) {
                (Some(n), _) => normalize_name(n)?,
                (None, r) if containerd_name.is_some() && r.is_none_or(is_bare_tag) => {
                    normalize_name(containerd_name.unwrap_or_default())?
                }
                (None, Some(r)) if is_bare_tag(r) => {
                    normalize_name(&format!("localhost/{base}:{r}"))?
                }
                (None, Some(r)) => normalize_name(r)?,
                (None, None) if single => normalize_name(&format!("localhost/{base}:latest"))?,
                (None, None) => continue,
            };
            let manifest = self.resolve_manifest(source, desc, &opts.platform, 0)?;
            self.copy_image(source, &manifest, !opts.snapshots, progress)?;
            plans.push((name, manifest));
        }
        Ok(plans)
    }

    /// Follows image indexes down to the manifest for `platform`.
    fn resolve_manifest(
        &self,
        source: &Source,
        desc: &Descriptor,
        platform: &Platform,
        depth: u32,
    ) -> Result<Descriptor> {
        let digest = desc.digest()?;
        if oci::is_manifest(&desc.media_type) {
            return Ok(desc.clone());
        }
        if !oci::is_index(&desc.media_type) || depth > 4 {
            return Err(Error::UnsupportedMediaType {
                digest: digest.to_string(),
                media_type: desc.media_type.clone(),
            });
        }
        let index: Index = self.read_doc(source, desc)?;
        let pick = index
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| platform.accepts(p)))
            .or_else(|| {
                // An index without platforms (as some tools write) with one entry.
                (index.manifests.len() == 1 && index.manifests[0].platform.is_none())
                    .then(|| &index.manifests[0])
            })
            .ok_or_else(|| Error::NoMatchingPlatform {
                what: digest.to_string(),
                platform: platform.to_string(),
                available: oci::platforms_of(&index),
            })?;
        self.resolve_manifest(source, pick, platform, depth + 1)
    }

    /// Copies a manifest, its config and (with `layers`) its layers into
    /// the store.
    fn copy_image(
        &self,
        source: &Source,
        desc: &Descriptor,
        layers: bool,
        progress: &dyn Progress,
    ) -> Result<()> {
        let manifest: Manifest = self.read_doc(source, desc)?;
        if layers {
            progress
                .total(manifest.layers.iter().map(|l| l.size).sum::<u64>() + manifest.config.size);
        }
        self.ensure_blob(source, &manifest.config, progress)?;
        if layers {
            for layer in &manifest.layers {
                self.ensure_blob(source, layer, progress)?;
            }
        }
        Ok(())
    }

    /// Makes the snapshots of an imported image: a layer blob the store
    /// lacks is read from the source once, stored, verified and applied in
    /// the same pass (layers in parallel).
    fn snapshot_import(
        &self,
        source: &Source,
        desc: &Descriptor,
        progress: &dyn Progress,
    ) -> Result<()> {
        let digest = desc.digest()?;
        let manifest: Manifest = oci::parse(&digest, &self.read_blob(&digest)?)?;
        let config_digest = manifest.config.digest()?;
        let config: oci::ConfigRootfs =
            oci::parse(&config_digest, &self.read_blob(&config_digest)?)?;
        let layers = layers_of(&manifest, &config, &digest)?;
        let fetch = |layer: &super::Layer| -> Result<Option<Box<dyn Read + Send + '_>>> {
            let d = layer.blob.digest()?;
            if self.has_blob(&d) {
                return Ok(None);
            }
            let Source::Dir(root) = source else {
                return Err(Error::MissingBlob {
                    digest: d.to_string(),
                    source_name: source.name(),
                });
            };
            let p = root.join("blobs/sha256").join(d.hex());
            match File::open(&p) {
                Ok(f) => Ok(Some(Box::new(f))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::MissingBlob {
                    digest: d.to_string(),
                    source_name: source.name(),
                }),
                Err(e) => Err(io_err("open blob", &p)(e)),
            }
        };
        self.make_snapshots(&layers, &fetch, usize::MAX, progress)?;
        // Layers whose snapshot existed may still lack their blob here.
        for l in &layers {
            self.ensure_blob(source, &l.blob, progress)?;
        }
        Ok(())
    }

    /// Checks a manifest whose blobs are all in the store: config parses,
    /// layer count matches the diff_ids, and (optionally) each layer's
    /// uncompressed digest is its diff_id.
    fn check_manifest(&self, desc: &Descriptor, opts: &ImportOptions) -> Result<()> {
        let digest = desc.digest()?;
        let manifest: Manifest = oci::parse(&digest, &self.read_blob(&digest)?)?;
        let config_digest = manifest.config.digest()?;
        let config: oci::ConfigRootfs =
            oci::parse(&config_digest, &self.read_blob(&config_digest)?)?;
        let layers = layers_of(&manifest, &config, &digest)?;
        for l in &layers {
            let d = l.blob.digest()?;
            if !self.has_blob(&d) {
                return Err(Error::MissingBlob {
                    digest: d.to_string(),
                    source_name: "the store".into(),
                });
            }
            if Compression::from_media_type(&l.blob.media_type).is_none() {
                return Err(Error::UnsupportedMediaType {
                    digest: d.to_string(),
                    media_type: l.blob.media_type.clone(),
                });
            }
        }
        if !opts.verify_diff_ids || opts.snapshots {
            // With snapshots, each diff_id was checked as its layer was applied.
            return Ok(());
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = layers
                .iter()
                .map(|l| {
                    s.spawn(move || -> Result<()> {
                        let d = l.blob.digest()?;
                        let actual = diff_id_of(self, &d, &l.blob.media_type)?;
                        if actual != l.diff_id {
                            return Err(Error::DigestMismatch {
                                what: "layer diff_id",
                                expected: l.diff_id.to_string(),
                                actual: actual.to_string(),
                            });
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect::<Result<Vec<()>>>()
        })?;
        Ok(())
    }

    fn plan_docker(
        &self,
        source: &Source,
        opts: &ImportOptions,
    ) -> Result<Vec<(String, Descriptor)>> {
        let Source::Archive { files, small, .. } = source else {
            return Ok(Vec::new());
        };
        let bytes = small.get("manifest.json").cloned().unwrap_or_default();
        let entries: Vec<DockerEntry> =
            oci::parse(format!("{}/manifest.json", source.name()), &bytes)?;
        if opts.name.is_some() && entries.len() != 1 {
            return Err(Error::InvalidImage {
                what: source.name(),
                reason: format!(
                    "holds {} images; a name can be given only for one",
                    entries.len()
                ),
            });
        }
        let blob_for = |p: &str| -> Result<(Digest, u64)> {
            let p = normalize(p.as_bytes()).to_string_lossy().into_owned();
            if let Some(b) = small.get(&p) {
                return self.write_blob(&b[..], None, &super::NoProgress);
            }
            files.get(&p).cloned().ok_or_else(|| Error::MissingBlob {
                digest: p.clone(),
                source_name: source.name(),
            })
        };
        let mut plans = Vec::new();
        for e in entries {
            let (cd, cs) = blob_for(&e.config)?;
            let mut layers = Vec::new();
            for l in &e.layers {
                let (d, s) = blob_for(l)?;
                let media = match self.sniff_blob(&d)? {
                    Compression::Gzip => oci::OCI_LAYER_GZIP,
                    Compression::Zstd => oci::OCI_LAYER_ZSTD,
                    _ => oci::OCI_LAYER_TAR,
                };
                layers.push(Descriptor::new(media, &d, s));
            }
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(oci::OCI_MANIFEST.into()),
                config: Descriptor::new(oci::OCI_CONFIG, &cd, cs),
                layers,
                extra: BTreeMap::new(),
            };
            let bytes = serde_json::to_vec(&manifest).map_err(|source| Error::Json {
                what: "generated manifest".into(),
                source,
            })?;
            let (md, ms) = self.write_blob(&bytes[..], None, &super::NoProgress)?;
            let desc = Descriptor::new(oci::OCI_MANIFEST, &md, ms);
            let names: Vec<String> = match &opts.name {
                Some(n) => vec![normalize_name(n)?],
                None => e
                    .repo_tags
                    .iter()
                    .map(|t| normalize_name(t))
                    .collect::<Result<_>>()?,
            };
            if names.is_empty() {
                return Err(Error::InvalidImage {
                    what: source.name(),
                    reason: "an image has no RepoTags; give it a name".into(),
                });
            }
            for n in names {
                plans.push((n, desc.clone()));
            }
        }
        Ok(plans)
    }

    fn sniff_blob(&self, d: &Digest) -> Result<Compression> {
        let p = self.blob_path(d);
        let mut head = [0u8; 4];
        let mut f = File::open(&p).map_err(io_err("open blob", &p))?;
        let n = f.read(&mut head).map_err(io_err("read blob", &p))?;
        Ok(if head[..n].starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        })
    }
}

#[derive(Debug, serde::Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The name a layout dir or tarball gives images that carry only a tag:
/// its file name without extensions, reduced to valid name characters.
fn layout_name(path: &Path) -> String {
    let stem = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem.split('.').next().unwrap_or("").to_ascii_lowercase();
    let cleaned: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let cleaned = cleaned.trim_matches('-').to_string();
    if cleaned.is_empty() {
        "image".into()
    } else {
        cleaned
    }
}

struct Counting<'p, R> {
    inner: R,
    progress: &'p dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
