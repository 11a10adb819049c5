//! Differential tests against libseccomp 2.5 itself, the library runc
//! compiles profiles with, loaded with `dlopen` (Debian's `libseccomp2`, which
//! runc depends on; no build dependency on it).
//!
//! Each case is a profile of conditional rules, most of them for the same few
//! calls with different actions, so that they overlap. The test adds them to
//! a libseccomp context as runc does (rules whose action is the default
//! dropped, a rule comparing one argument twice split in one rule per
//! condition, names libseccomp does not know skipped), exports its BPF and
//! runs both programs in the interpreter on the calls the profile names,
//! with arguments at and around the rules' values. Where libseccomp refuses
//! a rule, our compiler must refuse the profile.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::io::{Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde_json::{Value, json};

use super::Filter;
use super::abi::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, Abi};
use super::bpf::{BPF_ABS, BPF_ALU, BPF_AND, BPF_JA, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
use super::interp::{Data, run};
use super::reference::Rng;
use super::tests::profile;
use crate::error::Error;

/// `struct scmp_arg_cmp`.
#[repr(C)]
struct ArgCmp {
    arg: c_uint,
    op: c_int,
    datum_a: u64,
    datum_b: u64,
}

type InitFn = unsafe extern "C" fn(u32) -> *mut c_void;
type ReleaseFn = unsafe extern "C" fn(*mut c_void);
type ArchAddFn = unsafe extern "C" fn(*mut c_void, u32) -> c_int;
type ResolveFn = unsafe extern "C" fn(*const c_char) -> c_int;
type RuleAddFn = unsafe extern "C" fn(*mut c_void, u32, c_int, c_uint, *const ArgCmp) -> c_int;
type ExportFn = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;

/// The libseccomp calls runc makes, resolved from the shared library.
struct Lib {
    init: InitFn,
    release: ReleaseFn,
    arch_add: ArchAddFn,
    resolve: ResolveFn,
    rule_add: RuleAddFn,
    export: ExportFn,
}

impl Lib {
    fn open() -> Option<Lib> {
        let name = c"libseccomp.so.2";
        // SAFETY: dlopen with a valid C string; the handle is never closed,
        // so the symbols stay valid for the test process.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW) };
        if handle.is_null() {
            return None;
        }
        let sym = |s: &CStr| {
            // SAFETY: a valid handle and C string.
            let p = unsafe { libc::dlsym(handle, s.as_ptr()) };
            assert!(!p.is_null(), "libseccomp lacks {s:?}");
            p
        };
        // SAFETY: each symbol has the C signature it is cast to, as
        // <seccomp.h> of libseccomp 2.5 declares it.
        unsafe {
            Some(Lib {
                init: std::mem::transmute::<*mut c_void, InitFn>(sym(c"seccomp_init")),
                release: std::mem::transmute::<*mut c_void, ReleaseFn>(sym(c"seccomp_release")),
                arch_add: std::mem::transmute::<*mut c_void, ArchAddFn>(sym(c"seccomp_arch_add")),
                resolve: std::mem::transmute::<*mut c_void, ResolveFn>(sym(
                    c"seccomp_syscall_resolve_name",
                )),
                rule_add: std::mem::transmute::<*mut c_void, RuleAddFn>(sym(
                    c"seccomp_rule_add_array",
                )),
                export: std::mem::transmute::<*mut c_void, ExportFn>(sym(c"seccomp_export_bpf")),
            })
        }
    }

    /// The BPF runc would install for `p` (before its ENOSYS stub), or the
    /// rule libseccomp refused.
    fn compile(&self, p: &Value) -> Result<Vec<seccompiler::sock_filter>, String> {
        let default = action(&p["defaultAction"], &p["defaultErrnoRet"]);
        // SAFETY: the context is used only below and released at the end.
        let ctx = unsafe { (self.init)(default) };
        assert!(!ctx.is_null(), "seccomp_init failed");
        let result = self.fill(ctx, p, default).map(|()| {
            let memfd = {
                // SAFETY: a valid C string; the new fd is owned below.
                let fd = unsafe { libc::memfd_create(c"bpf".as_ptr(), libc::MFD_CLOEXEC) };
                assert!(fd >= 0, "memfd_create failed");
                // SAFETY: a fresh fd nothing else owns.
                unsafe { OwnedFd::from_raw_fd(fd) }
            };
            // SAFETY: a valid context and fd.
            let rc = unsafe { (self.export)(ctx, memfd.as_raw_fd()) };
            assert_eq!(rc, 0, "seccomp_export_bpf failed");
            let mut f = std::fs::File::from(memfd);
            f.rewind().expect("rewind the memfd");
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)
                .expect("read the exported program");
            bytes
                .chunks_exact(8)
                .map(|c| seccompiler::sock_filter {
                    code: u16::from_ne_bytes([c[0], c[1]]),
                    jt: c[2],
                    jf: c[3],
                    k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                })
                .collect()
        });
        // SAFETY: created above, not used after.
        unsafe { (self.release)(ctx) };
        result
    }

    /// [`Lib::compile`] in a child process, since libseccomp 2.5.4 loops
    /// forever on some sets of rules (and runc with it): `None` when it
    /// has not finished within a few seconds.
    fn compile_isolated(&self, p: &Value) -> Option<Result<Vec<seccompiler::sock_filter>, String>> {
        let mut fds = [0; 2];
        // SAFETY: a valid array for the two fds.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both fds are fresh and owned here.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the child only calls libseccomp and writes to the pipe
        // before _exit; glibc keeps malloc usable in the child of a
        // multi-threaded parent.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            drop(rd);
            let mut out = Vec::new();
            match self.compile(p) {
                Ok(prog) => {
                    out.push(0u8);
                    for i in prog {
                        out.extend_from_slice(&i.code.to_ne_bytes());
                        out.extend_from_slice(&[i.jt, i.jf]);
                        out.extend_from_slice(&i.k.to_ne_bytes());
                    }
                }
                Err(e) => {
                    out.push(1u8);
                    out.extend_from_slice(e.as_bytes());
                }
            }
            let mut f = std::fs::File::from(wr);
            let ok = std::io::Write::write_all(&mut f, &out).is_ok();
            // SAFETY: ends the child without running the parent's handlers.
            unsafe { libc::_exit(i32::from(!ok)) };
        }
        drop(wr);
        let mut pfd = libc::pollfd {
            fd: rd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let mut bytes = Vec::new();
        let mut f = std::fs::File::from(rd);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let finished = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as c_int) };
            if n <= 0 {
                break false;
            }
            let mut buf = [0u8; 4096];
            match f.read(&mut buf) {
                Ok(0) => break true,
                Ok(k) => bytes.extend_from_slice(&buf[..k]),
                Err(e) => panic!("reading from the libseccomp child: {e}"),
            }
        };
        if !finished {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mut status = 0;
        // SAFETY: reaps our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if !finished {
            return None;
        }
        match bytes.split_first() {
            Some((0, prog)) => Some(Ok(prog
                .chunks_exact(8)
                .map(|c| seccompiler::sock_filter {
                    code: u16::from_ne_bytes([c[0], c[1]]),
                    jt: c[2],
                    jf: c[3],
                    k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                })
                .collect())),
            Some((1, msg)) => Some(Err(String::from_utf8_lossy(msg).into_owned())),
            _ => panic!("the libseccomp child died: status {status:#x}"),
        }
    }

    fn fill(&self, ctx: *mut c_void, p: &Value, default: u32) -> Result<(), String> {
        for arch in p["architectures"].as_array().into_iter().flatten() {
            let token = match arch.as_str() {
                Some("SCMP_ARCH_X86") => AUDIT_ARCH_I386,
                Some("SCMP_ARCH_X32") => X32_TOKEN,
                _ => continue,
            };
            // SAFETY: a valid context.
            let rc = unsafe { (self.arch_add)(ctx, token) };
            assert_eq!(rc, 0, "seccomp_arch_add({arch}) failed");
        }
        for (i, rule) in p["syscalls"].as_array().into_iter().flatten().enumerate() {
            let act = action(&rule["action"], &rule["errnoRet"]);
            if act == default {
                continue;
            }
            let args: Vec<ArgCmp> = rule["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let op = OPS
                        .iter()
                        .position(|o| a["op"] == *o)
                        .expect("a known operator") as c_int
                        + 1;
                    ArgCmp {
                        arg: a["index"].as_u64().expect("index") as c_uint,
                        op,
                        datum_a: a["value"].as_u64().expect("value"),
                        datum_b: a["valueTwo"].as_u64().unwrap_or(0),
                    }
                })
                .collect();
            let repeated = (0..6).any(|k| args.iter().filter(|a| a.arg == k).count() > 1);
            let groups: Vec<&[ArgCmp]> = if repeated {
                args.chunks(1).collect()
            } else {
                vec![&args[..]]
            };
            for name in rule["names"].as_array().expect("names") {
                let name = CString::new(name.as_str().expect("a name")).expect("no NUL");
                // SAFETY: a valid C string.
                let nr = unsafe { (self.resolve)(name.as_ptr()) };
                if nr < 0 {
                    continue;
                }
                for g in &groups {
                    // SAFETY: a valid context and `g.len()` conditions.
                    let rc =
                        unsafe { (self.rule_add)(ctx, act, nr, g.len() as c_uint, g.as_ptr()) };
                    if rc != 0 {
                        return Err(format!(
                            "syscalls[{i}] {name:?}: {}",
                            std::io::Error::from_raw_os_error(-rc)
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// `SCMP_ARCH_X32`: `EM_X86_64 | __AUDIT_ARCH_LE`, without the 64-bit flag.
const X32_TOKEN: u32 = 62 | 0x4000_0000;

/// Operators in libseccomp's numbering, from 1.
const OPS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

/// An action as libseccomp encodes it, which is the kernel's return value.
fn action(name: &Value, errno: &Value) -> u32 {
    let e = errno.as_u64().map_or(libc::EPERM as u32, |e| e as u32);
    match name.as_str().expect("an action") {
        "SCMP_ACT_ALLOW" => 0x7fff_0000,
        "SCMP_ACT_ERRNO" => 0x0005_0000 | e,
        "SCMP_ACT_TRACE" => 0x7ff0_0000 | e,
        "SCMP_ACT_TRAP" => 0x0003_0000,
        "SCMP_ACT_LOG" => 0x7ffc_0000,
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => 0,
        "SCMP_ACT_KILL_PROCESS" => 0x8000_0000,
        other => panic!("no such action {other}"),
    }
}

/// What the accumulator holds: the word at an offset, masked.
type Acc = Option<(u32, u32)>;

/// For each instruction of `prog`, whether it is a conditional jump that
/// different paths reach with different accumulator contents, so that it
/// compares a different argument half depending on how it was reached.
///
/// libseccomp 2.5 leaves out a load when the block it jumps to was laid out
/// for the accumulator it had where that block was first placed; a later
/// jump to the same block from elsewhere then compares whatever that path
/// loaded. Its program then departs from its own argument tree, the tree
/// our compiler builds (the `stale_accumulator_in_libseccomp` test shows a
/// case); the differential test leaves such paths out and counts them.
fn ambiguous(prog: &[seccompiler::sock_filter]) -> Vec<bool> {
    let mut into: Vec<Vec<Acc>> = vec![Vec::new(); prog.len() + 1];
    into[0].push(None);
    let mut out = vec![false; prog.len()];
    for pc in 0..prog.len() {
        let mut states = std::mem::take(&mut into[pc]);
        states.sort();
        states.dedup();
        let ins = &prog[pc];
        let code = ins.code;
        if code == BPF_RET | BPF_K {
            continue;
        }
        let after: Vec<Acc> = if code == BPF_LD | BPF_W | BPF_ABS {
            vec![Some((ins.k, u32::MAX))]
        } else if code == BPF_ALU | BPF_AND | BPF_K {
            states
                .iter()
                .map(|s| s.map(|(o, m)| (o, m & ins.k)))
                .collect()
        } else {
            states.clone()
        };
        let mut go = |to: usize, v: &[Acc]| into[to].extend_from_slice(v);
        if code == BPF_JMP | BPF_JA {
            go(pc + 1 + ins.k as usize, &after);
        } else if code & 0x07 == BPF_JMP {
            out[pc] = states.len() > 1;
            go(pc + 1 + usize::from(ins.jt), &after);
            go(pc + 1 + usize::from(ins.jf), &after);
        } else {
            go(pc + 1, &after);
        }
    }
    out
}

/// Runs `prog` on `d`, or `None` when the run passes an [`ambiguous`] jump.
fn run_unambiguous(prog: &[seccompiler::sock_filter], marks: &[bool], d: &Data) -> Option<u32> {
    let word = |offset: u32| {
        let o = offset as usize;
        let mut bytes = [0u8; 64];
        bytes[0..4].copy_from_slice(&d.nr.to_le_bytes());
        bytes[4..8].copy_from_slice(&d.arch.to_le_bytes());
        bytes[8..16].copy_from_slice(&d.instruction_pointer.to_le_bytes());
        for (i, x) in d.args.iter().enumerate() {
            bytes[16 + 8 * i..24 + 8 * i].copy_from_slice(&x.to_le_bytes());
        }
        u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]])
    };
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let ins = &prog[pc];
        if marks[pc] {
            return None;
        }
        pc += 1;
        let code = ins.code;
        if code == BPF_LD | BPF_W | BPF_ABS {
            a = word(ins.k);
        } else if code == BPF_ALU | BPF_AND | BPF_K {
            a &= ins.k;
        } else if code == BPF_RET | BPF_K {
            // The interpreter, which checks every opcode, agrees.
            assert_eq!(run(prog, d).ret, ins.k);
            return Some(ins.k);
        } else if code == BPF_JMP | BPF_JA {
            pc += ins.k as usize;
        } else {
            let taken = match code & 0xf0 {
                0x10 => a == ins.k,
                0x20 => a > ins.k,
                0x30 => a >= ins.k,
                0x40 => a & ins.k != 0,
                c => panic!("opcode {c:#x}"),
            };
            pc += usize::from(if taken { ins.jt } else { ins.jf });
        }
    }
}

/// Calls with arguments that the cases compare, and i386's multiplexers.
const CALLS: [&str; 6] = [
    "getpriority",
    "kill",
    "getpgid",
    "socket",
    "connect",
    "semget",
];

fn random_case(rng: &mut Rng) -> (Value, Vec<u64>) {
    let mut values = Vec::new();
    let act = |rng: &mut Rng| {
        let a = *rng.pick(&[
            "SCMP_ACT_ALLOW",
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_TRAP",
            "SCMP_ACT_LOG",
            "SCMP_ACT_KILL_PROCESS",
        ]);
        let mut r = json!({"action": a});
        if a == "SCMP_ACT_ERRNO" {
            r["errnoRet"] = json!(2000 + rng.below(4));
        }
        r
    };
    let default = act(rng);
    let arches: Vec<&str> = ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        .into_iter()
        .filter(|_| rng.chance(40))
        .collect();
    // A few calls per case, so that rules pile up on each.
    let calls: Vec<&str> = (0..1 + rng.below(2)).map(|_| *rng.pick(&CALLS)).collect();
    let mut rules = Vec::new();
    for _ in 0..2 + rng.below(4) {
        let mut rule = act(rng);
        rule["names"] = json!([rng.pick(&calls)]);
        let mut args = Vec::new();
        let n = if rng.chance(10) { 0 } else { 1 + rng.below(2) };
        for _ in 0..n {
            let value = match rng.below(3) {
                0 => *rng.pick(&[5u64, 10, 20, 0x1_0000_0005, 0xffff_ffff]),
                _ => rng.value(&values),
            };
            values.push(value);
            let op = *rng.pick(&OPS);
            let mut a = json!({"index": rng.below(2), "op": op, "value": value});
            if op == "SCMP_CMP_MASKED_EQ" {
                let two = rng.value(&values);
                values.push(two);
                a["valueTwo"] = json!(two);
            }
            args.push(a);
        }
        if !args.is_empty() {
            rule["args"] = json!(args);
        }
        rules.push(rule);
    }
    let mut p = json!({
        "defaultAction": default["action"],
        "architectures": arches,
        "syscalls": rules,
    });
    if let Some(e) = default.get("errnoRet") {
        p["defaultErrnoRet"] = e.clone();
    }
    (p, values)
}

/// The calls to try for `p`: every named call in every ABI it filters, and
/// i386's multiplexers below the highest named call.
fn targets(p: &Value) -> Vec<(Abi, u32)> {
    let mut abis = vec![Abi::X86_64];
    for a in p["architectures"].as_array().into_iter().flatten() {
        match a.as_str() {
            Some("SCMP_ARCH_X86") => abis.push(Abi::I386),
            Some("SCMP_ARCH_X32") => abis.push(Abi::X32),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for abi in abis {
        for rule in p["syscalls"].as_array().into_iter().flatten() {
            for n in rule["names"].as_array().into_iter().flatten() {
                if let Some(nr) = abi.number(n.as_str().expect("a name")) {
                    out.push((abi, nr));
                }
            }
        }
        // runc's stub answers ENOSYS above the highest named number; below
        // it, libseccomp's program decides.
        let highest = out.iter().filter(|(a, _)| *a == abi).map(|(_, n)| *n).max();
        if abi == Abi::I386 {
            out.extend(
                [102, 117]
                    .into_iter()
                    .filter(|&n| Some(n) <= highest)
                    .map(|n| (abi, n)),
            );
        }
    }
    out.sort();
    out.dedup();
    out
}

fn arguments(rng: &mut Rng, values: &[u64]) -> [u64; 6] {
    let mut a = [0u64; 6];
    for x in a.iter_mut().take(2) {
        *x = match rng.below(5) {
            0 => rng.below(24) as u64,
            _ => rng.value(values),
        };
    }
    // The multiplexers' subcalls: socket 1, connect 3, semget 2.
    if rng.chance(30) {
        a[0] = *rng.pick(&[1u64, 2, 3]);
    }
    a
}

#[test]
fn overlapping_rules_decide_as_in_libseccomp() {
    let Some(lib) = Lib::open() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "libseccomp.so.2 is not installed (scripts/setup.sh installs runc, which needs it)"
        );
        eprintln!("skipped: libseccomp.so.2 is not installed");
        return;
    };
    let mut rng = Rng(0x11b5_ecc0_4d1f_0002);
    let (mut compared, mut refused, mut checks, mut stale, mut hung) = (0, 0, 0, 0, 0);
    for case in 0..4000 {
        let (p, values) = random_case(&mut rng);
        let Some(theirs) = lib.compile_isolated(&p) else {
            // runc would hang in create; ours must at least return.
            let _ = Filter::compile(&profile(p.clone()));
            hung += 1;
            continue;
        };
        let ours = Filter::compile(&profile(p.clone()));
        let (theirs, ours) = match (theirs, ours) {
            (Ok(t), Ok(o)) => (t, o),
            (Err(_), Err(Error::InvalidConfig { .. })) => {
                refused += 1;
                continue;
            }
            (t, o) => panic!(
                "case {case}: libseccomp {:?}, ours {:?}\nprofile: {p}",
                t.map(|_| "compiles"),
                o.map(|_| "compiles")
            ),
        };
        compared += 1;
        let marks = ambiguous(&theirs);
        for (abi, nr) in targets(&p) {
            let (arch, nr) = match abi {
                Abi::I386 => (AUDIT_ARCH_I386, nr),
                _ => (AUDIT_ARCH_X86_64, nr),
            };
            for _ in 0..40 {
                let d = Data {
                    nr,
                    arch,
                    instruction_pointer: 0,
                    args: arguments(&mut rng, &values),
                };
                let Some(want) = run_unambiguous(&theirs, &marks, &d) else {
                    stale += 1;
                    continue;
                };
                let got = run(ours.program(), &d).ret;
                assert_eq!(
                    got, want,
                    "case {case}: {abi:?} call {nr} args {:x?}: ours {got:#x}, libseccomp \
                     {want:#x}\nprofile: {p}",
                    d.args
                );
                checks += 1;
            }
        }
    }
    // Both outcomes occur often enough to mean something.
    assert!(
        compared > 2000 && refused > 50,
        "{compared} compared, {refused} refused"
    );
    assert!(
        checks > 100_000 && stale < checks / 4,
        "{checks} calls compared, {stale} left out on a stale accumulator in libseccomp's program"
    );
    eprintln!(
        "{compared} profiles compared, {refused} refused by both, {hung} on which libseccomp \
         never returns; {checks} calls compared, {stale} left out"
    );
}
