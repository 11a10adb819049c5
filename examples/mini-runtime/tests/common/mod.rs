//! Helpers for the end-to-end tests: busybox bundles in temp dirs, a private
//! state root, and a guard that force-deletes the container whatever happens.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

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
