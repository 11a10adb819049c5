//! End-to-end: `mini-runtime image ...` driven as a user would.

mod common;

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

use common::{blob, sha};

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
    layout_of(
        dir.join("hello"),
        [
            layer(&[("etc/hostname", b"one\n"), ("etc/gone", b"x")]),
            layer(&[("etc/hostname", b"two\n"), ("etc/.wh.gone", b"")]),
        ],
    )
}

/// An OCI layout at `l` of `layers`, its manifest named `v1`.
fn layout_of<const N: usize>(l: PathBuf, layers: [Vec<u8>; N]) -> PathBuf {
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

/// A one-layer image of the host's static busybox whose command prints a
/// known line, as an OCI layout.
fn needs_root_and_busybox(test: &str, dir: &Path) -> Option<PathBuf> {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    if !is_root() {
        assert!(!ci, "{test} needs root under CI");
        eprintln!("skipping {test}: needs root");
        return None;
    }
    let l = common::busybox_layout_in(dir);
    if l.is_none() {
        assert!(!ci, "{test} needs busybox-static under CI");
        eprintln!("skipping {test}: needs busybox-static");
    }
    l
}

#[test]
fn bundle_runs_under_runc_and_mini_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(src) = needs_root_and_busybox("bundle_runs_under_runc_and_mini_runtime", tmp.path())
    else {
        return;
    };
    let store = tmp.path().join("store");
    ok(&store, &["image", "import", src.to_str().unwrap()]);
    let bundle = tmp.path().join("bundle");
    ok(
        &store,
        &[
            "image",
            "bundle",
            "example.com/bb:1",
            bundle.to_str().unwrap(),
        ],
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let p = &config["process"];
    assert_eq!(p["args"][0], "/bin/sh");
    assert_eq!(p["cwd"], "/home/app");
    assert_eq!(
        (p["user"]["uid"].as_u64(), p["user"]["gid"].as_u64()),
        (Some(1000), Some(50))
    );
    assert!(
        p["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=there")
    );
    assert_eq!(
        config["annotations"]["org.opencontainers.image.stopSignal"],
        "SIGQUIT"
    );
    assert_eq!(config["hostname"], "bb");
    let want = "hi there from /home/app as 1000:50";
    let id = format!("imgtest-{}", std::process::id());
    let have_runc = Command::new("sh")
        .args(["-c", "command -v runc"])
        .output()
        .unwrap()
        .status
        .success();
    if have_runc {
        let o = Command::new("runc")
            .args([
                "--root",
                tmp.path().join("runc").to_str().unwrap(),
                "run",
                "--bundle",
                bundle.to_str().unwrap(),
                &id,
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "runc: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), want);
    } else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "runc missing under CI"
        );
    }
    let o = Command::new(bin())
        .args([
            "--root",
            tmp.path().join("state").to_str().unwrap(),
            "run",
            "--bundle",
            bundle.to_str().unwrap(),
            &id,
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "mini-runtime run: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), want);
    fails(
        &store,
        &[
            "image",
            "bundle",
            "example.com/bb:1",
            bundle.to_str().unwrap(),
        ],
        "not empty",
    );
}

#[test]
fn demo_builds_imports_bundles_runs_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    if needs_root_and_busybox("demo_builds_imports_bundles_runs_and_cleans_up", tmp.path())
        .is_none()
    {
        return;
    }
    let o = Command::new(bin())
        .arg("demo")
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("Hello from container demo-image"), "{out}");
    assert!(out.contains("exited with status 0"), "{out}");
    assert!(out.lines().count() <= 24, "more than a screen: {out}");
    // Everything it made is gone.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("mini-runtime-demo"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Wraps a layout dir into an oci-archive tarball.
fn archive_of(layout: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", layout).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn concurrent_import_processes_share_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let src = layout(tmp.path());
    let tarball = tmp.path().join("hello.tar");
    std::fs::write(&tarball, archive_of(&src)).unwrap();
    let children: Vec<_> = (0..4)
        .map(|i| {
            let path = if i % 2 == 0 { &src } else { &tarball };
            Command::new(bin())
                .arg("--store")
                .arg(&store)
                .args(["image", "import", "--name", &format!("x.io/c:{i}")])
                .arg(path)
                .output_spawn()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let out = ok(&store, &["image", "ls"]);
    for i in 0..4 {
        assert!(out.contains(&format!("x.io/c:{i}")), "{out}");
    }
}

trait SpawnPiped {
    fn output_spawn(&mut self) -> std::process::Child;
}

impl SpawnPiped for Command {
    fn output_spawn(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn killed_import_leaves_nothing_visible_and_its_temp_files_go() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    ok(&store, &["image", "ls"]);
    let src = layout(tmp.path());
    // A large blob makes up most of the archive, so its middle is inside
    // that blob's data: the importer is then writing a temp file.
    let big: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    blob(&src, "application/octet-stream", &big);
    let data = archive_of(&src);
    // A FIFO as the archive: the import reads what we write, no more, and
    // is killed in the middle of it.
    let fifo = tmp.path().join("archive.fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let mut child = Command::new(bin())
        .arg("--store")
        .arg(&store)
        .args(["image", "import"])
        .arg(&fifo)
        .output_spawn();
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    w.write_all(&data[..data.len() / 2]).unwrap();
    w.flush().unwrap();
    // Wait until the importer has started a blob in the store's temp dir.
    let tmpdir = store.join(".store/tmp");
    let mut polls = 0;
    while std::fs::read_dir(&tmpdir).unwrap().next().is_none()
        && child.try_wait().unwrap().is_none()
    {
        polls += 1;
        assert!(polls < 6000, "the importer never started a temp file");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(w);
    let out = ok(&store, &["image", "ls"]);
    assert_eq!(out.lines().count(), 1, "an image became visible: {out}");
    assert!(
        std::fs::read_dir(&tmpdir).unwrap().next().is_none(),
        "temp files left after the next open"
    );
}

#[test]
fn pull_from_a_registry_then_bundle_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(src) = needs_root_and_busybox("pull_from_a_registry_then_bundle_and_run", tmp.path())
    else {
        return;
    };
    let reg = common::registry();
    let pushed = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:example.com/bb:1", src.display()))
        .arg(format!("docker://127.0.0.1:{}/demo/bb:1", reg.port))
        .output()
        .expect("skopeo");
    assert!(
        pushed.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let store = tmp.path().join("store");
    let name = format!("127.0.0.1:{}/demo/bb:1", reg.port);
    // A missing default registry config is fine; stderr is not a terminal,
    // so progress comes as plain lines.
    let o = mr(&store, &["image", "pull", &name]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with(&format!("{name} sha256:")), "{out}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("layer ") && l.ends_with(" done")),
        "{err}"
    );
    let bundle = tmp.path().join("bundle");
    ok(
        &store,
        &["image", "bundle", &name, bundle.to_str().unwrap()],
    );
    let o = Command::new(bin())
        .args([
            "--root",
            tmp.path().join("state").to_str().unwrap(),
            "run",
            "--bundle",
        ])
        .arg(&bundle)
        .arg(format!("pulled-{}", std::process::id()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "hi there from /home/app as 1000:50"
    );
    // Errors: one clear line each.
    fails(
        &store,
        &[
            "image",
            "pull",
            &format!("127.0.0.1:{}/demo/none:1", reg.port),
        ],
        "MANIFEST_UNKNOWN",
    );
    fails(&store, &["image", "pull", "Bad Name"], "invalid image name");
    let bad_config = tmp.path().join("registries.toml");
    std::fs::write(&bad_config, "[registries.x]\nmirors = []\n").unwrap();
    fails(
        &store,
        &[
            "image",
            "pull",
            "--registry-config",
            bad_config.to_str().unwrap(),
            &name,
        ],
        "mirors",
    );
}

/// A store on a small tmpfs: an import or a pull that does not fit fails
/// naming the cause and leaves the image already there whole (it lists, skopeo reads
/// it, no temp file stays); once the store is read-only, an import fails
/// saying so and the store still lists.
#[test]
fn a_full_or_read_only_store_fails_clearly_and_keeps_what_it_had() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "needs root under CI"
        );
        eprintln!("skipping: needs root for a tmpfs");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&store)
        .status()
        .unwrap();
    assert!(st.success());
    let _guard = Unmount(store.clone());
    ok(
        &store,
        &["image", "import", layout(tmp.path()).to_str().unwrap()],
    );
    let before = ok(&store, &["image", "ls"]);
    assert_eq!(before.lines().count(), 2, "{before}");
    // 4 MB that do not compress, in a store of 3.
    let big: Vec<u8> = (0..4_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let huge = layout_of(tmp.path().join("huge"), [layer(&[("big", &big)])]);
    fails(
        &store,
        &["image", "import", huge.to_str().unwrap()],
        "No space left on device",
    );
    assert_eq!(ok(&store, &["image", "ls"]), before);
    let tmpdir = store.join(".store/tmp");
    let no_temp_files = || {
        assert!(
            std::fs::read_dir(&tmpdir).map_or(true, |mut d| d.next().is_none()),
            "temp files left in {}",
            tmpdir.display()
        );
    };
    no_temp_files();
    // The same image pulled from a registry fails the same way.
    let reg = common::registry();
    let pushed = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", huge.display()))
        .arg(format!("docker://127.0.0.1:{}/full/huge:1", reg.port))
        .output()
        .expect("skopeo");
    assert!(
        pushed.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let o = mr(
        &store,
        &[
            "image",
            "pull",
            &format!("127.0.0.1:{}/full/huge:1", reg.port),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    // Progress lines, then one error line.
    let err = String::from_utf8(o.stderr).unwrap();
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("mini-runtime: ") && last.contains("No space left on device"),
        "{err}"
    );
    assert_eq!(ok(&store, &["image", "ls"]), before);
    no_temp_files();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
    let name = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap()
        .to_string();
    let inspect = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:{name}", store.display()))
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    // Read-only.
    let st = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&store)
        .status()
        .unwrap();
    assert!(st.success());
    let again = tmp.path().join("again");
    let again = layout_of(again, [layer(&[("etc/x", b"x")])]);
    fails(
        &store,
        &["image", "import", again.to_str().unwrap()],
        "Read-only file system",
    );
    assert_eq!(ok(&store, &["image", "ls"]), before);
}
