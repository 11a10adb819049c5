//! The compiler's semantics, run through the test interpreter.

use oci_spec::runtime::LinuxSeccomp;
use serde_json::{Value, json};

use super::abi::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, Abi, X32_SYSCALL_BIT};
use super::interp::{Data, longest_path, run};
use super::syscalls;
use super::{Filter, RET_ENOSYS};
use crate::error::Error;

pub(super) const ALLOW: u32 = 0x7fff_0000;
pub(super) const LOG: u32 = 0x7ffc_0000;
pub(super) const NOTIFY: u32 = 0x7fc0_0000;
pub(super) const TRAP: u32 = 0x0003_0000;
pub(super) const KILL_THREAD: u32 = 0;
pub(super) const KILL_PROCESS: u32 = 0x8000_0000;
const AUDIT_ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;

pub(super) fn errno(e: u32) -> u32 {
    0x0005_0000 | e
}

pub(super) fn trace(d: u32) -> u32 {
    0x7ff0_0000 | d
}

pub(super) fn profile(v: Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("a well-formed test profile")
}

pub(super) fn compile(v: Value) -> Filter {
    Filter::compile(&profile(v)).expect("the profile compiles")
}

fn refused(v: Value) -> (String, String) {
    match Filter::compile(&profile(v)) {
        Err(Error::InvalidConfig { field, reason }) => (field, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The number of `name` in `abi`.
pub(super) fn nr(abi: Abi, name: &str) -> u32 {
    abi.number(name)
        .unwrap_or_else(|| panic!("{name} unknown for {abi:?}"))
}

/// What the filter returns for a call of `abi`, with the number as that ABI numbers it.
pub(super) fn call(f: &Filter, abi: Abi, nr: u32, args: [u64; 6]) -> u32 {
    let arch = match abi {
        Abi::I386 => AUDIT_ARCH_I386,
        Abi::X86_64 | Abi::X32 => AUDIT_ARCH_X86_64,
    };
    run(
        f.program(),
        &Data {
            nr,
            arch,
            instruction_pointer: 0x7fff_1234_5678,
            args,
        },
    )
    .ret
}

fn x86_64(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
    call(f, Abi::X86_64, nr(Abi::X86_64, name), args)
}

fn a0(v: u64) -> [u64; 6] {
    [v, 0, 0, 0, 0, 0]
}

#[test]
fn tables_are_sorted_unique_and_hold_known_numbers() {
    for table in [syscalls::X86_64, syscalls::I386, syscalls::X32] {
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
    }
    let x32 = |n| X32_SYSCALL_BIT | n;
    for (abi, name, number) in [
        (Abi::X86_64, "read", 0),
        (Abi::X86_64, "getpid", 39),
        (Abi::X86_64, "clone3", 435),
        (Abi::X86_64, "uretprobe", 335),
        (Abi::X86_64, "open_tree_attr", 467),
        (Abi::X86_64, "file_setattr", 469),
        (Abi::I386, "getpid", 20),
        (Abi::I386, "socketcall", 102),
        (Abi::I386, "socket", 359),
        (Abi::I386, "cachestat", 451),
        (Abi::I386, "mseal", 462),
        (Abi::X32, "read", x32(0)),
        (Abi::X32, "ioctl", x32(514)),
        (Abi::X32, "futex_requeue", x32(456)),
        (Abi::X32, "uprobe", x32(336)),
    ] {
        assert_eq!(abi.number(name), Some(number), "{abi:?} {name}");
    }
    assert_eq!(Abi::I386.number("uprobe"), None);
    assert_eq!(Abi::X86_64.number("socketcall"), None);
    assert_eq!(
        Abi::X86_64.number("listns"),
        None,
        "Linux 6.19, after the tables"
    );
}

#[test]
fn every_action() {
    let rule = |action: &str, extra: Value| {
        let mut r = json!({"names": ["getpid"], "action": action});
        if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
            r.extend(extra.clone());
        }
        let f = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [r],
        }));
        x86_64(&f, "getpid", a0(0))
    };
    let none = json!({});
    assert_eq!(rule("SCMP_ACT_ERRNO", json!({"errnoRet": 13})), errno(13));
    assert_eq!(
        rule("SCMP_ACT_ERRNO", none.clone()),
        errno(1),
        "EPERM, as runc"
    );
    assert_eq!(rule("SCMP_ACT_ERRNO", json!({"errnoRet": 0})), errno(0));
    assert_eq!(rule("SCMP_ACT_KILL", none.clone()), KILL_THREAD);
    assert_eq!(rule("SCMP_ACT_KILL_THREAD", none.clone()), KILL_THREAD);
    assert_eq!(rule("SCMP_ACT_KILL_PROCESS", none.clone()), KILL_PROCESS);
    assert_eq!(rule("SCMP_ACT_TRAP", none.clone()), TRAP);
    assert_eq!(
        rule("SCMP_ACT_TRACE", json!({"errnoRet": 4242})),
        trace(4242)
    );
    assert_eq!(
        rule("SCMP_ACT_TRACE", none.clone()),
        trace(1),
        "EPERM, as runc"
    );
    assert_eq!(rule("SCMP_ACT_LOG", none.clone()), LOG);
    assert_eq!(rule("SCMP_ACT_NOTIFY", none), NOTIFY);
    // errnoRet means nothing to other actions, as in runc.
    assert_eq!(rule("SCMP_ACT_TRAP", json!({"errnoRet": 5})), TRAP);
}

