//! End-to-end failure paths: every refusal is one clear line naming the field,
//! exit code 1, and nothing left under the state root.

mod common;

use common::{Bundle, Rt, root_or_skip, stderr, stdout, unique_id};
use serde_json::json;

fn assert_refused(rt: &Rt, b: &Bundle, id: &str, needle: &str) {
    let out = rt.run(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap_or_default(),
        id,
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected failure, stderr: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(needle),
        "stderr {err:?} does not mention {needle:?}"
    );
    assert_eq!(err.trim().lines().count(), 1, "error is one line: {err:?}");
    let left: Vec<_> = std::fs::read_dir(rt.root.path())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "state left behind: {left:?}");
}

#[test]
fn bad_json_names_line_and_field() {
    let rt = Rt::new();
    let b = Bundle::new(&["true"]);
    std::fs::write(
        b.path().join("config.json"),
        "{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": {\"args\": 5}\n}",
    )
    .unwrap_or_default();
    assert_refused(&rt, &b, &unique_id("json"), "process.args");
    std::fs::write(
        b.path().join("config.json"),
        "{\n  \"ociVersion\": \"1.0.2\",\n",
    )
    .unwrap_or_default();
    assert_refused(&rt, &b, &unique_id("json"), "line 3");
    // A missing field: said once, where it is missing.
    std::fs::write(
        b.path().join("config.json"),
        r#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}"#,
    )
    .unwrap_or_default();
    let id = unique_id("json");
    assert_refused(
        &rt,
        &b,
        &id,
        "field `process`: missing field `user` at line 1",
    );
    let out = rt.run(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap_or_default(),
        &id,
    ]);
    assert_eq!(
        stderr(&out).matches("missing field").count(),
        1,
        "{}",
        stderr(&out)
    );
}

#[test]
fn import_of_random_bytes_says_it_is_no_tar_in_printable_text() {
    let dir = tempfile::tempdir().unwrap();
    // Random bytes, fixed: a header whose checksum field is binary.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let junk: Vec<u8> = (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let f = dir.path().join("junk.tar");
    std::fs::write(&f, &junk).unwrap();
    let out = std::process::Command::new(common::bin_path())
        .arg("--store")
        .arg(dir.path().join("store"))
        .args(["image", "import"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).expect("UTF-8");
    assert!(err.contains("not a tar archive"), "{err}");
    assert!(
        err.trim_end()
            .chars()
            .all(|c| !c.is_control() && c != '\u{fffd}'),
        "{err:?}"
    );
}

/// A change to a config.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;

#[test]
fn config_refusals_name_the_field() {
    let rt = Rt::new();
    let cases: Vec<(&str, Edit)> = vec![
        (
            "linux.resources.memory.swappiness",
            Box::new(|c| c["linux"]["resources"] = json!({"memory": {"swappiness": 200}})),
        ),
        (
            "linux.resources.cpu.cpus",
            Box::new(|c| c["linux"]["resources"] = json!({"cpu": {"cpus": "0-4095"}})),
        ),
        (
            "linux.resources.cpu.shares",
            Box::new(|c| c["linux"]["resources"] = json!({"cpu": {"shares": 1}})),
        ),
        (
            "linux.resources.hugepageLimits[0].pageSize",
            Box::new(|c| {
                c["linux"]["resources"] =
                    json!({"hugepageLimits": [{"pageSize": "2XB", "limit": 0}]})
            }),
        ),
        (
            "linux.cgroupsPath",
            Box::new(|c| c["linux"]["cgroupsPath"] = json!("system.slice:docker:abc")),
        ),
        (
            "linux.seccomp.syscalls[0].names",
            Box::new(|c| {
                c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]})
            }),
        ),
        (
            "linux.seccomp.syscalls[0].args[0].index",
            Box::new(|c| {
                c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                  "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]})
            }),
        ),
        (
            "linux.seccomp.listenerPath",
            Box::new(|c| {
                c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})
            }),
        ),
        (
            "root.path",
            Box::new(|c| c["root"]["path"] = json!("no-such-rootfs")),
        ),
        ("ociVersion", Box::new(|c| c["ociVersion"] = json!("2.0.0"))),
        (
            "linux.namespaces[0].path",
            Box::new(|c| c["linux"]["namespaces"][0]["path"] = json!("/etc/hostname")),
        ),
        (
            "mounts[0].options",
            Box::new(|c| c["mounts"][0]["options"] = json!(["tmpcopyup"])),
        ),
        (
            "process.cwd",
            Box::new(|c| c["process"]["cwd"] = json!("relative")),
        ),
        (
            "process.terminal",
            Box::new(|c| c["process"]["terminal"] = json!(true)),
        ),
        (
            "linux.sysctl.kernel.core_pattern",
            Box::new(|c| c["linux"]["sysctl"] = json!({"kernel.core_pattern": "x"})),
        ),
    ];
    for (field, edit) in cases {
        let mut b = Bundle::new(&["true"]);
        edit(&mut b.config);
        b.save();
        assert_refused(&rt, &b, &unique_id("cfg"), field);
    }
}

