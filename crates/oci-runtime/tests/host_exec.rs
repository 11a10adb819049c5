//! `exec_process` from a host: a process run in a running container with
//! stdio of its own, and one on a pty whose master comes back. One test in
//! this file: exec needs the protected binary, and protecting re-executes
//! the test process.

mod common;

use std::io::{Read, Write};
use std::path::Path;

use oci_runtime::{CreateOptions, ExecOptions, Runtime, Source, Stdio, Stream};
use oci_spec::runtime::Spec;

fn rootfs(dir: &Path) -> std::path::PathBuf {
    common::busybox_rootfs(dir, &["sh", "cat", "sleep", "tty", "echo"])
}

#[test]
fn exec_into_a_running_container_with_pipes_and_a_pty() {
    if !common::root_or_skip("exec_into_a_running_container") {
        return;
    }
    // Stable across the re-exec that protecting the binary does.
    let scratch =
        std::env::temp_dir().join(format!("oci-runtime-host-exec-{}", std::process::id()));
    let scratch = std::env::var_os("HOST_EXEC_SCRATCH").map_or(scratch, Into::into);
    // SAFETY: single-threaded so far in this test binary's only test.
    unsafe { std::env::set_var("HOST_EXEC_SCRATCH", &scratch) };
    oci_runtime::protect_exe(&scratch).expect("protect the test binary");

    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(dir.path().join("state"));
    let id = format!("exec-{}", std::process::id());
    let mut spec = Spec::default();
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(vec!["sleep".into(), "60".into()]));
    p.set_terminal(Some(false));
    p.set_env(Some(vec!["PATH=/bin".into()]));
    spec.set_process(Some(p.clone()));
    let c = rt
        .create_container(
            &id,
            Source::Spec {
                spec: Box::new(spec),
                rootfs: rootfs(dir.path()),
            },
            &CreateOptions::default(),
            Stdio {
                stdin: Stream::Null,
                stdout: Stream::Null,
                stderr: Stream::Null,
            },
        )
        .unwrap();
    rt.start(&id).unwrap();

    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "read x; echo got-$x; echo oops >&2; exit 7".into(),
    ]));
    let mut e = rt
        .exec_process(
            &id,
            &p,
            &ExecOptions::default(),
            Stdio {
                stdin: Stream::Pipe,
                stdout: Stream::Pipe,
                stderr: Stream::Pipe,
            },
        )
        .unwrap();
    writeln!(e.stdin.take().unwrap(), "in").unwrap();
    let mut out = String::new();
    e.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    e.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(
        (out.as_str(), err.as_str(), e.wait().unwrap()),
        ("got-in\n", "oops\n", 7)
    );

    p.set_terminal(Some(true));
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "tty; echo pty-ok".into(),
    ]));
    let mut t = rt
        .exec_process(&id, &p, &ExecOptions::default(), Stdio::default())
        .unwrap();
    let mut f = std::fs::File::from(t.pty_master.take().expect("a pty master"));
    let mut text = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    assert_eq!(t.wait().unwrap(), 0);
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("/dev/pts/") && text.contains("pty-ok"),
        "{text:?}"
    );

    rt.kill(&id, libc::SIGKILL, false).unwrap();
    assert_eq!(rt.wait_container(&c).unwrap(), 128 + libc::SIGKILL);
    let info = rt.state(&id).unwrap();
    assert_eq!(info.exit_status, Some(128 + libc::SIGKILL));
    assert!(info.exit_time.is_some());
    rt.delete(&id, false).unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
}
