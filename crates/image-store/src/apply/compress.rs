//! Layer compression: detection by media type or magic bytes, and decoders.

use std::io::{self, BufRead, BufReader, Read};

/// How a layer stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Look at the first bytes of the stream.
    #[default]
    Auto,
    /// A plain tar stream.
    None,
    /// gzip (`tar+gzip`).
    Gzip,
    /// zstd (`tar+zstd`).
    Zstd,
}

impl Compression {
    /// The compression a layer media type announces, or `None` if the media
    /// type is not a layer type this crate applies.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        let m = media_type.strip_suffix("+encrypted").unwrap_or(media_type);
        match m {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Self::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Self::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Self::Zstd),
            _ => Option::None,
        }
    }
}

/// Size of the buffer in front of a decoder: large reads keep the
/// decompressor in its fast loop.
const READ_BUF: usize = 256 * 1024;

/// Wraps `reader` so that reading it yields the uncompressed tar stream.
pub fn decompress<'a, R: Read + 'a>(
    reader: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(READ_BUF, reader);
    let compression = match compression {
        Compression::Auto => sniff(buffered.fill_buf()?),
        c => c,
    };
    Ok(match compression {
        Compression::Auto | Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(Gzip::new(buffered)?),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    })
}

/// gzip members read as raw deflate streams. The gzip CRC-32 is not
/// computed: every layer is checked against its sha256 diff_id, which
/// subsumes it, and skipping it saves a pass over the data. The length in
/// each member's trailer is still checked.
struct Gzip<R: BufRead> {
    inflate: Option<flate2::bufread::DeflateDecoder<R>>,
    member_len: u64,
}

impl<R: BufRead> Gzip<R> {
    fn new(mut r: R) -> io::Result<Self> {
        read_gzip_header(&mut r)?;
        Ok(Self {
            inflate: Some(flate2::bufread::DeflateDecoder::new(r)),
            member_len: 0,
        })
    }
}

impl<R: BufRead> Read for Gzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let Some(inflate) = self.inflate.as_mut() else {
                return Ok(0);
            };
            let n = inflate.read(buf)?;
            if n > 0 {
                self.member_len += n as u64;
                return Ok(n);
            }
            // End of this member: trailer, then maybe another member.
            let Some(inflate) = self.inflate.take() else {
                return Ok(0);
            };
            let mut r = inflate.into_inner();
            let mut trailer = [0u8; 8];
            r.read_exact(&mut trailer)?;
            let isize = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
            if u64::from(isize) != self.member_len & 0xffff_ffff {
                return Err(bad_gzip("length in trailer does not match the data"));
            }
            if r.fill_buf()?.is_empty() {
                return Ok(0);
            }
            read_gzip_header(&mut r)?;
            self.inflate = Some(flate2::bufread::DeflateDecoder::new(r));
            self.member_len = 0;
        }
    }
}

fn bad_gzip(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt gzip stream: {what}"),
    )
}

fn read_gzip_header(r: &mut impl BufRead) -> io::Result<()> {
    let mut h = [0u8; 10];
    r.read_exact(&mut h)?;
    if h[0] != 0x1f || h[1] != 0x8b || h[2] != 8 {
        return Err(bad_gzip("bad header"));
    }
    let flags = h[3];
    if flags & 0xe0 != 0 {
        return Err(bad_gzip("reserved header flags set"));
    }
    if flags & 0x04 != 0 {
        let mut len = [0u8; 2];
        r.read_exact(&mut len)?;
        io::copy(
            &mut r.take(u64::from(u16::from_le_bytes(len))),
            &mut io::sink(),
        )?;
    }
    for bit in [0x08, 0x10] {
        if flags & bit != 0 {
            // Zero-terminated file name or comment.
            let mut skipped = Vec::new();
            r.read_until(0, &mut skipped)?;
            if skipped.last() != Some(&0) {
                return Err(bad_gzip("truncated header"));
            }
        }
    }
    if flags & 0x02 != 0 {
        let mut crc = [0u8; 2];
        r.read_exact(&mut crc)?;
    }
    Ok(())
}

fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8], name: Option<&str>) -> Vec<u8> {
        let mut b = flate2::GzBuilder::new();
        if let Some(n) = name {
            b = b.filename(n).comment("c").extra(vec![1, 2, 3]);
        }
        let mut e = b.write(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decompress(data, Compression::Gzip)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn gzip_members_headers_and_trailers() {
        let mut two = gz(b"hello ", Some("f.tar"));
        two.extend(gz(b"world", None));
        assert_eq!(read_all(&two).unwrap(), b"hello world");
        let mut bad_len = gz(b"hello", None);
        let n = bad_len.len();
        bad_len[n - 4] ^= 1;
        assert!(read_all(&bad_len).is_err());
        let one = gz(&[7u8; 10_000], None);
        assert!(
            read_all(&one[..one.len() - 12]).is_err(),
            "truncated stream accepted"
        );
        assert!(read_all(b"\x1f\x8b\x09\0\0\0\0\0\0\0").is_err());
    }
}
