//! `kill`: signal the init, or every process of the container.

use super::{Runtime, pidfd, signal_pidfd};
use crate::cgroups::Manager;
use crate::error::{Error, Result};
use crate::procfs;
use crate::state::Saved;
use oci_spec::runtime::ContainerState;

impl Runtime {
    /// Sends `signal` to the container's init, or with `all` to all its processes.
    ///
    /// Once the init has exited, a kill of the init is [`Error::NotRunning`];
    /// with `all` it still signals whatever is left in the container's cgroup
    /// and succeeds, as runc does (containerd's shim sends that when an init
    /// that shared its pid namespace exits, to stop what it left behind).
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let l = self.open(id)?;
        let s = l.load(id)?;
        if s.pid == 0 || s.creating {
            return Err(Error::WrongState {
                id: id.into(),
                status: "creating".into(),
                operation: "kill",
            });
        }
        // A zombie init still has a pidfd, but it is stopped all the same.
        let live = match self.status(&s) {
            ContainerState::Stopped => None,
            _ => pidfd(&self.proc_root, s.pid, s.start_time)?,
        };
        let Some(fd) = live else {
            if all && s.cgroups.is_some() {
                return self.signal_all_but_init(&s, signal);
            }
            if all {
                return Ok(());
            }
            return Err(Error::NotRunning {
                id: id.into(),
                operation: "kill",
            });
        };
        if all {
            self.signal_all_but_init(&s, signal)?;
        }
        signal_pidfd(&fd, signal).map_err(|source| Error::Sys {
            operation: "signalling init",
            source,
        })
    }
}

impl Runtime {
    /// Signals every process of the container but its init. With cgroups they
    /// are frozen meanwhile, so that none forks a child the signal misses.
    fn signal_all_but_init(&self, s: &Saved, signal: i32) -> Result<()> {
        let sig = super::signal(signal).map_err(|source| Error::Sys {
            operation: "signalling",
            source,
        })?;
        let pids = match &s.cgroups {
            Some(cg) => {
                let was_frozen = cg.frozen().unwrap_or(false);
                let froze = !was_frozen && cg.freeze(true).is_ok();
                let pids = cg.pids();
                if let Ok(pids) = &pids {
                    send_all(pids, s.pid, sig);
                }
                // SIGKILL takes effect only once thawed: a cgroup left
                // frozen (a paused container, or a kill cut off between
                // freeze and thaw) is thawed after it.
                if froze || (was_frozen && signal == libc::SIGKILL) {
                    cg.freeze(false)?;
                }
                return pids.map(drop);
            }
            None if s.own_pid_ns => procfs::pids_in_pidns_of(&self.proc_root, s.pid),
            None => Vec::new(),
        };
        send_all(&pids, s.pid, sig);
        Ok(())
    }
}

fn send_all(pids: &[i32], init: i32, sig: rustix::process::Signal) {
    for &pid in pids {
        if pid == init {
            continue;
        }
        // ESRCH if it just exited.
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }
}
