//! The v2 device filter: the effective state compiled to a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program.
//!
//! The kernel calls it with `struct bpf_cgroup_dev_ctx { u32 access_type; u32
//! major; u32 minor; }` in `r1`, where `access_type` holds the device type
//! (`BPF_DEVCG_DEV_*`) in its low 16 bits and the requested accesses
//! (`BPF_DEVCG_ACC_*`) in its high 16; `r0` = 1 allows, 0 denies. The program
//! calls no helper, so it needs no GPL-compatible license.
//!
//! ```text
//!     r2 = type   r3 = access   r4 = major   r5 = minor
//!   per exception (all verdicts the same, so their order does not matter):
//!     if r2 != T goto next
//!     r1 = r3 & M               deny default: M = not held, must be 0
//!     if r1 ?= 0 goto next      allow default: M = held, must not be 0
//!     if r4 != MAJOR goto next  (unless *)
//!     if r5 != MINOR goto next  (unless *)
//!     return !default
//!   next: ...
//!     return default
//! ```
//! Comparisons are 32-bit (`BPF_JMP32`), so numbers of 2^31 and up compare right.

use super::emulator::State;
use super::rule::{Access, Device};

/// One eBPF instruction: `struct bpf_insn` as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    /// Class, operation and source.
    pub(crate) code: u8,
    /// `dst_reg:4, src_reg:4` as C bit fields lay them out.
    regs: u8,
    /// Jump offset, counted in instructions after this one; or memory offset.
    pub(crate) off: i16,
    /// Immediate.
    pub(crate) imm: i32,
}

// Instruction classes.
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_ALU64: u8 = 0x07;
// Load size and mode.
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
// Source: immediate or register.
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
// ALU operations.
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
// Jump operations.
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

/// `r = *(u32 *)(src + off)`.
pub(crate) const LDX_W: u8 = BPF_LDX | BPF_MEM | BPF_W;
/// `(u32) r &= imm`.
pub(crate) const AND32_K: u8 = BPF_ALU | BPF_AND | BPF_K;
/// `(u32) r >>= imm`.
pub(crate) const RSH32_K: u8 = BPF_ALU | BPF_RSH | BPF_K;
/// `r = (u32) src`.
pub(crate) const MOV32_X: u8 = BPF_ALU | BPF_MOV | BPF_X;
/// `r = imm`.
pub(crate) const MOV64_K: u8 = BPF_ALU64 | BPF_MOV | BPF_K;
/// `if (u32) r == imm goto +off`.
pub(crate) const JEQ32_K: u8 = BPF_JMP32 | BPF_JEQ | BPF_K;
/// `if (u32) r != imm goto +off`.
pub(crate) const JNE32_K: u8 = BPF_JMP32 | BPF_JNE | BPF_K;
/// `return r0`.
pub(crate) const EXIT: u8 = BPF_JMP | BPF_EXIT;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

/// Offsets in `struct bpf_cgroup_dev_ctx`.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        let regs = if cfg!(target_endian = "little") {
            dst | (src << 4)
        } else {
            (dst << 4) | src
        };
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }

    /// The destination register.
    #[cfg(test)]
    pub(crate) fn dst(self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs & 0xf
        } else {
            self.regs >> 4
        }
    }

    /// The source register.
    #[cfg(test)]
    pub(crate) fn src(self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs >> 4
        } else {
            self.regs & 0xf
        }
    }
}

/// The program that allows exactly what `state` allows.
pub(crate) fn program(state: &State) -> Vec<Insn> {
    let mut insns = prologue().to_vec();
    for (device, access) in state.exceptions() {
        insns.extend(exception(device, access, state.default_allow()));
    }
    insns.extend(verdict(state.default_allow()));
    insns
}

/// Loads the context's fields into r2..r5.
fn prologue() -> [Insn; 6] {
    [
        Insn::new(LDX_W, R2, R1, CTX_ACCESS_TYPE, 0),
        Insn::new(AND32_K, R2, 0, 0, 0xffff),
        Insn::new(LDX_W, R3, R1, CTX_ACCESS_TYPE, 0),
        Insn::new(RSH32_K, R3, 0, 0, 16),
        Insn::new(LDX_W, R4, R1, CTX_MAJOR, 0),
        Insn::new(LDX_W, R5, R1, CTX_MINOR, 0),
    ]
}

