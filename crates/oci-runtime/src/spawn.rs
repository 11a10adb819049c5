//! The parent side of spawning: prepare fds and pointer arrays, `clone3`, then
//! serve the child's requests (id maps, hooks) until it reports ready or fails.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use libc::c_char;
use nix::unistd::Pid;

use crate::child::{self, ChildArgs, ChildFds, Msg, Step};
use crate::error::{Error, Result, io_err};
use crate::plan::InitPlan;

/// `clone3`'s flag for starting in the cgroup2 cgroup `clone_args.cgroup` names.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Fds and options handed to a spawn.
#[derive(Debug, Default)]
pub(crate) struct SpawnIo {
    /// Exec FIFO opened read-write; the child blocks on it until `start`.
    pub fifo: Option<OwnedFd>,
    /// Connected console socket for `terminal: true`.
    pub console: Option<OwnedFd>,
    /// Number of fds after stdio passed to the payload.
    pub preserve_fds: u32,
    /// Container root to chroot into (exec).
    pub exec_root: Option<OwnedFd>,
    /// Wait until the payload has exec'd (exec) instead of until it is ready (create).
    pub wait_exec: bool,
    /// The process whose namespaces `plan.join_pidfd_flags` names (exec).
    pub pidfd: Option<OwnedFd>,
    /// The cgroups to start in.
    pub cgroup: crate::cgroups::JoinFds,
    /// The container's state, sent (with the process's pid) to a seccomp
    /// agent along with the listener fd.
    pub agent_state: serde_json::Value,
    /// Bytes reserved for the state JSON that container-side hooks read; the
    /// child cannot allocate, so the parent sizes its buffer before the clone.
    pub state_capacity: usize,
    /// The process's fds 0, 1 and 2; `None` keeps the caller's.
    pub stdio: [Option<OwnedFd>; 3],
}

fn ptr_array(v: &[CString]) -> Vec<*const c_char> {
    v.iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

fn pipe() -> Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Sys {
        operation: "pipe2",
        source: e.into(),
    })?;
    Ok((File::from(r), File::from(w)))
}

/// Kills and reaps spawned processes unless disarmed.
struct Reaper {
    pids: Vec<i32>,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let pid = Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

fn write_maps(pid: i32, plan: &InitPlan) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        // Rootless: an unprivileged writer may map only itself, and only after
        // giving up setgroups in the new namespace.
        let path = format!("/proc/{pid}/setgroups");
        std::fs::write(&path, b"deny").map_err(io_err("writing", path))?;
    }
    for (file, map) in [("gid_map", &plan.gid_map), ("uid_map", &plan.uid_map)] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, map.as_bytes()).map_err(io_err("writing", path))?;
    }
    Ok(())
}

