//! A content-addressed OCI image store.
//!
//! The store's root is a valid OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/...`), so skopeo and umoci can read it. On top of that it keeps
//! snapshots (unpacked layers keyed by chain id) and the metadata that garbage
//! collection needs. It knows nothing of containers or of the CRI.
#![deny(missing_docs)]
