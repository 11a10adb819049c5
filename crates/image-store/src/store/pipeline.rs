//! Decompression and diff_id hashing on their own thread, so a layer's
//! inflate and its filesystem writes run on different cores.

use std::fs::File;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::{Layer, Progress, Store};
use crate::apply::{Compression, decompress};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};

/// Size of one chunk handed from the decoder to the applier.
const CHUNK: usize = 512 * 1024;
/// Chunks in flight per stage: lets the next layer's decoder run ahead
/// while the applier is busy with many small files, within a few tens of
/// MiB in all.
const DEPTH: usize = 16;

/// The receiving end: reads like the uncompressed layer.
pub(crate) struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    /// Spent chunks go back to the decoder, which saves allocating and
    /// zeroing a fresh one each time.
    spent: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let old = std::mem::replace(&mut self.cur, chunk);
                    if old.capacity() >= CHUNK {
                        let _ = self.spent.try_send(old);
                    }
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl ChunkReader {
    /// Reads to the end, so the decoder hashes the whole stream (tar stops
    /// at its end-of-archive blocks, which may not be the end of the data).
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }
}

/// The decoding end, to run on its own thread.
pub(crate) struct Decoder {
    tx: SyncSender<io::Result<Vec<u8>>>,
    spent: Receiver<Vec<u8>>,
}

pub(crate) fn channel() -> (Decoder, ChunkReader) {
    let (tx, rx) = sync_channel(DEPTH);
    let (spent_tx, spent_rx) = sync_channel(DEPTH + 2);
    (
        Decoder {
            tx,
            spent: spent_rx,
        },
        ChunkReader {
            rx,
            spent: spent_tx,
            cur: Vec::new(),
            pos: 0,
        },
    )
}

/// A `Write` end for the chunk channel: what is written arrives at the
/// [`ChunkReader`] in chunks of [`CHUNK`] bytes.
pub(crate) struct ChunkWriter {
    tx: SyncSender<io::Result<Vec<u8>>>,
    spent: Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

impl Decoder {
    /// The channel's sending end as a plain writer (no decompression).
    pub(crate) fn into_writer(self) -> ChunkWriter {
        ChunkWriter {
            tx: self.tx,
            spent: self.spent,
            buf: Vec::with_capacity(CHUNK),
        }
    }
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        let next = self
            .spent
            .try_recv()
            .map(|mut v| {
                v.clear();
                v
            })
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.buf, next);
        self.tx
            .send(Ok(full))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }

    /// Sends what is buffered; the reader then sees the end.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

impl io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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

impl Decoder {
    /// Decompresses `layer`'s blob into the channel and checks the digest of
    /// the uncompressed stream against the layer's diff_id. Returns false
    /// if the applier stopped reading first.
    pub(crate) fn run(self, store: &Store, layer: &Layer, progress: &dyn Progress) -> Result<bool> {
        let digest = layer.blob.digest()?;
        let path = store.blob_path(&digest);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::MissingBlob {
                    digest: digest.to_string(),
                    source_name: "the store".into(),
                }
            } else {
                Error::Io {
                    op: "open layer",
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        self.run_from(file, layer, progress)
    }

    /// As [`Decoder::run`], with the compressed blob read from `source`
    /// (a download, say) instead of the store.
    pub(crate) fn run_from(
        self,
        source: impl Read,
        layer: &Layer,
        progress: &dyn Progress,
    ) -> Result<bool> {
        let digest = layer.blob.digest()?;
        let compression =
            Compression::from_media_type(&layer.blob.media_type).ok_or_else(|| {
                Error::UnsupportedMediaType {
                    digest: digest.to_string(),
                    media_type: layer.blob.media_type.clone(),
                }
            })?;
        let read_err = |source| Error::ReadLayer {
            layer: digest.to_string(),
            source,
        };
        let mut stream = decompress(
            Counting {
                inner: source,
                progress,
            },
            compression,
        )
        .map_err(read_err)?;
        // Hashing runs on a third thread between decoder and applier, so
        // the three stages spread over the cores as their costs vary.
        let Decoder { tx, spent } = self;
        let err_tx = tx.clone();
        let (htx, hrx) = sync_channel::<Vec<u8>>(DEPTH);
        let (hasher, delivered, failed) = std::thread::scope(|s| {
            let hashing = s.spawn(move || {
                let mut hasher = Hasher::default();
                for chunk in hrx {
                    hasher.update(&chunk);
                    if tx.send(Ok(chunk)).is_err() {
                        return (hasher, false);
                    }
                }
                (hasher, true)
            });
            let mut failed = None;
            loop {
                let mut chunk = spent.try_recv().unwrap_or_default();
                // Zeroes only what a previous short fill left out.
                chunk.resize(CHUNK, 0);
                let mut filled = 0;
                while filled < CHUNK {
                    match stream.read(&mut chunk[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if failed.is_some() || filled == 0 {
                    break;
                }
                chunk.truncate(filled);
                if htx.send(chunk).is_err() {
                    break;
                }
            }
            drop(htx);
            let (hasher, delivered) = hashing
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (hasher, delivered, failed)
        });
        if let Some(e) = failed {
            // After every good chunk, so the applier sees the data first.
            let _ = err_tx.send(Err(io::Error::new(
                e.kind(),
                format!("layer {digest}: {e}"),
            )));
            return Err(read_err(e));
        }
        if !delivered {
            // The applier stopped; its error is the one to report.
            return Ok(false);
        }
        let actual = hasher.finish();
        if actual != layer.diff_id {
            let err = Error::DigestMismatch {
                what: "layer diff_id",
                expected: layer.diff_id.to_string(),
                actual: actual.to_string(),
            };
            return Err(err);
        }
        Ok(true)
    }
}

/// Hashes the uncompressed stream of a stored layer blob.
pub(crate) fn diff_id_of(store: &Store, digest: &Digest, media_type: &str) -> Result<Digest> {
    let compression =
        Compression::from_media_type(media_type).ok_or_else(|| Error::UnsupportedMediaType {
            digest: digest.to_string(),
            media_type: media_type.to_string(),
        })?;
    let path = store.blob_path(digest);
    let read_err = |source| Error::ReadLayer {
        layer: digest.to_string(),
        source,
    };
    let file = File::open(&path).map_err(read_err)?;
    let mut stream = decompress(file, compression).map_err(read_err)?;
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err(e)),
        }
    }
    Ok(hasher.finish())
}
