//! v1 `blkio`: weights (CFQ's or BFQ's files, whichever exist) and throttles.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use super::set;
use crate::error::{Error, Result};

pub(super) use super::super::block_io_is_set as is_set;

/// The weight file of this kernel: CFQ's `blkio.<name>` or BFQ's `blkio.bfq.<name>`.
fn weight_file(dir: &Path, name: &'static str) -> Result<String> {
    for f in [format!("blkio.{name}"), format!("blkio.bfq.{name}")] {
        if dir.join(&f).exists() {
            return Ok(f);
        }
    }
    Err(Error::CgroupUnsupported {
        controller: "blkio",
        reason: "weights are set but this kernel has no weight files (no device uses CFQ or BFQ)",
    })
}

pub(super) fn apply(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        set(dir, &weight_file(dir, "weight")?, w)?;
    }
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        set(dir, &weight_file(dir, "leaf_weight")?, w)?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let f = weight_file(dir, "weight_device")?;
            set(dir, &f, format!("{}:{} {w}", d.major(), d.minor()))?;
        }
        if let Some(w) = d.leaf_weight() {
            let f = weight_file(dir, "leaf_weight_device")?;
            set(dir, &f, format!("{}:{} {w}", d.major(), d.minor()))?;
        }
    }
    let throttles: [(&Option<Vec<LinuxThrottleDevice>>, &str); 4] = [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ];
    for (list, file) in throttles {
        for d in list.iter().flatten() {
            set(
                dir,
                file,
                format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            )?;
        }
    }
    Ok(())
}
