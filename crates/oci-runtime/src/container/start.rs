//! `start`: release the waiting init so it execs the payload.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use oci_spec::runtime::ContainerState;

use super::{Runtime, state_json};
use crate::error::{Error, Result, io_err};
use crate::hooks;

impl Runtime {
    /// Starts a created container. Poststart hook failures do not fail the start
    /// (the spec says to warn and go on); they are returned for the caller to report.
    pub fn start(&self, id: &str) -> Result<Vec<Error>> {
        let l = self.open(id)?;
        let mut s = l.load(id)?;
        let status = self.status(&s);
        if status != ContainerState::Created {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                operation: "start",
            });
        }
        let fifo = l.fifo();
        // Non-blocking: if the init is gone there is no reader and the open fails with ENXIO.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo)
            .map_err(io_err("opening exec fifo", &fifo))?;
        f.write_all(&[0])
            .map_err(io_err("writing exec fifo", &fifo))?;
        drop(f);
        let _ = std::fs::remove_file(&fifo);
        s.started = true;
        l.save(&s)?;
        let mut warnings = Vec::new();
        // The payload may already have exited; poststart hooks still see the state of a started container.
        let mut info = self.info(&s);
        info.state.set_status(ContainerState::Running);
        info.state.set_pid(Some(s.pid));
        let json = state_json(&info);
        for h in s.hooks.iter().flat_map(|h| h.poststart().iter().flatten()) {
            if let Err(e) = hooks::run("poststart", Some(&vec![h.clone()]), &json) {
                warnings.push(e);
            }
        }
        Ok(warnings)
    }
}
