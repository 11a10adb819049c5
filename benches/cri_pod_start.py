#!/usr/bin/env python3
"""CRI benchmark: RunPodSandbox + CreateContainer + StartContainer through
`mini-runtime serve` and through containerd 1.6's CRI plugin (with runc),
side by side in one run, on the host's network and on a CNI bridge; the
idle RSS of both daemons; and 100 pods started at once through serve, with
the p50/p99 of each RPC under that load.

    cargo build --release -p mini-runtime
    bash scripts/setup.sh   # the venv with grpcio, containerd, plugins
    .venv/bin/python benches/cri_pod_start.py [--rounds 20] [--concurrent 100]

Run as root. Both daemons get their own root, state and socket under a temp
dir, the same busybox image (imported offline), and the same CNI config
(Debian's bridge and host-local plugins). Rounds alternate between the two,
in a new random order each round; teardown (StopPodSandbox,
RemovePodSandbox) is not timed. containerd writes fixed paths
(/run/containerd/...): do not run it beside another containerd.
"""

import argparse
import concurrent.futures
import importlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import hashlib
import io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "target", "release", "mini-runtime")
PROTO = os.path.join(REPO, "crates", "cri-api", "proto")


def stubs(out_dir):
    from grpc_tools import protoc
    rc = protoc.main(["protoc", f"-I{PROTO}", f"--python_out={out_dir}",
                      f"--grpc_python_out={out_dir}", "runtime/v1/api.proto"])
    if rc != 0:
        sys.exit("grpc_tools.protoc failed")
    for d in ("runtime", "runtime/v1"):
        open(os.path.join(out_dir, d, "__init__.py"), "a").close()
    sys.path.insert(0, out_dir)
    return (importlib.import_module("runtime.v1.api_pb2"),
            importlib.import_module("runtime.v1.api_pb2_grpc"))


def oci_archive(work, name, config):
    """An OCI archive of a busybox rootfs with `config`, named `name`."""
    busybox = open("/bin/busybox", "rb").read()
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        for d in ("bin", "etc", "proc", "sys", "dev", "tmp"):
            i = tarfile.TarInfo(d)
            i.type, i.mode = tarfile.DIRTYPE, 0o755
            t.addfile(i)
        i = tarfile.TarInfo("bin/busybox")
        i.size, i.mode = len(busybox), 0o755
        t.addfile(i, io.BytesIO(busybox))
        for l in ("sh", "sleep", "true", "cat", "dd"):
            i = tarfile.TarInfo(f"bin/{l}")
            i.type, i.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(i)
        pw = b"root:x:0:0::/:/bin/sh\n"
        i = tarfile.TarInfo("etc/passwd")
        i.size = len(pw)
        t.addfile(i, io.BytesIO(pw))
    layer = layer.getvalue()
    blobs = {}

    def put(b):
        d = "sha256:" + hashlib.sha256(b).hexdigest()
        blobs[d] = b
        return d
    ld = put(layer)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": config,
                      "rootfs": {"type": "layers", "diff_ids": [ld]}}).encode()
    cd = put(cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": len(layer)}]}).encode()
    md = put(man)
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": len(man),
        "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}]}).encode()
    path = os.path.join(work, hashlib.sha256(name.encode()).hexdigest()[:12] + ".tar")
    with tarfile.open(path, "w") as t:
        for n, b in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)] + \
                [(f"blobs/sha256/{d[7:]}", b) for d, b in blobs.items()]:
            i = tarfile.TarInfo(n)
            i.size = len(b)
            t.addfile(i, io.BytesIO(b))
    return path


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    return 0


def wait_sock(path, proc, what):
    for _ in range(600):
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            sys.exit(f"{what} exited")
        time.sleep(0.05)
    sys.exit(f"{what} did not come up")


def ratio_ci(a, b, n=2000):
    rng = random.Random(1)
    k = min(len(a), len(b))
    pairs = list(zip(a[:k], b[:k]))
    rs = []
    for _ in range(n):
        s = [pairs[rng.randrange(k)] for _ in range(k)]
        rs.append(statistics.median(x for x, _ in s) / statistics.median(y for _, y in s))
    rs.sort()
    return rs[int(n * 0.025)], rs[int(n * 0.975)]


