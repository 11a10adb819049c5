//! `events` and the library's stats on the real host: runc's JSON keys for the
//! same bundle, and a memory hog that really gets OOM-killed.

mod common;

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Bundle, Rt, RuncRoot, root_or_skip, unique_id};
use serde_json::{Value, json};

/// Whether `tool` runs; under `CI=true` a missing one is a failure.
fn tool_or_skip(name: &str, tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{name} needs {tool} and CI=true forbids skipping"
    );
    eprintln!("skipping {name}: needs {tool}");
    false
}

/// `runc run -d` of `bundle` as `id` under `runc`'s root, which must succeed.
fn runc_run_detached(runc: &mut RuncRoot, bundle: &Bundle, id: &str) {
    use std::io::{Read, Seek};
    runc.ids.push(id.to_string());
    // A file, not a pipe: the container's init inherits it and keeps it open.
    let mut err = tempfile::tempfile().expect("tempfile");
    let status = runc
        .cmd()
        .args(["run", "-d", "-b"])
        .arg(bundle.path())
        .arg(id)
        .stdout(Stdio::null())
        .stderr(err.try_clone().expect("dup"))
        .status()
        .expect("runc runs");
    let mut msg = String::new();
    let _ = err.rewind();
    let _ = err.read_to_string(&mut msg);
    assert!(status.success(), "runc run -d {id}: {msg}");
}

/// A busybox bundle running `args` with a memory and a pids limit.
fn limited_bundle(args: &[&str], memory: i64, pids: i64) -> Bundle {
    let mut b = Bundle::new(args);
    b.config["linux"]["resources"] = json!({
        "memory": { "limit": memory, "swap": memory },
        "pids": { "limit": pids }
    });
    b.save();
    b
}

/// The one `events --stats` line of `cmd`, parsed.
fn stats_line(mut cmd: Command, who: &str) -> Value {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("events runs");
    assert!(
        out.status.success(),
        "{who} events --stats: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{who}: one line:\n{text}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{who}: {e}: {text}"))
}

/// Every path of `v`: objects as `a/b{}`, arrays as `a[]`, leaves with their JSON type.
fn key_paths(v: &Value, at: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            out.insert(format!("{at}{{}}"));
            for (k, x) in m {
                key_paths(x, &format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            out.insert(format!("{at}[]"));
            for x in a {
                key_paths(x, &format!("{at}[]"), out);
            }
        }
        Value::Null => {
            out.insert(format!("{at}:null"));
        }
        Value::Bool(_) => {
            out.insert(format!("{at}:bool"));
        }
        Value::Number(_) => {
            out.insert(format!("{at}:number"));
        }
        Value::String(_) => {
            out.insert(format!("{at}:string"));
        }
    }
}

/// Fields runc omits when zero or empty (Go's `omitempty`): whether they show
/// depends on the values, which two containers need not share.
fn value_dependent(path: &str) -> bool {
    let p = path.split([':', '[', '{']).next().unwrap_or(path);
    let seg: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    matches!(
        seg[..],
        [
            "data",
            "cpu",
            "usage",
            "total" | "percpu" | "percpu_kernel" | "percpu_user"
        ] | ["data", "cpu", "throttling", _]
            | ["data", "cpuset", "cpus" | "mems"]
            | ["data", "memory", "cache"]
            | [
                "data",
                "memory",
                "usage" | "swap" | "kernel" | "kernelTCP",
                "usage" | "max"
            ]
            | ["data", "pids", "current" | "limit"]
            | ["data", "blkio", _, ..]
            | ["data", "hugetlb", _, "usage" | "max"]
    )
}

