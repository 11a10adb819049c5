//! Filters installed in the running kernel, each in a forked child, since a
//! filter cannot be removed. They need no root: the child sets
//! no_new_privs first, which any process may. Between fork and exit the child
//! only makes raw system calls (the test harness has other threads).

use nix::sys::prctl;
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use serde_json::json;

use super::Filter;
use super::abi::AUDIT_ARCH_X86_64;
use super::interp::{Data, run};
use super::tests::{allow_list, compile, errno};

/// Runs `checks` in a child under `filter`; the child exits with 0 when all
/// hold, with the number of the first that failed otherwise, with 100 and
/// up when the filter could not be installed. `checks` receives what
/// `seccomp(2)` returned (a listener fd with `NEW_LISTENER`).
fn in_child(filter: &Filter, checks: impl FnOnce(i64) -> i32) -> WaitStatus {
    // Everything the child uses is ready before the fork.
    let fprog = filter.fprog();
    let flags = filter.flags();
    // SAFETY: the child makes raw system calls only and ends in `_exit`,
    // never returning into the multi-threaded harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            // A killed child must not leave a core file behind.
            let quiet = prctl::set_dumpable(false).is_ok()
                && setrlimit(Resource::RLIMIT_CORE, 0, 0).is_ok();
            let code = if !quiet {
                102
            } else if prctl::set_no_new_privs().is_err() {
                100
            } else {
                // SAFETY: `fprog` points at `filter`'s instructions, which
                // outlive the call; the kernel copies them.
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_seccomp,
                        libc::SECCOMP_SET_MODE_FILTER,
                        flags,
                        &fprog as *const libc::sock_fprog,
                    )
                };
                if rc < 0 { 101 } else { checks(rc) }
            };
            // SAFETY: ends the child without unwinding or exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => waitpid(child, None).expect("waitpid"),
    }
}

/// A raw x86_64 call with up to three integer arguments: `Ok(result)` or `Err(errno)`.
fn sys(nr: libc::c_long, a: [u64; 3]) -> Result<i64, i32> {
    // SAFETY: the calls made through this take integers, never pointers.
    let rc = unsafe { libc::syscall(nr, a[0], a[1], a[2]) };
    if rc < 0 {
        Err(nix::errno::Errno::last_raw())
    } else {
        Ok(rc)
    }
}

/// An i386 call through `int 0x80`, with no arguments: the result or `-errno`.
fn int80(nr: u32) -> i32 {
    let ret: u32;
    // SAFETY: `int 0x80` enters the kernel's i386 entry point from 64-bit
    // code; the calls used take no arguments and touch no memory, and the
    // registers the entry may clobber are declared.
    unsafe {
        core::arch::asm!(
            "int 0x80",
            inlateout("eax") nr => ret,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nostack),
        );
    }
    ret as i32
}

fn exited(status: WaitStatus, code: i32) -> bool {
    matches!(status, WaitStatus::Exited(_, c) if c == code)
}

#[test]
fn a_filter_denies_and_allows_in_the_kernel() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["getpid", "exit", "exit_group"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]},
        ],
    }));
    let status = in_child(&f, |_| {
        let Ok(pid) = sys(libc::SYS_getpid, [0; 3]) else {
            return 1;
        };
        let pid = pid as u64;
        let checks = [
            sys(libc::SYS_getuid, [0; 3]) == Err(libc::EACCES),
            sys(libc::SYS_getppid, [0; 3]) == Err(libc::EPERM),
            sys(libc::SYS_kill, [pid, 0, 0]) == Ok(0),
            sys(libc::SYS_kill, [pid, libc::SIGWINCH as u64, 0]) == Err(libc::EPERM),
            // Newer than anything the profile names (exit_group, 231): ENOSYS.
            sys(libc::SYS_clone3, [0; 3]) == Err(libc::ENOSYS),
            sys(libc::SYS_close_range, [u64::MAX, u64::MAX, 0]) == Err(libc::ENOSYS),
        ];
        checks.iter().position(|ok| !ok).map_or(0, |i| i as i32 + 2)
    });
    assert!(exited(status, 0), "{status:?}");
}

#[test]
fn i386_calls_are_filtered_when_listed_and_killed_when_not() {
    let profile = |arches| {
        compile(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": arches,
            "syscalls": [{"names": ["getpid", "exit_group"], "action": "SCMP_ACT_ALLOW"}],
        }))
    };
    // getpid is 20 on i386 (39 on x86_64), getppid 64.
    let listed = profile(json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]));
    let status = in_child(&listed, |_| {
        let Ok(pid) = sys(libc::SYS_getpid, [0; 3]) else {
            return 1;
        };
        if i64::from(int80(20)) != pid {
            return 2;
        }
        if int80(64) != -libc::EPERM {
            return 3;
        }
        0
    });
    assert!(exited(status, 0), "{status:?}");

    let unlisted = profile(json!(["SCMP_ARCH_X86_64"]));
    let status = in_child(&unlisted, |_| {
        int80(20);
        4
    });
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{status:?}"
    );
}

#[test]
fn the_kernel_takes_the_flags_and_returns_a_listener() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                  "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}],
    }));
    let status = in_child(&f, |fd| {
        let Ok(fd) = u64::try_from(fd) else {
            return 1;
        };
        if fd == 0 {
            return 2;
        }
        // Closing the only listener makes notify calls fail with ENOSYS.
        if sys(libc::SYS_close, [fd, 0, 0]).is_err() {
            return 3;
        }
        if sys(libc::SYS_getppid, [0; 3]) != Err(libc::ENOSYS) {
            return 4;
        }
        0
    });
    assert!(exited(status, 0), "{status:?}");
}

#[test]
fn a_long_profile_with_far_jumps_loads_and_matches_the_interpreter() {
    let f = compile(allow_list(300, true));
    let long_jump = super::bpf::BPF_JMP | super::bpf::BPF_JA;
    assert!(f.program().iter().any(|i| i.code == long_jump), "far jumps");
    let g = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 33, "args": [
            {"index": 0, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_GT"},
            {"index": 1, "value": 0xff_0000_00ffu64, "valueTwo": 0x12_0000_0034u64,
             "op": "SCMP_CMP_MASKED_EQ"}]}],
    }));
    // The kernel and the interpreter agree on 64-bit comparisons (getpid
    // ignores its arguments, so they only matter to the filter).
    let values = [
        0,
        0x34,
        0x1_0000_0000,
        0x1_0000_0001,
        0x12_0000_0034,
        0x12_ffff_ff34,
        u64::MAX,
    ];
    for a in values {
        for b in values {
            let want = run(
                g.program(),
                &Data {
                    nr: libc::SYS_getpid as u32,
                    arch: AUDIT_ARCH_X86_64,
                    args: [a, b, 0, 0, 0, 0],
                    ..Data::default()
                },
            )
            .ret;
            let code = if want == errno(33) { 33 } else { 0 };
            let status = in_child(&g, |_| match sys(libc::SYS_getpid, [a, b, 0]) {
                Ok(_) => 0,
                Err(e) => e,
            });
            assert!(exited(status, code), "{a:#x} {b:#x}: {status:?}");
        }
    }
    let status = in_child(&f, |_| match sys(libc::SYS_getpid, [0; 3]) {
        Ok(_) => 0,
        Err(_) => 1,
    });
    assert!(exited(status, 0), "{status:?}");
}
