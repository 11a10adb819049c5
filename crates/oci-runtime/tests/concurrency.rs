//! 50 containers created, started, waited for and deleted concurrently from a
//! multi-threaded tokio runtime while other threads allocate: no deadlock, no
//! zombie, no leaked fd, no leftover state or mount. Its own test binary, so the
//! fd and mount counts are not disturbed by other tests.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{count, root_or_skip};
use oci_runtime::{CreateOptions, Runtime};

/// A busybox bundle running `args`, with the default spec minus cgroups and seccomp.
fn bundle(dir: &Path, args: &[&str], time_ns: bool) -> PathBuf {
    let bin = dir.join("rootfs/bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("busybox-static is installed at /bin/busybox");
    for a in args.iter().take(1) {
        std::os::unix::fs::symlink("busybox", bin.join(a)).expect("symlink");
    }
    let mut spec = serde_json::to_value(oci_spec::runtime::Spec::default()).expect("spec");
    spec["ociVersion"] = "1.2.0".into();
    spec["process"]["args"] = serde_json::json!(args);
    spec["process"]["terminal"] = false.into();
    spec["root"]["readonly"] = true.into();
    spec["linux"]["resources"] = serde_json::Value::Null;
    if let Some(o) = spec["linux"].as_object_mut() {
        o.remove("resources");
    }
    if time_ns {
        // A new time namespace takes the two-stage spawn (unshare, then fork into it).
        if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
            ns.push(serde_json::json!({"type": "time"}));
        }
    }
    std::fs::write(dir.join("config.json"), spec.to_string()).expect("write config");
    dir.to_path_buf()
}

#[test]
fn fifty_containers_concurrently_from_tokio() {
    if !root_or_skip("fifty_containers_concurrently_from_tokio") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let one_stage = bundle(&tmp.path().join("bundle"), &["true"], false);
    let two_stage = bundle(&tmp.path().join("bundle2"), &["true"], true);
    let state = tmp.path().join("state");
    let rt = Runtime::new(&state);

    let fds_before = count("/proc/self/fd");
    let mounts_before = count("/proc/self/mountinfo");

    let stop = Arc::new(AtomicBool::new(false));
    let allocators: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let v: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 512 + i * 7]).collect();
                    n = n.wrapping_add(v.len());
                }
                n
            })
        })
        .collect();

    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .expect("tokio");
    let results = tokio_rt.block_on(async {
        let mut handles = Vec::new();
        for i in 0..50 {
            let rt = rt.clone();
            let bundle = if i % 2 == 0 {
                one_stage.clone()
            } else {
                two_stage.clone()
            };
            handles.push(tokio::spawn(async move {
                tokio::task::spawn_blocking(move || -> oci_runtime::Result<i32> {
                    let id = format!("conc-{}-{i}", std::process::id());
                    rt.create(&id, &bundle, &CreateOptions::default())?;
                    rt.start(&id)?;
                    let code = rt.wait(&id)?;
                    rt.delete(&id, false)?;
                    Ok(code)
                })
                .await
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            // Generous upper bound: a hang fails the test instead of stalling CI.
            out.push(tokio::time::timeout(Duration::from_secs(300), h).await);
        }
        out
    });
    stop.store(true, Ordering::Relaxed);
    for a in allocators {
        let _ = a.join();
    }
    drop(tokio_rt);

    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(Ok(Ok(Ok(code)))) => assert_eq!(code, 0, "container {i} exit code"),
            other => panic!("container {i}: {other:?}"),
        }
    }
    let mut st = 0;
    // SAFETY: non-blocking wait for any child; `st` is a valid int.
    let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
    assert_eq!(r, -1, "a child process was left behind (zombie or running)");
    let fds: Vec<_> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read_link(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(count("/proc/self/fd"), fds_before, "fd leak: {fds:?}");
    assert_eq!(count("/proc/self/mountinfo"), mounts_before, "mount leak");
    let left: Vec<_> = std::fs::read_dir(&state)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "state left behind: {left:?}");
}
