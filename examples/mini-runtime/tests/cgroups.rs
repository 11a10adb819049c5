//! Cgroups as users meet them on this (hybrid) host: limits land where runc
//! puts them and hold, pause and resume, update, kill --all and ps through the
//! cgroup, delete removing it, and a refused limit leaving nothing behind.

mod common;

use std::path::{Path, PathBuf};

use common::{Bundle, Rt, root_or_skip, stderr, stdout, unique_id};
use serde_json::json;

/// The container's directory in the v1 hierarchy `controller`, read from its
/// init's `/proc/<pid>/cgroup`.
fn v1_dir(pid: i64, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read cgroup");
    let path = text
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, p) = (f.next()?, f.next()?, f.next()?);
            ctrls
                .split(',')
                .any(|c| c == controller)
                .then(|| p.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} line in {text}"));
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(path.trim_start_matches('/'))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn pid_of(rt: &Rt, id: &str) -> i64 {
    rt.state(id)["pid"].as_i64().unwrap_or(0)
}

#[test]
fn limits_land_in_the_containers_own_cgroups_and_go_with_it() {
    if !root_or_skip("limits_land_in_the_containers_own_cgroups_and_go_with_it") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.config["linux"]["resources"] = json!({
        "memory": {"limit": 48 << 20},
        "pids": {"limit": 24},
        "cpu": {"shares": 256, "quota": 30000, "period": 100000}
    });
    b.save();
    let id = unique_id("limits");
    rt.run_detached(&b, &id);
    let pid = pid_of(&rt, &id);
    let mem = v1_dir(pid, "memory");
    assert!(mem.ends_with(&id), "{}", mem.display());
    assert_eq!(
        read(&mem.join("memory.limit_in_bytes")),
        (48 << 20).to_string()
    );
    assert_eq!(read(&v1_dir(pid, "pids").join("pids.max")), "24");
    let cpu = v1_dir(pid, "cpu");
    assert_eq!(read(&cpu.join("cpu.shares")), "256");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "30000");
    // runc's default devices only.
    let list = read(&v1_dir(pid, "devices").join("devices.list"));
    assert!(
        list.contains("c 1:3 rwm") && !list.contains("a *:*"),
        "{list}"
    );

    // update, with runc's flags and units.
    let out = rt.run(&["update", "--memory", "64m", "--pids-limit", "30", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        read(&mem.join("memory.limit_in_bytes")),
        (64 << 20).to_string()
    );
    assert_eq!(read(&v1_dir(pid, "pids").join("pids.max")), "30");
    // and from a resources file on stdin.
    let mut cmd = rt.cmd();
    cmd.args(["update", "--resources", "-", &id])
        .stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("update");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"cpu": {"shares": 1024}}"#)
        .expect("write");
    assert!(child.wait().expect("wait").success());
    assert_eq!(read(&cpu.join("cpu.shares")), "1024");
    // A bad value is refused by name, the old one stays.
    let out = rt.run(&["update", "--memory", "lots", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--memory"), "{}", stderr(&out));

    let out = rt.run(&["delete", "-f", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!mem.exists(), "memory cgroup left behind");
    assert!(!cpu.exists(), "cpu cgroup left behind");
}

#[test]
fn a_fork_bomb_is_held_by_the_pids_limit() {
    if !root_or_skip("a_fork_bomb_is_held_by_the_pids_limit") {
        return;
    }
    let rt = Rt::new();
    // The forking shell may give up when a fork fails; its parent then execs,
    // which needs no new process.
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "(n=0; while [ $n -lt 200 ]; do sleep 1000 & n=$((n+1)); done) 2>/dev/null; \
         exec sleep 1000",
    ]);
    b.config["linux"]["resources"] = json!({"pids": {"limit": 16}});
    b.save();
    let id = unique_id("forkbomb");
    rt.run_detached(&b, &id);
    let pids_dir = v1_dir(pid_of(&rt, &id), "pids");
    // Bounded wait for the loop to have tried all its forks.
    let mut failed = 0;
    for _ in 0..2000 {
        failed = read(&pids_dir.join("pids.events"))
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if failed > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(failed > 0, "no fork was refused");
    let current: u64 = read(&pids_dir.join("pids.current")).parse().unwrap_or(0);
    assert!(current <= 16, "{current} processes");
    // Still manageable: ps lists them all, delete -f takes them all.
    let out = rt.run(&["ps", "--format", "json", &id]);
    let listed: Vec<i64> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    // The shell that forked may be exiting meanwhile: what ps lists is within the limit.
    assert!(!listed.is_empty() && listed.len() <= 16, "{}", stdout(&out));
    let out = rt.run(&["delete", "-f", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!pids_dir.exists());
}

#[test]
fn pause_stops_a_busy_loop_and_resume_restarts_it() {
    if !root_or_skip("pause_stops_a_busy_loop_and_resume_restarts_it") {
        return;
    }
    let rt = Rt::new();
    let b = Bundle::new(&["sh", "-c", "while :; do :; done"]);
    let id = unique_id("pause");
    rt.run_detached(&b, &id);
    let acct = v1_dir(pid_of(&rt, &id), "cpuacct").join("cpuacct.usage");
    let usage = || read(&acct).parse::<u64>().unwrap_or(0);
    let grows = || {
        let a = usage();
        std::thread::sleep(std::time::Duration::from_millis(200));
        usage() > a
    };
    assert!(grows(), "the loop is not running");
    let out = rt.run(&["pause", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rt.state(&id)["status"], "paused");
    assert!(!grows(), "a paused container used cpu");
    // Paused is not a state to exec, kill or pause in again; delete -f still works below.
    let out = rt.run(&["resume", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rt.state(&id)["status"], "running");
    assert!(grows(), "the loop did not resume");
    // A paused container is deleted with --force too.
    assert!(rt.run(&["pause", &id]).status.success());
    let out = rt.run(&["delete", "-f", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A cgroup left frozen, as by a `kill --all` cut off between its freeze and
/// thaw: SIGKILL to every process still ends the container.
#[test]
fn kill_all_with_sigkill_ends_a_container_left_frozen() {
    if !root_or_skip("kill_all_with_sigkill_ends_a_container_left_frozen") {
        return;
    }
    let rt = Rt::new();
    let b = Bundle::new(&["sh", "-c", "sleep 1000 & sleep 1000"]);
    let id = unique_id("frozen");
    rt.run_detached(&b, &id);
    let state = v1_dir(pid_of(&rt, &id), "freezer").join("freezer.state");
    std::fs::write(&state, "FROZEN").unwrap();
    let out = rt.run(&["kill", "--all", &id, "KILL"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut status = String::new();
    for _ in 0..200 {
        status = rt.state(&id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if status == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(status, "stopped", "freezer: {}", read(&state));
    let out = rt.run(&["delete", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Without a pid namespace, only the cgroup knows every process of the container.
#[test]
fn kill_all_and_ps_reach_every_process_without_a_pid_namespace() {
    if !root_or_skip("kill_all_and_ps_reach_every_process_without_a_pid_namespace") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&["sh", "-c", "sleep 1000 & sleep 1000 & sleep 1000"]);
    if let Some(ns) = b.config["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "pid");
    }
    b.save();
    let id = unique_id("killall");
    rt.run_detached(&b, &id);
    let pids = || -> Vec<i64> {
        let out = rt.run(&["ps", "--format", "json", &id]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let mut seen = Vec::new();
    for _ in 0..1000 {
        seen = pids();
        if seen.len() == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    let out = rt.run(&["kill", "--all", &id, "KILL"]);
    assert!(out.status.success(), "{}", stderr(&out));
    rt.wait_status(&id, "stopped");
    for pid in &seen {
        let gone = (0..1000).any(|_| {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z"));
            if alive {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            !alive
        });
        assert!(gone, "pid {pid} survived kill --all");
    }
    assert!(rt.run(&["delete", &id]).status.success());
}

/// A limit the kernel here cannot take is an error naming it, after which no
/// cgroup of the container is left.
#[test]
fn a_refused_limit_leaves_no_cgroup_behind() {
    if !root_or_skip("a_refused_limit_leaves_no_cgroup_behind") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&["true"]);
    let id = unique_id("refused");
    // Without CFQ this kernel has no leaf weights (BFQ's weight file takes weights).
    b.config["linux"]["resources"] =
        json!({"memory": {"limit": 1 << 26}, "blockIO": {"weight": 500, "leafWeight": 500}});
    b.config["linux"]["cgroupsPath"] = json!(format!("/refused-test/{id}"));
    b.save();
    let out = rt.run(&["create", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("blkio"), "{}", stderr(&out));
    for c in ["memory", "pids", "cpu", "devices", "blkio"] {
        let dir = Path::new("/sys/fs/cgroup")
            .join(c)
            .join("refused-test")
            .join(&id);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    for c in [
        "memory", "pids", "cpu", "devices", "blkio", "cpuset", "cpuacct", "freezer",
    ] {
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(c).join("refused-test"));
    }
    let _ = std::fs::remove_dir("/sys/fs/cgroup/unified/refused-test");
    let _ = std::fs::remove_dir("/sys/fs/cgroup/systemd/refused-test");
    assert!(!rt.root.path().join(&id).exists(), "state left behind");
}

/// A denied device cannot be opened, an allowed one can; `linux.devices` are
/// allowed; mknod of any node is, but not opening what it made.
#[test]
fn device_rules_hold_inside_the_container() {
    if !root_or_skip("device_rules_hold_inside_the_container") {
        return;
    }
    let rt = Rt::new();
    let bundle = |script: &str, devices: serde_json::Value| {
        let mut b = Bundle::new(&["sh", "-c", script]);
        std::os::unix::fs::symlink("busybox", b.rootfs().join("bin/mknod")).expect("applet");
        // CAP_MKNOD, so that what refuses is the cgroup, not a capability.
        for set in ["bounding", "effective", "permitted"] {
            b.config["process"]["capabilities"][set] = json!([
                "CAP_MKNOD",
                "CAP_KILL",
                "CAP_AUDIT_WRITE",
                "CAP_NET_BIND_SERVICE"
            ]);
        }
        b.config["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
        b.config["linux"]["devices"] = devices;
        b.save();
        b
    };
    let b = bundle(
        "cat /dev/null && echo null:ok; \
         (head -c1 /dev/zero >/dev/null) 2>/dev/null && echo zero:ok || echo zero:denied; \
         mknod /tmp/lc c 10 237 && echo mknod:ok; \
         (: < /tmp/lc) 2>/dev/null && echo lc:ok || echo lc:denied",
        json!([]),
    );
    let id = unique_id("devices");
    let out = rt.run(&["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in ["null:ok", "zero:ok", "mknod:ok", "lc:denied"] {
        assert!(text.contains(want), "{want} in {text}");
    }
    // The same device given in linux.devices is allowed.
    let b = bundle(
        "(: < /dev/loop-control) 2>/dev/null && echo lc:ok || echo lc:denied",
        json!([{"path": "/dev/loop-control", "type": "c", "major": 10, "minor": 237}]),
    );
    let id = unique_id("devices2");
    let out = rt.run(&["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("lc:ok"), "{}", stdout(&out));
}

/// On this hybrid host hugetlb exists only on the cgroup2 side: a hugetlb limit
/// enables it down the container's path there and lands in `hugetlb.*.max`.
#[test]
fn hugetlb_limits_on_the_cgroup2_side_of_a_hybrid_host() {
    if !root_or_skip("hugetlb_limits_on_the_cgroup2_side_of_a_hybrid_host") {
        return;
    }
    let unified = Path::new("/sys/fs/cgroup/unified");
    let offered = std::fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
    if Path::new("/sys/fs/cgroup/hugetlb").exists() || !offered.contains("hugetlb") {
        // Another layout: the v1 hugetlb hierarchy takes the limit (tested in the VM for v2).
        assert!(std::env::var("CI").is_err() || Path::new("/sys/fs/cgroup/hugetlb").exists());
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.config["linux"]["resources"] =
        json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]});
    b.save();
    let id = unique_id("hugetlb");
    rt.run_detached(&b, &id);
    let pid = pid_of(&rt, &id);
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let v2 = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup2 line");
    let dir = unified.join(v2.trim_start_matches('/'));
    assert!(dir.ends_with(&id), "{}", dir.display());
    assert_eq!(read(&dir.join("hugetlb.2MB.max")), "4194304");
    assert!(rt.run(&["delete", "-f", &id]).status.success());
    assert!(!dir.exists());
}
