//! Containers for a long-lived, multi-threaded host: made from a spec in
//! memory or from a bundle, each with stdio of its own, and handed back as
//! a [`Container`] that holds the init's pidfd.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::Runtime;
use super::create::{CreateOptions, InitIo};
use crate::config::{Bundle, validate, validate_id};
use crate::error::{Error, Result, io_err};
use crate::state::rfc3339;

/// Where a container's spec and root filesystem come from.
#[derive(Debug, Clone)]
pub enum Source<'a> {
    /// A bundle directory: `config.json` and the rootfs it names.
    Bundle(&'a Path),
    /// A spec in memory and the root filesystem to use; `root.path` of the
    /// spec is replaced by it. The spec is written to the container's state
    /// dir, which then serves as its bundle.
    Spec {
        /// The runtime spec.
        spec: Box<Spec>,
        /// The root filesystem.
        rootfs: PathBuf,
    },
}

/// One of the process's standard streams.
#[derive(Debug, Default)]
pub enum Stream {
    /// The caller's own fd of that number.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// This fd (the container gets a copy; the caller keeps its own).
    Fd(OwnedFd),
    /// A new pipe: the container gets one end, [`Container`] the other.
    Pipe,
}

/// The process's stdin, stdout and stderr. With `process.terminal` all
/// three stay [`Stream::Inherit`]: the pty is the stdio.
#[derive(Debug, Default)]
pub struct Stdio {
    /// Fd 0.
    pub stdin: Stream,
    /// Fd 1.
    pub stdout: Stream,
    /// Fd 2.
    pub stderr: Stream,
}

/// A created container, as the host that created it holds it.
#[derive(Debug)]
pub struct Container {
    /// The id.
    pub id: String,
    /// The init's host pid.
    pub pid: i32,
    /// A pidfd of the init: pollable (readable once it exits), and it names
    /// this process even after its pid is reused.
    pub pidfd: OwnedFd,
    /// The write end of a [`Stream::Pipe`] stdin.
    pub stdin: Option<File>,
    /// The read end of a [`Stream::Pipe`] stdout.
    pub stdout: Option<File>,
    /// The read end of a [`Stream::Pipe`] stderr.
    pub stderr: Option<File>,
    /// The pty master, when `process.terminal` is set and
    /// [`CreateOptions::console_socket`] is not.
    pub pty_master: Option<OwnedFd>,
}

impl Runtime {
    /// Creates container `id` from `source`, with `stdio`, ready for
    /// [`Runtime::start`]; returns its handle. Safe from any thread of a
    /// multi-threaded host; nothing is left behind on failure.
    pub fn create_container(
        &self,
        id: &str,
        source: Source<'_>,
        opts: &CreateOptions,
        stdio: Stdio,
    ) -> Result<Container> {
        validate_id(id)?;
        let (bundle, write_config) = match source {
            Source::Bundle(dir) => (Bundle::load(dir)?, false),
            Source::Spec { spec, rootfs } => {
                let mut spec = *spec;
                let rootfs = std::path::absolute(&rootfs)
                    .map_err(io_err("resolving the root filesystem", &rootfs))?;
                let mut root = spec.root().clone().unwrap_or_default();
                root.set_path(rootfs);
                spec.set_root(Some(root));
                let dir = self.root.join(id);
                let rootfs = validate(&spec, &dir)?;
                (Bundle { dir, spec, rootfs }, true)
            }
        };
        let (child, ends) = stdio_fds(stdio)?;
        let io = InitIo {
            stdio: child,
            want_master: true,
            write_config,
        };
        let (pid, pty_master) = self.create_loaded(id, bundle, opts, io)?;
        let pidfd = rustix::process::Pid::from_raw(pid)
            .ok_or(Error::Sys {
                operation: "pidfd_open",
                source: std::io::Error::from_raw_os_error(libc::ESRCH),
            })
            .and_then(|p| {
                // The init is our unreaped child: its pid cannot be reused yet.
                rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).map_err(|e| {
                    Error::Sys {
                        operation: "pidfd_open",
                        source: e.into(),
                    }
                })
            });
        let pidfd = match pidfd {
            Ok(fd) => fd,
            Err(e) => {
                let _ = self.delete(id, true);
                return Err(e);
            }
        };
        let [stdin, stdout, stderr] = ends;
        Ok(Container {
            id: id.to_string(),
            pid,
            pidfd,
            stdin,
            stdout,
            stderr,
            pty_master,
        })
    }

    /// Runs `process` in container `id` (as [`Runtime::exec`]) with `stdio`;
    /// returns once it has exec'd. The process is a child of the caller.
    pub fn exec_process(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        opts: &super::ExecOptions,
        stdio: Stdio,
    ) -> Result<ExecProcess> {
        let (child, ends) = stdio_fds(stdio)?;
        let (pid, pty_master) = self.exec_with(id, process, opts, child, true)?;
        let pidfd = open_pidfd(pid).inspect_err(|_| {
            super::kill_child(pid);
        })?;
        let [stdin, stdout, stderr] = ends;
        Ok(ExecProcess {
            pid,
            pidfd,
            stdin,
            stdout,
            stderr,
            pty_master,
        })
    }

    /// Waits for `c`'s init to exit, through its pidfd, and records the
    /// exit status and time in its state. Only the creating process (the
    /// init's parent) can wait. Returns the exit code, 128 + signal when killed.
    pub fn wait_container(&self, c: &Container) -> Result<i32> {
        let code = wait_pidfd(c.pidfd.as_fd())?;
        self.record_exit(&c.id, code, None)?;
        Ok(code)
    }

    /// Waits for `c`'s init like [`Runtime::wait_container`], without
    /// recording anything.
    pub(crate) fn reap(&self, c: &Container) -> Result<i32> {
        wait_pidfd(c.pidfd.as_fd())
    }

    /// Records that container `id` exited with `code`, now, and whether the
    /// OOM killer struck (when known), in one write of its state.
    pub(crate) fn record_exit(&self, id: &str, code: i32, oom_killed: Option<bool>) -> Result<()> {
        if let Ok(l) = self.open(id) {
            let mut s = l.load(id)?;
            s.exit_status = Some(code);
            s.exit_time = Some(rfc3339(std::time::SystemTime::now()));
            if let Some(o) = oom_killed {
                s.oom_killed = o;
            }
            l.save(&s)?;
        }
        Ok(())
    }
}

