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
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    })
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
