//! containerd drives mini-runtime through its runc v2 shim: `ctr run
//! --runc-binary <mini-runtime>` with containerd started by the test on its
//! own root, state dir and socket. Run (`--rm`, detached), exec, pause and
//! resume, a memory limit that `ctr task metrics` reads back, kill and
//! delete with the exit status, and a failed create whose error the shim
//! takes from our JSON log. (Docker runs containers through this same shim.)
//! Then the kubelet's path: containerd's CRI plugin with a runtime entry whose
//! `BinaryName` is mini-runtime, driven over CRI by a pod with a container.

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
    namespace: &'static str,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Containerd {
    fn sock(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.sock())
            .args(["--namespace", self.namespace])
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

impl Containerd {
    /// The warnings and errors containerd logged, for a failure's message.
    fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("level=error") || l.contains("level=warning"))
            .collect::<Vec<_>>()
            .join("\n")
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

/// One containerd at a time: the CRI plugin writes fixed paths
/// (`/run/containerd/runc/k8s.io`, `/run/containerd/s`).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Starts containerd on its own root, state dir and socket. `cri` is the CRI
/// plugin's config section; without it the plugin is disabled.
fn start_containerd(cri: Option<&dyn Fn(&Path) -> String>) -> Option<Containerd> {
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
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let plugins = match cri {
        Some(section) => section(p),
        None => "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n".to_string(),
    };
    let config = format!(
        "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n{plugins}\
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
    let c = Containerd {
        dir,
        daemon,
        namespace: if cri.is_some() { "k8s.io" } else { "mr" },
        _one: guard,
    };
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
    let Some(c) = start_containerd(None) else {
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

/// Removes the pod's cgroup parent in every v1 hierarchy and in the unified one.
struct CgroupParent(String);

impl Drop for CgroupParent {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for e in entries.flatten() {
            let dir = e.path().join(self.0.trim_start_matches('/'));
            if dir.is_dir() {
                // Children first: the container cgroups the runtime left, if any.
                if let Ok(kids) = std::fs::read_dir(&dir) {
                    for k in kids.flatten() {
                        if k.path().is_dir() {
                            let _ = std::fs::remove_dir(k.path());
                        }
                    }
                }
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

/// The CRI plugin's section with a `mini` runtime whose `BinaryName` is ours,
/// a sandbox image the test imports, and a stream server on loopback.
/// `restrict_oom_score_adj`: the sandbox asks for -998, which a bounding set
/// without CAP_SYS_RESOURCE refuses (runc and we both fail on it then).
fn cri_section(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("cni")).unwrap();
    format!(
        "[plugins.\"io.containerd.grpc.v1.cri\"]\n\
         \x20 sandbox_image = \"docker.io/library/mr-pause:t\"\n\
         \x20 stream_server_address = \"127.0.0.1\"\n\
         \x20 stream_server_port = \"0\"\n\
         \x20 restrict_oom_score_adj = true\n\
         \x20 [plugins.\"io.containerd.grpc.v1.cri\".cni]\n\
         \x20   bin_dir = \"/usr/lib/cni\"\n\
         \x20   conf_dir = \"{cni}\"\n\
         \x20 [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n\
         \x20   default_runtime_name = \"runc\"\n\
         \x20 [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n\
         \x20   runtime_type = \"io.containerd.runc.v2\"\n\
         \x20 [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.mini]\n\
         \x20   runtime_type = \"io.containerd.runc.v2\"\n\
         \x20   [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.mini.options]\n\
         \x20     BinaryName = \"{bin}\"\n",
        cni = dir.join("cni").display(),
        bin = bin_path(),
    )
}

/// The memory limit of `pid`'s v1 memory cgroup, or of its unified cgroup.
fn memory_limit_of(pid: u32) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        if ctrls.split(',').any(|c| c == "memory") {
            return std::fs::read_to_string(format!(
                "/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"
            ))
            .unwrap();
        }
        if ctrls.is_empty() && Path::new("/sys/fs/cgroup/memory.max").exists() {
            return std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max")).unwrap();
        }
    }
    panic!("no memory cgroup for {pid}: {cgroups}")
}

/// A runtime entry in containerd's CRI config with `BinaryName` pointing at
/// mini-runtime: the kubelet's path (CRI → containerd → runc v2 shim → us)
/// for a pod's sandbox and a container with a memory limit, exec, stop with
/// the exit code, and removal.
#[test]
fn containerd_cri_runtime_entry_with_binary_name() {
    use cri_api::v1::{
        ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
        CreateContainerRequest, ExecSyncRequest, ImageSpec, LinuxContainerConfig,
        LinuxContainerResources, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode,
        NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RemoveContainerRequest,
        RemovePodSandboxRequest, RunPodSandboxRequest, RuntimeServiceClient, StartContainerRequest,
        StopContainerRequest, StopPodSandboxRequest,
    };

    // Declared first, so that it is dropped after containerd stopped the pod's
    // processes, even when the test fails.
    let parent = CgroupParent(format!("/mr-cri-{}", std::process::id()));
    let Some(c) = start_containerd(Some(&cri_section)) else {
        return;
    };
    let dir = c.dir.path().to_path_buf();
    let pause = image_archive(
        &dir,
        "docker.io/library/mr-pause:t",
        &json!({"Entrypoint": ["/bin/sleep"], "Cmd": ["1000000"]}),
    );
    let app = image_archive(
        &dir,
        "docker.io/library/mr-bb:t",
        &json!({"Cmd": ["/bin/sh"]}),
    );
    for a in [&pause, &app] {
        c.ctr(&["images", "import", a.to_str().unwrap()])
            .expect("import into k8s.io");
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = cri_api::transport::connect(c.sock())
            .await
            .expect("connect");
        let mut cri = RuntimeServiceClient::new(channel);
        let sandbox_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "pod".into(),
                uid: format!("uid-{}", std::process::id()),
                namespace: "default".into(),
                attempt: 0,
            }),
            log_directory: dir.join("pods").display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: parent.0.clone(),
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
        };
        let pod = cri
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: "mini".into(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.errors()))
            .into_inner()
            .pod_sandbox_id;
        // The sandbox's init was created by mini-runtime: its state file has
        // fields runc's does not.
        let state =
            std::fs::read_to_string(format!("/run/containerd/runc/k8s.io/{pod}/state.json"))
                .expect("the sandbox's runtime state");
        assert!(
            state.contains("\"start_time\""),
            "not mini-runtime's state: {state}"
        );

        let limit = 48 * 1024 * 1024;
        let ctr = cri
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: "app".into(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: "docker.io/library/mr-bb:t".into(),
                        ..Default::default()
                    }),
                    command: vec!["sh".into(), "-c".into()],
                    args: vec![
                        "echo started; trap 'exit 7' TERM; while :; do sleep 1; done".into(),
                    ],
                    log_path: "app.log".into(),
                    linux: Some(LinuxContainerConfig {
                        resources: Some(LinuxContainerResources {
                            memory_limit_in_bytes: limit,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .expect("CreateContainer")
            .into_inner()
            .container_id;
        cri.start_container(StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .expect("StartContainer");
        let state =
            std::fs::read_to_string(format!("/run/containerd/runc/k8s.io/{ctr}/state.json"))
                .expect("the container's runtime state");
        assert!(
            state.contains("\"start_time\""),
            "not mini-runtime's state: {state}"
        );
        let init: Value = serde_json::from_str(&state).unwrap();
        let pid = init["init_process_pid"]
            .as_u64()
            .or_else(|| init["pid"].as_u64())
            .expect("a pid in the state") as u32;
        assert_eq!(memory_limit_of(pid).trim(), limit.to_string());

        let out = cri
            .exec_sync(ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo out; echo err >&2; exit 3".into(),
                ],
                timeout: 30,
            })
            .await
            .expect("ExecSync")
            .into_inner();
        assert_eq!(
            (out.stdout.as_slice(), out.stderr.as_slice(), out.exit_code),
            (&b"out\n"[..], &b"err\n"[..], 3)
        );

        cri.stop_container(StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 30,
        })
        .await
        .unwrap_or_else(|e| panic!("StopContainer: {e}\n{}", c.errors()));
        let status = cri
            .container_status(ContainerStatusRequest {
                container_id: ctr.clone(),
                verbose: false,
            })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("a status");
        assert_eq!(status.state, ContainerState::ContainerExited as i32);
        assert_eq!(status.exit_code, 7, "the TERM trap's exit code");
        let log = std::fs::read_to_string(dir.join("pods/app.log")).expect("the container log");
        assert!(log.contains(" stdout F started"), "{log}");

        cri.remove_container(RemoveContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .expect("RemoveContainer");
        cri.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("StopPodSandbox");
        cri.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("RemovePodSandbox");
        assert!(
            !Path::new(&format!("/run/containerd/runc/k8s.io/{pod}")).exists(),
            "the sandbox's runtime state outlived its removal"
        );
    });
}

