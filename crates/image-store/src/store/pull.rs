//! Pulling an image from a registry: manifest (through an index for our
//! platform), config, then every layer streamed once — hashed, stored,
//! decompressed, checked against its diff_id and applied into its snapshot
//! in the same pass — several layers at a time.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::oci::{self, Descriptor, Index, Manifest, Platform, REF_NAME};
use super::{LayerEvent, Progress, Store, layers_of};
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::registry::{Client, Endpoint, FetchedManifest};

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Which manifest of an image index to take.
    pub platform: Platform,
    /// Layers fetched and unpacked at once.
    pub jobs: usize,
    /// Set it to stop the pull; it then fails with [`Error::Cancelled`],
    /// keeping only blobs it had fully verified.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            platform: Platform::host(),
            jobs: 4,
            cancel: None,
        }
    }
}

/// What a pull made visible.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The normalized name it is listed under.
    pub name: String,
    /// The platform manifest's descriptor.
    pub manifest: Descriptor,
    /// Layers that were fetched (the others were in the store already).
    pub fetched_layers: usize,
}

impl Store {
    /// Pulls `name` (`busybox`, `localhost:5000/app:1`, `x@sha256:...`)
    /// into the store, with snapshots of all its layers, and lists it under
    /// its normalized name. Blobs already in the store are not fetched
    /// again; a layer whose snapshot exists is not unpacked again.
    pub fn pull(
        &self,
        client: &Client,
        name: &str,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Pulled> {
        let reference = Reference::parse(name)?;
        let _g = self.lock_shared()?;
        let cancelled = || {
            opts.cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
        };
        let check = || -> Result<()> {
            if cancelled() {
                return Err(Error::Cancelled {
                    what: format!("pull of {}", reference.name()),
                });
            }
            Ok(())
        };

        // The first endpoint (mirror, then the registry) that has the manifest.
        let endpoints = client.endpoints(&reference);
        check()?;
        let (ep_index, top) = client.first_manifest(&endpoints, &reference)?;
        let ep = &endpoints[ep_index];
        let manifest_doc = self.platform_manifest(client, ep, &reference, top, &opts.platform)?;
        let manifest: Manifest = oci::parse(&manifest_doc.digest, &manifest_doc.bytes)?;
        if manifest.schema_version != 2 {
            return Err(Error::InvalidImage {
                what: manifest_doc.digest.to_string(),
                reason: format!("schemaVersion {} is not 2", manifest.schema_version),
            });
        }

        // The config, small and needed to know the diff_ids.
        let config_digest = manifest.config.digest()?;
        if !self.has_blob(&config_digest) {
            check()?;
            let body = fetch_blob(client, &endpoints[ep_index..], &reference, &manifest.config)?;
            self.write_blob(
                body,
                Some((&config_digest, manifest.config.size)),
                &super::NoProgress,
            )?;
        }
        let config: oci::ConfigRootfs =
            oci::parse(&config_digest, &self.read_blob(&config_digest)?)?;
        let layers = layers_of(&manifest, &config, &manifest_doc.digest)?;
        for l in &layers {
            if crate::apply::Compression::from_media_type(&l.blob.media_type).is_none() {
                return Err(Error::UnsupportedMediaType {
                    digest: l.blob.digest_str.clone(),
                    media_type: l.blob.media_type.clone(),
                });
            }
        }

        // Layers with a snapshot but no blob (a store that dropped it) get
        // the blob alone.
        let mut fetched = 0;
        for l in &layers {
            let d = l.blob.digest()?;
            let has_snapshot = self.snapshot_dir(&l.chain_id).exists();
            if has_snapshot && !self.has_blob(&d) {
                check()?;
                let body = fetch_blob(client, &endpoints[ep_index..], &reference, &l.blob)?;
                self.write_blob(
                    Cancellable {
                        inner: body,
                        cancel: opts.cancel.as_deref(),
                    },
                    Some((&d, l.blob.size)),
                    progress,
                )?;
                fetched += 1;
            } else if has_snapshot {
                progress.layer(&LayerEvent::Present { digest: &d });
            }
        }
        let missing = layers
            .iter()
            .filter(|l| !self.snapshot_dir(&l.chain_id).exists())
            .count();
        fetched += missing;
        let fetch = |layer: &super::Layer| -> Result<Option<Box<dyn Read + Send + '_>>> {
            check()?;
            let d = layer.blob.digest()?;
            if self.has_blob(&d) {
                // Read from the store; verified when it was written.
                return Ok(None);
            }
            let body = fetch_blob(client, &endpoints[ep_index..], &reference, &layer.blob)?;
            Ok(Some(Box::new(Cancellable {
                inner: body,
                cancel: opts.cancel.as_deref(),
            })))
        };
        if let Err(e) = self.make_snapshots(&layers, &fetch, opts.jobs, progress) {
            check()?;
            return Err(e);
        }

        // Visible only now: the manifest blob, then the name.
        self.write_blob(
            &manifest_doc.bytes[..],
            Some((&manifest_doc.digest, manifest_doc.bytes.len() as u64)),
            &super::NoProgress,
        )?;
        let listed = reference.name();
        let mut desc = Descriptor::new(
            &manifest_doc.media_type,
            &manifest_doc.digest,
            manifest_doc.bytes.len() as u64,
        );
        desc.annotations = Some(BTreeMap::from([(REF_NAME.to_string(), listed.clone())]));
        self.update_index(|index| {
            index
                .manifests
                .retain(|d| d.annotation(REF_NAME) != Some(listed.as_str()));
            index.manifests.push(desc.clone());
        })?;
        Ok(Pulled {
            name: listed,
            manifest: desc,
            fetched_layers: fetched,
        })
    }

