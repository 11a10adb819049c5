//! v1 `cpuset`: cpus and memory nodes.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use super::super::read;
use super::set;
use crate::error::Result;

pub(super) fn is_set(c: &LinuxCpu) -> bool {
    c.cpus().as_deref().is_some_and(|s| !s.is_empty())
        || c.mems().as_deref().is_some_and(|s| !s.is_empty())
}

pub(super) fn apply(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        set(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        set(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

/// Gives a new cpuset cgroup its parent's cpus and memory nodes where it has none.
pub(super) fn inherit(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for name in ["cpuset.cpus", "cpuset.mems"] {
        let mine = dir.join(name);
        if !mine.exists() || !read(&mine)?.is_empty() {
            continue;
        }
        set(dir, name, read(&parent.join(name))?)?;
    }
    Ok(())
}
