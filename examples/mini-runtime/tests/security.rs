//! Defences against known container-escape classes, one test each.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;

use common::{Bundle, Rt, root_or_skip, stderr, stdout, unique_id};
use serde_json::json;

/// CVE-2019-5736 class: while an init waits in `created` state it is a copy of the
/// runtime; a process in the same pid namespace must not reach the runtime binary
/// through `/proc/<pid>/exe`.
#[test]
fn runtime_binary_hidden_from_container() {
    if !root_or_skip("runtime_binary_hidden_from_container") {
        return;
    }
    let rt = Rt::new();
    let a = Bundle::new(&["sleep", "1000"]);
    let ida = unique_id("host");
    rt.run_detached(&a, &ida);
    let apid = rt.state(&ida)["pid"].as_i64().unwrap_or(0);
    let mut b = Bundle::new(&["true"]);
    let ns = b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    for n in ns.iter_mut() {
        if n["type"] == "pid" {
            n["path"] = json!(format!("/proc/{apid}/ns/pid"));
        }
    }
    b.save();
    let idb = unique_id("waiting");
    let out = rt.run(&["create", "-b", b.path().to_str().unwrap_or_default(), &idb]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bpid = rt.state(&idb)["pid"].as_i64().unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{bpid}/status")).unwrap_or_default();
    let inner = status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or("0")
        .to_string();
    assert_ne!(inner, "0");
    let before = std::fs::read(common::bin_path()).unwrap_or_default();
    let script = format!(
        "cat /proc/{inner}/exe > /dev/null && echo READ; echo x >> /proc/{inner}/exe && echo WROTE; exit 0"
    );
    let out = rt.run(&["exec", &ida, "sh", "-c", &script]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("READ"),
        "runtime binary readable from the container"
    );
    assert!(
        !stdout(&out).contains("WROTE"),
        "runtime binary writable from the container"
    );
    assert!(std::fs::read(common::bin_path()).unwrap_or_default() == before);
    assert!(rt.run(&["delete", "-f", &idb]).status.success());
    assert!(rt.run(&["delete", "-f", &ida]).status.success());
}

/// CVE-2024-21626 class: no fd of the caller leaks into the container.
#[test]
fn no_host_fd_leaks_into_container() {
    if !root_or_skip("no_host_fd_leaks_into_container") {
        return;
    }
    let rt = Rt::new();
    // A pipe without CLOEXEC, inherited by the runtime process.
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let b = Bundle::new(&["ls", "/proc/self/fd"]);
    let id = unique_id("fds");
    let out = rt.run(&["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
    for fd in fds {
        // SAFETY: closing the pipe this test opened.
        unsafe { libc::close(fd) };
    }
    assert!(out.status.success(), "{}", stderr(&out));
    let seen: Vec<String> = stdout(&out)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    // 0-2 are stdio; 3 is ls's own handle on /proc/self/fd.
    assert!(
        seen.iter()
            .all(|f| ["0", "1", "2", "3"].contains(&f.as_str())),
        "leaked fds: {seen:?}"
    );
}

/// CVE-2024-21626 class: a cwd reached through a preserved host fd is refused.
#[test]
fn cwd_outside_root_refused() {
    if !root_or_skip("cwd_outside_root_refused") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&["pwd"]);
    b.config["process"]["cwd"] = json!("/proc/self/fd/3");
    b.save();
    let host_dir = std::fs::File::open("/").expect("open /");
    let raw = host_dir.as_raw_fd();
    let id = unique_id("cwd");
    let mut cmd = rt.cmd();
    cmd.args([
        "create",
        "--preserve-fds",
        "1",
        "-b",
        b.path().to_str().unwrap_or_default(),
        &id,
    ]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: place_at_fd3 only calls async-signal-safe dup2/fcntl between fork and exec.
    unsafe {
        cmd.pre_exec(move || common::place_at_fd3(raw));
    }
    rt.track(&id);
    let out = cmd.output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "cwd outside the root must be refused"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cwd"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!rt.root.path().join(&id).exists());

    // The same through `exec --cwd`, which has no rootfs step: chdir follows the
    // magic link out of the root, and the getcwd check refuses it.
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("cwdexec");
    rt.run_detached(&b, &id);
    let mut cmd = rt.cmd();
    cmd.args([
        "exec",
        "--preserve-fds",
        "1",
        "--cwd",
        "/proc/self/fd/3",
        &id,
        "pwd",
    ]);
    // SAFETY: place_at_fd3 only calls async-signal-safe dup2/fcntl between fork and exec.
    unsafe {
        cmd.pre_exec(move || common::place_at_fd3(raw));
    }
    let out = cmd.output().expect("exec");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exec with a cwd outside the root must be refused: {err}"
    );
    assert!(err.contains("cwd is outside the container root"), "{err}");
    assert!(rt.run(&["delete", "-f", &id]).status.success());
}

/// CVE-2025-31133 class: a /dev/null symlink in the image does not redirect masking.
#[test]
fn symlinked_dev_null_does_not_redirect_masking() {
    if !root_or_skip("symlinked_dev_null_does_not_redirect_masking") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "stat -c '%F %t %T' /proc/keys; echo pwned > /proc/keys; echo done",
    ]);
    // No tmpfs on /dev: the image's own /dev is used, with a hostile null.
    if let Some(m) = b.config["mounts"].as_array_mut() {
        m.retain(|m| {
            m["destination"] != "/dev"
                && !m["destination"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("/dev/")
        });
    }
    b.save();
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", b.rootfs().join("dev/null"))
        .expect("symlink");
    let before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    let id = unique_id("mask");
    let out = rt.run(&["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("character special file 1 3"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default(),
        before
    );
}

/// CVE-2025-52881 class: sysctl writes cannot be redirected by a mount over /proc/sys.
#[test]
fn sysctl_write_not_redirected_by_mount() {
    if !root_or_skip("sysctl_write_not_redirected_by_mount") {
        return;
    }
    let rt = Rt::new();
    let victim_dir = tempfile::tempdir().expect("tempdir");
    let victim = victim_dir.path().join("victim");
    std::fs::write(&victim, "orig\n").expect("write");
    let mut b = Bundle::new(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    b.config["linux"]["readonlyPaths"] = json!([]);
    if let Some(m) = b.config["mounts"].as_array_mut() {
        m.push(json!({"destination": "/proc/sys/net/ipv4/ip_forward", "type": "bind", "source": victim, "options": ["bind"]}));
    }
    b.save();
    let id = unique_id("sysctl");
    let out = rt.run(&["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap_or_default(),
        "orig\n",
        "sysctl write went to the bind-mounted host file"
    );
}

/// A symlinked /proc in the image must not move the proc mount.
#[test]
fn symlinked_proc_refused() {
    if !root_or_skip("symlinked_proc_refused") {
        return;
    }
    let rt = Rt::new();
    let b = Bundle::new(&["true"]);
    std::fs::remove_dir(b.rootfs().join("proc")).expect("rmdir");
    std::fs::create_dir(b.rootfs().join("elsewhere")).expect("mkdir");
    std::os::unix::fs::symlink("/elsewhere", b.rootfs().join("proc")).expect("symlink");
    let id = unique_id("procsym");
    let out = rt.run(&["create", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("symlink"), "{}", stderr(&out));
    assert!(!rt.root.path().join(&id).exists());
}

/// A symlink in the image never sends a bind mount outside the rootfs.
#[test]
fn mount_destination_symlink_stays_inside_root() {
    if !root_or_skip("mount_destination_symlink_stays_inside_root") {
        return;
    }
    let rt = Rt::new();
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::write(src.path().join("marker"), "m").expect("write");
    let outside = tempfile::tempdir().expect("tempdir");
    let mut b = Bundle::new(&["ls", "/escape/data"]);
    // /escape -> an absolute host path: resolved inside the root it is /<that path> in the rootfs.
    std::os::unix::fs::symlink(outside.path(), b.rootfs().join("escape")).expect("symlink");
    let inside_target = b
        .rootfs()
        .join(outside.path().strip_prefix("/").unwrap_or(outside.path()));
    std::fs::create_dir_all(&inside_target).expect("mkdir");
    if let Some(m) = b.config["mounts"].as_array_mut() {
        m.push(json!({"destination": "/escape/data", "type": "bind", "source": src.path(), "options": ["rbind", "ro"]}));
    }
    b.save();
    let id = unique_id("symmount");
    let out = rt.run(&["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "marker");
    assert!(
        !outside.path().join("data").exists(),
        "mount target was created outside the rootfs"
    );
    let inside = b
        .rootfs()
        .join(outside.path().strip_prefix("/").unwrap_or(outside.path()))
        .join("data");
    assert!(
        inside.exists(),
        "target should have been created inside the rootfs"
    );
}

/// A mount destination under a dangling symlink is created at the link's target, inside the root.
#[test]
fn dangling_symlink_destination_created_inside_root() {
    if !root_or_skip("dangling_symlink_destination_created_inside_root") {
        return;
    }
    let rt = Rt::new();
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::write(src.path().join("marker"), "m").expect("write");
    let mut b = Bundle::new(&["ls", "/abs/data", "/rel/data"]);
    let host_target = tempfile::tempdir().expect("tempdir");
    std::fs::remove_dir(host_target.path()).expect("rmdir");
    // Absolute: must land in the rootfs, not at the host path of the same name.
    std::os::unix::fs::symlink(host_target.path(), b.rootfs().join("abs")).expect("symlink");
    std::os::unix::fs::symlink("../made/here", b.rootfs().join("rel")).expect("symlink");
    if let Some(m) = b.config["mounts"].as_array_mut() {
        for d in ["/abs/data", "/rel/data"] {
            m.push(json!({"destination": d, "type": "bind", "source": src.path(), "options": ["rbind"]}));
        }
    }
    b.save();
    let id = unique_id("dangling");
    let out = rt.run(&["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Vec<_> = stdout(&out)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(listed, ["/abs/data:", "marker", "/rel/data:", "marker"]);
    assert!(!host_target.path().exists(), "created on the host");
    let inside = b
        .rootfs()
        .join(
            host_target
                .path()
                .strip_prefix("/")
                .unwrap_or(host_target.path()),
        )
        .join("data");
    assert!(inside.is_dir());
    assert!(b.rootfs().join("made/here/data").is_dir());
}

/// The attacker for `runtime_binary_never_writable_from_container`: a tight
/// loop over `/proc` that opens every other process's `exe`, as a container
/// process holding CAP_SYS_PTRACE may even while the runtime is not dumpable.
/// Reaching the host binary's inode is recorded in HITS (the CVE-2019-5736
/// precondition: that fd can be reopened for writing once the runtime exits),
/// and so is any view of the same size that reopens for writing. It counts the
/// runtime copies it saw in SEEN, which shows it watched them.
const EXE_WATCHER: &str = r#"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 6) return 2;
    unsigned long dev = strtoul(argv[1], 0, 10), ino = strtoul(argv[2], 0, 10);
    long size = atol(argv[3]);
    const char *hits = argv[4], *seen_path = argv[5];
    pid_t self = getpid();
    unsigned long seen = 0;
    char path[64], count[32];
    /* Rewritten in place, never truncated, so a reader never sees it empty. */
    int seen_fd = open(seen_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (seen_fd < 0) return 4;
    for (;;) {
        DIR *d = opendir("/proc");
        if (!d) return 3;
        struct dirent *e;
        while ((e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 1 || pid == self) continue;
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) continue;
            struct stat st;
            if (fstat(fd, &st) == 0 && st.st_size == size) {
                seen++;
                const char *what = 0;
                if (st.st_dev == dev && st.st_ino == ino) {
                    what = "the host binary's inode";
                } else {
                    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
                    int w = open(path, O_WRONLY | O_CLOEXEC);
                    if (w >= 0) { what = "a view of it, for writing"; close(w); }
                }
                if (what) {
                    FILE *f = fopen(hits, "a");
                    if (f) { fprintf(f, "pid %d: reached %s\n", pid, what); fclose(f); }
                }
            }
            close(fd);
        }
        closedir(d);
        int n = snprintf(count, sizeof count, "%lu\n", seen);
        if (pwrite(seen_fd, count, n, 0) != n) return 5;
    }
}
"#;

/// CVE-2019-5736: while a container's init is set up, and while an exec'd
/// process is, each is a copy of the runtime. A container process with
/// CAP_SYS_PTRACE racing through `/proc/*/exe` must never reach the host's
/// runtime binary nor a writable view of it: 500 inits created into its pid
/// namespace and 500 execs into its container.
#[test]
fn runtime_binary_never_writable_from_container() {
    if !root_or_skip("runtime_binary_never_writable_from_container") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let rt = Rt::new();
    let mut b = Bundle::new(&["/watcher"]);
    let runtime = std::fs::read(common::bin_path()).expect("read runtime binary");
    let meta = std::fs::metadata(common::bin_path()).expect("stat runtime binary");
    common::compile_static(EXE_WATCHER, &b.rootfs().join("watcher"));
    b.config["process"]["args"] = json!([
        "/watcher",
        meta.dev().to_string(),
        meta.ino().to_string(),
        meta.len().to_string(),
        "/tmp/hits",
        "/tmp/seen"
    ]);
    let all: Vec<String> = oci_runtime_caps();
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set] = json!(all);
    }
    b.config["process"]["noNewPrivileges"] = json!(false);
    b.save();
    let id = unique_id("exe-watch");
    rt.run_detached(&b, &id);
    let wpid = rt.state(&id)["pid"].as_i64().unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{wpid}/status")).unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    assert!(
        eff & (1 << 19) != 0,
        "the watcher lacks CAP_SYS_PTRACE:\n{status}"
    );

    // Inits created into the watcher's pid namespace, each torn down again.
    let mut joined = Bundle::new(&["true"]);
    if let Some(ns) = joined.config["linux"]["namespaces"].as_array_mut() {
        for n in ns.iter_mut() {
            if n["type"] == "pid" {
                n["path"] = json!(format!("/proc/{wpid}/ns/pid"));
            }
        }
    }
    joined.save();
    let joined_path = joined.path().to_str().unwrap_or_default().to_string();
    for i in 0..500 {
        let cid = format!("{id}-c{i}");
        let out = rt.run(&["create", "-b", &joined_path, &cid]);
        assert!(out.status.success(), "create: {}", stderr(&out));
        assert!(rt.run(&["delete", "-f", &cid]).status.success());
    }
    for _ in 0..500 {
        let out = rt.run(&["exec", &id, "true"]);
        assert!(out.status.success(), "exec: {}", stderr(&out));
    }
    let hits = std::fs::read_to_string(b.rootfs().join("tmp/hits")).unwrap_or_default();
    assert!(
        hits.is_empty(),
        "the container reached the runtime binary:\n{hits}"
    );
    assert!(
        std::fs::read(common::bin_path()).expect("read runtime binary") == runtime,
        "runtime binary changed"
    );
    let seen = std::fs::read_to_string(b.rootfs().join("tmp/seen"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    eprintln!("the watcher opened {seen} runtime copies");
    assert!(seen > 0, "the watcher saw none of the runtime's copies");
    assert!(rt.run(&["delete", "-f", &id]).status.success());
}

/// Every capability this process's bounding set holds, by name.
fn oci_runtime_caps() -> Vec<String> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let out = std::process::Command::new(common::bin_path())
        .arg("features")
        .output()
        .expect("features");
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).expect("features json");
    f["linux"]["capabilities"]
        .as_array()
        .map(|a| {
            a.iter()
                .enumerate()
                .filter(|(i, _)| *i < 64 && bounding & (1 << i) != 0)
                .filter_map(|(_, c)| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
