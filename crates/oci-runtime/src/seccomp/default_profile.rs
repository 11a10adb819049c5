//! The built-in default profile: in effect Docker's (moby's `default.json`),
//! described here as data of our own and turned into a plain OCI
//! `LinuxSeccomp` for one container's capabilities and architecture.
//!
//! Docker's file is not OCI: its rules carry `includes` / `excludes` on
//! capabilities, architectures and kernel versions, which Docker resolves for
//! each container. Here the same facts are tables (calls for every container,
//! calls a capability unlocks, calls of one architecture, and the few rules
//! that look at an argument), resolved by [`default_seccomp`].

use std::collections::BTreeSet;

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// What every other call returns: `EPERM`, as Docker's profile has it.
const DEFAULT_ERRNO: i32 = libc::EPERM;

/// Calls every container may make, by theme (ptrace among them: see
/// [`default_seccomp`] on Linux 4.8).
#[rustfmt::skip]
const EVERY_CONTAINER: &[&[&str]] = &[
    // Opening, reading, writing and managing file descriptors.
    &[
        "open", "openat", "openat2", "creat", "close", "close_range", "read", "readv", "pread64",
        "preadv", "preadv2", "write", "writev", "pwrite64", "pwritev", "pwritev2", "lseek",
        "_llseek", "dup", "dup2", "dup3", "fcntl", "fcntl64", "ioctl", "flock", "fsync",
        "fdatasync", "sync", "syncfs", "sync_file_range", "fallocate", "fadvise64", "fadvise64_64",
        "readahead", "truncate", "truncate64", "ftruncate", "ftruncate64", "sendfile", "sendfile64",
        "copy_file_range", "splice", "tee", "vmsplice", "pipe", "pipe2", "cachestat",
    ],
    // File metadata, directories and links.
    &[
        "access", "faccessat", "faccessat2", "stat", "stat64", "lstat", "lstat64", "fstat",
        "fstat64", "fstatat64", "newfstatat", "statx", "statfs", "statfs64", "fstatfs", "fstatfs64",
        "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "chown32", "fchown", "fchown32",
        "fchownat", "lchown", "lchown32", "umask", "utime", "utimes", "utimensat",
        "utimensat_time64", "futimesat", "chdir", "fchdir", "getcwd", "getdents", "getdents64",
        "mkdir", "mkdirat", "mknod", "mknodat", "rmdir", "link", "linkat", "symlink", "symlinkat",
        "unlink", "unlinkat", "rename", "renameat", "renameat2", "readlink", "readlinkat",
        "name_to_handle_at",
    ],
    // Extended attributes.
    &[
        "getxattr", "lgetxattr", "fgetxattr", "getxattrat", "setxattr", "lsetxattr", "fsetxattr",
        "setxattrat", "listxattr", "llistxattr", "flistxattr", "listxattrat", "removexattr",
        "lremovexattr", "fremovexattr", "removexattrat",
    ],
    // Waiting on descriptors, and descriptors for events, signals, timers
    // and file changes (fanotify marks; creating a group needs CAP_SYS_ADMIN).
    &[
        "poll", "ppoll", "ppoll_time64", "select", "_newselect", "pselect6", "pselect6_time64",
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_wait",
        "epoll_wait_old", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "signalfd",
        "signalfd4", "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
        "timerfd_settime64", "inotify_init", "inotify_init1", "inotify_add_watch",
        "inotify_rm_watch", "fanotify_mark",
    ],
    // Asynchronous I/O (not io_uring, which Docker leaves out) and I/O priority.
    &[
        "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
        "io_pgetevents_time64", "ioprio_get", "ioprio_set",
    ],
    // Memory.
    &[
        "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync",
        "mlock", "mlock2", "mlockall", "munlock", "munlockall", "remap_file_pages", "mseal",
        "memfd_create", "memfd_secret", "membarrier", "map_shadow_stack", "pkey_alloc", "pkey_free",
        "pkey_mprotect",
    ],
    // Processes and threads: creating (clone is below), running, waiting,
    // signalling, synchronising, scheduling and limiting them.
    &[
        "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "waitpid",
        "kill", "tkill", "tgkill", "pidfd_open", "pidfd_send_signal", "process_mrelease", "getpid",
        "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid", "set_tid_address",
        "set_robust_list", "get_robust_list", "get_thread_area", "set_thread_area", "futex",
        "futex_time64", "futex_waitv", "futex_wait", "futex_wake", "futex_requeue", "rseq",
        "restart_syscall", "prctl", "seccomp", "capget", "capset", "getcpu", "getpriority",
        "setpriority", "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getattr",
        "sched_setattr", "sched_getparam", "sched_setparam", "sched_getscheduler",
        "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min",
        "sched_rr_get_interval", "sched_rr_get_interval_time64", "getrlimit", "ugetrlimit",
        "setrlimit", "prlimit64", "getrusage", "times",
    ],
    // Tracing and reading one's own processes.
    &["ptrace", "process_vm_readv", "process_vm_writev"],
    // Signals.
    &[
        "rt_sigaction", "rt_sigprocmask", "rt_sigpending", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
        "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "sigaltstack",
        "sigprocmask", "sigreturn", "pause", "alarm",
    ],
    // Clocks and timers; setting the system clock needs CAP_SYS_TIME, and
    // adjtimex and clock_adjtime check it themselves before changing it.
    &[
        "time", "gettimeofday", "clock_gettime", "clock_gettime64", "clock_getres",
        "clock_getres_time64", "clock_nanosleep", "clock_nanosleep_time64", "nanosleep", "adjtimex",
        "clock_adjtime", "clock_adjtime64", "getitimer", "setitimer", "timer_create",
        "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
        "timer_settime64",
    ],
    // User and group ids.
    &[
        "getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid", "getegid32",
        "getresuid", "getresuid32", "getresgid", "getresgid32", "getgroups", "getgroups32",
        "setuid", "setuid32", "setgid", "setgid32", "setreuid", "setreuid32", "setregid",
        "setregid32", "setresuid", "setresuid32", "setresgid", "setresgid32", "setfsuid",
        "setfsuid32", "setfsgid", "setfsgid32", "setgroups", "setgroups32",
    ],
    // Sockets, once made (socket itself is below), and the i386 multiplexer.
    &[
        "socketpair", "bind", "connect", "listen", "accept", "accept4", "getsockname",
        "getpeername", "getsockopt", "setsockopt", "shutdown", "send", "sendto", "sendmsg",
        "sendmmsg", "recv", "recvfrom", "recvmsg", "recvmmsg", "recvmmsg_time64", "socketcall",
    ],
    // System V and POSIX IPC.
    &[
        "ipc", "msgget", "msgctl", "msgsnd", "msgrcv", "semget", "semctl", "semop", "semtimedop",
        "semtimedop_time64", "shmget", "shmctl", "shmat", "shmdt", "mq_open", "mq_unlink",
        "mq_getsetattr", "mq_notify", "mq_timedsend", "mq_timedsend_time64", "mq_timedreceive",
        "mq_timedreceive_time64",
    ],
    // Looking at the system: identity, randomness, mounts, landlock
    // sandboxing of oneself, uprobe returns and the RISC-V feature probe.
    &[
        "uname", "sysinfo", "getrandom", "listmount", "statmount", "landlock_create_ruleset",
        "landlock_add_rule", "landlock_restrict_self", "uretprobe", "riscv_hwprobe",
    ],
];

