#!/usr/bin/env python3
"""Pull benchmark: the 4-layer gzip bench image of image_unpack.py (about
480 MB), pushed once to Debian's docker-registry on 127.0.0.1, then pulled
and unpacked into a fresh store each run by

  - `mini-runtime image pull` (blobs and snapshots, one pass per layer),
  - `skopeo copy` into an OCI layout, then `umoci unpack`,
  - containerd 1.6's `ctr image pull` (which unpacks into its overlayfs
    snapshotter), on its own root, without and with `unpigz` on PATH.

Whole-process wall times, runs interleaved, medians and ratios to the faster
containerd variant. (Import + unpack from a layout against `tar -xzf` is
image_unpack.py's.)

    cargo build --release -p mini-runtime
    python3 benches/image_pull.py [--runs 3] [--work DIR]
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import image_unpack as iu  # noqa: E402

BIN = iu.BIN


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, what):
    for _ in range(400):
        if proc.poll() is not None:
            sys.exit(f"{what} exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.025)
    sys.exit(f"{what} did not listen")


def start_registry(work):
    d = os.path.join(work, "registry")
    os.makedirs(d, exist_ok=True)
    port = free_port()
    cfg = os.path.join(d, "config.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {d}/data\n"
                f"http:\n  addr: 127.0.0.1:{port}\n")
    p = subprocess.Popen(["docker-registry", "serve", cfg],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, p, "docker-registry")
    return p, port


class Containerd:
    def __init__(self, base, path_env):
        self.dir = tempfile.mkdtemp(prefix="ctrd-", dir=base)
        self.sock = os.path.join(self.dir, "c.sock")
        cfg = os.path.join(self.dir, "config.toml")
        with open(cfg, "w") as f:
            f.write(f'version = 2\nroot = "{self.dir}/root"\nstate = "{self.dir}/state"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.sock}"\n[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
                    '[metrics]\n  address = ""\n')
        self.env = dict(os.environ, PATH=path_env)
        self.p = subprocess.Popen(["containerd", "--config", cfg], env=self.env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(400):
            if subprocess.run(["ctr", "--address", self.sock, "version"],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.025)
        sys.exit("containerd did not start")

    def argv(self, ref):
        return ["ctr", "--address", self.sock, "-n", "bench", "images", "pull",
                "--plain-http", ref]

    def stop(self):
        self.p.terminate()
        self.p.wait()
        subprocess.run(["umount", "-R", self.dir], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def timed(argv, env=None):
    start = time.perf_counter()
    r = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}: {r.stderr.decode(errors='replace')}")
    return wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/var/tmp/mini-runtime-unpack-bench")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: cargo build --release -p mini-runtime")
    os.makedirs(args.work, exist_ok=True)
    tars = [os.path.join(args.work, f"layer{i}.tar") for i in range(4)]
    if not all(os.path.exists(t) for t in tars):
        tars = iu.build_layers(args.work)
    layout = iu.build_layout(args.work, tars, "gzip")
    reg, port = start_registry(args.work)
    ref = f"127.0.0.1:{port}/bench/img:1"
    scratch = os.path.join(args.work, "pull-scratch")
    os.makedirs(scratch, exist_ok=True)
    try:
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                        f"oci:{layout}:{iu.NAME}", f"docker://{ref}"], check=True)
        plain_path = os.environ["PATH"]
        # A PATH without unpigz, for containerd's own gzip.
        nopigz = os.path.join(scratch, "nopigz-bin")
        os.makedirs(nopigz, exist_ok=True)
        for tool in ["containerd-shim-runc-v2", "runc"]:
            src = shutil.which(tool)
            if src and not os.path.exists(os.path.join(nopigz, tool)):
                os.symlink(src, os.path.join(nopigz, tool))
        have_pigz = shutil.which("unpigz") is not None
        times = {k: [] for k in ["mini-runtime image pull", "skopeo copy + umoci unpack",
                                 "ctr image pull (Go gzip)", "ctr image pull (unpigz)"]}
        if not have_pigz:
            del times["ctr image pull (unpigz)"]
        for _ in range(args.runs):
            store = os.path.join(scratch, "store")
            shutil.rmtree(store, ignore_errors=True)
            times["mini-runtime image pull"].append(
                timed([BIN, "--store", store, "image", "pull", ref]))
            shutil.rmtree(store, ignore_errors=True)

            oci = os.path.join(scratch, "oci")
            bundle = os.path.join(scratch, "bundle")
            shutil.rmtree(oci, ignore_errors=True)
            shutil.rmtree(bundle, ignore_errors=True)
            t = timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                       f"docker://{ref}", f"oci:{oci}:1"])
            t += timed(["umoci", "unpack", "--image", f"{oci}:1", bundle])
            times["skopeo copy + umoci unpack"].append(t)
            shutil.rmtree(oci, ignore_errors=True)
            shutil.rmtree(bundle, ignore_errors=True)

            variants = [("ctr image pull (Go gzip)", nopigz + ":/usr/sbin:/usr/bin:/sbin:/bin")]
            if have_pigz:
                variants.append(("ctr image pull (unpigz)", plain_path))
            for name, path_env in variants:
                c = Containerd(scratch, path_env)
                try:
                    times[name].append(timed(c.argv(ref), env=c.env))
                finally:
                    c.stop()
        ctr = min(statistics.median(v) for k, v in times.items() if k.startswith("ctr"))
        print(f"\npull + unpack of {ref} (4 gzip layers), median of {args.runs}")
        print(f"{'':34} {'wall':>8} {'vs containerd':>14}")
        for k, v in times.items():
            m = statistics.median(v)
            print(f"{k:34} {m:7.2f}s {m / ctr:13.2f}x")
        if not have_pigz:
            print("(unpigz not installed: apt-get install pigz for containerd's faster variant)")
    finally:
        reg.terminate()
        reg.wait()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
