//! Monitored containers: output to a CRI log, attach, exit status and OOM
//! recorded by the monitor, and a host killed with SIGKILL at many points
//! while a new host takes over.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use oci_runtime::monitor::{Frame, MonitorOptions};
use oci_runtime::{CreateOptions, Runtime, Source};
use oci_spec::runtime::Spec;

const MONITOR: &str = env!("CARGO_BIN_EXE_oci-runtime-monitor");

fn rootfs(dir: &Path) -> PathBuf {
    common::busybox_rootfs(dir, &["sh", "cat", "sleep", "echo", "head", "tr", "seq"])
}

fn spec(script: &str) -> Box<Spec> {
    let mut s = Spec::default();
    let mut p = s.process().clone().unwrap_or_default();
    p.set_args(Some(vec!["sh".into(), "-c".into(), script.into()]));
    p.set_terminal(Some(false));
    p.set_env(Some(vec!["PATH=/bin".into()]));
    s.set_process(Some(p));
    Box::new(s)
}

fn opts(log: PathBuf, stdin: bool) -> MonitorOptions {
    MonitorOptions {
        binary: MONITOR.into(),
        args: Vec::new(),
        log_path: log,
        stdin,
        create: CreateOptions::default(),
    }
}

/// Force-deletes the containers it names when dropped, so that a failing
/// test leaves no container (and so no monitor) behind.
struct Cleanup<'a> {
    rt: &'a Runtime,
    ids: Vec<String>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.rt.delete(id, true);
        }
    }
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in ticks since boot.
fn start_ticks(stat: &str) -> u64 {
    stat.rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(19))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// Whether a process of the monitor binary started at or after `since`
/// (ticks since boot) still runs: one the round's host started.
fn monitor_running(since: u64) -> bool {
    let me = std::fs::canonicalize(MONITOR).unwrap_or_else(|_| MONITOR.into());
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read_link(e.path().join("exe")).is_ok_and(|x| x == me)
                && std::fs::read_to_string(e.path().join("stat"))
                    .is_ok_and(|st| start_ticks(&st) >= since)
        })
}

/// The log's lines as (stream, tag, text), checking the timestamp's form.
fn log_lines(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let ts = it.next().unwrap_or_default();
            assert!(
                ts.len() == 30 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                "{l:?}"
            );
            let f = |x: Option<&str>| x.unwrap_or_default().to_string();
            (f(it.next()), f(it.next()), f(it.next()))
        })
        .collect()
}