/// Calls a capability unlocks: a container holding it may make them (a call
/// listed under several capabilities needs any one of them).
#[rustfmt::skip]
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (Capability::SysAdmin, &[
        // Namespaces: with CAP_SYS_ADMIN clone takes any flags.
        "clone", "clone3", "unshare", "setns",
        // Mounts, old and new API.
        "mount", "umount", "umount2", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
        "open_tree", "mount_setattr",
        // Names, quotas, the kernel log, LSM attributes, tracing and BPF.
        "sethostname", "setdomainname", "quotactl", "quotactl_fd", "syslog", "lookup_dcookie",
        "lsm_get_self_attr", "lsm_set_self_attr", "lsm_list_modules", "fanotify_init",
        "perf_event_open", "bpf",
    ]),
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (Capability::SysModule, &["init_module", "finit_module", "delete_module"]),
    (Capability::SysPacct, &["acct"]),
    (Capability::SysPtrace, &["kcmp", "pidfd_getfd", "process_madvise"]),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (Capability::SysTime, &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    (Capability::SysTtyConfig, &["vhangup"]),
    (Capability::SysNice, &["mbind", "get_mempolicy", "set_mempolicy", "set_mempolicy_home_node"]),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// Calls only some architectures have, by the container's native one.
#[rustfmt::skip]
const BY_ARCH: &[(&[Arch], &[&str])] = &[
    (&[Arch::ScmpArchX86_64, Arch::ScmpArchX32], &["arch_prctl"]),
    (&[Arch::ScmpArchX86_64, Arch::ScmpArchX32, Arch::ScmpArchX86], &["modify_ldt"]),
    (&[Arch::ScmpArchArm, Arch::ScmpArchAarch64], &[
        "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
        "set_tls",
    ]),
    (&[Arch::ScmpArchPpc64le], &["sync_file_range2", "swapcontext"]),
    (S390, &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"]),
    (&[Arch::ScmpArchRiscv64], &["riscv_flush_icache"]),
];

/// The namespace flags clone takes: without CAP_SYS_ADMIN a container may
/// clone only without them (`CLONE_NEWTIME` shares its bit with the exit
/// signal in clone, so it is not one of them there).
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// `<linux/personality.h>`: the personalities a container may switch to.
const PER_LINUX: u64 = 0;
const PER_LINUX32: u64 = 0x0008;
const UNAME26: u64 = 0x0002_0000;
/// `personality(0xffffffff)` only reads the current one.
const PERSONALITY_QUERY: u64 = 0xffff_ffff;

/// The containers a filtered rule is for.
enum Holder {
    Anyone,
    Without(Capability),
}

/// The native architectures a filtered rule is for.
enum On {
    Every,
    Only(&'static [Arch]),
    Except(&'static [Arch]),
}

/// One test of one argument.
#[derive(Clone, Copy)]
enum Test {
    Eq(u64),
    Lt(u64),
    Gt(u64),
    /// None of these bits set.
    Clear(u64),
}

/// What a filtered rule does.
enum Verdict {
    /// Allowed when argument `arg` passes any one of the tests.
    AllowIf { arg: usize, any: &'static [Test] },
    /// Refused with this errno rather than the default.
    Errno(i32),
}

/// A rule that looks at arguments or answers with its own errno.
struct Filtered {
    calls: &'static [&'static str],
    holder: Holder,
    on: On,
    verdict: Verdict,
}

/// The architectures whose clone takes its flags second.
const S390: &[Arch] = &[Arch::ScmpArchS390, Arch::ScmpArchS390x];

const FILTERED: &[Filtered] = &[
    // Every address family but AF_ALG (38), the kernel's crypto API and much
    // attack surface, and AF_VSOCK (40), sockets to the host and its VMs
    // that no network namespace confines.
    Filtered {
        calls: &["socket"],
        holder: Holder::Anyone,
        on: On::Every,
        verdict: Verdict::AllowIf {
            arg: 0,
            any: &[
                Test::Lt(libc::AF_ALG as u64),
                Test::Eq(libc::AF_NFC as u64),
                Test::Gt(libc::AF_VSOCK as u64),
            ],
        },
    },
    // Only the personalities programs ask for: Linux, 32-bit Linux, either
    // with a 2.6 uname, and the query.
    Filtered {
        calls: &["personality"],
        holder: Holder::Anyone,
        on: On::Every,
        verdict: Verdict::AllowIf {
            arg: 0,
            any: &[
                Test::Eq(PER_LINUX),
                Test::Eq(PER_LINUX32),
                Test::Eq(UNAME26),
                Test::Eq(UNAME26 | PER_LINUX32),
                Test::Eq(PERSONALITY_QUERY),
            ],
        },
    },
    // clone without namespace flags; s390 passes the flags second.
    Filtered {
        calls: &["clone"],
        holder: Holder::Without(Capability::SysAdmin),
        on: On::Except(S390),
        verdict: Verdict::AllowIf {
            arg: 0,
            any: &[Test::Clear(NAMESPACE_FLAGS)],
        },
    },
    Filtered {
        calls: &["clone"],
        holder: Holder::Without(Capability::SysAdmin),
        on: On::Only(S390),
        verdict: Verdict::AllowIf {
            arg: 1,
            any: &[Test::Clear(NAMESPACE_FLAGS)],
        },
    },
    // clone3's flags are in memory, out of a filter's reach: ENOSYS makes
    // the C library fall back to clone, whose flags the rule above checks.
    Filtered {
        calls: &["clone3"],
        holder: Holder::Without(Capability::SysAdmin),
        on: On::Every,
        verdict: Verdict::Errno(libc::ENOSYS),
    },
];

/// Docker's default seccomp profile, resolved for a container holding
/// `capabilities` whose native architecture is `arch`, as a plain OCI
/// profile for `linux.seccomp`.
///
/// Pass the capabilities the container's process keeps (Docker reads the
/// bounding set). Every container may make the calls a program needs; the
/// calls a capability governs are allowed only with it (mount and setns
/// with `CAP_SYS_ADMIN`, reboot with `CAP_SYS_BOOT`, ...). Without
/// `CAP_SYS_ADMIN`, `clone` is allowed only without namespace flags and
/// `clone3`, whose flags a filter cannot read, fails with `ENOSYS`, so the
/// C library falls back to `clone`. `socket` refuses `AF_ALG` and
/// `AF_VSOCK`; `personality` takes only the Linux personalities.
///
/// Every other call fails with `EPERM` (`defaultAction` `SCMP_ACT_ERRNO`,
/// `defaultErrnoRet` 1, as Docker's). This runtime's compiler returns
/// `ENOSYS` instead for calls numbered above every call the profile names,
/// so on a kernel newer than the profile a C library falls back from a call
/// it does not know to an older one rather than failing with `EPERM`.
///
/// `arch` is the container's native ABI, [`Arch::ScmpArchNative`] the one
/// this crate is built for. The profile lists it with the ABIs that run on
/// it as Docker does (for x86_64: i386 and x32), and leaves
/// `architectures` out, which means the native ABI alone, where Docker has
/// no such family (i386, arm, ppc64le, ...). This runtime itself filters
/// the x86 family only.
///
/// Docker allows ptrace and `process_vm_readv` / `_writev` from Linux 4.8,
/// before which a tracer could change a call after the filter allowed it;
/// here they are always allowed, as this runtime needs Linux 5.3 (it spawns
/// with `clone3` and pidfds).
///
/// ```
/// use oci_spec::runtime::{Arch, Capability};
///
/// let caps = [Capability::AuditWrite, Capability::Kill, Capability::NetBindService];
/// let profile = oci_runtime::default_seccomp(&caps, Arch::ScmpArchNative);
/// assert_eq!(profile.default_errno_ret(), Some(1));
/// ```
pub fn default_seccomp<'a>(
    capabilities: impl IntoIterator<Item = &'a Capability>,
    arch: Arch,
) -> LinuxSeccomp {
    let held: Vec<Capability> = capabilities.into_iter().copied().collect();
    let arch = native(arch);

    let mut allowed: BTreeSet<&str> = EVERY_CONTAINER
        .iter()
        .flat_map(|g| g.iter())
        .copied()
        .collect();
    for (cap, calls) in BY_CAPABILITY {
        if held.contains(cap) {
            allowed.extend(calls.iter().copied());
        }
    }
    for (arches, calls) in BY_ARCH {
        if arches.contains(&arch) {
            allowed.extend(calls.iter().copied());
        }
    }
    let mut syscalls = vec![rule(
        allowed.into_iter(),
        LinuxSeccompAction::ScmpActAllow,
        None,
        None,
    )];

    for f in FILTERED {
        let for_holder = match f.holder {
            Holder::Anyone => true,
            Holder::Without(cap) => !held.contains(&cap),
        };
        let for_arch = match f.on {
            On::Every => true,
            On::Only(a) => a.contains(&arch),
            On::Except(a) => !a.contains(&arch),
        };
        if !(for_holder && for_arch) {
            continue;
        }
        let calls = f.calls.iter().copied();
        match f.verdict {
            // One rule per test: the conditions of one rule are ANDed. The
            // builder has a default for every field, so it does not fail;
            // were it to, the rule would be left out and the call refused.
            Verdict::AllowIf { arg, any } => syscalls.extend(any.iter().filter_map(|t| {
                let cond = condition(arg, *t).ok()?;
                Some(rule(
                    calls.clone(),
                    LinuxSeccompAction::ScmpActAllow,
                    None,
                    Some(cond),
                ))
            })),
            Verdict::Errno(e) => syscalls.push(rule(
                calls,
                LinuxSeccompAction::ScmpActErrno,
                Some(e.unsigned_abs()),
                None,
            )),
        }
    }

    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(DEFAULT_ERRNO.unsigned_abs()));
    profile.set_architectures(abis(arch));
    profile.set_syscalls(Some(syscalls));
    profile
}

fn rule<'a>(
    calls: impl Iterator<Item = &'a str>,
    action: LinuxSeccompAction,
    errno: Option<u32>,
    arg: Option<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut r = LinuxSyscall::default();
    r.set_names(calls.map(str::to_string).collect());
    r.set_action(action);
    r.set_errno_ret(errno);
    r.set_args(arg.map(|a| vec![a]));
    r
}

fn condition(index: usize, test: Test) -> Result<LinuxSeccompArg, OciSpecError> {
    let (op, value) = match test {
        Test::Eq(v) => (LinuxSeccompOperator::ScmpCmpEq, v),
        Test::Lt(v) => (LinuxSeccompOperator::ScmpCmpLt, v),
        Test::Gt(v) => (LinuxSeccompOperator::ScmpCmpGt, v),
        // `(arg & mask) == 0`: an absent `valueTwo` is 0.
        Test::Clear(mask) => (LinuxSeccompOperator::ScmpCmpMaskedEq, mask),
    };
    LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value)
        .build()
}

