//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the image store and the layer applier.
///
/// Each variant names the operation that failed and the path, layer entry,
/// digest or image name it failed on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation on a store or target path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Applying one entry of a layer failed.
    #[error("layer entry {}: {op}: {source}", printable(entry))]
    Entry {
        /// The entry's path as written in the layer.
        entry: String,
        /// What was being done with it.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A layer entry is malformed or not allowed.
    #[error("layer entry {}: {reason}", printable(entry))]
    BadEntry {
        /// The entry's path as written in the layer.
        entry: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Reading a layer's tar stream failed (truncated or corrupt data).
    #[error("reading layer {layer}: {}", tar_message(source))]
    ReadLayer {
        /// The layer's digest, or `stream` for a bare reader.
        layer: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A string is not a valid `algorithm:hex` digest this store supports.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The string as given.
        digest: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Content did not hash to the digest it was announced with.
    #[error("{what} {expected}: content hashes to {actual}")]
    DigestMismatch {
        /// `blob` or `layer diff_id`.
        what: &'static str,
        /// The announced digest.
        expected: String,
        /// The digest the content actually has.
        actual: String,
    },
    /// Content did not have the size it was announced with.
    #[error("blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob's digest.
        digest: String,
        /// The announced size.
        expected: u64,
        /// The size actually read.
        actual: u64,
    },
    /// A blob an image needs is not in the source or the store.
    #[error("blob {digest} is missing from {source_name}")]
    MissingBlob {
        /// The blob's digest.
        digest: String,
        /// Where it was looked for.
        source_name: String,
    },
    /// A JSON document (manifest, index, config, store metadata) did not parse.
    #[error("parsing {what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// An image source or manifest is not something the store can import.
    #[error("{what}: {reason}")]
    InvalidImage {
        /// The source path or digest.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A media type the store does not handle.
    #[error("{digest}: unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// The descriptor's digest.
        digest: String,
        /// The media type.
        media_type: String,
    },
    /// An image index lists no manifest for the requested platform.
    #[error("{what}: no manifest for platform {platform} (it has: {available})")]
    NoMatchingPlatform {
        /// The index's digest or source.
        what: String,
        /// The wanted `os/arch[/variant]`.
        platform: String,
        /// The platforms the index lists, comma-separated.
        available: String,
    },
    /// A config file (registry hosts, credentials) is malformed.
    #[error("{path}{}: {reason}", span.map(|(l, c)| format!(" line {l} column {c}")).unwrap_or_default())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// Line and column, when known.
        span: Option<(usize, usize)>,
    },
    /// A registry request failed: the registry's status and error, or the
    /// connection's.
    #[error("{registry}: {what}: {}", printable(reason))]
    Registry {
        /// The registry (or mirror) host.
        registry: String,
        /// What was being fetched.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// The operation was cancelled by its caller.
    #[error("{what}: cancelled")]
    Cancelled {
        /// What was cancelled.
        what: String,
    },
    /// An image reference does not parse.
    #[error("invalid image name {name:?}: {reason}")]
    InvalidReference {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No image of that name is in the store.
    #[error("image {name} not found")]
    ImageNotFound {
        /// The normalized name.
        name: String,
    },
    /// A target directory must be absent or empty and is not.
    #[error("{path} is not empty")]
    TargetNotEmpty {
        /// The target directory.
        path: PathBuf,
    },
    /// Mounting or unmounting a rootfs failed.
    #[error("{op} {path}: {source}")]
    Mount {
        /// `mount overlay` or `unmount`.
        op: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No rootfs of this store is mounted there.
    #[error("{path} is not a rootfs mounted from this store")]
    NotMounted {
        /// The directory given.
        path: PathBuf,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for building [`Error::Io`] in `map_err`.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}

/// `s` as text a terminal shows as it is: control characters, and the
/// replacement characters lossy decoding left for bytes that were not
/// UTF-8, escaped; at most 512 characters.
pub(crate) fn printable(s: &str) -> String {
    const MAX: usize = 512;
    let mut out = String::with_capacity(s.len().min(MAX + 3));
    for (n, c) in s.chars().enumerate() {
        if n == MAX {
            out.push_str("...");
            break;
        }
        match c {
            '\u{fffd}' => out.push_str("\\u{fffd}"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// A tar reader's error as a person can read it. The tar crate puts a
/// header's raw bytes in what it says of a field that is not a number;
/// that is the first sign of data that is no tar at all.
fn tar_message(e: &io::Error) -> String {
    let s = e.to_string();
    for prefix in [
        "numeric field did not have utf-8 text: ",
        "numeric field was not a number: ",
    ] {
        if let Some(rest) = s.strip_prefix(prefix) {
            let field = rest
                .split_once(" when getting ")
                .and_then(|(_, f)| f.split(' ').next())
                .unwrap_or("a numeric");
            return format!(
                "a tar header's {field} field is not an octal number: \
                 not a tar archive (plain, gzip or zstd), or a corrupt one"
            );
        }
    }
    if s == "archive header checksum mismatch" {
        return "a tar header's checksum does not match it: \
                not a tar archive (plain, gzip or zstd), or a corrupt one"
            .to_string();
    }
    printable(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_garbage_is_told_without_its_bytes() {
        let raw = io::Error::other(
            "numeric field did not have utf-8 text: \u{fffd}\u{1b}[31m when getting cksum for \u{fffd}x",
        );
        let e = Error::ReadLayer {
            layer: "/tmp/f".into(),
            source: raw,
        };
        assert_eq!(
            e.to_string(),
            "reading layer /tmp/f: a tar header's cksum field is not an octal number: \
             not a tar archive (plain, gzip or zstd), or a corrupt one"
        );
        let e = Error::BadEntry {
            entry: "a\u{1b}[2Jb\u{fffd}".into(),
            reason: "no",
        };
        assert_eq!(e.to_string(), "layer entry a\\u{1b}[2Jb\\u{fffd}: no");
        assert_eq!(printable(&"x".repeat(600)).len(), 515);
    }
}