/// Spawns the plan's init. `on_hooks(pid)` runs the runtime-side hooks while the
/// child waits, and returns the state JSON given to container-side hooks.
/// Returns the pid of the payload process (a child of the calling process).
pub(crate) fn spawn(
    plan: &InitPlan,
    mut io: SpawnIo,
    on_hooks: &mut dyn FnMut(i32) -> Result<Vec<u8>>,
) -> Result<i32> {
    let argv = ptr_array(&plan.process.args);
    let envp = ptr_array(&plan.process.env);
    let hook_ptrs: Vec<_> = plan
        .create_container_hooks
        .iter()
        .chain(plan.start_container_hooks.iter())
        .map(|h| (ptr_array(&h.args), ptr_array(&h.env)))
        .collect();
    if plan.join.len() > 8 {
        return Err(crate::error::invalid(
            "linux.namespaces",
            "too many namespaces to join",
        ));
    }
    let mut join_files = Vec::new();
    for j in &plan.join {
        join_files.push(File::open(&j.path).map_err(io_err("opening namespace", &j.path))?);
    }
    let mut join = [-1; 8];
    for (slot, f) in join.iter_mut().zip(join_files.iter()) {
        *slot = f.as_raw_fd();
    }
    if io.cgroup.v1_procs.len() > 12 {
        return Err(crate::error::invalid(
            "linux.cgroupsPath",
            "more than 12 cgroup v1 hierarchies to join",
        ));
    }
    let mut cgroup_procs = [-1; 12];
    for (slot, f) in cgroup_procs.iter_mut().zip(io.cgroup.v1_procs.iter()) {
        *slot = f.as_raw_fd();
    }
    let raw = |o: &Option<OwnedFd>| o.as_ref().map_or(-1, |f| f.as_raw_fd());
    let (mut from_child, to_parent) = pipe()?;
    let (from_parent, mut to_child) = pipe()?;
    // Copies of the stdio fds above every number the child keeps (the
    // caller's 0..2 and preserved fds), so that moving them onto 0..2 in
    // the child can overwrite none of them, nor one another.
    let keep_below = 3 + io.preserve_fds as RawFd;
    let mut stdio_copies: [Option<OwnedFd>; 3] = [None, None, None];
    for (copy, fd) in stdio_copies.iter_mut().zip(io.stdio.iter()) {
        if let Some(fd) = fd {
            *copy = Some(
                rustix::io::fcntl_dupfd_cloexec(fd, keep_below).map_err(|e| Error::Sys {
                    operation: "duplicating a stdio fd",
                    source: e.into(),
                })?,
            );
        }
    }
    if stdio_copies.iter().any(Option::is_some) {
        // With the caller's own 0..2 closed, an fd of ours could have got one
        // of those numbers, which the child then overwrites.
        let ours = [
            to_parent.as_raw_fd(),
            from_parent.as_raw_fd(),
            raw(&io.fifo),
            raw(&io.console),
            raw(&io.exec_root),
            raw(&io.pidfd),
        ];
        if ours
            .iter()
            .chain(join.iter())
            .chain(cgroup_procs.iter())
            .any(|&fd| (0..3).contains(&fd))
        {
            return Err(Error::Sys {
                operation: "giving the container its own stdio",
                source: std::io::Error::other(
                    "this process has fd 0, 1 or 2 closed; open /dev/null on them first",
                ),
            });
        }
    }
    let mut state_buf = vec![0u8; io.state_capacity];
    let fds = ChildFds {
        to_parent: to_parent.as_raw_fd(),
        from_parent: from_parent.as_raw_fd(),
        fifo: raw(&io.fifo),
        join,
        console: raw(&io.console),
        keep_below,
        exec_root: raw(&io.exec_root),
        stdio: [
            raw(&stdio_copies[0]),
            raw(&stdio_copies[1]),
            raw(&stdio_copies[2]),
        ],
        pidfd: raw(&io.pidfd),
        cgroup_procs,
    };
    let mut args = ChildArgs {
        plan,
        argv: &argv,
        envp: &envp,
        hook_ptrs: &hook_ptrs,
        fds,
        state_buf: &mut state_buf,
    };

    // clone3 is called raw: nix and rustix have no wrapper for it (nor could a
    // safe one exist: the child runs on a copy of this stack).
    // SAFETY: clone_args is plain data; all-zero is a valid starting value.
    let mut cl: libc::clone_args = unsafe { std::mem::zeroed() };
    cl.flags = plan.clone_flags;
    cl.exit_signal = libc::SIGCHLD as u64;
    if let Some(dir) = &io.cgroup.v2_dir {
        // Born in the container's cgroup2 cgroup: not one instruction outside it.
        cl.flags |= CLONE_INTO_CGROUP;
        cl.cgroup = dir.as_raw_fd() as u64;
    }
    // SAFETY: `cl` is a valid clone_args of the size passed. Without CLONE_VM the child
    // gets a private copy of this address space and continues on its copy of our stack;
    // it runs only `child_main`, which makes raw system calls and never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut cl as *mut libc::clone_args,
            size_of::<libc::clone_args>(),
        )
    };
    if pid == 0 {
        child::child_main(&mut args);
    }
    if pid < 0 {
        return Err(Error::Sys {
            operation: "clone3",
            source: std::io::Error::last_os_error(),
        });
    }
    let stage_pid = pid as i32;
    let mut reaper = Reaper {
        pids: vec![stage_pid],
    };
    drop(to_parent);
    drop(from_parent);
    let wait_exec = io.wait_exec;
    let agent_state = std::mem::take(&mut io.agent_state);
    let state_capacity = io.state_capacity;
    drop(io);
    drop(join_files);
    drop(stdio_copies);
    let mut init_pid = stage_pid;
    let mut ready = false;
    loop {
        let mut b = [0u8; 16];
        let n = read_full(&mut from_child, &mut b)?;
        if n == 0 {
            if ready {
                // The pipe closed on exec: the payload is running.
                reaper.pids.clear();
                return Ok(init_pid);
            }
            return Err(Error::Init {
                step: "init exited before reporting".into(),
                detail: None,
                source: std::io::Error::from_raw_os_error(libc::EPIPE),
            });
        }
        let msg = Msg::from_bytes(&b);
        match msg.kind {
            child::MSG_USERNS => {
                write_maps(init_pid, plan)?;
                to_child
                    .write_all(&[0])
                    .map_err(io_err("signalling", "init"))?;
            }
            child::MSG_PID => {
                // The intermediate child exits right after this message.
                let _ = nix::sys::wait::waitpid(Pid::from_raw(stage_pid), None);
                init_pid = msg.value;
                reaper.pids = vec![init_pid];
                to_child
                    .write_all(&[0])
                    .map_err(io_err("signalling", "init"))?;
            }
            child::MSG_HOOKS => match on_hooks(init_pid) {
                Ok(state) if state.len() > state_capacity => {
                    let _ = to_child.write_all(&[1]);
                    return Err(Error::StateTooLarge {
                        len: state.len(),
                        capacity: state_capacity,
                    });
                }
                Ok(state) => {
                    let mut out = vec![0u8];
                    out.extend_from_slice(&(state.len() as u32).to_ne_bytes());
                    out.extend_from_slice(&state);
                    to_child
                        .write_all(&out)
                        .map_err(io_err("signalling", "init"))?;
                }
                Err(e) => {
                    let _ = to_child.write_all(&[1]);
                    return Err(e);
                }
            },
            child::MSG_SECCOMP => {
                let listener = plan.process.seccomp.as_ref().and_then(|f| f.listener());
                match listener.map(|l| hand_over_listener(l, init_pid, msg.value, &agent_state)) {
                    Some(Ok(())) => to_child
                        .write_all(&[0])
                        .map_err(io_err("signalling", "init"))?,
                    Some(Err(e)) => {
                        let _ = to_child.write_all(&[1]);
                        return Err(e);
                    }
                    None => {
                        let _ = to_child.write_all(&[1]);
                        return Err(Error::Init {
                            step: "protocol".into(),
                            detail: Some("a seccomp listener without a listenerPath".into()),
                            source: std::io::Error::from_raw_os_error(libc::EPROTO),
                        });
                    }
                }
            }
            child::MSG_READY => {
                ready = true;
                if !wait_exec {
                    reaper.pids.clear();
                    return Ok(init_pid);
                }
            }
            child::MSG_ERROR => return Err(describe(plan, msg)),
            _ => {
                return Err(Error::Init {
                    step: "protocol".into(),
                    detail: Some(format!("unexpected message {}", msg.kind)),
                    source: std::io::Error::from_raw_os_error(libc::EPROTO),
                });
            }
        }
    }
}

