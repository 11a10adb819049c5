//! The caller's terminal for `run` and `exec` without `--console-socket`: a pty
//! proxied through a private console socket, raw mode while it lasts, and the
//! signals this process gets forwarded to the container's.

use std::path::PathBuf;

use crate::oci_cmd::CliError;

/// A listening console socket in a private temp dir.
pub(crate) struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    pub(crate) fn bind() -> Result<ConsoleSocket, CliError> {
        let dir = tempfile::Builder::new()
            .prefix("mini-runtime-console-")
            .tempdir()
            .map_err(|source| CliError::Io {
                operation: "creating",
                path: std::env::temp_dir(),
                source,
            })?;
        let path = dir.path().join("console.sock");
        let listener =
            std::os::unix::net::UnixListener::bind(&path).map_err(|source| CliError::Io {
                operation: "binding",
                path: path.clone(),
                source,
            })?;
        Ok(ConsoleSocket {
            _dir: dir,
            path,
            listener,
        })
    }

    pub(crate) fn receive(
        &self,
    ) -> std::thread::JoinHandle<Result<std::os::fd::OwnedFd, CliError>> {
        let listener = self.listener.try_clone();
        std::thread::spawn(move || {
            let listener = listener.map_err(|source| CliError::Io {
                operation: "cloning",
                path: "console socket".into(),
                source,
            })?;
            let (stream, _) = listener.accept().map_err(|source| CliError::Io {
                operation: "accepting",
                path: "console socket".into(),
                source,
            })?;
            Ok(oci_runtime::receive_pty_master(&stream)?)
        })
    }
}

/// Puts our stdin terminal in raw mode (when it is one) and restores it on drop.
pub(crate) struct TerminalGuard {
    saved: Option<libc::termios>,
}

impl TerminalGuard {
    pub(crate) fn raw(master: &std::os::fd::OwnedFd) -> TerminalGuard {
        use std::os::fd::AsRawFd;
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ fills `ws`; on a non-terminal it fails and `ws` stays zero.
        if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) } == 0 {
            // SAFETY: TIOCSWINSZ reads `ws`; `master` is an open pty master.
            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
        // SAFETY: termios is plain data; tcgetattr fills it or fails on a non-terminal.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a valid termios pointer.
        if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
            return TerminalGuard { saved: None };
        }
        let saved = t;
        // SAFETY: cfmakeraw only edits the struct.
        unsafe { libc::cfmakeraw(&mut t) };
        // SAFETY: fd 0 is a terminal (tcgetattr succeeded); `t` is valid.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        TerminalGuard { saved: Some(saved) }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            // SAFETY: restoring the settings read from fd 0.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
    }
}

/// Copies stdin to the pty and the pty to stdout until the container side closes.
pub(crate) fn copy_terminal(master: std::os::fd::OwnedFd) {
    let mut output = std::fs::File::from(master);
    if let Ok(mut input) = output.try_clone() {
        // Detached: it ends with the process; stdin may never reach EOF.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut input);
        });
    }
    // EIO once the last slave fd closes, i.e. the container has exited.
    let _ = std::io::copy(&mut output, &mut std::io::stdout());
}

/// A terminal wanted without `--console-socket` is proxied through a pty this
/// process receives on a private socket, which it sets as the console socket.
/// Only a foreground command can proxy; `what` names the thing being detached.
pub(crate) fn proxy_console(
    wants_tty: bool,
    detach: bool,
    what: &str,
    console_socket: &mut Option<PathBuf>,
) -> Result<Option<ConsoleSocket>, CliError> {
    if !wants_tty {
        return Ok(None);
    }
    if detach {
        return Err(CliError::Usage(format!(
            "cannot allocate a terminal for a detached {what} without --console-socket"
        )));
    }
    let console = ConsoleSocket::bind()?;
    *console_socket = Some(console.path.clone());
    Ok(Some(console))
}

static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// A signal that arrived before the container's pid was known.
static PENDING: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; `pid` is the container process we wait for.
        unsafe { libc::kill(pid, sig) };
    } else {
        PENDING.store(sig, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Starts forwarding to `pid`, delivering a signal that arrived before it was known.
pub(crate) fn forward_to(pid: i32) {
    FORWARD_TO.store(pid, std::sync::atomic::Ordering::SeqCst);
    let sig = PENDING.swap(0, std::sync::atomic::Ordering::SeqCst);
    if sig != 0 {
        // SAFETY: signalling the container process we wait for.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Installs handlers that forward the usual terminal and job-control signals to the
/// container process once [`forward_to`] names it.
pub(crate) fn install_forwarding() {
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGWINCH,
    ] {
        // SAFETY: installing an async-signal-safe handler (it only calls kill).
        unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
    }
}
