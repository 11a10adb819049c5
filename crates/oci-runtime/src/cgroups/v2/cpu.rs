//! v2 `cpu` and `cpuset`: weight (converted from shares), max, burst, idle; cpus and mems.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use super::super::write;
use crate::error::{Error, Result};

pub(super) fn is_set(c: &LinuxCpu) -> bool {
    c.shares().is_some_and(|s| s != 0)
        || c.quota().is_some_and(|q| q != 0)
        || c.period().is_some_and(|p| p != 0)
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_runtime().is_some_and(|r| r != 0)
        || c.realtime_period().is_some_and(|p| p != 0)
}

pub(super) fn cpuset_is_set(c: &LinuxCpu) -> bool {
    c.cpus().as_deref().is_some_and(|s| !s.is_empty())
        || c.mems().as_deref().is_some_and(|s| !s.is_empty())
}

/// runc's conversion of v1 shares (2..=262144, default 1024) to a v2 weight
/// (1..=10000, default 100): a quadratic in log2(shares) that maps the minimum,
/// the default and the maximum onto each other.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    10f64.powf(exponent).ceil() as u64
}

pub(super) fn apply(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if c.realtime_runtime().is_some_and(|r| r != 0) || c.realtime_period().is_some_and(|p| p != 0) {
        return Err(Error::CgroupUnsupported {
            controller: "cpu",
            reason: "realtime runtime and period exist only in cgroup v1",
        });
    }
    if let Some(i) = c.idle() {
        write(&dir.join("cpu.idle"), &i.to_string())?;
    }
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        write(&dir.join("cpu.weight"), &shares_to_weight(s).to_string())?;
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    // A burst larger than the old quota allows is refused until the quota is set.
    let mut burst_later = None;
    if let Some(b) = c.burst() {
        match write(&dir.join("cpu.max.burst"), &b.to_string()) {
            Err(Error::CgroupWrite { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && quota != 0 =>
            {
                burst_later = Some(b)
            }
            r => r?,
        }
    }
    if quota != 0 || period != 0 {
        let q = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_string()
        };
        let p = if period != 0 { period } else { 100_000 };
        write(&dir.join("cpu.max"), &format!("{q} {p}"))?;
    }
    if let Some(b) = burst_later {
        write(&dir.join("cpu.max.burst"), &b.to_string())?;
    }
    Ok(())
}

pub(super) fn apply_cpuset(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        write(&dir.join("cpuset.cpus"), cpus)?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        write(&dir.join("cpuset.mems"), mems)?;
    }
    Ok(())
}
