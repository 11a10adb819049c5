//! The container lifecycle over a state root: one file per verb.

mod create;
mod delete;
mod exec;
mod handle;
mod kill;
mod pause;
mod start;
mod stats;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{ContainerState, State};

use crate::error::{Error, Result, io_err};
use crate::procfs;
use crate::state::{Locked, Saved};
use nix::unistd::Pid;

pub use create::CreateOptions;
pub use exec::ExecOptions;
#[cfg(feature = "tokio")]
pub(crate) use handle::pidfd_readable;
pub use handle::{Container, ExecProcess, Source, Stdio, Stream};

/// The OCI runtime-spec version this runtime implements.
pub const OCI_VERSION: &str = "1.2.0";

/// A state root (`/run/mini-runtime` by default) and the containers under it.
///
/// Every fact about a container lives in its state dir, so any process (a CLI
/// invocation, a restarted server) can drive a container another one created.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
    proc_root: PathBuf,
    cgroup_roots: crate::cgroups::Roots,
}

/// What `state` and `list` report about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The runtime-spec state (`ociVersion`, `id`, `status`, `pid`, `bundle`, `annotations`).
    pub state: State,
    /// RFC 3339 creation time.
    pub created: String,
    /// Absolute path of the root filesystem.
    pub rootfs: PathBuf,
    /// The user that created the container.
    pub owner: String,
    /// Exit status of the init, when whoever waited for it recorded it.
    pub exit_status: Option<i32>,
    /// RFC 3339 time the exit status was recorded.
    pub exit_time: Option<String>,
    /// Whether the kernel's OOM killer struck (recorded by its monitor).
    pub oom_killed: bool,
    /// Whether its processes are frozen (`pause`): runc shows the status `paused`
    /// then, a state the runtime spec does not name.
    pub paused: bool,
    /// Whether it has cgroups of its own; `false` when an unprivileged creator had
    /// none delegated and it runs in the creator's.
    pub own_cgroups: bool,
}

