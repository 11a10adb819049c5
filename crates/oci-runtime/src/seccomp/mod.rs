//! `linux.seccomp`: an OCI profile compiled to one classic-BPF program for
//! `seccomp(SECCOMP_SET_MODE_FILTER)`, in Rust, with the semantics runc gets
//! from libseccomp.
//!
//! [`Filter::compile`] runs in the parent while the init plan is made; the
//! container's init then only hands [`Filter::fprog`] and [`Filter::flags`]
//! to the kernel, after `PR_SET_NO_NEW_PRIVS` or while it still holds
//! `CAP_SYS_ADMIN`, as the last step before exec. When [`Filter::listener`]
//! is set, that call returns a user-notification fd, which the runtime sends
//! with the container state to the listener's socket.
//!
//! # What a profile means here
//! - **Actions**: `SCMP_ACT_ALLOW`, `_ERRNO` (the rule's `errnoRet`, EPERM
//!   when absent, at most 4095, where the kernel caps it), `_KILL` and
//!   `_KILL_THREAD` (kill the thread), `_KILL_PROCESS`, `_TRAP`, `_TRACE`
//!   (`errnoRet` is the tracer's 16-bit datum, EPERM when absent), `_LOG`,
//!   `_NOTIFY`. The default action takes `defaultErrnoRet` the same way.
//! - **Conditions**: `SCMP_CMP_NE`, `_LT`, `_LE`, `_EQ`, `_GE`, `_GT` against
//!   `value`, and `_MASKED_EQ`: `(arg & value) == (valueTwo & value)`. The
//!   conditions of a rule are ANDed, except that a rule comparing one
//!   argument twice becomes one rule per condition (ORed), as runc rewrites
//!   it for libseccomp. Arguments are 64 bits on x86_64; on i386 and x32,
//!   as in libseccomp, only their low 32 bits and those of the value count.
//! - **Several rules for one call** (libseccomp's merge, which runc relies
//!   on): a rule whose action (with its errno) equals the default is dropped,
//!   as runc drops it. Then the first rule without conditions for a call
//!   decides it alone: later rules for it are discarded (a masked comparison
//!   with a zero mask is no condition). Conditional rules with one action are
//!   ORed. Conditional rules with different actions are merged as libseccomp
//!   2.5 merges them (`tree`): into a tree of 32-bit tests kept sorted by
//!   argument, operator and value, so where they overlap the tree's order
//!   decides, not the profile's (`a0 >= 10 → A`, `a0 <= 20 → B`: 15 gets B).
//!   Its pruning pass is followed too, which may drop a rule it takes for
//!   redundant. Pairs it refuses (`EEXIST`: the same test ending two rules
//!   with different actions) are refused here naming the rule, as runc
//!   fails on them, also when they come before an unconditional rule that
//!   then decides; merges on which libseccomp never returns (runc hangs in
//!   `create`) are refused when the actions differ and compiled as the OR
//!   of the rules when they agree. `libseccomp_tests` checks all of this
//!   against libseccomp itself. One difference: where libseccomp's program
//!   compares an accumulator its path loaded from another argument (a block
//!   laid out for one predecessor and reached from another, without a
//!   reload), runc's filter departs from libseccomp's own tree; ours
//!   follows the tree.
//! - **Names** this table does not know for an ABI are skipped for that ABI,
//!   as runc does; the tables cover Linux 6.18 (see `syscalls.rs`).
//! - **ENOSYS for new calls**, as runc's stub does: when the default action
//!   is neither allow, log nor trace, a call numbered above every call the
//!   profile names (for that ABI) returns `ENOSYS` instead of the default,
//!   so a C library falls back (clone3 to clone) on kernels newer than the
//!   profile.
//! - **ABIs**: x86_64 is always filtered, as libseccomp's context always
//!   holds the native ABI; `SCMP_ARCH_X86` adds i386 (`int 0x80` and 32-bit
//!   processes) and `SCMP_ARCH_X32` adds x32. A call from any other ABI kills
//!   the process (`SECCOMP_RET_KILL_PROCESS`; libseccomp's default for a bad
//!   architecture kills only the calling thread and leaves the others
//!   running). An x32 call (x86_64 with `0x4000_0000` in the number) on a
//!   profile without x32 is such a call: it never matches an x86_64 rule,
//!   and is killed rather than given the default, so an allow-by-default
//!   profile cannot be bypassed through x32 (as libseccomp, which lets
//!   only -1, a tracer's "skip this call", through to the default).
//!   Other architectures a profile lists cannot run here and are skipped.
//!   As libseccomp does, an i386 rule for a call that `socketcall` or `ipc`
//!   multiplex (socket, bind, …, shmget, …) also holds for the multiplexer
//!   with that subcall in its first argument, in place of any condition the
//!   rule has on the first argument; its other conditions then test the
//!   multiplexer's own arguments, since the call's are in memory where no
//!   filter can see them. A profile that must hold on i386 names
//!   `socketcall` and `ipc` itself.
//! - **Flags**: `SECCOMP_FILTER_FLAG_LOG`, `_SPEC_ALLOW`,
//!   `_WAIT_KILLABLE_RECV` (only together with a listener, as libseccomp
//!   passes it), `_TSYNC` accepted and not passed, as runc does (the init
//!   that installs the filter has one thread, and the kernel refuses TSYNC
//!   next to a listener); `NEW_LISTENER` when any action is notify, which
//!   then needs `listenerPath`.
//! - Unknown action, operator, architecture and flag names are refused when
//!   `config.json` is parsed, by oci-spec's enums, naming the field.
//!
//! # The program
//! One pass checks `seccomp_data.arch`, then a balanced binary search over
//! each ABI's call numbers (see `codegen`) reaches a call's verdict in
//! O(log n) jumps plus that call's argument checks. Conditional jumps reach
//! 255 instructions ahead; farther ones get a trampoline (`bpf`). A profile
//! past the kernel's 4096 instructions is refused, naming `linux.seccomp`.
//!
//! # What seccompiler does here
//! Its `sock_filter` is the instruction type (its `BpfProgram` is the
//! program), and its `SeccompAction` gives the `SECCOMP_RET_*` encoding of
//! every action but notify, which 0.5 lacks. Its compiler does not fit OCI
//! profiles: one match action for a whole filter, one architecture (no i386
//! or x32), no notify, a linear chain of syscall checks, and `apply_filter`
//! always sets no_new_privs and takes no flags, so it cannot return a
//! listener fd. It has no program validator either: [`Filter::compile`]
//! checks its output itself as the kernel would. The tests use its compiler
//! as an independent reference for argument comparisons.

