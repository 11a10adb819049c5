//! `mini-runtime serve` driven over CRI by this workspace's cri-api client:
//! runtime info, the ImageService against images pushed to Debian's
//! docker-registry, errors as the CRI expects them, the socket's mode, and a
//! graceful stop on SIGTERM.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::serve::{pause_pid, pod_config, python, spawn_in};
use common::{bin_path, root_or_skip};
use cri_api::Code;
use cri_api::v1::{
    CheckpointContainerRequest, ImageFsInfoRequest, ImageServiceClient, ImageSpec,
    ImageStatusRequest, ListImagesRequest, ListPodSandboxRequest, PullImageRequest,
    RemoveImageRequest, RuntimeConfigRequest, RuntimeServiceClient, StatusRequest, VersionRequest,
};

/// A `serve` process, killed (and its socket gone) on drop.
struct Server {
    child: Child,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_in(dir.path(), extra);
    Server {
        child,
        sock: dir.path().join("cri.sock"),
        _dir: dir,
    }
}

/// The busybox image of the image tests, pushed to a loopback registry.
fn push_busybox(dir: &Path, port: u16) -> String {
    let layout = dir.join("bb");
    common::busybox_layout(&layout);
    let name = format!("127.0.0.1:{port}/serve/bb:1");
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:example.com/bb:1", layout.display()))
        .arg(format!("docker://{name}"))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    name
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

#[test]
fn serve_answers_runtime_and_image_rpcs() {
    if !root_or_skip("serve_answers_runtime_and_image_rpcs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = common::registry();
    let name = push_busybox(tmp.path(), reg.port);
    let mut server = start(&[]);
    let mode = std::fs::metadata(&server.sock)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660, "socket mode");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ch = cri_api::transport::connect(&server.sock).await.unwrap();
        let mut runtime = RuntimeServiceClient::new(ch.clone());
        let mut images = ImageServiceClient::new(ch);

        let v = runtime
            .version(VersionRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
            ("mini-runtime", "v1")
        );
        let st = runtime
            .status(StatusRequest { verbose: true })
            .await
            .unwrap()
            .into_inner();
        let conds = st.status.unwrap().conditions;
        let ready = conds.iter().find(|c| c.r#type == "RuntimeReady").unwrap();
        assert!(ready.status);
        let net = conds.iter().find(|c| c.r#type == "NetworkReady").unwrap();
        assert!(!net.status && net.message.contains("CNI"), "{net:?}");
        let rc = runtime
            .runtime_config(RuntimeConfigRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            rc.linux.unwrap().cgroup_driver,
            cri_api::v1::CgroupDriver::Cgroupfs as i32
        );
        let e = runtime
            .checkpoint_container(CheckpointContainerRequest {
                container_id: "c1".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unimplemented);
        assert!(e.message().contains("CRIU"), "{}", e.message());

        // Images: absent first, then pulled.
        let absent = images
            .image_status(ImageStatusRequest {
                image: spec(&name),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(absent.image.is_none());
        let id = images
            .pull_image(PullImageRequest {
                image: spec(&name),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .image_ref;
        assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
        let listed = images
            .list_images(ListImagesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .images;
        assert_eq!(listed.len(), 1);
        let img = &listed[0];
        assert_eq!(img.id, id);
        assert_eq!(img.repo_tags, std::slice::from_ref(&name));
        assert!(
            img.repo_digests[0].starts_with(&format!("127.0.0.1:{}/serve/bb@sha256:", reg.port))
        );
        assert_eq!(img.username, "app", "the image's User");
        assert!(img.size > 0);
        // By id, by repo digest, verbose.
        for key in [id.clone(), img.repo_digests[0].clone(), id[7..].to_string()] {
            let got = images
                .image_status(ImageStatusRequest {
                    image: spec(&key),
                    verbose: true,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                got.image.as_ref().map(|i| i.id.as_str()),
                Some(id.as_str()),
                "{key}"
            );
            assert!(got.info["info"].contains("imageSpec"), "{key}");
        }
        let bad = images
            .image_status(ImageStatusRequest {
                image: spec("Not A Name"),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument, "{}", bad.message());
        let missing = images
            .pull_image(PullImageRequest {
                image: spec(&format!("127.0.0.1:{}/serve/none:1", reg.port)),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound, "{}", missing.message());
        assert!(
            missing.message().contains("MANIFEST_UNKNOWN"),
            "{}",
            missing.message()
        );
        let empty = images
            .pull_image(PullImageRequest::default())
            .await
            .unwrap_err();
        assert_eq!(empty.code(), Code::InvalidArgument);

        let fs = images
            .image_fs_info(ImageFsInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(fs.image_filesystems[0].used_bytes.as_ref().unwrap().value > 0);

        // Remove by id, twice: the second is not an error.
        for _ in 0..2 {
            images
                .remove_image(RemoveImageRequest { image: spec(&id) })
                .await
                .unwrap();
        }
        let gone = images
            .image_status(ImageStatusRequest {
                image: spec(&name),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(gone.image.is_none());
    });

    // SIGTERM: a graceful stop that removes the socket.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let mut stopped = None;
    // The grace period for RPCs in flight is 5 s; the test's idle
    // connection is closed after it.
    for _ in 0..1200 {
        if let Ok(Some(s)) = server.child.try_wait() {
            stopped = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let status = stopped.expect("serve did not stop on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(!server.sock.exists(), "the socket outlived the server");
}

#[test]
fn serve_refuses_a_bad_config_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("serve.toml");
    std::fs::write(&cfg, "listen = \"unix:///tmp/x.sock\"\nstroe = \"/x\"\n").unwrap();
    let out = Command::new(bin_path())
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stroe") && err.contains("line 2"), "{err}");
    let out = Command::new(bin_path())
        .args(["serve", "--listen", "tcp://0.0.0.0:1234", "--config"])
        .arg(tmp.path().join("absent.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("absent.toml"), "{err}");
    let out = Command::new(bin_path())
        .args(["serve", "--listen", "tcp://0.0.0.0:1234"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no TCP"), "{err}");
}

/// The venv's Python with grpcio (made by the test command).
/// A client nobody here wrote: Python grpcio, with stubs generated from
/// cri-api's proto, drives the image manager's calls.
#[test]
fn python_grpcio_drives_the_image_service() {
    if !root_or_skip("python_grpcio_drives_the_image_service") {
        return;
    }
    let Some(python) = python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let reg = common::registry();
    let name = push_busybox(tmp.path(), reg.port);
    let server = start(&[]);
    let stubs = tmp.path().join("stubs");
    std::fs::create_dir(&stubs).unwrap();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .arg(manifest.join("tests/cri/image_client.py"))
        .arg(manifest.join("../../crates/cri-api/proto"))
        .arg(&server.sock)
        .arg(&stubs)
        .arg(&name)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python client failed: {stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON from the client ({e}): {stderr}"));
    assert_eq!(r["runtime_name"], "mini-runtime");
    assert_eq!(r["pods"], "OK", "ListPodSandbox answers");
    assert_eq!(r["conditions"]["RuntimeReady"], true);
    assert_eq!(r["absent"], false);
    let id = r["image_ref"].as_str().unwrap();
    assert!(id.starts_with("sha256:"), "{r}");
    assert_eq!(r["listed"][0]["id"], id);
    assert_eq!(r["listed"][0]["repo_tags"][0], name.as_str());
    assert_eq!(r["listed"][0]["username"], "app");
    assert_eq!(r["status_id"], id);
    assert_eq!(r["verbose"], name.as_str());
    assert!(r["fs_used"].as_u64().unwrap() > 0);
    assert_eq!(r["remove"], serde_json::json!(["OK", "OK"]));
    assert_eq!(r["after"], false);
    assert_eq!(r["containers"], "OK", "ListContainers answers");
    assert_eq!(r["stats"], "OK", "ListContainerStats answers");
    assert!(
        r["checkpoint"]
            .as_str()
            .unwrap()
            .starts_with("UNIMPLEMENTED: CheckpointContainer is not supported"),
        "{r}"
    );
    assert!(
        r["bad_name"]
            .as_str()
            .unwrap()
            .starts_with("INVALID_ARGUMENT"),
        "{r}"
    );
}

/// Pods on the host's network: a pause process per pod in its own ipc and
/// pid namespaces that outlives a `kill -9` of serve; status, filters,
/// stop and remove (both idempotent as the CRI says), and the pods this
/// version cannot run yet refused clearly.
#[test]
fn pod_sandboxes_run_stop_remove_and_survive_a_restart() {
    use cri_api::v1::{
        PodSandboxFilter, PodSandboxState, PodSandboxStateValue, PodSandboxStatusRequest,
        RemovePodSandboxRequest, RunPodSandboxRequest, StopPodSandboxRequest,
    };
    if !root_or_skip("pod_sandboxes_run_stop_remove_and_survive_a_restart") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let sock = dir.path().join("cri.sock");
    let mut child = spawn_in(dir.path(), &[]);
    // Whatever happens, no pause process or cgroup outlives the test.
    struct Cleanup(PathBuf, u32);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new(bin_path())
                .arg("--root")
                .arg(&self.0)
                .args(["list", "-q"])
                .output()
                .map(|o| {
                    for id in String::from_utf8_lossy(&o.stdout).lines() {
                        let _ = Command::new(bin_path())
                            .arg("--root")
                            .arg(&self.0)
                            .args(["delete", "-f", id])
                            .output();
                    }
                });
            if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
                for e in entries.flatten() {
                    for pod in ["a", "b", "c"] {
                        let _ = std::fs::remove_dir(
                            e.path().join(format!("mr-serve-test-{}-{pod}", self.1)),
                        );
                    }
                }
            }
        }
    }
    let _cleanup = Cleanup(run.clone(), std::process::id());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect =
        || async { RuntimeServiceClient::new(cri_api::transport::connect(&sock).await.unwrap()) };
    let (a, b) = rt.block_on(async {
        let mut c = connect().await;
        let a = c
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_config("a", &[("app", "web")])),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let b = c
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_config("b", &[("app", "db")])),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        // The same pod again: AlreadyExists.
        let dup = c
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_config("a", &[])),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(dup.code(), Code::AlreadyExists, "{}", dup.message());
        // A pod with its own network: refused, saying why.
        let mut own_net = pod_config("c", &[]);
        own_net.linux.as_mut().unwrap().security_context = None;
        let e = c
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(own_net),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.message().contains("CNI"), "{}", e.message());
        let e = c
            .run_pod_sandbox(RunPodSandboxRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);

        let st = c
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: a.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let s = st.status.unwrap();
        assert_eq!(s.state, PodSandboxState::SandboxReady as i32);
        assert_eq!(s.metadata.unwrap().name, "a");
        assert_eq!(s.labels["app"], "web");
        let web = c
            .list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(PodSandboxFilter {
                    label_selector: [("app".to_string(), "web".to_string())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(
            web.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            [a.as_str()]
        );
        let missing = c
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: "nope".into(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
        (a, b)
    });
    // The pause process: alive, in its own ipc and pid namespaces.
    let pid = pause_pid(&run, &a).expect("pod a's pause process runs");
    for ns in ["ipc", "pid"] {
        let mine = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let its = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(mine, its, "{ns} namespace shared with the host");
    }
    let net_mine = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
        net_mine
    );

    // kill -9 of serve: the pods go on, and a new serve finds them.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        pause_pid(&run, &a),
        Some(pid),
        "the pause process died with serve"
    );
    let _ = std::fs::remove_file(&sock);
    let mut child = spawn_in(dir.path(), &[]);
    rt.block_on(async {
        let mut c = connect().await;
        let ready = c
            .list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(PodSandboxFilter {
                    state: Some(PodSandboxStateValue {
                        state: PodSandboxState::SandboxReady as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(ready.len(), 2, "{ready:?}");
        // Stop twice, then NOTREADY; remove twice; stop of a removed pod: NotFound.
        for _ in 0..2 {
            c.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: a.clone(),
            })
            .await
            .unwrap();
        }
        let s = c
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: a.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(s.state, PodSandboxState::SandboxNotready as i32);
        for id in [&a, &a, &b] {
            c.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .unwrap();
        }
        // Stopping a pod that is gone is not an error (critest's
        // idempotence spec); an empty id is.
        c.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: a.clone(),
        })
        .await
        .unwrap();
        let e = c
            .stop_pod_sandbox(StopPodSandboxRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let left = c
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        assert!(left.is_empty(), "{left:?}");
    });
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the pause process outlived its pod"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// After a host reboot (every process killed, `/run` wiped; the persistent
/// state dir kept) `serve` starts cleanly and reports the old pods NOTREADY,
/// in lists and streams, so that the kubelet removes them.
#[test]
fn pods_after_a_reboot_are_notready_and_removable() {
    use cri_api::v1::{
        PodSandboxState, RemovePodSandboxRequest, RunPodSandboxRequest, StreamPodSandboxesRequest,
    };
    if !root_or_skip("pods_after_a_reboot_are_notready_and_removable") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let sock = dir.path().join("cri.sock");
    let cgroup = format!("mr-serve-test-{}-r", std::process::id());
    let mut child = spawn_in(dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect =
        || async { RuntimeServiceClient::new(cri_api::transport::connect(&sock).await.unwrap()) };
    let id = rt.block_on(async {
        connect()
            .await
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_config("r", &[])),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id
    });
    // The "reboot": serve, the pause process and its monitor killed, /run wiped.
    let pid = pause_pid(&run, &id).expect("the pause process runs");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit(')').next().unwrap();
    let monitor: i32 = after.split_whitespace().nth(1).unwrap().parse().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    for p in [pid, monitor] {
        // SAFETY: signalling processes this test's server started.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    for _ in 0..400 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::remove_dir_all(&run).unwrap();
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            let base = e.path().join(&cgroup);
            if let Ok(kids) = std::fs::read_dir(&base) {
                for k in kids.flatten() {
                    let _ = std::fs::remove_dir(k.path());
                }
            }
            let _ = std::fs::remove_dir(&base);
        }
    }
    let _ = std::fs::remove_file(&sock);
    let mut child = spawn_in(dir.path(), &[]);
    rt.block_on(async {
        let mut c = connect().await;
        let items = c
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].id, id);
        assert_eq!(items[0].state, PodSandboxState::SandboxNotready as i32);
        let mut stream = c
            .stream_pod_sandboxes(StreamPodSandboxesRequest::default())
            .await
            .unwrap()
            .into_inner();
        let first = stream.message().await.unwrap().expect("one message");
        assert_eq!(first.pod_sandboxes.len(), 1);
        c.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
        let items = c
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        assert!(items.is_empty());
    });
    child.kill().unwrap();
    child.wait().unwrap();
}

/// critest's Image Manager images, offline: busybox images with critest's
/// names and users, pushed to a loopback registry that the registry config
/// names as gcr.io's mirror. PullImage by the gcr.io name, ImageStatus with
/// the image's user, and containers that run as it.
#[test]
fn critest_images_through_a_registry_mirror() {
    use cri_api::v1::{RunPodSandboxRequest, StartContainerRequest};
    if !root_or_skip("critest_images_through_a_registry_mirror") {
        return;
    }
    let reg = common::registry();
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let _cleanup = common::serve::Cleanup {
        dir: dir.path().to_path_buf(),
        cgroups: vec![format!("/mr-serve-test-{pid}-ci")],
    };
    let images = [
        ("test-image-user-uid", "1002", (1002, 0)),
        ("test-image-predefined-group", "1000:50000", (1000, 50000)),
    ];
    for (name, user, _) in images {
        let layout = common::busybox_layout_with(
            dir.path(),
            name,
            "example.com/x:1",
            serde_json::json!({"User": user, "Cmd": ["/bin/sh"]}),
        )
        .expect("busybox-static");
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:example.com/x:1", layout.display()))
            .arg(format!(
                "docker://127.0.0.1:{}/k8s-staging-cri-tools/{name}:latest",
                reg.port
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let regconf = dir.path().join("registries.toml");
    std::fs::write(
        &regconf,
        format!(
            "[registries.\"gcr.io\"]\nmirrors = [\"http://127.0.0.1:{}\"]\n",
            reg.port
        ),
    )
    .unwrap();
    let sock = dir.path().join("cri.sock");
    let mut child = spawn_in(
        dir.path(),
        &["--registry-config", regconf.to_str().unwrap()],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ch = cri_api::transport::connect(&sock).await.unwrap();
        let mut img = ImageServiceClient::new(ch.clone());
        let mut c = RuntimeServiceClient::new(ch);
        let mut pod_cfg = pod_config("ci", &[]);
        pod_cfg.log_directory = dir.path().join("logs").display().to_string();
        let pod = c
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_cfg.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        for (name, _, (uid, gid)) in images {
            let full = format!("gcr.io/k8s-staging-cri-tools/{name}:latest");
            let st = img
                .image_status(ImageStatusRequest {
                    image: spec(&full),
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(st.image.is_none(), "{full} is not there before the pull");
            img.pull_image(PullImageRequest {
                image: spec(&full),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("PullImage {full}: {}", e.message()));
            let st = img
                .image_status(ImageStatusRequest {
                    image: spec(&full),
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner()
                .image
                .expect("pulled");
            assert_eq!(st.uid.map(|u| u.value), Some(uid));
            assert!(st.repo_tags.contains(&full), "{:?}", st.repo_tags);
            let id = common::serve::create(
                &mut c,
                &pod,
                common::serve::config(name, &full, &["/bin/sh", "-c", "sleep 60"]),
                &pod_cfg,
            )
            .await
            .unwrap_or_else(|e| panic!("CreateContainer {full}: {}", e.message()));
            c.start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
            let r = common::serve::exec(&mut c, &id, &["/bin/sh", "-c", "id -u; id -g"], 10)
                .await
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&r.stdout),
                format!("{uid}\n{gid}\n"),
                "{full}"
            );
        }
        c.remove_pod_sandbox(cri_api::v1::RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
    });
    child.kill().unwrap();
    child.wait().unwrap();
}