#[test]
fn every_default_action() {
    for (action, errno_ret, want) in [
        ("SCMP_ACT_ALLOW", None, ALLOW),
        ("SCMP_ACT_ERRNO", None, errno(1)),
        ("SCMP_ACT_ERRNO", Some(38), errno(38)),
        ("SCMP_ACT_KILL", None, KILL_THREAD),
        ("SCMP_ACT_KILL_THREAD", None, KILL_THREAD),
        ("SCMP_ACT_KILL_PROCESS", None, KILL_PROCESS),
        ("SCMP_ACT_TRAP", None, TRAP),
        ("SCMP_ACT_TRACE", Some(7), trace(7)),
        ("SCMP_ACT_LOG", None, LOG),
        ("SCMP_ACT_NOTIFY", None, NOTIFY),
    ] {
        let mut p = json!({
            "defaultAction": action,
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["write"], "action": "SCMP_ACT_ALLOW"},
                         {"names": ["getpid"], "action": "SCMP_ACT_TRAP"}],
        });
        if let Some(e) = errno_ret {
            p["defaultErrnoRet"] = json!(e);
        }
        let f = compile(p);
        assert_eq!(x86_64(&f, "read", a0(0)), want, "{action}");
        assert_eq!(x86_64(&f, "getpid", a0(0)), TRAP, "{action}");
        assert_eq!(x86_64(&f, "write", a0(0)), ALLOW, "{action}");
    }
}

/// A one-rule profile: allow `getpid` when argument 0 `op` `value` (and `value_two`).
fn one_condition(op: &str, value: u64, value_two: Option<u64>) -> Filter {
    let mut arg = json!({"index": 0, "value": value, "op": op});
    if let Some(v2) = value_two {
        arg["valueTwo"] = json!(v2);
    }
    compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "args": [arg]}],
    }))
}

/// Values around the 32-bit boundary, with high halves that differ.
pub(super) const EDGES: [u64; 14] = [
    0,
    1,
    5,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0001,
    0x1_0000_0005,
    0x2_0000_0005,
    0xffff_ffff_0000_0005,
    0xffff_ffff_ffff_fffe,
    u64::MAX,
];

#[test]
fn every_operator_on_64_bit_values() {
    type Op = fn(u64, u64) -> bool;
    let ops: [(&str, Op); 6] = [
        ("SCMP_CMP_NE", |a, v| a != v),
        ("SCMP_CMP_LT", |a, v| a < v),
        ("SCMP_CMP_LE", |a, v| a <= v),
        ("SCMP_CMP_EQ", |a, v| a == v),
        ("SCMP_CMP_GE", |a, v| a >= v),
        ("SCMP_CMP_GT", |a, v| a > v),
    ];
    for (op, holds) in ops {
        for value in EDGES {
            let f = one_condition(op, value, None);
            for arg in EDGES {
                let want = if holds(arg, value) { ALLOW } else { errno(1) };
                assert_eq!(
                    x86_64(&f, "getpid", a0(arg)),
                    want,
                    "{arg:#x} {op} {value:#x}"
                );
            }
        }
    }
}

