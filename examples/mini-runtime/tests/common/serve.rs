//! Helpers for the tests of `serve`: a server with everything in a temp
//! dir, pod configs, and the pause process of a pod.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cri_api::transport::Channel;
use cri_api::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ImageSpec, RuntimeServiceClient,
};

use super::bin_path;

/// Starts `serve` with everything under `dir` (store, runtime root, state
/// dir, `cri.sock`, its log in `serve.log`) and waits until it accepts.
pub fn spawn_in(dir: &Path, extra: &[&str]) -> Child {
    let sock = dir.join("cri.sock");
    let log = dir.join("serve.log");
    let mut child = Command::new(bin_path())
        .arg("--store")
        .arg(dir.join("store"))
        .arg("--root")
        .arg(dir.join("run"))
        .arg("serve")
        .arg("--listen")
        .arg(format!("unix://{}", sock.display()))
        .arg("--state-dir")
        .arg(dir.join("cri"))
        // Pod networks only as the test configures them, with Debian's plugins.
        .arg("--cni-conf-dir")
        .arg(dir.join("net.d"))
        .args(["--cni-bin-dir", "/usr/lib/cni"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("mini-runtime serve");
    for _ in 0..400 {
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("serve exited ({status}): {err}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("serve did not listen on {}", sock.display());
}

/// A pod on the host's network, with its own cgroup parent.
pub fn pod_config(name: &str, labels: &[(&str, &str)]) -> cri_api::v1::PodSandboxConfig {
    use cri_api::v1::{
        LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
        PodSandboxConfig, PodSandboxMetadata,
    };
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/mr-serve-test-{}-{name}", std::process::id()),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pause process of a pod, found through the server's oci-runtime state.
pub fn pause_pid(root: &Path, id: &str) -> Option<i32> {
    let out = Command::new(bin_path())
        .arg("--root")
        .arg(root)
        .args(["state", id])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    (v["status"] == "running").then(|| v["pid"].as_i64().map(|p| p as i32))?
}

/// Imports the busybox test image (`example.com/bb:1`) into the store of a
/// server whose files are under `dir`, with its snapshots.
pub fn import_busybox(dir: &Path) -> String {
    let layout = super::busybox_layout_in(dir).expect("busybox-static is installed");
    let out = Command::new(bin_path())
        .arg("--store")
        .arg(dir.join("store"))
        .args(["image", "import", "--snapshots"])
        .arg(&layout)
        .output()
        .unwrap();
    assert!(out.status.success(), "import: {}", super::stderr(&out));
    "example.com/bb:1".into()
}

/// Whatever a test leaves, no container, mount or cgroup of the server
/// under `dir` outlives it: every container force-deleted, every mount
/// under `dir` detached, the pods' cgroup parents removed.
pub struct Cleanup {
    pub dir: std::path::PathBuf,
    pub cgroups: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let root = self.dir.join("run");
        if let Ok(o) = Command::new(bin_path())
            .arg("--root")
            .arg(&root)
            .args(["list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&o.stdout).lines() {
                let _ = Command::new(bin_path())
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "-f", id])
                    .output();
            }
        }
        super::unmount_under(&self.dir);
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                for cg in &self.cgroups {
                    let base = e.path().join(cg.trim_start_matches('/'));
                    if let Ok(kids) = std::fs::read_dir(&base) {
                        for k in kids.flatten() {
                            let _ = std::fs::remove_dir(k.path());
                        }
                    }
                    let _ = std::fs::remove_dir(&base);
                }
            }
        }
    }
}

// CRI client helpers.

pub fn config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        labels: [("name".to_string(), name.to_string())].into(),
        ..Default::default()
    }
}

pub async fn create(
    c: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    cfg: ContainerConfig,
    pod_cfg: &cri_api::v1::PodSandboxConfig,
) -> Result<String, cri_api::Status> {
    c.create_container(CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(cfg),
        sandbox_config: Some(pod_cfg.clone()),
    })
    .await
    .map(|r| r.into_inner().container_id)
}

