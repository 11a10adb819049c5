//! A classic-BPF interpreter for the tests: runs a program on a
//! `seccomp_data` as the kernel would and counts the instructions it runs.

use seccompiler::sock_filter;

use super::bpf::{
    BPF_ABS, BPF_ALU, BPF_AND, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_JSET, BPF_K, BPF_LD,
    BPF_RET, BPF_W,
};

/// `struct seccomp_data`.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Data {
    pub(super) nr: u32,
    pub(super) arch: u32,
    pub(super) instruction_pointer: u64,
    pub(super) args: [u64; 6],
}

impl Data {
    /// The 32-bit word at `offset`, as a little-endian kernel lays it out.
    fn word(&self, offset: u32) -> u32 {
        let mut bytes = [0u8; 64];
        bytes[0..4].copy_from_slice(&self.nr.to_le_bytes());
        bytes[4..8].copy_from_slice(&self.arch.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.instruction_pointer.to_le_bytes());
        for (i, a) in self.args.iter().enumerate() {
            bytes[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let o = offset as usize;
        assert!(
            o.is_multiple_of(4) && o + 4 <= 64,
            "load from offset {offset}"
        );
        u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]])
    }
}

/// The outcome of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Run {
    /// The `SECCOMP_RET_*` value returned.
    pub(super) ret: u32,
    /// How many instructions ran, the `ret` included.
    pub(super) steps: usize,
}

/// Runs `prog` on `data`; panics on anything the kernel would refuse.
pub(super) fn run(prog: &[sock_filter], data: &Data) -> Run {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        let ins = prog
            .get(pc)
            .unwrap_or_else(|| panic!("ran off the end at {pc}"));
        steps += 1;
        pc += 1;
        let (code, k) = (ins.code, ins.k);
        if code == BPF_LD | BPF_W | BPF_ABS {
            a = data.word(k);
        } else if code == BPF_ALU | BPF_AND | BPF_K {
            a &= k;
        } else if code == BPF_RET | BPF_K {
            return Run { ret: k, steps };
        } else if code == BPF_JMP | BPF_JA {
            pc += k as usize;
        } else {
            let taken = match code {
                c if c == BPF_JMP | BPF_JEQ | BPF_K => a == k,
                c if c == BPF_JMP | BPF_JGT | BPF_K => a > k,
                c if c == BPF_JMP | BPF_JGE | BPF_K => a >= k,
                c if c == BPF_JMP | BPF_JSET | BPF_K => a & k != 0,
                c => panic!("opcode {c:#x} at {}", pc - 1),
            };
            pc += usize::from(if taken { ins.jt } else { ins.jf });
        }
    }
}

/// The most instructions any input can run: the longest path through the
/// program, whose jumps all go forward.
pub(super) fn longest_path(prog: &[sock_filter]) -> usize {
    let mut longest = vec![0usize; prog.len()];
    for pc in (0..prog.len()).rev() {
        let ins = &prog[pc];
        let at = |off: usize| longest[pc + 1 + off];
        longest[pc] = 1 + if ins.code == BPF_RET | BPF_K {
            0
        } else if ins.code == BPF_JMP | BPF_JA {
            at(ins.k as usize)
        } else if ins.code & 0x07 == BPF_JMP {
            at(usize::from(ins.jt)).max(at(usize::from(ins.jf)))
        } else {
            at(0)
        };
    }
    longest.first().copied().unwrap_or(0)
}
