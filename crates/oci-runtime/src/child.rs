//! The container's first process: carries out an [`InitPlan`] between `clone` and
//! `exec`. It runs in a copy of a possibly multi-threaded parent, so it only makes
//! raw system calls: no allocation, no locks, no logging, no panics. A failed
//! step is reported to the parent as `(step, index, errno)` and the child exits.

use std::convert::Infallible;
use std::ffi::CStr;
use std::os::fd::RawFd;

use libc::{c_char, c_ulong};

use crate::plan::{HookPlan, InitPlan, MountKind, MountPlan, RelPath, RootfsPlan};
use crate::sys::{self, Errno};

/// Messages the child sends up its pipe.
pub(crate) const MSG_ERROR: u32 = 1;
pub(crate) const MSG_USERNS: u32 = 2;
pub(crate) const MSG_PID: u32 = 3;
pub(crate) const MSG_HOOKS: u32 = 4;
pub(crate) const MSG_READY: u32 = 5;

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
    Exec,
    Chroot,
    IoPriority,
    Scheduler,
    Apparmor,
    Keyring,
}

impl Step {
    pub(crate) const ALL: [Step; 49] = [
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
        Step::Exec,
        Step::Chroot,
        Step::IoPriority,
        Step::Scheduler,
        Step::Apparmor,
        Step::Keyring,
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
    /// Connected `--console-socket` or -1.
    pub console: RawFd,
    /// Fds below this number are the caller's (stdio plus `--preserve-fds`).
    pub keep_below: RawFd,
    /// For exec: the container's root dir, to chroot into after joining its mount namespace.
    pub exec_root: RawFd,
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

fn reset_signals() -> Result<(), Errno> {
    #[repr(C)]
    struct KSigaction {
        handler: usize,
        flags: c_ulong,
        restorer: usize,
        mask: u64,
    }
    let empty: u64 = 0;
    // SAFETY: `empty` is an 8-byte sigset for the kernel; the old-set pointer may be null.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            0usize,
            8usize,
        )
    };
    if r == -1 {
        return Err(sys::errno());
    }
    // Rust ignores SIGPIPE and an ignored disposition survives exec; the payload expects the default.
    let dfl = KSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in [
        libc::SIGPIPE,
        libc::SIGCHLD,
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGWINCH,
    ] {
        // SAFETY: `dfl` is a kernel sigaction struct alive for the call; the old pointer may be null.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KSigaction,
                0usize,
                8usize,
            )
        };
        if r == -1 {
            return Err(sys::errno());
        }
    }
    Ok(())
}

fn wait_parent(a: &ChildArgs<'_>) -> R<u8> {
    let mut b = [0u8; 1];
    match sys::read_full(a.fds.from_parent, &mut b) {
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
    reset_signals().map_err(at(Step::Signals, 0))?;
    // Die with the spawning thread while setup is in progress; cleared before "ready".
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0)
        .map_err(at(Step::Signals, 1))?;
    // Drop every fd inherited from the (possibly busy) parent, including other spawns' pipes.
    let mut keep = [-1; 16];
    let mut n = 0;
    for fd in [
        fds.to_parent,
        fds.from_parent,
        fds.fifo,
        fds.console,
        fds.exec_root,
    ]
    .into_iter()
    .chain(fds.join)
    {
        if fd >= 0 && n < keep.len() {
            keep[n] = fd;
            n += 1;
        }
    }
    close_other_fds_keep(&mut keep[..n], fds.keep_below).map_err(at(Step::CloseFds, 0))?;
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe { libc::umask(0) };

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

    let mut slave = -1;
    let mut rootfd = -1;
    if let Some(r) = &plan.rootfs {
        rootfd = prepare_rootfs(r, plan, fds, &mut slave)?;
    }
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
        state_len = (u32::from_ne_bytes(len) as usize).min(a.state_buf.len());
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

    if let Some(r) = &plan.rootfs {
        enter_root(r, rootfd)?;
    }
    setup_process(plan, slave)?;
    let exe = find_executable(plan)?;

    // From here on the process outlives the runtime command that created it.
    sys::prctl(libc::PR_SET_PDEATHSIG, 0, 0).map_err(at(Step::Signals, 3))?;
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
        run_hook(h, a.hook_ptrs.get(hook_count + i), state).map_err(|(step, e)| Fail {
            step,
            index: i as u32,
            errno: e,
        })?;
    }
    // SAFETY: `exe` is NUL-terminated; argv/envp are null-terminated pointer arrays whose
    // strings live in the plan, which outlives this call.
    unsafe { libc::execve(exe, a.argv.as_ptr(), a.envp.as_ptr()) };
    Err(Fail {
        step: Step::Exec,
        index: 0,
        errno: sys::errno(),
    })
}

