//! `delete`: stop (with `force`) and remove a container, then run poststop hooks.

use oci_spec::runtime::ContainerState;

use super::{Runtime, detach_mounts, pidfd, reap_if_child, signal_pidfd, state_json, wait_gone};
use crate::cgroups::{Cgroups, Manager};
use crate::error::{Error, Result};
use crate::{hooks, procfs};

impl Runtime {
    /// Deletes a container. A running one needs `force` (it is killed first); a
    /// created one is killed as runc does; a half-created one (a crashed `create`)
    /// is cleaned up. Poststop hook failures are returned as warnings.
    pub fn delete(&self, id: &str, force: bool) -> Result<Vec<Error>> {
        let l = self.open(id)?;
        let s = l.load(id)?;
        let status = self.status(&s);
        if status == ContainerState::Running && !force {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                operation: "delete without --force",
            });
        }
        if matches!(status, ContainerState::Running | ContainerState::Created) {
            // A frozen init would take its SIGKILL only once thawed.
            if let Some(cg) = s.cgroups.as_ref().filter(|c| c.frozen().unwrap_or(false)) {
                cg.freeze(false)?;
            }
            if let Some(fd) = pidfd(&self.proc_root, s.pid, s.start_time)? {
                // With its own pid namespace, killing the init kills everything in it;
                // without one (and without cgroups yet) the init is all we can name.
                let _ = signal_pidfd(&fd, libc::SIGKILL);
                wait_gone(&fd, s.pid, 30_000)?;
            }
        } else if s.pid > 0 {
            // Stopped: reap it if it is our child and nobody has yet.
            reap_if_child(s.pid);
        }
        if let Some(cg) = &s.cgroups {
            // Whatever is left in the cgroups (no pid namespace, or processes
            // that were moved in) goes too, then the cgroups themselves.
            self.kill_cgroup(cg)?;
            cg.destroy()?;
        }
        if s.own_pid_ns && s.pid > 0 {
            // Wait (bounded) for the rest of the namespace to go, so nothing outlives
            // delete. An init that has exited (a zombie its reaper has not yet
            // collected) leaves nothing behind: the kernel kills and reaps the rest
            // of its namespace before the init's exit completes.
            for _ in 0..3000 {
                if !procfs::alive(&self.proc_root, s.pid, s.start_time)
                    || procfs::pids_in_pidns_of(&self.proc_root, s.pid).is_empty()
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        if s.shares_mount_ns {
            // The container's mounts live in the host's namespace, all under the
            // rootfs bind: detach that, and with it every one of them.
            detach_mounts(&s.rootfs)?;
        }
        let mut info = self.info(&s);
        info.state.set_status(ContainerState::Stopped);
        let json = state_json(&info);
        let mut warnings = Vec::new();
        for h in s.hooks.iter().flat_map(|h| h.poststop().iter().flatten()) {
            if let Err(e) = hooks::run("poststop", Some(&vec![h.clone()]), &json) {
                warnings.push(e);
            }
        }
        l.remove()?;
        Ok(warnings)
    }
}

impl Runtime {
    /// SIGKILLs every process in the cgroups and waits (bounded) until none is left.
    fn kill_cgroup(&self, cg: &Cgroups) -> Result<()> {
        for _ in 0..3000 {
            let pids = cg.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            // A frozen process dies only once thawed.
            if cg.frozen().unwrap_or(false) {
                cg.freeze(false)?;
            }
            for pid in pids {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                super::reap_if_child(pid);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(Error::Sys {
            operation: "killing the processes left in the container's cgroups",
            source: std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
        })
    }
}
