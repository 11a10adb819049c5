//! Emits the BPF program for the sections of a profile.
//!
//! ```text
//!       ld  arch
//!       jeq AUDIT_ARCH_X86_64 → x86_64
//!       jeq AUDIT_ARCH_I386   → i386        (if the profile lists SCMP_ARCH_X86)
//!       ret KILL_PROCESS                    (an ABI the profile does not list)
//! x86_64: ld nr
//!       jset X32_SYSCALL_BIT  → x32
//!       <search tree over x86_64 numbers>
//! x32:  <search tree over x32 numbers>     (if listed; else: nr == -1 ? default : KILL_PROCESS)
//! i386: ld nr
//!       <search tree over i386 numbers>
//! ```
//!
//! A search tree covers its ABI's numbers with intervals that each end in
//! one verdict: a return shared by a run of numbers (calls with the same
//! unconditional action, the gaps between named calls, everything above the
//! highest named call for the ENOSYS rule), or one call's argument rules. A
//! balanced tree of `jge` over the interval starts finds the interval in
//! ⌈log2 intervals⌉ jumps, so the number is known exactly once there and
//! needs no `jeq`.

use seccompiler::sock_filter;

use super::RET_KILL_PROCESS;
use super::abi::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, Abi, X32_SYSCALL_BIT};
use super::bpf::{ARCH_OFFSET, Asm, AsmError, Cond, Label, NR_OFFSET, To, arg_hi, arg_lo};
use super::profile::{Arg, Chained, Cmp, Section, Verdict};
use super::tree::Tree;

/// The program for `sections`, which hold the x86_64 one and any of x32 and i386.
pub(super) fn generate(default: u32, sections: &[Section]) -> Result<Vec<sock_filter>, AsmError> {
    let find = |abi| sections.iter().find(|s| s.abi == abi);
    let mut asm = Asm::default();

    let x86_64 = asm.label();
    asm.load(ARCH_OFFSET);
    asm.branch(Cond::Eq, AUDIT_ARCH_X86_64, To::Label(x86_64), To::Next);
    let i386 = find(Abi::I386).map(|s| {
        let l = asm.label();
        asm.branch(Cond::Eq, AUDIT_ARCH_I386, To::Label(l), To::Next);
        (l, s)
    });
    asm.ret(RET_KILL_PROCESS);

    asm.bind(x86_64);
    asm.load(NR_OFFSET);
    let x32 = asm.label();
    asm.branch(Cond::Set, X32_SYSCALL_BIT, To::Label(x32), To::Next);
    if let Some(s) = find(Abi::X86_64) {
        section(&mut asm, s);
    } else {
        asm.ret(default);
    }
    asm.bind(x32);
    if let Some(s) = find(Abi::X32) {
        section(&mut asm, s);
    } else {
        // An x32 call when the profile does not list x32 is a call from an
        // ABI the profile does not know, as libseccomp treats it; -1 is let
        // through to the default, since tracers set it to skip a call.
        let kill = asm.label();
        asm.branch(Cond::Eq, u32::MAX, To::Next, To::Label(kill));
        asm.ret(default);
        asm.bind(kill);
        asm.ret(RET_KILL_PROCESS);
    }

    if let Some((l, s)) = i386 {
        asm.bind(l);
        asm.load(NR_OFFSET);
        section(&mut asm, s);
    }
    asm.assemble()
}

/// What an interval of numbers ends in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leaf<'a> {
    Ret(u32),
    Chain(&'a [Chained]),
    Tree(&'a Tree),
}

/// The search tree of one section; the accumulator holds the call number.
fn section(asm: &mut Asm, s: &Section) {
    tree(asm, &intervals(s), s.default, s.abi.wide_args());
}

/// Covers the section's numbers with intervals `(start, leaf)`, in order,
/// the first starting at the lowest number, each running to the next start.
fn intervals(s: &Section) -> Vec<(u32, Leaf<'_>)> {
    let (lo, end) = s.abi.numbers();
    let mut out = Vec::new();
    let mut cursor = u64::from(lo);
    for (&nr, verdict) in s.verdicts.range(lo..) {
        if u64::from(nr) >= end {
            break;
        }
        gap(s, cursor, u64::from(nr), &mut out);
        let leaf = match verdict {
            Verdict::Ret(r) => Leaf::Ret(*r),
            Verdict::Chain(chain) => Leaf::Chain(chain),
            Verdict::Tree(t) => Leaf::Tree(t),
        };
        add(&mut out, nr, leaf);
        cursor = u64::from(nr) + 1;
    }
    gap(s, cursor, end, &mut out);
    out
}

/// Appends an interval, merging it into the last one when both just return the same.
fn add<'a>(out: &mut Vec<(u32, Leaf<'a>)>, start: u32, leaf: Leaf<'a>) {
    match (out.last(), leaf) {
        (Some((_, Leaf::Ret(last))), Leaf::Ret(r)) if *last == r => {}
        _ => out.push((start, leaf)),
    }
}

