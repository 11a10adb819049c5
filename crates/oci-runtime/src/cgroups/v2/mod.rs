//! cgroup v2: one hierarchy; controllers enabled from the top down to the
//! container's parent; one file per controller here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::{read, write};
use crate::error::{Error, Result, invalid};

mod cpu;
pub(super) mod freezer;

/// runc's conversions between v1 and v2 values.
#[cfg(test)]
pub(crate) mod conv {
    pub(crate) use super::cpu::shares_to_weight;
    pub(crate) use super::io::blkio_to_io_weight;
    pub(crate) use super::memory::swap_value;
}
mod hugetlb;
mod io;
mod memory;

/// Creates `dir` under `mount` and enables controllers in `cgroup.subtree_control`
/// of every level above it. On a unified host: every controller the top offers,
/// as runc does. On a hybrid host the v1 hierarchies hold the limits, so only
/// what only cgroup2 has there, and only when a limit asks for it: hugetlb.
pub(super) fn create(
    mount: &Path,
    dir: &Path,
    r: Option<&LinuxResources>,
    unified: bool,
    v1_has_hugetlb: bool,
) -> Result<()> {
    let rel = dir.strip_prefix(mount).map_err(|_| {
        invalid(
            "linux.cgroupsPath",
            format!("{} is outside {}", dir.display(), mount.display()),
        )
    })?;
    let wants_hugetlb = r
        .and_then(|r| r.hugepage_limits().as_ref())
        .is_some_and(|h| !h.is_empty());
    let enable: Vec<String> = if unified {
        read(&mount.join("cgroup.controllers"))?
            .split_whitespace()
            .map(str::to_string)
            .collect()
    } else if wants_hugetlb && !v1_has_hugetlb {
        vec!["hugetlb".to_string()]
    } else {
        Vec::new()
    };
    let mut level = mount.to_path_buf();
    for part in rel.components() {
        enable_in(&level, &enable)?;
        level.push(part);
        match std::fs::create_dir(&level) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(Error::Io {
                    operation: "creating cgroup",
                    path: level,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Enables in `dir`'s `cgroup.subtree_control` those of `wanted` it offers and
/// has not yet enabled.
fn enable_in(dir: &Path, wanted: &[String]) -> Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    let offered = read(&dir.join("cgroup.controllers"))?;
    let enabled = read(&dir.join("cgroup.subtree_control"))?;
    let todo: Vec<String> = wanted
        .iter()
        .filter(|c| offered.split_whitespace().any(|o| o == *c))
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    write(&dir.join("cgroup.subtree_control"), &todo.join(" "))
}

/// The controllers enabled for `dir` (its parent's `subtree_control`).
fn enabled(dir: &Path) -> Vec<String> {
    dir.join("cgroup.controllers")
        .exists()
        .then(|| read(&dir.join("cgroup.controllers")).ok())
        .flatten()
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A limit for a controller not enabled here is an error naming it.
fn need(dir: &Path, controller: &'static str) -> Result<()> {
    if enabled(dir).iter().any(|c| c == controller) {
        Ok(())
    } else {
        Err(Error::CgroupUnsupported {
            controller,
            reason: "not available in this cgroup2 hierarchy, but the config sets a limit for it",
        })
    }
}

/// Writes every limit of `r` into the container's cgroup2 directory.
pub(super) fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
    if let Some(c) = r.cpu() {
        if cpu::is_set(c) {
            need(dir, "cpu")?;
            cpu::apply(dir, c)?;
        }
        if cpu::cpuset_is_set(c) {
            need(dir, "cpuset")?;
            cpu::apply_cpuset(dir, c)?;
        }
    }
    if let Some(m) = r.memory()
        && memory::is_set(m)
    {
        need(dir, "memory")?;
        memory::apply(dir, m)?;
    }
    if let Some(p) = r.pids() {
        need(dir, "pids")?;
        write(
            &dir.join("pids.max"),
            &if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".to_string()
            },
        )?;
    }
    if let Some(b) = r.block_io()
        && io::is_set(b)
    {
        need(dir, "io")?;
        io::apply(dir, b)?;
    }
    if let Some(h) = r.hugepage_limits().as_deref().filter(|h| !h.is_empty()) {
        need(dir, "hugetlb")?;
        hugetlb::apply(dir, h)?;
    }
    if r.network().is_some() {
        return Err(Error::CgroupUnsupported {
            controller: "net_cls",
            reason: "linux.resources.network needs cgroup v1's net_cls/net_prio",
        });
    }
    if let Some(d) = r.devices().as_deref() {
        // cgroup2 has no devices files: an eBPF program attached to the cgroup
        // decides each open and mknod.
        let fd = rustix::fs::open(
            dir,
            rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| Error::Io {
            operation: "opening cgroup",
            path: dir.to_path_buf(),
            source: e.into(),
        })?;
        super::devices::apply_v2(std::os::fd::AsFd::as_fd(&fd), d)?;
    }
    unified(dir, r)?;
    Ok(())
}

/// On a hybrid host, what the v1 hierarchies cannot take: hugetlb when no v1
/// hugetlb hierarchy is mounted, and `unified` key/values.
pub(super) fn apply_hybrid_rest(
    dir: &Path,
    v1: &BTreeMap<String, PathBuf>,
    r: &LinuxResources,
) -> Result<()> {
    if let Some(h) = r.hugepage_limits().as_deref().filter(|h| !h.is_empty())
        && !v1.contains_key("hugetlb")
    {
        need(dir, "hugetlb")?;
        hugetlb::apply(dir, h)?;
    }
    unified(dir, r)
}

/// `linux.resources.unified`: each key a file of the container's cgroup.
fn unified(dir: &Path, r: &LinuxResources) -> Result<()> {
    let Some(map) = r.unified() else {
        return Ok(());
    };
    let mut keys: Vec<_> = map.iter().collect();
    keys.sort();
    for (k, v) in keys {
        let field = format!("linux.resources.unified.{k}");
        let path = super::file(dir, k)
            .filter(|_| k.contains('.') && !k.starts_with("cgroup."))
            .ok_or_else(|| invalid(&field, "not a controller file name"))?;
        if !path.exists() {
            return Err(invalid(
                field,
                format!("{} does not exist in this cgroup", path.display()),
            ));
        }
        write(&path, v)?;
    }
    Ok(())
}

/// Formats a v2 limit: -1 is `max`, 0 is "not set" (`None`).
pub(super) fn limit_str(v: i64) -> Option<String> {
    match v {
        0 => None,
        -1 => Some("max".to_string()),
        v => Some(v.to_string()),
    }
}
