#!/usr/bin/env python3
"""Unpack benchmark: `mini-runtime image unpack` against `umoci unpack` and
`tar -xzf`, on tmpfs and on disk, plus the zstd variant against
`zstd -dc | tar -x`. Whole-process wall times, peers in the same run,
reported as ratios; peak RSS from wait4.

The image is built from directories of this machine: 4 gzip layers, about
480 MB and 40,000 entries, the top layer with whiteouts and an opaque dir.

    cargo build --release -p mini-runtime
    python3 benches/image_unpack.py [--runs 3] [--fs tmpfs,disk] [--work DIR]

The first run builds the layers under --work (default
/var/tmp/mini-runtime-unpack-bench) and keeps them for later runs.
"""

import argparse
import hashlib
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

# (layer, source dirs). Debian base directories, present on every machine
# of this kind.
LAYERS = [
    ["/usr/share/man", "/usr/include"],
    ["/usr/share/locale"],
    ["/usr/lib/python3.11", "/usr/share/vim"],
]
NAME = "localhost/bench:1"


def sh(cmd, **kw):
    subprocess.run(cmd, shell=True, check=True, **kw)


def timed(argv, cwd=None, shell=False):
    """Runs a command; returns (wall seconds, peak RSS in MB of the largest
    process it waited for directly)."""
    start = time.perf_counter()
    p = subprocess.Popen(argv, cwd=cwd, shell=shell, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {argv}")
    return wall, ru.ru_maxrss / 1024


def blob(layout, data_path, media_type):
    h = hashlib.sha256()
    with open(data_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    dest = os.path.join(layout, "blobs", "sha256", digest)
    shutil.move(data_path, dest)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": os.path.getsize(dest)}


def json_blob(layout, doc, media_type):
    path = os.path.join(layout, "doc.tmp")
    with open(path, "w") as f:
        json.dump(doc, f)
    return blob(layout, path, media_type)


def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def build_layers(work):
    """Writes the four uncompressed layer tars; returns their paths."""
    tars = []
    for i, dirs in enumerate(LAYERS):
        out = os.path.join(work, f"layer{i}.tar")
        rel = [d.lstrip("/") for d in dirs]
        subprocess.run(["tar", "-C", "/", "--numeric-owner", "-cf", out] + rel, check=True)
        tars.append(out)
    # Top layer: whiteouts (a file and a whole dir), an opaque dir with new
    # content, and changed files.
    top = os.path.join(work, "top")
    os.makedirs(os.path.join(top, "usr/share/man/man1"))
    open(os.path.join(top, "usr/share/man/.wh.man3"), "w").close()
    first = sorted(os.listdir("/usr/share/man/man1"))[0]
    open(os.path.join(top, "usr/share/man/man1", ".wh." + first), "w").close()
    opq = os.path.join(top, "usr/share/vim", os.listdir("/usr/share/vim")[0])
    os.makedirs(opq, exist_ok=True)
    open(os.path.join(opq, ".wh..wh..opq"), "w").close()
    for n in range(200):
        with open(os.path.join(opq, f"new{n}.txt"), "w") as f:
            f.write("replacement content\n" * (n + 1))
    os.makedirs(os.path.join(top, "usr/include"))
    with open(os.path.join(top, "usr/include/stdio.h"), "w") as f:
        f.write("/* replaced */\n")
    out = os.path.join(work, "layer3.tar")
    subprocess.run(["tar", "-C", top, "--numeric-owner", "-cf", out, "usr"], check=True)
    shutil.rmtree(top)
    tars.append(out)
    return tars


def build_layout(work, tars, comp):
    layout = os.path.join(work, f"layout-{comp}")
    if os.path.exists(os.path.join(layout, "index.json")):
        return layout
    shutil.rmtree(layout, ignore_errors=True)
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    descs, diff_ids = [], []
    for t in tars:
        diff_ids.append(sha_file(t))
        tmp = os.path.join(layout, "layer.tmp")
        if comp == "gzip":
            sh(f"gzip -6 -c {t} > {tmp}")
            mt = "application/vnd.oci.image.layer.v1.tar+gzip"
        else:
            sh(f"zstd -q -3 -T0 -c {t} > {tmp}")
            mt = "application/vnd.oci.image.layer.v1.tar+zstd"
        descs.append(blob(layout, tmp, mt))
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdesc = json_blob(layout, config, "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cdesc, "layers": descs}
    mdesc = json_blob(layout, manifest, "application/vnd.oci.image.manifest.v1+json")
    mdesc["annotations"] = {"org.opencontainers.image.ref.name": NAME}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [mdesc]}, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    return layout


def layer_blobs(layout):
    with open(os.path.join(layout, "index.json")) as f:
        m = json.load(f)["manifests"][0]["digest"][7:]
    with open(os.path.join(layout, "blobs", "sha256", m)) as f:
        return [os.path.join(layout, "blobs", "sha256", l["digest"][7:]) for l in json.load(f)["layers"]]


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def median_run(runs, prepare, argv, **kw):
    walls, rss = [], []
    for _ in range(runs):
        prepare()
        w, r = timed(argv, **kw)
        walls.append(w)
        rss.append(r)
    return statistics.median(walls), max(rss)


def bench_fs(label, base, layout, comp, runs, results):
    store = os.path.join(base, "store")
    shutil.rmtree(store, ignore_errors=True)
    w, r = timed([BIN, "--store", store, "image", "import", layout])
    results.append((f"{label} {comp}: mini-runtime image import", w, r))
    dest = os.path.join(base, "rootfs")
    ours = median_run(runs, lambda: shutil.rmtree(dest, ignore_errors=True),
                      [BIN, "--store", store, "image", "unpack", NAME, dest])
    results.append((f"{label} {comp}: mini-runtime image unpack", *ours))
    # The one-pass pipeline: import making snapshots, then a flattened
    # unpack that reads them back (no blob decompressed twice).
    snap_store = os.path.join(base, "store-snap")
    shutil.rmtree(snap_store, ignore_errors=True)
    sw, sr = timed([BIN, "--store", snap_store, "image", "import", "--snapshots", layout])
    results.append((f"{label} {comp}: mini-runtime image import --snapshots", sw, sr))
    snap = median_run(runs, lambda: shutil.rmtree(dest, ignore_errors=True),
                      [BIN, "--store", snap_store, "image", "unpack", NAME, dest])
    results.append((f"{label} {comp}: mini-runtime image unpack (from snapshots)", *snap))
    shutil.rmtree(snap_store, ignore_errors=True)
    blobs = layer_blobs(layout)
    if comp == "gzip":
        tar_cmd = " && ".join(f"tar -xzf {b}" for b in blobs)
        peer_tar = median_run(runs, lambda: fresh(dest), tar_cmd, cwd=dest, shell=True)
        results.append((f"{label} {comp}: tar -xzf (4 layers)", *peer_tar))
        bundle = os.path.join(base, "bundle")
        umoci = median_run(runs, lambda: shutil.rmtree(bundle, ignore_errors=True),
                           ["umoci", "unpack", "--image", f"{layout}:{NAME}", bundle])
        results.append((f"{label} {comp}: umoci unpack", *umoci))
        shutil.rmtree(bundle, ignore_errors=True)
        print(f"{label}: import + unpack / tar -xzf = {(w + ours[0]) / peer_tar[0]:.2f}x, "
              f"import --snapshots + unpack / tar -xzf = {(sw + snap[0]) / peer_tar[0]:.2f}x (target <= 0.5)")
        print(f"{label}: unpack / tar -xzf = {ours[0] / peer_tar[0]:.2f}x (target <= 0.35), "
              f"unpack / umoci = {ours[0] / umoci[0]:.2f}x (target <= 0.15), peak RSS {ours[1]:.0f} MB (target < 64)")
    else:
        tar_cmd = " && ".join(f"zstd -dc {b} | tar -x" for b in blobs)
        peer = median_run(runs, lambda: fresh(dest), tar_cmd, cwd=dest, shell=True)
        results.append((f"{label} {comp}: zstd -dc | tar -x (4 layers)", *peer))
        print(f"{label}: zstd unpack / (zstd -dc | tar -x) = {ours[0] / peer[0]:.2f}x")
    uncompressed = " && ".join(f"tar -xf {t}" for t in sorted(
        os.path.join(os.path.dirname(layout), f) for f in os.listdir(os.path.dirname(layout)) if f.endswith(".tar")))
    if comp == "gzip":
        floor = median_run(runs, lambda: fresh(dest), uncompressed, cwd=dest, shell=True)
        results.append((f"{label}: tar -xf uncompressed (floor)", *floor))
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/var/tmp/mini-runtime-unpack-bench")
    ap.add_argument("--tmpfs", default="/dev/shm")
    ap.add_argument("--fs", default="tmpfs,disk", help="where to unpack: tmpfs, disk or both")
    args = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release -p mini-runtime")
    os.makedirs(args.work, exist_ok=True)
    tars = sorted(os.path.join(args.work, f) for f in os.listdir(args.work) if f.endswith(".tar"))
    if len(tars) != 4:
        tars = build_layers(args.work)
    size = sum(os.path.getsize(t) for t in tars)
    entries = sum(int(subprocess.run(f"tar -tf {t} | wc -l", shell=True, capture_output=True, text=True).stdout) for t in tars)
    print(f"image: 4 layers, {size / 1e6:.0f} MB uncompressed, {entries} entries")
    results = []
    for comp in ["gzip", "zstd"]:
        layout = build_layout(args.work, tars, comp)
        comp_size = sum(os.path.getsize(b) for b in layer_blobs(layout))
        print(f"{comp} layers: {comp_size / 1e6:.0f} MB")
        where = args.fs.split(",")
        if "tmpfs" in where:
            with tempfile.TemporaryDirectory(dir=args.tmpfs) as t:
                bench_fs("tmpfs", t, layout, comp, args.runs, results)
        if "disk" in where:
            with tempfile.TemporaryDirectory(dir=args.work) as t:
                bench_fs("disk", t, layout, comp, args.runs, results)
    print()
    print(f"{'what':<60} {'wall s':>8} {'peak RSS MB':>12}")
    for what, w, r in results:
        print(f"{what:<60} {w:8.2f} {r:12.0f}")


if __name__ == "__main__":
    main()
