//! Run OCI runtime-spec bundles.
//!
//! This crate turns an OCI bundle (a `config.json` and a root filesystem) into a
//! running, supervised process: namespaces, rootfs and mounts, process setup and
//! the create / start / state / kill / delete lifecycle that runc's users know.
//! It knows nothing of images or of the CRI; embedders such as a CRI server or a
//! runc-compatible command line compose it with the other crates of this workspace.
//!
//! Spawning is safe from a multi-threaded process: the parent prepares an *init
//! plan* (every path, string, flag and mask), clones, and the child carries it out
//! with raw system calls only, reporting a failed step over a pipe.
//!
//! A program that execs into containers, or creates them in a pid namespace
//! others already live in, first calls [`protect_exe`]: until it execs the
//! payload, each such process is a copy of the runtime, which must not be a
//! binary the container could overwrite (CVE-2019-5736).
//!
//! ```no_run
//! use oci_runtime::{CreateOptions, Runtime};
//!
//! let rt = Runtime::new("/run/mini-runtime");
//! let pid = rt.create("web", "/srv/bundles/web".as_ref(), &CreateOptions::default())?;
//! rt.start("web")?;
//! println!("{} runs as pid {pid}", rt.state("web")?.state.id());
//! let code = rt.wait("web")?;
//! rt.delete("web", false)?;
//! # let _ = code;
//! # Ok::<(), oci_runtime::Error>(())
//! ```
#![deny(missing_docs)]

pub mod apparmor;
pub mod cdi;
pub mod cgroups;
mod child;
mod config;
mod console;
mod container;
mod error;
mod exe;
mod hooks;
mod image_spec;
pub mod monitor;
mod plan;
mod procfs;
pub mod pty;
mod seccomp;
mod spawn;
mod state;
// System calls: the parent's side goes through nix, and through rustix where
// nix has no wrapper (pidfds, statx, the new mount API, memfd seals, realtime
// signals). Raw libc only in `child/` and `sys.rs`, since between clone and
// exec nothing that allocates or locks is safe, and for clone3 in `spawn.rs`,
// which neither crate wraps.
mod sys;
pub mod timeline;

pub use config::{Bundle, parse_spec, validate, validate_id, validate_process, validate_resources};
pub use console::receive_pty_master;
pub use container::{
    Container, ContainerInfo, CreateOptions, ExecOptions, ExecProcess, OCI_VERSION, Runtime,
    Source, Stdio, Stream, wait_pid,
};
pub use error::{Error, Result};
pub use exe::{ExeProtection, exe_protection, needs_protected_exe, protect_exe};
pub use image_spec::{Convention, DEFAULT_PATH, ImageOverrides, ImageProcess};
pub use plan::{cap_number_by_name, known_capabilities};
pub use procfs::parse_signal;
pub use seccomp::default_seccomp;

/// Entry points for the fuzz targets (`fuzz/`), built only by cargo-fuzz.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;

    /// Builds the init plan of a validated bundle, as `create` does.
    pub fn plan(bundle: &crate::Bundle) -> crate::Result<()> {
        crate::plan::build(bundle, &Default::default(), Path::new("/proc")).map(drop)
    }
}
