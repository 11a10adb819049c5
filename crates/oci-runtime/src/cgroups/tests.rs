//! Path resolution, conversions and limit files, on a temp-dir cgroupfs.

use std::collections::HashMap;
use std::path::Path;

use super::*;

fn fake_v1(root: &Path, controllers: &[&str]) {
    for c in controllers {
        let d = root.join(c);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("cgroup.procs"), "").expect("procs");
    }
}

fn roots(dir: &Path, own: &str) -> Roots {
    let own_path = dir.join("self-cgroup");
    std::fs::write(&own_path, own).expect("write own cgroup");
    Roots {
        cgroupfs: dir.join("cgroup"),
        own_cgroup: own_path,
    }
}

#[test]
fn relative_paths_are_under_our_own_cgroup_and_absolute_ones_from_the_root() {
    let t = tempfile::tempdir().expect("tempdir");
    let r = roots(
        t.path(),
        "4:memory:/process_api/abc\n3:cpu,cpuacct:/\n0::/user.slice/me\n",
    );
    fake_v1(&r.cgroupfs, &["cpu,cpuacct", "memory", "pids"]);
    std::fs::create_dir_all(r.cgroupfs.join("unified")).expect("mkdir");
    let cg = Cgroups::new(&r, Layout::Hybrid, None, "ctr").expect("resolve");
    assert_eq!(
        cg.v1["memory"],
        r.cgroupfs.join("memory/process_api/abc/ctr")
    );
    assert_eq!(cg.v1["cpu"], r.cgroupfs.join("cpu,cpuacct/ctr"));
    assert_eq!(cg.v1["cpuacct"], r.cgroupfs.join("cpu,cpuacct/ctr"));
    // No own entry for pids in the file: the hierarchy's root.
    assert_eq!(cg.v1["pids"], r.cgroupfs.join("pids/ctr"));
    assert!(!cg.v1.contains_key("freezer"), "not mounted");
    // cgroup2: under the parent of our own cgroup.
    assert_eq!(cg.v2, Some(r.cgroupfs.join("unified/user.slice/ctr")));

    let cg =
        Cgroups::new(&r, Layout::Hybrid, Some(Path::new("/k8s/pod1/c")), "ctr").expect("resolve");
    assert_eq!(cg.v1["memory"], r.cgroupfs.join("memory/k8s/pod1/c"));
    assert_eq!(cg.v2, Some(r.cgroupfs.join("unified/k8s/pod1/c")));

    let cg =
        Cgroups::new(&r, Layout::Unified, Some(Path::new("/a/../../b")), "x").expect("resolve");
    assert_eq!(cg.v2, Some(r.cgroupfs.join("b")), ".. cannot climb out");
    assert!(cg.v1.is_empty());
}

#[test]
fn systemd_paths_and_the_root_are_refused() {
    let t = tempfile::tempdir().expect("tempdir");
    let r = roots(t.path(), "0::/\n");
    let err = Cgroups::new(
        &r,
        Layout::Unified,
        Some(Path::new("system.slice:docker:abc")),
        "x",
    )
    .expect_err("systemd form");
    assert!(err.to_string().contains("systemd"), "{err}");
    assert!(err.to_string().contains("linux.cgroupsPath"), "{err}");
    for p in ["/", "/..", ""] {
        assert!(
            Cgroups::new(&r, Layout::Unified, Some(Path::new(p)), "x").is_err(),
            "{p:?}"
        );
    }
}

#[test]
fn conversions_match_runc() {
    use v2::conv::{blkio_to_io_weight, shares_to_weight, swap_value};
    assert_eq!(shares_to_weight(0), 0);
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 100);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(512), 59);
    assert_eq!(blkio_to_io_weight(10), 1);
    assert_eq!(blkio_to_io_weight(1000), 10_000);
    assert_eq!(blkio_to_io_weight(500), 4950);
    assert_eq!(swap_value(0, -1), Ok(-1));
    assert_eq!(swap_value(-1, 100), Ok(-1));
    assert_eq!(swap_value(300, 100), Ok(200));
    assert_eq!(swap_value(100, 100), Ok(0));
    assert!(swap_value(50, 100).is_err());
    assert!(swap_value(100, 0).is_err());
}

fn resources(json: serde_json::Value) -> LinuxResources {
    serde_json::from_value(json).expect("resources")
}

fn v1_dir(root: &Path, files: &[&str]) -> std::path::PathBuf {
    std::fs::create_dir_all(root).expect("mkdir");
    for f in files {
        std::fs::write(root.join(f), "").expect("file");
    }
    root.to_path_buf()
}

