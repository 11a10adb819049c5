//! v2 `io`: weight (converted from blkio's) and max (from the throttles).

use std::path::Path;

use oci_spec::runtime::LinuxBlockIo;

use super::super::write;
use crate::error::{Error, Result};

pub(super) use super::super::block_io_is_set as is_set;

/// runc's conversion of a blkio weight (10..=1000) to an io weight (1..=10000).
pub(crate) fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
}

/// `io.bfq.weight` where BFQ is in use, else `io.weight`.
fn weight_file(dir: &Path) -> Result<&'static str> {
    if dir.join("io.bfq.weight").exists() {
        Ok("io.bfq.weight")
    } else if dir.join("io.weight").exists() {
        Ok("io.weight")
    } else {
        Err(Error::CgroupUnsupported {
            controller: "io",
            reason: "weights are set but this kernel has no io.weight (no device has a weight-based scheduler)",
        })
    }
}

pub(super) fn apply(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    if b.leaf_weight().is_some_and(|w| w != 0) {
        return Err(Error::CgroupUnsupported {
            controller: "io",
            reason: "leafWeight exists only in cgroup v1",
        });
    }
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        let f = weight_file(dir)?;
        // BFQ takes blkio's scale as it is; io.weight its own.
        let v = if f == "io.bfq.weight" {
            u64::from(w)
        } else {
            blkio_to_io_weight(w)
        };
        write(&dir.join(f), &v.to_string())?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let f = weight_file(dir)?;
            let v = if f == "io.bfq.weight" {
                u64::from(w)
            } else {
                blkio_to_io_weight(w)
            };
            write(&dir.join(f), &format!("{}:{} {v}", d.major(), d.minor()))?;
        }
    }
    let throttles = [
        (b.throttle_read_bps_device(), "rbps"),
        (b.throttle_write_bps_device(), "wbps"),
        (b.throttle_read_iops_device(), "riops"),
        (b.throttle_write_iops_device(), "wiops"),
    ];
    for (list, key) in throttles {
        for d in list.iter().flatten() {
            // A rate of 0 means no limit, as blkio's did.
            let rate = if d.rate() == 0 {
                "max".to_string()
            } else {
                d.rate().to_string()
            };
            write(
                &dir.join("io.max"),
                &format!("{}:{} {key}={rate}", d.major(), d.minor()),
            )?;
        }
    }
    Ok(())
}
