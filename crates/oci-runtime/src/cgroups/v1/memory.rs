//! v1 `memory`: limit, reservation, memory+swap, kernel TCP, swappiness, the
//! OOM killer and hierarchy.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use super::{read_u64, set};
use crate::error::{Error, Result};

const LIMIT: &str = "memory.limit_in_bytes";
const SWAP: &str = "memory.memsw.limit_in_bytes";

pub(super) fn is_set(m: &LinuxMemory) -> bool {
    m.limit().is_some()
        || m.reservation().is_some()
        || m.swap().is_some()
        || m.kernel().is_some()
        || m.kernel_tcp().is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer().is_some()
        || m.use_hierarchy().is_some()
}

pub(super) fn apply(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    // Unlimited memory with no swap given means unlimited swap too.
    if limit == -1 && swap == 0 && dir.join(SWAP).exists() {
        swap = -1;
    }
    if swap != 0 && !dir.join(SWAP).exists() {
        return Err(Error::CgroupUnsupported {
            controller: "memory",
            reason: "linux.resources.memory.swap is set but this kernel accounts no swap \
                     (memory.memsw.limit_in_bytes is missing)",
        });
    }
    // memsw must stay >= limit at every step: raise memsw first when growing.
    let swap_first = limit != 0
        && swap != 0
        && (swap == -1 || read_u64(&dir.join(LIMIT)).is_ok_and(|cur| (cur as i128) < swap as i128));
    if swap_first {
        set(dir, SWAP, swap)?;
        set_limit(dir, limit)?;
    } else {
        set_limit(dir, limit)?;
        if swap != 0 {
            set(dir, SWAP, swap)?;
        }
    }
    if let Some(r) = m.reservation().filter(|r| *r != 0) {
        set(dir, "memory.soft_limit_in_bytes", r)?;
    }
    if let Some(k) = m.kernel().filter(|k| *k != 0) {
        set(dir, "memory.kmem.limit_in_bytes", k)?;
    }
    if let Some(k) = m.kernel_tcp().filter(|k| *k != 0) {
        set(dir, "memory.kmem.tcp.limit_in_bytes", k)?;
    }
    if let Some(s) = m.swappiness() {
        set(dir, "memory.swappiness", s)?;
    }
    if m.disable_oom_killer() == Some(true) {
        set(dir, "memory.oom_control", 1)?;
    }
    if let Some(h) = m.use_hierarchy() {
        set(dir, "memory.use_hierarchy", u8::from(h))?;
    }
    Ok(())
}

fn set_limit(dir: &Path, limit: i64) -> Result<()> {
    if limit == 0 {
        return Ok(());
    }
    match set(dir, LIMIT, limit) {
        Err(Error::CgroupWrite { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
            // The kernel could not reclaim down to the new limit.
            let usage = read_u64(&dir.join("memory.usage_in_bytes")).unwrap_or(0);
            Err(Error::CgroupWrite {
                path: dir.join(LIMIT),
                value: limit.to_string(),
                source: std::io::Error::other(format!("below the current usage of {usage} bytes")),
            })
        }
        r => r,
    }
}