    /// Follows an index to the manifest for `platform` (storing the index
    /// blob), or returns a manifest as it is.
    fn platform_manifest(
        &self,
        client: &Client,
        ep: &Endpoint,
        reference: &Reference,
        top: FetchedManifest,
        platform: &Platform,
    ) -> Result<FetchedManifest> {
        let mut doc = top;
        for _ in 0..4 {
            if oci::is_manifest(&doc.media_type) {
                return Ok(doc);
            }
            if !oci::is_index(&doc.media_type) {
                return Err(Error::UnsupportedMediaType {
                    digest: doc.digest.to_string(),
                    media_type: doc.media_type.clone(),
                });
            }
            let index: Index = oci::parse(&doc.digest, &doc.bytes)?;
            let pick = index
                .manifests
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| platform.accepts(p)))
                .ok_or_else(|| Error::NoMatchingPlatform {
                    what: format!("{} ({})", reference.name(), doc.digest),
                    platform: platform.to_string(),
                    available: oci::platforms_of(&index),
                })?;
            let want = pick.digest()?;
            self.write_blob(
                &doc.bytes[..],
                Some((&doc.digest, doc.bytes.len() as u64)),
                &super::NoProgress,
            )?;
            let next = client.manifest(ep, &reference.repository, &want.to_string())?;
            if next.bytes.len() as u64 != pick.size {
                return Err(Error::SizeMismatch {
                    digest: want.to_string(),
                    expected: pick.size,
                    actual: next.bytes.len() as u64,
                });
            }
            doc = FetchedManifest {
                media_type: if pick.media_type.is_empty() {
                    next.media_type
                } else {
                    pick.media_type.clone()
                },
                ..next
            };
        }
        Err(Error::InvalidImage {
            what: reference.name(),
            reason: "image indexes nested too deep".into(),
        })
    }
}

/// A blob's body from the first of `endpoints` that serves it.
fn fetch_blob<'c>(
    client: &'c Client,
    endpoints: &[Endpoint],
    reference: &Reference,
    desc: &Descriptor,
) -> Result<crate::registry::BlobReader<'c>> {
    client.first_blob(endpoints, reference, &desc.digest()?, desc.size)
}

/// Fails reads once the pull is cancelled.
struct Cancellable<'a, R> {
    inner: R,
    cancel: Option<&'a AtomicBool>,
}

impl<R: Read> Read for Cancellable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(io::Error::other("cancelled"));
        }
        self.inner.read(buf)
    }
}
