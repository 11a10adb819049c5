//! cgroup v1: one hierarchy per controller, one file per controller here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::{read, write};
use crate::error::{Error, Result};

mod blkio;
mod cpu;
mod cpuset;
pub(super) mod freezer;
mod hugetlb;
mod memory;
mod net;
mod pids;

/// Creates `dir` and its missing parents. A new cpuset cgroup starts with no
/// cpus and no memory nodes, and no process can join it like that: each new
/// level gets its parent's.
pub(super) fn create(name: &str, dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for m in missing.iter().rev() {
        match std::fs::create_dir(m) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(Error::Io {
                    operation: "creating cgroup",
                    path: m.clone(),
                    source,
                });
            }
        }
        if name == "cpuset" {
            cpuset::inherit(m)?;
        }
    }
    Ok(())
}

/// The directory of a controller a limit needs, or an error naming it.
fn need<'a>(dirs: &'a BTreeMap<String, PathBuf>, name: &'static str) -> Result<&'a Path> {
    dirs.get(name)
        .map(PathBuf::as_path)
        .ok_or(Error::CgroupUnsupported {
            controller: name,
            reason: "not mounted on this host, but the config sets a limit for it",
        })
}

/// Writes every limit of `r` into the v1 controllers' directories.
pub(super) fn apply(dirs: &BTreeMap<String, PathBuf>, r: &LinuxResources) -> Result<()> {
    if let Some(c) = r.cpu() {
        if cpu::is_set(c) {
            cpu::apply(need(dirs, "cpu")?, c)?;
        }
        if cpuset::is_set(c) {
            cpuset::apply(need(dirs, "cpuset")?, c)?;
        }
    }
    if let Some(m) = r.memory()
        && memory::is_set(m)
    {
        memory::apply(need(dirs, "memory")?, m)?;
    }
    if let Some(p) = r.pids() {
        pids::apply(need(dirs, "pids")?, p)?;
    }
    if let Some(b) = r.block_io()
        && blkio::is_set(b)
    {
        blkio::apply(need(dirs, "blkio")?, b)?;
    }
    if let Some(h) = r.hugepage_limits().as_deref().filter(|h| !h.is_empty())
        && let Some(dir) = dirs.get("hugetlb")
    {
        hugetlb::apply(dir, h)?;
    }
    if let Some(n) = r.network() {
        net::apply(dirs, n)?;
    }
    if let Some(d) = r.devices().as_deref() {
        super::devices::apply_v1(need(dirs, "devices")?, d)?;
    }
    Ok(())
}

/// Reads a number from a v1 file.
pub(super) fn read_u64(path: &Path) -> Result<u64> {
    let s = read(path)?;
    s.parse().map_err(|_| Error::Io {
        operation: "parsing",
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{s:?}")),
    })
}

/// Writes `value` into `dir/name`.
pub(super) fn set(dir: &Path, name: &str, value: impl ToString) -> Result<()> {
    write(&dir.join(name), &value.to_string())
}
