//! `--console-socket`: the pty master arrives over SCM_RIGHTS as runc sends it.

mod common;

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use common::{Bundle, Rt, root_or_skip, stderr, unique_id};
use serde_json::json;

/// Accepts one connection and receives one fd plus the message body.
fn recv_master(listener: &UnixListener) -> (OwnedFd, String) {
    let (conn, _) = listener.accept().expect("accept");
    let mut buf = [0u8; 256];
    let mut cmsg = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is an empty header filled below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg);
    // SAFETY: `msg` points at live buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, 0) };
    assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: recvmsg filled `msg`; CMSG_FIRSTHDR only reads it.
    let c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    assert!(!c.is_null(), "no control message");
    // SAFETY: `c` points into `cmsg`; an SCM_RIGHTS payload starts with one int fd.
    let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int) };
    // SAFETY: the fd was just received and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    (fd, String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

fn read_until_eof(master: OwnedFd) -> String {
    let mut f = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    // EIO marks the slave side closing.
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn create_and_exec_with_console_socket() {
    if !root_or_skip("create_and_exec_with_console_socket") {
        return;
    }
    let rt = Rt::new();
    let sockdir = tempfile::tempdir().expect("tempdir");
    let sock = sockdir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).expect("bind");
    let mut b = Bundle::new(&["sh", "-c", "tty; echo hi; sleep 1000"]);
    b.config["process"]["terminal"] = json!(true);
    b.config["process"]["consoleSize"] = json!({"height": 40, "width": 100});
    b.save();
    let id = unique_id("tty");
    let receiver = std::thread::spawn(move || {
        let r = recv_master(&listener);
        (r, listener)
    });
    let out = rt.run(&[
        "create",
        "--console-socket",
        sock.to_str().unwrap_or_default(),
        "-b",
        b.path().to_str().unwrap_or_default(),
        &id,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ((master, name), listener) = receiver.join().expect("receiver");
    assert!(name.starts_with("/dev/pts/"), "{name:?}");
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize from the pty.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    assert_eq!((ws.ws_row, ws.ws_col), (40, 100));
    assert!(rt.run(&["start", &id]).status.success());

    // exec --tty gets its own pty through the same socket.
    let receiver = std::thread::spawn(move || recv_master(&listener));
    let out = rt.run(&[
        "exec",
        "--tty",
        "--console-socket",
        sock.to_str().unwrap_or_default(),
        &id,
        "sh",
        "-c",
        "tty; echo exec-hi",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (exec_master, _) = receiver.join().expect("receiver");
    let text = read_until_eof(exec_master);
    assert!(
        text.contains("/dev/pts/") && text.contains("exec-hi"),
        "{text:?}"
    );

    assert!(rt.run(&["delete", "-f", &id]).status.success());
    let text = read_until_eof(master);
    assert!(
        text.contains("/dev/pts/0") && text.contains("hi"),
        "{text:?}"
    );
}

/// CVE-2025-52565 class: a /dev/console symlink in the image never receives the pty bind.
#[test]
fn symlinked_dev_console_refused() {
    if !root_or_skip("symlinked_dev_console_refused") {
        return;
    }
    let rt = Rt::new();
    let sockdir = tempfile::tempdir().expect("tempdir");
    let sock = sockdir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).expect("bind");
    let mut b = Bundle::new(&["true"]);
    b.config["process"]["terminal"] = json!(true);
    if let Some(m) = b.config["mounts"].as_array_mut() {
        m.retain(|m| m["destination"] != "/dev");
    }
    b.save();
    std::os::unix::fs::symlink(
        "/proc/sys/kernel/core_pattern",
        b.rootfs().join("dev/console"),
    )
    .expect("symlink");
    let id = unique_id("consym");
    let receiver = std::thread::spawn(move || recv_master(&listener));
    let out = rt.run(&[
        "create",
        "--console-socket",
        sock.to_str().unwrap_or_default(),
        "-b",
        b.path().to_str().unwrap_or_default(),
        &id,
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a symlinked /dev/console must be refused"
    );
    assert!(stderr(&out).contains("console"), "{}", stderr(&out));
    drop(receiver.join());
    assert!(!rt.root.path().join(&id).exists());
}

/// `run` of a terminal container without --console-socket proxies a pty, as runc does.
#[test]
fn run_with_terminal_and_no_console_socket() {
    if !root_or_skip("run_with_terminal_and_no_console_socket") {
        return;
    }
    let rt = Rt::new();
    let mut b = Bundle::new(&["sh", "-c", "tty; echo hi; exit 4"]);
    b.config["process"]["terminal"] = json!(true);
    b.save();
    let id = unique_id("runtty");
    let out = rt.run(&["run", "-b", b.path().to_str().unwrap_or_default(), &id]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("/dev/pts/0") && text.contains("hi"),
        "{text:?}"
    );
    let out = rt.run(&[
        "run",
        "-d",
        "-b",
        b.path().to_str().unwrap_or_default(),
        &unique_id("runttyd"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "detached needs a console socket"
    );

    let mut b = Bundle::new(&["sleep", "1000"]);
    b.config["process"]["terminal"] = json!(false);
    b.save();
    let id = unique_id("exectty");
    rt.run_detached(&b, &id);
    let out = rt.run(&["exec", "-t", &id, "sh", "-c", "tty; exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/dev/pts/"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(rt.run(&["delete", "-f", &id]).status.success());
}

#[test]
fn run_on_the_callers_terminal_gets_its_window_size_and_raw_mode_ends() {
    if !root_or_skip("run_on_the_callers_terminal") {
        return;
    }
    let rt = Rt::new();
    // The size is copied once mini-runtime holds the pty master, which may
    // be just after the container started: ask until it shows.
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "for i in $(busybox seq 1 200); do s=$(busybox stty size 2>&1); \
         [ \"$s\" = \"33 111\" ] && break; busybox sleep 0.05; done; echo \"size=$s\"; echo done",
    ]);
    b.config["process"]["terminal"] = json!(true);
    b.save();
    let id = unique_id("runsize");
    // mini-runtime's own terminal: a pty of 33 rows and 111 columns.
    let pty = nix::pty::openpty(
        Some(&nix::pty::Winsize {
            ws_row: 33,
            ws_col: 111,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }),
        None,
    )
    .expect("openpty");
    let before = nix::sys::termios::tcgetattr(&pty.slave).expect("tcgetattr");
    let mut cmd = rt.cmd();
    cmd.args(["run", "-b", b.path().to_str().unwrap_or_default(), &id])
        .stdin(pty.slave.try_clone().unwrap())
        .stdout(pty.slave.try_clone().unwrap())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn mini-runtime");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    // Everything written to its terminal, read from our side of it.
    let flags = nix::fcntl::fcntl(&pty.master, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&pty.master, nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match nix::unistd::read(&pty.master, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("size=33 111") && text.contains("done"),
        "{text:?}"
    );
    let after = nix::sys::termios::tcgetattr(&pty.slave).expect("tcgetattr");
    assert_eq!(
        after.local_flags, before.local_flags,
        "the caller's terminal is restored from raw mode"
    );
}
