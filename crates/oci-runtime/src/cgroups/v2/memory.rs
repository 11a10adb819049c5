//! v2 `memory`: max, low (from the reservation), swap.max (memory+swap minus memory).

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use super::super::write;
use super::limit_str;
use crate::error::{Error, Result, invalid};

pub(super) fn is_set(m: &LinuxMemory) -> bool {
    m.limit().is_some_and(|v| v != 0)
        || m.reservation().is_some_and(|v| v != 0)
        || m.swap().is_some_and(|v| v != 0)
        || m.swappiness().is_some()
        || m.disable_oom_killer() == Some(true)
        || m.kernel().is_some_and(|v| v != 0)
        || m.kernel_tcp().is_some_and(|v| v != 0)
        || m.use_hierarchy() == Some(false)
}

/// runc's swap arithmetic: the spec's swap is memory+swap, v2's is swap alone.
pub(crate) fn swap_value(swap: i64, memory: i64) -> std::result::Result<i64, &'static str> {
    Ok(match (swap, memory) {
        (0, -1) => -1,
        (-1, _) | (0, _) => swap,
        (_, -1) => swap,
        (_, 0) => return Err("a swap limit needs a memory limit"),
        (_, m) if m < 0 => return Err("the memory limit is negative"),
        (s, m) if s < m => return Err("memory+swap is below the memory limit"),
        (s, m) => s - m,
    })
}

pub(super) fn apply(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let unsupported = |reason| Error::CgroupUnsupported {
        controller: "memory",
        reason,
    };
    if m.kernel().is_some_and(|v| v != 0) || m.kernel_tcp().is_some_and(|v| v != 0) {
        return Err(unsupported("kernel memory limits exist only in cgroup v1"));
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(unsupported("disableOOMKiller exists only in cgroup v1"));
    }
    if m.swappiness().is_some() {
        return Err(unsupported("swappiness exists only in cgroup v1"));
    }
    if m.use_hierarchy() == Some(false) {
        return Err(unsupported("cgroup v2 is always hierarchical"));
    }
    let limit = m.limit().unwrap_or(0);
    let swap = swap_value(m.swap().unwrap_or(0), limit)
        .map_err(|r| invalid("linux.resources.memory.swap", r))?;
    let swap_str = match limit_str(swap) {
        // memory == memory+swap: no swap at all.
        None if m.swap().is_some_and(|s| s > 0) => Some("0".to_string()),
        s => s,
    };
    if let Some(s) = swap_str {
        let path = dir.join("memory.swap.max");
        // Without swap accounting there is nothing to limit: "max" or "0" are no-ops.
        if path.exists() || (s != "max" && s != "0") {
            write(&path, &s)?;
        }
    }
    if let Some(v) = limit_str(limit) {
        write(&dir.join("memory.max"), &v)?;
    }
    if let Some(v) = limit_str(m.reservation().unwrap_or(0)) {
        write(&dir.join("memory.low"), &v)?;
    }
    Ok(())
}