#[test]
fn masked_equal_compares_both_halves_under_the_mask() {
    for mask in [
        0xff,
        0xffff_ffff,
        0xff_0000_0000,
        0xffff_ffff_0000_0000,
        u64::MAX,
        0x1_0000_0001,
    ] {
        for datum in EDGES {
            let f = one_condition("SCMP_CMP_MASKED_EQ", mask, Some(datum));
            for arg in EDGES {
                let want = if arg & mask == datum & mask {
                    ALLOW
                } else {
                    errno(1)
                };
                assert_eq!(
                    x86_64(&f, "getpid", a0(arg)),
                    want,
                    "{arg:#x} & {mask:#x} == {datum:#x}"
                );
            }
        }
    }
    // A zero mask always holds: the rule has no condition.
    let f = one_condition("SCMP_CMP_MASKED_EQ", 0, Some(7));
    assert_eq!(x86_64(&f, "getpid", a0(3)), ALLOW);
    // Without valueTwo the datum is 0.
    let f = one_condition("SCMP_CMP_MASKED_EQ", 0x6, None);
    assert_eq!(x86_64(&f, "getpid", a0(0x9)), ALLOW);
    assert_eq!(x86_64(&f, "getpid", a0(0x2)), errno(1));
}

#[test]
fn conditions_of_a_rule_are_anded_rules_are_ored() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 10, "op": "SCMP_CMP_GT"},
                {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 5, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_GE"}]},
        ],
    }));
    let kill = |a: u64, b: u64, f5: u64| x86_64(&f, "kill", [a, b, 0, 0, 0, f5]);
    assert_eq!(kill(11, 0, 0), ALLOW);
    assert_eq!(kill(11, 9, 0), errno(1));
    assert_eq!(kill(10, 0, 0), errno(1));
    assert_eq!(kill(1, 1, 0x1_0000_0000), ALLOW);
    assert_eq!(kill(1, 1, 0xffff_ffff), errno(1));
}

#[test]
fn one_argument_compared_twice_splits_the_rule_as_runc_does() {
    // runc hands these to libseccomp as two rules: a0 >= 10 OR a0 <= 3.
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 10, "op": "SCMP_CMP_GE"},
            {"index": 0, "value": 3, "op": "SCMP_CMP_LE"}]}],
    }));
    assert_eq!(x86_64(&f, "kill", a0(12)), ALLOW);
    assert_eq!(x86_64(&f, "kill", a0(2)), ALLOW);
    assert_eq!(x86_64(&f, "kill", a0(5)), errno(1));
}

#[test]
fn several_rules_for_one_call() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            // Conditional rules: the first that matches wins.
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2,
             "args": [{"index": 1, "value": 5, "op": "SCMP_CMP_GE"}]},
            // An unconditional rule decides a call alone, also over earlier conditional ones.
            {"names": ["tkill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3,
             "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
            {"names": ["tkill"], "action": "SCMP_ACT_LOG"},
            {"names": ["tkill"], "action": "SCMP_ACT_TRAP"},
            {"names": ["tkill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 4,
             "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_NE"}]},
            // A rule with the default action is dropped: it shadows nothing.
            {"names": ["tgkill"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["tgkill"], "action": "SCMP_ACT_TRAP"},
            // A zero-mask condition is no condition.
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6,
             "args": [{"index": 0, "value": 0, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        ],
    }));
    let kill = |name: &str, sig: u64| x86_64(&f, name, [1, sig, 0, 0, 0, 0]);
    assert_eq!(kill("kill", 9), errno(1));
    assert_eq!(kill("kill", 6), errno(2));
    assert_eq!(kill("kill", 1), ALLOW);
    assert_eq!(kill("tkill", 9), LOG);
    assert_eq!(kill("tkill", 1), LOG);
    assert_eq!(kill("tgkill", 1), TRAP);
    assert_eq!(x86_64(&f, "getpid", a0(1)), errno(6));
}

#[test]
fn unknown_names_are_skipped() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["no_such_call", "getpid", "socketcall"], "action": "SCMP_ACT_ALLOW"}],
    }));
    assert_eq!(x86_64(&f, "getpid", a0(0)), ALLOW);
    assert_eq!(x86_64(&f, "read", a0(0)), errno(1));
}

