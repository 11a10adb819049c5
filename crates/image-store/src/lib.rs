//! A content-addressed OCI image store.
//!
//! The store's root is a valid OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/...`), so skopeo and umoci can read it. On top of that it keeps
//! snapshots (unpacked layers keyed by chain id) and the metadata that garbage
//! collection needs. It knows nothing of containers or of the CRI.
//!
//! The layer applier is usable on its own:
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
mod store;

pub use apply::{
    ApplyOptions, ApplyStats, Compression, PendingLink, WhiteoutMode, apply, decompress,
};
pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::normalize_name;
pub use store::{
    Descriptor, GcStats, Image, ImportOptions, Imported, Layer, Lease, NoProgress, Platform,
    Progress, REF_NAME, Store,
};
