//! Helpers for the end-to-end tests: busybox bundles in temp dirs, a private
//! state root, and a guard that force-deletes the container whatever happens.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

pub mod serve;

/// Whether privileged tests can run; under `CI=true` a missing root is a failure.
pub fn root_or_skip(name: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{name} needs root and CI=true forbids skipping"
    );
    eprintln!("skipping {name}: needs root");
    false
}

/// A unique container id for this process and test.
pub fn unique_id(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

const APPLETS: &[&str] = &[
    "sh", "true", "false", "ls", "cat", "echo", "sleep", "id", "hostname", "stat", "readlink",
    "grep", "mount", "touch", "wc", "env", "pwd", "ps", "ulimit", "uname", "head", "test",
    "printf",
];

/// A bundle dir holding a busybox rootfs and a `config.json` from `mini-runtime spec`.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    pub fn new(args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("mr-bundle-")
            .tempdir()
            .expect("tempdir");
        let bin = dir.path().join("rootfs/bin");
        std::fs::create_dir_all(&bin).expect("mkdir rootfs/bin");
        std::fs::copy("/bin/busybox", bin.join("busybox"))
            .expect("busybox-static is installed at /bin/busybox");
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(a)).expect("symlink applet");
        }
        for d in ["proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(dir.path().join("rootfs").join(d)).expect("mkdir");
        }
        let out = Command::new(bin_path())
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .expect("spec");
        assert!(
            out.status.success(),
            "spec failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(dir.path().join("config.json")).expect("read config");
        let mut config: Value = serde_json::from_str(&text).expect("config json");
        config["process"]["terminal"] = Value::Bool(false);
        config["process"]["args"] = serde_json::json!(args);
        config["root"]["readonly"] = Value::Bool(false);
        let b = Bundle { dir, config };
        b.save();
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn save(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).expect("ser"),
        )
        .expect("write config");
    }
}

pub fn bin_path() -> &'static str {
    env!("CARGO_BIN_EXE_mini-runtime")
}

/// A private state root plus the ids created in it, force-deleted on drop.
pub struct Rt {
    pub root: tempfile::TempDir,
    ids: std::sync::Mutex<Vec<String>>,
}

impl Rt {
    pub fn new() -> Rt {
        let root = tempfile::Builder::new()
            .prefix("mr-root-")
            .tempdir()
            .expect("tempdir");
        Rt {
            root,
            ids: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin_path());
        c.arg("--root").arg(self.root.path());
        c
    }