/// The numbers `from..to` that no rule names: the default, or ENOSYS above
/// the highest number the profile names.
fn gap(s: &Section, from: u64, to: u64, out: &mut Vec<(u32, Leaf<'_>)>) {
    let split = s
        .enosys_above
        .map_or(to, |max| (u64::from(max) + 1).clamp(from, to));
    for (a, b) in [(from, split), (split, to)] {
        if a < b {
            // a < b <= 2^32: a call number.
            let a = a as u32;
            add(out, a, Leaf::Ret(s.background(a)));
        }
    }
}

/// A balanced binary search over interval starts.
fn tree(asm: &mut Asm, intervals: &[(u32, Leaf<'_>)], default: u32, wide: bool) {
    match intervals {
        [] => asm.ret(default),
        [(_, leaf)] => match leaf {
            Leaf::Ret(r) => asm.ret(*r),
            Leaf::Chain(chain) => rules(asm, chain, default, wide),
            Leaf::Tree(t) => t.emit(asm, default),
        },
        _ => {
            let mid = intervals.len() / 2;
            let upper = asm.label();
            asm.branch(Cond::Ge, intervals[mid].0, To::Label(upper), To::Next);
            tree(asm, &intervals[..mid], default, wide);
            asm.bind(upper);
            tree(asm, &intervals[mid..], default, wide);
        }
    }
}

/// One call's conditional rules: the first whose conditions all hold returns.
fn rules(asm: &mut Asm, chain: &[Chained], default: u32, wide: bool) {
    for rule in chain {
        let next_rule = asm.label();
        for &arg in &rule.args {
            condition(asm, arg, next_rule, wide);
        }
        asm.ret(rule.ret);
        asm.bind(next_rule);
    }
    asm.ret(default);
}

/// Falls through when `arg` holds, jumps to `fail` when not. A `wide`
/// argument is 64 bits, compared as two halves: the high one decides unless
/// it is equal, then the low one does; otherwise only the low half counts.
fn condition(asm: &mut Asm, arg: Arg, fail: Label, wide: bool) {
    let (hi, lo) = ((arg.value >> 32) as u32, arg.value as u32);
    let fail = To::Label(fail);
    let next = To::Next;
    let lo_off = arg_lo(arg.index);
    let hi_off = arg_hi(arg.index);

    if let Cmp::MaskedEq(mask) = arg.cmp {
        let halves = [((mask >> 32) as u32, hi, hi_off), (mask as u32, lo, lo_off)];
        for (m, v, off) in halves.into_iter().skip(usize::from(!wide)) {
            if m == 0 {
                continue;
            }
            asm.load(off);
            if m != u32::MAX {
                asm.and(m);
            }
            asm.branch(Cond::Eq, v, next, fail);
        }
        return;
    }

    // The low-half test and, for 64 bits, what the high half decides:
    // (jump when hi > value, whether that means the condition holds).
    let (low, high_gt_holds) = match arg.cmp {
        Cmp::Eq => ((Cond::Eq, next, fail), None),
        Cmp::Ne => ((Cond::Eq, fail, next), None),
        Cmp::Gt => ((Cond::Gt, next, fail), Some(true)),
        Cmp::Ge => ((Cond::Ge, next, fail), Some(true)),
        Cmp::Lt => ((Cond::Ge, fail, next), Some(false)),
        Cmp::Le => ((Cond::Gt, fail, next), Some(false)),
        Cmp::MaskedEq(_) => return,
    };
    let holds = asm.label();
    if wide {
        asm.load(hi_off);
        match (arg.cmp, high_gt_holds) {
            // Equal needs both halves equal; not-equal holds once one differs.
            (Cmp::Eq, _) => asm.branch(Cond::Eq, hi, next, fail),
            (Cmp::Ne, _) => asm.branch(Cond::Eq, hi, next, To::Label(holds)),
            (_, Some(gt_holds)) => {
                let (gt, lt) = if gt_holds {
                    (To::Label(holds), fail)
                } else {
                    (fail, To::Label(holds))
                };
                asm.branch(Cond::Gt, hi, gt, next);
                asm.branch(Cond::Eq, hi, next, lt);
            }
            (_, None) => {}
        }
    }
    asm.load(lo_off);
    let (cond, jt, jf) = low;
    asm.branch(cond, lo, jt, jf);
    asm.bind(holds);
}