/// `return allow`.
fn verdict(allow: bool) -> [Insn; 2] {
    [
        Insn::new(MOV64_K, R0, 0, 0, i32::from(allow)),
        Insn::new(EXIT, 0, 0, 0, 0),
    ]
}

/// One exception's block: every test that fails jumps past its end.
fn exception(device: Device, access: Access, default_allow: bool) -> Vec<Insn> {
    let mut block = Vec::with_capacity(8);
    let mut jumps = Vec::with_capacity(4);
    let mut skip_unless = |block: &mut Vec<Insn>, code, reg, imm: u32| {
        jumps.push(block.len());
        // The kernel compares (u32) imm with JMP32, so the bits are what matters.
        block.push(Insn::new(code, reg, 0, 0, imm as i32));
    };
    skip_unless(&mut block, JNE32_K, R2, device.kind.bpf_type());
    block.push(Insn::new(MOV32_X, R1, R3, 0, 0));
    let held = u32::from(access.bits());
    if default_allow {
        // A deny exception applies when one requested access is held.
        block.push(Insn::new(AND32_K, R1, 0, 0, held as i32));
        skip_unless(&mut block, JEQ32_K, R1, 0);
    } else {
        // An allow exception applies when no requested access is missing from it.
        block.push(Insn::new(AND32_K, R1, 0, 0, (!held & 0xffff) as i32));
        skip_unless(&mut block, JNE32_K, R1, 0);
    }
    if let Some(major) = device.major {
        skip_unless(&mut block, JNE32_K, R4, major);
    }
    if let Some(minor) = device.minor {
        skip_unless(&mut block, JNE32_K, R5, minor);
    }
    block.extend(verdict(!default_allow));
    let len = block.len();
    for j in jumps {
        // At most 8 instructions: the offset always fits.
        block[j].off = (len - j - 1) as i16;
    }
    block
}

#[cfg(test)]
mod tests {
    use super::super::emulator::tests::state;
    use super::super::rule::Kind;
    use super::super::testutil::{Rng, inputs, random_rules};
    use super::*;

    /// The device cgroup context the kernel passes.
    #[derive(Clone, Copy, Debug)]
    struct Ctx {
        access_type: u32,
        major: u32,
        minor: u32,
    }

    impl Ctx {
        fn new(kind: Kind, major: u32, minor: u32, access: Access) -> Ctx {
            Ctx {
                access_type: kind.bpf_type() | (u32::from(access.bits()) << 16),
                major,
                minor,
            }
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Val {
        Ctx,
        Scalar(u64),
    }

    /// Runs `insns` the way the kernel would, checking what its verifier checks
    /// for this subset: known opcodes, reads of set registers only, ctx reads of
    /// whole u32 fields, jumps inside the program, and a return of 0 or 1.
    fn run(insns: &[Insn], ctx: Ctx) -> u64 {
        let mut regs = [None; 11];
        regs[1] = Some(Val::Ctx);
        let mut pc = 0usize;
        for _ in 0..100_000 {
            let insn = *insns.get(pc).expect("pc inside the program");
            pc += 1;
            if let Some(r0) = step(insn, &mut regs, &mut pc, ctx) {
                assert!(r0 <= 1, "device programs return 0 or 1, not {r0}");
                return r0;
            }
        }
        panic!("program does not end");
    }

    fn scalar(regs: &[Option<Val>; 11], r: u8) -> u64 {
        match regs[usize::from(r)] {
            Some(Val::Scalar(v)) => v,
            other => panic!("r{r} read as a scalar while {other:?}"),
        }
    }

    fn step(insn: Insn, regs: &mut [Option<Val>; 11], pc: &mut usize, ctx: Ctx) -> Option<u64> {
        let (dst, src) = (insn.dst(), insn.src());
        assert!(dst <= 10 && src <= 10, "register out of range in {insn:?}");
        let d = usize::from(dst);
        let imm32 = insn.imm as u32;
        match insn.code {
            LDX_W => {
                assert_eq!(regs[usize::from(src)], Some(Val::Ctx), "load from non-ctx");
                let v = match insn.off {
                    CTX_ACCESS_TYPE => ctx.access_type,
                    CTX_MAJOR => ctx.major,
                    CTX_MINOR => ctx.minor,
                    off => panic!("ctx offset {off}"),
                };
                regs[d] = Some(Val::Scalar(v.into()));
            }
            AND32_K => regs[d] = Some(Val::Scalar(((scalar(regs, dst) as u32) & imm32).into())),
            RSH32_K => {
                assert!(imm32 < 32, "shift by {imm32}");
                regs[d] = Some(Val::Scalar(((scalar(regs, dst) as u32) >> imm32).into()));
            }
            MOV32_X => regs[d] = Some(Val::Scalar((scalar(regs, src) as u32).into())),
            MOV64_K => regs[d] = Some(Val::Scalar(i64::from(insn.imm) as u64)),
            JEQ32_K | JNE32_K => {
                let equal = scalar(regs, dst) as u32 == imm32;
                if equal == (insn.code == JEQ32_K) {
                    let to = *pc as isize + isize::from(insn.off);
                    *pc = usize::try_from(to).expect("jump before the start");
                }
            }
            EXIT => return Some(scalar(regs, R0)),
            code => panic!("opcode {code:#x} outside the subset"),
        }
        None
    }

    fn allowed(lines: &[&str], kind: Kind, major: u32, minor: u32, access: Access) -> bool {
        let prog = program(&state(lines).expect("state"));
        run(&prog, Ctx::new(kind, major, minor, access)) == 1
    }

    #[test]
    fn encoding_is_the_kernels() {
        // r2 = *(u32 *)(r1 + 0): 0x61, dst 2 and src 1 in one byte, off 0, imm 0.
        let insn = prologue()[0];
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::offset_of!(Insn, regs), 1);
        assert_eq!(std::mem::offset_of!(Insn, off), 2);
        assert_eq!(std::mem::offset_of!(Insn, imm), 4);
        assert_eq!(insn.code, 0x61);
        if cfg!(target_endian = "little") {
            assert_eq!(insn.regs, 0x12);
        }
        assert_eq!((insn.dst(), insn.src()), (2, 1));
        assert_eq!(JNE32_K, 0x56);
        assert_eq!(MOV64_K, 0xb7);
        assert_eq!(EXIT, 0x95);
    }

