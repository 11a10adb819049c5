//! Image config → process, against containerd: images made here are
//! imported into a containerd (Debian's 1.6, started by the test on its own
//! root, state dir and socket), `ctr run -d` runs them with the runc shim,
//! and the config.json in the task's bundle is compared with what
//! [`ImageProcess::resolve`] gives for the same image config and overrides.
//! ctr's overrides: `--env`, `--cwd`, and arguments after the id, which
//! replace the image's whole command line (the entrypoint override here).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oci_runtime::{Convention, ImageOverrides, ImageProcess};
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
            .args(["--namespace", "imgspec"])
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
    if !common::root_or_skip("image_spec_ctr") {
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
fn image_configs_resolve_as_containerd_resolves_them() {
    let Some(c) = start_containerd() else {
        return;
    };
    let dir = c.dir.path().to_path_buf();
    let images = [
        (
            "docker.io/library/imgspec-a:t",
            json!({"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["sleep 60"], "Env": ["A=1", "B=2"],
                "User": "app", "WorkingDir": "/srv"}),
        ),
        (
            "docker.io/library/imgspec-b:t",
            json!({"Cmd": ["/bin/sleep", "60"]}),
        ),
        (
            "docker.io/library/imgspec-c:t",
            json!({"Cmd": ["/bin/sleep", "60"], "User": "1000:audio"}),
        ),
        (
            "docker.io/library/imgspec-d:t",
            json!({"Cmd": ["/bin/sleep", "60"], "User": "www"}),
        ),
        (
            "docker.io/library/imgspec-e:t",
            json!({"Cmd": ["/bin/sleep", "60"], "User": "4242", "Env": ["PATH=/bin"]}),
        ),
    ];
    // (ctr flags, arguments replacing the command line)
    let cases: [(&[&str], &[&str]); 4] = [
        (&[], &[]),
        (&["--env", "B=3", "--env", "C=4"], &[]),
        (&["--cwd", "/opt"], &[]),
        (&[], &["/bin/sleep", "61"]),
    ];
    let mut compared = 0;
    for (n, (name, config)) in images.iter().enumerate() {
        let archive = image_archive(&dir, name, config);
        c.ctr(&["images", "import", archive.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("import {name}: {e}"));
        let image: oci_spec::image::ImageConfiguration = serde_json::from_value(json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": config,
        }))
        .unwrap();
        for (k, (flags, args)) in cases.iter().enumerate() {
            let id = format!("c{n}-{k}");
            let mut run = vec!["run", "-d"];
            run.extend_from_slice(flags);
            run.push(name);
            run.push(&id);
            run.extend_from_slice(args);
            c.ctr(&run)
                .unwrap_or_else(|e| panic!("{name} {flags:?} {args:?}: ctr run: {e}"));
            let bundle = dir
                .join("state/io.containerd.runtime.v2.task/imgspec")
                .join(&id)
                .join("config.json");
            let theirs: Value =
                serde_json::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
            let _ = c.ctr(&["tasks", "kill", "-s", "SIGKILL", &id]);
            for _ in 0..200 {
                if c.ctr(&["tasks", "delete", &id]).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = c.ctr(&["containers", "delete", &id]);

            let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
            let mut o = ImageOverrides {
                convention: Convention::Containerd,
                ..ImageOverrides::default()
            };
            for pair in flags.chunks(2) {
                match pair[0] {
                    "--env" => o.env.push(pair[1].to_string()),
                    "--cwd" => o.working_dir = Some(pair[1].to_string()),
                    f => panic!("{f}"),
                }
            }
            if !args.is_empty() {
                o.entrypoint = Some(s(args));
            }
            let ours = ImageProcess::resolve(&image, &rootfs(&dir), &o)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let p = &theirs["process"];
            let what = format!("{name} {flags:?} {args:?}");
            assert_eq!(json!(ours.args), p["args"], "{what}: args");
            assert_eq!(json!(ours.cwd), p["cwd"], "{what}: cwd");
            assert_eq!(json!(ours.uid), p["user"]["uid"], "{what}: uid");
            assert_eq!(json!(ours.gid), p["user"]["gid"], "{what}: gid");
            let mut a = ours.additional_gids.clone();
            a.sort();
            let mut b: Vec<u32> =
                serde_json::from_value(p["user"]["additionalGids"].clone()).unwrap_or_default();
            b.sort();
            assert_eq!(a, b, "{what}: additional gids");
            assert_eq!(json!(ours.env), p["env"], "{what}: env");
            compared += 1;
        }
    }
    assert_eq!(compared, images.len() * cases.len());
}
