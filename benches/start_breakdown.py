#!/usr/bin/env python3
"""Where mini-runtime's start time goes: `run` of /bin/true from a busybox
bundle with runc's default config (`runc spec`: namespaces, mounts, masked
paths, capabilities, rlimits, its device rule), many times, each with
MINI_RUNTIME_TIMELINE set. The runtime and the container's init mark the end
of each phase on CLOCK_MONOTONIC (oci_runtime::timeline); this script adds the
time from its own spawn of the process to the first mark and from the last
mark to the process's exit, and prints the median of each phase.

    cargo build --release -p mini-runtime
    python3 benches/start_breakdown.py [--runs 300] [--seccomp] [--bin BIN]

--seccomp adds the built-in default seccomp profile (Docker's, as
`mini-runtime spec --seccomp` writes it) to the config, so that its compile
and load show up; --no-cache removes the compiled-filter cache before every
run, so each run compiles the profile afresh. Run as root; the runs happen in a private mount
namespace without the cgroup2 mount of a hybrid host, as container_start.py's.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "_START_BREAKDOWN_INNER"


def reexec_in_private_mount_ns():
    if os.environ.get(MARK):
        if os.path.ismount("/sys/fs/cgroup/unified"):
            subprocess.run(["umount", "/sys/fs/cgroup/unified"], check=True)
        return
    env = dict(os.environ, **{MARK: "1"})
    argv = ["unshare", "--mount", "--propagation", "private", sys.executable] + sys.argv
    os.execvpe("unshare", argv, env)


def bundle(work, bin_path, seccomp):
    path = os.path.join(work, "bundle")
    rootfs = os.path.join(path, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    for d in ["proc", "sys", "dev", "tmp", "etc"]:
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    os.symlink("busybox", os.path.join(rootfs, "bin", "true"))
    subprocess.run(["runc", "spec", "--bundle", path], check=True)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    if seccomp:
        profile = subprocess.run(
            [bin_path, "spec", "--seccomp", "--bundle", os.path.join(work, "seccomp-spec")],
            capture_output=True,
        )
        with open(os.path.join(work, "seccomp-spec", "config.json")) as f:
            config["linux"]["seccomp"] = json.load(f)["linux"]["seccomp"]
        del profile
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--seccomp", action="store_true")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "mini-runtime"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    if not os.path.exists(args.bin):
        sys.exit(f"{args.bin} missing: cargo build --release -p mini-runtime")
    reexec_in_private_mount_ns()
    work = tempfile.mkdtemp(prefix="start-breakdown-")
    try:
        os.makedirs(os.path.join(work, "seccomp-spec"))
        b = bundle(work, args.bin, args.seccomp)
        log = os.path.join(work, "timeline.jsonl")
        env = dict(os.environ, MINI_RUNTIME_TIMELINE=log)
        phases = {}
        order = []
        totals = []
        for i in range(args.warmup + args.runs):
            if os.path.exists(log):
                os.unlink(log)
            if args.no_cache:
                shutil.rmtree(os.path.join(work, "state", ".seccomp-cache"), ignore_errors=True)
            argv = [args.bin, "--root", os.path.join(work, "state"), "run", "-b", b, f"c{i}"]
            t0 = time.monotonic_ns()
            r = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            t1 = time.monotonic_ns()
            if r.returncode != 0:
                sys.exit(f"run failed: {r.stderr.decode(errors='replace')}")
            if i < args.warmup:
                continue
            with open(log) as f:
                marks = json.loads(f.readline())["marks"]
            prev = t0
            steps = []
            for nanos, _pid, name in marks:
                steps.append((name, nanos - prev))
                prev = nanos
            steps.append(("exit (destructors, process teardown)", t1 - prev))
            for name, d in steps:
                if name not in phases:
                    phases[name] = []
                    order.append(name)
                phases[name].append(d)
            totals.append(t1 - t0)
        print(f"mini-runtime run /bin/true, runc's default config"
              f"{' + default seccomp profile' if args.seccomp else ''}"
              f"{', compiled every run' if args.no_cache else ''}, {args.runs} runs")
        print(f"{'phase (ends with)':64} {'median':>9} {'p90':>9}")
        for name in order:
            t = sorted(phases[name])
            med = statistics.median(t)
            print(f"{name:64} {med / 1e3:7.0f}µs {t[int(len(t) * 0.9)] / 1e3:7.0f}µs")
        t = sorted(totals)
        print(f"{'total (wall, spawn to exit)':64} {statistics.median(t) / 1e3:7.0f}µs "
              f"{t[int(len(t) * 0.9)] / 1e3:7.0f}µs")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
