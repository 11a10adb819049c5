#!/usr/bin/env python3
"""CRI streaming benchmark: Exec through the streaming servers of
`mini-runtime serve` and of containerd 1.6's CRI plugin (with runc), side by
side in one run, with the same client: spdystream, the SPDY library under
kubectl and crictl (tests/cri/spdystream_client.go, built against Debian's
golang-github-docker-spdystream-dev).

- Round-trip latency of `true`: the Exec RPC, then the client's upgrade,
  streams, and the exit status on the error stream (the client times that
  part itself, so its process start is left out). Rounds alternate between
  the two in a random order.
- Throughput: `cat` of a 1 GiB file (made in the container's writable layer
  beforehand, so in the page cache) through exec stdout, and the CPU the
  daemons spent on it (serve; containerd and its shims).

    cargo build --release -p mini-runtime
    bash scripts/setup.sh
    .venv/bin/python benches/cri_stream.py [--rounds 50] [--passes 3]

Run as root; containerd writes fixed paths (/run/containerd/...): do not run
it beside another containerd.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cri_pod_start import BIN, REPO, Daemons, ratio_ci  # noqa: E402

CLIENT_SRC = os.path.join(REPO, "examples", "mini-runtime", "tests", "cri", "spdystream_client.go")


def build_client(work):
    out = os.path.join(work, "spdystream_client")
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode",
               GOCACHE=os.path.join(work, "gocache"))
    subprocess.run(["go", "build", "-o", out, CLIENT_SRC], check=True, env=env)
    return out


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def procs_named(prefix):
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/comm") as f:
                    if f.read().strip().startswith(prefix):
                        found.append(int(p))
            except OSError:
                pass
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--passes", type=int, default=3, help="1 GiB transfers per runtime")
    ap.add_argument("--bin", default=BIN)
    args = ap.parse_args()
    d = Daemons(args.bin, "warn")
    api = d.api
    pods = {}
    try:
        client = build_client(d.work)
        ctrs = {}
        for name, rt in d.rts.items():
            ns = api.NamespaceOption(network=api.NODE)
            cfg = api.PodSandboxConfig(
                metadata=api.PodSandboxMetadata(name=f"stream-{name}", uid=f"s{d.pid}{name}", namespace="bench"),
                log_directory=os.path.join(d.work, "logs", name),
                linux=api.LinuxPodSandboxConfig(cgroup_parent=f"/cri-bench-{d.pid}",
                                                security_context=api.LinuxSandboxSecurityContext(namespace_options=ns)))
            pod = rt.RunPodSandbox(api.RunPodSandboxRequest(config=cfg), timeout=120).pod_sandbox_id
            pods.setdefault(name, []).append(pod)
            ctr = rt.CreateContainer(api.CreateContainerRequest(
                pod_sandbox_id=pod, sandbox_config=cfg,
                config=api.ContainerConfig(metadata=api.ContainerMetadata(name="app"),
                                           image=api.ImageSpec(image="docker.io/library/bench-app:t"),
                                           log_path="app.log")), timeout=120).container_id
            rt.StartContainer(api.StartContainerRequest(container_id=ctr), timeout=120)
            ctrs[name] = ctr

        def exec_once(name, cmd):
            t0 = time.perf_counter()
            url = d.rts[name].Exec(api.ExecRequest(container_id=ctrs[name], cmd=cmd, stdout=True,
                                                   stderr=True, stdin=True), timeout=60).url
            rpc = time.perf_counter() - t0
            out = subprocess.run([client, url, "exec"], check=True, capture_output=True, timeout=600)
            r = json.loads(out.stdout)
            status = json.loads(r["error"]) if r["error"] else {}
            if status.get("status") != "Success":
                sys.exit(f"{name}: exec {cmd} failed: {r}")
            return rpc, r["elapsed_s"], r["length"]

        lat = {n: [] for n in ctrs}
        parts = {n: ([], []) for n in ctrs}
        for n in ctrs:  # warm up
            exec_once(n, ["/bin/true"])
        rng = random.Random(11)
        for _ in range(args.rounds):
            order = list(ctrs)
            rng.shuffle(order)
            for n in order:
                rpc, stream, _ = exec_once(n, ["/bin/true"])
                lat[n].append(rpc + stream)
                parts[n][0].append(rpc)
                parts[n][1].append(stream)

        gib = 1 << 30
        for n in ctrs:
            exec_once(n, ["/bin/dd", "if=/dev/zero", "of=/big", "bs=1048576", "count=1024"])
        thr = {n: [] for n in ctrs}
        cpu = {n: [] for n in ctrs}
        for _ in range(args.passes):
            for n in ctrs:
                pids = [d.serve.pid] if n == "serve" else [d.containerd.pid] + procs_named("containerd-shim")
                c0 = cpu_seconds(pids)
                _, secs, length = exec_once(n, ["/bin/cat", "/big"])
                cpu[n].append(cpu_seconds(pids) - c0)
                if length != gib:
                    sys.exit(f"{n}: {length} bytes, not {gib}")
                thr[n].append(gib / secs / 1e6)
    finally:
        for name, rt in d.rts.items():
            for pod in pods.get(name, []):
                try:
                    rt.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
                    rt.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
                except Exception as e:  # noqa: BLE001 - shown, the rest still goes
                    print(f"{name}: removing pod {pod}: {e}", file=sys.stderr)
        d.close()

    s, c = statistics.median(lat["serve"]), statistics.median(lat["containerd"])
    lo, hi = ratio_ci(lat["serve"], lat["containerd"])
    print(f"\nExec of `true` over SPDY (spdystream client), {args.rounds} rounds each")
    print(f"{'':24} {'serve':>10} {'containerd':>12} {'ratio':>8} {'95% CI':>12}")
    print(f"{'round trip, median':24} {s * 1000:8.2f}ms {c * 1000:10.2f}ms {s / c:7.2f}x  {lo:.2f}-{hi:.2f}")
    p90 = {n: sorted(v)[int(len(v) * 0.9)] for n, v in lat.items()}
    for i, what in enumerate(("Exec RPC", "stream and exit")):
        a, b = (statistics.median(parts[n][i]) * 1000 for n in ("serve", "containerd"))
        print(f"{'  ' + what:24} {a:8.2f}ms {b:10.2f}ms")
    print(f"{'round trip, p90':24} {p90['serve'] * 1000:8.2f}ms {p90['containerd'] * 1000:10.2f}ms")
    print(f"\ncat of 1 GiB through exec stdout, {args.passes} passes each (median)")
    print(f"{'':24} {'serve':>10} {'containerd':>12}")
    print(f"{'MB/s':24} {statistics.median(thr['serve']):10.0f} {statistics.median(thr['containerd']):12.0f}")
    print(f"{'daemon CPU seconds':24} {statistics.median(cpu['serve']):10.2f} {statistics.median(cpu['containerd']):12.2f}")


if __name__ == "__main__":
    main()
