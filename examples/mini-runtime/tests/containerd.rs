//! containerd drives mini-runtime through its runc v2 shim: `ctr run
//! --runc-binary <mini-runtime>` with containerd started by the test on its
//! own root, state dir and socket. Run (`--rm`, detached), exec, pause and
//! resume, a memory limit that `ctr task metrics` reads back, kill and
//! delete with the exit status, and a failed create whose error the shim
//! takes from our JSON log. (Docker runs containers through this same shim.)

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{bin_path, root_or_skip};
use serde_json::{Value, json};
use sha2::Digest;

struct Containerd {
    dir: tempfile::TempDir,
    daemon: Child,
}

impl Containerd {
    fn sock(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.sock())
            .args(["--namespace", "mr"])
            .args(args)
            .output()
            .map_err(|e| format!("ctr: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Ok(tasks) = self.ctr(&["tasks", "ls", "-q"]) {
            for t in tasks.lines() {
                let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", t]);
                let _ = self.ctr(&["tasks", "delete", "-f", t]);
            }
        }
        if let Ok(cs) = self.ctr(&["containers", "ls", "-q"]) {
            for c in cs.lines() {
                let _ = self.ctr(&["containers", "delete", c]);
            }
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        common::unmount_under(self.dir.path());
    }
}

fn start_containerd() -> Option<Containerd> {
    if !root_or_skip("containerd") {
        return None;
    }
    if Command::new("containerd")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "containerd is not installed (scripts/setup.sh installs it)"
        );
        eprintln!("skipping: containerd is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let config = format!(
        "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
         [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n\
         [metrics]\n  address = \"\"\n",
        root = p.join("root").display(),
        state = p.join("state").display(),
        sock = p.join("c.sock").display(),
    );
    std::fs::write(p.join("config.toml"), config).unwrap();
    let daemon = Command::new("containerd")
        .arg("--config")
        .arg(p.join("config.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(p.join("containerd.log")).unwrap(),
        ))
        .spawn()
        .expect("start containerd");
    let c = Containerd { dir, daemon };
    for _ in 0..600 {
        if c.ctr(&["version"]).is_ok() {
            return Some(c);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "containerd did not come up:\n{}",
        std::fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default()
    );
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// Writes the test rootfs, once.
fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    if root.exists() {
        return root;
    }
    for d in ["bin", "etc", "srv", "opt", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    for l in ["sh", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(l)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n\
         www:x:33:33::/var/www:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nwheel:x:10:root,app\nwww:x:33:\napp:x:1001:\naudio:x:29:app,www\n",
    )
    .unwrap();
    root
}

/// An OCI archive of the rootfs with `config` as its image config, named `name`.
fn image_archive(dir: &Path, name: &str, config: &Value) -> PathBuf {
    let root = rootfs(dir);
    let layout = dir.join(format!("layout-{}", &sha(name.as_bytes())[7..19]));
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer_path = dir.join("layer.tar");
    if !layer_path.exists() {
        let ok = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["--numeric-owner", "-cf"])
            .arg(&layer_path)
            .arg(".")
            .status()
            .unwrap()
            .success();
        assert!(ok, "tar of the rootfs");
    }
    let layer = std::fs::read(&layer_path).unwrap();
    let put = |bytes: &[u8]| -> String {
        let d = sha(bytes);
        std::fs::write(blobs.join(&d[7..]), bytes).unwrap();
        d
    };
    let layer_digest = put(&layer);
    let config_bytes = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let config_digest = put(&config_bytes);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": manifest_digest, "size": manifest.len(),
                           "annotations": {"io.containerd.image.name": name,
                                           "org.opencontainers.image.ref.name": "t"}}],
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let archive = layout.with_extension("tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .args(["oci-layout", "index.json", "blobs"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar of the OCI layout");
    archive
}

#[test]
fn containerd_runs_containers_with_mini_runtime() {
    let Some(c) = start_containerd() else {
        return;
    };
    let dir = c.dir.path().to_path_buf();
    let archive = image_archive(
        &dir,
        "docker.io/library/mr-bb:t",
        &json!({"Cmd": ["/bin/sh"]}),
    );
    c.ctr(&["images", "import", archive.to_str().unwrap()])
        .expect("import");
    let image = "docker.io/library/mr-bb:t";
    let runc = ["--runc-binary", bin_path()];

    // run --rm: the output, and the exit code.
    let mut args = vec!["run", "--rm"];
    args.extend(runc);
    args.extend([image, "once", "sh", "-c", "echo hello-containerd"]);
    assert_eq!(
        c.ctr(&args).expect("ctr run --rm").trim(),
        "hello-containerd"
    );
    // Which runtime ran it: our state.json, under the shim's root.
    let mut args = vec!["run", "-d", "--memory-limit", "67108864"];
    args.extend(runc);
    args.extend([image, "bg", "sleep", "1000"]);
    c.ctr(&args).expect("ctr run -d");
    let state = std::fs::read_to_string("/run/containerd/runc/mr/bg/state.json")
        .expect("the runtime's state");
    assert!(
        state.contains("\"start_time\""),
        "not mini-runtime's state: {state}"
    );
    let out = c
        .ctr(&[
            "tasks",
            "exec",
            "--exec-id",
            "e2",
            "bg",
            "sh",
            "-c",
            "echo in-exec",
        ])
        .expect("exec");
    assert_eq!(out.trim(), "in-exec");
    c.ctr(&["tasks", "pause", "bg"]).expect("pause");
    let ls = c.ctr(&["tasks", "ls"]).unwrap();
    assert!(
        ls.lines()
            .any(|l| l.starts_with("bg") && l.contains("PAUSED")),
        "{ls}"
    );
    c.ctr(&["tasks", "resume", "bg"]).expect("resume");
    let ls = c.ctr(&["tasks", "ls"]).unwrap();
    assert!(
        ls.lines()
            .any(|l| l.starts_with("bg") && l.contains("RUNNING")),
        "{ls}"
    );
    let metrics = c.ctr(&["tasks", "metrics", "bg"]).expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("memory.limit_in_bytes") && l.contains("67108864"))
            || metrics
                .lines()
                .any(|l| l.contains("memory.max") && l.contains("67108864")),
        "{metrics}"
    );
    c.ctr(&["tasks", "kill", "-s", "SIGKILL", "bg"])
        .expect("kill");
    let mut stopped = false;
    for _ in 0..400 {
        let ls = c.ctr(&["tasks", "ls"]).unwrap();
        if ls
            .lines()
            .any(|l| l.starts_with("bg") && l.contains("STOPPED"))
        {
            stopped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(stopped, "the task did not stop");
    c.ctr(&["tasks", "delete", "bg"]).expect("delete the task");
    c.ctr(&["containers", "delete", "bg"])
        .expect("delete the container");

    // A create that fails: the shim reports our error from the JSON log.
    let mut args = vec!["run", "--rm"];
    args.extend(runc);
    args.extend([image, "broken", "/nonexistent"]);
    let err = c.ctr(&args).expect_err("a missing program runs");
    assert!(
        err.contains("OCI runtime create failed") && err.contains("/nonexistent"),
        "{err}"
    );
    let _ = c.ctr(&["containers", "delete", "broken"]);
}