    #[test]
    fn deny_all_but_null() {
        let rules = ["deny a", "allow c 1:3 rwm", "allow c 136:* rw"];
        assert!(allowed(&rules, Kind::Char, 1, 3, Access::ALL));
        assert!(!allowed(&rules, Kind::Char, 1, 5, Access::READ));
        assert!(!allowed(&rules, Kind::Block, 1, 3, Access::READ));
        assert!(allowed(&rules, Kind::Char, 136, 0, Access::READ));
        assert!(!allowed(&rules, Kind::Char, 136, 0, Access::MKNOD));
    }

    #[test]
    fn allow_all_but_some() {
        let rules = ["allow a", "deny c 1:5 w", "deny b *:* m"];
        assert!(allowed(&rules, Kind::Char, 1, 5, Access::READ));
        assert!(!allowed(
            &rules,
            Kind::Char,
            1,
            5,
            Access::READ.union(Access::WRITE)
        ));
        assert!(!allowed(&rules, Kind::Block, 7, 0, Access::MKNOD));
        assert!(allowed(&rules, Kind::Block, 7, 0, Access::READ));
    }

    #[test]
    fn large_numbers_compare_as_u32() {
        let big = (1u32 << 31) + 5;
        let rules = format!("allow c {big}:{} r", u32::MAX - 1);
        assert!(allowed(
            &[rules.as_str()],
            Kind::Char,
            big,
            u32::MAX - 1,
            Access::READ
        ));
        assert!(!allowed(
            &[rules.as_str()],
            Kind::Char,
            5,
            u32::MAX - 1,
            Access::READ
        ));
    }

    #[test]
    fn program_agrees_with_the_emulator() {
        let mut rng = Rng::new(0x5eed_de71ce);
        let (mut lists, mut checked) = (0, 0);
        while lists < 5000 {
            let Ok(state) = State::from_rules(&random_rules(&mut rng)) else {
                continue;
            };
            lists += 1;
            let prog = program(&state);
            for (kind, major, minor, access) in inputs() {
                let want = state.allows(kind, major, minor, access);
                let got = run(&prog, Ctx::new(kind, major, minor, access)) == 1;
                assert_eq!(got, want, "{state:?} on {kind:?} {major}:{minor} {access}");
                checked += 1;
            }
        }
        assert!(checked > 1_000_000, "{checked}");
    }
}
