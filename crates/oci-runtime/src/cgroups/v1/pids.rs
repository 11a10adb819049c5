//! v1 `pids`: the process count limit.

use std::path::Path;

use oci_spec::runtime::LinuxPids;

use super::set;
use crate::error::Result;

pub(super) fn apply(dir: &Path, p: &LinuxPids) -> Result<()> {
    // 0 or less means no limit, as runc reads it.
    if p.limit() > 0 {
        set(dir, "pids.max", p.limit())
    } else {
        set(dir, "pids.max", "max")
    }
}