mod abi;
mod bpf;
mod cache;
mod codegen;
mod default_profile;
mod profile;
mod syscalls;
mod tree;

#[cfg(test)]
mod interp;
#[cfg(test)]
mod libseccomp_tests;
#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub(crate) use cache::compile_cached;
pub use default_profile::default_seccomp;

use oci_spec::runtime::LinuxSeccomp;
#[cfg(test)]
use seccompiler::sock_filter;

use crate::error::{Result, invalid};

/// `SECCOMP_RET_KILL_PROCESS`.
const RET_KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;
/// `SECCOMP_RET_ERRNO | ENOSYS`.
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// A compiled `linux.seccomp` profile, ready for `seccomp(2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    program: seccompiler::BpfProgram,
    flags: libc::c_ulong,
    listener: Option<Listener>,
}

/// Where the user-notification fd goes (`listenerPath`, `listenerMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listener {
    /// The unix socket to send the container state and the fd to.
    pub(crate) path: PathBuf,
    /// Opaque data for the agent, sent in the state's `metadata`.
    pub(crate) metadata: Option<String>,
}

impl Filter {
    /// Compiles `profile`, refusing what the kernel or the OCI semantics
    /// would not take, each error naming the offending field.
    pub(crate) fn compile(profile: &LinuxSeccomp) -> Result<Filter> {
        let p = profile::Profile::new(profile)?;
        let sections = p
            .abis
            .iter()
            .map(|&abi| p.section(abi))
            .collect::<Result<Vec<_>>>()?;
        let program = codegen::generate(p.default, &sections)
            .map_err(|e| invalid("linux.seccomp", format!("internal compiler error: {e:?}")))?;
        if program.len() > bpf::MAX_INSNS {
            return Err(invalid(
                "linux.seccomp",
                format!(
                    "the profile compiles to {} BPF instructions, more than the kernel's {}",
                    program.len(),
                    bpf::MAX_INSNS
                ),
            ));
        }
        bpf::verify(&program)
            .map_err(|e| invalid("linux.seccomp", format!("internal compiler error: {e}")))?;
        Ok(Filter {
            program,
            flags: p.flags,
            listener: p.listener,
        })
    }

    /// The instructions.
    #[cfg(test)]
    pub(crate) fn program(&self) -> &[sock_filter] {
        &self.program
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits to install the program with.
    pub(crate) fn flags(&self) -> libc::c_ulong {
        self.flags
    }

    /// Set when an action is notify: `seccomp(2)` then returns the listener
    /// fd (`SECCOMP_FILTER_FLAG_NEW_LISTENER` is in [`Filter::flags`]), to be
    /// sent to this socket. The calls the init makes between installing the
    /// filter and exec must not be notify ones, or it waits on an fd nobody
    /// holds yet (runc refuses notify for `write` for this reason).
    pub(crate) fn listener(&self) -> Option<&Listener> {
        self.listener.as_ref()
    }

    /// The `struct sock_fprog` for `seccomp(SECCOMP_SET_MODE_FILTER, flags, &fprog)`.
    /// It points into `self`, so it is valid while `self` lives; building it
    /// before clone leaves the child nothing to allocate.
    pub(crate) fn fprog(&self) -> libc::sock_fprog {
        libc::sock_fprog {
            // `compile` keeps the length within BPF_MAXINSNS (4096).
            len: self.program.len() as libc::c_ushort,
            // seccompiler's `sock_filter` is `#[repr(C)]` with the kernel's
            // layout, the same as libc's; the kernel only reads through it.
            filter: self.program.as_ptr() as *mut libc::sock_filter,
        }
    }
}
