//! The library as a long-lived, multi-threaded host uses it: containers
//! from specs in memory, each with stdio of its own, created concurrently
//! from a busy tokio runtime, waited for through their pidfds.

mod common;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use oci_runtime::{CreateOptions, Runtime, Source, Stdio, Stream};
use oci_spec::runtime::Spec;

/// A busybox root filesystem shared, read-only, by the containers.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    common::busybox_rootfs(dir, &["sh", "cat", "echo", "ls", "wc", "sleep", "tty"])
}

fn spec(args: &[&str], terminal: bool) -> Box<Spec> {
    let mut s = Spec::default();
    let mut p = s.process().clone().unwrap_or_default();
    p.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
    p.set_terminal(Some(terminal));
    p.set_env(Some(vec!["PATH=/bin".into()]));
    s.set_process(Some(p));
    Box::new(s)
}

/// The tests of this file run one at a time, so that one's fd count is not
/// another's.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn fd_count() -> usize {
    common::count("/proc/self/fd")
}

#[test]
fn fifty_containers_from_a_busy_tokio_host_each_with_its_own_stdio() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !common::root_or_skip("fifty_containers_from_a_busy_tokio_host") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(dir.path());
    let rt = Arc::new(Runtime::new(dir.path().join("state")));
    // tokio keeps a process-wide socket pair for signals once a runtime has
    // run: make it exist before counting.
    drop(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap(),
    );
    let before = fd_count();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let busy = Arc::new(AtomicBool::new(true));
    let outputs = tokio.block_on(async {
        // Keep the runtime's threads busy with timers and allocation meanwhile.
        let mut noise = Vec::new();
        for _ in 0..8 {
            let busy = busy.clone();
            noise.push(tokio::spawn(async move {
                let mut v: Vec<Vec<u8>> = Vec::new();
                while busy.load(Ordering::Relaxed) {
                    v.push(vec![0u8; 4096]);
                    if v.len() > 64 {
                        v.clear();
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }));
        }
        let mut tasks = Vec::new();
        for i in 0..50 {
            let rt = rt.clone();
            let rootfs = rootfs.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                let id = format!("host-{}-{i}", std::process::id());
                let script = "echo out-$N; echo err-$N >&2; read line; echo got-$line; \
                              ls /proc/self/fd | wc -l";
                let mut s = spec(&["sh", "-c", script], false);
                if let Some(p) = s.process_mut() {
                    p.set_env(Some(vec!["PATH=/bin".into(), format!("N={i}")]));
                }
                let mut c = rt
                    .create_container(
                        &id,
                        Source::Spec { spec: s, rootfs },
                        &CreateOptions::default(),
                        Stdio {
                            stdin: Stream::Pipe,
                            stdout: Stream::Pipe,
                            stderr: Stream::Pipe,
                        },
                    )
                    .unwrap_or_else(|e| panic!("create {id}: {e}"));
                rt.start(&id).unwrap();
                let mut stdin = c.stdin.take().unwrap();
                writeln!(stdin, "hello-{i}").unwrap();
                drop(stdin);
                let mut out = String::new();
                c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
                let mut err = String::new();
                c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                #[cfg(feature = "tokio")]
                tokio::runtime::Handle::current()
                    .block_on(c.exited())
                    .unwrap();
                let code = rt.wait_container(&c).unwrap();
                let info = rt.state(&id).unwrap();
                rt.delete(&id, false).unwrap();
                (i, code, out, err, info)
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(
                tokio::time::timeout(Duration::from_secs(120), t)
                    .await
                    .expect("a container hung")
                    .expect("a container task panicked"),
            );
        }
        busy.store(false, Ordering::Relaxed);
        for n in noise {
            n.await.unwrap();
        }
        results
    });
    for (i, code, out, err, info) in outputs {
        assert_eq!(code, 0, "container {i}");
        // Only 0, 1, 2 and ls's own directory fd: nothing leaked in.
        assert_eq!(out, format!("out-{i}\ngot-hello-{i}\n4\n"), "container {i}");
        assert_eq!(err, format!("err-{i}\n"), "container {i}");
        assert_eq!(info.state.status().to_string(), "stopped", "container {i}");
        assert_eq!(info.exit_status, Some(0), "container {i}");
        assert!(info.exit_time.is_some(), "container {i}");
    }
    drop(tokio);
    let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            )
        })
        .collect();
    assert_eq!(fd_count(), before, "the host kept fds: {fds:?}");
}

#[test]
fn the_pty_master_comes_back_without_a_console_socket() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !common::root_or_skip("the_pty_master_comes_back") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(dir.path());
    let rt = Runtime::new(dir.path().join("state"));
    let id = format!("pty-{}", std::process::id());
    let mut c = rt
        .create_container(
            &id,
            Source::Spec {
                spec: spec(&["sh", "-c", "tty; echo on-the-pty"], true),
                rootfs,
            },
            &CreateOptions::default(),
            Stdio::default(),
        )
        .unwrap();
    let master: OwnedFd = c.pty_master.take().expect("a pty master");
    rt.start(&id).unwrap();
    let mut f = std::fs::File::from(master);
    let mut out = Vec::new();
    // EIO once the last slave fd closes ends the read.
    let mut buf = [0u8; 256];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(rt.wait_container(&c).unwrap(), 0);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("/dev/pts/") && text.contains("on-the-pty"),
        "{text:?}"
    );
    // The state dir is the bundle of a spec given in memory.
    let bundle = rt.state(&id).unwrap().state.bundle().clone();
    assert!(bundle.join("config.json").is_file());
    rt.delete(&id, false).unwrap();
}

#[test]
fn bad_specs_rootfs_and_fds_are_refused_and_leave_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !common::root_or_skip("bad_specs_rootfs_and_fds") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rootfs = busybox_rootfs(dir.path());
    let state = dir.path().join("state");
    let rt = Runtime::new(&state);
    let left = || std::fs::read_dir(&state).map(|d| d.count()).unwrap_or(0);

    let mut bad = spec(&["sh"], false);
    bad.process_mut()
        .as_mut()
        .unwrap()
        .set_args(Some(Vec::new()));
    let e = rt
        .create_container(
            "bad-spec",
            Source::Spec {
                spec: bad,
                rootfs: rootfs.clone(),
            },
            &CreateOptions::default(),
            Stdio::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("process.args"), "{e}");

    let e = rt
        .create_container(
            "no-rootfs",
            Source::Spec {
                spec: spec(&["sh"], false),
                rootfs: dir.path().join("missing"),
            },
            &CreateOptions::default(),
            Stdio::default(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");

    // Stdio streams with a terminal.
    let e = rt
        .create_container(
            "tty-and-pipes",
            Source::Spec {
                spec: spec(&["sh"], true),
                rootfs,
            },
            &CreateOptions::default(),
            Stdio {
                stdout: Stream::Pipe,
                ..Stdio::default()
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("process.terminal"), "{e}");
    assert_eq!(left(), 0, "a refused create left state behind");
}