#[test]
fn calls_above_every_named_one_get_enosys() {
    let p = |default: &str| {
        json!({
            "defaultAction": default,
            "syscalls": [
                {"names": ["getpid", "openat"], "action": "SCMP_ACT_ALLOW"},
                // Dropped for having the default's action, but still named.
                {"names": ["pidfd_open"], "action": default},
            ],
        })
    };
    let f = compile(p("SCMP_ACT_ERRNO"));
    let max = nr(Abi::X86_64, "pidfd_open");
    assert_eq!(call(&f, Abi::X86_64, max, a0(0)), errno(1));
    assert_eq!(x86_64(&f, "clone3", a0(0)), RET_ENOSYS);
    assert_eq!(call(&f, Abi::X86_64, max + 1, a0(0)), RET_ENOSYS);
    assert_eq!(call(&f, Abi::X86_64, 0x3fff_ffff, a0(0)), RET_ENOSYS);
    assert_eq!(x86_64(&f, "getppid", a0(0)), errno(1));
    assert_eq!(x86_64(&f, "openat", a0(0)), ALLOW);
    for default in ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"] {
        assert_eq!(x86_64(&compile(p(default)), "clone3", a0(0)), RET_ENOSYS);
    }
    for (default, ret) in [
        ("SCMP_ACT_ALLOW", ALLOW),
        ("SCMP_ACT_LOG", LOG),
        ("SCMP_ACT_TRACE", trace(1)),
    ] {
        assert_eq!(
            x86_64(&compile(p(default)), "clone3", a0(0)),
            ret,
            "{default}"
        );
    }

    // Each ABI has its own highest number.
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["socketcall", "getpid"], "action": "SCMP_ACT_ALLOW"}],
    }));
    assert_eq!(call(&f, Abi::X86_64, 40, a0(0)), RET_ENOSYS, "getpid is 39");
    assert_eq!(
        call(&f, Abi::I386, 101, a0(0)),
        errno(1),
        "socketcall is 102"
    );
    assert_eq!(call(&f, Abi::I386, 103, a0(0)), RET_ENOSYS);
    assert_eq!(call(&f, Abi::X32, X32_SYSCALL_BIT | 40, a0(0)), RET_ENOSYS);
    assert_eq!(call(&f, Abi::X32, X32_SYSCALL_BIT | 38, a0(0)), errno(1));
}

#[test]
fn each_abi_is_checked() {
    let listing = |arches: Value| {
        compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": arches,
            "syscalls": [{"names": ["getpid", "ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                          "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_EQ"}]}],
        }))
    };
    let only_native = listing(json!([
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM"
    ]));
    let all = listing(json!(["SCMP_ARCH_X86", "SCMP_ARCH_X32"]));
    let foreign = |f: &Filter, arch| {
        run(
            f.program(),
            &Data {
                nr: 39,
                arch,
                ..Data::default()
            },
        )
        .ret
    };

    for f in [&only_native, &all] {
        assert_eq!(x86_64(f, "getpid", a0(5)), errno(13));
        assert_eq!(x86_64(f, "getpid", a0(6)), ALLOW);
        assert_eq!(foreign(f, AUDIT_ARCH_AARCH64), KILL_PROCESS);
    }
    // i386, with its own numbers and 32-bit arguments.
    assert_eq!(call(&only_native, Abi::I386, 20, a0(5)), KILL_PROCESS);
    assert_eq!(
        call(&all, Abi::I386, nr(Abi::I386, "getpid"), a0(5)),
        errno(13)
    );
    assert_eq!(
        call(
            &all,
            Abi::I386,
            nr(Abi::I386, "getpid"),
            a0(0xdead_0000_0005)
        ),
        errno(13)
    );
    assert_eq!(
        call(&all, Abi::I386, 39, a0(5)),
        ALLOW,
        "39 is mkdir on i386"
    );
    // x32: numbers with the bit, never x86_64 rules; without x32 listed, killed.
    let x32_getpid = nr(Abi::X32, "getpid");
    assert_eq!(call(&all, Abi::X32, x32_getpid, a0(5)), errno(13));
    assert_eq!(
        call(&all, Abi::X32, nr(Abi::X32, "ptrace"), a0(5)),
        errno(13)
    );
    assert_eq!(
        call(&all, Abi::X32, x32_getpid, a0(0xdead_0000_0005)),
        errno(13)
    );
    assert_eq!(
        call(&only_native, Abi::X32, x32_getpid, a0(5)),
        KILL_PROCESS
    );
    assert_eq!(
        call(&only_native, Abi::X32, X32_SYSCALL_BIT | 101, a0(5)),
        KILL_PROCESS
    );
    // -1, what a tracer sets to skip a call, gets the default.
    assert_eq!(call(&only_native, Abi::X86_64, u32::MAX, a0(5)), ALLOW);
}

