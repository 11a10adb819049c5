//! The container's first process: carries out an [`InitPlan`] between `clone` and
//! `exec`. It runs in a copy of a possibly multi-threaded parent, so it only makes
//! raw system calls: no allocation, no locks, no logging, no panics. A failed
//! step is reported to the parent as `(step, index, errno)` and the child exits.

use std::convert::Infallible;
use std::os::fd::RawFd;

use libc::{c_char, c_ulong};

use crate::plan::InitPlan;
use crate::sys::{self, Errno};

mod devices;
mod hooks;
mod process;
mod procfs;
mod resolve;
mod rootfs;

use devices::setup_console;
use hooks::{report_start_hook_failure, run_hook};
use process::{
    close_other_fds_keep, find_executable, reset_signals, seccomp_filter, setup_process,
};
use procfs::{private_procfs, write_proc};
use rootfs::{enter_root, prepare_rootfs};

/// Messages the child sends up its pipe.
pub(crate) const MSG_ERROR: u32 = 1;
pub(crate) const MSG_USERNS: u32 = 2;
pub(crate) const MSG_PID: u32 = 3;
pub(crate) const MSG_HOOKS: u32 = 4;
pub(crate) const MSG_READY: u32 = 5;
/// The value is the number of our seccomp listener fd, for the parent to take
/// (`pidfd_getfd`) and hand to the agent at `listenerPath`; it answers one byte.
pub(crate) const MSG_SECCOMP: u32 = 6;

/// One message: kind, step, index into the plan's list for that step, and a value (errno or pid).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Msg {
    pub kind: u32,
    pub step: u32,
    pub index: u32,
    pub value: i32,
}

impl Msg {
    pub(crate) fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.kind.to_ne_bytes());
        b[4..8].copy_from_slice(&self.step.to_ne_bytes());
        b[8..12].copy_from_slice(&self.index.to_ne_bytes());
        b[12..16].copy_from_slice(&self.value.to_ne_bytes());
        b
    }
    pub(crate) fn from_bytes(b: &[u8; 16]) -> Msg {
        let w = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Msg {
            kind: u32::from_ne_bytes(w(0)),
            step: u32::from_ne_bytes(w(4)),
            index: u32::from_ne_bytes(w(8)),
            value: i32::from_ne_bytes(w(12)),
        }
    }
}

/// Setup steps, reported with errors so the parent can say what failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Step {
    Signals = 1,
    CloseFds,
    Setns,
    Unshare,
    SyncParent,
    TimeOffsets,
    Fork,
    Setsid,
    Procfs,
    RootPropagation,
    RootBind,
    OpenRoot,
    MountTarget,
    Mount,
    MountRemount,
    MountPropagation,
    MountSymlink,
    Device,
    DevSymlink,
    Mask,
    Readonly,
    Console,
    Pivot,
    ReadonlyRoot,
    Hostname,
    Domainname,
    Sysctl,
    Rlimit,
    OomScoreAdj,
    Personality,
    Groups,
    Setgid,
    Setuid,
    Bounding,
    Capset,
    Ambient,
    NoNewPrivs,
    Cwd,
    CwdOutsideRoot,
    ExecNotFound,
    WaitStart,
    Hook,
    HookTimeout,
    /// A hook ran and failed; the message's value is its wait status, not an errno.
    HookExit,
    Exec,
    Chroot,
    IoPriority,
    Scheduler,
    Apparmor,
    Keyring,
    Cgroup,
    Seccomp,
    Stdio,
}

impl Step {
    pub(crate) const ALL: [Step; 53] = [
        Step::Signals,
        Step::CloseFds,
        Step::Setns,
        Step::Unshare,
        Step::SyncParent,
        Step::TimeOffsets,
        Step::Fork,
        Step::Setsid,
        Step::Procfs,
        Step::RootPropagation,
        Step::RootBind,
        Step::OpenRoot,
        Step::MountTarget,
        Step::Mount,
        Step::MountRemount,
        Step::MountPropagation,
        Step::MountSymlink,
        Step::Device,
        Step::DevSymlink,
        Step::Mask,
        Step::Readonly,
        Step::Console,
        Step::Pivot,
        Step::ReadonlyRoot,
        Step::Hostname,
        Step::Domainname,
        Step::Sysctl,
        Step::Rlimit,
        Step::OomScoreAdj,
        Step::Personality,
        Step::Groups,
        Step::Setgid,
        Step::Setuid,
        Step::Bounding,
        Step::Capset,
        Step::Ambient,
        Step::NoNewPrivs,
        Step::Cwd,
        Step::CwdOutsideRoot,
        Step::ExecNotFound,
        Step::WaitStart,
        Step::Hook,
        Step::HookTimeout,
        Step::HookExit,
        Step::Exec,
        Step::Chroot,
        Step::IoPriority,
        Step::Scheduler,
        Step::Apparmor,
        Step::Keyring,
        Step::Cgroup,
        Step::Seccomp,
        Step::Stdio,
    ];