impl Runtime {
    /// A runtime keeping its state under `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime {
            root: root.into(),
            proc_root: PathBuf::from("/proc"),
            cgroup_roots: crate::cgroups::Roots::default(),
        }
    }

    /// The same runtime with cgroups found under other roots (a test's temp dirs).
    pub fn with_cgroup_roots(mut self, roots: crate::cgroups::Roots) -> Self {
        self.cgroup_roots = roots;
        self
    }

    /// The same runtime reading processes from another procfs mount (the
    /// host's `/proc` seen from a container, a test's).
    pub fn with_proc_root(mut self, proc_root: impl Into<PathBuf>) -> Self {
        self.proc_root = proc_root.into();
        self
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Compiled seccomp programs, kept under the state root (made 0700).
    fn seccomp_cache(&self) -> PathBuf {
        self.root.join(".seccomp-cache")
    }

    fn open(&self, id: &str) -> Result<Locked> {
        crate::config::validate_id(id)?;
        Locked::open(&self.root, id)
    }

    /// Opens a container that must be created or running for `operation`.
    fn open_live(&self, id: &str, operation: &'static str) -> Result<(Locked, Saved)> {
        let l = self.open(id)?;
        let s = l.load(id)?;
        let status = self.status(&s);
        if !matches!(status, ContainerState::Created | ContainerState::Running) {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                operation,
            });
        }
        Ok((l, s))
    }

    fn status(&self, s: &Saved) -> ContainerState {
        // A create that died half-way stays `creating`, for `delete --force` to clean.
        if s.pid == 0 || s.creating {
            ContainerState::Creating
        } else if !procfs::alive(&self.proc_root, s.pid, s.start_time) {
            ContainerState::Stopped
        } else if s.started || !self.waits_for_start(&s.id) {
            ContainerState::Running
        } else {
            ContainerState::Created
        }
    }

    /// Whether the init still waits on its exec fifo. A `start` killed
    /// between releasing the init and recording it leaves `started` unset
    /// while the payload runs; with no reader left on the fifo (or no fifo)
    /// the container is running whatever the state says.
    fn waits_for_start(&self, id: &str) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        // Opened for writing and closed again without a byte: the init,
        // which holds the fifo open for writing too, notices nothing.
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(self.root.join(id).join("exec.fifo"))
        {
            Ok(_) => true,
            Err(e) => !matches!(e.raw_os_error(), Some(libc::ENXIO | libc::ENOENT)),
        }
    }

    fn info(&self, s: &Saved) -> ContainerInfo {
        let status = self.status(s);
        let mut state = State::default();
        state.set_version(OCI_VERSION.to_string());
        state.set_id(s.id.clone());
        state.set_status(status);
        state.set_pid(match status {
            ContainerState::Created | ContainerState::Running => Some(s.pid),
            ContainerState::Creating if procfs::alive(&self.proc_root, s.pid, s.start_time) => {
                Some(s.pid)
            }
            _ => None,
        });
        state.set_bundle(s.bundle.clone());
        state.set_annotations(if s.annotations.is_empty() {
            None
        } else {
            Some(s.annotations.clone())
        });
        ContainerInfo {
            state,
            created: s.created.clone(),
            rootfs: s.rootfs.clone(),
            owner: s.owner.clone(),
            exit_status: s.exit_status,
            exit_time: s.exit_time.clone(),
            oom_killed: s.oom_killed,
            own_cgroups: s.cgroups.is_some(),
            paused: matches!(status, ContainerState::Created | ContainerState::Running)
                && s.cgroups
                    .as_ref()
                    .is_some_and(|c| crate::cgroups::Manager::frozen(c).unwrap_or(false)),
        }
    }

    /// The runtime-spec state of a container. Takes no lock, so it answers even
    /// while another process holds the container (a prestart hook asking about the
    /// container being created).
    pub fn state(&self, id: &str) -> Result<ContainerInfo> {
        crate::config::validate_id(id)?;
        Ok(self.info(&crate::state::read_unlocked(&self.root, id)?))
    }

    /// All containers under the root, sorted by id.
    pub fn list(&self) -> Result<Vec<ContainerInfo>> {
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::Io {
                    operation: "listing",
                    path: self.root.clone(),
                    source: e,
                });
            }
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            match self.state(&name) {
                Ok(i) => out.push(i),
                Err(Error::NotFound { .. }) | Err(Error::InvalidId { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.state.id().cmp(b.state.id()));
        Ok(out)
    }

    /// Host pids of the container's processes (its pid namespace; just init without one).
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let l = self.open(id)?;
        let s = l.load(id)?;
        match self.status(&s) {
            ContainerState::Created | ContainerState::Running => {}
            _ => return Ok(Vec::new()),
        }
        match (&s.cgroups, s.own_pid_ns) {
            // The cgroup holds every process, with or without a pid namespace.
            (Some(cg), _) => crate::cgroups::Manager::pids(cg),
            (None, true) => Ok(procfs::pids_in_pidns_of(&self.proc_root, s.pid)),
            (None, false) => Ok(vec![s.pid]),
        }
    }

    /// Waits for the container's init to exit and records its exit status.
    /// The caller must be the init's parent (the process that created it).
    pub fn wait(&self, id: &str) -> Result<i32> {
        let pid = {
            let l = self.open(id)?;
            l.load(id)?.pid
        };
        let code = wait_pid(pid)?;
        self.record_exit(id, code, None)?;
        Ok(code)
    }
}

/// Waits for a child process; returns its exit code (128 + signal when killed).
pub fn wait_pid(pid: i32) -> Result<i32> {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            // Stops and continues are not ends: keep waiting.
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::Sys {
                    operation: "waitpid",
                    source: e.into(),
                });
            }
        }
    }
}

/// Kills `pid`, a child of ours that is of no use any more, and reaps it.
fn kill_child(pid: i32) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    let _ = wait_pid(pid);
}

/// Reaps `pid` if it is our child and has exited; anything else is fine.
fn reap_if_child(pid: i32) {
    let _ = nix::sys::wait::waitpid(
        Pid::from_raw(pid),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
}

/// Opens a pidfd for `pid` and checks it is still the process that started at `start_time`.
fn pidfd(proc_root: &Path, pid: i32, start_time: u64) -> Result<Option<OwnedFd>> {
    let Some(rpid) = rustix::process::Pid::from_raw(pid) else {
        return Ok(None);
    };
    let Ok(fd) = rustix::process::pidfd_open(rpid, rustix::process::PidfdFlags::empty()) else {
        return Ok(None);
    };
    // Checked after opening: the pidfd now pins the process, so a match cannot go stale.
    if procfs::stat(proc_root, pid).is_some_and(|(s, _)| s == start_time) {
        Ok(Some(fd))
    } else {
        Ok(None)
    }
}

/// Whether the pidfd's process has exited (its pidfd polls readable).
fn exited(fd: &OwnedFd) -> Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut p, PollTimeout::ZERO) {
            Ok(n) => return Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::Sys {
                    operation: "poll pidfd",
                    source: e.into(),
                });
            }
        }
    }
}

