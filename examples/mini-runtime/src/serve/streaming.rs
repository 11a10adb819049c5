//! The streaming server's backend: Exec runs a process in the container
//! with pipes or a terminal; Attach connects to the container's monitor.
//! The CRI RPCs answer with the server's single-use URLs.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use cri_streaming::{AttachRequest, Backend, BoxFuture, ExecRequest, Streams};
use tokio::sync::mpsc;

use super::containers::Containers;
use super::pods::Pods;

#[derive(Debug, Clone)]
pub(crate) struct StreamBackend {
    pub ctrs: Containers,
    pub pods: Pods,
}

/// A TCP connection to 127.0.0.1:`port` made in the network namespace at
/// `netns` (the host's with `None`), on a thread of its own: the socket
/// stays in that namespace wherever it is used.
fn connect_in(netns: Option<std::path::PathBuf>, port: u16) -> Result<std::net::TcpStream, String> {
    std::thread::spawn(move || {
        if let Some(ns) = &netns {
            let f = std::fs::File::open(ns).map_err(|e| format!("{}: {e}", ns.display()))?;
            use std::os::fd::AsRawFd;
            // SAFETY: setns on this thread only, which makes one connection and ends.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "entering the pod's network namespace: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10))
            .map_err(|e| format!("connecting to port {port} in the pod: {e}"))
    })
    .join()
    .map_err(|_| "the connecting thread panicked".to_string())?
}

/// Copies what `r` reads to `tx` until EOF (or EIO: a terminal whose
/// other side closed), on a thread of its own.
fn pump_out(
    mut r: impl Read + AsFd + Send + 'static,
    tx: mpsc::Sender<Vec<u8>>,
) -> std::thread::JoinHandle<()> {
    // A pipe of 1 MiB (the default most a process may ask) lets the
    // process write on while a read is under way; a terminal says no.
    // SAFETY: fcntl on an fd this function owns.
    unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&r.as_fd()),
            libc::F_SETPIPE_SZ,
            1 << 20,
        )
    };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// Copies what arrives on `rx` into `w`; closes `w` when `rx` ends.
fn pump_in(mut rx: mpsc::Receiver<Vec<u8>>, mut w: impl Write + Send + 'static) {
    std::thread::spawn(move || {
        while let Some(b) = rx.blocking_recv() {
            if w.write_all(&b).is_err() {
                break;
            }
        }
    });
}

impl Backend for StreamBackend {
    fn exec(&self, req: ExecRequest, s: Streams) -> BoxFuture<Result<i32, String>> {
        let ctrs = self.ctrs.clone();
        Box::pin(async move {
            let Streams {
                stdin,
                stdout,
                stderr,
                resize,
            } = s;
            let want = (stdin.is_some(), stdout.is_some(), stderr.is_some());
            let (id, cmd, tty) = (req.container_id.clone(), req.cmd.clone(), req.tty);
            let c = ctrs.clone();
            let mut p =
                tokio::task::spawn_blocking(move || c.exec_for_stream(&id, &cmd, tty, want))
                    .await
                    .map_err(|e| format!("the exec task: {e}"))??;
            let mut readers = Vec::new();
            if let Some(master) = p.pty_master.take() {
                let master = Arc::new(master);
                if let Some(tx) = stdout {
                    let r = std::fs::File::from(dup(&master)?);
                    readers.push(pump_out(r, tx));
                }
                if let Some(rx) = stdin {
                    pump_in(rx, std::fs::File::from(dup(&master)?));
                }
                if let Some(mut rx) = resize {
                    let m = master.clone();
                    tokio::spawn(async move {
                        while let Some((cols, rows)) = rx.recv().await {
                            let _ = oci_runtime::pty::set_window_size(m.as_fd(), rows, cols);
                        }
                    });
                }
            } else {
                if let (Some(tx), Some(r)) = (stdout, p.stdout.take()) {
                    readers.push(pump_out(r, tx));
                }
                if let (Some(tx), Some(r)) = (stderr, p.stderr.take()) {
                    readers.push(pump_out(r, tx));
                }
                if let (Some(rx), Some(w)) = (stdin, p.stdin.take()) {
                    pump_in(rx, w);
                }
            }
            p.exited().await.map_err(|e| e.to_string())?;
            let code = p.wait().map_err(|e| e.to_string())?;
            tokio::task::spawn_blocking(move || {
                for r in readers {
                    let _ = r.join();
                }
            })
            .await
            .map_err(|e| format!("the output task: {e}"))?;
            Ok(code)
        })
    }

    fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
    ) -> BoxFuture<Result<tokio::net::TcpStream, String>> {
        self.forward(pod_sandbox_id, port)
    }

    fn attach(&self, req: AttachRequest, s: Streams) -> BoxFuture<Result<(), String>> {
        let ctrs = self.ctrs.clone();
        Box::pin(async move {
            let Streams {
                stdin,
                stdout,
                stderr,
                resize,
            } = s;
            let id = req.container_id.clone();
            let close_stdin = ctrs
                .closes_stdin_on_detach(&id)
                .map_err(|e| e.message().to_string())?;
            let c = ctrs.clone();
            let mut a = tokio::task::spawn_blocking(move || c.runtime().attach(&id))
                .await
                .map_err(|e| format!("the attach task: {e}"))?
                .map_err(|e| e.to_string())?;
            let to_monitor = a.try_clone().map_err(|e| e.to_string())?;
            let to_monitor = Arc::new(std::sync::Mutex::new(to_monitor));
            // The end of the client's stdin: the container's closes
            // (stdin_once), or the attach ends.
            let (detach_tx, mut detach_rx) = tokio::sync::oneshot::channel::<()>();
            if let Some(mut rx) = stdin {
                let m = to_monitor.clone();
                std::thread::spawn(move || {
                    while let Some(b) = rx.blocking_recv() {
                        let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
                        if m.send(&oci_runtime::monitor::Frame::Stdin(b)).is_err() {
                            return;
                        }
                    }
                    if close_stdin {
                        let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
                        let _ = m.send(&oci_runtime::monitor::Frame::CloseStdin);
                    } else {
                        let _ = detach_tx.send(());
                    }
                });
            }
            if let Some(mut rx) = resize {
                let m = to_monitor.clone();
                std::thread::spawn(move || {
                    while let Some((cols, rows)) = rx.blocking_recv() {
                        let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
                        if m.send(&oci_runtime::monitor::Frame::Resize(rows, cols))
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
            let relay = tokio::task::spawn_blocking(move || {
                use oci_runtime::monitor::Frame;
                while let Ok(Some(f)) = a.recv() {
                    let (tx, data) = match f {
                        Frame::Stdout(b) => (stdout.as_ref(), b),
                        Frame::Stderr(b) => (stderr.as_ref().or(stdout.as_ref()), b),
                        Frame::Exit(_) => break,
                        _ => continue,
                    };
                    if let Some(tx) = tx
                        && tx.blocking_send(data).is_err()
                    {
                        break;
                    }
                }
            });
            let detached = async {
                if (&mut detach_rx).await.is_err() {
                    // No stdin, or it closed the container's: the attach
                    // lasts as long as the container.
                    std::future::pending::<()>().await;
                }
            };
            let ender = to_monitor.clone();
            tokio::select! {
                r = relay => r.map_err(|e| format!("the attach task: {e}")),
                () = detached => {
                    // The relay's recv returns: its output senders go.
                    let _ = ender.lock().unwrap_or_else(|e| e.into_inner()).detach();
                    Ok(())
                }
            }
        })
    }
}

impl StreamBackend {
    fn forward(&self, pod: &str, port: u16) -> BoxFuture<Result<tokio::net::TcpStream, String>> {
        let pods = self.pods.clone();
        let pod = pod.to_string();
        Box::pin(async move {
            let netns = pods.netns_of(&pod).map_err(|e| e.message().to_string())?;
            let s = tokio::task::spawn_blocking(move || connect_in(netns, port))
                .await
                .map_err(|e| format!("the connect task: {e}"))??;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            tokio::net::TcpStream::from_std(s).map_err(|e| e.to_string())
        })
    }
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, String> {
    fd.try_clone()
        .map_err(|e| format!("duplicating the terminal: {e}"))
}