/// Closes every fd except stdio, the preserved ones below `keep_below`, and `keep`.
fn close_other_fds_keep(keep: &mut [RawFd], keep_below: RawFd) -> Result<(), Errno> {
    // Fds below `keep_below` (stdio and preserved fds) stay; express them as one range.
    let mut all = [-1; 16];
    let mut n = 0;
    for &fd in keep.iter() {
        if fd >= keep_below && n < all.len() {
            all[n] = fd;
            n += 1;
        }
    }
    let slice = &mut all[..n];
    slice.sort_unstable();
    let mut next = keep_below.max(0) as u32;
    for &fd in slice.iter() {
        let fd = fd as u32;
        if fd > next {
            // SAFETY: close_range only closes this process's own fds in the range.
            let r = unsafe { libc::syscall(libc::SYS_close_range, next, fd - 1, 0u32) };
            if r == -1 {
                return Err(sys::errno());
            }
        }
        next = next.max(fd + 1);
    }
    // SAFETY: as above, for every fd above the highest kept one.
    let r = unsafe { libc::syscall(libc::SYS_close_range, next, u32::MAX, 0u32) };
    if r == -1 { Err(sys::errno()) } else { Ok(()) }
}

/// Opens a private procfs instance that nothing in the container can mount over.
fn private_procfs() -> Result<RawFd, Errno> {
    // SAFETY: "proc" is a static NUL-terminated fs name.
    let fs = unsafe {
        libc::syscall(
            libc::SYS_fsopen,
            c"proc".as_ptr(),
            1u32, /* FSOPEN_CLOEXEC */
        )
    };
    if fs == -1 {
        return Err(sys::errno());
    }
    let fs = fs as RawFd;
    // SAFETY: FSCONFIG_CMD_CREATE (6) takes no key or value.
    let r = unsafe { libc::syscall(libc::SYS_fsconfig, fs, 6u32, 0usize, 0usize, 0u32) };
    if r == -1 {
        let e = sys::errno();
        sys::close(fs);
        return Err(e);
    }
    // SAFETY: `fs` is the configured fs context; FSMOUNT_CLOEXEC (1) with no attributes.
    let m = unsafe { libc::syscall(libc::SYS_fsmount, fs, 1u32, 0u32) };
    let e = sys::errno();
    sys::close(fs);
    if m == -1 { Err(e) } else { Ok(m as RawFd) }
}

/// Writes a procfs file through the private instance, refusing symlinks and mount crossings.
fn write_proc(procfd: RawFd, path: &CStr, value: &[u8]) -> Result<(), Errno> {
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_XDEV | libc::RESOLVE_NO_MAGICLINKS;
    let fd = sys::openat2(procfd, path, libc::O_WRONLY | libc::O_NOFOLLOW, resolve)?;
    let st = sys::fstatfs(fd);
    let r = match st {
        Ok(s) if s.f_type == libc::PROC_SUPER_MAGIC => sys::write_all(fd, value),
        Ok(_) => Err(libc::EXDEV),
        Err(e) => Err(e),
    };
    sys::close(fd);
    r
}

const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Create {
    No,
    Dir,
    File,
}

/// Longest path handled while resolving inside the root.
const PATH_MAX: usize = 4096;

/// A NUL-terminated copy of `bytes` in `buf`.
fn cstr_in<'a>(bytes: &[u8], buf: &'a mut [u8; PATH_MAX]) -> Result<&'a CStr, Errno> {
    if bytes.len() >= PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[bytes.len()] = 0;
    CStr::from_bytes_with_nul(&buf[..=bytes.len()]).map_err(|_| libc::EINVAL)
}

/// Opens `rel` inside `root` as an O_PATH fd, creating missing directories (and the last
/// component as a file or directory) with every step resolved inside the root. A
/// dangling symlink on the way is followed by creating its target, inside the root.
fn resolve(root: RawFd, rel: &RelPath, create: Create) -> Result<RawFd, Errno> {
    match sys::openat2(root, &rel.full, libc::O_PATH, IN_ROOT) {
        Ok(fd) => return Ok(fd),
        Err(libc::ENOENT) if create != Create::No => {}
        Err(e) => return Err(e),
    }
    let mut path = [0u8; PATH_MAX];
    let mut len = rel.full.as_bytes().len().min(PATH_MAX);
    path[..len].copy_from_slice(&rel.full.as_bytes()[..len]);
    let mut scratch = [0u8; PATH_MAX];
    let mut link = [0u8; PATH_MAX];
    for _ in 0..40 {
        match walk_create(root, &path[..len], create, &mut scratch, &mut link)? {
            Walk::Done(fd) => return Ok(fd),
            Walk::Retry(new_len) => {
                path[..new_len].copy_from_slice(&scratch[..new_len]);
                len = new_len;
            }
        }
    }
    Err(libc::ELOOP)
}

enum Walk {
    Done(RawFd),
    /// A dangling symlink was met; the rewritten path is in `scratch[..len]`.
    Retry(usize),
}