/// Takes the init's seccomp listener fd (`pidfd_getfd`) and sends it, with the
/// container's process state, to the agent at `listenerPath`, as the runtime
/// spec's seccomp-notify hand-off describes: one message on a unix stream
/// socket, the state JSON as data, the fd as `SCM_RIGHTS`.
fn hand_over_listener(
    listener: &crate::seccomp::Listener,
    pid: i32,
    fd: i32,
    state: &serde_json::Value,
) -> Result<()> {
    let fail = |operation: &'static str| {
        let path = listener.path.clone();
        move |e: std::io::Error| Error::Io {
            operation,
            path,
            source: e,
        }
    };
    let rpid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))
        .map_err(fail("taking the seccomp listener for"))?;
    let pidfd = rustix::process::pidfd_open(rpid, rustix::process::PidfdFlags::empty())
        .map_err(|e| fail("taking the seccomp listener for")(e.into()))?;
    let seccomp_fd =
        rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
            .map_err(|e| fail("taking the seccomp listener for")(e.into()))?;
    let mut state = state.clone();
    state["pid"] = serde_json::json!(pid);
    let message = serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": listener.metadata.clone().unwrap_or_default(),
        "state": state,
    });
    let bytes = serde_json::to_vec(&message).unwrap_or_default();
    let stream = std::os::unix::net::UnixStream::connect(&listener.path)
        .map_err(fail("connecting to the seccomp agent at"))?;
    let fds = [seccomp_fd.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(&bytes)];
    nix::sys::socket::sendmsg::<()>(
        stream.as_raw_fd(),
        &iov,
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map_err(|e| fail("sending the seccomp listener to")(e.into()))?;
    Ok(())
}

