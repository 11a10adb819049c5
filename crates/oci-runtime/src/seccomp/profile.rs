//! From an OCI profile to what each ABI's part of the filter decides for each
//! system call number: input checks, runc's and libseccomp's rule semantics.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use seccompiler::SeccompAction;

use super::abi::Abi;
use super::tree::{Refusal, Tree};
use super::{Listener, RET_ENOSYS};
use crate::error::{Result, invalid};

/// Linux system calls take at most six arguments.
const ARGS: usize = 6;
/// The kernel caps an errno return at `MAX_ERRNO`.
const MAX_ERRNO: u32 = 4095;
/// `SECCOMP_RET_DATA`: the 16 bits a trace return hands to the tracer.
const MAX_TRACE_DATA: u32 = 0xffff;
/// What errno and trace returns carry when `errnoRet` is absent, as in runc.
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// An argument comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cmp {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & mask) == value`, with `value` already masked.
    MaskedEq(u64),
}

/// One argument condition of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Arg {
    pub(super) index: u8,
    pub(super) cmp: Cmp,
    pub(super) value: u64,
}

impl Arg {
    /// The condition as an ABI sees it, or `None` when it always holds
    /// there. For a 32-bit ABI only the low halves of mask and value count;
    /// a masked comparison with a zero mask is dropped, as libseccomp drops it.
    fn narrow(self, abi: Abi) -> Option<Arg> {
        let width = if abi.wide_args() {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        let mut arg = self;
        arg.value &= width;
        if let Cmp::MaskedEq(mask) = arg.cmp {
            let mask = mask & width;
            if mask == 0 {
                return None;
            }
            arg.cmp = Cmp::MaskedEq(mask);
            arg.value &= mask;
        }
        Some(arg)
    }
}

/// A conditional rule for one system call: its return when all `args` hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Chained {
    pub(super) ret: u32,
    pub(super) args: Vec<Arg>,
}

/// What one system call number gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Always this return.
    Ret(u32),
    /// The first of these rules whose conditions hold, else the default;
    /// they all return the same, so their order does not matter.
    Chain(Vec<Chained>),
    /// Rules with different actions, merged as libseccomp merges them.
    Tree(Tree),
}

/// One ABI's part of the filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Section {
    pub(super) abi: Abi,
    pub(super) verdicts: BTreeMap<u32, Verdict>,
    pub(super) default: u32,
    /// Numbers above this return `ENOSYS` instead of the default.
    pub(super) enosys_above: Option<u32>,
}

impl Section {
    /// What the section returns for `nr` with no rule of its own.
    pub(super) fn background(&self, nr: u32) -> u32 {
        match self.enosys_above {
            Some(max) if nr > max => RET_ENOSYS,
            _ => self.default,
        }
    }
}

/// One rule of the profile after runc's rewriting.
#[derive(Debug)]
struct Rule<'a> {
    /// Its place in `linux.seccomp.syscalls`.
    index: usize,
    names: &'a [String],
    ret: u32,
    args: Vec<Arg>,
}

/// A checked profile.
#[derive(Debug)]
pub(super) struct Profile<'a> {
    pub(super) default: u32,
    pub(super) abis: Vec<Abi>,
    pub(super) flags: libc::c_ulong,
    pub(super) listener: Option<Listener>,
    rules: Vec<Rule<'a>>,
    /// Whether calls newer than any the profile names get `ENOSYS`.
    enosys: bool,
}

