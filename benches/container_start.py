#!/usr/bin/env python3
"""Container start benchmark: whole-process wall times of `run` of /bin/true
from one busybox bundle with runc's default config (`runc spec`: its
namespaces, mounts, masked paths, capabilities, rlimits and deny-all device
rule, and a cgroup per container), mini-runtime against runc and crun in the
same run; the create + start + delete cycle as three processes; the peak RSS
of each runtime process; and the cost of `exec` under each way of protecting
the runtime binary (CVE-2019-5736): none needed (the binary on a read-only
mount), the overlayfs view, the sealed memfd copy.

Ratios to crun are of medians, with a 95% confidence interval from a
bootstrap over the interleaved runs.

    cargo build --release -p mini-runtime
    python3 benches/container_start.py [--runs 300] [--bin BIN] [--baseline BIN]

--bin names the mini-runtime binary to measure (default: the release build;
scripts/build-static.sh makes the statically linked one the figures in the
README are of).

--baseline names a second mini-runtime binary (one built from an earlier
commit, say) whose `run` of the bundle without linux.resources joins the
linux.resources table: against a build without cgroups, what cgroups cost.

Run as root. The whole benchmark runs in a private mount namespace; on a host
with hybrid cgroups the v2 mount is unmounted there, since crun refuses hybrid
hosts. Runs of the runtimes are interleaved so that drift in the machine's
load hits all of them alike. Medians and ratios to crun are printed.

All three runtimes run the same bundle and put each container in cgroups of
its own with the config's device rule.
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "target", "release", "mini-runtime")
MARK = "_CONTAINER_START_BENCH_INNER"


def reexec_in_private_mount_ns():
    if os.environ.get(MARK):
        if os.path.ismount("/sys/fs/cgroup/unified"):
            subprocess.run(["umount", "/sys/fs/cgroup/unified"], check=True)
        return
    env = dict(os.environ, **{MARK: "1"})
    argv = ["unshare", "--mount", "--propagation", "private", sys.executable] + sys.argv
    os.execvpe("unshare", argv, env)


def bundle(work):
    rootfs = os.path.join(work, "bundle", "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    for d in ["proc", "sys", "dev", "tmp", "etc"]:
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    for applet in ["true", "sh", "sleep"]:
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    path = os.path.join(work, "bundle")
    subprocess.run(["runc", "spec", "--bundle", path], check=True)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return path


ERR = os.path.join(tempfile.gettempdir(), f"container-start-{os.getpid()}.err")


def timed(argv):
    """Wall time of one process."""
    with open(ERR, "wb") as err, open(os.devnull, "wb") as null:
        start = time.perf_counter()
        pid = os.posix_spawnp(argv[0], argv, os.environ,
                              file_actions=[(os.POSIX_SPAWN_DUP2, null.fileno(), 1),
                                            (os.POSIX_SPAWN_DUP2, err.fileno(), 2)])
        _, status = os.waitpid(pid, 0)
        wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        with open(ERR, errors="replace") as f:
            sys.exit(f"failed: {' '.join(argv)}: {f.read()}")
    return wall


def interleaved(cases, runs, warmup=20):
    """cases: {name: function(i) -> [argv, ...]}, the processes of one run
    in order. Returns {name: [seconds]}."""
    times = {name: [] for name in cases}
    # A new order each round: a runtime's teardown (RCU callbacks, cgroup
    # removal) spills into whatever runs next, so no runtime always follows
    # the same one.
    rng = random.Random(7)
    order = list(cases.items())
    for i in range(warmup + runs):
        rng.shuffle(order)
        for name, argvs in order:
            t = sum(timed(argv) for argv in argvs(i))
            if i >= warmup:
                times[name].append(t)
    return times


def ratio_ci(a, b, n=2000):
    """95% bootstrap interval of median(a) / median(b), resampling run pairs."""
    rng = random.Random(1)
    k = min(len(a), len(b))
    pairs = list(zip(a[:k], b[:k]))
    rs = []
    for _ in range(n):
        sample = [pairs[rng.randrange(k)] for _ in range(k)]
        rs.append(statistics.median(x for x, _ in sample) / statistics.median(y for _, y in sample))
    rs.sort()
    return rs[int(n * 0.025)], rs[int(n * 0.975)]


def report(title, times, base):
    print(f"\n{title}")
    print(f"{'':40} {'median':>9} {'p90':>9} {'vs ' + base:>14} {'95% CI':>13}")
    b = statistics.median(times[base])
    for name, t in times.items():
        lo, hi = ratio_ci(t, times[base])
        s = sorted(t)
        med = statistics.median(s)
        p90 = s[int(len(s) * 0.9)]
        print(f"{name:40} {med * 1e3:8.2f}ms {p90 * 1e3:8.2f}ms {med / b:13.2f}x "
              f"{lo:6.2f}-{hi:4.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--baseline", help="another mini-runtime binary to compare `run` with")
    ap.add_argument("--bin", help="the mini-runtime binary to measure")
    args = ap.parse_args()
    global BIN
    if args.bin:
        BIN = os.path.abspath(args.bin)
    if os.geteuid() != 0:
        sys.exit("run as root")
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: cargo build --release -p mini-runtime")
    reexec_in_private_mount_ns()
    work = tempfile.mkdtemp(prefix="container-start-bench-")
    try:
        b = bundle(work)
        roots = {n: os.path.join(work, "state-" + n) for n in ["mr", "runc", "crun"]}
        bins = {"mr": BIN, "crun": "crun", "runc": "runc"}
        names = {"mr": "mini-runtime", "crun": "crun", "runc": "runc"}

        def run(rt):
            return lambda i: [[bins[rt], "--root", roots[rt], "run", "-b", b, f"{rt}{i}"]]

        def cycle(rt):
            def argvs(i):
                base = [bins[rt], "--root", roots[rt]]
                cid = f"{rt}-cycle{i}"
                return [base + ["create", "-b", b, cid], base + ["start", cid],
                        base + ["delete", "-f", cid]]
            return argvs

        cases = {f"{names[rt]} run": run(rt) for rt in ["mr", "crun", "runc"]}
        report("run /bin/true (runc's default config)", interleaved(cases, args.runs), "crun run")
        # Peak RSS through GNU time (`%M`): ru_maxrss of a process spawned
        # from this one would carry Python's own high-water mark over its exec.
        # These runs are not timed.
        for rt in ["mr", "crun", "runc"]:
            rss = []
            for i in range(20):
                out = os.path.join(work, "rss")
                timed(["/usr/bin/time", "-f", "%M", "-o", out] + run(rt)(f"rss{i}")[0])
                with open(out) as f:
                    rss.append(int(f.read().split()[-1]))
            print(f"peak RSS of {names[rt]} run: {statistics.median(rss) / 1024:.1f} MiB")
        cases = {f"{names[rt]} create+start+delete": cycle(rt) for rt in ["mr", "crun", "runc"]}
        report("create + start + delete, three processes", interleaved(cases, args.runs),
               "crun create+start+delete")
        with open(os.path.join(b, "config.json")) as f:
            config = json.load(f)
        config["linux"].pop("resources", None)

        # What cgroups cost: runc's default config (its deny-all device rule in
        # linux.resources) against the same bundle with limits on top and with no
        # linux.resources at all. Every container gets its cgroups and device
        # rules either way, as with runc; only the writes of limits differ.
        limited = os.path.join(work, "limited")
        shutil.copytree(b, limited, symlinks=True)
        config["linux"]["resources"] = {
            "devices": [{"allow": False, "access": "rwm"}],
            "memory": {"limit": 64 << 20},
            "pids": {"limit": 64},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        }
        with open(os.path.join(limited, "config.json"), "w") as f:
            json.dump(config, f)
        plain = os.path.join(work, "plain")
        shutil.copytree(b, plain, symlinks=True)
        config["linux"].pop("resources")
        with open(os.path.join(plain, "config.json"), "w") as f:
            json.dump(config, f)
        default = os.path.join(work, "default")
        shutil.copytree(b, default, symlinks=True)
        config["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
        with open(os.path.join(default, "config.json"), "w") as f:
            json.dump(config, f)
        cases = {}
        if args.baseline:
            cases["baseline binary, no linux.resources"] = lambda i: [[
                args.baseline, "--root", roots["mr"], "run", "-b", plain, f"b{i}"]]
        cases.update({
            "no linux.resources": lambda i: [[BIN, "--root", roots["mr"], "run", "-b", plain, f"p{i}"]],
            "runc's default (device rule)": lambda i: [[BIN, "--root", roots["mr"], "run", "-b", default, f"d{i}"]],
            "memory, pids and cpu limits": lambda i: [[BIN, "--root", roots["mr"], "run", "-b", limited, f"l{i}"]],
        })
        report("mini-runtime run /bin/true: what linux.resources costs", interleaved(cases, args.runs), "no linux.resources")

        # exec: the same binary from a read-only bind mount (already protected,
        # no re-exec), from a writable copy (re-exec through the overlayfs view),
        # and from a writable copy whose scratch dir cannot be made, so the
        # overlayfs view fails and the sealed memfd copy is used.
        ro_src = os.path.join(work, "ro-src")
        ro = os.path.join(work, "ro")
        rw = os.path.join(work, "rw")
        for d in [ro_src, ro, rw]:
            os.makedirs(d)
        shutil.copy(BIN, ro_src)
        shutil.copy(BIN, rw)
        subprocess.run(["mount", "--bind", ro_src, ro], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", ro], check=True)
        state = os.path.join(work, "state-exec")
        memfd_state = os.path.join(work, "state-exec-memfd")
        with open(os.path.join(b, "config.json")) as f:
            config = json.load(f)
        config["process"]["args"] = ["sleep", "100000"]
        with open(os.path.join(b, "config.json"), "w") as f:
            json.dump(config, f)
        subprocess.run([BIN, "--root", state, "run", "-d", "-b", b, "target"], check=True)
        os.makedirs(memfd_state)
        os.symlink(os.path.join(state, "target"), os.path.join(memfd_state, "target"))
        with open(os.path.join(memfd_state, ".exe-lower"), "w"):
            pass
        ro_bin = os.path.join(ro, "mini-runtime")
        rw_bin = os.path.join(rw, "mini-runtime")
        cases = {
            "exec, binary on a read-only mount": lambda i: [[ro_bin, "--root", state, "exec", "target", "true"]],
            "exec, overlayfs view": lambda i: [[rw_bin, "--root", state, "exec", "target", "true"]],
            "exec, sealed memfd copy": lambda i: [[rw_bin, "--root", memfd_state, "exec", "target", "true"]],
        }
        try:
            report(
                f"exec true ({os.path.getsize(BIN) / 1e6:.1f} MB binary)",
                interleaved(cases, args.runs),
                "exec, binary on a read-only mount",
            )
        finally:
            subprocess.run([BIN, "--root", state, "delete", "-f", "target"])
    finally:
        subprocess.run(["umount", "-R", os.path.join(work, "ro")], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
