//! Classic BPF as seccomp accepts it: the few opcodes a filter needs, an
//! assembler with labels that turns far conditional jumps into long ones, and
//! a check of the finished program against the kernel's rules.

use seccompiler::sock_filter;

// Opcode parts, from <linux/bpf_common.h>.
pub(super) const BPF_LD: u16 = 0x00;
pub(super) const BPF_ALU: u16 = 0x04;
pub(super) const BPF_JMP: u16 = 0x05;
pub(super) const BPF_RET: u16 = 0x06;
pub(super) const BPF_W: u16 = 0x00;
pub(super) const BPF_ABS: u16 = 0x20;
pub(super) const BPF_AND: u16 = 0x50;
pub(super) const BPF_JA: u16 = 0x00;
pub(super) const BPF_JEQ: u16 = 0x10;
pub(super) const BPF_JGT: u16 = 0x20;
pub(super) const BPF_JGE: u16 = 0x30;
pub(super) const BPF_JSET: u16 = 0x40;
pub(super) const BPF_K: u16 = 0x00;

/// The kernel's limit on a program's length (`BPF_MAXINSNS`).
pub(super) const MAX_INSNS: usize = 4096;
/// Size of `struct seccomp_data`: `nr`, `arch`, `instruction_pointer`, `args[6]`.
pub(super) const SECCOMP_DATA_LEN: u32 = 64;
/// Offset of `seccomp_data.nr`.
pub(super) const NR_OFFSET: u32 = 0;
/// Offset of `seccomp_data.arch`.
pub(super) const ARCH_OFFSET: u32 = 4;

/// Offset of the low 32 bits of argument `index` (the data is little-endian).
pub(super) fn arg_lo(index: u8) -> u32 {
    16 + 8 * u32::from(index)
}

/// Offset of the high 32 bits of argument `index`.
pub(super) fn arg_hi(index: u8) -> u32 {
    arg_lo(index) + 4
}

/// The conditional jumps; each compares the accumulator with a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cond {
    /// `A == k`.
    Eq,
    /// `A > k`.
    Gt,
    /// `A >= k`.
    Ge,
    /// `A & k != 0`.
    Set,
}

impl Cond {
    fn code(self) -> u16 {
        BPF_JMP
            | BPF_K
            | match self {
                Cond::Eq => BPF_JEQ,
                Cond::Gt => BPF_JGT,
                Cond::Ge => BPF_JGE,
                Cond::Set => BPF_JSET,
            }
    }
}

/// A place in the program, bound once to the instruction that follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Label(usize);

/// Where a conditional jump goes on one of its two outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum To {
    /// The instruction after the jump.
    Next,
    /// A label, which must come later: classic BPF only jumps forward.
    Label(Label),
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Stmt(u16, u32),
    #[cfg_attr(not(test), allow(dead_code))]
    Ja(Label),
    Branch {
        cond: Cond,
        k: u32,
        jt: To,
        jf: To,
    },
    Bind(Label),
}

/// Why a program could not be assembled; a bug in the code generator, not bad input.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AsmError {
    /// A label was used but never bound.
    Unbound,
    /// A jump went backwards.
    Backward,
    /// A label was bound twice.
    Rebound,
    /// A near jump turned out farther than 255 instructions.
    TooFar,
}

