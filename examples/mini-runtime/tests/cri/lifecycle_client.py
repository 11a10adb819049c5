"""A full pod lifecycle over CRI with grpcio, in phases, for tests/cri_lifecycle.rs.

Usage: lifecycle_client.py PROTO_ROOT SOCKET OUT_DIR STATE PHASE IMAGE LOG_DIR
The test restarts `serve` between the phases (gracefully, then with kill -9);
STATE (JSON) carries the ids from one phase to the next.

- start: a pod, two containers (web, worker), both started; ExecSync; the
  CRI log; container and pod stats; GetContainerEvents while it happens.
- restarted: the pod and both containers found again; ExecSync again;
  StopContainer of worker (the image's stop signal).
- killed: worker's exit code kept; the pod stopped and removed; nothing left.
Prints one JSON object with what came back.
"""
import importlib
import json
import os
import sys
import threading
import time

from grpc_tools import protoc
import grpc


def stubs(proto_root, out_dir):
    if not os.path.exists(os.path.join(out_dir, "runtime", "v1", "api_pb2.py")):
        rc = protoc.main(["protoc", f"-I{proto_root}", f"--python_out={out_dir}",
                          f"--grpc_python_out={out_dir}", "runtime/v1/api.proto"])
        if rc != 0:
            sys.exit(f"grpc_tools.protoc failed with {rc}")
        for d in ("runtime", "runtime/v1"):
            open(os.path.join(out_dir, d, "__init__.py"), "a").close()
    sys.path.insert(0, out_dir)
    return (importlib.import_module("runtime.v1.api_pb2"),
            importlib.import_module("runtime.v1.api_pb2_grpc"))


def main():
    proto_root, socket, out_dir, state_path, phase, image, log_dir = sys.argv[1:8]
    api, api_grpc = stubs(proto_root, out_dir)
    state = {}
    if os.path.exists(state_path):
        with open(state_path) as f:
            state = json.load(f)
    out = {}
    options = [("grpc.default_authority", "localhost")]
    with grpc.insecure_channel(f"unix://{socket}", options=options) as channel:
        rt = api_grpc.RuntimeServiceStub(channel)
        if phase == "start":
            pod_config = api.PodSandboxConfig(
                metadata=api.PodSandboxMetadata(name="py-pod", uid=f"py-{os.getpid()}",
                                                namespace="default", attempt=0),
                log_directory=log_dir,
                linux=api.LinuxPodSandboxConfig(
                    cgroup_parent=f"/mr-py-test-{os.getpid()}",
                    security_context=api.LinuxSandboxSecurityContext(
                        namespace_options=api.NamespaceOption(network=api.NODE))))
            state["cgroup_parent"] = pod_config.linux.cgroup_parent
            events = []
            stream = rt.GetContainerEvents(api.GetEventsRequest())

            def collect():
                try:
                    for ev in stream:
                        events.append((ev.container_id, ev.container_event_type))
                except grpc.RpcError:
                    pass
            t = threading.Thread(target=collect, daemon=True)
            t.start()
            time.sleep(0.2)
            pod = rt.RunPodSandbox(api.RunPodSandboxRequest(config=pod_config), timeout=60).pod_sandbox_id
            ids = {}
            for name, cmd in (("web", "echo hello; trap 'exit 0' QUIT; while :; do sleep 0.1; done"),
                              ("worker", "echo working; trap 'exit 7' QUIT; while :; do sleep 0.1; done")):
                cfg = api.ContainerConfig(
                    metadata=api.ContainerMetadata(name=name),
                    image=api.ImageSpec(image=image),
                    command=["/bin/sh", "-c", cmd],
                    log_path=f"{name}.log")
                ids[name] = rt.CreateContainer(api.CreateContainerRequest(
                    pod_sandbox_id=pod, config=cfg, sandbox_config=pod_config), timeout=60).container_id
                rt.StartContainer(api.StartContainerRequest(container_id=ids[name]), timeout=60)
            r = rt.ExecSync(api.ExecSyncRequest(container_id=ids["web"], cmd=["/bin/sh", "-c", "echo exec-ok; exit 4"], timeout=10), timeout=30)
            out["exec"] = [r.stdout.decode(), r.exit_code]
            st = rt.ContainerStats(api.ContainerStatsRequest(container_id=ids["web"]), timeout=30).stats
            out["web_working_set"] = st.memory.working_set_bytes.value
            ps = rt.PodSandboxStats(api.PodSandboxStatsRequest(pod_sandbox_id=pod), timeout=30).stats
            out["pod_containers"] = len(ps.linux.containers)
            listed = rt.ListContainerStats(api.ListContainerStatsRequest(), timeout=30).stats
            out["listed_stats"] = sorted(s.attributes.metadata.name for s in listed)
            deadline = time.time() + 10
            log = ""
            while time.time() < deadline:
                try:
                    with open(os.path.join(log_dir, "web.log")) as f:
                        log = f.read()
                except OSError:
                    pass
                if "hello" in log:
                    break
                time.sleep(0.05)
            out["log_tail"] = [l.split(" ", 1)[1] for l in log.splitlines()]
            want = {(ids["web"], api.CONTAINER_CREATED_EVENT), (ids["web"], api.CONTAINER_STARTED_EVENT),
                    (ids["worker"], api.CONTAINER_STARTED_EVENT), (pod, api.CONTAINER_STARTED_EVENT)}
            while time.time() < deadline and not want <= set(events):
                time.sleep(0.05)
            out["events_missing"] = [list(w) for w in want - set(events)]
            stream.cancel()
            state.update(pod=pod, **ids)
        elif phase == "restarted":
            pods = rt.ListPodSandbox(api.ListPodSandboxRequest(), timeout=30).items
            out["pods"] = [(p.id == state["pod"], p.state) for p in pods]
            ctrs = rt.ListContainers(api.ListContainersRequest(), timeout=30).containers
            out["running"] = sorted(c.metadata.name for c in ctrs if c.state == api.CONTAINER_RUNNING)
            r = rt.ExecSync(api.ExecSyncRequest(container_id=state["worker"], cmd=["/bin/sh", "-c", "echo still"], timeout=10), timeout=30)
            out["exec"] = r.stdout.decode()
            rt.StopContainer(api.StopContainerRequest(container_id=state["worker"], timeout=10), timeout=60)
            s = rt.ContainerStatus(api.ContainerStatusRequest(container_id=state["worker"]), timeout=30).status
            out["worker"] = [s.state, s.exit_code, s.reason]
        elif phase == "killed":
            s = rt.ContainerStatus(api.ContainerStatusRequest(container_id=state["worker"]), timeout=30).status
            out["worker"] = [s.state, s.exit_code, s.reason]
            s = rt.ContainerStatus(api.ContainerStatusRequest(container_id=state["web"]), timeout=30).status
            out["web"] = s.state
            rt.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=state["pod"]), timeout=60)
            s = rt.ContainerStatus(api.ContainerStatusRequest(container_id=state["web"]), timeout=30).status
            out["web_after_stop"] = [s.state, s.exit_code]
            rt.RemovePodSandbox(api.RemovePodSandboxRequest(pod_sandbox_id=state["pod"]), timeout=60)
            out["left"] = [len(rt.ListPodSandbox(api.ListPodSandboxRequest(), timeout=30).items),
                           len(rt.ListContainers(api.ListContainersRequest(), timeout=30).containers)]
        else:
            sys.exit(f"unknown phase {phase}")
    with open(state_path, "w") as f:
        json.dump(state, f)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