fn walk_create(
    root: RawFd,
    path: &[u8],
    create: Create,
    scratch: &mut [u8; PATH_MAX],
    link: &mut [u8; PATH_MAX],
) -> Result<Walk, Errno> {
    // SAFETY: duplicating an fd we own; the copy is closed below or returned.
    let mut parent = unsafe { libc::fcntl(root, libc::F_DUPFD_CLOEXEC, 0) };
    if parent == -1 {
        return Err(sys::errno());
    }
    let mut start = 0;
    while start < path.len() {
        let end = path[start..]
            .iter()
            .position(|b| *b == b'/')
            .map_or(path.len(), |p| start + p);
        let name = &path[start..end];
        let last = end >= path.len();
        if name.is_empty() || name == b"." {
            start = end + 1;
            continue;
        }
        let mut pbuf = [0u8; PATH_MAX];
        let prefix = cstr_in(&path[..end], &mut pbuf)?;
        let mut nbuf = [0u8; PATH_MAX];
        let cname = cstr_in(name, &mut nbuf)?;
        let fd = match sys::openat2(root, prefix, libc::O_PATH, IN_ROOT) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => {
                let made = if last && create == Create::File {
                    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW;
                    match sys::openat(parent, cname, flags, 0o644) {
                        Ok(f) => {
                            sys::close(f);
                            Ok(())
                        }
                        Err(libc::EEXIST) => Ok(()),
                        Err(e) => Err(e),
                    }
                } else {
                    sys::mkdirat(parent, cname, 0o755)
                };
                match made.and_then(|()| sys::openat2(root, prefix, libc::O_PATH, IN_ROOT)) {
                    Ok(fd) => fd,
                    Err(libc::ENOENT) => {
                        // The entry exists but does not resolve: a dangling symlink.
                        // Rewrite the path through its target and start again.
                        // SAFETY: `link` is writable for its length; `cname` is NUL-terminated.
                        let n = unsafe {
                            libc::readlinkat(
                                parent,
                                cname.as_ptr(),
                                link.as_mut_ptr().cast(),
                                PATH_MAX,
                            )
                        };
                        sys::close(parent);
                        if n <= 0 {
                            return Err(libc::ENOENT);
                        }
                        let target = &link[..n as usize];
                        let mut out = 0usize;
                        let mut push = |bytes: &[u8]| -> Result<(), Errno> {
                            if out + bytes.len() >= PATH_MAX {
                                return Err(libc::ENAMETOOLONG);
                            }
                            scratch[out..out + bytes.len()].copy_from_slice(bytes);
                            out += bytes.len();
                            Ok(())
                        };
                        if target.first() != Some(&b'/') {
                            push(&path[..start])?;
                        }
                        push(target)?;
                        if !last {
                            push(b"/")?;
                            push(&path[end + 1..])?;
                        }
                        return Ok(Walk::Retry(out));
                    }
                    Err(e) => {
                        sys::close(parent);
                        return Err(e);
                    }
                }
            }
            Err(e) => {
                sys::close(parent);
                return Err(e);
            }
        };
        sys::close(parent);
        parent = fd;
        start = end + 1;
    }
    Ok(Walk::Done(parent))
}

/// Mount flags that a remount must keep (they may be locked in a user namespace).
fn locked_flags(fd: RawFd) -> c_ulong {
    match sys::fstatfs(fd) {
        Ok(s) => {
            (s.f_flags as c_ulong)
                & (libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC
                    | libc::MS_NOATIME
                    | libc::MS_NODIRATIME)
        }
        Err(_) => 0,
    }
}

fn remount_bind(root: RawFd, rel: &RelPath, flags: c_ulong) -> Result<(), Errno> {
    let fd = sys::openat2(root, &rel.full, libc::O_PATH, IN_ROOT)?;
    let mut buf = [0u8; 32];
    let f = libc::MS_BIND | libc::MS_REMOUNT | flags | locked_flags(fd);
    let r = sys::mount(
        std::ptr::null(),
        sys::fd_path(fd, &mut buf),
        std::ptr::null(),
        f,
        std::ptr::null(),
    );
    sys::close(fd);
    r
}

fn set_propagation(root: RawFd, rel: &RelPath, flags: c_ulong) -> Result<(), Errno> {
    let fd = sys::openat2(root, &rel.full, libc::O_PATH, IN_ROOT)?;
    let mut buf = [0u8; 32];
    let r = sys::mount(
        std::ptr::null(),
        sys::fd_path(fd, &mut buf),
        std::ptr::null(),
        flags,
        std::ptr::null(),
    );
    sys::close(fd);
    r
}

