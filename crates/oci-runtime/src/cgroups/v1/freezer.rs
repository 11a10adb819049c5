//! v1 `freezer`: pause and resume, waiting until the kernel reports the state.

use std::path::Path;

use super::super::{read, write};
use crate::error::{Error, Result};

/// Freezes or thaws; returns once `freezer.state` says so. A freeze can stall
/// in FREEZING when a task is busy in the kernel: it is asked again (bounded).
pub(crate) fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    let state = dir.join("freezer.state");
    let want = if frozen { "FROZEN" } else { "THAWED" };
    for attempt in 0..1000 {
        if attempt % 50 == 0 {
            write(&state, want)?;
        }
        if read(&state)? == want {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = write(&state, "THAWED");
    Err(Error::Io {
        operation: "waiting for the freezer",
        path: state,
        source: std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
    })
}

/// Whether the cgroup is frozen.
pub(crate) fn frozen(dir: &Path) -> Result<bool> {
    Ok(read(&dir.join("freezer.state"))? == "FROZEN")
}