/// The same CRI steps against containerd 1.6's CRI plugin (with runc) and
/// against `serve`: what each answers, with ids and times left out.
async fn cri_steps(
    cri: &mut cri_api::v1::RuntimeServiceClient<cri_api::transport::Channel>,
    image: &str,
    logs: &Path,
    cgroup_parent: &str,
) -> Value {
    use cri_api::v1::{
        ContainerConfig, ContainerFilter, ContainerMetadata, ContainerStateValue,
        ContainerStatusRequest, CreateContainerRequest, ExecSyncRequest, ImageSpec,
        LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListContainersRequest,
        ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxConfig,
        PodSandboxMetadata, PodSandboxStatusRequest, RemoveContainerRequest,
        RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopContainerRequest,
        StopPodSandboxRequest,
    };
    let code = |r: Result<(), cri_api::Status>| match r {
        Ok(()) => "OK".to_string(),
        Err(e) => format!("{:?}", e.code()),
    };
    let mut out = serde_json::Map::new();
    let pod_cfg = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "diff".into(),
            uid: format!("uid-diff-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: logs.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.into(),
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
    };
    let pod = cri
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let st = cri
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    out.insert("pod_state".into(), json!(st.state));
    let ctr_cfg = |name: &str, cmd: &str| ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), cmd.into()],
        log_path: format!("{name}.log"),
        ..Default::default()
    };
    let create = async |cri: &mut cri_api::v1::RuntimeServiceClient<_>, cfg: ContainerConfig| {
        cri.create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cfg),
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await
        .map(|r| r.into_inner().container_id)
    };
    // A container that writes and exits 3.
    let c1 = create(cri, ctr_cfg("c1", "echo out; echo err >&2; exit 3"))
        .await
        .expect("CreateContainer c1");
    let dup = create(cri, ctr_cfg("c1", "true")).await.map(drop);
    out.insert("duplicate_name".into(), json!(code(dup)));
    let missing_image = ContainerConfig {
        image: Some(ImageSpec {
            image: "docker.io/library/absent:none".into(),
            ..Default::default()
        }),
        ..ctr_cfg("c9", "true")
    };
    out.insert(
        "missing_image".into(),
        json!(code(create(cri, missing_image).await.map(drop))),
    );
    cri.start_container(StartContainerRequest {
        container_id: c1.clone(),
    })
    .await
    .expect("StartContainer c1");
    let mut s1 = None;
    for _ in 0..400 {
        let s = cri
            .container_status(ContainerStatusRequest {
                container_id: c1.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if s.state == cri_api::v1::ContainerState::ContainerExited as i32 {
            s1 = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let s1 = s1.expect("c1 exits");
    out.insert(
        "c1".into(),
        json!({"state": s1.state, "exit_code": s1.exit_code, "reason": s1.reason,
               "image": s1.image.map(|i| i.image), "labels": s1.labels}),
    );
    let restart = cri
        .start_container(StartContainerRequest {
            container_id: c1.clone(),
        })
        .await
        .map(drop);
    out.insert("start_exited".into(), json!(code(restart)));
    let log: Vec<String> = std::fs::read_to_string(logs.join("c1.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_once(' ').map_or("", |x| x.1).to_string())
        .collect();
    let mut log = log;
    // The two streams are read apart: their order is not defined.
    log.sort();
    out.insert("c1_log".into(), json!(log));

    // A running container: exec, a timeout, stop.
    let c2 = create(cri, ctr_cfg("c2", "sleep 600")).await.expect("c2");
    cri.start_container(StartContainerRequest {
        container_id: c2.clone(),
    })
    .await
    .expect("StartContainer c2");
    let r = cri
        .exec_sync(ExecSyncRequest {
            container_id: c2.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo hi; echo e >&2; exit 5".into(),
            ],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    out.insert(
        "exec".into(),
        json!([
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr),
            r.exit_code
        ]),
    );
    let running = cri
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                state: Some(ContainerStateValue {
                    state: cri_api::v1::ContainerState::ContainerRunning as i32,
                }),
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    out.insert(
        "running".into(),
        json!(
            running
                .iter()
                .map(|c| c.metadata.clone().unwrap().name)
                .collect::<Vec<_>>()
        ),
    );
    cri.stop_container(StopContainerRequest {
        container_id: c2.clone(),
        timeout: 10,
    })
    .await
    .expect("StopContainer");
    let s2 = cri
        .container_status(ContainerStatusRequest {
            container_id: c2.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    out.insert(
        "c2".into(),
        json!({"exit_code": s2.exit_code, "reason": s2.reason}),
    );

    // Missing objects.
    let nope = "0000000000000000000000000000000000000000000000000000000000000000".to_string();
    out.insert(
        "status_missing_container".into(),
        json!(code(
            cri.container_status(ContainerStatusRequest {
                container_id: nope.clone(),
                verbose: false,
            })
            .await
            .map(drop)
        )),
    );
    out.insert(
        "status_missing_pod".into(),
        json!(code(
            cri.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: nope.clone(),
                verbose: false,
            })
            .await
            .map(drop)
        )),
    );
    out.insert(
        "remove_missing_container".into(),
        json!(code(
            cri.remove_container(RemoveContainerRequest {
                container_id: nope.clone(),
            })
            .await
            .map(drop)
        )),
    );
    out.insert(
        "remove_missing_pod".into(),
        json!(code(
            cri.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: nope.clone(),
            })
            .await
            .map(drop)
        )),
    );
    // Stop and remove, each twice.
    let mut twice = Vec::new();
    for _ in 0..2 {
        twice.push(code(
            cri.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .map(drop),
        ));
    }
    let st = cri
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    out.insert("pod_state_stopped".into(), json!(st.state));
    for _ in 0..2 {
        twice.push(code(
            cri.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .map(drop),
        ));
    }
    out.insert("stop_remove_twice".into(), json!(twice));
    let left = cri
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items
        .len();
    out.insert("pods_left".into(), json!(left));
    Value::Object(out)
}

/// Differential: the same steps against containerd 1.6's CRI (its own
/// root and sockets, the pause and app images imported offline into
/// `k8s.io`) and against `serve` give the same states, exit codes, log
/// lines, exec output and error codes.
#[test]
fn serve_answers_as_containerd_cri_does() {
    let parent = CgroupParent(format!("/mr-diff-{}", std::process::id()));
    let ours_parent = CgroupParent(format!("/mr-diff-ours-{}", std::process::id()));
    let Some(c) = start_containerd(Some(&cri_section)) else {
        return;
    };
    let dir = c.dir.path().to_path_buf();
    let pause = image_archive(
        &dir,
        "docker.io/library/mr-pause:t",
        &json!({"Entrypoint": ["/bin/sleep"], "Cmd": ["1000000"]}),
    );
    let app = image_archive(
        &dir,
        "docker.io/library/mr-bb:t",
        &json!({"Cmd": ["/bin/sh"]}),
    );
    for a in [&pause, &app] {
        c.ctr(&["images", "import", a.to_str().unwrap()])
            .expect("import into k8s.io");
    }
    // serve, on its own dirs, with the same app image.
    let ours = tempfile::tempdir().unwrap();
    let out = Command::new(bin_path())
        .arg("--store")
        .arg(ours.path().join("store"))
        .args(["image", "import"])
        .arg(&app)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut serve = common::serve::spawn_in(ours.path(), &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (theirs, mine) = rt.block_on(async {
        let mut cd = cri_api::v1::RuntimeServiceClient::new(
            cri_api::transport::connect(c.sock()).await.unwrap(),
        );
        let mut images = cri_api::v1::ImageServiceClient::new(
            cri_api::transport::connect(c.sock()).await.unwrap(),
        );
        // The image by its id (config digest), the same in both stores.
        let id = images
            .image_status(cri_api::v1::ImageStatusRequest {
                image: Some(cri_api::v1::ImageSpec {
                    image: "docker.io/library/mr-bb:t".into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image
            .expect("containerd has the image")
            .id;
        let theirs = cri_steps(&mut cd, &id, &dir.join("logs"), &parent.0).await;
        let mut ms = cri_api::v1::RuntimeServiceClient::new(
            cri_api::transport::connect(ours.path().join("cri.sock"))
                .await
                .unwrap(),
        );
        let mine = cri_steps(&mut ms, &id, &ours.path().join("logs"), &ours_parent.0).await;
        (theirs, mine)
    });
    let _ = serve.kill();
    let _ = serve.wait();
    common::unmount_under(ours.path());
    // Where containerd answers Unknown (a plain Go error), serve gives the
    // code the CRI means: a name in use, a container that cannot start.
    let (mut mine, mut theirs) = (mine, theirs);
    for (key, ours_code) in [
        ("duplicate_name", "AlreadyExists"),
        ("start_exited", "FailedPrecondition"),
    ] {
        assert_eq!(theirs[key], "Unknown", "containerd's {key} changed");
        assert_eq!(mine[key], ours_code, "{key}");
        theirs[key] = Value::Null;
        mine[key] = Value::Null;
    }
    assert_eq!(
        mine,
        theirs,
        "serve (left) and containerd (right) differ:\nours: {}\ncontainerd: {}\n{}",
        serde_json::to_string_pretty(&mine).unwrap(),
        serde_json::to_string_pretty(&theirs).unwrap(),
        c.errors()
    );
}