#[test]
fn output_goes_to_the_cri_log_and_attach_and_the_monitor_records_the_exit() {
    if !common::root_or_skip("monitor_output_and_attach") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A root long enough that the attach socket's path does not fit in a
    // sockaddr_un: the monitor binds it through its dir's fd.
    let rt = Runtime::new(
        dir.path()
            .join("a-state-root-long-enough-that-the-attach-socket-path-would-not-fit-in-sun-path"),
    );
    let id = format!("mon-{}", std::process::id());
    let _cleanup = Cleanup {
        rt: &rt,
        ids: vec![id.clone()],
    };
    let log = dir.path().join("ctr.log");
    let script = "echo one; echo two >&2; read x; echo got-$x; exit 3";
    let pid = rt
        .create_monitored(
            &id,
            Source::Spec {
                spec: spec(script),
                rootfs: rootfs(dir.path()),
            },
            &opts(log.clone(), true),
        )
        .unwrap();
    assert!(pid > 0);
    // The init is the monitor's child, not ours.
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: i32 = ppid
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(ppid, std::process::id() as i32);
    let status = std::fs::read_to_string(format!("/proc/{ppid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: ?");
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: ?");
    eprintln!("monitor {ppid}: {rss}, {hwm}");

    let mut a = rt.attach(&id).unwrap();
    rt.start(&id).unwrap();
    // Log rotation: once the first lines are written, the file is moved
    // away and the monitor told to reopen; what follows goes to a new file.
    for _ in 0..500 {
        if log_lines(&log).len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let rotated = dir.path().join("ctr.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    rt.reopen_log(&id).unwrap();
    assert!(
        log.exists(),
        "reopen_log returned before the new file was there"
    );
    a.send(&Frame::Stdin(b"hello\n".to_vec())).unwrap();
    let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
    while let Some(f) = a.recv().unwrap() {
        match f {
            Frame::Stdout(b) => out.extend(b),
            Frame::Stderr(b) => err.extend(b),
            Frame::Exit(c) => code = Some(c),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(String::from_utf8_lossy(&out), "one\ngot-hello\n");
    assert_eq!(String::from_utf8_lossy(&err), "two\n");
    assert_eq!(code, Some(3));
    let exit = rt.wait_exit(&id, Some(Duration::from_secs(30))).unwrap();
    assert_eq!((exit.code, exit.oom_killed), (3, false));
    assert!(exit.time.is_some());
    let want = |s: &str, t: &str| (s.to_string(), "F".to_string(), t.to_string());
    assert_eq!(log_lines(&log), vec![want("stdout", "got-hello")]);
    let mut lines = log_lines(&log);
    lines.extend(log_lines(&rotated));
    lines.sort();
    assert_eq!(
        lines,
        vec![
            want("stderr", "two"),
            want("stdout", "got-hello"),
            want("stdout", "one")
        ]
    );
    rt.delete(&id, false).unwrap();
}

#[test]
fn the_monitor_records_an_oom_kill() {
    if !common::root_or_skip("monitor_oom") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(dir.path().join("state"));
    let id = format!("oom-{}", std::process::id());
    let _cleanup = Cleanup {
        rt: &rt,
        ids: vec![id.clone()],
    };
    let mut s = spec("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived");
    let mut linux = s.linux().clone().unwrap_or_default();
    let mut res = linux.resources().clone().unwrap_or_default();
    let mut mem = oci_spec::runtime::LinuxMemory::default();
    mem.set_limit(Some(16 << 20));
    mem.set_swap(Some(16 << 20));
    res.set_memory(Some(mem));
    linux.set_resources(Some(res));
    s.set_linux(Some(linux));
    rt.create_monitored(
        &id,
        Source::Spec {
            spec: s,
            rootfs: rootfs(dir.path()),
        },
        &opts(dir.path().join("oom.log"), false),
    )
    .unwrap();
    rt.start(&id).unwrap();
    let exit = rt.wait_exit(&id, Some(Duration::from_secs(60))).unwrap();
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state").join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    let mem = state["cgroups"]["v1"]["memory"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ctl =
        std::fs::read_to_string(Path::new(&mem).join("memory.oom_control")).unwrap_or_default();
    assert!(exit.oom_killed, "{exit:?} {mem} {ctl:?}");
    assert_ne!(exit.code, 0, "{exit:?}");
    rt.delete(&id, true).unwrap();
}

/// The host of `host_killed_at_many_points`: creates and starts one
/// monitored container, printing each step, until it is killed.
#[test]
fn host_role() {
    let Ok(root) = std::env::var("MONITOR_TEST_HOST_ROOT") else {
        return;
    };
    let id = std::env::var("MONITOR_TEST_HOST_ID").unwrap();
    let dir = PathBuf::from(std::env::var("MONITOR_TEST_HOST_DIR").unwrap());
    let rt = Runtime::new(&root);
    println!("creating");
    let script = "for i in $(seq 1 200); do echo line-$i; done; sleep 60";
    rt.create_monitored(
        &id,
        Source::Spec {
            spec: spec(script),
            rootfs: dir.join("rootfs"),
        },
        &opts(dir.join(format!("{id}.log")), false),
    )
    .unwrap();
    println!("created");
    rt.start(&id).unwrap();
    println!("started");
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn host_killed_at_many_points_leaves_containers_a_new_host_can_manage() {
    if !common::root_or_skip("host_killed_at_many_points") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    rootfs(dir.path());
    let root = dir.path().join("state");
    let rt = Runtime::new(&root);
    let mut seen = [0usize; 3];
    for round in 0..20u64 {
        let id = format!("kill9-{}-{round}", std::process::id());
        let _cleanup = Cleanup {
            rt: &rt,
            ids: vec![id.clone()],
        };
        let mut host = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "host_role", "--nocapture", "--test-threads=1"])
            .env("MONITOR_TEST_HOST_ROOT", &root)
            .env("MONITOR_TEST_HOST_ID", &id)
            .env("MONITOR_TEST_HOST_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it at a different point each round: after a step it printed,
        // plus a delay that grows with the round.
        let host_started = start_ticks(
            &std::fs::read_to_string(format!("/proc/{}/stat", host.id())).unwrap_or_default(),
        );
        let wait_for = ["creating", "created", "started"][(round % 3) as usize];
        let mut lines = BufReader::new(host.stdout.take().unwrap()).lines();
        for l in lines.by_ref() {
            // libtest may put "test host_role ... " before the first one.
            if l.unwrap_or_default().trim().ends_with(wait_for) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(round * 3));
        let _ = host.kill();
        let _ = host.wait();

        // The new host: whatever it finds, it can manage completely. A
        // monitor that got the request may still be making the container:
        // it shows up, or no monitor is left.
        let mut found = None;
        for _ in 0..1000 {
            found = rt.list().unwrap().into_iter().find(|c| c.state.id() == &id);
            if found.is_some() || !monitor_running(host_started) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if found.is_none() {
            found = rt.list().unwrap().into_iter().find(|c| c.state.id() == &id);
        }
        let Some(info) = found else {
            // Killed before the monitor took the request: nothing was made.
            seen[0] += 1;
            continue;
        };
        // A create still in flight in the monitor finishes by itself.
        let mut status = info.state.status().to_string();
        for _ in 0..500 {
            if status != "creating" {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            status = rt.state(&id).unwrap().state.status().to_string();
        }
        if status == "created" {
            if let Err(e) = rt.start(&id) {
                let st =
                    std::fs::read_to_string(root.join(&id).join("state.json")).unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(&st).unwrap_or_default();
                let pid = v["pid"].as_i64().unwrap_or(0);
                let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| format!("{:?}", std::fs::read_link(e.path())))
                    .collect();
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                panic!(
                    "round {round}: start: {e}\nstate {st}\nfds {fds:?}\n{}",
                    &status[..status.len().min(300)]
                );
            }
            seen[1] += 1;
        } else {
            seen[2] += 1;
        }
        let mut a = None;
        for _ in 0..500 {
            if let Ok(c) = rt.attach(&id) {
                a = Some(c);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut a = a.unwrap_or_else(|| {
            let ps = Command::new("ps")
                .args(["-eo", "pid,ppid,stat,args"])
                .output()
                .unwrap();
            panic!(
                "round {round} ({wait_for}): no monitor to attach to; status {status}; {:?}\n{}",
                rt.state(&id),
                String::from_utf8_lossy(&ps.stdout)
            )
        });
        // The log fills up with all 200 lines, then the container sleeps.
        let log = dir.path().join(format!("{id}.log"));
        for _ in 0..1000 {
            if log_lines(&log).len() >= 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let lines = log_lines(&log);
        let texts: Vec<&str> = lines.iter().map(|(_, _, t)| t.as_str()).collect();
        let want: Vec<String> = (1..=200).map(|i| format!("line-{i}")).collect();
        assert_eq!(texts, want, "round {round}: the log");
        rt.kill(&id, libc::SIGKILL, false).unwrap();
        let exit = rt.wait_exit(&id, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(exit.code, 128 + libc::SIGKILL, "round {round}");
        // The attached client gets the exit too.
        let mut code = None;
        while let Ok(Some(f)) = a.recv() {
            if let Frame::Exit(c) = f {
                code = Some(c);
            }
        }
        assert_eq!(code, Some(137), "round {round}");
        rt.delete(&id, false).unwrap();
    }
    // Nothing half-made is left, and the rounds saw the kill land both
    // before and after the container existed.
    assert_eq!(std::fs::read_dir(&root).map(|d| d.count()).unwrap_or(0), 0);
    assert!(seen[1] + seen[2] > 0, "{seen:?}");
    eprintln!(
        "{} rounds found nothing made, {} a created container, {} a running one",
        seen[0], seen[1], seen[2]
    );
}

#[test]
fn a_pty_container_gets_resizes_and_the_log_reopens_on_sigusr1() {
    if !common::root_or_skip("monitor_pty_and_reopen") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(dir.path().join("state"));
    let id = format!("ptymon-{}", std::process::id());
    let _cleanup = Cleanup {
        rt: &rt,
        ids: vec![id.clone()],
    };
    let log = dir.path().join("pty.log");
    let mut s = spec("echo before; read x; stty size; echo after");
    s.process_mut().as_mut().unwrap().set_terminal(Some(true));
    let root = rootfs(dir.path());
    std::os::unix::fs::symlink("busybox", root.join("bin/stty")).unwrap();
    let pid = rt
        .create_monitored(
            &id,
            Source::Spec {
                spec: s,
                rootfs: root,
            },
            &opts(log.clone(), true),
        )
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let monitor: i32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut a = rt.attach(&id).unwrap();
    rt.start(&id).unwrap();
    // "before" is in the log: rotate it, and have the monitor reopen.
    for _ in 0..1000 {
        if log_lines(&log).iter().any(|(_, _, t)| t.contains("before")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::rename(&log, dir.path().join("pty.log.1")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    for _ in 0..1000 {
        if log.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(log.exists(), "the monitor reopened its log");
    // A resize, then the line the container waits for: in this order.
    a.send(&Frame::Resize(40, 120)).unwrap();
    a.send(&Frame::Stdin(b"go\n".to_vec())).unwrap();
    let mut out = Vec::new();
    let mut code = None;
    while let Some(f) = a.recv().unwrap() {
        match f {
            Frame::Stdout(b) => out.extend(b),
            Frame::Exit(c) => code = Some(c),
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("40 120") && text.contains("after"),
        "{text:?}"
    );
    assert_eq!(code, Some(0));
    let old: Vec<String> = log_lines(&dir.path().join("pty.log.1"))
        .into_iter()
        .map(|l| l.2)
        .collect();
    let new: Vec<String> = log_lines(&log).into_iter().map(|l| l.2).collect();
    assert!(old.iter().any(|t| t.contains("before")), "{old:?}");
    assert!(
        new.iter().any(|t| t.contains("after")) && !new.iter().any(|t| t.contains("before")),
        "{new:?}"
    );
    rt.wait_exit(&id, Some(Duration::from_secs(30))).unwrap();
    rt.delete(&id, false).unwrap();
}

#[test]
fn a_container_that_writes_before_it_reads_does_not_stall_the_monitor() {
    if !common::root_or_skip("monitor_stdin_backpressure") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(dir.path().join("state"));
    let id = format!("bp-{}", std::process::id());
    let _cleanup = Cleanup {
        rt: &rt,
        ids: vec![id.clone()],
    };
    // 300 kB of output first (more than a pipe holds), then it reads stdin.
    let script = "head -c 300000 /dev/zero | tr '\\0' x; echo; cat > /dev/null; echo done";
    rt.create_monitored(
        &id,
        Source::Spec {
            spec: spec(script),
            rootfs: rootfs(dir.path()),
        },
        &opts(dir.path().join("bp.log"), true),
    )
    .unwrap();
    let mut a = rt.attach(&id).unwrap();
    // 300 kB of input before the container reads any: with a blocking write
    // the monitor would wait for the container, and it for the monitor.
    a.send(&Frame::Stdin(vec![b'y'; 300_000])).unwrap();
    a.send(&Frame::CloseStdin).unwrap();
    rt.start(&id).unwrap();
    let mut out = Vec::new();
    let mut code = None;
    while let Some(f) = a.recv().unwrap() {
        match f {
            Frame::Stdout(b) => out.extend(b),
            Frame::Exit(c) => code = Some(c),
            _ => {}
        }
    }
    assert_eq!(code, Some(0));
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.ends_with("\ndone\n") && text.len() == 300_000 + 6,
        "{} bytes",
        text.len()
    );
    rt.wait_exit(&id, Some(Duration::from_secs(30))).unwrap();
}