class Daemons:
    """containerd 1.6 with its CRI plugin (and runc) and `mini-runtime serve`,
    each with its own root, state and socket under a temp dir, the same
    busybox images (imported offline) and the same CNI config (Debian's
    bridge and host-local plugins); gRPC stubs for both."""

    def __init__(self, bin_path, log_level):
        import grpc
        self.work = work = tempfile.mkdtemp(prefix="cri-bench-")
        self.api, self.api_grpc = stubs(work)
        self.pid = pid = os.getpid()
        self.bridge = f"crib{pid % 10000}"
        subnet = f"10.{pid % 200 + 20}.99"
        cni_dir = os.path.join(work, "net.d")
        os.makedirs(cni_dir)
        with open(os.path.join(cni_dir, "10-bench.conflist"), "w") as f:
            json.dump({"cniVersion": "1.0.0", "name": "bench", "plugins": [
                {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": f"{subnet}.0/24"}]],
                          "dataDir": os.path.join(work, "ipam")}}]}, f)
        pause = oci_archive(work, "docker.io/library/bench-pause:t", {"Entrypoint": ["/bin/sleep"], "Cmd": ["1000000"]})
        app = oci_archive(work, "docker.io/library/bench-app:t", {"Cmd": ["/bin/sh", "-c", "sleep 1000000"]})

        cd = os.path.join(work, "containerd")
        os.makedirs(cd)
        csock = os.path.join(cd, "c.sock")
        with open(os.path.join(cd, "config.toml"), "w") as f:
            f.write(f"""version = 2
root = "{cd}/root"
state = "{cd}/state"
[grpc]
  address = "{csock}"
[ttrpc]
  address = "{csock}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/bench-pause:t"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_dir}"
""")
        self.containerd = subprocess.Popen(
            ["containerd", "--config", os.path.join(cd, "config.toml")],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(cd, "log"), "w"))
        wait_sock(csock, self.containerd, "containerd")
        for a in (pause, app):
            subprocess.run(["ctr", "--address", csock, "-n", "k8s.io", "images", "import", a],
                           check=True, stdout=subprocess.DEVNULL)
        self.ours = ours = os.path.join(work, "ours")
        os.makedirs(ours)
        subprocess.run([bin_path, "--store", f"{ours}/store", "image", "import", "--snapshots", app],
                       check=True, stdout=subprocess.DEVNULL)
        ssock = os.path.join(ours, "cri.sock")
        self.serve = subprocess.Popen(
            [bin_path, "--store", f"{ours}/store", "--root", f"{ours}/run", "serve",
             "--listen", f"unix://{ssock}", "--state-dir", f"{ours}/cri",
             "--cni-conf-dir", cni_dir, "--cni-bin-dir", "/usr/lib/cni", "--log-level", log_level],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(ours, "log"), "w"))
        wait_sock(ssock, self.serve, "serve")
        time.sleep(0.5)
        opts = [("grpc.default_authority", "localhost")]
        chans = {"serve": grpc.insecure_channel(f"unix://{ssock}", options=opts),
                 "containerd": grpc.insecure_channel(f"unix://{csock}", options=opts)}
        self.rts = {k: self.api_grpc.RuntimeServiceStub(c) for k, c in chans.items()}

    def pids(self):
        return {"serve": self.serve.pid, "containerd": self.containerd.pid}

    def close(self, keep_log=None):
        for p in (self.serve, self.containerd):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["ip", "link", "del", self.bridge], stderr=subprocess.DEVNULL)
        if keep_log:
            shutil.copy(os.path.join(self.ours, "log"), keep_log)
        shutil.rmtree(self.work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=100)
    ap.add_argument("--bin", default=BIN)
    ap.add_argument("--log-level", default="warn", help="serve's; its log is copied to ./serve-bench.log")
    args = ap.parse_args()
    d = Daemons(args.bin, args.log_level)
    api, rts, work, pid = d.api, d.rts, d.work, d.pid
    serve, containerd = d.serve, d.containerd
    idle = {"serve": rss_kib(serve.pid), "containerd": rss_kib(containerd.pid)}
    seq = [0]

    def pod_cfg(name, host_net):
        seq[0] += 1
        ns = api.NamespaceOption(network=api.NODE if host_net else api.POD)
        return api.PodSandboxConfig(
            metadata=api.PodSandboxMetadata(name=f"{name}-{seq[0]}", uid=f"u{pid}-{seq[0]}", namespace="bench"),
            log_directory=os.path.join(work, "logs", str(seq[0])),
            linux=api.LinuxPodSandboxConfig(cgroup_parent=f"/cri-bench-{pid}",
                                            security_context=api.LinuxSandboxSecurityContext(namespace_options=ns)))

    def start(rt, host_net, timings=None):
        cfg = pod_cfg("p", host_net)
        t0 = time.perf_counter()
        pod = rt.RunPodSandbox(api.RunPodSandboxRequest(config=cfg), timeout=120).pod_sandbox_id
        t1 = time.perf_counter()
        ctr = rt.CreateContainer(api.CreateContainerRequest(
            pod_sandbox_id=pod, sandbox_config=cfg,
            config=api.ContainerConfig(metadata=api.ContainerMetadata(name="app"),
                                       image=api.ImageSpec(image="docker.io/library/bench-app:t"),
                                       log_path="app.log")), timeout=120).container_id
        t2 = time.perf_counter()
        rt.StartContainer(api.StartContainerRequest(container_id=ctr), timeout=120)
        t3 = time.perf_counter()
        if timings is not None:
            timings["RunPodSandbox"].append(t1 - t0)
            timings["CreateContainer"].append(t2 - t1)
            timings["StartContainer"].append(t3 - t2)
        return pod, t3 - t0

    def stop(rt, pod):
        rt.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=120)
        rt.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=120)

    results = {}
    breakdown = {}
    try:
        for host_net in (True, False):
            mode = "host network" if host_net else "CNI bridge"
            times = {"serve": [], "containerd": []}
            per_rpc = {n: {"RunPodSandbox": [], "CreateContainer": [], "StartContainer": []} for n in times}
            for name in times:  # warm up
                stop(rts[name], start(rts[name], host_net)[0])
            rng = random.Random(7)
            for _ in range(args.rounds):
                order = list(times)
                rng.shuffle(order)
                for name in order:
                    pod, t = start(rts[name], host_net, per_rpc[name])
                    times[name].append(t)
                    stop(rts[name], pod)
            results[mode] = times
            breakdown[mode] = per_rpc
        busy = {"serve": rss_kib(serve.pid), "containerd": rss_kib(containerd.pid)}

        # Concurrent pods through serve.
        conc = {"RunPodSandbox": [], "CreateContainer": [], "StartContainer": []}
        failures = []
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.concurrent) as ex:
            futs = [ex.submit(start, rts["serve"], True, conc) for _ in range(args.concurrent)]
            pods = []
            for f in futs:
                try:
                    pods.append(f.result()[0])
                except Exception as e:  # noqa: BLE001 - counted and shown
                    failures.append(str(e))
        wall = time.perf_counter() - t0
        listed = len(rts["serve"].ListContainers(api.ListContainersRequest(), timeout=60).containers)
        loaded = rss_kib(serve.pid)
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as ex:
            list(ex.map(lambda p: stop(rts["serve"], p), pods))
    finally:
        d.close(keep_log="serve-bench.log")

    print(f"\nRunPodSandbox + CreateContainer + StartContainer, {args.rounds} rounds each")
    print(f"{'':28} {'serve':>10} {'containerd':>12} {'ratio':>8} {'95% CI':>14}")
    for mode, t in results.items():
        s, c = statistics.median(t["serve"]), statistics.median(t["containerd"])
        lo, hi = ratio_ci(t["serve"], t["containerd"])
        print(f"{mode:28} {s * 1000:8.1f}ms {c * 1000:10.1f}ms {s / c:7.2f}x  {lo:.2f}-{hi:.2f}")
    print(f"\nMedian per RPC{'':14} {'serve':>10} {'containerd':>12}")
    for mode, per in breakdown.items():
        for rpc in per["serve"]:
            s = statistics.median(per["serve"][rpc]) * 1000
            c = statistics.median(per["containerd"][rpc]) * 1000
            print(f"{mode + ': ' + rpc:28} {s:8.1f}ms {c:10.1f}ms")
    print(f"\nRSS (KiB)                    {'serve':>10} {'containerd':>12}")
    print(f"{'idle, after start':28} {idle['serve']:>10} {idle['containerd']:>12}")
    print(f"{'after the rounds':28} {busy['serve']:>10} {busy['containerd']:>12}")
    print(f"\n{args.concurrent} pods at once through serve (host network): "
          f"{len(failures)} failed, {listed} containers listed, {wall:.2f}s wall, RSS {loaded} KiB")
    for f in failures[:5]:
        print("  failure:", f[:300])
    print(f"{'':20} {'p50':>9} {'p99':>9}")
    for rpc, t in conc.items():
        t = sorted(t)
        if t:
            p99 = t[min(len(t) - 1, int(len(t) * 0.99))]
            print(f"{rpc:20} {statistics.median(t) * 1000:7.1f}ms {p99 * 1000:7.1f}ms")


if __name__ == "__main__":
    main()
