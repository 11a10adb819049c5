//! v2 `hugetlb`: a max per page size, and its reservation twin where the kernel has one.

use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use super::super::write;
use crate::error::Result;

pub(super) fn apply(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for h in limits {
        let prefix = format!("hugetlb.{}", h.page_size());
        write(&dir.join(format!("{prefix}.max")), &h.limit().to_string())?;
        let rsvd = dir.join(format!("{prefix}.rsvd.max"));
        if rsvd.exists() {
            write(&rsvd, &h.limit().to_string())?;
        }
    }
    Ok(())
}