    pub(crate) fn from_u32(v: u32) -> Option<Step> {
        Step::ALL.iter().copied().find(|s| *s as u32 == v)
    }
}

/// A failed step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fail {
    pub step: Step,
    pub index: u32,
    pub errno: Errno,
}

type R<T> = Result<T, Fail>;

fn at(step: Step, index: usize) -> impl Fn(Errno) -> Fail {
    move |errno| Fail {
        step,
        index: index as u32,
        errno,
    }
}

/// Fds the child uses; everything else is closed first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildFds {
    pub to_parent: RawFd,
    pub from_parent: RawFd,
    /// The exec FIFO (opened read-write by the parent) or -1 to exec at once.
    pub fifo: RawFd,
    /// One fd per `plan.join` entry.
    pub join: [RawFd; 8],
    /// A pidfd whose namespaces (`plan.join_pidfd_flags`) are joined, or -1.
    pub pidfd: RawFd,
    /// `cgroup.procs` of each v1 cgroup to join (`0` written to each), -1 for none.
    pub cgroup_procs: [RawFd; 12],
    /// Connected `--console-socket` or -1.
    pub console: RawFd,
    /// Fds below this number are the caller's (stdio plus `--preserve-fds`).
    pub keep_below: RawFd,
    /// For exec: the container's root dir, to chroot into after joining its mount namespace.
    pub exec_root: RawFd,
    /// What goes on fds 0, 1 and 2, or -1 to keep the caller's. The parent
    /// made these copies above every fd the child keeps.
    pub stdio: [RawFd; 3],
}

/// Everything the child needs, prepared before the clone.
#[derive(Debug)]
pub(crate) struct ChildArgs<'a> {
    pub plan: &'a InitPlan,
    pub argv: &'a [*const c_char],
    pub envp: &'a [*const c_char],
    /// argv and envp of `create_container_hooks` then `start_container_hooks`.
    pub hook_ptrs: &'a [(Vec<*const c_char>, Vec<*const c_char>)],
    pub fds: ChildFds,
    /// Receives the state JSON the parent sends for container-side hooks.
    pub state_buf: &'a mut [u8],
}

fn send(fd: RawFd, msg: Msg) {
    let _ = sys::write_all(fd, &msg.to_bytes());
}

/// The child's entry point after clone. Never returns.
pub(crate) fn child_main(a: &mut ChildArgs<'_>) -> ! {
    let code = match run(a) {
        Ok(never) => match never {},
        Err(f) => {
            send(
                a.fds.to_parent,
                Msg {
                    kind: MSG_ERROR,
                    step: f.step as u32,
                    index: f.index,
                    value: f.errno,
                },
            );
            1
        }
    };
    // SAFETY: _exit never returns and skips atexit handlers that belong to the parent.
    unsafe { libc::_exit(code) }
}

/// Installs the seccomp filter; a listener fd goes to the parent first, which
/// answers once the agent has it.
fn install_seccomp(f: &crate::seccomp::Filter, fds: ChildFds) -> R<()> {
    let listener = seccomp_filter(f)?;
    if listener >= 0 {
        send(
            fds.to_parent,
            Msg {
                kind: MSG_SECCOMP,
                value: listener,
                ..Msg::default()
            },
        );
        let r = read_byte(fds.from_parent);
        sys::close(listener);
        if r? != 0 {
            // The parent reports why.
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(1) }
        }
    }
    Ok(())
}

fn read_byte(from_parent: RawFd) -> R<u8> {
    let mut b = [0u8; 1];
    match sys::read_full(from_parent, &mut b) {
        Ok(1) => Ok(b[0]),
        Ok(_) => Err(Fail {
            step: Step::SyncParent,
            index: 0,
            errno: libc::EPIPE,
        }),
        Err(e) => Err(Fail {
            step: Step::SyncParent,
            index: 0,
            errno: e,
        }),
    }
}

fn wait_parent(a: &ChildArgs<'_>) -> R<u8> {
    read_byte(a.fds.from_parent)
}

fn sync_userns(a: &ChildArgs<'_>) -> R<()> {
    send(
        a.fds.to_parent,
        Msg {
            kind: MSG_USERNS,
            ..Msg::default()
        },
    );
    wait_parent(a)?;
    // Become root of the new namespace so later steps act with its full capabilities.
    sys::setresgid(0).map_err(at(Step::Setgid, 0))?;
    sys::setresuid(0).map_err(at(Step::Setuid, 0))?;
    Ok(())
}