    /// Runs `mini-runtime --root R <args>` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        // In these tests the id is always the last argument of create and run.
        if matches!(args.first(), Some(&"create") | Some(&"run"))
            && let Some(id) = args.last()
        {
            self.ids.lock().expect("lock").push(id.to_string());
        }
        // Files, not pipes: a created container inherits our stdio and keeps pipes open.
        let out = tempfile::tempfile().expect("tempfile");
        let err = tempfile::tempfile().expect("tempfile");
        let status = self
            .cmd()
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(err.try_clone().expect("dup"))
            .status()
            .expect("run mini-runtime");
        Output {
            status,
            stdout: read_all(out),
            stderr: read_all(err),
        }
    }

    /// `run -d -b <bundle> <id>`, which must succeed.
    pub fn run_detached(&self, bundle: &Bundle, id: &str) {
        let path = bundle.path().to_str().expect("bundle path is UTF-8");
        let out = self.run(&["run", "-d", "-b", path, id]);
        assert!(
            out.status.success(),
            "run -d {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn track(&self, id: &str) {
        self.ids.lock().expect("lock").push(id.to_string());
    }

    pub fn state(&self, id: &str) -> Value {
        let out = self.run(&["state", id]);
        assert!(
            out.status.success(),
            "state {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("state json")
    }

    /// Polls `state` until `status` (bounded; no timing assertion).
    pub fn wait_status(&self, id: &str, status: &str) {
        for _ in 0..2000 {
            if self.state(id)["status"] == status {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("{id} never reached {status}");
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap_or_else(|e| e.into_inner()));
        for id in ids {
            let _ = self.cmd().args(["delete", "--force", &id]).output();
        }
    }
}

fn read_all(mut f: std::fs::File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut v = Vec::new();
    let _ = f.seek(std::io::SeekFrom::Start(0));
    let _ = f.read_to_end(&mut v);
    v
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Makes `fd` the child's fd 3 without CLOEXEC (for `pre_exec`): dup2 onto itself
/// would keep the flag, so an fd that already is 3 gets it cleared instead.
pub fn place_at_fd3(fd: i32) -> std::io::Result<()> {
    let r = if fd == 3 {
        // SAFETY: clearing FD_CLOEXEC on an fd this process owns.
        unsafe { libc::fcntl(3, libc::F_SETFD, 0) }
    } else {
        // SAFETY: duplicating an open fd onto 3; dup2 clears CLOEXEC on the copy.
        unsafe { libc::dup2(fd, 3) }
    };
    if r == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Compiles a C program, statically, to `out` (inside a rootfs, say), with gcc.
pub fn compile_static(source: &str, out: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("prog.c");
    std::fs::write(&src, source).expect("write C source");
    let cc = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(out)
        .arg(&src)
        .output()
        .expect("gcc runs");
    assert!(
        cc.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
}

/// How a command run by [`run_bounded`] ended and what it printed.
#[derive(Debug)]
pub struct Bounded {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with stdin from /dev/null and stdout/stderr into files (a
/// container inherits them; files, unlike pipes, cannot keep us waiting for a
/// leaked holder), killing it after `timeout`, a generous upper bound.
pub fn run_bounded(mut cmd: Command, what: &str, timeout: std::time::Duration) -> Bounded {
    let out = tempfile::tempfile().expect("tempfile");
    let err = tempfile::tempfile().expect("tempfile");
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Bounded {
        code: status.code(),
        stdout: String::from_utf8_lossy(&read_all(out)).into_owned(),
        stderr: String::from_utf8_lossy(&read_all(err)).into_owned(),
    }
}

/// A private runc state root; force-deletes every container tracked in `ids`.
pub struct RuncRoot {
    pub root: tempfile::TempDir,
    pub ids: Vec<String>,
}

impl RuncRoot {
    pub fn new(prefix: &str) -> RuncRoot {
        RuncRoot {
            root: tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .expect("tempdir"),
            ids: Vec::new(),
        }
    }

    /// `runc --root <root>`, stdin from /dev/null.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("runc");
        c.arg("--root").arg(self.root.path());
        c.stdin(std::process::Stdio::null());
        c
    }
}

impl Drop for RuncRoot {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self
                .cmd()
                .args(["delete", "-f", id])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// Detaches every mount under `base`, deepest first (what a peer tool left).
pub fn unmount_under(base: &Path) {
    let base = base.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&base))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Debian's docker-registry on a free loopback port, killed on drop.
pub struct Registry {
    _dir: tempfile::TempDir,
    child: std::process::Child,
    pub port: u16,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn registry() -> Registry {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            dir.path().join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/setup.sh installs it)");
        let mut r = Registry {
            _dir: dir,
            child,
            port,
        };
        for _ in 0..200 {
            if let Ok(Some(_)) = r.child.try_wait() {
                break;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
    }
    panic!("docker-registry did not start");
}

/// A one-layer OCI layout of the host's static busybox (with a user `app`
/// and group `staff`), named `example.com/bb:1`, in `dir/bb`.
pub fn busybox_layout_in(dir: &Path) -> Option<PathBuf> {
    busybox_layout_with(
        dir,
        "bb",
        "example.com/bb:1",
        serde_json::json!({"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo \"hi $GREETING from $(pwd) as $(id -u):$(id -g)\""],
                   "Env": ["GREETING=there"], "WorkingDir": "/home/app", "User": "app:staff", "StopSignal": "SIGQUIT"}),
    )
}

/// The busybox layout of [`busybox_layout_in`] with image config `config`,
/// named `name`, in `dir/sub`.
pub fn busybox_layout_with(
    dir: &Path,
    sub: &str,
    name: &str,
    config: serde_json::Value,
) -> Option<PathBuf> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())?;
    let exe = std::fs::read(busybox).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let hdr = |kind: tar::EntryType, mode: u32, size: usize| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size as u64);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    for d in ["bin", "dev", "etc", "proc", "sys", "tmp", "home/app"] {
        b.append_data(
            &mut hdr(tar::EntryType::Directory, 0o755, 0),
            d,
            std::io::empty(),
        )
        .unwrap();
    }
    b.append_data(
        &mut hdr(tar::EntryType::Regular, 0o755, exe.len()),
        "bin/busybox",
        &exe[..],
    )
    .unwrap();
    b.append_link(
        &mut hdr(tar::EntryType::Symlink, 0o777, 0),
        "bin/sh",
        "busybox",
    )
    .unwrap();
    let passwd = b"root:x:0:0::/:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    b.append_data(
        &mut hdr(tar::EntryType::Regular, 0o644, passwd.len()),
        "etc/passwd",
        &passwd[..],
    )
    .unwrap();
    let group = b"root:x:0:\nstaff:x:50:\n";
    b.append_data(
        &mut hdr(tar::EntryType::Regular, 0o644, group.len()),
        "etc/group",
        &group[..],
    )
    .unwrap();
    let layer = b.into_inner().unwrap();
    let l = dir.join(sub);
    let ld = blob(&l, "application/vnd.oci.image.layer.v1.tar", &layer);
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]}});
    let cd = blob(
        &l,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cd, "layers": [ld]});
    let mut m = blob(
        &l,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    m["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
    std::fs::write(
        l.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [m]})).unwrap(),
    )
    .unwrap();
    std::fs::write(l.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    Some(l)
}

