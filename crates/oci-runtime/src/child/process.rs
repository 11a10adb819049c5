//! This process's own state: the signals and fds inherited from the parent, then the
//! console as stdio, rlimits, scheduling, credentials, capabilities and the working
//! directory, and the executable to run.

use std::os::fd::RawFd;

use libc::{c_char, c_ulong};

use super::{Fail, R, Step, at};
use crate::plan::InitPlan;
use crate::sys::{self, Errno};

pub(super) fn reset_signals() -> Result<(), Errno> {
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
    // Every disposition back to the default: an ignored signal survives exec, and a
    // host that ignores some (Rust ignores SIGPIPE; a CRI server or a shell's
    // `trap '' TERM` others) must not pass that on to the payload. Handlers would be
    // reset by exec anyway, but this process may take signals before it execs.
    let dfl = KSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
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

/// Closes every fd except stdio, the preserved ones below `keep_below`, and `keep`.
pub(super) fn close_other_fds_keep(keep: &mut [RawFd], keep_below: RawFd) -> Result<(), Errno> {
    // Fds below `keep_below` (stdio and preserved fds) stay; express them as one range.
    let mut all = [-1; 32];
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

pub(super) fn setup_process(plan: &InitPlan, slave: RawFd, fds: super::ChildFds) -> R<()> {
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
    if !p.no_new_privs
        && let Some(f) = &p.seccomp
    {
        // Without no_new_privs, seccomp(2) needs CAP_SYS_ADMIN: before the
        // capabilities go, as runc does. What this process still calls after it
        // (prctl, setgroups, setresgid, setresuid, capset, umask, chdir, getcwd,
        // stat, access, write, read, close, execve, and for startContainer hooks
        // clone and wait4) the profile must allow.
        super::install_seccomp(f, fds)?;
    }
    if let Some(c) = p.caps {
        // Dropping from the bounding set needs CAP_SETPCAP, which setresuid may take away.
        // Every number a kernel may have, not only those we know: one newer than
        // this runtime must not stay (EINVAL for those the kernel lacks).
        for cap in 0..64u32 {
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
                // The kernel refuses an ambient capability that is not both permitted
                // and inheritable (EPERM); like runc, that leaves the capability out
                // instead of failing the container.
                match sys::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as c_ulong,
                    cap as c_ulong,
                ) {
                    Ok(_) | Err(libc::EPERM) | Err(libc::EINVAL) => {}
                    Err(e) => {
                        return Err(Fail {
                            step: Step::Ambient,
                            index: cap,
                            errno: e,
                        });
                    }
                }
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

pub(super) fn find_executable(plan: &InitPlan) -> R<*const c_char> {
    let p = &plan.process;
    if p.path_dirs.is_empty() {
        // A path (it holds a `/`): checked here as runc checks it, so that a
        // missing or unrunnable program fails `create`, not the later exec.
        let exe = p.args.first().ok_or(Fail {
            step: Step::ExecNotFound,
            index: 0,
            errno: libc::ENOENT,
        })?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: `exe` is NUL-terminated; `st` is writable stat storage.
        if unsafe { libc::stat(exe.as_ptr(), st.as_mut_ptr()) } != 0 {
            return Err(Fail {
                step: Step::ExecNotFound,
                index: 0,
                errno: sys::errno(),
            });
        }
        // SAFETY: stat succeeded.
        let st = unsafe { st.assume_init() };
        let not_file = st.st_mode & libc::S_IFMT != libc::S_IFREG;
        // SAFETY: `exe` is NUL-terminated.
        if not_file || unsafe { libc::access(exe.as_ptr(), libc::X_OK) } != 0 {
            return Err(Fail {
                step: Step::ExecNotFound,
                index: 0,
                errno: libc::EACCES,
            });
        }
        return Ok(exe.as_ptr());
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

/// Installs a compiled seccomp filter on this thread (`SECCOMP_SET_MODE_FILTER`);
/// returns the user-notification fd when the filter has a listener.
pub(super) fn seccomp_filter(f: &crate::seccomp::Filter) -> R<RawFd> {
    let fprog = f.fprog();
    // SAFETY: `fprog` points into the filter's program, which lives in the plan
    // for the whole call; the kernel copies it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            1usize, // SECCOMP_SET_MODE_FILTER
            f.flags(),
            &fprog as *const libc::sock_fprog,
        )
    };
    if r == -1 {
        return Err(Fail {
            step: Step::Seccomp,
            index: 0,
            errno: sys::errno(),
        });
    }
    Ok(if f.listener().is_some() {
        r as RawFd
    } else {
        -1
    })
}