fn do_mount(root: RawFd, m: &MountPlan, i: usize) -> R<()> {
    let mut buf = [0u8; 32];
    let data = m.data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr());
    match &m.kind {
        MountKind::Bind {
            source,
            recursive,
            source_is_dir,
        } => {
            let create = if *source_is_dir {
                Create::Dir
            } else {
                Create::File
            };
            let dst = resolve(root, &m.dest, create).map_err(at(Step::MountTarget, i))?;
            let rec = if *recursive { libc::MS_REC } else { 0 };
            let r = sys::mount(
                source.as_ptr(),
                sys::fd_path(dst, &mut buf),
                std::ptr::null(),
                libc::MS_BIND | rec,
                std::ptr::null(),
            );
            sys::close(dst);
            r.map_err(at(Step::Mount, i))?;
            let extra = m.flags & !libc::MS_REC;
            if extra != 0 {
                remount_bind(root, &m.dest, extra).map_err(at(Step::MountRemount, i))?;
            }
        }
        MountKind::Fs { fstype, source } => {
            let dst = resolve(root, &m.dest, Create::Dir).map_err(at(Step::MountTarget, i))?;
            let special = matches!(fstype.as_bytes(), b"proc" | b"sysfs");
            if special {
                // A symlinked /proc or /sys in the image would move the mount elsewhere.
                let link =
                    sys::openat2(root, &m.dest.full, libc::O_PATH | libc::O_NOFOLLOW, IN_ROOT);
                let is_link = match link {
                    Ok(fd) => {
                        let st = sys::fstat(fd);
                        sys::close(fd);
                        st.map(|s| s.st_mode & libc::S_IFMT != libc::S_IFDIR)
                            .unwrap_or(true)
                    }
                    Err(_) => true,
                };
                if is_link {
                    sys::close(dst);
                    return Err(Fail {
                        step: Step::MountSymlink,
                        index: i as u32,
                        errno: libc::ELOOP,
                    });
                }
            }
            let r = sys::mount(
                source.as_ptr(),
                sys::fd_path(dst, &mut buf),
                fstype.as_ptr(),
                m.flags,
                data,
            );
            sys::close(dst);
            r.map_err(at(Step::Mount, i))?;
        }
        MountKind::CgroupV1 { dirs, links } => {
            let dst = resolve(root, &m.dest, Create::Dir).map_err(at(Step::MountTarget, i))?;
            let base = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            let r = sys::mount(
                c"tmpfs".as_ptr(),
                sys::fd_path(dst, &mut buf),
                c"tmpfs".as_ptr(),
                base,
                c"mode=755".as_ptr(),
            );
            sys::close(dst);
            r.map_err(at(Step::Mount, i))?;
            let t = sys::openat2(
                root,
                &m.dest.full,
                libc::O_PATH | libc::O_DIRECTORY,
                IN_ROOT,
            )
            .map_err(at(Step::MountTarget, i))?;
            for (name, host) in dirs {
                let step = || -> Result<(), Errno> {
                    sys::mkdirat(t, name, 0o755)?;
                    let sub = sys::openat(
                        t,
                        name,
                        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                        0,
                    )?;
                    let mut b = [0u8; 32];
                    let r = sys::mount(
                        host.as_ptr(),
                        sys::fd_path(sub, &mut b),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    );
                    sys::close(sub);
                    r?;
                    let sub = sys::openat(
                        t,
                        name,
                        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                        0,
                    )?;
                    let flags = libc::MS_BIND
                        | libc::MS_REMOUNT
                        | libc::MS_RDONLY
                        | base
                        | locked_flags(sub);
                    let r = sys::mount(
                        std::ptr::null(),
                        sys::fd_path(sub, &mut b),
                        std::ptr::null(),
                        flags,
                        std::ptr::null(),
                    );
                    sys::close(sub);
                    r
                };
                if let Err(e) = step() {
                    sys::close(t);
                    return Err(Fail {
                        step: Step::Mount,
                        index: i as u32,
                        errno: e,
                    });
                }
            }
            for (link, target) in links {
                if link != target {
                    // SAFETY: both strings are NUL-terminated and live in the plan.
                    let _ = unsafe { libc::symlinkat(target.as_ptr(), t, link.as_ptr()) };
                }
            }
            if m.flags & libc::MS_RDONLY != 0 {
                let r = sys::mount(
                    std::ptr::null(),
                    sys::fd_path(t, &mut buf),
                    std::ptr::null(),
                    libc::MS_REMOUNT | libc::MS_RDONLY | base,
                    c"mode=755".as_ptr(),
                );
                if let Err(e) = r {
                    sys::close(t);
                    return Err(Fail {
                        step: Step::MountRemount,
                        index: i as u32,
                        errno: e,
                    });
                }
            }
            sys::close(t);
        }
    }
    for p in &m.propagation {
        set_propagation(root, &m.dest, *p).map_err(at(Step::MountPropagation, i))?;
    }
    Ok(())
}

