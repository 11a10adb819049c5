//! The caller's terminal for `run` and `exec` without `--console-socket`: a pty
//! received on a private console socket, then proxied with `oci_runtime::pty`
//! (raw mode, window size, signals passed on).

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

/// Runs the caller's terminal for the container's pty until the container
/// side closes: raw mode, its window size (and SIGWINCH) carried over.
pub(crate) fn proxy_terminal(pid: i32, master: std::os::fd::OwnedFd) {
    use oci_runtime::pty;
    pty::forward_to(pid, Some(&master));
    let _raw = pty::RawMode::enable(std::io::stdin()).ok().flatten();
    let _ = pty::copy_window_size(std::io::stdin(), &master);
    // The master stays open for the SIGWINCH handler: proxy a duplicate.
    if let Ok(copy) = master.try_clone() {
        pty::proxy_stdio(copy);
    }
    pty::forward_to(pid, None);
}