#[test]
fn bad_ids_and_missing_containers() {
    let rt = Rt::new();
    let b = Bundle::new(&["true"]);
    for id in ["a/b", "..", "a\nb"] {
        assert_refused(&rt, &b, id, "invalid container id");
    }
    for cmd in [
        vec!["state", "nope"],
        vec!["start", "nope"],
        vec!["kill", "nope"],
        vec!["delete", "nope"],
        vec!["exec", "nope", "true"],
        vec!["ps", "nope"],
    ] {
        let out = rt.run(&cmd);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}");
        assert!(
            stderr(&out).contains("does not exist"),
            "{cmd:?}: {}",
            stderr(&out)
        );
    }
    let out = rt.run(&["kill", "nope", "SIGNOPE"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn duplicate_create_and_spawn_failures_clean_up() {
    if !root_or_skip("duplicate_create_and_spawn_failures_clean_up") {
        return;
    }
    let rt = Rt::new();
    let b = Bundle::new(&["sleep", "100"]);
    let id = unique_id("dup");
    assert!(
        rt.run(&["create", "-b", b.path().to_str().unwrap_or_default(), &id])
            .status
            .success()
    );
    let out = rt.run(&["create", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert!(rt.run(&["delete", "--force", &id]).status.success());

    let rt = Rt::new();
    let b = Bundle::new(&["no-such-program"]);
    assert_refused(&rt, &b, &unique_id("nf"), "executable file not found");

    // A hard limit above ours cannot be raised without CAP_SYS_RESOURCE: the error names the rlimit.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let has_resource_cap = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("CapBnd:"))
                .and_then(|l| u64::from_str_radix(l[7..].trim(), 16).ok())
        })
        .is_some_and(|b| b & (1 << 24) != 0);
    if !has_resource_cap {
        let mut b = Bundle::new(&["true"]);
        b.config["process"]["rlimits"] =
            json!([{"type": "RLIMIT_NOFILE", "hard": lim.rlim_max + 1, "soft": 1024}]);
        b.save();
        assert_refused(&rt, &b, &unique_id("rl"), "RLIMIT_NOFILE");
    }

    // A failing createRuntime hook fails create and leaves nothing behind.
    let mut b = Bundle::new(&["true"]);
    b.config["hooks"] =
        json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]});
    b.save();
    assert_refused(&rt, &b, &unique_id("hook"), "createRuntime hook /bin/sh");
    let mut b = Bundle::new(&["true"]);
    b.config["hooks"] =
        json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "100"], "timeout": 1}]});
    b.save();
    assert_refused(&rt, &b, &unique_id("hookto"), "timed out");
}

/// A `create` that dies half-way leaves a `creating` state that `delete --force` cleans.
#[test]
fn crash_mid_create_is_cleaned_by_delete_force() {
    if !root_or_skip("crash_mid_create_is_cleaned_by_delete_force") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&["true"]);
    // The prestart hook's parent is the runtime: killing it simulates a crash mid-create.
    b.config["hooks"] =
        json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "kill -9 $PPID"]}]});
    b.save();
    let id = unique_id("crash");
    let out = rt.run(&["create", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert_eq!(
        out.status.code(),
        None,
        "the runtime was killed by a signal"
    );
    assert_eq!(rt.state(&id)["status"], "creating");
    let out = rt.run(&["list", "--format", "json"]);
    assert!(stdout(&out).contains("creating"), "{}", stdout(&out));
    let out = rt.run(&["delete", "--force", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!rt.root.path().join(&id).exists());
}