#[test]
fn flags_and_listener() {
    let flags = |extra: Value| {
        let mut p = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                      "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}],
        });
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
        compile(p)
    };
    let f = flags(json!({}));
    assert_eq!(
        f.flags(),
        libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
    );
    assert_eq!(f.listener(), None);

    let f = flags(json!({
        "listenerPath": "/run/agent.sock",
        "listenerMetadata": "opaque",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}],
    }));
    assert_eq!(
        f.flags(),
        libc::SECCOMP_FILTER_FLAG_LOG
            | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    );
    let listener = f.listener().expect("a listener");
    assert_eq!(listener.path, std::path::Path::new("/run/agent.sock"));
    assert_eq!(listener.metadata.as_deref(), Some("opaque"));
    let fprog = f.fprog();
    assert_eq!(usize::from(fprog.len), f.program().len());

    let f = compile(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/a"}));
    assert_ne!(f.flags() & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER, 0);
    let (field, _) = refused(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    assert_eq!(field, "linux.seccomp.listenerPath");
}

#[test]
fn bad_input_is_refused_naming_the_field() {
    let rule = |r: Value| {
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO"}, r]})
    };
    let cases = [
        (
            rule(json!({"names": [], "action": "SCMP_ACT_ERRNO"})),
            "linux.seccomp.syscalls[1].names",
        ),
        (
            rule(json!({"names": ["read", ""], "action": "SCMP_ACT_ERRNO"})),
            "linux.seccomp.syscalls[1].names[1]",
        ),
        (
            rule(json!({"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 4096})),
            "linux.seccomp.syscalls[1].errnoRet",
        ),
        (
            rule(json!({"names": ["read"], "action": "SCMP_ACT_TRACE", "errnoRet": 65536})),
            "linux.seccomp.syscalls[1].errnoRet",
        ),
        (
            rule(json!({"names": ["read"], "action": "SCMP_ACT_ERRNO",
                     "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                              {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]})),
            "linux.seccomp.syscalls[1].args[1].index",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}),
            "linux.seccomp.defaultErrnoRet",
        ),
    ];
    for (p, field) in cases {
        assert_eq!(refused(p).0, field);
    }
    // A large errno within the kernel's cap and a full 16-bit trace datum are fine.
    compile(rule(
        json!({"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 4095}),
    ));
    compile(rule(
        json!({"names": ["read"], "action": "SCMP_ACT_TRACE", "errnoRet": 65535}),
    ));
}

#[test]
fn unknown_names_of_actions_operators_arches_and_flags_fail_parsing() {
    let spec = |seccomp: Value| {
        let doc = json!({"ociVersion": "1.2.0", "linux": {"seccomp": seccomp}});
        let bytes = serde_json::to_vec(&doc).expect("serialises");
        match crate::parse_spec(&bytes, std::path::Path::new("config.json")) {
            Err(Error::ParseConfig { field, .. }) => field,
            other => panic!("expected a parse error, got {other:?}"),
        }
    };
    let base = || {
        json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]})
    };
    let mut p = base();
    p["syscalls"][0]["action"] = json!("SCMP_ACT_EXPLODE");
    assert_eq!(spec(p), "linux.seccomp.syscalls[0].action");
    let mut p = base();
    p["syscalls"][0]["args"][0]["op"] = json!("SCMP_CMP_ALMOST");
    assert_eq!(spec(p), "linux.seccomp.syscalls[0].args[0].op");
    let mut p = base();
    p["architectures"] = json!(["SCMP_ARCH_Z80"]);
    assert_eq!(spec(p), "linux.seccomp.architectures[0]");
    let mut p = base();
    p["flags"] = json!(["SECCOMP_FILTER_FLAG_TURBO"]);
    assert_eq!(spec(p), "linux.seccomp.flags[0]");
    let mut p = base();
    p["defaultAction"] = json!("SCMP_ACT_MAYBE");
    assert_eq!(spec(p), "linux.seccomp.defaultAction");
}

/// An allow-list of the first `n` x86_64 calls, default errno, as container
/// profiles are; every tenth call also gets an argument rule.
pub(super) fn allow_list(n: usize, with_args: bool) -> Value {
    let names: Vec<&str> = syscalls::X86_64.iter().map(|(n, _)| *n).take(n).collect();
    let mut rules = vec![json!({"names": names, "action": "SCMP_ACT_ALLOW"})];
    if with_args {
        let picked: Vec<&str> = syscalls::I386.iter().map(|(n, _)| *n).step_by(10).collect();
        // After the allow rule: before it, libseccomp (and so runc) would
        // refuse the pair for i386's multiplexed calls (`EEXIST`).
        rules.push(
            json!({"names": picked, "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
            "args": [{"index": 2, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_GE"},
                     {"index": 3, "value": 0xff, "valueTwo": 7, "op": "SCMP_CMP_MASKED_EQ"}]}),
        );
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules,
    })
}

/// ⌈log2 n⌉.
fn log2_ceil(n: usize) -> usize {
    (usize::BITS - n.saturating_sub(1).leading_zeros()) as usize
}

#[test]
fn long_allow_lists_stay_small_and_shallow() {
    for n in [50, 100, 300, syscalls::X86_64.len()] {
        for with_args in [false, true] {
            let f = compile(allow_list(n, with_args));
            let len = f.program().len();
            let longest = longest_path(f.program());
            // Arch check (3) + load + x32 check, then the tree: one jge per
            // level over at most 2n+2 intervals (plus a trampoline for each
            // level whose lower half is far), then the leaf's rule checks.
            let intervals = 2 * n + 2;
            // i386's socketcall and ipc carry a chain of their subcalls (one
            // check each) when the list names the calls they multiplex.
            let mux = 2 * 20 + 2;
            let bound =
                5 + 2 * log2_ceil(intervals) + if with_args { 2 * 11 + 2 } else { 1 }.max(mux);
            println!("{n} calls, args {with_args}: {len} instructions, longest path {longest}");
            assert!(len <= 4096);
            assert!(longest <= bound, "{longest} > {bound}");
            // The interpreter never runs longer than the static bound.
            let mut seen = 0;
            for abi in [Abi::X86_64, Abi::X32, Abi::I386] {
                let (lo, _) = abi.numbers();
                for k in (0..600).chain([0x3fff_ffff, u32::MAX - lo]) {
                    let d = Data {
                        nr: lo.wrapping_add(k),
                        arch: if abi == Abi::I386 {
                            AUDIT_ARCH_I386
                        } else {
                            AUDIT_ARCH_X86_64
                        },
                        args: [0, 0, 0x1_0000_0000, 7, 0, 0],
                        ..Data::default()
                    };
                    seen = seen.max(run(f.program(), &d).steps);
                }
            }
            assert!(seen <= longest);
        }
    }
}

#[test]
fn a_300_call_allow_list_for_x86_64() {
    let names: Vec<&str> = syscalls::X86_64.iter().map(|(n, _)| *n).take(300).collect();
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}],
    }));
    let (len, longest) = (f.program().len(), longest_path(f.program()));
    println!("300 x86_64 calls: {len} instructions, longest path {longest}");
    // 5 for the arch and x32 checks, 7 levels of search, the ret.
    assert_eq!((len, longest), (231, 12));
}

#[test]
fn profiles_past_the_kernel_limit_are_refused() {
    // Every call with a distinct 64-bit condition: far more than 4096 instructions.
    let rules: Vec<Value> = syscalls::X86_64
        .iter()
        .map(|(name, _)| {
            json!({"names": [name], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_GT"},
            {"index": 1, "value": 2, "op": "SCMP_CMP_LT"},
            {"index": 2, "value": 3, "op": "SCMP_CMP_NE"}]})
        })
        .collect();
    let (field, reason) = refused(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules}));
    assert_eq!(field, "linux.seccomp");
    assert!(reason.contains("4096"), "{reason}");
}