/// Mounts, devices, masks, read-only paths and the console, all relative to the
/// rootfs fd; returns the rootfs fd for [`enter_root`].
fn prepare_rootfs(r: &RootfsPlan, plan: &InitPlan, fds: ChildFds, slave: &mut RawFd) -> R<RawFd> {
    let null = std::ptr::null();
    // Keep our mounts from propagating back to the host.
    sys::mount(null, c"/".as_ptr(), null, r.propagation, null)
        .map_err(at(Step::RootPropagation, 0))?;
    // pivot_root needs the new root to be a mount point.
    sys::mount(
        r.rootfs.as_ptr(),
        r.rootfs.as_ptr(),
        null,
        libc::MS_BIND | libc::MS_REC,
        null,
    )
    .map_err(at(Step::RootBind, 0))?;
    let root = sys::openat(
        libc::AT_FDCWD,
        &r.rootfs,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .map_err(at(Step::OpenRoot, 0))?;
    for (i, m) in r.mounts.iter().enumerate() {
        do_mount(root, m, i)?;
    }
    for (i, d) in r.devices.iter().enumerate() {
        make_device(root, d, plan.new_user).map_err(at(Step::Device, i))?;
    }
    if r.populate_dev {
        dev_symlinks(root).map_err(at(Step::DevSymlink, 0))?;
    }
    if plan.process.terminal && fds.console >= 0 {
        *slave = setup_console(root, fds.console, plan.process.console_size, true)
            .map_err(at(Step::Console, 0))?;
    }
    let cwd = resolve(root, &r.cwd, Create::Dir).map_err(at(Step::Cwd, 0))?;
    sys::close(cwd);
    let mut b1 = [0u8; 32];
    let mut b2 = [0u8; 32];
    // The host's /dev/null, opened in this mount namespace (a bind source must be in it)
    // and checked to be the null device: a symlinked /dev/null in the image cannot
    // redirect the masking binds.
    let devnull = if r.masked.is_empty() {
        -1
    } else {
        open_devnull().map_err(at(Step::Mask, usize::MAX))?
    };
    for (i, p) in r.masked.iter().enumerate() {
        let fd = match sys::openat2(root, &p.full, libc::O_PATH, IN_ROOT) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => continue,
            Err(e) => {
                return Err(Fail {
                    step: Step::Mask,
                    index: i as u32,
                    errno: e,
                });
            }
        };
        // Stat first: binding /dev/null onto a directory fails, and a failed mount is slow.
        let st = sys::fstat(fd).map_err(at(Step::Mask, i));
        let res = st.and_then(|st| {
            let target = sys::fd_path(fd, &mut b2);
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                let f = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
                sys::mount(
                    c"tmpfs".as_ptr(),
                    target,
                    c"tmpfs".as_ptr(),
                    f,
                    c"size=0,mode=755".as_ptr(),
                )
            } else {
                sys::mount(
                    sys::fd_path(devnull, &mut b1),
                    target,
                    null,
                    libc::MS_BIND,
                    null,
                )
            }
            .map_err(at(Step::Mask, i))
        });
        sys::close(fd);
        if res.is_err() {
            sys::close(devnull);
        }
        res?;
    }
    sys::close(devnull);
    for (i, p) in r.readonly.iter().enumerate() {
        let fd = match sys::openat2(root, &p.full, libc::O_PATH, IN_ROOT) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => continue,
            Err(e) => {
                return Err(Fail {
                    step: Step::Readonly,
                    index: i as u32,
                    errno: e,
                });
            }
        };
        let target = sys::fd_path(fd, &mut b2);
        let res = sys::mount(target, target, null, libc::MS_BIND | libc::MS_REC, null);
        sys::close(fd);
        res.map_err(at(Step::Readonly, i))?;
        remount_bind(root, p, libc::MS_RDONLY).map_err(at(Step::Readonly, i))?;
    }
    Ok(root)
}

fn open_devnull() -> Result<RawFd, Errno> {
    let fd = sys::openat(
        libc::AT_FDCWD,
        c"/dev/null",
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
    )?;
    match sys::fstat(fd) {
        Ok(st)
            if st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3) =>
        {
            Ok(fd)
        }
        Ok(_) => {
            sys::close(fd);
            Err(libc::ENODEV)
        }
        Err(e) => {
            sys::close(fd);
            Err(e)
        }
    }
}

