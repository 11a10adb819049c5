//! Writing blobs: hashed and sized while written, renamed into place only
//! when they match.

use std::fs::{self, File};
use std::io::{self, Read, Write};

use super::{Progress, Store, sync_parent};
use crate::digest::{Digest, Hasher, HashingWriter};
use crate::error::{Error, Result, io_err};

/// What a blob is expected to be; `None` for content whose digest is
/// learned by writing it (layers of a `docker save` tarball).
pub(crate) type Expected<'a> = Option<(&'a Digest, u64)>;

impl Store {
    /// Copies `reader` into the store as a blob, verifying size and digest
    /// as it is written. Returns its digest and size.
    pub(crate) fn write_blob(
        &self,
        reader: impl Read,
        expected: Expected<'_>,
        progress: &dyn Progress,
    ) -> Result<(Digest, u64)> {
        let tmp = self.temp_path("blob");
        let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        let mut w = HashingWriter {
            inner: file,
            hasher: Hasher::default(),
        };
        // One byte more than announced, to notice an oversized blob.
        let limit = expected.map_or(u64::MAX, |(_, size)| size.saturating_add(1));
        let res = copy(reader.take(limit), &mut w, progress);
        let finish = || -> Result<(Digest, u64)> {
            res.map_err(io_err("write blob", &tmp))?;
            let size = w.hasher.len();
            let digest = w.hasher.clone().finish();
            if let Some((want, want_size)) = expected {
                if size != want_size {
                    return Err(Error::SizeMismatch {
                        digest: want.to_string(),
                        expected: want_size,
                        actual: size,
                    });
                }
                if &digest != want {
                    return Err(Error::DigestMismatch {
                        what: "blob",
                        expected: want.to_string(),
                        actual: digest.to_string(),
                    });
                }
            }
            w.inner.sync_all().map_err(io_err("fsync", &tmp))?;
            let dest = self.blob_path(&digest);
            fs::rename(&tmp, &dest).map_err(io_err("rename blob into place", &dest))?;
            sync_parent(&dest)?;
            Ok((digest, size))
        };
        let out = finish();
        if out.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        out
    }
}

fn copy(mut r: impl Read, w: &mut impl Write, progress: &dyn Progress) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        progress.advance(n as u64);
    }
}
