#!/usr/bin/env python3
"""Soak and load runner: cycles and concurrent load through the CLI and
`mini-runtime serve`, counting what is left behind.

    cargo build --release -p mini-runtime
    bash scripts/setup.sh
    .venv/bin/python benches/soak.py [--cli 1000] [--serve 1000] [--load 100] [--kills 6]
    .venv/bin/python benches/soak.py --short --bin target/debug/mini-runtime   # what CI runs

Phases (each counted against a census taken before it: mounts, cgroups,
processes, files under the state, run and store dirs, serve's fds, network
namespaces and CNI address reservations):
- cli: `run` and `delete` of a busybox bundle, N times;
- serve: RunPodSandbox (on a CNI bridge) + Create/Start/Stop/RemoveContainer +
  Stop/RemovePodSandbox, N times;
- load: N pods started at once while another client lists, inspects and
  streams container events; errors counted, p50/p99 per RPC;
- kills: pods started at once (or, in turn, removed at once, or their
  containers sent ExecSync, UpdateContainerResources, ContainerStats and
  removals at once) and `serve` killed with SIGKILL at a random (seeded)
  moment, then restarted:
  every pod whose RunPodSandbox answered is listed, everything is removed,
  and the census is back where it was.

Run as root. Exits 1 if anything leaked or failed; prints a table either way.
"""

import argparse
import concurrent.futures
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cri_pod_start import BIN, oci_archive, stubs, wait_sock  # noqa: E402


def count_files(d):
    n = 0
    for _, dirs, files in os.walk(d):
        n += len(files) + len(dirs)
    return n


def census(work, tag, serve_pid=None):
    """What exists that this run could leak."""
    mounts = [l for l in open("/proc/self/mountinfo") if work in l]
    nsfs = [l for l in mounts if " nsfs " in l]
    cgroups = 0
    for ctrl in os.listdir("/sys/fs/cgroup"):
        base = os.path.join("/sys/fs/cgroup", ctrl, tag)
        if os.path.isdir(base):
            cgroups += sum(len(d) for _, d, _ in os.walk(base))
    procs = 0
    for p in os.listdir("/proc"):
        if not p.isdigit() or (serve_pid and int(p) == serve_pid):
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
            # serve itself comes and goes with the phases: its fds are counted.
            if work.encode() in cmd and b"\0serve\0" not in cmd:
                procs += 1
        except OSError:
            pass
    c = {
        "mounts": len(mounts) - len(nsfs),
        "netns": len(nsfs),
        "cgroups": cgroups,
        "processes": procs,
        "state files": sum(count_files(os.path.join(work, d)) for d in ("run", "cri", "cli-root")),
        "store files": count_files(os.path.join(work, "store")),
        "CNI IPs": len([f for f in os.listdir(os.path.join(work, "ipam", "soak"))
                        if f[0].isdigit()]) if os.path.isdir(os.path.join(work, "ipam", "soak")) else 0,
    }
    if serve_pid:
        c["serve fds"] = len(os.listdir(f"/proc/{serve_pid}/fd"))
    return c


def diff(before, after):
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


