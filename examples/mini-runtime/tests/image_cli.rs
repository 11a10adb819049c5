//! End-to-end: `mini-runtime image ...` driven as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mini-runtime")
}

fn mr(store: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

fn ok(store: &Path, args: &[&str]) -> String {
    let o = mr(store, args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The error path: exit 1 and exactly one line on stderr.
fn fails(store: &Path, args: &[&str], want: &str) {
    let o = mr(store, args);
    assert_eq!(o.status.code(), Some(1), "{args:?}");
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(want), "{err} lacks {want}");
}

fn sha(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn blob(layout: &Path, mt: &str, data: &[u8]) -> serde_json::Value {
    let d = sha(data);
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(layout.join("blobs/sha256").join(&d[7..]), data).unwrap();
    serde_json::json!({"mediaType": mt, "digest": d, "size": data.len()})
}

fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A two-layer OCI layout named with a bare tag, as umoci writes.
fn layout(dir: &Path) -> PathBuf {
    let l = dir.join("hello");
    let layers = [
        layer(&[("etc/hostname", b"one\n"), ("etc/gone", b"x")]),
        layer(&[("etc/hostname", b"two\n"), ("etc/.wh.gone", b"")]),
    ];
    let descs: Vec<_> = layers
        .iter()
        .map(|t| blob(&l, "application/vnd.oci.image.layer.v1.tar", t))
        .collect();
    let config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|t| sha(t)).collect::<Vec<_>>()}});
    let config = blob(
        &l,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": descs});
    let mut m = blob(
        &l,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    m["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "v1"});
    std::fs::write(
        l.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [m]})).unwrap(),
    )
    .unwrap();
    std::fs::write(l.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    l
}

#[test]
fn import_ls_inspect_unpack_rm_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let src = layout(tmp.path());
    let out = ok(&store, &["image", "import", src.to_str().unwrap()]);
    assert!(out.starts_with("localhost/hello:v1 sha256:"), "{out}");
    let out = ok(&store, &["image", "ls"]);
    assert!(out.contains("localhost/hello:v1"), "{out}");
    let out = ok(&store, &["image", "inspect", "localhost/hello:v1"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 2);
    assert_eq!(v["config"]["config"]["Cmd"][0], "/bin/sh");
    let rootfs = tmp.path().join("rootfs");
    ok(
        &store,
        &[
            "image",
            "unpack",
            "localhost/hello:v1",
            rootfs.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(rootfs.join("etc/hostname")).unwrap(),
        b"two\n"
    );
    assert!(!rootfs.join("etc/gone").exists());
    fails(
        &store,
        &[
            "image",
            "unpack",
            "localhost/hello:v1",
            rootfs.to_str().unwrap(),
        ],
        "not empty",
    );
    ok(
        &store,
        &[
            "image",
            "import",
            "--name",
            "example.com/renamed:2",
            src.to_str().unwrap(),
        ],
    );
    ok(&store, &["image", "rm", "localhost/hello:v1"]);
    let out = ok(&store, &["image", "gc"]);
    assert!(out.starts_with("removed 0 blobs"), "{out}");
    ok(&store, &["image", "rm", "example.com/renamed:2"]);
    let out = ok(&store, &["image", "gc"]);
    assert!(out.starts_with("removed 4 blobs"), "{out}");
    assert_eq!(ok(&store, &["image", "ls"]).lines().count(), 1);
}

#[test]
fn errors_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    fails(
        &store,
        &["image", "inspect", "nope"],
        "docker.io/library/nope:latest not found",
    );
    fails(&store, &["image", "rm", "Bad Name"], "invalid image name");
    fails(
        &store,
        &["image", "import", "/nonexistent/layout"],
        "/nonexistent/layout",
    );
    let src = layout(tmp.path());
    fails(
        &store,
        &[
            "image",
            "import",
            "--platform",
            "linux",
            src.to_str().unwrap(),
        ],
        "os/arch",
    );
    // A corrupted layer names its digest.
    let victim = std::fs::read_dir(src.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read(p).unwrap().starts_with(b"etc/hostname"))
        .unwrap();
    let mut data = std::fs::read(&victim).unwrap();
    data[600] ^= 1;
    std::fs::write(&victim, data).unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap().to_string();
    fails(&store, &["image", "import", src.to_str().unwrap()], &name);
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn mount_and_umount_overlay_rootfs() {
    if !is_root() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "mount_and_umount_overlay_rootfs needs root under CI"
        );
        eprintln!("skipping mount_and_umount_overlay_rootfs: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let src = layout(tmp.path());
    ok(&store, &["image", "import", src.to_str().unwrap()]);
    let target = tmp.path().join("mnt");
    let _guard = MountGuard(target.clone());
    ok(
        &store,
        &[
            "image",
            "mount",
            "localhost/hello:v1",
            target.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(target.join("etc/hostname")).unwrap(),
        b"two\n"
    );
    assert!(
        !target.join("etc/gone").exists(),
        "the whiteout hides the lower file"
    );
    std::fs::write(target.join("etc/new"), b"upper").unwrap();
    // The lease keeps the snapshots while mounted.
    ok(&store, &["image", "rm", "localhost/hello:v1"]);
    let out = ok(&store, &["image", "gc"]);
    assert!(out.contains(", 0 snapshots"), "{out}");
    ok(&store, &["image", "umount", target.to_str().unwrap()]);
    assert!(!target.join("etc").exists());
    fails(
        &store,
        &["image", "umount", target.to_str().unwrap()],
        "not a rootfs mounted",
    );
    let out = ok(&store, &["image", "gc"]);
    assert!(out.contains(", 2 snapshots"), "{out}");
}
