//! v1 `hugetlb`: a limit per page size, and its reservation twin where the kernel has one.

use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use super::set;
use crate::error::Result;

pub(super) fn apply(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for h in limits {
        let prefix = format!("hugetlb.{}", h.page_size());
        set(dir, &format!("{prefix}.limit_in_bytes"), h.limit())?;
        let rsvd = format!("{prefix}.rsvd.limit_in_bytes");
        if dir.join(&rsvd).exists() {
            set(dir, &rsvd, h.limit())?;
        }
    }
    Ok(())
}