class Serve:
    def __init__(self, bin_path, work, cni_dir, api, api_grpc):
        self.bin, self.work, self.cni_dir = bin_path, work, cni_dir
        self.api, self.api_grpc = api, api_grpc
        self.sock = os.path.join(work, "cri.sock")
        self.proc = None

    def start(self):
        import grpc
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        w = self.work
        self.proc = subprocess.Popen(
            [self.bin, "--store", f"{w}/store", "--root", f"{w}/run", "serve", "--listen",
             f"unix://{self.sock}", "--state-dir", f"{w}/cri", "--cni-conf-dir", self.cni_dir,
             "--cni-bin-dir", "/usr/lib/cni", "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(w, "serve.log"), "a"))
        wait_sock(self.sock, self.proc, "serve")
        self.chan = grpc.insecure_channel(f"unix://{self.sock}", options=[("grpc.default_authority", "localhost")])
        self.rt = self.api_grpc.RuntimeServiceStub(self.chan)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.chan.close()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.chan.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", type=int, default=1000)
    ap.add_argument("--serve", type=int, default=1000)
    ap.add_argument("--load", type=int, default=100)
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--short", action="store_true", help="CI's: 30 / 20 / 20 / 3")
    ap.add_argument("--bin", default=BIN)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.short:
        args.cli, args.serve, args.load, args.kills = 30, 20, 20, 3
    rng = random.Random(args.seed)
    pid = os.getpid()
    tag = f"soak-{pid}"
    work = tempfile.mkdtemp(prefix="soak-")
    api, api_grpc = stubs(work)
    bridge = f"soak{pid % 10000}"
    cni_dir = os.path.join(work, "net.d")
    os.makedirs(cni_dir)
    with open(os.path.join(cni_dir, "10-soak.conflist"), "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": "soak", "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": f"10.{pid % 200 + 20}.77.0/24"}]],
                      "dataDir": os.path.join(work, "ipam")}}]}, f)
    image = "docker.io/library/soak:t"
    archive = oci_archive(work, image, {"Cmd": ["/bin/sh", "-c", "sleep 1000000"]})
    subprocess.run([args.bin, "--store", f"{work}/store", "image", "import", "--snapshots", archive],
                   check=True, stdout=subprocess.DEVNULL)
    failures = []
    rows = []

    def check(phase, before, after, seconds, extra=""):
        leaked = diff(before, after)
        rows.append((phase, seconds, leaked, extra))
        if leaked:
            failures.append(f"{phase}: left {leaked}")

    serve = Serve(args.bin, work, cni_dir, api, api_grpc)
    try:
        # CLI cycles: run (waits) and delete.
        bundle = os.path.join(work, "bundle")
        os.makedirs(os.path.join(bundle, "rootfs", "bin"))
        shutil.copy("/bin/busybox", os.path.join(bundle, "rootfs", "bin", "busybox"))
        os.symlink("busybox", os.path.join(bundle, "rootfs", "bin", "true"))
        subprocess.run([args.bin, "spec", "--bundle", bundle], check=True)
        with open(os.path.join(bundle, "config.json")) as f:
            cfg = json.load(f)
        cfg["process"]["args"] = ["/bin/true"]
        cfg["process"]["terminal"] = False
        cfg["linux"]["cgroupsPath"] = f"/{tag}/cli"
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(cfg, f)
        before = census(work, tag)
        t0 = time.perf_counter()
        for i in range(args.cli):
            cid = f"soak-{pid}-{i}"
            r = subprocess.run([args.bin, "--root", f"{work}/cli-root", "run", "--bundle", bundle, cid],
                               capture_output=True, timeout=60)
            if r.returncode != 0:
                failures.append(f"cli run {i}: {r.stderr.decode(errors='replace')[:300]}")
                break
            subprocess.run([args.bin, "--root", f"{work}/cli-root", "delete", "--force", cid],
                           capture_output=True, timeout=60)
        check(f"cli: {args.cli} run + delete", before, census(work, tag), time.perf_counter() - t0)

        serve.start()
        seq = [0]
        lock = threading.Lock()

        def pod_cfg():
            with lock:
                seq[0] += 1
                n = seq[0]
            return api.PodSandboxConfig(
                metadata=api.PodSandboxMetadata(name=f"p{n}", uid=f"u{pid}-{n}", namespace="soak"),
                log_directory=os.path.join(work, "logs", str(n)),
                linux=api.LinuxPodSandboxConfig(cgroup_parent=f"/{tag}"))

        def up(timings=None):
            rt = serve.rt
            cfg = pod_cfg()
            t = [time.perf_counter()]
            pod = rt.RunPodSandbox(api.RunPodSandboxRequest(config=cfg), timeout=120).pod_sandbox_id
            t.append(time.perf_counter())
            ctr = rt.CreateContainer(api.CreateContainerRequest(
                pod_sandbox_id=pod, sandbox_config=cfg,
                config=api.ContainerConfig(metadata=api.ContainerMetadata(name="app"),
                                           image=api.ImageSpec(image=image), log_path="app.log")),
                timeout=120).container_id
            t.append(time.perf_counter())
            rt.StartContainer(api.StartContainerRequest(container_id=ctr), timeout=120)
            t.append(time.perf_counter())
            if timings is not None:
                with lock:
                    for name, a, b in zip(("RunPodSandbox", "CreateContainer", "StartContainer"), t, t[1:]):
                        timings.setdefault(name, []).append(b - a)
            return pod, ctr

        def down(pod, ctr=None):
            rt = serve.rt
            if ctr:
                rt.StopContainer(api.StopContainerRequest(container_id=ctr, timeout=0), timeout=120)
                rt.RemoveContainer(api.RemoveContainerRequest(container_id=ctr), timeout=120)
            rt.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=120)
            rt.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=120)

        # A first cycle, so that caches and lazily made files are there.
        down(*up())
        before = census(work, tag, serve.proc.pid)
        t0 = time.perf_counter()
        for i in range(args.serve):
            try:
                down(*up())
            except Exception as e:  # noqa: BLE001 - reported
                failures.append(f"serve cycle {i}: {e}")
                break
        check(f"serve: {args.serve} pod + container cycles", before,
              census(work, tag, serve.proc.pid), time.perf_counter() - t0)

        # Load: pods at once, with a lister and an event stream beside.
        before = census(work, tag, serve.proc.pid)
        stop = threading.Event()
        side = {"lists": 0, "events": 0, "errors": []}

        def lister():
            while not stop.is_set():
                try:
                    for c in serve.rt.ListContainers(api.ListContainersRequest(), timeout=60).containers:
                        serve.rt.ContainerStatus(api.ContainerStatusRequest(container_id=c.id), timeout=60)
                    serve.rt.ListPodSandbox(api.ListPodSandboxRequest(), timeout=60)
                    side["lists"] += 1
                except Exception as e:  # noqa: BLE001 - a container removed between list and status is fine
                    if "NotFound" not in str(e) and "not found" not in str(e):
                        side["errors"].append(str(e)[:200])

        def events():
            try:
                for _ in serve.rt.GetContainerEvents(api.GetEventsRequest()):
                    side["events"] += 1
                    if stop.is_set():
                        return
            except Exception as e:  # noqa: BLE001 - the stream ends when serve stops
                if not stop.is_set():
                    side["errors"].append(f"events: {str(e)[:200]}")

        threads = [threading.Thread(target=lister), threading.Thread(target=events, daemon=True)]
        for t in threads:
            t.start()
        timings = {}
        t0 = time.perf_counter()
        made = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.load) as ex:
            for f in [ex.submit(up, timings) for _ in range(args.load)]:
                try:
                    made.append(f.result())
                except Exception as e:  # noqa: BLE001 - reported
                    failures.append(f"load: {str(e)[:300]}")
        wall = time.perf_counter() - t0
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as ex:
            list(ex.map(lambda pc: down(*pc), made))
        stop.set()
        threads[0].join()
        time.sleep(0.5)
        failures.extend(f"load side client: {e}" for e in side["errors"])
        lat = "; ".join(
            f"{k} p50 {statistics.median(v) * 1000:.0f} / p99 {sorted(v)[min(len(v) - 1, int(len(v) * 0.99))] * 1000:.0f} ms"
            for k, v in timings.items())
        check(f"load: {args.load} pods at once + lister + events", before,
              census(work, tag, serve.proc.pid), wall,
              f"{side['lists']} list rounds, {side['events']} events; {lat}")

        # kill -9 at a random moment, restart, account, clean.
        base = census(work, tag)
        t0 = time.perf_counter()
        for k in range(args.kills):
            answered = []
            n = max(4, args.load // 2)

            made = []

            def up_noted():
                pod, ctr = up()
                with lock:
                    answered.append(pod)
                    made.append((pod, ctr))

            def busy(ctr):
                # The RPCs a kubelet sends to running containers, then
                # their removal.
                rt = serve.rt
                rt.ExecSync(api.ExecSyncRequest(container_id=ctr, cmd=["/bin/true"], timeout=10),
                            timeout=60)
                rt.UpdateContainerResources(api.UpdateContainerResourcesRequest(
                    container_id=ctr, linux=api.LinuxContainerResources(cpu_shares=512)), timeout=60)
                rt.ContainerStats(api.ContainerStatsRequest(container_id=ctr), timeout=60)
                rt.ContainerStatus(api.ContainerStatusRequest(container_id=ctr), timeout=60)
                rt.StopContainer(api.StopContainerRequest(container_id=ctr, timeout=0), timeout=120)
                rt.RemoveContainer(api.RemoveContainerRequest(container_id=ctr), timeout=120)
            with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
                if k % 3 == 0:
                    # Cut off while pods are being made.
                    futs = [ex.submit(up_noted) for _ in range(n)]
                else:
                    for _ in range(n):
                        up_noted()
                    with lock:
                        made_now = list(made)
                    if k % 3 == 1:
                        # Cut off while they are being taken down.
                        answered.clear()
                        futs = [ex.submit(down, p) for p, _ in made_now]
                    else:
                        # Cut off amid exec, updates, stats and removals.
                        futs = [ex.submit(busy, c) for _, c in made_now]
                time.sleep(rng.uniform(0.05, 1.5 if k % 3 == 0 else 0.3))
                serve.kill9()
                for f in futs:
                    try:
                        f.result()
                    except Exception:  # noqa: BLE001 - cut off by the kill
                        pass
            serve.start()
            pods = serve.rt.ListPodSandbox(api.ListPodSandboxRequest(), timeout=60).items
            listed = {p.id for p in pods}
            missing = [p for p in answered if p not in listed]
            if missing:
                failures.append(f"kill {k}: pods answered but not listed after the restart: {missing}")
            for c in serve.rt.ListContainers(api.ListContainersRequest(), timeout=60).containers:
                serve.rt.StopContainer(api.StopContainerRequest(container_id=c.id, timeout=0), timeout=120)
                serve.rt.RemoveContainer(api.RemoveContainerRequest(container_id=c.id), timeout=120)
            for p in listed:
                down(p)
        serve.stop()
        check(f"kills: {args.kills} × SIGKILL of serve mid-start, -removal or -exec/update, restart, clean", base,
              census(work, tag), time.perf_counter() - t0)
    finally:
        if serve.proc and serve.proc.poll() is None:
            serve.stop()
        subprocess.run(["ip", "link", "del", bridge], stderr=subprocess.DEVNULL)

    print(f"\n{'phase':62} {'seconds':>8}  left behind")
    for phase, secs, leaked, extra in rows:
        print(f"{phase:62} {secs:8.1f}  {leaked or 'nothing'}")
        if extra:
            print(f"{'':62}           {extra}")
    if failures:
        print("\nFAILED:")
        for f in failures[:20]:
            print("  " + f)
        print(f"(work dir kept: {work})")
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