/// The ABIs a container of native ABI `arch` runs, when it has companions:
/// the 64-bit ABIs run their 32-bit (and n32) relatives' programs too.
fn abis(arch: Arch) -> Option<Vec<Arch>> {
    use Arch::*;
    let family: &[Arch] = match arch {
        ScmpArchX86_64 => &[ScmpArchX86_64, ScmpArchX86, ScmpArchX32],
        ScmpArchAarch64 => &[ScmpArchAarch64, ScmpArchArm],
        ScmpArchMips64 => &[ScmpArchMips64, ScmpArchMips, ScmpArchMips64n32],
        ScmpArchMips64n32 => &[ScmpArchMips64n32, ScmpArchMips, ScmpArchMips64],
        ScmpArchMipsel64 => &[ScmpArchMipsel64, ScmpArchMipsel, ScmpArchMipsel64n32],
        ScmpArchMipsel64n32 => &[ScmpArchMipsel64n32, ScmpArchMipsel, ScmpArchMipsel64],
        ScmpArchS390x => &[ScmpArchS390x, ScmpArchS390],
        ScmpArchRiscv64 => &[ScmpArchRiscv64],
        ScmpArchLoongarch64 => &[ScmpArchLoongarch64],
        _ => return None,
    };
    Some(family.to_vec())
}