/// A process run in a container by [`Runtime::exec_process`].
#[derive(Debug)]
pub struct ExecProcess {
    /// Its host pid.
    pub pid: i32,
    /// Its pidfd: pollable, and [`ExecProcess::wait`] waits through it.
    pub pidfd: OwnedFd,
    /// The write end of a [`Stream::Pipe`] stdin.
    pub stdin: Option<File>,
    /// The read end of a [`Stream::Pipe`] stdout.
    pub stdout: Option<File>,
    /// The read end of a [`Stream::Pipe`] stderr.
    pub stderr: Option<File>,
    /// The pty master, with `terminal` and no console socket.
    pub pty_master: Option<OwnedFd>,
}

impl ExecProcess {
    /// Waits for it to exit: its exit code, 128 + signal when killed.
    pub fn wait(&self) -> Result<i32> {
        wait_pidfd(self.pidfd.as_fd())
    }

    /// Resolves once it has exited, without blocking a thread (the pidfd
    /// turns readable); then [`ExecProcess::wait`] returns at once.
    #[cfg(feature = "tokio")]
    pub async fn exited(&self) -> Result<()> {
        pidfd_readable(self.pidfd.as_fd()).await
    }
}

impl Container {
    /// Resolves once the init has exited, without blocking a thread (the
    /// pidfd turns readable); then [`Runtime::wait_container`] returns at once.
    #[cfg(feature = "tokio")]
    pub async fn exited(&self) -> Result<()> {
        pidfd_readable(self.pidfd.as_fd()).await
    }
}

/// Waits on the tokio reactor for `pidfd` to turn readable: its process exited.
#[cfg(feature = "tokio")]
pub(crate) async fn pidfd_readable(pidfd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
    let fd = pidfd.try_clone_to_owned().map_err(|source| Error::Sys {
        operation: "duplicating a pidfd",
        source,
    })?;
    // SAFETY: the AsyncFd owns `fd`, an OwnedFd whose number stays the same
    // and which nothing else closes while it is registered.
    let afd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }
    .map_err(|e| Error::Sys {
        operation: "registering a pidfd with tokio",
        source: e.into(),
    })?;
    let _ready = afd.readable().await.map_err(|source| Error::Sys {
        operation: "polling a pidfd",
        source,
    })?;
    Ok(())
}

/// What goes on the child's fds 0..2 (`None`: the caller's).
type ChildStdio = [Option<OwnedFd>; 3];
/// The caller's ends of the pipes among them.
type PipeEnds = [Option<File>; 3];

/// The fds for the child's 0..2 and the caller's ends of any pipes.
fn stdio_fds(stdio: Stdio) -> Result<(ChildStdio, PipeEnds)> {
    let mut ends: [Option<File>; 3] = [None, None, None];
    let mut child: [Option<OwnedFd>; 3] = [None, None, None];
    for (i, stream) in [stdio.stdin, stdio.stdout, stdio.stderr]
        .into_iter()
        .enumerate()
    {
        child[i] =
            match stream {
                Stream::Inherit => None,
                Stream::Null => Some(
                    File::options()
                        .read(i == 0)
                        .write(i != 0)
                        .open("/dev/null")
                        .map_err(io_err("opening", "/dev/null"))?
                        .into(),
                ),
                Stream::Fd(fd) => {
                    // Checked before anything is created, naming the stream.
                    rustix::fs::fstat(&fd).map_err(|e| Error::Sys {
                        operation: ["stdin fd", "stdout fd", "stderr fd"][i],
                        source: e.into(),
                    })?;
                    Some(fd)
                }
                Stream::Pipe => {
                    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                        .map_err(|e| Error::Sys {
                            operation: "making a stdio pipe",
                            source: e.into(),
                        })?;
                    let (ours, theirs) = if i == 0 { (w, r) } else { (r, w) };
                    ends[i] = Some(File::from(ours));
                    Some(theirs)
                }
            };
    }
    Ok((child, ends))
}

/// A pidfd for `pid`, an unreaped child of ours (so its pid is not reused).
fn open_pidfd(pid: i32) -> Result<OwnedFd> {
    let p = rustix::process::Pid::from_raw(pid).ok_or(Error::Sys {
        operation: "pidfd_open",
        source: std::io::Error::from_raw_os_error(libc::ESRCH),
    })?;
    rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).map_err(|e| Error::Sys {
        operation: "pidfd_open",
        source: e.into(),
    })
}

/// Waits for the process of `pidfd`, a child of ours, to exit.
fn wait_pidfd(pidfd: std::os::fd::BorrowedFd<'_>) -> Result<i32> {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    loop {
        match waitid(WaitId::PidFd(pidfd), WaitIdOptions::EXITED) {
            Ok(Some(st)) => {
                if let Some(code) = st.exit_status() {
                    return Ok(code);
                }
                if let Some(sig) = st.terminating_signal() {
                    return Ok(128 + sig);
                }
            }
            Ok(None) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(Error::Sys {
                    operation: "waitid on the init's pidfd",
                    source: std::io::Error::from_raw_os_error(e.raw_os_error()),
                });
            }
        }
    }
}
