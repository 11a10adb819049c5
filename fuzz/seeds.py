#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/): small
inputs of the shapes the test suites use. Run from the repository root after
`bash scripts/setup.sh` (the SPDY seeds are what npm's spdy-transport sends,
recorded by a stand-in server). The corpora are committed; rerun this only
to change them."""

import gzip
import hashlib
import io
import json
import os
import socket
import subprocess
import tarfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def tar_of(entries):
    """entries: (name, kind, payload) with kind file/dir/symlink/link."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, payload in entries:
            i = tarfile.TarInfo(name)
            if kind == "dir":
                i.type, i.mode = tarfile.DIRTYPE, 0o755
                t.addfile(i)
            elif kind == "symlink":
                i.type, i.linkname = tarfile.SYMTYPE, payload
                t.addfile(i)
            elif kind == "link":
                i.type, i.linkname = tarfile.LNKTYPE, payload
                t.addfile(i)
            else:
                data = payload.encode()
                i.size, i.mode = len(data), 0o644
                t.addfile(i, io.BytesIO(data))
    return b.getvalue()


def layers():
    plain = tar_of([("etc", "dir", None), ("etc/hostname", "file", "x\n"),
                    ("bin", "dir", None), ("bin/sh", "symlink", "busybox"),
                    ("bin/busybox", "file", "#!"), ("bin/ash", "link", "bin/busybox")])
    put("layer_apply", "plain.tar", plain)
    put("layer_apply", "whiteouts.tar", tar_of([
        ("etc", "dir", None), ("etc/.wh.hostname", "file", ""), ("var", "dir", None),
        ("var/.wh..wh..opq", "file", ""), ("var/new", "file", "n")]))
    put("layer_apply", "escapes.tar", tar_of([
        ("../outside/file", "file", "evil"), ("up", "symlink", "../outside"),
        ("up/file", "file", "evil"), ("abs", "symlink", "/etc"), ("abs/passwd", "file", "x"),
        ("hl", "link", "../outside/file")]))
    put("layer_apply", "plain.tar.gz", gzip.compress(plain, mtime=0))
    return plain


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def images(layer):
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                      "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": sha(cfg), "size": len(cfg)},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                  "digest": sha(layer), "size": len(layer)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(man),
        "size": len(man), "annotations": {"org.opencontainers.image.ref.name": "example.com/x:1"}}]}).encode()
    files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)]
    files += [("blobs/sha256/" + sha(b)[7:], b) for b in (cfg, man, layer)]
    put("image_import", "oci-layout.tar", tar_bytes(files))
    docker = json.dumps([{"Config": "config.json", "RepoTags": ["example.com/x:1"],
                          "Layers": ["layer.tar"]}]).encode()
    put("image_import", "docker-save.tar", tar_bytes(
        [("manifest.json", docker), ("config.json", cfg), ("layer.tar", layer)]))
    put("image_import", "index-only", b"\x00" + index)


def tar_bytes(files):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as t:
        for name, data in files:
            i = tarfile.TarInfo(name)
            i.size = len(data)
            t.addfile(i, io.BytesIO(data))
    return b.getvalue()


