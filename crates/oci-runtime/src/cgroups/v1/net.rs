//! v1 `net_cls` and `net_prio`: the class id and per-interface priorities.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::runtime::LinuxNetwork;

use super::{need, set};
use crate::error::Result;

pub(super) fn apply(dirs: &BTreeMap<String, PathBuf>, n: &LinuxNetwork) -> Result<()> {
    if let Some(id) = n.class_id() {
        set(need(dirs, "net_cls")?, "net_cls.classid", id)?;
    }
    for p in n.priorities().iter().flatten() {
        set(
            need(dirs, "net_prio")?,
            "net_prio.ifpriomap",
            format!("{} {}", p.name(), p.priority()),
        )?;
    }
    Ok(())
}
