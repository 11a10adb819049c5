#!/usr/bin/env python3
"""Seccomp under Docker's default profile: what a syscall costs inside the
container with mini-runtime's filter against runc's (libseccomp's) for the same
profile, in one run, and how big each filter is.

    cargo build --release -p mini-runtime
    python3 benches/seccomp_overhead.py [--rounds 5] [--calls 2000000]

Run as root. Docker's profile (../shared/reference/moby-seccomp-default.json,
its extended format) is turned into a plain OCI profile for x86_64 and runc's
default capabilities here; both runtimes get the same config.json. A static C
program in the container times three calls: getppid (which the kernel's
per-filter action cache allows without running the filter), personality(0xffffffff)
and socket(AF_UNIX) (argument-filtered in Docker's profile, so the filter runs).
Each runtime runs it --rounds times, interleaved; the medians of ns per call are
printed, with a run without seccomp as the floor, and with the
SECCOMP_FILTER_FLAG_SPEC_ALLOW flag as a fourth case.

The filters themselves are read back from the running containers with
ptrace(PTRACE_SECCOMP_GET_FILTER): instruction count and the longest path
through each (forward jumps only, so a longest-path walk is exact).
"""

import argparse
import ctypes
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "target", "release", "mini-runtime")
MOBY = os.path.join(REPO, "..", "shared", "reference", "moby-seccomp-default.json")
RUNC_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

TIMER = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    double t0 = now();
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    double t1 = now();
    for (long i = 0; i < n; i++) syscall(SYS_personality, 0xffffffffUL);
    double t2 = now();
    for (long i = 0; i < n / 10; i++) { int fd = syscall(SYS_socket, AF_UNIX, SOCK_DGRAM, 0); if (fd >= 0) close(fd); }
    double t3 = now();
    printf("%.1f %.1f %.1f\n", (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / (n / 10));
    if (argc > 2) pause();
    return 0;
}
"""


def kernel_version():
    parts = platform.release().split("-")[0].split(".")
    return tuple(int(p) for p in parts[:2])


def moby_to_oci(moby, caps):
    """Docker's extended profile → a plain OCI one for x86_64 and `caps`."""
    arch_names = {"amd64", "x86_64"}
    arches = []
    for a in moby.get("archMap") or []:
        if a["architecture"] == "SCMP_ARCH_X86_64":
            arches = [a["architecture"]] + a.get("subArchitectures", [])
    kv = kernel_version()
    rules = []
    for r in moby["syscalls"]:
        inc, exc = r.get("includes") or {}, r.get("excludes") or {}
        if inc.get("caps") and not set(inc["caps"]) <= set(caps):
            continue
        if exc.get("caps") and set(exc["caps"]) & set(caps):
            continue
        if inc.get("arches") and not set(inc["arches"]) & arch_names:
            continue
        if exc.get("arches") and set(exc["arches"]) & arch_names:
            continue
        if inc.get("minKernel"):
            mk = tuple(int(p) for p in inc["minKernel"].split(".")[:2])
            if kv < mk:
                continue
        out = {"names": r["names"], "action": r["action"]}
        for k in ("args", "errnoRet"):
            if r.get(k) is not None:
                out[k] = r[k]
        rules.append(out)
    prof = {"defaultAction": moby["defaultAction"], "architectures": arches, "syscalls": rules}
    if moby.get("defaultErrnoRet") is not None:
        prof["defaultErrnoRet"] = moby["defaultErrnoRet"]
    return prof


def bundle(work, name, seccomp, timer_bin, flags=None):
    b = os.path.join(work, name)
    rootfs = os.path.join(b, "rootfs")
    for d in ["bin", "proc", "sys", "dev", "tmp"]:
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy(timer_bin, os.path.join(rootfs, "bin", "timer"))
    subprocess.run([BIN, "spec", "--bundle", b], check=True)
    with open(os.path.join(b, "config.json")) as f:
        c = json.load(f)
    c["ociVersion"] = "1.0.2"
    c["process"]["terminal"] = False
    if seccomp is not None:
        s = dict(seccomp)
        if flags:
            s["flags"] = flags
        c["linux"]["seccomp"] = s
    with open(os.path.join(b, "config.json"), "w") as f:
        json.dump(c, f)
    return b, c


def set_args(b, config, args):
    config["process"]["args"] = args
    with open(os.path.join(b, "config.json"), "w") as f:
        json.dump(config, f)


def run_timer(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}: {r.stderr}")
    return [float(x) for x in r.stdout.split()]


PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH, PTRACE_SECCOMP_GET_FILTER = 0x4206, 0x4207, 17, 0x420C


def read_filter(pid):
    """The (last installed) seccomp filter of `pid` as (code, jt, jf, k) tuples."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(PTRACE_SEIZE, pid, None, None) != 0:
        raise OSError(ctypes.get_errno(), "PTRACE_SEIZE")
    try:
        libc.ptrace(PTRACE_INTERRUPT, pid, None, None)
        os.waitpid(pid, 0x40000000)  # __WALL
        n = libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, ctypes.c_void_p(0), None)
        if n < 0:
            raise OSError(ctypes.get_errno(), "PTRACE_SECCOMP_GET_FILTER")
        buf = ctypes.create_string_buffer(n * 8)
        libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, ctypes.c_void_p(0), buf)
        return [struct.unpack_from("<HBBI", buf.raw, i * 8) for i in range(n)]
    finally:
        libc.ptrace(PTRACE_DETACH, pid, None, None)


def longest_path(prog):
    """Longest instruction path from the start to any return (jumps go forward)."""
    n = len(prog)
    best = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        code, jt, jf, k = prog[i]
        cls = code & 0x07
        if cls == 0x06:  # BPF_RET
            best[i] = 1
        elif cls == 0x05:  # BPF_JMP
            if (code & 0xF0) == 0x00:  # BPF_JA
                best[i] = 1 + best[min(i + 1 + k, n)]
            else:
                best[i] = 1 + max(best[min(i + 1 + jt, n)], best[min(i + 1 + jf, n)])
        else:
            best[i] = 1 + best[i + 1]
    return best[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=2_000_000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    with open(MOBY) as f:
        profile = moby_to_oci(json.load(f), RUNC_CAPS)
    work = tempfile.mkdtemp(prefix="seccomp-bench-")
    try:
        src = os.path.join(work, "timer.c")
        with open(src, "w") as f:
            f.write(TIMER)
        timer = os.path.join(work, "timer")
        subprocess.run(["gcc", "-static", "-O2", "-o", timer, src], check=True)
        plain, plain_c = bundle(work, "plain", None, timer)
        moby, moby_c = bundle(work, "moby", profile, timer)
        spec, spec_c = bundle(work, "spec", profile, timer, ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"])
        for b, c in [(plain, plain_c), (moby, moby_c), (spec, spec_c)]:
            set_args(b, c, ["/bin/timer", str(args.calls)])
        roots = {k: os.path.join(work, "state-" + k) for k in ["mr", "runc"]}
        cases = {
            "no seccomp (mini-runtime)": lambda i: [BIN, "--root", roots["mr"], "run", "-b", plain, f"p{i}"],
            "runc, Docker's profile": lambda i: ["runc", "--root", roots["runc"], "run", "-b", moby, f"r{i}"],
            "mini-runtime, Docker's profile": lambda i: [BIN, "--root", roots["mr"], "run", "-b", moby, f"m{i}"],
            "mini-runtime, + SPEC_ALLOW": lambda i: [BIN, "--root", roots["mr"], "run", "-b", spec, f"s{i}"],
        }
        results = {k: [] for k in cases}
        for i in range(args.rounds):
            for name, cmd in cases.items():
                results[name].append(run_timer(cmd(i)))
        print(f"\nns per call, median of {args.rounds} rounds of {args.calls} calls")
        print(f"{'':34} {'getppid':>9} {'personality':>12} {'socket+close':>13}")
        for name, rs in results.items():
            med = [statistics.median(r[j] for r in rs) for j in range(3)]
            print(f"{name:34} {med[0]:9.1f} {med[1]:12.1f} {med[2]:13.1f}")

        # The filters as installed, read back from paused containers.
        set_args(moby, moby_c, ["/bin/timer", "1", "pause"])
        print(f"\n{'filter for Docker profile':34} {'instructions':>12} {'longest path':>13}")
        for name, cmd in [("runc (libseccomp 2.5)", ["runc", "--root", roots["runc"]]),
                          ("mini-runtime", [BIN, "--root", roots["mr"]])]:
            cid = f"f{name.split()[0]}"
            subprocess.run(cmd + ["run", "-d", "-b", moby, cid], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                out = subprocess.run(cmd + ["state", cid], capture_output=True, text=True, check=True)
                pid = json.loads(out.stdout)["pid"]
                prog = read_filter(pid)
                print(f"{name:34} {len(prog):12} {longest_path(prog):13}")
            finally:
                subprocess.run(cmd + ["delete", "-f", cid], stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