def configs():
    cfg = {"ociVersion": "1.2.0",
           "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
                       "env": ["PATH=/bin"], "cwd": "/",
                       "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                                        "permitted": ["CAP_KILL"]},
                       "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]},
           "root": {"path": "rootfs", "readonly": True}, "hostname": "c",
           "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                      {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "size=1m"]}],
           "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}],
                     "resources": {"memory": {"limit": 10000000}, "pids": {"limit": 10}},
                     "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
                     "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                         {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}}}
    # The target's first byte: even, the rest is the file; odd, edits of
    # its own valid config.
    put("config_json", "full.json", b"\x00" + json.dumps(cfg, indent=1).encode())
    put("config_json", "minimal.json", b"\x00" + json.dumps({"ociVersion": "1.0.2", "process": {
        "user": {"uid": 0, "gid": 0}, "args": ["true"], "cwd": "/"}, "root": {"path": "rootfs"}}).encode())
    put("config_json", "edit-process", b"\x01\x05\x01\x02")
    put("config_json", "edit-linux", b"\x01\x09\x03\x02\x06")


def registry():
    put("registry_replies", "bearer", 'Bearer realm="https://auth.example.com/token",'
        'service="registry.example.com",scope="repository:library/busybox:pull"')
    put("registry_replies", "basic", 'Basic realm="registry"')
    put("registry_replies", "errors", json.dumps({"errors": [
        {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {"Tag": "x"}}]}))
    put("registry_replies", "reference", "registry.example.com:5000/ns/name:tag@sha256:" + "a" * 64)


def cni():
    put("cni_result", "result.json", json.dumps({"cniVersion": "1.0.0", "interfaces": [
        {"name": "eth0", "mac": "0a:58:0a:58:00:02", "sandbox": "/var/run/netns/x"}],
        "ips": [{"address": "10.88.0.2/16", "gateway": "10.88.0.1", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.88.0.1"]}}))
    put("cni_result", "error.json", json.dumps({"cniVersion": "1.0.0", "code": 7,
                                                "msg": "failed", "details": "x"}))
    put("cni_result", "conflist.json", json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "bridge", "ipam": {"type": "host-local"}}, {"type": "portmap",
                                                             "capabilities": {"portMappings": True}}]}))


def record_spdy(script, args):
    """What a spdy-transport client sends after the upgrade."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = []

    def serve():
        c, _ = srv.accept()
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += c.recv(4096)
        proto = "portforward.k8s.io" if "portforward" in script else "v4.channel.k8s.io"
        c.sendall(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\n"
                  f"X-Stream-Protocol-Version: {proto}\r\n\r\n".encode())
        c.settimeout(1.5)
        data = buf.split(b"\r\n\r\n", 1)[1]
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                data += d
        except socket.timeout:
            pass
        got.append(data)
        c.close()

    t = threading.Thread(target=serve)
    t.start()
    env = dict(os.environ, NODE_PATH=os.path.join(ROOT, ".node", "node_modules"))
    p = subprocess.Popen(["node", os.path.join(ROOT, "examples/mini-runtime/tests/cri", script),
                          f"http://127.0.0.1:{port}/x/t"] + args, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t.join()
    p.kill()
    return got[0]


def streams():
    put("stream_frames", "spdy-exec", b"\x00" + record_spdy("spdy_client.js", ["hello\n", "80x24", "tty"]))
    put("stream_frames", "spdy-portforward", b"\x00" + record_spdy("spdy_portforward.js", ["spdy", "80=GET /"]))
    put("stream_frames", "channel-stdin", b"\x01" + b"\x00hello")
    put("stream_frames", "channel-resize", b"\x01" + b'\x04{"Width":80,"Height":24}')
    put("stream_frames", "channel-base64", b"\x01" + b"0aGVsbG8=")
    put("stream_frames", "query", b"\x01" + b"/portforward/t?port=80&port=443")


def cri_api():
    """The CRI's messages, compiled from this workspace's proto (needs the
    test command's .venv, which has grpcio-tools)."""
    import importlib
    import sys
    import tempfile
    from grpc_tools import protoc

    out = tempfile.mkdtemp()
    rc = protoc.main(["protoc", f"-I{ROOT}/crates/cri-api/proto", f"--python_out={out}",
                      "runtime/v1/api.proto"])
    assert rc == 0, "grpc_tools.protoc failed"
    for d in ("runtime", "runtime/v1"):
        open(os.path.join(out, d, "__init__.py"), "a").close()
    sys.path.insert(0, out)
    return importlib.import_module("runtime.v1.api_pb2")


# The selector byte of each request type in fuzz_targets/cri_requests.rs.
CRI_SELECTORS = {
    "RunPodSandboxRequest": 1, "StopPodSandboxRequest": 2, "CreateContainerRequest": 7,
    "StopContainerRequest": 9, "ListContainersRequest": 11,
    "UpdateContainerResourcesRequest": 14, "ExecSyncRequest": 16, "ExecRequest": 17,
    "AttachRequest": 18, "PortForwardRequest": 19, "UpdateRuntimeConfigRequest": 26,
    "UpdatePodSandboxResourcesRequest": 34, "PullImageRequest": 38, "RemoveImageRequest": 39,
}


def cri():
    """CRI requests as the kubelet and crictl send them (valid, so that
    mutations start deep), and a few of the ways they go wrong."""
    from google.protobuf import json_format

    api = cri_api()
    pod = {
        "metadata": {"name": "web", "uid": "7f0c", "namespace": "default", "attempt": 1},
        "hostname": "web", "logDirectory": "/var/log/pods/default_web_7f0c",
        "dnsConfig": {"servers": ["10.96.0.10"], "searches": ["default.svc.cluster.local"],
                      "options": ["ndots:5"]},
        "portMappings": [{"protocol": "TCP", "containerPort": 80, "hostPort": 8080},
                         {"protocol": "UDP", "containerPort": 53, "hostIp": "127.0.0.1"}],
        "labels": {"app": "web"}, "annotations": {"kubernetes.io/config.source": "api"},
        "linux": {
            "cgroupParent": "/kubepods/besteffort/pod7f0c",
            "sysctls": {"net.ipv4.ip_unprivileged_port_start": "0"},
            "securityContext": {
                "namespaceOptions": {"network": "POD", "pid": "CONTAINER", "ipc": "POD"},
                "runAsUser": {"value": "1000"}, "runAsGroup": {"value": "1000"},
                "supplementalGroups": ["1000", "2000"],
                "seccomp": {"profileType": "RuntimeDefault"},
            },
            "overhead": {"cpuShares": "10"},
            "resources": {"cpuPeriod": "100000", "cpuQuota": "50000",
                          "memoryLimitInBytes": "268435456"},
        },
    }
    userns_pod = json.loads(json.dumps(pod))
    userns_pod["linux"]["securityContext"]["namespaceOptions"]["usernsOptions"] = {
        "mode": "POD", "uids": [{"hostId": 65536, "containerId": 0, "length": 65536}],
        "gids": [{"hostId": 65536, "containerId": 0, "length": 65536}]}
    ctr = {
        "metadata": {"name": "app", "attempt": 0},
        "image": {"image": "docker.io/library/busybox:1.36"},
        "command": ["/bin/sh", "-c"], "args": ["echo hi; sleep 3600"], "workingDir": "/srv",
        "envs": [{"key": "PATH", "value": "L3Vzci9iaW46L2Jpbg=="}, {"key": "EMPTY"}],
        "mounts": [{"containerPath": "/data", "hostPath": "/var/lib/data", "readonly": True,
                    "propagation": "PROPAGATION_HOST_TO_CONTAINER"},
                   {"containerPath": "/vol", "image": {"image": "example.com/data:1"},
                    "imageSubPath": "sub", "readonly": True, "recursiveReadOnly": True}],
        "devices": [{"containerPath": "/dev/fuse", "hostPath": "/dev/fuse", "permissions": "rw"}],
        "labels": {"io.kubernetes.container.name": "app"},
        "logPath": "app/0.log", "stdin": True, "stdinOnce": True, "tty": False,
        "linux": {
            "resources": {"cpuShares": "512", "memoryLimitInBytes": "134217728",
                          "oomScoreAdj": "999", "cpusetCpus": "0-1", "unified": {"memory.high": "max"},
                          "hugepageLimits": [{"pageSize": "2MB", "limit": "0"}]},
            "securityContext": {
                "capabilities": {"addCapabilities": ["NET_ADMIN"], "dropCapabilities": ["ALL"],
                                 "addAmbientCapabilities": ["CAP_NET_BIND_SERVICE"]},
                "namespaceOptions": {"pid": "TARGET", "targetId": "a1b2"},
                "runAsUsername": "nobody", "runAsGroup": {"value": "65534"},
                "noNewPrivs": True, "readonlyRootfs": True,
                "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
                "apparmor": {"profileType": "Localhost", "localhostRef": "k8s-default"},
                "seccompProfilePath": "localhost//var/lib/kubelet/seccomp/audit.json",
            },
        },
        "CDIDevices": [{"name": "vendor.com/gpu=0"}],
        "stopSignal": "SIGQUIT",
    }
    bad_ctr = json.loads(json.dumps(ctr))
    bad_ctr["linux"]["securityContext"]["runAsUser"] = {"value": "-1"}
    bad_ctr["mounts"][0]["hostPath"] = "relative/path"
    requests = [
        ("pod", "RunPodSandboxRequest", {"config": pod, "runtimeHandler": "runc"}),
        ("pod-userns", "RunPodSandboxRequest", {"config": userns_pod}),
        ("pod-empty", "RunPodSandboxRequest", {"config": {"metadata": {"name": "x"}}}),
        ("ctr", "CreateContainerRequest",
         {"podSandboxId": "5f3e", "config": ctr, "sandboxConfig": pod}),
        ("ctr-bad", "CreateContainerRequest", {"podSandboxId": "5f3e", "config": bad_ctr}),
        ("stop-ctr", "StopContainerRequest", {"containerId": "a1b2", "timeout": "30"}),
        ("stop-pod", "StopPodSandboxRequest", {"podSandboxId": "5f3e"}),
        ("list", "ListContainersRequest",
         {"filter": {"state": {"state": "CONTAINER_RUNNING"}, "podSandboxId": "5f3e",
                     "labelSelector": {"app": "web"}}}),
        ("update", "UpdateContainerResourcesRequest",
         {"containerId": "a1b2", "linux": {"cpuQuota": "20000", "cpuPeriod": "100000"}}),
        ("update-pod", "UpdatePodSandboxResourcesRequest",
         {"podSandboxId": "5f3e", "resources": {"memoryLimitInBytes": "1073741824"}}),
        ("execsync", "ExecSyncRequest", {"containerId": "a1b2", "cmd": ["ls", "/"], "timeout": "5"}),
        ("exec", "ExecRequest",
         {"containerId": "a1b2", "cmd": ["sh"], "tty": True, "stdin": True, "stdout": True}),
        ("attach", "AttachRequest", {"containerId": "a1b2", "stdout": True, "stderr": True}),
        ("portforward", "PortForwardRequest", {"podSandboxId": "5f3e", "port": [80, 443]}),
        ("runtime-config", "UpdateRuntimeConfigRequest",
         {"runtimeConfig": {"networkConfig": {"podCidr": "10.244.0.0/24,fd00::/64"}}}),
        ("pull", "PullImageRequest",
         {"image": {"image": "registry.example.com/app:1"},
          "auth": {"username": "u", "password": "p", "serverAddress": "registry.example.com"},
          "sandboxConfig": pod}),
        ("rmi", "RemoveImageRequest", {"image": {"image": "sha256:" + "a" * 64}}),
    ]
    for name, kind, body in requests:
        msg = json_format.ParseDict(body, getattr(api, kind)())
        put("cri_requests", name, bytes([CRI_SELECTORS[kind]]) + msg.SerializeToString())


def image_documents():
    """What fuzz_targets/image_documents.rs wraps around its document, built
    the same way, and a valid document for each place."""
    manifest_t = "application/vnd.oci.image.manifest.v1+json"

    def desc(media_type, body):
        return '{"mediaType":"%s","digest":"sha256:%s","size":%d}' % (
            media_type, hashlib.sha256(body).hexdigest(), len(body))

    layer = b"\0" * 1024
    config = ('{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},'
              '"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}'
              % hashlib.sha256(layer).hexdigest()).encode()

    def manifest_for(cfg):
        return ('{"schemaVersion":2,"mediaType":"%s","config":%s,"layers":[%s]}' % (
            manifest_t, desc("application/vnd.oci.image.config.v1+json", cfg),
            desc("application/vnd.oci.image.layer.v1.tar", layer))).encode()

    manifest = manifest_for(config)
    user_config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"User": "1000:1000", "Env": ["PATH=/bin", "A=b"], "Entrypoint": ["/app"],
                   "Cmd": ["--serve"], "WorkingDir": "/srv", "StopSignal": "SIGQUIT",
                   "Volumes": {"/data": {}}, "ExposedPorts": {"80/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
        "history": [{"created_by": "fuzz"}]}).encode()
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [json.loads(desc(manifest_t, manifest)) | {
                            "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    docker = json.dumps([{"Config": hashlib.sha256(config).hexdigest() + ".json",
                          "RepoTags": ["example.com/fuzz:docker"],
                          "Layers": ["layer/layer.tar"]}]).encode()
    put("image_documents", "manifest", b"\x00" + manifest)
    put("image_documents", "config", b"\x01" + config)
    put("image_documents", "config-user", b"\x01" + user_config)
    put("image_documents", "index", b"\x02" + index)
    put("image_documents", "docker-manifest", b"\x03" + docker)


if __name__ == "__main__":
    images(layers())
    configs()
    registry()
    cni()
    streams()
    cri()
    image_documents()