#[test]
fn v1_limits_land_in_their_files() {
    let t = tempfile::tempdir().expect("tempdir");
    let mut dirs = BTreeMap::new();
    dirs.insert(
        "cpu".to_string(),
        v1_dir(
            &t.path().join("cpu"),
            &[
                "cpu.shares",
                "cpu.cfs_quota_us",
                "cpu.cfs_period_us",
                "cpu.cfs_burst_us",
            ],
        ),
    );
    dirs.insert(
        "memory".to_string(),
        v1_dir(
            &t.path().join("memory"),
            &[
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "memory.soft_limit_in_bytes",
                "memory.swappiness",
                "memory.oom_control",
            ],
        ),
    );
    dirs.insert(
        "pids".to_string(),
        v1_dir(&t.path().join("pids"), &["pids.max"]),
    );
    std::fs::write(
        dirs["memory"].join("memory.limit_in_bytes"),
        "9223372036854771712",
    )
    .expect("current limit");
    let r = resources(serde_json::json!({
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000},
        "memory": {"limit": 1048576, "swap": 2097152, "reservation": 524288,
                   "swappiness": 10, "disableOOMKiller": true},
        "pids": {"limit": 64}
    }));
    v1::apply(&dirs, &r).expect("apply");
    let read = |c: &str, f: &str| std::fs::read_to_string(dirs[c].join(f)).expect("read");
    assert_eq!(read("cpu", "cpu.shares"), "512");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpu", "cpu.cfs_burst_us"), "1000");
    assert_eq!(read("memory", "memory.limit_in_bytes"), "1048576");
    assert_eq!(read("memory", "memory.memsw.limit_in_bytes"), "2097152");
    assert_eq!(read("memory", "memory.soft_limit_in_bytes"), "524288");
    assert_eq!(read("memory", "memory.swappiness"), "10");
    assert_eq!(read("memory", "memory.oom_control"), "1");
    assert_eq!(read("pids", "pids.max"), "64");

    // A limit for a controller that is not mounted names it.
    let r = resources(serde_json::json!({"blockIO": {"weight": 100}}));
    let err = v1::apply(&dirs, &r).expect_err("no blkio");
    assert!(err.to_string().contains("blkio"), "{err}");
}

#[test]
fn v2_limits_land_in_their_files() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("c");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("cgroup.controllers"),
        "cpu cpuset memory pids io hugetlb",
    )
    .expect("w");
    for f in [
        "cpu.weight",
        "cpu.max",
        "memory.max",
        "memory.low",
        "memory.swap.max",
        "pids.max",
        "io.weight",
        "io.max",
        "hugetlb.2MB.max",
        "memory.high",
    ] {
        std::fs::write(dir.join(f), "").expect("file");
    }
    let mut unified = HashMap::new();
    unified.insert("memory.high".to_string(), "4096".to_string());
    let mut r = resources(serde_json::json!({
        "cpu": {"shares": 1024, "quota": -1},
        "memory": {"limit": 1000, "swap": 3000, "reservation": 10},
        "pids": {"limit": 0},
        "blockIO": {"weight": 1000, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 100}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]
    }));
    r.set_unified(Some(unified));
    v2::apply(&dir, &r).expect("apply");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("read");
    assert_eq!(read("cpu.weight"), "100");
    assert_eq!(read("cpu.max"), "max 100000");
    assert_eq!(read("memory.max"), "1000");
    assert_eq!(read("memory.swap.max"), "2000");
    assert_eq!(read("memory.low"), "10");
    assert_eq!(read("pids.max"), "max");
    assert_eq!(read("io.weight"), "10000");
    assert_eq!(read("io.max"), "8:0 rbps=100");
    assert_eq!(read("hugetlb.2MB.max"), "4194304");
    assert_eq!(read("memory.high"), "4096");

    // A unified key with no file, or one that leaves the dir, names the key.
    for key in ["memory.nope", "../memory.max", "cgroup.procs"] {
        let mut u = HashMap::new();
        u.insert(key.to_string(), "1".to_string());
        let mut r = LinuxResources::default();
        r.set_unified(Some(u));
        let err = v2::apply(&dir, &r).expect_err(key);
        assert!(err.to_string().contains(key), "{err}");
    }
    // v1-only settings are refused by name.
    let r = resources(serde_json::json!({"memory": {"swappiness": 10}}));
    assert!(
        v2::apply(&dir, &r)
            .expect_err("swappiness")
            .to_string()
            .contains("swappiness")
    );
}

/// `cgroup.freeze` on this host's cgroup2 mount (hybrid here, unified elsewhere):
/// a forked child moved into a fresh cgroup is frozen and thawed, and
/// `cgroup.events` agrees each time before `freeze` returns.
#[test]
fn cgroup2_freeze_on_the_host() {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cgroup2_freeze_on_the_host needs root and CI=true forbids skipping"
        );
        eprintln!("skipping cgroup2_freeze_on_the_host: needs root");
        return;
    }
    let roots = Roots::default();
    let mount = match detect(&roots.cgroupfs).expect("layout") {
        Layout::Unified => roots.cgroupfs.clone(),
        Layout::Hybrid => roots.cgroupfs.join("unified"),
        Layout::Legacy => return,
    };
    let dir = mount.join(format!("freeze-test-{}", std::process::id()));
    std::fs::create_dir(&dir).expect("mkdir cgroup");
    let mut child = std::process::Command::new("/bin/busybox")
        .args(["sleep", "100"])
        .spawn()
        .expect("spawn");
    let res = std::panic::catch_unwind(|| {
        write(&dir.join("cgroup.procs"), &child.id().to_string()).expect("move in");
        v2::freezer::freeze(&dir, true).expect("freeze");
        assert!(v2::freezer::frozen(&dir).expect("read"));
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
        assert!(stat.contains(") S") || stat.contains(") D"), "{stat}");
        v2::freezer::freeze(&dir, false).expect("thaw");
        assert!(!v2::freezer::frozen(&dir).expect("read"));
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = remove_tree(&dir);
    if let Err(p) = res {
        std::panic::resume_unwind(p);
    }
}
