//! `pause`, `resume` and `update`: the container's cgroups, after create.

use oci_spec::runtime::LinuxResources;

use super::Runtime;
use crate::cgroups::{Cgroups, Manager};
use crate::error::{Error, Result};

impl Runtime {
    /// Freezes every process of a running container; returns once the kernel
    /// reports them frozen.
    pub fn pause(&self, id: &str) -> Result<()> {
        let cg = self.running_cgroups(id, "pause")?;
        cg.freeze(true)
    }

    /// Thaws a paused container; returns once the kernel reports it thawed.
    pub fn resume(&self, id: &str) -> Result<()> {
        let cg = self.running_cgroups(id, "resume")?;
        cg.freeze(false)
    }

    /// Writes new limits into a created or running container's cgroups.
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        crate::config::validate_resources(resources, "resources")?;
        if resources.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            // As runc: device rules are the config's, fixed at create.
            return Err(crate::error::invalid(
                "resources.devices",
                "device rules cannot be updated",
            ));
        }
        let cg = self.running_cgroups(id, "update")?;
        cg.apply(resources)
    }

    fn running_cgroups(&self, id: &str, operation: &'static str) -> Result<Cgroups> {
        let (_, s) = self.open_live(id, operation)?;
        s.cgroups.ok_or(Error::CgroupUnsupported {
            controller: "cgroups",
            reason: "the container runs in its creator's cgroup (rootless, no delegation)",
        })
    }
}
