//! `kill`: signal the init, or every process of the container.

use oci_spec::runtime::ContainerState;

use super::{Runtime, pidfd, signal_pidfd};
use crate::error::{Error, Result};
use crate::procfs;

impl Runtime {
    /// Sends `signal` to the container's init, or with `all` to all its processes.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let l = self.open(id)?;
        let s = l.load(id)?;
        let status = self.status(&s);
        if !matches!(status, ContainerState::Created | ContainerState::Running) {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                operation: "kill",
            });
        }
        let Some(fd) = pidfd(&self.proc_root, s.pid, s.start_time)? else {
            return Err(Error::WrongState {
                id: id.into(),
                status: "stopped".into(),
                operation: "kill",
            });
        };
        if all && s.own_pid_ns {
            for pid in procfs::pids_in_pidns_of(&self.proc_root, s.pid) {
                if pid == s.pid {
                    continue;
                }
                // ESRCH if it just exited.
                if let (Some(pid), Ok(sig)) =
                    (rustix::process::Pid::from_raw(pid), super::signal(signal))
                {
                    let _ = rustix::process::kill_process(pid, sig);
                }
            }
        }
        signal_pidfd(&fd, signal).map_err(|source| Error::Sys {
            operation: "signalling init",
            source,
        })
    }
}