impl<'a> Profile<'a> {
    /// Checks `seccomp` and rewrites its rules as runc hands them to libseccomp.
    pub(super) fn new(seccomp: &'a LinuxSeccomp) -> Result<Self> {
        let default = ret(
            seccomp.default_action(),
            seccomp.default_errno_ret(),
            "linux.seccomp.defaultErrnoRet",
        )?;

        // The native ABI is always in the filter, as libseccomp's context
        // starts with it; listed ABIs this host cannot run are skipped.
        let mut abis = vec![Abi::X86_64];
        for arch in seccomp.architectures().iter().flatten() {
            let abi = match arch {
                Arch::ScmpArchX86 => Abi::I386,
                Arch::ScmpArchX32 => Abi::X32,
                _ => continue,
            };
            if !abis.contains(&abi) {
                abis.push(abi);
            }
        }

        let mut rules = Vec::new();
        let mut notify = seccomp.default_action() == LinuxSeccompAction::ScmpActNotify;
        for (i, call) in seccomp.syscalls().iter().flatten().enumerate() {
            let field = |rest: &str| format!("linux.seccomp.syscalls[{i}]{rest}");
            if call.names().is_empty() {
                return Err(invalid(
                    field(".names"),
                    "empty: a rule names one system call or more",
                ));
            }
            if let Some(k) = call.names().iter().position(String::is_empty) {
                return Err(invalid(
                    field(&format!(".names[{k}]")),
                    "empty system call name",
                ));
            }
            let r = ret(call.action(), call.errno_ret(), &field(".errnoRet"))?;
            notify |= call.action() == LinuxSeccompAction::ScmpActNotify;

            let mut args = Vec::new();
            let mut per_index = [0u8; ARGS];
            for (j, a) in call.args().iter().flatten().enumerate() {
                let index = u8::try_from(a.index())
                    .ok()
                    .filter(|&x| usize::from(x) < ARGS)
                    .ok_or_else(|| {
                        invalid(
                            field(&format!(".args[{j}].index")),
                            format!("{} is not an argument: system calls have 0 to 5", a.index()),
                        )
                    })?;
                per_index[usize::from(index)] += 1;
                let cmp = match a.op() {
                    LinuxSeccompOperator::ScmpCmpNe => Cmp::Ne,
                    LinuxSeccompOperator::ScmpCmpLt => Cmp::Lt,
                    LinuxSeccompOperator::ScmpCmpLe => Cmp::Le,
                    LinuxSeccompOperator::ScmpCmpEq => Cmp::Eq,
                    LinuxSeccompOperator::ScmpCmpGe => Cmp::Ge,
                    LinuxSeccompOperator::ScmpCmpGt => Cmp::Gt,
                    LinuxSeccompOperator::ScmpCmpMaskedEq => Cmp::MaskedEq(a.value()),
                };
                let value = match cmp {
                    Cmp::MaskedEq(mask) => a.value_two().unwrap_or(0) & mask,
                    _ => a.value(),
                };
                args.push(Arg { index, cmp, value });
            }

            // libseccomp compares an argument once per rule, so runc turns a
            // rule that compares one argument twice into one rule per
            // condition: those conditions are ORed, not ANDed.
            if per_index.iter().any(|&n| n > 1) {
                for arg in args {
                    rules.push(Rule {
                        index: i,
                        names: call.names(),
                        ret: r,
                        args: vec![arg],
                    });
                }
            } else {
                rules.push(Rule {
                    index: i,
                    names: call.names(),
                    ret: r,
                    args,
                });
            }
        }

        let mut flags = 0;
        for flag in seccomp.flags().iter().flatten() {
            flags |= match flag {
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                    libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
                }
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                    libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
                }
                // The filter is installed by the container's single-threaded
                // init, so there are no threads to synchronise; the kernel
                // would also refuse TSYNC next to NEW_LISTENER. runc ignores it too.
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            };
        }
        let listener = if notify {
            flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
            let path = seccomp.listener_path().clone().ok_or_else(|| {
                invalid(
                    "linux.seccomp.listenerPath",
                    "missing: SCMP_ACT_NOTIFY needs a socket to send the listener to",
                )
            })?;
            Some(Listener {
                path,
                metadata: seccomp.listener_metadata().clone(),
            })
        } else {
            // Only meaningful with a listener; the kernel refuses it alone,
            // and libseccomp passes it only with NEW_LISTENER.
            flags &= !libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
            None
        };

        // runc's -ENOSYS stub: only when the default denies, since an allow,
        // log or trace default already lets new calls through (a tracer
        // handles them itself), and pointless when it is ENOSYS already.
        let enosys = !matches!(
            seccomp.default_action(),
            LinuxSeccompAction::ScmpActAllow
                | LinuxSeccompAction::ScmpActLog
                | LinuxSeccompAction::ScmpActTrace
        ) && default != RET_ENOSYS;

        Ok(Profile {
            default,
            abis,
            flags,
            listener,
            rules,
            enosys,
        })
    }

    /// What `abi`'s part of the filter decides, call by call.
    ///
    /// As runc does, a rule whose return equals the default is dropped, and
    /// names this ABI does not know are skipped. Among the remaining rules
    /// for one number, libseccomp's merge decides: the first rule without
    /// conditions (after dropping those that always hold) wins and discards
    /// every conditional rule for that number, wherever in the profile they
    /// stand. Conditional rules that all return the same are ORed; with
    /// different returns they are merged into libseccomp's argument tree
    /// (`tree`), which decides where they overlap and refuses, as
    /// libseccomp does, two that end in the same test with different actions.
    pub(super) fn section(&self, abi: Abi) -> Result<Section> {
        /// A conditional rule for one number, with where it came from.
        struct Entry {
            rule: usize,
            /// The call, as the error names it.
            call: String,
            chained: Chained,
        }
        // The first unconditional rule per number, and where it came in the
        // order libseccomp is given the rules.
        let mut plain: BTreeMap<u32, (u32, usize)> = BTreeMap::new();
        let mut chains: BTreeMap<u32, Vec<Entry>> = BTreeMap::new();
        for rule in &self.rules {
            if rule.ret == self.default {
                continue;
            }
            let args: Vec<Arg> = rule.args.iter().filter_map(|a| a.narrow(abi)).collect();
            if abi == Abi::I386 {
                // As libseccomp: an i386 socket or SysV IPC call may also come
                // through its multiplexer (`socketcall`, `ipc`, subcall in the
                // first argument), and a rule for the call holds there too,
                // with the subcall test in place of any on the first argument.
                // Its other conditions then test the multiplexer's arguments
                // (the call's own are in memory, where no filter can see
                // them): libseccomp 2.5 does so, and runc with it.
                for name in rule.names {
                    let Some((mux, call)) = multiplexed(name) else {
                        continue;
                    };
                    let via = if mux == SOCKETCALL {
                        "socketcall"
                    } else {
                        "ipc"
                    };
                    let mut mux_args = vec![Arg {
                        index: 0,
                        cmp: Cmp::Eq,
                        value: u64::from(call),
                    }];
                    mux_args.extend(args.iter().filter(|a| a.index != 0));
                    chains.entry(mux).or_default().push(Entry {
                        rule: rule.index,
                        call: format!("{name} (through {via})"),
                        chained: Chained {
                            ret: rule.ret,
                            args: mux_args,
                        },
                    });
                }
            }
            for name in rule.names {
                let Some(nr) = abi.number(name) else {
                    continue;
                };
                if args.is_empty() {
                    let seen = chains.get(&nr).map_or(0, Vec::len);
                    plain.entry(nr).or_insert((rule.ret, seen));
                } else {
                    chains.entry(nr).or_default().push(Entry {
                        rule: rule.index,
                        call: name.clone(),
                        chained: Chained {
                            ret: rule.ret,
                            args: args.clone(),
                        },
                    });
                }
            }
        }
        let mut verdicts = BTreeMap::new();
        for (nr, entries) in chains {
            // Conditional rules after an unconditional one are dropped;
            // those before it still have to merge (libseccomp adds them
            // first), though the unconditional rule then decides alone.
            let (entries, decided) = match plain.get(&nr) {
                Some(&(_, before)) => (&entries[..before], true),
                None => (&entries[..], false),
            };
            if entries.is_empty() {
                continue;
            }
            let one_action = entries
                .iter()
                .all(|e| e.chained.ret == entries[0].chained.ret);
            if one_action && decided {
                continue;
            }
            let verdict = if one_action {
                Verdict::Chain(entries.iter().map(|e| e.chained.clone()).collect())
            } else {
                let rules: Vec<(u32, Vec<Arg>)> = entries
                    .iter()
                    .map(|e| (e.chained.ret, e.chained.args.clone()))
                    .collect();
                Verdict::Tree(Tree::build(&rules, abi.wide_args()).map_err(|why| {
                    let (k, what) = match why {
                        Refusal::Conflict(k) => (
                            k,
                            "an earlier rule for it ends in the same argument test with a \
                             different action; libseccomp refuses such a pair (EEXIST), and so \
                             does runc",
                        ),
                        Refusal::Endless(k) => (
                            k,
                            "libseccomp 2.5 never finishes merging this rule's conditions with \
                             the earlier rules' for it (runc hangs on this profile); reorder or \
                             simplify the conditions",
                        ),
                    };
                    let e = &entries[k];
                    invalid(
                        format!("linux.seccomp.syscalls[{}]", e.rule),
                        format!("{} on {abi:?}: {what}", e.call),
                    )
                })?)
            };
            if !decided {
                verdicts.insert(nr, verdict);
            }
        }
        verdicts.extend(plain.into_iter().map(|(nr, (r, _))| (nr, Verdict::Ret(r))));

        // Every name counts here, also those of dropped rules, as in runc.
        let enosys_above = if self.enosys {
            self.rules
                .iter()
                .flat_map(|r| r.names.iter())
                .filter_map(|n| abi.number(n))
                .max()
        } else {
            None
        };
        Ok(Section {
            abi,
            verdicts,
            default: self.default,
            enosys_above,
        })
    }
}

