//! A full pod lifecycle driven by a client nobody here wrote: Python grpcio
//! with stubs generated from cri-api's proto (`tests/cri/lifecycle_client.py`).
//! A pod, two containers, exec, logs, stats and events; a graceful restart
//! of `serve`; exec and stop; a `kill -9` of `serve`; exit codes intact,
//! then stop and removal with nothing left behind.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::root_or_skip;
use common::serve::{Cleanup, import_busybox, python, spawn_in};

#[test]
fn python_grpcio_runs_a_pod_lifecycle_across_restarts_of_serve() {
    if !root_or_skip("python_grpcio_runs_a_pod_lifecycle_across_restarts_of_serve") {
        return;
    }
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let image = import_busybox(dir.path());
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let stubs = dir.path().join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let state = dir.path().join("state.json");
    let logs = dir.path().join("logs");
    let sock = dir.path().join("cri.sock");
    let mut cleanup = Cleanup {
        dir: dir.path().to_path_buf(),
        cgroups: Vec::new(),
    };
    let phase = |name: &str| -> serde_json::Value {
        let out = Command::new(&python)
            .arg(manifest.join("tests/cri/lifecycle_client.py"))
            .arg(manifest.join("../../crates/cri-api/proto"))
            .arg(&sock)
            .arg(&stubs)
            .arg(&state)
            .arg(name)
            .arg(&image)
            .arg(&logs)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "phase {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };

    let mut child = spawn_in(dir.path(), &[]);
    let r = phase("start");
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    cleanup
        .cgroups
        .push(st["cgroup_parent"].as_str().unwrap().to_string());
    assert_eq!(r["exec"], serde_json::json!(["exec-ok\n", 4]), "{r}");
    assert!(r["web_working_set"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["pod_containers"], 2, "{r}");
    assert_eq!(
        r["listed_stats"],
        serde_json::json!(["web", "worker"]),
        "{r}"
    );
    assert_eq!(r["log_tail"][0], "stdout F hello", "{r}");
    assert_eq!(r["events_missing"], serde_json::json!([]), "{r}");

    // A graceful restart: SIGTERM, then a new serve.
    // SAFETY: signalling the server this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "serve on SIGTERM: {status}");
    let mut child = spawn_in(dir.path(), &[]);
    let r = phase("restarted");
    assert_eq!(r["pods"], serde_json::json!([[true, 0]]), "{r}");
    assert_eq!(r["running"], serde_json::json!(["web", "worker"]), "{r}");
    assert_eq!(r["exec"], "still\n", "{r}");
    // SIGQUIT, the image's stop signal, which the worker's trap answers.
    assert_eq!(r["worker"], serde_json::json!([2, 7, "Error"]), "{r}");

    // kill -9, then a new serve: the exit code is kept; stop and remove.
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&sock);
    let mut child = spawn_in(dir.path(), &[]);
    let r = phase("killed");
    assert_eq!(r["worker"], serde_json::json!([2, 7, "Error"]), "{r}");
    assert_eq!(r["web"], 1, "web runs on: {r}");
    assert_eq!(r["web_after_stop"], serde_json::json!([2, 137]), "{r}");
    assert_eq!(r["left"], serde_json::json!([0, 0]), "{r}");
    child.kill().unwrap();
    child.wait().unwrap();
}
