//! v1 `cpu`: shares, CFS quota/period/burst, realtime runtime/period, idle.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use super::set;
use crate::error::{Error, Result};

pub(super) fn is_set(c: &LinuxCpu) -> bool {
    c.shares().is_some()
        || c.quota().is_some()
        || c.period().is_some()
        || c.burst().is_some()
        || c.realtime_runtime().is_some()
        || c.realtime_period().is_some()
        || c.idle().is_some()
}

pub(super) fn apply(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        set(dir, "cpu.shares", s)?;
    }
    match (
        c.period().filter(|p| *p != 0),
        c.quota().filter(|q| *q != 0),
    ) {
        (Some(p), Some(q)) => {
            // The kernel checks each value against the other's current one: a
            // period the old quota does not fit is refused until the quota moves.
            if let Err(Error::CgroupWrite { .. }) = set(dir, "cpu.cfs_period_us", p) {
                set(dir, "cpu.cfs_quota_us", q)?;
                set(dir, "cpu.cfs_period_us", p)?;
            } else {
                set(dir, "cpu.cfs_quota_us", q)?;
            }
        }
        (Some(p), None) => set(dir, "cpu.cfs_period_us", p)?,
        (None, Some(q)) => set(dir, "cpu.cfs_quota_us", q)?,
        (None, None) => {}
    }
    if let Some(b) = c.burst() {
        set(dir, "cpu.cfs_burst_us", b)?;
    }
    // Period before runtime, so a runtime longer than the old period fits.
    if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
        set(dir, "cpu.rt_period_us", p)?;
    }
    if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
        set(dir, "cpu.rt_runtime_us", r)?;
    }
    if let Some(i) = c.idle() {
        set(dir, "cpu.idle", i)?;
    }
    Ok(())
}
