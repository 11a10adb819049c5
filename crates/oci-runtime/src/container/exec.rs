//! `exec`: run another process inside a created or running container.

use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use oci_spec::runtime::Process;

use super::{Runtime, write_pid_file};
use crate::config::validate_process;
use crate::error::{Error, Result, io_err};
use crate::plan::{self, InitPlan};
use crate::spawn::{SpawnIo, spawn};

/// Options of `exec`, as runc's flags name them.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Unix socket that receives the pty master when `process.terminal` is true.
    pub console_socket: Option<PathBuf>,
    /// File to write the new process's host pid to.
    pub pid_file: Option<PathBuf>,
    /// Pass fds 3..3+N of the caller to the process.
    pub preserve_fds: u32,
}

const NAMESPACES: [(&str, libc::c_int); 8] = [
    ("user", libc::CLONE_NEWUSER),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
    ("mnt", libc::CLONE_NEWNS),
];

impl Runtime {
    /// The process of the container's `config.json`: the base that `exec` flags modify.
    pub fn base_process(&self, id: &str) -> Result<Process> {
        let l = self.open(id)?;
        let s = l.load(id)?;
        let bundle = crate::config::Bundle::load(&s.bundle)?;
        Ok(bundle.spec.process().clone().unwrap_or_default())
    }

    /// Runs `process` in the namespaces and root of container `id`; returns its host
    /// pid once it has exec'd. It is a child of the calling process.
    pub fn exec(&self, id: &str, process: &Process, opts: &ExecOptions) -> Result<i32> {
        self.exec_with(id, process, opts, [None, None, None], false)
            .map(|(pid, _)| pid)
    }

    /// `exec` with the process's fds 0..2 (`None`: the caller's); with
    /// `want_master`, a terminal without a console socket returns its master.
    pub(super) fn exec_with(
        &self,
        id: &str,
        process: &Process,
        opts: &ExecOptions,
        stdio: [Option<OwnedFd>; 3],
        want_master: bool,
    ) -> Result<(i32, Option<OwnedFd>)> {
        validate_process(process, "process")?;
        crate::exe::require_protected_exe("exec")?;
        let (l, s) = self.open_live(id, "exec")?;
        let last_cap = plan::last_cap(&self.proc_root);
        let stopped = || Error::WrongState {
            id: id.into(),
            status: "stopped".into(),
            operation: "exec",
        };
        // The pidfd pins the init: checked against its start time once, it names
        // that process and no other, so the namespaces joined through it are the
        // container's even if the init dies and its pid is reused meanwhile.
        let Some(pidfd) = super::pidfd(&self.proc_root, s.pid, s.start_time)? else {
            return Err(stopped());
        };
        let proc_pid = self.proc_root.join(s.pid.to_string());
        let mut join_flags = 0;
        for (name, nstype) in NAMESPACES {
            let theirs = proc_pid.join("ns").join(name);
            let ours = self.proc_root.join("self/ns").join(name);
            match (std::fs::read_link(&theirs), std::fs::read_link(&ours)) {
                (Ok(a), Ok(b)) if a != b => join_flags |= nstype,
                _ => {}
            }
        }
        let root_path = proc_pid.join("root");
        let exec_root = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&root_path)
            .map_err(io_err("opening container root", &root_path))?;
        // Paths under /proc/<pid> are the init's only while it lives: still alive
        // after they were read and opened, the pid was not reused in between.
        if super::exited(&pidfd)? {
            return Err(stopped());
        }
        let mut process_plan = plan::process_plan(process, last_cap, "process")?;
        // The container's seccomp filter holds for what is exec'd into it too.
        // As it was at create: the bundle may have changed or gone since.
        process_plan.seccomp = s
            .seccomp
            .as_ref()
            .map(|p| crate::seccomp::compile_cached(p, &self.seccomp_cache()))
            .transpose()?;
        plan::add_default_home(&mut process_plan, &root_path);
        let (console, master_rx) = super::console_io(
            opts.console_socket.as_deref(),
            process_plan.terminal,
            stdio.iter().any(Option::is_some),
            want_master,
        )?;
        let plan = InitPlan {
            clone_flags: 0,
            unshare_flags: 0,
            join: Vec::new(),
            join_pidfd_flags: join_flags,
            two_stage: true,
            new_user: false,
            bind_devices: false,
            uid_map: String::new(),
            gid_map: String::new(),
            time_offsets: None,
            rootfs: None,
            hostname: None,
            domainname: None,
            sysctl: Vec::new(),
            process: process_plan,
            runtime_hooks: false,
            create_container_hooks: Vec::new(),
            start_container_hooks: Vec::new(),
            last_cap,
            session_keyring: None,
        };
        // Into the container's cgroups too, before any of the process's code runs.
        let cgroup = match &s.cgroups {
            Some(cg) => crate::cgroups::Manager::join_fds(cg)?,
            None => Default::default(),
        };
        let agent_state = serde_json::to_value(&self.info(&s).state).unwrap_or_default();
        let io = SpawnIo {
            agent_state,
            cgroup,
            fifo: None,
            console,
            preserve_fds: opts.preserve_fds,
            exec_root: Some(exec_root.into()),
            wait_exec: true,
            pidfd: Some(pidfd),
            state_capacity: 0,
            stdio,
        };
        let pid = spawn(&plan, io, &mut |_| Ok(Vec::new()))?;
        drop(l);
        let master = match master_rx {
            None => None,
            Some(rx) => match crate::console::receive_pty_master(&rx) {
                Ok(m) => Some(m),
                Err(e) => {
                    super::kill_child(pid);
                    return Err(e);
                }
            },
        };
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, pid)?;
        }
        Ok((pid, master))
    }
}
