//! Flattened unpacking: every layer applied in order into one directory,
//! for hosts where overlayfs is unavailable.

use std::fs;
use std::path::Path;

use super::pipeline;
use super::{Image, Layer, Progress, Store};
use crate::apply::{ApplyStats, WhiteoutMode};
use crate::error::{Error, Result, io_err};

impl Store {
    /// Unpacks image `name` into `dest` (absent or empty), verifying every
    /// layer's diff_id. The next layer decompresses while the current one
    /// is written. On failure `dest` is left as it was found.
    pub fn unpack(&self, name: &str, dest: &Path, progress: &dyn Progress) -> Result<Image> {
        let image = self.image(name)?;
        let _g = self.lock_shared()?;
        let created = match fs::read_dir(dest) {
            Ok(mut it) => {
                if it.next().is_some() {
                    return Err(Error::TargetNotEmpty {
                        path: dest.to_path_buf(),
                    });
                }
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dest).map_err(io_err("create", dest))?;
                true
            }
            Err(e) => return Err(io_err("read dir", dest)(e)),
        };
        progress.total(image.layers.iter().map(|l| l.blob.size).sum());
        // Complete snapshots are already verified: read them, not the blobs.
        let from_snapshots = image
            .layers
            .iter()
            .all(|l| self.snapshot_dir(&l.chain_id).is_dir());
        let res = if from_snapshots {
            self.unpack_snapshots(&image, dest, progress)
        } else {
            self.unpack_layers(&image, dest, progress)
        };
        if res.is_err() {
            if created {
                let _ = fs::remove_dir_all(dest);
            } else if let Ok(entries) = fs::read_dir(dest) {
                for e in entries.flatten() {
                    let p = e.path();
                    let _ = if e.file_type().is_ok_and(|t| t.is_dir()) {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                }
            }
        }
        res.map(|()| image)
    }

    /// Applies each layer's snapshot, read back as a tar stream by a second
    /// thread, with the same applier and defences as a blob.
    fn unpack_snapshots(&self, image: &Image, dest: &Path, progress: &dyn Progress) -> Result<()> {
        self.apply_streams(
            image,
            dest,
            |layer, decoder| {
                let dir = self.snapshot_dir(&layer.chain_id);
                let dir = dir.parent().unwrap_or(&dir).to_path_buf();
                super::snapshot_tar::write(&dir, decoder.into_writer())
                    .and_then(|w| w.finish())
                    .map_err(io_err("read snapshot", &dir))
            },
            |applied, written, layer| {
                match written {
                    // The applier stopped reading: its error is the one.
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::BrokenPipe => {}
                    Err(e) => return Err(e),
                    Ok(()) => {}
                }
                applied?;
                progress.advance(layer.blob.size);
                Ok(())
            },
        )
    }

    /// Applies each layer's blob, decompressed and checked against its
    /// diff_id by a second thread.
    fn unpack_layers(&self, image: &Image, dest: &Path, progress: &dyn Progress) -> Result<()> {
        self.apply_streams(
            image,
            dest,
            |layer, decoder| decoder.run(self, layer, progress),
            |applied, decoded, layer| super::snapshot::finish(applied, decoded, layer).map(drop),
        )
    }

    /// Applies the layers in order into `dest`, each from the stream a
    /// producer thread fills (the next layer's producer runs while this one
    /// is written); `settle` weighs the applier's outcome against the
    /// producer's.
    fn apply_streams<T: Send>(
        &self,
        image: &Image,
        dest: &Path,
        produce: impl Fn(&Layer, pipeline::Decoder) -> T + Sync,
        settle: impl Fn(Result<ApplyStats>, T, &Layer) -> Result<()>,
    ) -> Result<()> {
        std::thread::scope(|s| {
            let spawn = |i: usize| {
                let (decoder, reader) = pipeline::channel();
                let layer = &image.layers[i];
                let produce = &produce;
                let h = s.spawn(move || produce(layer, decoder));
                (reader, h)
            };
            let mut next = (!image.layers.is_empty()).then(|| spawn(0));
            for (i, layer) in image.layers.iter().enumerate() {
                let Some((mut reader, h)) = next.take() else {
                    break;
                };
                if i + 1 < image.layers.len() {
                    next = Some(spawn(i + 1));
                }
                let mut applied = crate::apply::apply_stream(
                    dest,
                    &mut reader,
                    &crate::apply::ApplyOptions {
                        whiteouts: WhiteoutMode::Remove,
                        compression: crate::apply::Compression::None,
                        ..Default::default()
                    },
                );
                // What the applier did not need (end-of-archive blocks).
                if applied.is_ok()
                    && let Err(source) = reader.drain()
                {
                    applied = Err(Error::ReadLayer {
                        layer: layer.blob.digest_str.clone(),
                        source,
                    });
                }
                drop(reader);
                let produced = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                settle(applied, produced, layer)?;
            }
            Ok(())
        })
    }
}
