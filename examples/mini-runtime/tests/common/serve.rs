//! Helpers for the tests of `serve`: a server with everything in a temp
//! dir, pod configs, and the pause process of a pod.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
