//! podman drives mini-runtime (`podman --runtime <mini-runtime>`, through
//! conmon): run, `--rm`, detached containers, logs, exec (also `-it`),
//! pause/unpause, stop, kill, rm, a memory and a pids limit, `podman stats`
//! and podman's default seccomp profile. podman 4.3 here runs with the flags
//! DEVELOPERS.md names (cgroupfs, file events, no network, the ulimits), on
//! its own storage and run roots, with an image imported from a busybox
//! tarball the test makes.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{bin_path, root_or_skip};

struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(self.dir.path().join("storage"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args([
                "--cgroup-manager=cgroupfs",
                "--events-backend=file",
                "--runtime",
                bin_path(),
            ]);
        c
    }

    fn out(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run podman")
    }

    /// Runs podman; its stdout, trimmed, or a panic naming what failed.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(
            o.status.success(),
            "podman {args:?}: {:?}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rm", "-fa", "-t", "0"]).output();
        let _ = self.cmd().args(["system", "reset", "-f"]).output();
        common::unmount_under(self.dir.path());
    }
}

const RUN: [&str; 3] = [
    "--network=none",
    "--ulimit=nofile=1024:1024",
    "--ulimit=nproc=1024:1024",
];

fn setup() -> Option<Podman> {
    if !root_or_skip("podman") {
        return None;
    }
    if Command::new("podman").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "podman is not installed (scripts/setup.sh installs it)"
        );
        eprintln!("skipping: podman is not installed");
        return None;
    }
    let p = Podman {
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let root: PathBuf = p.dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    for a in [
        "sh", "echo", "sleep", "cat", "true", "id", "tty", "grep", "head", "tr",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    let tar = p.dir.path().join("rootfs.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar")
        .success();
    assert!(ok);
    p.ok(&["import", tar.to_str().unwrap(), "localhost/mr-bb:t"]);
    Some(p)
}

fn run(p: &Podman, extra: &[&str], cmd: &[&str]) -> String {
    let mut args = vec!["run"];
    args.extend(RUN);
    args.extend_from_slice(extra);
    args.push("localhost/mr-bb:t");
    args.extend_from_slice(cmd);
    p.ok(&args)
}

/// Runs `podman <args>` on a pty (through `script`), as a user at a terminal.
fn on_a_tty(p: &Podman, args: &[&str]) -> (Option<i32>, String) {
    let mut line = format!(
        "podman --root {} --runroot {} --cgroup-manager=cgroupfs --events-backend=file --runtime {}",
        p.dir.path().join("storage").display(),
        p.dir.path().join("run").display(),
        bin_path()
    );
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    // stdin stays open (and silent) until the command is done: at EOF
    // `script` would end the session before the container's output is out.
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script (bsdutils)");
    let stdin = child.stdin.take();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    let status = child.wait().expect("wait for script");
    drop(stdin);
    (status.code(), out.replace('\r', ""))
}

#[test]
fn podman_runs_containers_with_mini_runtime() {
    let Some(p) = setup() else {
        return;
    };
    // run, --rm, the exit code.
    assert_eq!(run(&p, &["--rm"], &["echo", "hello"]), "hello");
    let o = p.out(&[
        "run",
        "--rm",
        RUN[0],
        RUN[1],
        RUN[2],
        "localhost/mr-bb:t",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7));
    // podman's default seccomp profile is installed.
    let status = run(&p, &["--rm"], &["grep", "Seccomp:", "/proc/self/status"]);
    assert!(status.ends_with('2'), "{status}");
    assert_eq!(
        run(
            &p,
            &["--rm", "--security-opt=seccomp=unconfined"],
            &["grep", "Seccomp:", "/proc/self/status"]
        )
        .chars()
        .last(),
        Some('0')
    );

    // A detached container with limits: logs, exec, stats, pause, stop, rm.
    let id = run(
        &p,
        &["-d", "--memory=64m", "--pids-limit=50"],
        &["sh", "-c", "echo started; exec sleep 1000"],
    );
    let id = id.lines().last().unwrap().to_string();
    let mut logs = String::new();
    for _ in 0..200 {
        logs = p.ok(&["logs", &id]);
        if !logs.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert_eq!(logs, "started");
    assert_eq!(
        p.ok(&["exec", &id, "sh", "-c", "echo in-exec; id -u"]),
        "in-exec\n0"
    );
    let (code, out) = on_a_tty(&p, &["exec", "-it", &id, "sh", "-c", "tty; exit 5"]);
    assert_eq!(code, Some(5), "{out}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    let stats = p.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}}|{{.PIDs}}",
        &id,
    ]);
    let (mem, pids) = stats.split_once('|').unwrap();
    assert!(mem.ends_with("/ 67.11MB"), "the memory limit in {stats:?}");
    assert_eq!(pids, "1", "{stats:?}");
    p.ok(&["pause", &id]);
    assert_eq!(
        p.ok(&[
            "ps",
            "-a",
            "--format",
            "{{.Status}}",
            "--filter",
            &format!("id={id}")
        ]),
        "Paused"
    );
    p.ok(&["unpause", &id]);
    p.ok(&["stop", "-t", "1", &id]);
    assert!(
        p.ok(&[
            "ps",
            "-a",
            "--format",
            "{{.Status}}",
            "--filter",
            &format!("id={id}")
        ])
        .starts_with("Exited")
    );
    p.ok(&["rm", &id]);

    // kill, and the exit code podman waits for.
    let id = run(&p, &["-d"], &["sleep", "1000"]);
    let id = id.lines().last().unwrap().to_string();
    p.ok(&["kill", &id]);
    assert_eq!(p.ok(&["wait", &id]), "137");
    p.ok(&["rm", &id]);

    // A terminal for run -it, and its exit code.
    let (code, out) = on_a_tty(
        &p,
        &[
            "run",
            "--rm",
            "-it",
            RUN[0],
            RUN[1],
            RUN[2],
            "localhost/mr-bb:t",
            "sh",
            "-c",
            "tty; exit 3",
        ],
    );
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("/dev/pts/0"), "{out:?}");

    // The pids limit holds inside: 30 background sleeps fork under a limit
    // of 100, and not under one of 10.
    let forks = |limit: &str| {
        p.out(&[
            "run",
            "--rm",
            RUN[0],
            RUN[1],
            RUN[2],
            limit,
            "localhost/mr-bb:t",
            "sh",
            "-c",
            "for i in $(busybox seq 1 30); do sleep 5 & done; echo done",
        ])
    };
    let o = forks("--pids-limit=100");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "done");
    let o = forks("--pids-limit=10");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("fork"),
        "{:?}: {err}",
        o.status
    );
}
