//! `mini-runtime serve` driven over CRI by this workspace's cri-api client:
//! runtime info, the ImageService against images pushed to Debian's
//! docker-registry, errors as the CRI expects them, the socket's mode, and a
//! graceful stop on SIGTERM.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{bin_path, root_or_skip};
use cri_api::Code;
use cri_api::v1::{
    ImageFsInfoRequest, ImageServiceClient, ImageSpec, ImageStatusRequest, ListImagesRequest,
    ListPodSandboxRequest, PullImageRequest, RemoveImageRequest, RuntimeConfigRequest,
    RuntimeServiceClient, StatusRequest, VersionRequest,
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
    let sock = dir.path().join("cri.sock");
    let child = Command::new(bin_path())
        .arg("--store")
        .arg(dir.path().join("store"))
        .arg("--root")
        .arg(dir.path().join("run"))
        .arg("serve")
        .arg("--listen")
        .arg(format!("unix://{}", sock.display()))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mini-runtime serve");
    let mut s = Server {
        child,
        sock,
        _dir: dir,
    };
    for _ in 0..400 {
        if s.sock.exists() {
            return s;
        }
        if let Ok(Some(status)) = s.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = s.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("serve exited ({status}): {err}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("serve did not create {}", s.sock.display());
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
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unimplemented);
        assert!(e.message().contains("ListPodSandbox"), "{}", e.message());

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
fn python() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "python with grpcio not found at {}: the test command creates it",
        p.display()
    );
    eprintln!("skipping: no venv at {}", p.display());
    None
}

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
    assert!(
        r["pods"]
            .as_str()
            .unwrap()
            .starts_with("UNIMPLEMENTED: runtime.v1.RuntimeService/ListPodSandbox"),
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