/// A signal number (1..=64, realtime ones too) as rustix takes it.
fn signal(sig: i32) -> std::io::Result<rustix::process::Signal> {
    if !(1..=64).contains(&sig) {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: checked above to be a signal number the kernel knows; the
    // "unchecked" part is only that libc may reserve some realtime ones.
    Ok(unsafe { rustix::process::Signal::from_raw_unchecked(sig) })
}

fn signal_pidfd(fd: &OwnedFd, sig: i32) -> std::io::Result<()> {
    Ok(rustix::process::pidfd_send_signal(fd, signal(sig)?)?)
}

/// Waits (bounded) until the pidfd's process has exited, then reaps it if it is our child.
fn wait_gone(fd: &OwnedFd, pid: i32, timeout_ms: u16) -> Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut p, PollTimeout::from(timeout_ms)) {
            Ok(0) => {
                return Err(Error::Sys {
                    operation: "waiting for the container to exit",
                    source: std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
                });
            }
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::Sys {
                    operation: "poll pidfd",
                    source: e.into(),
                });
            }
        }
    }
    reap_if_child(pid);
    Ok(())
}

/// The id of the mount `path` is on (`statx` `STATX_MNT_ID`), if it can be read.
fn mount_id(path: &Path) -> Option<u64> {
    rustix::fs::statx(
        rustix::fs::CWD,
        path,
        rustix::fs::AtFlags::empty(),
        rustix::fs::StatxFlags::MNT_ID,
    )
    .ok()
    .map(|s| s.stx_mnt_id)
}

/// Lazily detaches the mount on `path` and every mount below it; nothing mounted there is fine.
fn detach_mounts(path: &Path) -> Result<()> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::Io {
            operation: "detaching the container's mounts under",
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

fn state_json(info: &ContainerInfo) -> Vec<u8> {
    serde_json::to_vec(&info.state).unwrap_or_default()
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")
    ));
    std::fs::write(&tmp, pid.to_string()).map_err(io_err("writing pid file", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("writing pid file", path))
}

/// The console fd the init gets for a `terminal` process: the connected
/// console socket, or with `want_master` one end of a pair whose other end
/// (returned) receives the pty master. A terminal with stdio streams of its
/// own, or without a way to pass the master on, is refused.
fn console_io(
    socket: Option<&Path>,
    terminal: bool,
    has_stdio: bool,
    want_master: bool,
) -> Result<(Option<OwnedFd>, Option<std::os::unix::net::UnixStream>)> {
    if !terminal {
        return Ok((None, None));
    }
    if has_stdio {
        return Err(crate::error::invalid(
            "process.terminal",
            "the pty is the process's stdio: give no stdio streams with a terminal",
        ));
    }
    match socket {
        Some(p) => Ok((Some(connect_console(p)?), None)),
        None if want_master => {
            let (rx, tx) = std::os::unix::net::UnixStream::pair().map_err(|source| Error::Sys {
                operation: "making the console socket pair",
                source,
            })?;
            Ok((Some(OwnedFd::from(tx)), Some(rx)))
        }
        None => Err(crate::error::invalid(
            "process.terminal",
            "a terminal needs --console-socket",
        )),
    }
}

fn connect_console(path: &Path) -> Result<OwnedFd> {
    let s = std::os::unix::net::UnixStream::connect(path)
        .map_err(io_err("connecting console socket", path))?;
    Ok(OwnedFd::from(s))
}

fn current_user() -> String {
    let uid = nix::unistd::geteuid().as_raw();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<_> = l.split(':').collect();
                (f.get(2) == Some(&uid.to_string().as_str())).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

/// A pidfd of container `s`'s init while it is the same process that was
/// created, from any process (not only its parent).
pub(crate) fn live_pidfd(rt: &Runtime, s: &crate::state::Saved) -> Result<Option<OwnedFd>> {
    if s.pid <= 0 {
        return Ok(None);
    }
    pidfd(&rt.proc_root, s.pid, s.start_time)
}

/// The OOM kills counted in container `id`'s memory cgroup, alive or not.
pub(crate) fn oom_kills(rt: &Runtime, id: &str) -> Option<u64> {
    let s = crate::state::read_unlocked(&rt.root, id).ok()?;
    let cg = s.cgroups?;
    let stats = cg.stats().ok()?;
    Some(stats.memory?.oom?.oom_kill)
}
