//! `kill`: signal the init, or every process of the container.

use super::{Runtime, pidfd, signal_pidfd};
use crate::cgroups::Manager;
use crate::error::{Error, Result};
use crate::procfs;
use crate::state::Saved;

impl Runtime {
    /// Sends `signal` to the container's init, or with `all` to all its processes.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let (_l, s) = self.open_live(id, "kill")?;
        let Some(fd) = pidfd(&self.proc_root, s.pid, s.start_time)? else {
            return Err(Error::WrongState {
                id: id.into(),
                status: "stopped".into(),
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
                if froze {
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