fn read_full(f: &mut File, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Error::Sys {
                    operation: "reading from init",
                    source: e,
                });
            }
        }
    }
    Ok(got)
}

/// A failed container-side hook: `index` counts createContainer hooks, then startContainer ones.
fn hook_error(plan: &InitPlan, step: Option<Step>, index: usize, value: i32) -> Error {
    let creates = plan.create_container_hooks.len();
    let (kind, hook) = if index < creates {
        ("createContainer", plan.create_container_hooks.get(index))
    } else {
        (
            "startContainer",
            plan.start_container_hooks.get(index - creates),
        )
    };
    let path = hook
        .map(|h| std::path::PathBuf::from(h.path.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let (reason, source) = match step {
        Some(Step::HookExit) if libc::WIFEXITED(value) => (
            format!("exited with status {}", libc::WEXITSTATUS(value)),
            None,
        ),
        Some(Step::HookExit) if libc::WIFSIGNALED(value) => {
            (format!("killed by signal {}", libc::WTERMSIG(value)), None)
        }
        Some(Step::HookExit) => (format!("failed (wait status {value:#x})"), None),
        Some(Step::HookTimeout) => (
            format!(
                "timed out after {}s",
                hook.map_or(0, |h| h.timeout_ms / 1000)
            ),
            None,
        ),
        _ => (
            "cannot be run".to_string(),
            Some(std::io::Error::from_raw_os_error(value)),
        ),
    };
    Error::Hook {
        kind,
        path,
        reason,
        source,
    }
}

/// Turns a child's `(step, index, errno)` into an error naming the step and its subject.
fn describe(plan: &InitPlan, msg: Msg) -> Error {
    let i = msg.index as usize;
    let step = Step::from_u32(msg.step);
    let rootfs = plan.rootfs.as_ref();
    let mount = |i: usize| {
        rootfs
            .and_then(|r| r.mounts.get(i))
            .map(|m| m.dest.display.clone())
    };
    let (name, detail): (&str, Option<String>) = match step {
        Some(Step::Signals) => ("resetting signals", None),
        Some(Step::CloseFds) => ("closing inherited fds", None),
        Some(Step::Setns) if msg.index == u32::MAX => {
            ("joining the container's namespaces through its pidfd", None)
        }
        Some(Step::Setns) => (
            "joining namespace",
            plan.join.get(i).map(|j| j.path.display().to_string()),
        ),
        Some(Step::Unshare) => ("unshare", None),
        Some(Step::SyncParent) => ("waiting for the runtime", None),
        Some(Step::TimeOffsets) => ("writing time namespace offsets", None),
        Some(Step::Fork) => ("forking into the namespaces", None),
        Some(Step::Setsid) => ("setsid", None),
        Some(Step::Procfs) => ("opening a private procfs", None),
        Some(Step::RootPropagation) => ("setting rootfs propagation", None),
        Some(Step::RootBind) => (
            "bind-mounting rootfs",
            rootfs.map(|r| r.rootfs.to_string_lossy().into_owned()),
        ),
        Some(Step::OpenRoot) => (
            "opening rootfs",
            rootfs.map(|r| r.rootfs.to_string_lossy().into_owned()),
        ),
        Some(Step::MountTarget) => ("resolving mount destination", mount(i)),
        Some(Step::Mount) => ("mount", mount(i)),
        Some(Step::MountRemount) => ("remounting with options", mount(i)),
        Some(Step::MountPropagation) => ("setting mount propagation", mount(i)),
        Some(Step::MountSymlink) => ("mount destination is a symlink, refusing", mount(i)),
        Some(Step::Device) => (
            "creating device",
            rootfs
                .and_then(|r| r.devices.get(i))
                .map(|d| format!("{}/{}", d.parent.display, d.name.to_string_lossy())),
        ),
        Some(Step::DevSymlink) => ("creating /dev symlinks", None),
        Some(Step::Mask) => (
            "masking",
            rootfs
                .and_then(|r| r.masked.get(i))
                .map(|p| p.display.clone()),
        ),
        Some(Step::Readonly) => (
            "making read-only",
            rootfs
                .and_then(|r| r.readonly.get(i))
                .map(|p| p.display.clone()),
        ),
        Some(Step::Console) => ("setting up the console", None),
        Some(Step::Stdio) => (
            "setting up stdio",
            Some(
                ["stdin", "stdout", "stderr"]
                    .get(i)
                    .copied()
                    .unwrap_or("?")
                    .to_string(),
            ),
        ),
        Some(Step::Pivot) => ("entering rootfs (pivot_root)", None),
        Some(Step::ReadonlyRoot) => ("making rootfs read-only", None),
        Some(Step::Hostname) => ("sethostname", None),
        Some(Step::Domainname) => ("setdomainname", None),
        Some(Step::Sysctl) => (
            "writing sysctl",
            plan.sysctl
                .get(i)
                .map(|s| s.0.to_string_lossy().into_owned()),
        ),
        Some(Step::Rlimit) => (
            "setrlimit",
            plan.process.rlimits.get(i).map(|r| {
                format!(
                    "{} (soft {}, hard {}; raising a hard limit needs CAP_SYS_RESOURCE)",
                    r.name, r.soft, r.hard
                )
            }),
        ),
        Some(Step::OomScoreAdj) => (
            "writing oom_score_adj",
            plan.process
                .oom_score_adj
                .as_ref()
                .map(|v| v.to_string_lossy().into_owned()),
        ),
        Some(Step::Personality) => ("personality", None),
        Some(Step::Groups) => ("setgroups", None),
        Some(Step::Setgid) => ("setresgid", Some(plan.process.gid.to_string())),
        Some(Step::Setuid) => ("setresuid", Some(plan.process.uid.to_string())),
        Some(Step::Bounding) => ("dropping bounding capability", Some(i.to_string())),
        Some(Step::Capset) => ("capset", None),
        Some(Step::Ambient) => ("raising ambient capability", Some(i.to_string())),
        Some(Step::NoNewPrivs) => ("setting no_new_privs", None),
        Some(Step::Cwd) => (
            "chdir to cwd",
            Some(plan.process.cwd.to_string_lossy().into_owned()),
        ),
        Some(Step::CwdOutsideRoot) => (
            "cwd is outside the container root",
            Some(plan.process.cwd.to_string_lossy().into_owned()),
        ),
        Some(Step::ExecNotFound) => (
            if plan.process.path_dirs.is_empty() {
                "exec: the program cannot be run"
            } else {
                "exec: executable file not found in $PATH"
            },
            plan.process
                .args
                .first()
                .map(|a| format!("{:?}", a.to_string_lossy())),
        ),
        Some(Step::WaitStart) => ("waiting for start", None),
        Some(Step::Hook) | Some(Step::HookTimeout) | Some(Step::HookExit) => {
            return hook_error(plan, step, i, msg.value);
        }
        Some(Step::Exec) => (
            "exec",
            plan.process
                .args
                .first()
                .map(|a| a.to_string_lossy().into_owned()),
        ),
        Some(Step::Chroot) => ("entering the container root", None),
        Some(Step::IoPriority) => ("ioprio_set", None),
        Some(Step::Keyring) => ("joining a new session keyring", None),
        Some(Step::Cgroup) => ("joining the container's cgroup v1 hierarchies", None),
        Some(Step::Seccomp) => ("installing the seccomp filter", None),
        Some(Step::Scheduler) => ("sched_setattr", None),
        Some(Step::Apparmor) => (
            "applying AppArmor profile",
            plan.process
                .apparmor
                .as_ref()
                .map(|a| a.to_string_lossy().into_owned()),
        ),
        None => ("unknown step", Some(msg.step.to_string())),
    };
    Error::Init {
        step: name.to_string(),
        detail,
        source: std::io::Error::from_raw_os_error(msg.value),
    }
}