/// i386's `socketcall`.
const SOCKETCALL: u32 = 102;
/// i386's `ipc`.
const IPC: u32 = 117;

/// i386's `socketcall` (102) and `ipc` (117) and the subcall numbers they
/// take for each call they multiplex (`SYS_SOCKET`…, `SEMOP`…).
fn multiplexed(name: &str) -> Option<(u32, u32)> {
    let socket = [
        "socket",
        "bind",
        "connect",
        "listen",
        "accept",
        "getsockname",
        "getpeername",
        "socketpair",
        "send",
        "recv",
        "sendto",
        "recvfrom",
        "shutdown",
        "setsockopt",
        "getsockopt",
        "sendmsg",
        "recvmsg",
        "accept4",
        "recvmmsg",
        "sendmmsg",
    ];
    if let Some(i) = socket.iter().position(|n| *n == name) {
        return Some((SOCKETCALL, i as u32 + 1));
    }
    let ipc = [
        ("semop", 1),
        ("semget", 2),
        ("semctl", 3),
        ("semtimedop", 4),
        ("msgsnd", 11),
        ("msgrcv", 12),
        ("msgget", 13),
        ("msgctl", 14),
        ("shmat", 21),
        ("shmdt", 22),
        ("shmget", 23),
        ("shmctl", 24),
    ];
    ipc.iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, call)| (IPC, call))
}

/// The `SECCOMP_RET_*` value of an action; `errno_ret` counts for errno and trace.
fn ret(action: LinuxSeccompAction, errno_ret: Option<u32>, field: &str) -> Result<u32> {
    let data = |max: u32, what: &str| match errno_ret {
        None => Ok(DEFAULT_ERRNO),
        Some(v) if v <= max => Ok(v),
        Some(v) => Err(invalid(
            field,
            format!("{v} is out of range for {what} (0 to {max})"),
        )),
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow.into(),
        LinuxSeccompAction::ScmpActErrno => {
            SeccompAction::Errno(data(MAX_ERRNO, "SCMP_ACT_ERRNO")?).into()
        }
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread.into()
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess.into(),
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap.into(),
        LinuxSeccompAction::ScmpActTrace => {
            SeccompAction::Trace(data(MAX_TRACE_DATA, "SCMP_ACT_TRACE")?).into()
        }
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log.into(),
        // seccompiler 0.5 has no user-notification action.
        LinuxSeccompAction::ScmpActNotify => libc::SECCOMP_RET_USER_NOTIF,
    })
}
