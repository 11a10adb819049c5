//! v2 `cgroup.freeze`: pause and resume, waiting until `cgroup.events` reports it.

use std::path::Path;

use super::super::{read, write};
use crate::error::{Error, Result};

/// Freezes or thaws; returns once `cgroup.events` says `frozen 1` (or `0`).
pub(crate) fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
    for _ in 0..5000 {
        if is_frozen(dir)? == frozen {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(Error::Io {
        operation: "waiting for cgroup.freeze",
        path: dir.join("cgroup.events"),
        source: std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
    })
}

fn is_frozen(dir: &Path) -> Result<bool> {
    Ok(read(&dir.join("cgroup.events"))?
        .lines()
        .any(|l| l.trim() == "frozen 1"))
}

/// Whether the cgroup is frozen.
pub(crate) fn frozen(dir: &Path) -> Result<bool> {
    let path = dir.join("cgroup.freeze");
    Ok(path.exists() && read(&path)? == "1")
}
