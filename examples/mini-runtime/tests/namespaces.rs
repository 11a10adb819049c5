//! Namespaces, rootfs options and process settings, seen from inside the container.

mod common;

use common::{Bundle, Rt, root_or_skip, stderr, stdout, unique_id};
use serde_json::json;

fn run_ok(rt: &Rt, b: &Bundle, extra: &[&str]) -> String {
    let id = unique_id("ns");
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-b", b.path().to_str().unwrap_or_default(), &id]);
    let out = rt.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn user_namespace_with_mappings() {
    if !root_or_skip("user_namespace_with_mappings") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&["sh", "-c", "id -u; cat /proc/self/uid_map; ls -l /dev/null"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("ns")
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // A user namespace cannot mount a fresh sysfs of the host's network namespace, but it has its own here.
    b.save();
    let out = run_ok(&rt, &b, &[]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"));
    let map: Vec<_> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(map, ["0", "100000", "65536"]);
    assert!(
        lines.next().unwrap_or_default().starts_with("crw-rw-rw-"),
        "{out}"
    );
}

#[test]
fn join_namespaces_by_path_and_hostname() {
    if !root_or_skip("join_namespaces_by_path_and_hostname") {
        return;
    }
    let rt = Rt::new();
    let mut a = Bundle::new(&["sleep", "1000"]);
    a.config["hostname"] = json!("pod-a");
    a.config["domainname"] = json!("example.test");
    a.save();
    let ida = unique_id("pod");
    rt.run_detached(&a, &ida);
    let apid = rt.state(&ida)["pid"].as_i64().unwrap_or(0);
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "hostname; cat /proc/sys/kernel/domainname; readlink /proc/self/ns/net",
    ]);
    b.config.as_object_mut().expect("obj").remove("hostname");
    for n in b.config["linux"]["namespaces"].as_array_mut().expect("ns") {
        if n["type"] == "uts" || n["type"] == "network" || n["type"] == "ipc" {
            let name = match n["type"].as_str() {
                Some("uts") => "uts",
                Some("network") => "net",
                _ => "ipc",
            };
            n["path"] = json!(format!("/proc/{apid}/ns/{name}"));
        }
    }
    b.save();
    let out = run_ok(&rt, &b, &[]);
    let net = std::fs::read_link(format!("/proc/{apid}/ns/net")).unwrap_or_default();
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(
        lines,
        ["pod-a", "example.test", net.to_str().unwrap_or_default()]
    );
    assert!(rt.run(&["delete", "-f", &ida]).status.success());
}

#[test]
fn sysctl_rlimits_umask_and_readonly_paths() {
    if !root_or_skip("sysctl_rlimits_umask_and_readonly_paths") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "cat /proc/sys/net/ipv4/ip_forward; ulimit -n; umask; echo 1 > /proc/sys/kernel/ctrl-alt-del 2>/dev/null && echo WRITABLE; stat -c %t,%T /proc/keys; touch /ro 2>/dev/null && echo RW; cat /proc/self/oom_score_adj; grep -E 'CapBnd|NoNewPrivs' /proc/self/status; echo ok",
    ]);
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 256, "soft": 200}]);
    b.config["process"]["user"]["umask"] = json!(0o027);
    b.config["root"]["readonly"] = json!(true);
    b.config["process"]["oomScoreAdj"] = json!(500);
    b.config["process"]["noNewPrivileges"] = json!(true);
    b.save();
    let out = run_ok(&rt, &b, &[]);
    let lines: Vec<_> = out.lines().collect();
    // The default spec keeps CAP_AUDIT_WRITE, CAP_KILL and CAP_NET_BIND_SERVICE.
    assert_eq!(
        lines,
        [
            "1",
            "200",
            "0027",
            "1,3",
            "500",
            "CapBnd:\t0000000020000420",
            "NoNewPrivs:\t1",
            "ok"
        ],
        "{out}"
    );
}

#[test]
fn no_pivot_and_devices() {
    if !root_or_skip("no_pivot_and_devices") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "stat -c '%F %t,%T %a' /dev/mydev /dev/sub/fifo; ls /dev/fd/ > /dev/null && echo fdlink",
    ]);
    b.config["linux"]["devices"] = json!([
        {"path": "/dev/mydev", "type": "c", "major": 1, "minor": 7, "fileMode": 0o600},
        {"path": "/dev/sub/fifo", "type": "p", "major": 0, "minor": 0}
    ]);
    b.save();
    let out = run_ok(&rt, &b, &["--no-pivot"]);
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(
        lines,
        ["character special file 1,7 600", "fifo 0,0 666", "fdlink"],
        "{out}"
    );
}

#[test]
fn time_namespace_offsets() {
    if !root_or_skip("time_namespace_offsets") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&["cat", "/proc/uptime"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("ns")
        .push(json!({"type": "time"}));
    b.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 864000000, "nanosecs": 0}});
    b.save();
    let out = run_ok(&rt, &b, &[]);
    let up: f64 = out
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    assert!(up >= 864000000.0, "uptime {up} lacks the boottime offset");
}

