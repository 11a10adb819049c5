//! Differential tests: compiled programs, run by the interpreter, against a
//! direct evaluation of the OCI semantics (written from the documented
//! rules, sharing no code with the compiler but the name tables), and
//! against seccompiler's own compiler where it can express a profile.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde_json::{Value, json};

use super::Filter;
use super::abi::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, Abi, X32_SYSCALL_BIT};
use super::interp::{Data, run};
use super::tests::{EDGES, KILL_PROCESS, compile, profile};
use crate::error::Error;

/// What the kernel should get back for `d` under `p`.
/// `None` where overlapping rules with different actions decide, as libseccomp's
/// argument tree does (checked against libseccomp in `libseccomp_tests`).
fn reference(p: &LinuxSeccomp, d: &Data) -> Option<u32> {
    let listed = |a: Arch| p.architectures().iter().flatten().any(|x| *x == a);
    let default = p.default_action().as_u32(p.default_errno_ret());
    let abi = match d.arch {
        AUDIT_ARCH_X86_64 if d.nr & X32_SYSCALL_BIT == 0 => Abi::X86_64,
        AUDIT_ARCH_X86_64 if listed(Arch::ScmpArchX32) => Abi::X32,
        AUDIT_ARCH_X86_64 if d.nr == u32::MAX => return Some(default),
        AUDIT_ARCH_I386 if listed(Arch::ScmpArchX86) => Abi::I386,
        _ => return Some(KILL_PROCESS),
    };
    let width = if abi == Abi::X86_64 {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    let holds = |a: &LinuxSeccompArg| {
        let x = d.args[a.index()] & width;
        let v = a.value() & width;
        match a.op() {
            LinuxSeccompOperator::ScmpCmpNe => x != v,
            LinuxSeccompOperator::ScmpCmpLt => x < v,
            LinuxSeccompOperator::ScmpCmpLe => x <= v,
            LinuxSeccompOperator::ScmpCmpEq => x == v,
            LinuxSeccompOperator::ScmpCmpGe => x >= v,
            LinuxSeccompOperator::ScmpCmpGt => x > v,
            LinuxSeccompOperator::ScmpCmpMaskedEq => x & v == a.value_two().unwrap_or(0) & v,
        }
    };
    let always = |a: &&LinuxSeccompArg| {
        a.op() == LinuxSeccompOperator::ScmpCmpMaskedEq && a.value() & width == 0
    };

    // i386's multiplexers, as libseccomp reads a rule for a call they carry:
    // `socketcall(n)` and `ipc(n)` are that call, for an unconditional rule.
    let via_mux = |name: &str| -> Option<(u32, u64)> {
        const SOCKET: [&str; 20] = [
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
        const IPC: [(&str, u64); 12] = [
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
        if let Some(i) = SOCKET.iter().position(|n| *n == name) {
            return Some((102, i as u64 + 1));
        }
        IPC.iter().find(|(n, _)| *n == name).map(|&(_, c)| (117, c))
    };
    // The rules that apply to this call, in the order libseccomp is given
    // them: (return, whether it is unconditional, whether its conditions hold).
    let mut applies: Vec<(u32, bool, bool)> = Vec::new();
    for call in p.syscalls().iter().flatten() {
        let ret = call.action().as_u32(call.errno_ret());
        if ret == default {
            continue;
        }
        let args = call.args().clone().unwrap_or_default();
        let repeated = (0..6).any(|i| args.iter().filter(|a| a.index() == i).count() > 1);
        let groups: Vec<Vec<LinuxSeccompArg>> = if repeated {
            args.into_iter().map(|a| vec![a]).collect()
        } else {
            vec![args]
        };
        for name in call.names() {
            // On i386, a rule for a multiplexed call also holds for the
            // multiplexer, with the subcall in place of a first-argument test.
            let mux = (abi == Abi::I386)
                .then(|| via_mux(name))
                .flatten()
                .filter(|(mux, _)| *mux == d.nr);
            for group in &groups {
                if let Some((_, sub)) = mux {
                    let rest = group.iter().filter(|a| a.index() != 0);
                    let holds = d.args[0] & width == sub && rest.clone().all(holds);
                    applies.push((ret, false, holds));
                }
                if abi.number(name) == Some(d.nr) {
                    let unconditional = group.iter().all(|a| always(&a));
                    applies.push((ret, unconditional, group.iter().all(holds)));
                }
            }
        }
    }
    // Conditional rules after the first unconditional one are dropped; it
    // decides. Before it, or without one, matching conditional rules that
    // disagree are decided by libseccomp's argument tree, which
    // `libseccomp_tests` checks against libseccomp itself: not here.
    if let Some(&(ret, _, _)) = applies.iter().find(|(_, u, _)| *u) {
        return Some(ret);
    }
    let rets: Vec<u32> = applies.iter().map(|(r, _, _)| *r).collect();
    if rets.iter().any(|r| *r != rets[0]) {
        return None;
    }
    if let Some(&(ret, _, _)) = applies.iter().find(|(_, _, h)| *h) {
        return Some(ret);
    }
    let permissive = matches!(
        p.default_action(),
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    );
    let highest = p
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|c| c.names())
        .filter_map(|n| abi.number(n))
        .max();
    Some(match highest {
        Some(max) if !permissive && d.nr > max => 0x0005_0000 | libc::ENOSYS as u32,
        _ => default,
    })
}

/// xorshift64*: deterministic, so a failure reproduces.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// A value near an edge, near a given one, or anything.
    pub(super) fn value(&mut self, near: &[u64]) -> u64 {
        match self.below(4) {
            0 => *self.pick(&EDGES),
            1 if !near.is_empty() => {
                let base = *self.pick(near);
                base.wrapping_add(self.below(3) as u64).wrapping_sub(1)
            }
            2 => self.below(16) as u64,
            _ => self.next(),
        }
    }
}

/// Names in every ABI, in some, renumbered in x32 (ioctl), newer ones, unknown ones.
const NAMES: [&str; 16] = [
    "read",
    "write",
    "getpid",
    "kill",
    "ioctl",
    "openat",
    "clone3",
    "futex_wake",
    "socket",
    "socketcall",
    "uprobe",
    "mmap",
    "close",
    "file_setattr",
    "no_such_call",
    "ptrace",
];

const ACTIONS: [&str; 10] = [
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_ERRNO",
];

const OPS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

fn random_profile(rng: &mut Rng) -> (Value, Vec<u64>) {
    let mut values = Vec::new();
    let action = |rng: &mut Rng| {
        let mut a = json!({"action": rng.pick(&ACTIONS)});
        if rng.chance(60) {
            a["errnoRet"] = json!(rng.pick(&[0u32, 1, 13, 38, 4095]));
        }
        a
    };
    let mut p = json!({"listenerPath": "/run/agent.sock"});
    let default = action(rng);
    p["defaultAction"] = default["action"].clone();
    if let Some(e) = default.get("errnoRet") {
        p["defaultErrnoRet"] = e.clone();
    }
    let arches: Vec<&str> = [
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_AARCH64",
    ]
    .into_iter()
    .filter(|_| rng.chance(50))
    .collect();
    p["architectures"] = json!(arches);

    let mut rules = Vec::new();
    for _ in 0..1 + rng.below(10) {
        let mut rule = action(rng);
        let names: Vec<&str> = (0..1 + rng.below(3)).map(|_| *rng.pick(&NAMES)).collect();
        rule["names"] = json!(names);
        let mut args = Vec::new();
        for _ in 0..rng.below(4) {
            let value = rng.value(&values);
            values.push(value);
            let spread = if rng.chance(70) { 3 } else { 6 };
            let index = rng.below(spread);
            let mut arg = json!({"index": index, "value": value, "op": rng.pick(&OPS)});
            if rng.chance(70) {
                let two = rng.value(&values);
                values.push(two);
                arg["valueTwo"] = json!(two);
            }
            args.push(arg);
        }
        if !args.is_empty() {
            rule["args"] = json!(args);
        }
        rules.push(rule);
    }
    p["syscalls"] = json!(rules);
    (p, values)
}

fn random_data(rng: &mut Rng, values: &[u64]) -> Data {
    let arch = match rng.below(10) {
        0..=6 => AUDIT_ARCH_X86_64,
        7 | 8 => AUDIT_ARCH_I386,
        _ => 183 | 0x8000_0000 | 0x4000_0000,
    };
    let abi = match arch {
        AUDIT_ARCH_I386 => Abi::I386,
        _ if rng.chance(25) => Abi::X32,
        _ => Abi::X86_64,
    };
    let nr = match rng.below(8) {
        0..=4 => abi.number(rng.pick::<&str>(&NAMES)).unwrap_or(0),
        5 => abi.numbers().0 + rng.below(600) as u32,
        6 => *rng.pick(&[u32::MAX, X32_SYSCALL_BIT - 1, X32_SYSCALL_BIT, 0]),
        _ => rng.next() as u32,
    };
    let mut args = [0u64; 6];
    for a in &mut args {
        *a = rng.value(values);
    }
    Data {
        nr,
        arch,
        instruction_pointer: rng.next(),
        args,
    }
}

#[test]
fn random_profiles_agree_with_the_reference() {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let (mut checked, mut tree, mut refused) = (0, 0, 0);
    for case in 0..3000 {
        let (p, values) = random_profile(&mut rng);
        let oci = profile(p.clone());
        let f = match Filter::compile(&oci) {
            Ok(f) => f,
            // Refusals of libseccomp's merge are checked against it in
            // `libseccomp_tests`; anything else is a failure here.
            Err(Error::InvalidConfig { reason, .. }) if reason.contains("libseccomp") => {
                refused += 1;
                continue;
            }
            Err(e) => panic!("case {case}: {e}\nprofile: {p}"),
        };
        for _ in 0..100 {
            let d = random_data(&mut rng, &values);
            let Some(want) = reference(&oci, &d) else {
                tree += 1;
                continue;
            };
            let got = run(f.program(), &d).ret;
            assert_eq!(got, want, "case {case}: {d:?}\nprofile: {p}");
            checked += 1;
        }
    }
    // Most calls are decided here, not by the tree.
    assert!(
        checked > 250_000,
        "{checked} checked, {tree} left to the tree, {refused} refused"
    );
}

/// A profile both compilers can express: default allow, one errno action,
/// x86_64 only, no argument compared twice in a rule, and a call either
/// unconditional or only conditional.
fn random_single_action(rng: &mut Rng) -> (Value, SeccompFilter, Vec<u64>) {
    let mut values = Vec::new();
    let mut rules = Vec::new();
    let mut theirs: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let names = [
        "read", "write", "getpid", "kill", "ioctl", "openat", "mmap", "close",
    ];
    let chosen: Vec<&str> = names.into_iter().filter(|_| rng.chance(70)).collect();
    for name in chosen {
        let nr = i64::from(Abi::X86_64.number(name).unwrap_or(0));
        if rng.chance(25) {
            rules.push(json!({"names": [name], "action": "SCMP_ACT_ERRNO"}));
            theirs.insert(nr, Vec::new());
            continue;
        }
        let mut conditional = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let mut indexes: Vec<u8> = (0..6).collect();
            let mut args = Vec::new();
            let mut conds = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let index = indexes.remove(rng.below(indexes.len()));
                let value = rng.value(&values);
                values.push(value);
                let op = rng.below(7);
                let (arg, cmp, datum) = if op == 6 {
                    let two = rng.value(&values);
                    values.push(two);
                    (
                        json!({"index": index, "value": value, "valueTwo": two,
                            "op": "SCMP_CMP_MASKED_EQ"}),
                        SeccompCmpOp::MaskedEq(value),
                        two,
                    )
                } else {
                    let cmp = [
                        SeccompCmpOp::Ne,
                        SeccompCmpOp::Lt,
                        SeccompCmpOp::Le,
                        SeccompCmpOp::Eq,
                        SeccompCmpOp::Ge,
                        SeccompCmpOp::Gt,
                    ][op]
                        .clone();
                    (
                        json!({"index": index, "value": value, "op": OPS[op]}),
                        cmp,
                        value,
                    )
                };
                args.push(arg);
                conds.push(
                    SeccompCondition::new(index, SeccompCmpArgLen::Qword, cmp, datum)
                        .expect("a valid condition"),
                );
            }
            rules.push(json!({"names": [name], "action": "SCMP_ACT_ERRNO", "args": args}));
            conditional.push(SeccompRule::new(conds).expect("a valid rule"));
        }
        theirs.insert(nr, conditional);
    }
    let ours = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules});
    let filter = SeccompFilter::new(
        theirs,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        TargetArch::x86_64,
    )
    .expect("a valid seccompiler filter");
    (ours, filter, values)
}

#[test]
fn argument_checks_agree_with_seccompiler() {
    let mut rng = Rng(0x5eed_cafe_f00d_0002);
    for case in 0..500 {
        let (ours, theirs, values) = random_single_action(&mut rng);
        let f = compile(ours.clone());
        let theirs: BpfProgram = theirs.try_into().expect("seccompiler compiles it");
        for _ in 0..200 {
            let mut d = random_data(&mut rng, &values);
            d.arch = AUDIT_ARCH_X86_64;
            d.nr &= !X32_SYSCALL_BIT;
            if rng.chance(80) {
                d.nr = Abi::X86_64.number(rng.pick::<&str>(&NAMES)).unwrap_or(0);
            }
            let (a, b) = (run(f.program(), &d).ret, run(&theirs, &d).ret);
            assert_eq!(a, b, "case {case}: {d:?}\nprofile: {ours}");
        }
    }
}
