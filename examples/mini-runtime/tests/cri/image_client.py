"""A CRI client made with grpcio from cri-api's proto, for tests/serve.rs.

Usage: image_client.py PROTO_ROOT SOCKET OUT_DIR IMAGE
Generates the stubs into OUT_DIR, then drives `mini-runtime serve` as the
kubelet's image manager does: Version and Status, ImageStatus of an absent
image, PullImage, ListImages, ImageStatus (verbose) by the returned id,
ImageFsInfo, RemoveImage twice, ListPodSandbox, and one RPC serve does not
implement yet.
Prints one JSON object with what came back.
"""
import importlib
import json
import os
import sys

from grpc_tools import protoc
import grpc


def code_of(call):
    try:
        call()
        return "OK"
    except grpc.RpcError as e:
        return f"{e.code().name}: {e.details()}"


def main():
    proto_root, socket, out_dir, image = sys.argv[1:5]
    rc = protoc.main(["protoc", f"-I{proto_root}", f"--python_out={out_dir}",
                      f"--grpc_python_out={out_dir}", "runtime/v1/api.proto"])
    if rc != 0:
        sys.exit(f"grpc_tools.protoc failed with {rc}")
    for d in ("runtime", "runtime/v1"):
        open(os.path.join(out_dir, d, "__init__.py"), "a").close()
    sys.path.insert(0, out_dir)
    api = importlib.import_module("runtime.v1.api_pb2")
    api_grpc = importlib.import_module("runtime.v1.api_pb2_grpc")
    # As kubelet and crictl (grpc-go) do.
    options = [("grpc.default_authority", "localhost")]
    out = {}
    with grpc.insecure_channel(f"unix://{socket}", options=options) as channel:
        runtime = api_grpc.RuntimeServiceStub(channel)
        images = api_grpc.ImageServiceStub(channel)
        v = runtime.Version(api.VersionRequest(version="v1"), timeout=30)
        out["runtime_name"] = v.runtime_name
        st = runtime.Status(api.StatusRequest(), timeout=30)
        out["conditions"] = {c.type: c.status for c in st.status.conditions}
        spec = api.ImageSpec(image=image)
        out["absent"] = images.ImageStatus(api.ImageStatusRequest(image=spec), timeout=30).HasField("image")
        ref = images.PullImage(api.PullImageRequest(image=spec), timeout=120).image_ref
        out["image_ref"] = ref
        listed = images.ListImages(api.ListImagesRequest(), timeout=30).images
        out["listed"] = [{"id": i.id, "repo_tags": list(i.repo_tags), "username": i.username} for i in listed]
        status = images.ImageStatus(api.ImageStatusRequest(image=api.ImageSpec(image=ref), verbose=True), timeout=30)
        out["status_id"] = status.image.id
        out["verbose"] = json.loads(status.info["info"])["name"]
        fs = images.ImageFsInfo(api.ImageFsInfoRequest(), timeout=30)
        out["fs_used"] = fs.image_filesystems[0].used_bytes.value
        out["remove"] = [code_of(lambda: images.RemoveImage(api.RemoveImageRequest(image=api.ImageSpec(image=ref)), timeout=30)) for _ in range(2)]
        out["after"] = images.ImageStatus(api.ImageStatusRequest(image=spec), timeout=30).HasField("image")
        out["pods"] = code_of(lambda: runtime.ListPodSandbox(api.ListPodSandboxRequest(), timeout=30))
        out["containers"] = code_of(lambda: runtime.ListContainers(api.ListContainersRequest(), timeout=30))
        out["stats"] = code_of(lambda: runtime.ListContainerStats(api.ListContainerStatsRequest(), timeout=30))
        out["checkpoint"] = code_of(lambda: runtime.CheckpointContainer(api.CheckpointContainerRequest(container_id="x"), timeout=30))
        out["bad_name"] = code_of(lambda: images.PullImage(api.PullImageRequest(image=api.ImageSpec(image="Bad Name")), timeout=30))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
