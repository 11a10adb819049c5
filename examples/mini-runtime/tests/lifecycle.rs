//! End-to-end lifecycle: the commands and flags runc's users drive.

mod common;

use common::{Bundle, Rt, root_or_skip, stderr, stdout, unique_id};

#[test]
fn run_foreground_returns_exit_code_and_cleans_up() {
    if !root_or_skip("run_foreground_returns_exit_code_and_cleans_up") {
        return;
    }
    let rt = Rt::new();
    let b = Bundle::new(&["sh", "-c", "echo out; echo err >&2; exit 7"]);
    let id = unique_id("run");
    let out = rt.run(&[
        "run",
        "--bundle",
        b.path().to_str().unwrap_or_default(),
        &id,
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "out\n");
    assert!(stderr(&out).contains("err"));
    assert!(!rt.root.path().join(&id).exists(), "state left behind");
    let out = rt.run(&["state", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn run_keep_leaves_stopped_state() {
    if !root_or_skip("run_keep_leaves_stopped_state") {
        return;
    }
    let rt = Rt::new();
    let b = Bundle::new(&["true"]);
    let id = unique_id("keep");
    let out = rt.run(&[
        "run",
        "--keep",
        "-b",
        b.path().to_str().unwrap_or_default(),
        &id,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rt.state(&id)["status"], "stopped");
    assert!(rt.run(&["delete", &id]).status.success());
}

#[test]
fn create_start_state_kill_delete() {
    if !root_or_skip("create_start_state_kill_delete") {
        return;
    }
    let rt = Rt::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("life");
    let pidfile = b.path().join("init.pid");
    let out = rt.run(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap_or_default(),
        "--pid-file",
        pidfile.to_str().unwrap_or_default(),
        &id,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let st = rt.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    let pid = st["pid"].as_i64().unwrap_or(0);
    assert!(pid > 0);
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap_or_default(),
        pid.to_string()
    );
    assert_eq!(st["bundle"], b.path().to_str().unwrap_or_default());
    // The payload has not run yet: the init still waits.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_ne!(comm.trim(), "sleep");

    let out = rt.run(&["start", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rt.state(&id)["status"], "running");
    let out = rt.run(&["start", &id]);
    assert_eq!(out.status.code(), Some(1), "second start must fail");

    let out = rt.run(&["delete", &id]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "delete of a running container needs --force"
    );
    assert!(stderr(&out).contains("running"), "{}", stderr(&out));

    let out = rt.run(&["kill", &id, "KILL"]);
    assert!(out.status.success(), "{}", stderr(&out));
    rt.wait_status(&id, "stopped");
    let out = rt.run(&["kill", &id, "9"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "kill of a stopped container fails"
    );
    // runc's words, which containerd's shim and CRI-O match on.
    assert!(
        stderr(&out).contains("container not running"),
        "{}",
        stderr(&out)
    );
    // `kill --all` of a stopped container signals what is left and succeeds,
    // as runc's does: the shim sends it when an init exits.
    let out = rt.run(&["kill", "--all", &id, "9"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rt.run(&["delete", &id]).status.success());
    assert!(!rt.root.path().join(&id).exists());
}

#[test]
fn delete_created_container_and_force_running() {
    if !root_or_skip("delete_created_container_and_force_running") {
        return;
    }
    let rt = Rt::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let a = unique_id("delc");
    assert!(
        rt.run(&["create", "-b", b.path().to_str().unwrap_or_default(), &a])
            .status
            .success()
    );
    let pid = rt.state(&a)["pid"].as_i64().unwrap_or(0);
    assert!(
        rt.run(&["delete", &a]).status.success(),
        "created containers delete without --force"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/ns")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
    );

    let c = unique_id("delf");
    let out = rt.run(&["run", "-d", "-b", b.path().to_str().unwrap_or_default(), &c]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rt.run(&["delete", "--force", &c]).status.success());
    assert!(!rt.root.path().join(&c).exists());
    // runc: --force on a missing container is not an error.
    assert!(rt.run(&["delete", "--force", &c]).status.success());
}

#[test]
fn kill_all_and_ps_list() {
    if !root_or_skip("kill_all_and_ps_list") {
        return;
    }
    let rt = Rt::new();
    let b = Bundle::new(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    let id = unique_id("ps");
    let out = rt.run(&[
        "run",
        "--detach",
        "--bundle",
        b.path().to_str().unwrap_or_default(),
        &id,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut pids: Vec<i64> = Vec::new();
    for _ in 0..1000 {
        let out = rt.run(&["ps", "--format", "json", &id]);
        assert!(out.status.success(), "{}", stderr(&out));
        pids = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if pids.len() == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(pids.len(), 3, "sh and two sleeps: {pids:?}");
    let out = rt.run(&["ps", &id]);
    assert!(
        stdout(&out)
            .lines()
            .next()
            .unwrap_or_default()
            .contains("PID")
    );
    assert_eq!(stdout(&out).lines().count(), 4, "{}", stdout(&out));

    let out = rt.run(&["list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(list.as_array().map(|a| a.len()), Some(1));
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "running");
    let out = rt.run(&["list", "-q"]);
    assert_eq!(stdout(&out).trim(), id);
    let out = rt.run(&["list"]);
    assert!(stdout(&out).starts_with("ID"));

    let out = rt.run(&["kill", "--all", &id, "KILL"]);
    assert!(out.status.success(), "{}", stderr(&out));
    rt.wait_status(&id, "stopped");
    for p in pids {
        let alive =
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| !s.contains(") Z"));
        assert!(!alive, "{p} survived kill --all");
    }
    assert!(rt.run(&["delete", &id]).status.success());
}

#[test]
fn exec_with_flags() {
    if !root_or_skip("exec_with_flags") {
        return;
    }
    let rt = Rt::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("exec");
    rt.run_detached(&b, &id);
    let out = rt.run(&["exec", &id, "hostname"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "mini-runtime");
    let out = rt.run(&[
        "exec",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1001",
        &id,
        "sh",
        "-c",
        "echo $FOO $(pwd) $(id -u) $(id -g)",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "bar /tmp 1000 1001");
    let out = rt.run(&["exec", &id, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let out = rt.run(&[
        "exec",
        "--cap",
        "CAP_SYS_ADMIN",
        "--no-new-privs",
        &id,
        "grep",
        "-E",
        "CapEff|NoNewPrivs",
        "/proc/self/status",
    ]);
    let text = stdout(&out);
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    let eff = text
        .lines()
        .find(|l| l.starts_with("CapEff"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    assert!(eff & (1 << 21) != 0, "CAP_SYS_ADMIN not added: {text}");
    // Same pid namespace as the init: it sees pid 1.
    let out = rt.run(&["exec", &id, "cat", "/proc/1/cmdline"]);
    assert!(stdout(&out).starts_with("sleep"), "{}", stdout(&out));

    let pf = b.path().join("exec.pid");
    let proc_json = b.path().join("process.json");
    let mut p = b.config["process"].clone();
    p["args"] = serde_json::json!(["sleep", "1000"]);
    std::fs::write(&proc_json, p.to_string()).unwrap_or_default();
    let out = rt.run(&[
        "exec",
        "--detach",
        "--pid-file",
        pf.to_str().unwrap_or_default(),
        "--process",
        proc_json.to_str().unwrap_or_default(),
        &id,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pid: i32 = std::fs::read_to_string(&pf)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(pid > 0);
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim(),
        "sleep"
    );

    let out = rt.run(&["exec", &id, "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent"), "{}", stderr(&out));
    assert!(rt.run(&["delete", "-f", &id]).status.success());
    let out = rt.run(&["exec", &id, "true"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exec into a deleted container fails"
    );
}

#[test]
fn log_json_in_runc_format() {
    let rt = Rt::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log.json");
    let out = rt
        .cmd()
        .args(["--log"])
        .arg(&log)
        .args(["--log-format", "json", "state", "no-such-container"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no-such-container"));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let line: serde_json::Value =
        serde_json::from_str(text.lines().last().unwrap_or_default()).unwrap_or_default();
    assert_eq!(line["level"], "error");
    assert!(
        line["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("does not exist")
    );
    assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z')));
}

#[test]
fn features_and_spec() {
    let rt = Rt::new();
    let out = rt.run(&["features"]);
    assert!(out.status.success());
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    assert_eq!(f["linux"]["apparmor"]["enabled"], true);
    assert!(
        f["linux"]["namespaces"]
            .as_array()
            .is_some_and(|n| n.len() == 8)
    );
    assert!(f["hooks"].as_array().is_some_and(|h| h.len() == 6));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = rt
        .cmd()
        .args(["spec", "--rootless", "--bundle"])
        .arg(dir.path())
        .output()
        .expect("spec");
    assert!(out.status.success(), "{}", stderr(&out));
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap_or_default())
            .unwrap_or_default();
    assert!(
        c["linux"]["resources"].is_null(),
        "rootless: no cgroup limits"
    );
    assert!(c["linux"]["seccomp"].is_null());
    assert!(c["linux"]["uidMappings"].is_array());
    // runc >= 1.1.2's default: no inheritable set (CVE-2022-29162), a terminal.
    assert!(c["process"]["capabilities"]["inheritable"].is_null(), "{c}");
    assert!(c["process"]["capabilities"]["ambient"].is_array(), "{c}");
    assert_eq!(c["process"]["terminal"], true);
    let out = rt
        .cmd()
        .args(["spec", "--bundle"])
        .arg(dir.path())
        .output()
        .expect("spec");
    assert_eq!(out.status.code(), Some(1), "spec refuses to overwrite");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = rt
        .cmd()
        .args(["spec", "--bundle"])
        .arg(dir.path())
        .output()
        .expect("spec");
    assert!(out.status.success(), "{}", stderr(&out));
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(
        c["linux"]["resources"],
        serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]}),
        "runc's default device rule"
    );
    assert!(c["linux"]["seccomp"].is_null(), "no profile unless asked");
    // `--seccomp`: the built-in default profile, for runc's capabilities.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = rt
        .cmd()
        .args(["spec", "--seccomp", "--bundle"])
        .arg(dir.path())
        .output()
        .expect("spec");
    assert!(out.status.success(), "{}", stderr(&out));
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap_or_default())
            .unwrap_or_default();
    let s = &c["linux"]["seccomp"];
    assert_eq!(s["defaultAction"], "SCMP_ACT_ERRNO", "{s}");
    assert_eq!(s["defaultErrnoRet"], 1, "{s}");
    assert_eq!(
        s["architectures"],
        serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    );
    let allowed = |name: &str| {
        s["syscalls"].as_array().is_some_and(|rules| {
            rules.iter().any(|r| {
                r["action"] == "SCMP_ACT_ALLOW"
                    && r["args"].is_null()
                    && r["names"]
                        .as_array()
                        .is_some_and(|n| n.iter().any(|n| n == name))
            })
        })
    };
    assert!(allowed("read") && allowed("kill"), "{s}");
    assert!(
        !allowed("mount") && !allowed("clone"),
        "no CAP_SYS_ADMIN: {s}"
    );
    let out = rt
        .cmd()
        .args(["--systemd-cgroup", "list"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("systemd"));
    let out = rt.cmd().arg("--version").output().expect("run");
    assert!(out.status.success());
    let version = stdout(&out);
    let mut lines = version.lines();
    assert_eq!(
        lines.next(),
        Some(concat!("mini-runtime version ", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(lines.next(), Some("spec: 1.2.0"), "{version}");

    // No command: usage on stderr and a failing status, not a silent success.
    let out = rt.cmd().output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Usage: mini-runtime"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_forwards_signals_to_the_container() {
    if !root_or_skip("run_forwards_signals_to_the_container") {
        return;
    }
    let rt = Rt::new();
    let b = Bundle::new(&[
        "sh",
        "-c",
        "trap 'exit 9' TERM; echo up > /tmp/ready; while true; do sleep 1; done",
    ]);
    let id = unique_id("sig");
    rt.track(&id);
    let mut child = rt
        .cmd()
        .args(["run", "-b", b.path().to_str().unwrap_or_default(), &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn run");
    let ready = b.rootfs().join("tmp/ready");
    for _ in 0..2000 {
        if ready.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(ready.exists(), "container never came up");
    // SAFETY: signalling the runtime process this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    assert_eq!(
        status.code(),
        Some(9),
        "SIGTERM reached the container's trap"
    );
    assert!(!rt.root.path().join(&id).exists());
}

#[test]
fn debug_log_in_text_format() {
    let rt = Rt::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log.txt");
    let out = rt
        .cmd()
        .arg("--debug")
        .arg("--log")
        .arg(&log)
        .args(["list"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("level=debug msg="), "{text}");
    assert!(text.starts_with("time=\""), "{text}");
}

#[test]
fn each_container_gets_its_own_session_keyring() {
    if !root_or_skip("each_container_gets_its_own_session_keyring") {
        return;
    }
    let rt = Rt::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let with = unique_id("keyring");
    let without = unique_id("nokeyring");
    assert!(
        rt.run(&["create", "-b", b.path().to_str().unwrap_or_default(), &with])
            .status
            .success()
    );
    let out = rt.run(&[
        "create",
        "--no-new-keyring",
        "-b",
        b.path().to_str().unwrap_or_default(),
        &without,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // /proc/keys lists keyrings by description: the new one is named after the container.
    let keys = std::fs::read_to_string("/proc/keys").unwrap_or_default();
    assert!(
        keys.lines().any(|l| l.ends_with(&format!("{with}: empty"))),
        "{keys}"
    );
    assert!(!keys.contains(&without), "{keys}");
    assert!(rt.run(&["delete", &with]).status.success());
    assert!(rt.run(&["delete", &without]).status.success());
}

#[test]
fn preserve_fds_passes_caller_fds() {
    if !root_or_skip("preserve_fds_passes_caller_fds") {
        return;
    }
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let rt = Rt::new();
    let b = Bundle::new(&["sleep", "1000"]);
    let id = unique_id("fds");
    rt.run_detached(&b, &id);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("passed");
    std::fs::write(&file, "through fd 3\n").expect("write");
    let f = std::fs::File::open(&file).expect("open");
    let raw = f.as_raw_fd();
    let mut cmd = rt.cmd();
    cmd.args(["exec", "--preserve-fds", "1", &id, "cat", "/proc/self/fd/3"]);
    // SAFETY: place_at_fd3 only calls async-signal-safe dup2/fcntl between fork and exec.
    unsafe {
        cmd.pre_exec(move || common::place_at_fd3(raw));
    }
    let out = cmd.output().expect("exec");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "through fd 3\n");
    // Without --preserve-fds the same fd does not reach the process.
    let mut cmd = rt.cmd();
    cmd.args(["exec", &id, "cat", "/proc/self/fd/3"]);
    // SAFETY: as above.
    unsafe {
        cmd.pre_exec(move || common::place_at_fd3(raw));
    }
    let out = cmd.output().expect("exec");
    assert!(!out.status.success());
    assert!(rt.run(&["delete", "-f", &id]).status.success());
}

/// A host that ignores or blocks signals (a CRI server, a shell's `trap ''`)
/// does not pass that on: the payload starts with every disposition at its
/// default and an empty signal mask.
#[test]
fn ignored_and_blocked_signals_of_the_host_are_reset() {
    if !root_or_skip("ignored_and_blocked_signals_of_the_host_are_reset") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let rt = Rt::new();
    let b = Bundle::new(&["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]);
    let id = unique_id("signals");
    rt.track(&id);
    let mut cmd = rt.cmd();
    cmd.args(["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls (signal, sigprocmask) on this process.
    unsafe {
        cmd.pre_exec(|| {
            // Some the child always reset, some it once left alone (ALRM, TTOU, a realtime one).
            for sig in [
                libc::SIGTERM,
                libc::SIGHUP,
                libc::SIGUSR1,
                libc::SIGALRM,
                libc::SIGTTOU,
                libc::SIGRTMIN() + 5,
            ] {
                libc::signal(sig, libc::SIG_IGN);
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR2);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let out = cmd.output().expect("run mini-runtime");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("SigIgn:\t0000000000000000"), "{text}");
    assert!(text.contains("SigBlk:\t0000000000000000"), "{text}");
}
