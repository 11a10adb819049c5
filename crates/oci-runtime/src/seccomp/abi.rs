//! The system call ABIs an x86_64 kernel runs, as a filter tells them apart.

use super::syscalls;

/// `AUDIT_ARCH_X86_64`: `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
pub(super) const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// `AUDIT_ARCH_I386`: `EM_386 | __AUDIT_ARCH_LE`.
pub(super) const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
/// Set in every x32 system call number; x32 shares `AUDIT_ARCH_X86_64`.
pub(super) const X32_SYSCALL_BIT: u32 = syscalls::X32_SYSCALL_BIT;

/// One system call ABI with its own numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Abi {
    /// 64-bit processes (`SCMP_ARCH_X86_64`, the native one).
    X86_64,
    /// x32 processes (`SCMP_ARCH_X32`): x86_64 calls with [`X32_SYSCALL_BIT`] set.
    X32,
    /// 32-bit processes and `int 0x80` (`SCMP_ARCH_X86`).
    I386,
}

impl Abi {
    /// The number of `name` in this ABI, if it has that call.
    pub(super) fn number(self, name: &str) -> Option<u32> {
        let table = match self {
            Abi::X86_64 => syscalls::X86_64,
            Abi::X32 => syscalls::X32,
            Abi::I386 => syscalls::I386,
        };
        table
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| table[i].1)
    }

    /// Whether arguments are compared as 64-bit values. For i386 and x32,
    /// as libseccomp does, only the low 32 bits of an argument and of the
    /// rule's value count: those are what the kernel passes on to the call.
    pub(super) fn wide_args(self) -> bool {
        self == Abi::X86_64
    }

    /// The system call numbers this ABI's part of the filter sees, as a
    /// half-open range: the filter sends x86_64 numbers with the x32 bit to
    /// the x32 part (or rejects them), so neither sees the other's.
    pub(super) fn numbers(self) -> (u32, u64) {
        match self {
            Abi::X86_64 => (0, u64::from(X32_SYSCALL_BIT)),
            Abi::X32 => (X32_SYSCALL_BIT, 1 << 32),
            Abi::I386 => (0, 1 << 32),
        }
    }
}