pub async fn status(
    c: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> cri_api::v1::ContainerStatus {
    c.container_status(ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .unwrap()
}

/// Waits (bounded) until container `id` has exited; its status then.
pub async fn exited(
    c: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> cri_api::v1::ContainerStatus {
    for _ in 0..400 {
        let s = status(c, id).await;
        if s.state == ContainerState::ContainerExited as i32 {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("container {id} did not exit");
}

pub async fn exec(
    c: &mut RuntimeServiceClient<Channel>,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<cri_api::v1::ExecSyncResponse, cri_api::Status> {
    c.exec_sync(ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout,
    })
    .await
    .map(|r| r.into_inner())
}

/// The CRI log lines' stream and text, without their timestamps.
pub fn log_lines(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let (_time, stream, tag, text) = (f.next(), f.next(), f.next(), f.next());
            assert_eq!(tag, Some("F"), "{l}");
            (stream.unwrap().to_string(), text.unwrap_or("").to_string())
        })
        .collect()
}

/// Imports a one-layer image `example.com/data:1` holding `data/hello.txt`
/// ("from-volume") and a symlink `data/out` to `/etc`, for image volumes.
pub fn import_data_image(dir: &Path) -> String {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "data", std::io::empty()).unwrap();
    let body = b"from-volume\n";
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_mode(0o644);
    h.set_size(body.len() as u64);
    b.append_data(&mut h, "data/hello.txt", &body[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    b.append_link(&mut h, "data/out", "/etc").unwrap();
    let layer = b.into_inner().unwrap();
    let l = dir.join("data-layout");
    let ld = super::blob(&l, "application/vnd.oci.image.layer.v1.tar", &layer);
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [super::sha(&layer)]}});
    let cd = super::blob(
        &l,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cd, "layers": [ld]});
    let mut m = super::blob(
        &l,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    m["annotations"] =
        serde_json::json!({"org.opencontainers.image.ref.name": "example.com/data:1"});
    std::fs::write(
        l.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [m]})).unwrap(),
    )
    .unwrap();
    std::fs::write(l.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let out = Command::new(bin_path())
        .arg("--store")
        .arg(dir.join("store"))
        .args(["image", "import", "--snapshots"])
        .arg(&l)
        .output()
        .unwrap();
    assert!(out.status.success(), "import: {}", super::stderr(&out));
    "example.com/data:1".into()
}

/// The test venv's Python (with grpcio); `None` (skip) outside CI without it.
pub fn python() -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
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

/// Runs `tests/cri/ws_client.py` (PyPI's websocket-client) against a
/// streaming URL; what it printed.
pub fn ws_client(
    python: &std::path::Path,
    url: &str,
    proto: &str,
    stdin: &str,
    size: &str,
) -> serde_json::Value {
    ws_client_until(python, url, proto, stdin, size, "")
}

/// As [`ws_client`]; with v5, stdin closes only once stdout has `end_after`.
pub fn ws_client_until(
    python: &std::path::Path,
    url: &str,
    proto: &str,
    stdin: &str,
    size: &str,
    end_after: &str,
) -> serde_json::Value {
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cri/ws_client.py");
    let out = Command::new(python)
        .arg(script)
        .args([url, proto, stdin, size, end_after])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `tests/cri/spdy_client.js` (npm's spdy-transport, installed in
/// `.node` by the test command) against a streaming URL; what it printed.
/// `None` (skip) outside CI without node or the module.
pub fn spdy_client(url: &str, stdin: &str, size: &str, tty: bool) -> Option<serde_json::Value> {
    node_client(
        "spdy_client.js",
        &[url, stdin, size, if tty { "tty" } else { "" }],
    )
}

/// Runs a node client of `tests/cri` with `args` (npm's spdy-transport and
/// websocket-driver, installed in `.node` by the test command); what it
/// printed. `None` (skip) outside CI without node or the modules.
pub fn node_client(script: &str, args: &[&str]) -> Option<serde_json::Value> {
    let manifest = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let modules = manifest.join("../../.node/node_modules");
    let installed = ["spdy-transport", "websocket-driver"]
        .iter()
        .all(|m| modules.join(m).is_dir());
    if !installed {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "spdy-transport or websocket-driver not installed in .node: the test command installs them"
        );
        eprintln!("skipping the node client: no .node/node_modules/spdy-transport");
        return None;
    }
    let out = Command::new("node")
        .arg(manifest.join("tests/cri").join(script))
        .args(args)
        .env("NODE_PATH", &modules)
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// Runs `tests/cri/spdystream_client.go` (built against Debian's
/// spdystream, the SPDY library of kubectl and crictl) with `args`; what it
/// printed. `None` (skip) outside CI without Go or the package.
pub fn spdystream_client(args: &[&str]) -> Option<serde_json::Value> {
    let gopath = "/usr/share/gocode";
    let have = Path::new(gopath)
        .join("src/github.com/moby/spdystream")
        .is_dir()
        && Command::new("go").arg("version").output().is_ok();
    if !have {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "go or golang-github-docker-spdystream-dev missing: the test command installs them"
        );
        eprintln!("skipping the spdystream client: no go or no spdystream");
        return None;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let bin = tmp.join("spdystream_client");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cri/spdystream_client.go");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .env("GOCACHE", tmp.join("gocache"))
        .output()
        .expect("go");
    assert!(
        built.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let out = Command::new(&bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "spdystream client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// RunPodSandbox of `cfg`; the pod's id.
pub async fn run_pod(
    c: &mut RuntimeServiceClient<Channel>,
    cfg: &cri_api::v1::PodSandboxConfig,
) -> String {
    c.run_pod_sandbox(cri_api::v1::RunPodSandboxRequest {
        config: Some(cfg.clone()),
        runtime_handler: String::new(),
    })
    .await
    .unwrap_or_else(|e| panic!("RunPodSandbox: {}", e.message()))
    .into_inner()
    .pod_sandbox_id
}

/// StartContainer of `id`.
pub async fn start(c: &mut RuntimeServiceClient<Channel>, id: &str) {
    c.start_container(cri_api::v1::StartContainerRequest {
        container_id: id.to_string(),
    })
    .await
    .unwrap_or_else(|e| panic!("StartContainer {id}: {}", e.message()));
}