#[test]
fn all_hooks_run_with_state_on_stdin() {
    if !root_or_skip("all_hooks_run_with_state_on_stdin") {
        return;
    }
    let rt = Rt::new();
    let logs = tempfile::tempdir().expect("tempdir");
    let mut b = Bundle::new(&["true"]);
    let host_hook = |name: &str| {
        let file = logs.path().join(name);
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", file.display())], "timeout": 30})
    };
    // startContainer runs in the container after pivot_root: it uses the rootfs's sh and /tmp.
    b.config["hooks"] = json!({
        "prestart": [host_hook("prestart")],
        "createRuntime": [host_hook("createRuntime")],
        "createContainer": [host_hook("createContainer")],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/startContainer"]}],
        "poststart": [host_hook("poststart")],
        "poststop": [host_hook("poststop")],
    });
    b.save();
    let id = unique_id("hooks");
    let out = rt.run(&["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&p).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    for (name, status) in [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("createContainer", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let s = read(logs.path().join(name));
        assert_eq!(s["id"], id.as_str(), "{name}");
        assert_eq!(s["status"], status, "{name}");
        assert_eq!(s["bundle"], b.path().to_str().unwrap_or_default(), "{name}");
    }
    let s = read(b.rootfs().join("tmp/startContainer"));
    assert_eq!(s["id"], id.as_str());
    assert!(s["pid"].as_i64().unwrap_or(0) > 0);
}

#[test]
fn io_priority_scheduler_and_personality() {
    if !root_or_skip("io_priority_scheduler_and_personality") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "ionice; grep -E '^policy' /proc/self/sched | tr -d ' '; cut -d' ' -f19 /proc/self/stat; uname -m",
    ]);
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    b.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 5});
    b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    b.save();
    let out = run_ok(&rt, &b, &[]);
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines, ["idle", "policy:3", "5", "i686"], "{out}");
}

#[test]
fn apparmor_profile_needs_apparmor() {
    if !root_or_skip("apparmor_profile_needs_apparmor") {
        return;
    }
    let rt = Rt::new();
    let run = |profile: &str, args: &[&str]| {
        let mut b = Bundle::new(args);
        b.config["process"]["apparmorProfile"] = json!(profile);
        b.save();
        let id = unique_id("aa");
        let out = rt.run(&["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
        (id, out)
    };
    let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    let (id, out) = run("unconfined", &["cat", "/proc/self/attr/current"]);
    if enabled {
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out).trim(), "unconfined");
        // "unconfined" is also what an ignored profile would give; a
        // profile the kernel does not know must stop the start, which only
        // a profile actually handed to the kernel does.
        let missing = "mini-runtime-test-not-loaded";
        let (_, out) = run(missing, &["true"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("applying AppArmor profile") && err.contains(missing),
            "{err}"
        );
    } else {
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("process.apparmorProfile") && err.contains("not enabled"),
            "{err}"
        );
        // Refused while checking the config: the payload never ran.
        assert_eq!(stdout(&out), "", "{id}");
    }
}

/// `spec --rootless` and `run` by an unprivileged user: a single-id user namespace.
#[test]
fn rootless_run_as_unprivileged_user() {
    if !root_or_skip("rootless_run_as_unprivileged_user") {
        return;
    }
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let b = Bundle::new(&["true"]);
    let state = tempfile::tempdir().expect("tempdir");
    std::fs::remove_file(b.path().join("config.json")).expect("rm config");
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(b.path())
        .arg(state.path())
        .status()
        .expect("chown");
    assert!(chown.success());
    let as_nobody = |args: &[&str]| {
        std::process::Command::new(common::bin_path())
            .arg("--root")
            .arg(state.path())
            .args(args)
            .current_dir(b.path())
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .expect("run as nobody")
    };
    let out = as_nobody(&["spec", "--rootless"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = b.path().join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_default()).unwrap_or_default();
    assert_eq!(c["linux"]["uidMappings"][0]["hostID"], NOBODY);
    c["process"]["terminal"] = json!(false);
    c["process"]["args"] = json!(["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    std::fs::write(&path, c.to_string()).expect("write config");
    let id = unique_id("rootless");
    let out = as_nobody(&["run", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    // No cgroup is delegated to nobody: one warning, and the container runs.
    assert_eq!(
        stderr(&out).matches("no cgroup is delegated").count(),
        1,
        "{}",
        stderr(&out)
    );
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines, [vec!["0"], vec!["0", "65534", "1"]], "{text}");

    // A limit nobody cannot set is an error naming why, not a silent no-op.
    c["linux"]["resources"] = json!({"memory": {"limit": 67108864}});
    std::fs::write(&path, c.to_string()).expect("write config");
    let out = as_nobody(&["run", &unique_id("rootless-limit")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no cgroup delegated"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn exec_into_user_namespace_container() {
    if !root_or_skip("exec_into_user_namespace_container") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("ns")
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    b.save();
    let id = unique_id("userexec");
    let out = rt.run(&[
        "run",
        "-d",
        "-b",
        b.path().to_str().unwrap_or_default(),
        &id,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = rt.run(&[
        "exec",
        "--user",
        "1000:1000",
        &id,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [vec!["1000"], vec!["0", "200000", "65536"]],
        "{text}"
    );
    let pid = rt.state(&id)["pid"].as_i64().unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("200000")),
        "{status}"
    );
    assert!(rt.run(&["delete", "-f", &id]).status.success());
}
