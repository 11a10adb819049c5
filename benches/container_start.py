#!/usr/bin/env python3
"""Container start benchmark: whole-process wall times of `run` of /bin/true
from one busybox bundle, mini-runtime against runc and crun in the same run,
and the cost of `exec` under each way of protecting the runtime binary
(CVE-2019-5736): none needed (the binary on a read-only mount), the overlayfs
view, the sealed memfd copy.

    cargo build --release -p mini-runtime
    python3 benches/container_start.py [--runs 300] [--baseline BIN]

--baseline names a second mini-runtime binary (one built from an earlier
commit, say) whose `run` of the bundle without linux.resources joins the
linux.resources table: against a build without cgroups, what cgroups cost.

Run as root. The whole benchmark runs in a private mount namespace; on a host
with hybrid cgroups the v2 mount is unmounted there, since crun refuses hybrid
hosts. Runs of the runtimes are interleaved so that drift in the machine's
load hits all of them alike. Medians and ratios to crun are printed.

What differs between the runtimes: runc and crun put every container in a
cgroup of its own; mini-runtime does not have cgroups yet, so `linux.resources`
is stripped from the config for all three, and that cost is still theirs alone.
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
    subprocess.run([BIN, "spec", "--bundle", path], check=True)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    config["linux"].pop("resources", None)
    # Debian's crun 1.8 knows runtime-spec versions up to 1.0.x only.
    config["ociVersion"] = "1.0.2"
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return path


def timed(argv):
    start = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}: {r.stderr.decode(errors='replace')}")
    return wall


def interleaved(cases, runs, warmup=20):
    """cases: {name: function(i) -> argv}. Returns {name: [seconds]}."""
    times = {name: [] for name in cases}
    for i in range(warmup + runs):
        for name, argv in cases.items():
            t = timed(argv(i))
            if i >= warmup:
                times[name].append(t)
    return times


def report(title, times, base):
    print(f"\n{title}")
    print(f"{'':34} {'median':>9} {'p90':>9} {'vs ' + base:>10}")
    b = statistics.median(times[base])
    for name, t in times.items():
        t = sorted(t)
        med = statistics.median(t)
        p90 = t[int(len(t) * 0.9)]
        print(f"{name:34} {med * 1e3:8.2f}ms {p90 * 1e3:8.2f}ms {med / b:9.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--baseline", help="another mini-runtime binary to compare `run` with")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: cargo build --release -p mini-runtime")
    reexec_in_private_mount_ns()
    work = tempfile.mkdtemp(prefix="container-start-bench-")
    try:
        b = bundle(work)
        roots = {n: os.path.join(work, "state-" + n) for n in ["mr", "runc", "crun"]}
        cases = {
            "mini-runtime run": lambda i: [BIN, "--root", roots["mr"], "run", "-b", b, f"mr{i}"],
            "crun run": lambda i: ["crun", "--root", roots["crun"], "run", "-b", b, f"c{i}"],
            "runc run": lambda i: ["runc", "--root", roots["runc"], "run", "-b", b, f"r{i}"],
        }
        report("run /bin/true", interleaved(cases, args.runs), "crun run")

        # What cgroups cost: runc's default config (its deny-all device rule in
        # linux.resources) against the same bundle with limits on top and with no
        # linux.resources at all. Every container gets its cgroups and device
        # rules either way, as with runc; only the writes of limits differ.
        limited = os.path.join(work, "limited")
        shutil.copytree(b, limited, symlinks=True)
        with open(os.path.join(b, "config.json")) as f:
            config = json.load(f)
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
            cases["baseline binary, no linux.resources"] = lambda i: [
                args.baseline, "--root", roots["mr"], "run", "-b", plain, f"b{i}"]
        cases.update({
            "no linux.resources": lambda i: [BIN, "--root", roots["mr"], "run", "-b", plain, f"p{i}"],
            "runc's default (device rule)": lambda i: [BIN, "--root", roots["mr"], "run", "-b", default, f"d{i}"],
            "memory, pids and cpu limits": lambda i: [BIN, "--root", roots["mr"], "run", "-b", limited, f"l{i}"],
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
            "exec, binary on a read-only mount": lambda i: [ro_bin, "--root", state, "exec", "target", "true"],
            "exec, overlayfs view": lambda i: [rw_bin, "--root", state, "exec", "target", "true"],
            "exec, sealed memfd copy": lambda i: [rw_bin, "--root", memfd_state, "exec", "target", "true"],
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