/// `events --stats` of a container with memory and pids limits: the same JSON
/// keys, nesting and types as runc 1.1.5 prints for the same bundle.
#[test]
fn events_stats_has_runcs_keys() {
    if !root_or_skip("events_stats_has_runcs_keys")
        || !tool_or_skip("events_stats_has_runcs_keys", "runc")
    {
        return;
    }
    let b = limited_bundle(&["sleep", "1000"], 64 << 20, 32);
    let mut runc = RuncRoot::new("stats-runc-");
    let runc_id = unique_id("stats-runc");
    runc_run_detached(&mut runc, &b, &runc_id);
    let rt = Rt::new();
    let id = unique_id("stats-mini");
    rt.run_detached(&b, &id);

    let mut c = runc.cmd();
    c.args(["events", "--stats", &runc_id]);
    let theirs = stats_line(c, "runc");
    let mut c = rt.cmd();
    c.args(["events", "--stats", &id]);
    let ours = stats_line(c, "mini-runtime");

    assert_eq!(ours["type"], "stats");
    assert_eq!(ours["id"], id.as_str());
    for v in [&theirs, &ours] {
        assert_eq!(v["data"]["memory"]["usage"]["limit"], 64 << 20, "{v}");
        assert_eq!(v["data"]["pids"]["limit"], 32, "{v}");
        assert_eq!(v["data"]["pids"]["current"], 1, "{v}");
    }
    let (mut a, mut b_) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&theirs, "", &mut a);
    key_paths(&ours, "", &mut b_);
    let report = |set: Vec<&String>| {
        set.iter()
            .map(|s| format!("  {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let only_runc: Vec<&String> = a.difference(&b_).collect();
    let only_ours: Vec<&String> = b_.difference(&a).collect();
    let unexplained: Vec<&String> = only_runc
        .iter()
        .chain(only_ours.iter())
        .copied()
        .filter(|p| !value_dependent(p))
        .collect();
    assert!(
        unexplained.is_empty(),
        "key paths differ beyond runc's omitted zero values:\nonly runc:\n{}\nonly mini-runtime:\n{}\nrunc: {theirs}\nmini-runtime: {ours}",
        report(only_runc),
        report(only_ours)
    );
    // The raw memory.stat keys are the kernel's: the same set for both.
    assert_eq!(
        theirs["data"]["memory"]["raw"]
            .as_object()
            .map(|m| m.keys().collect::<Vec<_>>()),
        ours["data"]["memory"]["raw"]
            .as_object()
            .map(|m| m.keys().collect::<Vec<_>>()),
    );
}

/// The library's typed stats of a running container on this host, and the
/// states that have none.
#[test]
fn library_stats_of_a_running_container() {
    if !root_or_skip("library_stats_of_a_running_container") {
        return;
    }
    let b = limited_bundle(&["sh", "-c", "sleep 1000 & sleep 1000"], 64 << 20, 32);
    let rt = Rt::new();
    let id = unique_id("stats-lib");
    rt.run_detached(&b, &id);
    let lib = oci_runtime::Runtime::new(rt.root.path());
    let s = lib.stats(&id).expect("stats");

    let m = s.memory.expect("memory");
    assert_eq!(m.usage.limit, 64 << 20);
    assert_eq!(
        m.memsw.as_ref().map(|e| e.limit),
        Some(64 << 20),
        "swap equal to the limit"
    );
    assert!(m.usage.usage > 0 && m.working_set <= m.usage.usage, "{m:?}");
    assert!(m.stat.contains_key("total_inactive_file") || m.stat.contains_key("inactive_file"));
    assert_eq!(m.oom.map(|o| o.oom_kill), Some(0));
    let p = s.pids.expect("pids");
    assert_eq!(p.limit, Some(32));
    // sh's child sleep and sh itself, exec'd into the other (busybox runs a
    // `-c` script's last command in place); the first may not be there yet.
    assert!((1..=2).contains(&p.current), "{p:?}");
    let cpu = s.cpu.and_then(|c| c.usage).expect("cpu usage");
    assert!(cpu.total > 0, "{cpu:?}");
    let layout = oci_runtime::cgroups::detect(Path::new("/sys/fs/cgroup")).expect("detect");
    if layout != oci_runtime::cgroups::Layout::Legacy {
        let psi = s.pressure.expect("pressure from the cgroup2 directory");
        assert!(
            psi.cpu.is_some() && psi.memory.is_some() && psi.io.is_some(),
            "{psi:?}"
        );
    }

    assert!(matches!(
        lib.stats("no-such-container"),
        Err(oci_runtime::Error::NotFound { .. })
    ));
    let out = rt.run(&["kill", &id, "KILL"]);
    assert!(out.status.success(), "kill: {}", common::stderr(&out));
    rt.wait_status(&id, "stopped");
    let e = lib.stats(&id).expect_err("stopped");
    assert!(
        matches!(&e, oci_runtime::Error::WrongState { status, .. } if status == "stopped"),
        "{e:?}"
    );
    let out = rt.run(&["events", "--stats", &id]);
    assert!(
        !out.status.success(),
        "events --stats of a stopped container"
    );
}

/// Allocates and touches memory until killed, once `argv[1]` exists.
const HOG: &str = r#"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc > 1)
        while (access(argv[1], F_OK) != 0)
            usleep(10000);
    for (;;) {
        char *p = malloc(1 << 20);
        if (p)
            memset(p, 0x5a, 1 << 20);
    }
}
"#;

fn hog_bundle(args: &[&str]) -> Bundle {
    let b = limited_bundle(args, 16 << 20, 32);
    common::compile_static(HOG, &b.rootfs().join("hog"));
    b
}

/// `events` in the background, its lines on a channel; killed on drop.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(rt: &Rt, id: &str) -> Watch {
        let mut child = rt
            .cmd()
            .args(["events", "--interval", "200ms", id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn events");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines }
    }

    /// The next line, parsed (bounded).
    fn next(&self) -> Value {
        let l = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("an events line within 30s");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"))
    }

    /// Waits (bounded) for `events` to exit on its own; returns every line it printed.
    fn finish(mut self) -> (std::process::ExitStatus, Vec<Value>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait events") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "events did not exit after the container stopped"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let lines = self
            .lines
            .iter()
            .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (status, lines)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until `path` exists.
fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_oom(v: &Value, id: &str) -> bool {
    *v == json!({ "type": "oom", "id": id })
}

/// A hog under a 16 MiB limit (swap equal: none to spill into) is OOM-killed
/// while its container lives on: `events` reports it, the stats count the kill,
/// and `events` ends when the container does.
#[test]
fn oom_kill_is_an_event_and_counted() {
    let name = "oom_kill_is_an_event_and_counted";
    if !root_or_skip(name) || !tool_or_skip(name, "gcc") {
        return;
    }
    let b = hog_bundle(&["sh", "-c", "/hog /tmp/go; touch /tmp/hog-died; sleep 1000"]);
    let rt = Rt::new();
    let id = unique_id("oom");
    rt.run_detached(&b, &id);
    let watch = Watch::start(&rt, &id);
    // The first stats line: the OOM watch is registered by now.
    assert_eq!(watch.next()["type"], "stats");
    std::fs::write(b.rootfs().join("tmp/go"), "").expect("touch go");
    wait_for(&b.rootfs().join("tmp/hog-died"));

    let lib = oci_runtime::Runtime::new(rt.root.path());
    let m = lib.stats(&id).expect("stats").memory.expect("memory");
    let oom = m.oom.expect("OOM counts");
    assert!(oom.oom_kill >= 1, "{oom:?}");
    // The JSON too: still runc's, the limit was hit.
    let out = rt.run(&["events", "--stats", &id]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("stats json");
    assert_eq!(v["data"]["memory"]["usage"]["limit"], 16 << 20);

    let out = rt.run(&["kill", &id, "KILL"]);
    assert!(out.status.success(), "kill: {}", common::stderr(&out));
    let (status, lines) = watch.finish();
    assert!(status.success(), "events exited {status}");
    assert!(
        lines.iter().any(|l| is_oom(l, &id)),
        "no oom event among {lines:#?}"
    );
    assert!(lines.iter().all(|l| l["id"] == id.as_str()));
}

/// When the OOM killer's victim is the init, the container stops with it: the
/// `oom` event still comes, and then `events` ends.
#[test]
fn oom_killed_init_ends_events_after_the_oom() {
    let name = "oom_killed_init_ends_events_after_the_oom";
    if !root_or_skip(name) || !tool_or_skip(name, "gcc") {
        return;
    }
    let b = hog_bundle(&["/hog", "/tmp/go"]);
    let rt = Rt::new();
    let id = unique_id("oom-init");
    rt.run_detached(&b, &id);
    let watch = Watch::start(&rt, &id);
    assert_eq!(watch.next()["type"], "stats");
    std::fs::write(b.rootfs().join("tmp/go"), "").expect("touch go");
    let (status, lines) = watch.finish();
    assert!(status.success(), "events exited {status}");
    assert!(
        lines.iter().any(|l| is_oom(l, &id)),
        "no oom event among {lines:#?}"
    );
    rt.wait_status(&id, "stopped");
}
