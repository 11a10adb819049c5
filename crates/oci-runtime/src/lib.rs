//! Run OCI runtime-spec bundles.
//!
//! This crate turns an OCI bundle (a `config.json` and a root filesystem) into a
//! running, supervised process: namespaces, rootfs and mounts, process setup and
//! the create / start / state / kill / delete lifecycle that runc's users know.
//! It knows nothing of images or of the CRI; embedders such as a CRI server or a
//! runc-compatible command line compose it with the other crates of this workspace.
#![deny(missing_docs)]
