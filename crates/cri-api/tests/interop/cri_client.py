"""A CRI client built with grpcio from our proto, used by tests/python_interop.rs.

Usage: cri_client.py PROTO_ROOT SOCKET OUT_DIR
Generates Python stubs for runtime/v1/api.proto into OUT_DIR, calls Version and
ListContainers on the socket, sends a raw undecodable request, and prints one JSON
object with what came back.
"""
import importlib
import json
import os
import sys

from grpc_tools import protoc
import grpc


def main():
    proto_root, socket, out_dir = sys.argv[1:4]
    rc = protoc.main([
        "protoc",
        f"-I{proto_root}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        "runtime/v1/api.proto",
    ])
    if rc != 0:
        sys.exit(f"grpc_tools.protoc failed with {rc}")
    for d in ("runtime", "runtime/v1"):
        open(os.path.join(out_dir, d, "__init__.py"), "a").close()
    sys.path.insert(0, out_dir)
    api = importlib.import_module("runtime.v1.api_pb2")
    api_grpc = importlib.import_module("runtime.v1.api_pb2_grpc")

    # grpcio >= 1.57 would send the percent-encoded socket path as :authority,
    # which hyper's HTTP/2 server rejects as malformed; kubelet and crictl
    # (grpc-go) send "localhost", and so does this client.
    options = [("grpc.default_authority", "localhost")]
    with grpc.insecure_channel(f"unix://{socket}", options=options) as channel:
        runtime = api_grpc.RuntimeServiceStub(channel)
        version = runtime.Version(api.VersionRequest(version="v1"), timeout=30)
        listed = runtime.ListContainers(
            api.ListContainersRequest(filter=api.ContainerFilter(id="c0001")), timeout=30
        )
        everything = runtime.ListContainers(api.ListContainersRequest(), timeout=30)
        garbage = channel.unary_unary(
            "/runtime.v1.RuntimeService/ListContainers",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        try:
            garbage(b"\xff\xff\xff\xff", timeout=30)
            garbage_code = "OK"
        except grpc.RpcError as e:
            garbage_code = e.code().name
        try:
            runtime.ExecSync(api.ExecSyncRequest(container_id="x"), timeout=30)
            exec_code = "OK"
        except grpc.RpcError as e:
            exec_code = e.code().name

    print(json.dumps({
        "runtime_name": version.runtime_name,
        "runtime_version": version.runtime_version,
        "version": version.version,
        "filtered": [
            {"id": c.id, "name": c.metadata.name, "state": api.ContainerState.Name(c.state),
             "labels": dict(c.labels)}
            for c in listed.containers
        ],
        "count": len(everything.containers),
        "garbage": garbage_code,
        "exec_sync": exec_code,
    }))


if __name__ == "__main__":
    main()