/// Builds a program from instructions and labels.
#[derive(Debug, Default)]
pub(super) struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    /// A new, unbound label.
    pub(super) fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    /// Binds `label` to the next instruction emitted.
    pub(super) fn bind(&mut self, label: Label) {
        self.ops.push(Op::Bind(label));
    }

    /// `A = seccomp_data[offset]` (32 bits).
    pub(super) fn load(&mut self, offset: u32) {
        self.ops.push(Op::Stmt(BPF_LD | BPF_W | BPF_ABS, offset));
    }

    /// `A &= k`.
    pub(super) fn and(&mut self, k: u32) {
        self.ops.push(Op::Stmt(BPF_ALU | BPF_AND | BPF_K, k));
    }

    /// Returns `k` (a `SECCOMP_RET_*` value) to the kernel.
    pub(super) fn ret(&mut self, k: u32) {
        self.ops.push(Op::Stmt(BPF_RET | BPF_K, k));
    }

    /// Jumps to `to` unconditionally.
    #[cfg(test)]
    pub(super) fn jump(&mut self, to: Label) {
        self.ops.push(Op::Ja(to));
    }

    /// Jumps to `jt` if `A <cond> k`, else to `jf`.
    pub(super) fn branch(&mut self, cond: Cond, k: u32, jt: To, jf: To) {
        self.ops.push(Op::Branch { cond, k, jt, jf });
    }

    /// Lays the program out. A conditional jump reaches at most 255
    /// instructions ahead; one that must go farther gets a trampoline right
    /// after it (a `ja`, whose offset is 32 bits, or a copy of the `ret` it
    /// was heading for), which costs one instruction on that path only.
    pub(super) fn assemble(self) -> Result<Vec<sock_filter>, AsmError> {
        // Which outcomes of each branch need a trampoline: only ever set, so
        // the loop ends; each round lays out with what the last one found.
        let mut far = vec![(false, false); self.ops.len()];
        loop {
            let layout = self.layout(&far)?;
            let mut grew = false;
            for (i, op) in self.ops.iter().enumerate() {
                if let Op::Branch { jt, jf, .. } = *op {
                    let from = layout.addr[i] + 1;
                    let after = from + usize::from(far[i].0) + usize::from(far[i].1);
                    let reach = |to| -> Result<bool, AsmError> {
                        let target = layout.target(to, after)?;
                        Ok(target.checked_sub(from).ok_or(AsmError::Backward)? > 255)
                    };
                    if !far[i].0 && reach(jt)? {
                        far[i].0 = true;
                        grew = true;
                    }
                    if !far[i].1 && reach(jf)? {
                        far[i].1 = true;
                        grew = true;
                    }
                }
            }
            if !grew {
                return self.emit(&far, &layout);
            }
        }
    }

    fn layout(&self, far: &[(bool, bool)]) -> Result<Layout, AsmError> {
        let mut addr = Vec::with_capacity(self.ops.len());
        let mut labels = vec![None; self.labels];
        let mut next = 0;
        for (i, op) in self.ops.iter().enumerate() {
            addr.push(next);
            match op {
                Op::Bind(l) => {
                    if labels[l.0].replace(next).is_some() {
                        return Err(AsmError::Rebound);
                    }
                }
                Op::Branch { .. } => next += 1 + usize::from(far[i].0) + usize::from(far[i].1),
                Op::Stmt(..) | Op::Ja(_) => next += 1,
            }
        }
        Ok(Layout { addr, labels })
    }

    fn emit(&self, far: &[(bool, bool)], layout: &Layout) -> Result<Vec<sock_filter>, AsmError> {
        // The `ret` a label stands before, if it does: a far jump to it is
        // replaced by a copy of it rather than by a jump.
        let mut ret_at = vec![None; self.labels];
        let mut pending = Vec::new();
        for op in &self.ops {
            match *op {
                Op::Bind(l) => pending.push(l),
                Op::Stmt(code, k) => {
                    for l in pending.drain(..) {
                        ret_at[l.0] = (code == BPF_RET | BPF_K).then_some(k);
                    }
                }
                Op::Ja(_) | Op::Branch { .. } => pending.clear(),
            }
        }

        let mut out = Vec::with_capacity(layout.addr.last().map_or(0, |a| a + 3));
        let offset = |target: usize, from: usize| -> Result<u32, AsmError> {
            let off = target.checked_sub(from).ok_or(AsmError::Backward)?;
            u32::try_from(off).map_err(|_| AsmError::Backward)
        };
        for (i, op) in self.ops.iter().enumerate() {
            let from = layout.addr[i] + 1;
            match *op {
                Op::Bind(_) => {}
                Op::Stmt(code, k) => out.push(stmt(code, k)),
                Op::Ja(l) => out.push(stmt(BPF_JMP | BPF_JA, offset(layout.label(l)?, from)?)),
                Op::Branch { cond, k, jt, jf } => {
                    let (far_t, far_f) = far[i];
                    let after = from + usize::from(far_t) + usize::from(far_f);
                    let t = layout.target(jt, after)?;
                    let f = layout.target(jf, after)?;
                    // Near outcomes stay within 255 (checked by `assemble`);
                    // far ones go to their trampoline, 0 or 1 ahead.
                    let near = |target| {
                        offset(target, from)
                            .and_then(|o| u8::try_from(o).map_err(|_| AsmError::TooFar))
                    };
                    let jt_off = if far_t { 0 } else { near(t)? };
                    let jf_off = if far_f { u8::from(far_t) } else { near(f)? };
                    out.push(sock_filter {
                        code: cond.code(),
                        jt: jt_off,
                        jf: jf_off,
                        k,
                    });
                    for (is_far, to, target) in [(far_t, jt, t), (far_f, jf, f)] {
                        if !is_far {
                            continue;
                        }
                        let copy = match to {
                            To::Label(l) => ret_at[l.0],
                            To::Next => None,
                        };
                        let here = out.len() + 1;
                        out.push(match copy {
                            Some(k) => stmt(BPF_RET | BPF_K, k),
                            None => stmt(BPF_JMP | BPF_JA, offset(target, here)?),
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

struct Layout {
    /// Address of each op (for a bind: of the instruction after it).
    addr: Vec<usize>,
    labels: Vec<Option<usize>>,
}

impl Layout {
    fn label(&self, l: Label) -> Result<usize, AsmError> {
        self.labels[l.0].ok_or(AsmError::Unbound)
    }

    fn target(&self, to: To, next: usize) -> Result<usize, AsmError> {
        match to {
            To::Next => Ok(next),
            To::Label(l) => self.label(l),
        }
    }
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Checks a program as the kernel will (`bpf_check_classic` and
/// `seccomp_check_filter`), restricted to what this compiler emits: a length
/// within `1..=4096`; only 32-bit absolute loads from aligned offsets inside
/// `seccomp_data`, `and`, `ja`, `jeq`/`jgt`/`jge`/`jset` with a constant,
/// `ret` with a constant; every jump lands inside the program; the last
/// instruction is a `ret`, so no path runs off the end.
pub(super) fn verify(prog: &[sock_filter]) -> Result<(), String> {
    if prog.is_empty() || prog.len() > MAX_INSNS {
        return Err(format!(
            "{} instructions, the kernel takes 1 to {MAX_INSNS}",
            prog.len()
        ));
    }
    let land = |pc: usize, off: u64| -> Result<(), String> {
        if pc as u64 + 1 + off < prog.len() as u64 {
            Ok(())
        } else {
            Err(format!("instruction {pc} jumps past the end"))
        }
    };
    for (pc, ins) in prog.iter().enumerate() {
        match ins.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => {
                if ins.k % 4 != 0 || ins.k >= SECCOMP_DATA_LEN {
                    return Err(format!("instruction {pc} loads from offset {}", ins.k));
                }
            }
            c if c == BPF_ALU | BPF_AND | BPF_K => {}
            c if c == BPF_RET | BPF_K => {}
            c if c == BPF_JMP | BPF_JA => land(pc, u64::from(ins.k))?,
            c if [Cond::Eq, Cond::Gt, Cond::Ge, Cond::Set]
                .iter()
                .any(|cond| cond.code() == c) =>
            {
                land(pc, u64::from(ins.jt))?;
                land(pc, u64::from(ins.jf))?;
            }
            c => return Err(format!("instruction {pc} has opcode {c:#06x}")),
        }
    }
    match prog.last() {
        Some(last) if last.code == BPF_RET | BPF_K => Ok(()),
        _ => Err("the last instruction is not a ret".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_jumps_are_plain_offsets() {
        let mut asm = Asm::default();
        let yes = asm.label();
        asm.load(NR_OFFSET);
        asm.branch(Cond::Eq, 7, To::Label(yes), To::Next);
        asm.ret(1);
        asm.bind(yes);
        asm.ret(2);
        let prog = asm.assemble().expect("assembles");
        assert_eq!(prog.len(), 4);
        assert_eq!((prog[1].jt, prog[1].jf), (1, 0));
        verify(&prog).expect("valid");
    }

    #[test]
    fn far_jumps_get_trampolines() {
        let mut asm = Asm::default();
        let (to_ret, to_code) = (asm.label(), asm.label());
        asm.load(NR_OFFSET);
        asm.branch(Cond::Eq, 7, To::Label(to_ret), To::Label(to_code));
        for _ in 0..300 {
            asm.ret(0);
        }
        asm.bind(to_code);
        asm.load(NR_OFFSET);
        asm.ret(1);
        asm.bind(to_ret);
        asm.ret(2);
        let prog = asm.assemble().expect("assembles");
        verify(&prog).expect("valid");
        // jt reaches a copy of `ret 2`, jf a `ja` over the 300 returns.
        assert_eq!((prog[1].jt, prog[1].jf), (0, 1));
        assert_eq!(prog[2], stmt(BPF_RET | BPF_K, 2));
        assert_eq!(prog[3].code, BPF_JMP | BPF_JA);
        assert_eq!(
            prog[4 + prog[3].k as usize],
            stmt(BPF_LD | BPF_W | BPF_ABS, 0)
        );
    }

    #[test]
    fn backward_and_unbound_labels_are_bugs() {
        let mut asm = Asm::default();
        let back = asm.label();
        asm.bind(back);
        asm.load(NR_OFFSET);
        asm.branch(Cond::Eq, 1, To::Label(back), To::Next);
        asm.ret(0);
        assert_eq!(asm.assemble(), Err(AsmError::Backward));

        let mut asm = Asm::default();
        let nowhere = asm.label();
        asm.jump(nowhere);
        assert_eq!(asm.assemble(), Err(AsmError::Unbound));
    }

    #[test]
    fn verify_rejects_what_the_kernel_would() {
        let ret = stmt(BPF_RET | BPF_K, 0);
        assert!(verify(&[]).is_err());
        assert!(verify(&vec![ret.clone(); MAX_INSNS + 1]).is_err());
        assert!(verify(&[stmt(BPF_LD | BPF_W | BPF_ABS, 64), ret.clone()]).is_err());
        assert!(verify(&[stmt(BPF_LD | BPF_W | BPF_ABS, 2), ret.clone()]).is_err());
        assert!(verify(&[stmt(BPF_JMP | BPF_JA, 1), ret.clone()]).is_err());
        assert!(verify(&[stmt(BPF_LD | BPF_W | BPF_ABS, 0)]).is_err());
        assert!(verify(&[stmt(0x07, 0), ret.clone()]).is_err());
        assert!(verify(&[stmt(BPF_JMP | BPF_JA, 0), ret]).is_ok());
    }
}