fn make_device(root: RawFd, d: &crate::plan::DevicePlan, new_user: bool) -> Result<(), Errno> {
    let parent = resolve(root, &d.parent, Create::Dir)?;
    let res = (|| {
        // SAFETY: `d.name` is NUL-terminated; unlinking inside the resolved parent dir.
        let r = unsafe { libc::unlinkat(parent, d.name.as_ptr(), 0) };
        if r == -1 && sys::errno() != libc::ENOENT {
            return Err(sys::errno());
        }
        if new_user {
            // mknod is not allowed in a user namespace: bind the host's node instead.
            let f = sys::openat(
                parent,
                &d.name,
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
                0o644,
            )?;
            sys::close(f);
            let t = sys::openat(parent, &d.name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
            let mut b = [0u8; 32];
            let r = sys::mount(
                d.host.as_ptr(),
                sys::fd_path(t, &mut b),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            );
            sys::close(t);
            return r;
        }
        // SAFETY: `d.name` is NUL-terminated; mode and rdev are plain integers.
        if unsafe { libc::mknodat(parent, d.name.as_ptr(), d.mode, d.rdev) } == -1 {
            return Err(sys::errno());
        }
        // SAFETY: as above; AT_SYMLINK_NOFOLLOW so a raced symlink is not followed.
        if unsafe {
            libc::fchownat(
                parent,
                d.name.as_ptr(),
                d.uid,
                d.gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } == -1
        {
            return Err(sys::errno());
        }
        Ok(())
    })();
    sys::close(parent);
    res
}

fn dev_symlinks(root: RawFd) -> Result<(), Errno> {
    let dev = sys::openat2(root, c"dev", libc::O_PATH | libc::O_DIRECTORY, IN_ROOT)?;
    let links: [(&CStr, &CStr); 6] = [
        (c"/proc/self/fd", c"fd"),
        (c"/proc/self/fd/0", c"stdin"),
        (c"/proc/self/fd/1", c"stdout"),
        (c"/proc/self/fd/2", c"stderr"),
        (c"pts/ptmx", c"ptmx"),
        (c"/proc/kcore", c"core"),
    ];
    for (target, name) in links {
        // SAFETY: both strings are static and NUL-terminated; `dev` is an open dir fd.
        if unsafe { libc::symlinkat(target.as_ptr(), dev, name.as_ptr()) } == -1
            && sys::errno() != libc::EEXIST
        {
            let e = sys::errno();
            sys::close(dev);
            return Err(e);
        }
    }
    sys::close(dev);
    Ok(())
}

/// Allocates the container's pty, sends the master to the console socket and binds
/// the slave on /dev/console. Returns the slave fd.
/// With `bind_console` false (exec) the container's /dev/console is left alone.
fn setup_console(
    root: RawFd,
    sock: RawFd,
    size: Option<(u16, u16)>,
    bind_console: bool,
) -> Result<RawFd, Errno> {
    const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;
    let master = sys::openat2(root, c"dev/ptmx", libc::O_RDWR | libc::O_NOCTTY, IN_ROOT)?;
    let res = (|| {
        // The ptmx must belong to the container's devpts, not whatever the image put there.
        if sys::fstatfs(master)?.f_type != DEVPTS_SUPER_MAGIC {
            return Err(libc::EXDEV);
        }
        let unlock: libc::c_int = 0;
        // SAFETY: TIOCSPTLCK reads an int from the pointer, which is valid for the call.
        if unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &unlock) } == -1 {
            return Err(sys::errno());
        }
        let mut n: libc::c_uint = 0;
        // SAFETY: TIOCGPTN writes an unsigned int into `n`.
        if unsafe { libc::ioctl(master, libc::TIOCGPTN, &mut n) } == -1 {
            return Err(sys::errno());
        }
        // SAFETY: TIOCGPTPEER takes open flags and returns a new fd for the slave.
        let slave = unsafe {
            libc::ioctl(
                master,
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        };
        if slave == -1 {
            return Err(sys::errno());
        }
        if let Some((rows, cols)) = size {
            let ws = libc::winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCSWINSZ reads a winsize from the pointer.
            unsafe { libc::ioctl(slave, libc::TIOCSWINSZ, &ws) };
        }
        let mut name = [0u8; 32];
        let prefix = b"/dev/pts/";
        name[..prefix.len()].copy_from_slice(prefix);
        let len = prefix.len() + sys::write_decimal(n as u64, &mut name[prefix.len()..31]);
        sys::send_fd(sock, master, name.get(..len).unwrap_or(&[]))?;
        if !bind_console {
            return Ok(slave);
        }
        // /dev/console: must be a plain file or device we create, never a symlink.
        let dev = sys::openat2(root, c"dev", libc::O_PATH | libc::O_DIRECTORY, IN_ROOT)?;
        let made = match sys::openat(
            dev,
            c"console",
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
            0o600,
        ) {
            Ok(f) => {
                sys::close(f);
                Ok(())
            }
            Err(libc::EEXIST) => Ok(()),
            Err(e) => Err(e),
        };
        let target =
            made.and_then(|()| sys::openat(dev, c"console", libc::O_PATH | libc::O_NOFOLLOW, 0));
        sys::close(dev);
        let target = target?;
        let st = sys::fstat(target)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            sys::close(target);
            return Err(libc::ELOOP);
        }
        let mut b1 = [0u8; 32];
        let mut b2 = [0u8; 32];
        let r = sys::mount(
            sys::fd_path(slave, &mut b1),
            sys::fd_path(target, &mut b2),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        );
        sys::close(target);
        r.map(|()| slave)
    })();
    sys::close(master);
    res
}