/// [`busybox_layout_in`] at exactly `layout` (which must not exist yet).
pub fn busybox_layout(layout: &Path) -> PathBuf {
    let parent = layout.parent().unwrap();
    let made = busybox_layout_in(parent).expect("busybox-static is installed");
    if made != layout {
        std::fs::rename(&made, layout).unwrap();
    }
    layout.to_path_buf()
}

/// `sha256:<hex>` of `data`.
pub fn sha(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Writes `data` as a blob of an OCI layout; returns its descriptor.
pub fn blob(layout: &Path, mt: &str, data: &[u8]) -> serde_json::Value {
    let d = sha(data);
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(layout.join("blobs/sha256").join(&d[7..]), data).unwrap();
    serde_json::json!({"mediaType": mt, "digest": d, "size": data.len()})
}

/// Runs `script` as root in a throwaway VM (`scripts/vm/run.sh`), with each
/// `(host, guest)` path copied in and `extra` options for run.sh; the guest's
/// console (without carriage returns) once it succeeded.
pub fn run_in_vm(includes: &[(&Path, &str)], extra: &[&str], script: &str) -> String {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut cmd = Command::new("bash");
    cmd.arg(repo.join("scripts/vm/run.sh"));
    for (host, guest) in includes {
        cmd.arg("--include")
            .arg(format!("{}:{guest}", host.display()));
    }
    let out = cmd
        .args(extra)
        .args(["--", "sh", "-c", script])
        .output()
        .expect("scripts/vm/run.sh runs");
    let console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    eprintln!("guest console:\n{console}");
    assert!(
        out.status.success(),
        "VM run failed ({}):\n{console}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    console
}

/// The console lines after `=== name` up to the next `===` line.
pub fn vm_section(console: &str, name: &str) -> String {
    console
        .split(&format!("=== {name}\n"))
        .nth(1)
        .and_then(|s| s.split("\n=== ").next())
        .unwrap_or_else(|| panic!("no {name} section:\n{console}"))
        .to_string()
}