fn run(a: &mut ChildArgs<'_>) -> R<Infallible> {
    let plan = a.plan;
    let fds = a.fds;
    crate::timeline::mark("init: cloned (namespaces made)");
    reset_signals().map_err(at(Step::Signals, 0))?;
    // Die with the spawning thread while setup is in progress; cleared before "ready".
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0)
        .map_err(at(Step::Signals, 1))?;
    // The container's own stdio, before anything else is closed.
    for (target, &fd) in fds.stdio.iter().enumerate() {
        if fd >= 0 {
            // SAFETY: duplicating an fd the parent opened for us onto stdio.
            if unsafe { libc::dup2(fd, target as RawFd) } == -1 {
                return Err(at(Step::Stdio, target)(sys::errno()));
            }
        }
    }
    // Drop every fd inherited from the (possibly busy) parent, including other spawns' pipes.
    let mut keep = [-1; 32];
    let mut n = 0;
    for fd in [
        fds.to_parent,
        fds.from_parent,
        fds.fifo,
        fds.console,
        fds.exec_root,
        fds.pidfd,
    ]
    .into_iter()
    .chain(fds.join)
    .chain(fds.cgroup_procs)
    {
        if fd >= 0 && n < keep.len() {
            keep[n] = fd;
            n += 1;
        }
    }
    close_other_fds_keep(&mut keep[..n], fds.keep_below).map_err(at(Step::CloseFds, 0))?;
    // Into the container's v1 cgroups before anything of ours runs, and before a
    // new cgroup namespace is made, so that it is rooted there. (cgroup2 was
    // joined by clone3 itself.)
    for (i, fd) in fds.cgroup_procs.iter().enumerate() {
        if *fd >= 0 {
            sys::write_all(*fd, b"0").map_err(at(Step::Cgroup, i))?;
            sys::close(*fd);
        }
    }
    crate::timeline::mark("init: signals, fds, v1 cgroups joined");
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe { libc::umask(0) };

    if fds.pidfd >= 0 {
        // All at once, and pinned: a pidfd names one process, never a recycled pid.
        // SAFETY: `pidfd` is a pidfd opened by the parent and kept open above.
        if unsafe { libc::setns(fds.pidfd, plan.join_pidfd_flags) } == -1 {
            return Err(Fail {
                step: Step::Setns,
                index: u32::MAX,
                errno: sys::errno(),
            });
        }
        sys::close(fds.pidfd);
    }
    for (i, j) in plan.join.iter().enumerate() {
        let fd = fds.join.get(i).copied().unwrap_or(-1);
        // SAFETY: `fd` is a namespace fd opened by the parent and kept open above.
        let r = unsafe { libc::setns(fd, j.nstype) };
        if r == -1 {
            return Err(Fail {
                step: Step::Setns,
                index: i as u32,
                errno: sys::errno(),
            });
        }
        sys::close(fd);
    }
    if plan.unshare_flags & libc::CLONE_NEWUSER != 0 {
        // SAFETY: unshare only changes this single-threaded process's namespaces.
        if unsafe { libc::unshare(libc::CLONE_NEWUSER) } == -1 {
            return Err(Fail {
                step: Step::Unshare,
                index: 0,
                errno: sys::errno(),
            });
        }
        sync_userns(a)?;
    } else if plan.new_user {
        sync_userns(a)?;
    } else if plan.join.iter().any(|j| j.nstype == libc::CLONE_NEWUSER) {
        // Joined a user namespace (a pod's): become its root, or the mounts
        // and files made below would be of an id it does not map (EOVERFLOW).
        sys::setresgid(0).map_err(at(Step::Setgid, 0))?;
        sys::setresuid(0).map_err(at(Step::Setuid, 0))?;
    }
    let rest = plan.unshare_flags & !libc::CLONE_NEWUSER;
    if rest != 0 {
        // SAFETY: as above.
        if unsafe { libc::unshare(rest) } == -1 {
            return Err(Fail {
                step: Step::Unshare,
                index: 1,
                errno: sys::errno(),
            });
        }
    }
    // Hide /proc/<pid>/exe (the runtime binary) from the container until exec
    // (CVE-2019-5736). Not earlier: an unprivileged parent writing our id maps needs
    // us dumpable. Nothing of the container can see us yet: a new pid namespace has
    // only us, and a joined one gets only our child, forked below.
    sys::prctl(libc::PR_SET_DUMPABLE, 0, 0).map_err(at(Step::Signals, 2))?;
    if let Some(offsets) = &plan.time_offsets {
        let fd = sys::openat(
            libc::AT_FDCWD,
            c"/proc/self/timens_offsets",
            libc::O_WRONLY,
            0,
        )
        .map_err(at(Step::TimeOffsets, 0))?;
        let r = sys::write_all(fd, offsets.as_bytes());
        sys::close(fd);
        r.map_err(at(Step::TimeOffsets, 0))?;
    }
    if plan.two_stage {
        // The payload must be a child to land in a joined or unshared pid/time namespace;
        // CLONE_PARENT makes it the runtime's child so the runtime can wait for it.
        // SAFETY: fork-like raw clone without CLONE_VM: the child gets a copy of this address space.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_PARENT | libc::SIGCHLD) as c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if pid == -1 {
            return Err(Fail {
                step: Step::Fork,
                index: 0,
                errno: sys::errno(),
            });
        }
        if pid > 0 {
            send(
                fds.to_parent,
                Msg {
                    kind: MSG_PID,
                    value: pid as i32,
                    ..Msg::default()
                },
            );
            // SAFETY: _exit ends this intermediate process; the payload continues in the new child.
            unsafe { libc::_exit(0) }
        }
        sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0)
            .map_err(at(Step::Signals, 1))?;
        // Say nothing until the parent has our pid: a message of ours overtaking the
        // intermediate's MSG_PID would be taken as coming from the wrong process.
        wait_parent(a)?;
    }
    if let Some(name) = &plan.session_keyring {
        // KEYCTL_JOIN_SESSION_KEYRING (1): a fresh keyring, not the host's.
        // SAFETY: `name` is NUL-terminated and lives in the plan.
        let r = unsafe { libc::syscall(libc::SYS_keyctl, 1, name.as_ptr()) };
        // Kernels without keys (ENOSYS) have nothing to share either.
        if r == -1 && sys::errno() != libc::ENOSYS {
            return Err(Fail {
                step: Step::Keyring,
                index: 0,
                errno: sys::errno(),
            });
        }
    }
    // SAFETY: setsid has no arguments; a new session detaches from the caller's terminal.
    if unsafe { libc::setsid() } == -1 {
        return Err(Fail {
            step: Step::Setsid,
            index: 0,
            errno: sys::errno(),
        });
    }

    let need_proc = !plan.sysctl.is_empty()
        || plan.process.oom_score_adj.is_some()
        || plan.process.apparmor.is_some();
    let procfd = if need_proc {
        private_procfs().map_err(at(Step::Procfs, 0))?
    } else {
        -1
    };

    crate::timeline::mark("init: setns/unshare, keyring, setsid");
    let mut slave = -1;
    let mut rootfd = -1;
    if let Some(r) = &plan.rootfs {
        rootfd = prepare_rootfs(r, plan, fds, &mut slave)?;
    }
    crate::timeline::mark("init: mounts, devices, masked and read-only paths");
    if fds.exec_root >= 0 {
        // SAFETY: `exec_root` is an open directory fd kept above.
        if unsafe { libc::fchdir(fds.exec_root) } == -1 {
            return Err(Fail {
                step: Step::Chroot,
                index: 0,
                errno: sys::errno(),
            });
        }
        // SAFETY: "." is a static NUL-terminated path.
        if unsafe { libc::chroot(c".".as_ptr()) } == -1 {
            return Err(Fail {
                step: Step::Chroot,
                index: 1,
                errno: sys::errno(),
            });
        }
        sys::close(fds.exec_root);
        if plan.process.terminal && fds.console >= 0 {
            let root = sys::openat(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(at(Step::Console, 0))?;
            let r = setup_console(root, fds.console, plan.process.console_size, false);
            sys::close(root);
            slave = r.map_err(at(Step::Console, 0))?;
        }
    }
    if let Some(h) = &plan.hostname {
        // SAFETY: `h` is a valid buffer of the given length.
        if unsafe { libc::sethostname(h.as_ptr(), h.as_bytes().len()) } == -1 {
            return Err(Fail {
                step: Step::Hostname,
                index: 0,
                errno: sys::errno(),
            });
        }
    }
    if let Some(d) = &plan.domainname {
        // SAFETY: `d` is a valid buffer of the given length.
        if unsafe { libc::setdomainname(d.as_ptr(), d.as_bytes().len()) } == -1 {
            return Err(Fail {
                step: Step::Domainname,
                index: 0,
                errno: sys::errno(),
            });
        }
    }
    for (i, (path, value)) in plan.sysctl.iter().enumerate() {
        write_proc(procfd, path, value.as_bytes()).map_err(at(Step::Sysctl, i))?;
    }
    if let Some(v) = &plan.process.oom_score_adj {
        write_proc(procfd, c"self/oom_score_adj", v.as_bytes())
            .map_err(at(Step::OomScoreAdj, 0))?;
    }
    if let Some(profile) = &plan.process.apparmor {
        // Applied by the kernel at the payload's execve.
        write_proc(
            procfd,
            c"thread-self/attr/apparmor/exec",
            profile.as_bytes(),
        )
        .or_else(|_| write_proc(procfd, c"thread-self/attr/exec", profile.as_bytes()))
        .map_err(at(Step::Apparmor, 0))?;
    }
    sys::close(procfd);

    let hook_count = plan.create_container_hooks.len();
    let mut state_len = 0;
    if plan.runtime_hooks || hook_count > 0 || !plan.start_container_hooks.is_empty() {
        send(
            fds.to_parent,
            Msg {
                kind: MSG_HOOKS,
                ..Msg::default()
            },
        );
        if wait_parent(a)? != 0 {
            // The parent reports the failed hook itself.
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(1) }
        }
        let mut len = [0u8; 4];
        sys::read_full(fds.from_parent, &mut len).map_err(at(Step::SyncParent, 1))?;
        state_len = u32::from_ne_bytes(len) as usize;
        if state_len > a.state_buf.len() {
            return Err(Fail {
                step: Step::SyncParent,
                index: 3,
                errno: libc::E2BIG,
            });
        }
        let buf = a.state_buf.get_mut(..state_len).unwrap_or(&mut []);
        sys::read_full(fds.from_parent, buf).map_err(at(Step::SyncParent, 2))?;
    }
    let state = a.state_buf.get(..state_len).unwrap_or(&[]);
    for (i, h) in plan.create_container_hooks.iter().enumerate() {
        run_hook(h, a.hook_ptrs.get(i), state).map_err(|(step, e)| Fail {
            step,
            index: i as u32,
            errno: e,
        })?;
    }

    crate::timeline::mark("init: hostname, sysctls, hooks");
    if let Some(r) = &plan.rootfs {
        enter_root(r, rootfd)?;
    }
    crate::timeline::mark("init: pivot_root");
    setup_process(plan, slave, fds)?;
    let exe = find_executable(plan)?;
    crate::timeline::mark("init: rlimits, credentials, capabilities, program found");

    // From here on the process outlives the runtime command that created it.
    sys::prctl(libc::PR_SET_PDEATHSIG, 0, 0).map_err(at(Step::Signals, 3))?;
    if plan.process.no_new_privs
        && let Some(f) = &plan.process.seccomp
    {
        // With no_new_privs as late as runc installs it: before the wait for
        // `start`, while the parent can still take a listener fd; after it
        // only write, read, close, the startContainer hooks and execve run.
        install_seccomp(f, fds)?;
    }
    crate::timeline::mark("init: seccomp loaded");
    send(
        fds.to_parent,
        Msg {
            kind: MSG_READY,
            ..Msg::default()
        },
    );
    if fds.fifo >= 0 {
        let mut b = [0u8; 1];
        loop {
            // SAFETY: `b` is a valid one-byte buffer; the fifo fd was kept open above.
            let n = unsafe { libc::read(fds.fifo, b.as_mut_ptr().cast(), 1) };
            if n == 1 {
                break;
            }
            if n == -1 && sys::errno() == libc::EINTR {
                continue;
            }
            return Err(Fail {
                step: Step::WaitStart,
                index: 0,
                errno: if n == 0 { libc::EPIPE } else { sys::errno() },
            });
        }
        sys::close(fds.fifo);
    }
    for (i, h) in plan.start_container_hooks.iter().enumerate() {
        // Indexed after the createContainer hooks, as in `hook_ptrs`.
        if let Err((step, e)) = run_hook(h, a.hook_ptrs.get(hook_count + i), state) {
            // `create` returned long ago and nobody reads our pipe any more: say it
            // on the container's stderr, which whoever started it is watching.
            report_start_hook_failure(h, step, e);
            return Err(Fail {
                step,
                index: (hook_count + i) as u32,
                errno: e,
            });
        }
    }
    crate::timeline::mark("init: started (exec fifo read)");
    // SAFETY: `exe` is NUL-terminated; argv/envp are null-terminated pointer arrays whose
    // strings live in the plan, which outlives this call.
    unsafe { libc::execve(exe, a.argv.as_ptr(), a.envp.as_ptr()) };
    Err(Fail {
        step: Step::Exec,
        index: 0,
        errno: sys::errno(),
    })
}