/// `arch`, with [`Arch::ScmpArchNative`] made the one this crate is built for.
fn native(arch: Arch) -> Arch {
    if arch != Arch::ScmpArchNative {
        return arch;
    }
    if cfg!(target_arch = "x86_64") {
        if cfg!(target_pointer_width = "32") {
            Arch::ScmpArchX32
        } else {
            Arch::ScmpArchX86_64
        }
    } else if cfg!(target_arch = "x86") {
        Arch::ScmpArchX86
    } else if cfg!(target_arch = "aarch64") {
        Arch::ScmpArchAarch64
    } else if cfg!(target_arch = "arm") {
        Arch::ScmpArchArm
    } else if cfg!(target_arch = "s390x") {
        Arch::ScmpArchS390x
    } else if cfg!(target_arch = "riscv64") {
        Arch::ScmpArchRiscv64
    } else if cfg!(target_arch = "loongarch64") {
        Arch::ScmpArchLoongarch64
    } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
        Arch::ScmpArchPpc64le
    } else {
        arch
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{Arch, Capability};

    use super::default_seccomp;
    use crate::seccomp::abi::Abi;
    use crate::seccomp::interp::longest_path;
    use crate::seccomp::tests::{ALLOW, call, errno, nr};
    use crate::seccomp::{Filter, RET_ENOSYS};

    const EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
    const RUNC: [Capability; 3] = [
        Capability::AuditWrite,
        Capability::Kill,
        Capability::NetBindService,
    ];

    fn filter(caps: &[Capability]) -> Filter {
        Filter::compile(&default_seccomp(caps, Arch::ScmpArchX86_64))
            .unwrap_or_else(|e| panic!("the default profile compiles: {e}"))
    }

    fn on(f: &Filter, abi: Abi, name: &str, args: [u64; 6]) -> u32 {
        call(f, abi, nr(abi, name), args)
    }

    fn a(first: u64, second: u64) -> [u64; 6] {
        [first, second, 0, 0, 0, 0]
    }

    #[test]
    fn compiles_within_the_kernel_limit_with_none_some_or_all_capabilities() {
        let all: Vec<Capability> = crate::known_capabilities()
            .into_iter()
            .map(|c| serde_json::from_value(serde_json::json!(c)).expect("a capability"))
            .collect();
        assert_eq!(all.len(), 41);
        for caps in [&[][..], &RUNC[..], &all[..]] {
            let f = filter(caps);
            let (len, longest) = (f.program().len(), longest_path(f.program()));
            println!(
                "{} capabilities: {len} instructions, longest path {longest}",
                caps.len()
            );
            assert!(len < 4096 && longest < 64, "{len} {longest}");
        }
    }

    #[test]
    fn the_compiled_filter_decides_as_docker_does() {
        let f = filter(&RUNC);
        let new_user = libc::CLONE_NEWUSER as u64;
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        for abi in [Abi::X86_64, Abi::I386, Abi::X32] {
            assert_eq!(on(&f, abi, "getpid", a(0, 0)), ALLOW, "{abi:?}");
            assert_eq!(on(&f, abi, "clone", a(thread, 0)), ALLOW, "{abi:?}");
            assert_eq!(on(&f, abi, "clone", a(new_user, 0)), EPERM, "{abi:?}");
            assert_eq!(on(&f, abi, "clone3", a(0, 0)), errno(38), "{abi:?}");
            assert_eq!(on(&f, abi, "unshare", a(new_user, 0)), EPERM, "{abi:?}");
            assert_eq!(on(&f, abi, "mount", a(0, 0)), EPERM, "{abi:?}");
            assert_eq!(on(&f, abi, "ptrace", a(0, 0)), ALLOW, "{abi:?}");
            assert_eq!(on(&f, abi, "kcmp", a(0, 0)), EPERM, "{abi:?}");
            assert_eq!(on(&f, abi, "modify_ldt", a(0, 0)), ALLOW, "{abi:?}");
            assert_eq!(on(&f, abi, "arch_prctl", a(0, 0)), ALLOW, "{abi:?}");
            assert_eq!(on(&f, abi, "personality", a(0xffff_ffff, 0)), ALLOW);
            assert_eq!(on(&f, abi, "personality", a(8, 0)), ALLOW, "{abi:?}");
            assert_eq!(on(&f, abi, "personality", a(1, 0)), EPERM, "{abi:?}");
            assert_eq!(on(&f, abi, "io_uring_setup", a(0, 0)), EPERM, "{abi:?}");
        }
        for (family, ret) in [
            (libc::AF_UNIX, ALLOW),
            (libc::AF_INET6, ALLOW),
            (libc::AF_ALG, EPERM),
            (libc::AF_NFC, ALLOW),
            (libc::AF_VSOCK, EPERM),
            (libc::AF_XDP, ALLOW),
        ] {
            assert_eq!(on(&f, Abi::X86_64, "socket", a(family as u64, 0)), ret);
        }
        // Newer than every call the profile names: ENOSYS, for a fallback.
        assert_eq!(call(&f, Abi::X86_64, 1000, a(0, 0)), RET_ENOSYS);

        let admin = filter(&[Capability::SysAdmin]);
        assert_eq!(on(&admin, Abi::X86_64, "clone", a(new_user, 0)), ALLOW);
        assert_eq!(on(&admin, Abi::X86_64, "clone3", a(0, 0)), ALLOW);
        assert_eq!(on(&admin, Abi::X86_64, "mount", a(0, 0)), ALLOW);
        let ptrace = filter(&[Capability::SysPtrace]);
        assert_eq!(on(&ptrace, Abi::X86_64, "kcmp", a(0, 0)), ALLOW);
    }

    #[test]
    fn outside_the_x86_family_no_x86_calls() {
        let arm = default_seccomp(&RUNC, Arch::ScmpArchAarch64);
        assert_eq!(
            arm.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
        let names: Vec<&String> = arm
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|r| r.names())
            .collect();
        assert!(names.iter().any(|n| *n == "cacheflush"));
        assert!(
            !names
                .iter()
                .any(|n| *n == "arch_prctl" || *n == "modify_ldt")
        );
        let clone_arg = |p: &oci_spec::runtime::LinuxSeccomp| {
            p.syscalls()
                .iter()
                .flatten()
                .find(|r| r.names().iter().any(|n| n == "clone"))
                .and_then(|r| r.args().as_ref())
                .and_then(|a| a.first())
                .map(|a| a.index())
        };
        assert_eq!(clone_arg(&arm), Some(0));
        assert_eq!(
            clone_arg(&default_seccomp(&[], Arch::ScmpArchS390x)),
            Some(1)
        );
    }
}
