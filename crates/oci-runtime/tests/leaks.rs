//! 1,000 create/start/wait/delete cycles of a container with cgroup limits leak
//! nothing: no cgroup dir, process, fd or mount is left, nor state. Counted as
//! what exists, not `/proc/cgroups` (dying memory cgroups linger there). Its own
//! test binary, so the fd and mount counts are not disturbed by other tests.

mod common;

use std::path::{Path, PathBuf};

use common::{count, root_or_skip};
use oci_runtime::cgroups::{Roots, detect};
use oci_runtime::{CreateOptions, Runtime};

fn bundle(dir: &Path, cgroups_path: &str) -> PathBuf {
    let bin = dir.join("rootfs/bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("busybox-static is installed at /bin/busybox");
    std::os::unix::fs::symlink("busybox", bin.join("true")).expect("symlink");
    let mut spec = serde_json::to_value(oci_spec::runtime::Spec::default()).expect("spec");
    spec["ociVersion"] = "1.2.0".into();
    spec["process"]["args"] = serde_json::json!(["true"]);
    spec["process"]["terminal"] = false.into();
    spec["linux"]["cgroupsPath"] = cgroups_path.into();
    spec["linux"]["resources"] = serde_json::json!({
        "memory": {"limit": 64 << 20},
        "pids": {"limit": 32},
        "cpu": {"shares": 512}
    });
    std::fs::write(dir.join("config.json"), spec.to_string()).expect("write config");
    dir.to_path_buf()
}

/// Every directory under `dir`, recursively.
fn dirs_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| 1 + dirs_under(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_thousand_cycles_leak_nothing() {
    if !root_or_skip("a_thousand_cycles_leak_nothing") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    // One parent cgroup of the test's own, so the count is of it alone.
    let parent = format!("/leak-test-{}", std::process::id());
    let b = bundle(&tmp.path().join("bundle"), &format!("{parent}/c"));
    let state = tmp.path().join("state");
    let rt = Runtime::new(&state);
    let roots = Roots::default();
    let layout = detect(&roots.cgroupfs).expect("cgroup layout");
    let parents: Vec<PathBuf> = {
        let cg = oci_runtime::cgroups::Cgroups::new(&roots, layout, Some(Path::new(&parent)), "x")
            .expect("resolve");
        cg.v1.values().cloned().chain(cg.v2).collect()
    };

    let run = |i: usize| -> oci_runtime::Result<i32> {
        let id = format!("leak-{}-{i}", std::process::id());
        rt.create(&id, &b, &CreateOptions::default())?;
        rt.start(&id)?;
        let code = rt.wait(&id)?;
        rt.delete(&id, false)?;
        Ok(code)
    };
    // The first cycle makes the parent cgroups; count after it.
    assert_eq!(run(0).expect("cycle 0"), 0);
    let fds_before = count("/proc/self/fd");
    let mounts_before = count("/proc/self/mountinfo");
    let cgroups_before: usize = parents.iter().map(|p| dirs_under(p)).sum();
    for i in 1..1000 {
        assert_eq!(run(i).unwrap_or_else(|e| panic!("cycle {i}: {e}")), 0);
    }
    let cgroups_after: usize = parents.iter().map(|p| dirs_under(p)).sum();
    assert_eq!(
        cgroups_after, cgroups_before,
        "cgroup dirs left under {parents:?}"
    );
    assert_eq!(
        cgroups_after, 0,
        "the container's cgroup is removed each time"
    );
    assert_eq!(count("/proc/self/fd"), fds_before, "fd leak");
    assert_eq!(count("/proc/self/mountinfo"), mounts_before, "mount leak");
    let r = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    assert!(
        matches!(r, Err(nix::errno::Errno::ECHILD)),
        "a child process was left behind: {r:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&state)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "state left behind: {left:?}");
    for p in &parents {
        let _ = std::fs::remove_dir(p);
    }
}