/// pivot_root (or MS_MOVE + chroot) into the prepared rootfs, then the read-only root.
fn enter_root(r: &RootfsPlan, root: RawFd) -> R<()> {
    let null = std::ptr::null();
    // SAFETY: `root` is the rootfs dir fd from prepare_rootfs.
    if unsafe { libc::fchdir(root) } == -1 {
        return Err(Fail {
            step: Step::Pivot,
            index: 0,
            errno: sys::errno(),
        });
    }
    sys::close(root);
    if r.pivot {
        // SAFETY: both paths are static "."; pivot_root stacks the old root under the new one.
        if unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) } == -1 {
            return Err(Fail {
                step: Step::Pivot,
                index: 1,
                errno: sys::errno(),
            });
        }
        // The old root is now on top of "."; keep its unmount from reaching the host, then detach it.
        sys::mount(
            null,
            c".".as_ptr(),
            null,
            libc::MS_SLAVE | libc::MS_REC,
            null,
        )
        .map_err(at(Step::Pivot, 2))?;
        // SAFETY: "." is a static path; MNT_DETACH lazily drops the old root.
        if unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) } == -1 {
            return Err(Fail {
                step: Step::Pivot,
                index: 3,
                errno: sys::errno(),
            });
        }
    } else {
        sys::mount(c".".as_ptr(), c"/".as_ptr(), null, libc::MS_MOVE, null)
            .map_err(at(Step::Pivot, 4))?;
        // SAFETY: "." is a static path.
        if unsafe { libc::chroot(c".".as_ptr()) } == -1 {
            return Err(Fail {
                step: Step::Pivot,
                index: 5,
                errno: sys::errno(),
            });
        }
    }
    // SAFETY: "/" is a static path.
    if unsafe { libc::chdir(c"/".as_ptr()) } == -1 {
        return Err(Fail {
            step: Step::Pivot,
            index: 6,
            errno: sys::errno(),
        });
    }
    if r.readonly_root {
        let fd = sys::openat(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(at(Step::ReadonlyRoot, 0))?;
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked_flags(fd);
        sys::close(fd);
        sys::mount(null, c"/".as_ptr(), null, flags, null).map_err(at(Step::ReadonlyRoot, 0))?;
    }
    Ok(())
}

fn setup_process(plan: &InitPlan, slave: RawFd) -> R<()> {
    let p = &plan.process;
    if slave >= 0 {
        // SAFETY: `slave` is the pty we allocated; make it our controlling terminal and stdio.
        if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } == -1 {
            return Err(Fail {
                step: Step::Console,
                index: 1,
                errno: sys::errno(),
            });
        }
        // SAFETY: changing ownership of our own pty fd.
        unsafe { libc::fchown(slave, p.uid, p.gid) };
        for fd in 0..3 {
            // SAFETY: duplicating an open fd onto stdio.
            if unsafe { libc::dup2(slave, fd) } == -1 {
                return Err(Fail {
                    step: Step::Console,
                    index: 2,
                    errno: sys::errno(),
                });
            }
        }
        sys::close(slave);
    }
    for (i, r) in p.rlimits.iter().enumerate() {
        let lim = libc::rlimit64 {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        // SAFETY: `lim` is a valid rlimit64 for the call; the old-limit pointer may be null.
        if unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                0,
                r.resource,
                &lim as *const libc::rlimit64,
                0usize,
            )
        } == -1
        {
            return Err(Fail {
                step: Step::Rlimit,
                index: i as u32,
                errno: sys::errno(),
            });
        }
    }
    if let Some(io) = p.io_priority {
        // SAFETY: integer-only syscall: IOPRIO_WHO_PROCESS (1), this process (0).
        if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, io) } == -1 {
            return Err(Fail {
                step: Step::IoPriority,
                index: 0,
                errno: sys::errno(),
            });
        }
    }
    if let Some(s) = p.scheduler {
        #[repr(C)]
        struct SchedAttr {
            size: u32,
            policy: u32,
            flags: u64,
            nice: i32,
            priority: u32,
            runtime: u64,
            deadline: u64,
            period: u64,
        }
        let attr = SchedAttr {
            size: size_of::<SchedAttr>() as u32,
            policy: s.policy,
            flags: s.flags,
            nice: s.nice,
            priority: s.priority,
            runtime: s.runtime,
            deadline: s.deadline,
            period: s.period,
        };
        // SAFETY: `attr` is a sched_attr of the size it declares, alive for the call.
        if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) } == -1
        {
            return Err(Fail {
                step: Step::Scheduler,
                index: 0,
                errno: sys::errno(),
            });
        }
    }
    if let Some(pers) = p.personality {
        // SAFETY: integer-only syscall.
        if unsafe { libc::syscall(libc::SYS_personality, pers) } == -1 {
            return Err(Fail {
                step: Step::Personality,
                index: 0,
                errno: sys::errno(),
            });
        }
    }
    if let Some(c) = p.caps {
        // Dropping from the bounding set needs CAP_SETPCAP, which setresuid may take away.
        for cap in 0..=plan.last_cap {
            if c.bounding & (1 << cap) == 0 {
                match sys::prctl(libc::PR_CAPBSET_DROP, cap as c_ulong, 0) {
                    Ok(_) | Err(libc::EINVAL) => {}
                    Err(e) => {
                        return Err(Fail {
                            step: Step::Bounding,
                            index: cap,
                            errno: e,
                        });
                    }
                }
            }
        }
        sys::prctl(libc::PR_SET_KEEPCAPS, 1, 0).map_err(at(Step::Capset, 0))?;
    }
    match sys::setgroups(&p.groups) {
        Ok(()) => {}
        // A user namespace with setgroups denied can only keep an empty list.
        Err(libc::EPERM) if p.groups.is_empty() => {}
        Err(e) => {
            return Err(Fail {
                step: Step::Groups,
                index: 0,
                errno: e,
            });
        }
    }
    sys::setresgid(p.gid).map_err(at(Step::Setgid, 0))?;
    sys::setresuid(p.uid).map_err(at(Step::Setuid, 0))?;
    if let Some(c) = p.caps {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let hdr = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [
            Data {
                effective: c.effective as u32,
                permitted: c.permitted as u32,
                inheritable: c.inheritable as u32,
            },
            Data {
                effective: (c.effective >> 32) as u32,
                permitted: (c.permitted >> 32) as u32,
                inheritable: (c.inheritable >> 32) as u32,
            },
        ];
        // SAFETY: version-3 header and two data words, both alive for the call.
        if unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) } == -1 {
            return Err(Fail {
                step: Step::Capset,
                index: 1,
                errno: sys::errno(),
            });
        }
        for cap in 0..=plan.last_cap {
            if c.ambient & (1 << cap) != 0 {
                let r = sys::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as c_ulong,
                    cap as c_ulong,
                );
                r.map_err(|e| Fail {
                    step: Step::Ambient,
                    index: cap,
                    errno: e,
                })?;
            }
        }
        sys::prctl(libc::PR_SET_KEEPCAPS, 0, 0).map_err(at(Step::Capset, 2))?;
    }
    if p.no_new_privs {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).map_err(at(Step::NoNewPrivs, 0))?;
    }
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe { libc::umask(p.umask.unwrap_or(0o022)) };
    // SAFETY: `cwd` is NUL-terminated and lives in the plan.
    if unsafe { libc::chdir(p.cwd.as_ptr()) } == -1 {
        return Err(Fail {
            step: Step::Cwd,
            index: 0,
            errno: sys::errno(),
        });
    }
    // A cwd reached through a leaked fd lies outside our root; getcwd then does not start with '/'.
    let mut buf = [0u8; 4096];
    // SAFETY: `buf` is writable for its full length.
    let r = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    if r == -1 || buf[0] != b'/' {
        return Err(Fail {
            step: Step::CwdOutsideRoot,
            index: 0,
            errno: libc::EPERM,
        });
    }
    Ok(())
}

