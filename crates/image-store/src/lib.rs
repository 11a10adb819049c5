//! A content-addressed OCI image store.
//!
//! The store's root is a valid OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/...`), so skopeo and umoci can read it. On top of that it keeps
//! snapshots (unpacked layers keyed by chain id), leases and locks beside the
//! layout. It knows nothing of containers or of the CRI.
//!
//! ```no_run
//! use image_store::{ImportOptions, NoProgress, Store};
//!
//! let store = Store::open("/var/lib/mini-runtime/images")?;
//! // An OCI layout dir, an oci-archive or a docker-save tarball.
//! for image in store.import("busybox.tar".as_ref(), &ImportOptions::default(), &NoProgress)? {
//!     println!("{} {}", image.name, image.manifest.digest_str);
//! }
//! // A flattened rootfs, every layer checked against its diff_id...
//! store.unpack("busybox", "/tmp/rootfs".as_ref(), &NoProgress)?;
//! // ...or an overlayfs rootfs over shared per-layer snapshots.
//! let mnt = store.mount("busybox", "/tmp/mnt".as_ref(), &NoProgress)?;
//! store.umount(&mnt)?;
//! store.remove("busybox")?;
//! store.gc()?;
//! # Ok::<(), image_store::Error>(())
//! ```
//!
//! Guarantees: every blob is verified by size and digest while it is
//! written and renamed into place only when it matches; an image becomes
//! visible in `index.json` only once all it references is present and its
//! layers match the config's diff_ids; digest strings are validated before
//! they are used as paths; processes share a store through `flock`
//! (imports concurrently, `gc` alone), and leases keep what mounted rootfs
//! use.
//!
//! The layer applier is usable on its own. Every entry is resolved inside
//! the target (`openat2` with `RESOLVE_IN_ROOT`), so a hostile layer can
//! neither create, overwrite, link, chmod nor delete anything outside it:
//!
//! ```no_run
//! use image_store::{apply, ApplyOptions};
//!
//! let layer = std::fs::File::open("layer.tar.gz")?;
//! let stats = apply("/tmp/rootfs".as_ref(), layer, &ApplyOptions::default())?;
//! println!("{} entries", stats.entries);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod apply;
mod digest;
mod error;
mod reference;
pub mod registry;
mod store;

pub use apply::{
    ApplyOptions, ApplyStats, Compression, PendingLink, WhiteoutMode, apply, decompress,
};
pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::{Reference, normalize_name};
pub use store::{
    Descriptor, GcStats, Image, ImportOptions, Imported, Layer, LayerEvent, Lease, NoProgress,
    Platform, Progress, PullOptions, Pulled, REF_NAME, Store,
};

/// Entry points for the fuzz targets (`fuzz/`), built only by cargo-fuzz.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// Parses a `WWW-Authenticate` header; what it found, as text.
    pub fn challenge(header: &str) -> Option<String> {
        crate::registry::auth::parse_challenge(header).map(|c| format!("{c:?}"))
    }

    /// What an error reply's body is told as.
    pub fn error_detail(body: &[u8]) -> String {
        crate::registry::error_detail(body)
    }

    /// Every error message must be printable text.
    pub fn printable(s: &str) -> String {
        crate::error::printable(s)
    }
}
