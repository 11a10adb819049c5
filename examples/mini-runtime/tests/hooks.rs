//! Hooks as users meet them: a hook that asks the runtime about its own
//! container, and hook failures reported as what happened to the hook.

mod common;

use common::{Bundle, Rt, root_or_skip, stderr, unique_id};
use serde_json::json;

/// A prestart or createRuntime hook that runs `state` for the container being
/// created gets an answer (the pid, status `creating`) instead of waiting forever
/// on the lock `create` holds; the hook's timeout bounds the wait if it regresses.
#[test]
fn hook_can_query_state_of_its_own_container() {
    if !root_or_skip("hook_can_query_state_of_its_own_container") {
        return;
    }
    let rt = Rt::new();
    let logs = tempfile::tempdir().expect("tempdir");
    let id = unique_id("hook-state");
    let mut b = Bundle::new(&["true"]);
    let query = |name: &str| {
        let out = logs.path().join(name);
        let cmd = format!(
            "{} --root {} state {id} > {}",
            common::bin_path(),
            rt.root.path().display(),
            out.display()
        );
        json!({"path": "/bin/sh", "args": ["sh", "-c", cmd], "timeout": 60})
    };
    b.config["hooks"] = json!({
        "prestart": [query("prestart")],
        "createRuntime": [query("createRuntime")],
    });
    b.save();
    let out = rt.run(&["create", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = rt.state(&id)["pid"].as_i64().unwrap_or(0);
    assert!(pid > 0);
    for name in ["prestart", "createRuntime"] {
        let text = std::fs::read_to_string(logs.path().join(name)).unwrap_or_default();
        let s: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name} hook's state output {text:?}: {e}"));
        assert_eq!(s["id"], id.as_str(), "{name}");
        assert_eq!(s["status"], "creating", "{name}");
        assert_eq!(s["pid"], pid, "{name}");
    }
    assert_eq!(rt.state(&id)["status"], "created");
    assert!(rt.run(&["delete", "-f", &id]).status.success());
}

/// A failing createContainer hook is reported with its exit status, not as an
/// errno (`exit 1` is not "Operation not permitted"), and nothing is left behind.
#[test]
fn failing_create_container_hook_names_its_exit_status() {
    if !root_or_skip("failing_create_container_hook_names_its_exit_status") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&["true"]);
    b.config["hooks"] = json!({
        "createContainer": [
            {"path": "/bin/true"},
            {"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]},
        ],
    });
    b.save();
    let id = unique_id("hook-exit");
    let out = rt.run(&["create", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("createContainer hook /bin/sh: exited with status 3"),
        "{err}"
    );
    // Exit status 3 read as an errno would be ESRCH.
    assert!(!err.contains("No such process"), "{err}");
    let gone = rt.run(&["state", &id]);
    assert!(!gone.status.success(), "a failed create left state behind");

    // Killed by a signal: said so.
    b.config["hooks"] = json!({
        "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "kill -9 $$"]}],
    });
    b.save();
    let id = unique_id("hook-signal");
    let out = rt.run(&["create", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("killed by signal 9"),
        "{}",
        stderr(&out)
    );
}

/// A failing startContainer hook is named (the second of them, not a
/// createContainer hook at the same index) on the container's stderr, and the
/// container does not run its process.
#[test]
fn failing_start_container_hook_is_named() {
    if !root_or_skip("failing_start_container_hook_is_named") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&["sh", "-c", "echo payload-ran"]);
    b.config["hooks"] = json!({
        "createContainer": [{"path": "/bin/true"}, {"path": "/bin/true"}],
        "startContainer": [
            {"path": "/bin/true"},
            {"path": "/bin/false"},
        ],
    });
    b.save();
    let id = unique_id("start-hook");
    let out = rt.run(&["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("startContainer hook /bin/false exited with status 1"),
        "{err}"
    );
    assert!(!common::stdout(&out).contains("payload-ran"));
}

/// Timeouts too large for the clock mean "no timeout", never a panic, in the
/// runtime's hooks and in the container's.
#[test]
fn huge_hook_timeouts_are_accepted() {
    if !root_or_skip("huge_hook_timeouts_are_accepted") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&["true"]);
    let hook = json!({"path": "/bin/true", "timeout": i64::MAX});
    b.config["hooks"] = json!({
        "prestart": [hook],
        "createRuntime": [hook],
        "createContainer": [hook],
        "startContainer": [hook],
        "poststart": [hook],
        "poststop": [hook],
    });
    b.save();
    let id = unique_id("hook-timeout");
    let out = rt.run(&["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

/// Container-side hooks get the whole state however large it is (here over
/// 64 KiB of annotations), never a silently cut one.
#[test]
fn container_hooks_get_a_large_state_whole() {
    if !root_or_skip("container_hooks_get_a_large_state_whole") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&["true"]);
    let logs = tempfile::tempdir().expect("tempdir");
    let out = logs.path().join("state");
    let annotations: serde_json::Map<String, serde_json::Value> = (0..100)
        .map(|i| (format!("example.com/key-{i}"), json!("v".repeat(1000))))
        .collect();
    b.config["annotations"] = serde_json::Value::Object(annotations);
    b.config["hooks"] = json!({
        "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", out.display())]}],
    });
    b.save();
    let id = unique_id("big-state");
    let res = rt.run(&["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert!(res.status.success(), "{}", stderr(&res));
    let text = std::fs::read(&out).unwrap_or_default();
    assert!(text.len() > 100_000, "{} bytes", text.len());
    let s: serde_json::Value = serde_json::from_slice(&text).expect("the hook got whole JSON");
    assert_eq!(s["annotations"]["example.com/key-99"], "v".repeat(1000));
    assert_eq!(s["status"], "created");
}