fn find_executable(plan: &InitPlan) -> R<*const c_char> {
    let p = &plan.process;
    if p.path_dirs.is_empty() {
        return p.args.first().map(|a| a.as_ptr()).ok_or(Fail {
            step: Step::ExecNotFound,
            index: 0,
            errno: libc::ENOENT,
        });
    }
    for cand in &p.path_dirs {
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: `cand` is NUL-terminated; `st` is writable stat storage.
        if unsafe { libc::stat(cand.as_ptr(), st.as_mut_ptr()) } != 0 {
            continue;
        }
        // SAFETY: stat succeeded.
        let st = unsafe { st.assume_init() };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            continue;
        }
        // SAFETY: `cand` is NUL-terminated and lives in the plan.
        if unsafe { libc::access(cand.as_ptr(), libc::X_OK) } == 0 {
            return Ok(cand.as_ptr());
        }
    }
    Err(Fail {
        step: Step::ExecNotFound,
        index: 0,
        errno: libc::ENOENT,
    })
}

/// Runs one container-side hook with the state JSON on its stdin and a timeout.
fn run_hook(
    h: &HookPlan,
    ptrs: Option<&(Vec<*const c_char>, Vec<*const c_char>)>,
    state: &[u8],
) -> Result<(), (Step, Errno)> {
    let Some((argv, envp)) = ptrs else {
        return Err((Step::Hook, libc::EINVAL));
    };
    let mut pipe = [-1; 2];
    // SAFETY: `pipe` has room for two fds.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err((Step::Hook, sys::errno()));
    }
    // SAFETY: fork-like raw clone; this process is single-threaded.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == -1 {
        return Err((Step::Hook, sys::errno()));
    }
    if pid == 0 {
        // SAFETY: dup2 onto stdin (clearing CLOEXEC there), then exec the hook with prepared arrays.
        unsafe {
            libc::dup2(pipe[0], 0);
        }
        // SAFETY: path, argv and envp are NUL-terminated / null-terminated and live in the plan.
        unsafe { libc::execve(h.path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        // SAFETY: _exit never returns.
        unsafe { libc::_exit(127) }
    }
    sys::close(pipe[0]);
    let _ = sys::write_all(pipe[1], state);
    sys::close(pipe[1]);
    let deadline = sys::now_ms().saturating_add(h.timeout_ms);
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int for wait4 to fill; no rusage requested.
        let r =
            unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, std::ptr::null_mut()) };
        if r == pid as i32 {
            break;
        }
        if r == -1 && sys::errno() != libc::EINTR {
            return Err((Step::Hook, sys::errno()));
        }
        if sys::now_ms() > deadline {
            // SAFETY: signalling and reaping our own child.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            // SAFETY: as above.
            unsafe { libc::wait4(pid as i32, &mut status, 0, std::ptr::null_mut()) };
            return Err((Step::HookTimeout, libc::ETIMEDOUT));
        }
        sys::sleep_ms(1);
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        Err((Step::Hook, code))
    }
}
