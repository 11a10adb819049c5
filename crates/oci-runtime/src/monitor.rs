//! The per-container monitor: a small process, not a child of the host,
//! that is the container init's parent, so a container outlives the host
//! that created it (as conmon and containerd's shims do).
//!
//! [`Runtime::create_monitored`] starts the monitor binary (the crate's
//! `oci-runtime-monitor`, or any binary whose `main` calls [`monitor_main`])
//! and hands it the request on a pipe. The monitor forks once more and
//! leaves its session, so it is reparented away from the host, creates the
//! container with pipes (or a pty) for stdio, and answers with the pid.
//! Then, until the container exits, it:
//! - writes the container's output to the log file in the CRI format,
//!   `<RFC 3339 nano> <stdout|stderr> <P|F> <text>`, a line longer than
//!   [`MAX_LOG_LINE`] split in partial (`P`) pieces, and reopens the file on
//!   SIGUSR1 (log rotation);
//! - serves attach on `attach.sock` in the container's state dir (see
//!   [`Attach`]): output to every client, stdin and resizes from them;
//! - records the exit status, the exit time and whether the kernel's OOM
//!   killer struck in the state, then exits.
//!
//! Nothing depends on the host once `create_monitored` returned: a host
//! killed at any point and started again finds the container by its state
//! dir, attaches, kills it, and reads its exit with [`Runtime::wait_exit`].

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio as ProcStdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::container::{CreateOptions, Runtime, Source, Stdio, Stream};
use crate::error::{Error, Result, io_err};

/// A log line longer than this is written in partial (`P`) pieces.
pub const MAX_LOG_LINE: usize = 16 * 1024;

/// The attach socket's name in the container's state dir.
pub const ATTACH_SOCKET: &str = "attach.sock";

/// How a monitored container is made.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// The monitor binary (`oci-runtime-monitor`, or a program of the
    /// embedder's that calls [`monitor_main`]).
    pub binary: PathBuf,
    /// Arguments for it (say, the subcommand that calls [`monitor_main`]).
    pub args: Vec<std::ffi::OsString>,
    /// The CRI log file the container's output goes to.
    pub log_path: PathBuf,
    /// Whether the container gets a stdin (from attach clients); else `/dev/null`.
    pub stdin: bool,
    /// `no_pivot`, `no_new_keyring` (console sockets and pid files do not apply).
    pub create: CreateOptions,
}

/// What the host sends the monitor.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    root: PathBuf,
    id: String,
    bundle: Option<PathBuf>,
    spec: Option<Box<oci_spec::runtime::Spec>>,
    rootfs: Option<PathBuf>,
    log_path: PathBuf,
    stdin: bool,
    no_pivot: bool,
    no_new_keyring: bool,
}

/// What the monitor answers.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Created { pid: i32 },
    Failed { error: String },
}

/// How a container ended, as its monitor recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, 128 + signal when killed.
    pub code: i32,
    /// RFC 3339 time it was recorded.
    pub time: Option<String>,
    /// Whether the kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
}

impl Runtime {
    /// Creates container `id` under a monitor of its own (see the module
    /// docs); returns the init's pid. Start it with [`Runtime::start`].
    pub fn create_monitored(
        &self,
        id: &str,
        source: Source<'_>,
        opts: &MonitorOptions,
    ) -> Result<i32> {
        crate::config::validate_id(id)?;
        let (bundle, spec, rootfs) = match source {
            Source::Bundle(b) => (
                Some(std::path::absolute(b).map_err(io_err("resolving bundle", b))?),
                None,
                None,
            ),
            Source::Spec { spec, rootfs } => (None, Some(spec), Some(rootfs)),
        };
        let req = Request {
            root: std::path::absolute(self.root()).map_err(io_err("resolving", self.root()))?,
            id: id.to_string(),
            bundle,
            spec,
            rootfs,
            log_path: std::path::absolute(&opts.log_path)
                .map_err(io_err("resolving", &opts.log_path))?,
            stdin: opts.stdin,
            no_pivot: opts.create.no_pivot,
            no_new_keyring: opts.create.no_new_keyring,
        };
        let mut child = Command::new(&opts.binary)
            .args(&opts.args)
            .stdin(ProcStdio::piped())
            .stdout(ProcStdio::piped())
            .stderr(ProcStdio::null())
            .spawn()
            .map_err(io_err("starting the monitor", &opts.binary))?;
        let body = serde_json::to_vec(&req).map_err(|e| Error::Sys {
            operation: "encoding the monitor request",
            source: std::io::Error::other(e),
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A monitor that died early shows in the reply below.
            let _ = stdin.write_all(&body);
        }
        let mut answer = Vec::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = stdout.read_to_end(&mut answer);
        }
        // The first monitor process exits as soon as it has forked the real one.
        let _ = child.wait();
        match serde_json::from_slice::<Reply>(&answer) {
            Ok(Reply::Created { pid }) => Ok(pid),
            Ok(Reply::Failed { error }) => Err(Error::Monitor { reason: error }),
            Err(_) => Err(Error::Monitor {
                reason: format!(
                    "{} gave no answer ({} bytes); is it the monitor binary?",
                    opts.binary.display(),
                    answer.len()
                ),
            }),
        }
    }

    /// Waits, from any process, until container `id` has exited and its
    /// monitor recorded how, at most `timeout` (`None`: no limit).
    pub fn wait_exit(&self, id: &str, timeout: Option<Duration>) -> Result<Exit> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let s = crate::state::read_unlocked(self.root(), id)?;
        if let Some(fd) = crate::container::live_pidfd(self, &s)? {
            let ms = deadline.map_or(-1, |d| {
                let ms = d.saturating_duration_since(Instant::now()).as_millis();
                i32::try_from(ms).unwrap_or(i32::MAX)
            });
            let mut pfd = [nix::poll::PollFd::new(
                fd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            loop {
                match nix::poll::poll(
                    &mut pfd,
                    nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::NONE),
                ) {
                    Ok(0) => {
                        return Err(Error::Monitor {
                            reason: format!("container {id} still runs"),
                        });
                    }
                    Ok(_) => break,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        return Err(Error::Sys {
                            operation: "polling the init's pidfd",
                            source: e.into(),
                        });
                    }
                }
            }
        }
        // The monitor records the exit right after the init is reaped: a
        // short while, so look again soon at first, then less often.
        let give_up = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(30));
        let mut pause = Duration::from_micros(50);
        loop {
            let s = crate::state::read_unlocked(self.root(), id)?;
            if let Some(code) = s.exit_status {
                return Ok(Exit {
                    code,
                    time: s.exit_time,
                    oom_killed: s.oom_killed,
                });
            }
            if Instant::now() >= give_up {
                return Err(Error::Monitor {
                    reason: format!(
                        "container {id} exited but no monitor recorded its exit status"
                    ),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Waits, without blocking a thread, until container `id` has exited and
    /// its monitor recorded how (from any process, as [`Runtime::wait_exit`]).
    #[cfg(feature = "tokio")]
    pub async fn exited(&self, id: &str) -> Result<Exit> {
        let s = crate::state::read_unlocked(self.root(), id)?;
        if let Some(fd) = crate::container::live_pidfd(self, &s)? {
            crate::container::pidfd_readable(fd.as_fd()).await?;
        }
        // The record follows the exit within moments.
        let mut pause = Duration::from_micros(100);
        for _ in 0..400 {
            let s = crate::state::read_unlocked(self.root(), id)?;
            if let Some(code) = s.exit_status {
                return Ok(Exit {
                    code,
                    time: s.exit_time,
                    oom_killed: s.oom_killed,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        Err(Error::Monitor {
            reason: format!("container {id} exited but no monitor recorded its exit status"),
        })
    }

    /// Has container `id`'s monitor reopen its log file (the kubelet's
    /// ReopenContainerLog, after it rotated the file); returns once it has.
    pub fn reopen_log(&self, id: &str) -> Result<()> {
        let mut a = self.attach(id)?;
        let _ = a.stream.set_read_timeout(Some(Duration::from_secs(10)));
        a.send(&Frame::ReopenLog)?;
        loop {
            match a.recv()? {
                Some(Frame::LogReopened(e)) if e.is_empty() => return Ok(()),
                Some(Frame::LogReopened(e)) => {
                    return Err(Error::Monitor {
                        reason: format!("reopening the log of {id}: {e}"),
                    });
                }
                Some(Frame::Exit(_)) | None => {
                    return Err(Error::NotRunning {
                        id: id.into(),
                        operation: "reopen log",
                    });
                }
                Some(_) => {}
            }
        }
    }

    /// Connects to container `id`'s monitor for its stdio.
    pub fn attach(&self, id: &str) -> Result<Attach> {
        let path = self.root().join(id).join(ATTACH_SOCKET);
        let (_dir, short) =
            socket_path(&path).map_err(io_err("opening the state dir of", &path))?;
        let s = UnixStream::connect(&short).map_err(io_err("connecting to the monitor", &path))?;
        Ok(Attach { stream: s })
    }
}

/// A path for a unix socket at `path`: itself when it fits in `sun_path`
/// (108 bytes), else `/proc/self/fd/N/<name>` through an `O_PATH` fd of its
/// directory (kept open by the caller until bound or connected), so a long
/// state root works too.
fn socket_path(path: &Path) -> std::io::Result<(Option<OwnedFd>, PathBuf)> {
    if path.as_os_str().len() < 100 {
        return Ok((None, path.to_path_buf()));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    };
    let fd: OwnedFd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(name);
    Ok((Some(fd), short))
}

/// One message between the monitor and an attach client: a kind byte, a
/// big-endian 32-bit length, the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client → monitor: bytes for the container's stdin.
    Stdin(Vec<u8>),
    /// Client → monitor: close the container's stdin.
    CloseStdin,
    /// Client → monitor: the terminal's new size (rows, columns).
    Resize(u16, u16),
    /// Monitor → client: container output on stdout (or its pty).
    Stdout(Vec<u8>),
    /// Monitor → client: container output on stderr.
    Stderr(Vec<u8>),
    /// Monitor → client: the container exited with this code; the last frame.
    Exit(i32),
    /// Client → monitor: reopen the log file (after rotation).
    ReopenLog,
    /// Monitor → client: the log file is reopened (empty), or why not.
    LogReopened(String),
}

impl Frame {
    fn encode(&self) -> Vec<u8> {
        let (kind, body): (u8, Vec<u8>) = match self {
            Frame::Stdin(b) => (0, b.clone()),
            Frame::CloseStdin => (1, Vec::new()),
            Frame::Resize(r, c) => (2, [r.to_be_bytes(), c.to_be_bytes()].concat()),
            Frame::Stdout(b) => (3, b.clone()),
            Frame::Stderr(b) => (4, b.clone()),
            Frame::Exit(code) => (5, code.to_be_bytes().to_vec()),
            Frame::ReopenLog => (6, Vec::new()),
            Frame::LogReopened(e) => (7, e.as_bytes().to_vec()),
        };
        let mut out = Vec::with_capacity(5 + body.len());
        out.push(kind);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes one frame from the front of `buf`: the frame and its length,
    /// `Ok(None)` when `buf` holds only part of one.
    fn decode(buf: &[u8]) -> std::result::Result<Option<(Frame, usize)>, String> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len > 1 << 20 {
            return Err(format!("a frame of {len} bytes"));
        }
        if buf.len() < 5 + len {
            return Ok(None);
        }
        let body = &buf[5..5 + len];
        let frame = match (buf[0], len) {
            (0, _) => Frame::Stdin(body.to_vec()),
            (1, 0) => Frame::CloseStdin,
            (2, 4) => Frame::Resize(
                u16::from_be_bytes([body[0], body[1]]),
                u16::from_be_bytes([body[2], body[3]]),
            ),
            (3, _) => Frame::Stdout(body.to_vec()),
            (4, _) => Frame::Stderr(body.to_vec()),
            (5, 4) => Frame::Exit(i32::from_be_bytes([body[0], body[1], body[2], body[3]])),
            (6, 0) => Frame::ReopenLog,
            (7, _) => Frame::LogReopened(String::from_utf8_lossy(body).into_owned()),
            (k, n) => return Err(format!("frame kind {k} with {n} bytes")),
        };
        Ok(Some((frame, 5 + len)))
    }
}

/// A client of a container's monitor.
#[derive(Debug)]
pub struct Attach {
    stream: UnixStream,
}

impl Attach {
    /// A second handle on the same connection (one side sends stdin while
    /// the other receives output).
    pub fn try_clone(&self) -> Result<Attach> {
        Ok(Attach {
            stream: self
                .stream
                .try_clone()
                .map_err(io_err("duplicating the attach connection", ATTACH_SOCKET))?,
        })
    }

    /// Ends the connection for every handle on it: a `recv` blocked on
    /// another handle returns `None`. The container's stdin stays open.
    pub fn detach(&self) -> Result<()> {
        match self.stream.shutdown(std::net::Shutdown::Both) {
            Ok(()) => Ok(()),
            // Already closed by the monitor.
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(()),
            Err(e) => Err(io_err("closing the attach connection", ATTACH_SOCKET)(e)),
        }
    }

    /// Sends one frame (stdin, its end, or a resize).
    pub fn send(&mut self, f: &Frame) -> Result<()> {
        self.stream
            .write_all(&f.encode())
            .map_err(io_err("writing to the monitor", ATTACH_SOCKET))
    }

    /// The next frame from the monitor; `None` once it closed the connection.
    pub fn recv(&mut self) -> Result<Option<Frame>> {
        let mut head = [0u8; 5];
        match self.stream.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(io_err("reading from the monitor", ATTACH_SOCKET)(e)),
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut buf = head.to_vec();
        buf.resize(5 + len.min(1 << 20), 0);
        self.stream
            .read_exact(&mut buf[5..])
            .map_err(io_err("reading from the monitor", ATTACH_SOCKET))?;
        match Frame::decode(&buf) {
            Ok(Some((f, _))) => Ok(Some(f)),
            Ok(None) | Err(_) => Err(Error::Monitor {
                reason: "a malformed frame from the monitor".into(),
            }),
        }
    }
}

/// The monitor's `main`: reads the request on stdin, answers on stdout.
/// Call it from a binary's `main` (the crate's `oci-runtime-monitor` does).
pub fn monitor_main() -> ! {
    let mut body = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut body);
    let req: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            reply(&Reply::Failed {
                error: format!("a malformed request: {e}"),
            });
            std::process::exit(2);
        }
    };
    // Fork once more and leave the session: the process the host started
    // exits now, so the monitor is nobody's child but init's (or a
    // subreaper's), and a host's death or signals to its group do not reach it.
    // SAFETY: single-threaded here (nothing has started a thread), so the
    // child may go on running Rust code.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            reply(&Reply::Failed {
                error: format!("fork: {e}"),
            });
            std::process::exit(1);
        }
    }
    let _ = nix::unistd::setsid();
    let code = match run_monitor(req) {
        Ok(()) => 0,
        Err(e) => {
            // With its causes (an init step's errno): the host sees only this text.
            let mut error = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                error.push_str(&format!(": {c}"));
                cause = c.source();
            }
            reply(&Reply::Failed { error });
            1
        }
    };
    std::process::exit(code)
}

fn reply(r: &Reply) {
    let mut out = std::io::stdout();
    let _ = serde_json::to_writer(&mut out, r);
    let _ = out.flush();
}

static REOPEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    REOPEN.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Output an attach client has not taken yet, at most; a client further
/// behind is dropped rather than let it hold the container up.
const MAX_CLIENT_BACKLOG: usize = 8 << 20;

/// An attach client: its socket (non-blocking), the part of a frame it
/// has sent so far, and output it has not read yet.
struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    dead: bool,
}

impl Client {
    /// Queues `bytes` for the client and sends what it takes now.
    fn send(&mut self, bytes: &[u8]) {
        if self.output.len() + bytes.len() > MAX_CLIENT_BACKLOG {
            self.dead = true;
            return;
        }
        self.output.extend_from_slice(bytes);
        self.flush();
    }

    /// Sends what the client takes now of its queued output.
    fn flush(&mut self) {
        if self.dead || self.output.is_empty() {
            return;
        }
        match write_some(self.stream.as_fd(), &self.output) {
            Ok(n) => {
                self.output.drain(..n);
            }
            Err(()) => self.dead = true,
        }
    }
}

/// What one read of an output stream gave.
enum Pump {
    /// Output, logged and sent on.
    Read,
    /// Interrupted: read again.
    Retry,
    /// Nothing there now (non-blocking).
    Empty,
    /// The stream ended.
    Done,
}

/// Output of one stream on its way to the log: the partial line so far.
struct LogStream {
    name: &'static str,
    fd: Option<OwnedFd>,
    partial: Vec<u8>,
}

fn open_log(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err("opening the container log", path))
}

fn log_line(log: &mut std::fs::File, stream: &str, tag: char, text: &[u8]) {
    let mut line = format!(
        "{} {stream} {tag} ",
        crate::state::rfc3339(std::time::SystemTime::now())
    )
    .into_bytes();
    line.extend_from_slice(text);
    line.push(b'\n');
    let _ = log.write_all(&line);
}

impl LogStream {
    /// Logs the complete lines of `data`, keeping the rest; a line past
    /// [`MAX_LOG_LINE`] goes out in partial pieces.
    fn feed(&mut self, log: &mut std::fs::File, data: &[u8]) {
        self.partial.extend_from_slice(data);
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let rest = self.partial.split_off(nl + 1);
            let mut line = std::mem::replace(&mut self.partial, rest);
            line.pop();
            for (i, chunk) in line.chunks(MAX_LOG_LINE).enumerate() {
                let last = (i + 1) * MAX_LOG_LINE >= line.len();
                log_line(log, self.name, if last { 'F' } else { 'P' }, chunk);
            }
            if line.is_empty() {
                log_line(log, self.name, 'F', b"");
            }
        }
        while self.partial.len() >= MAX_LOG_LINE {
            let rest = self.partial.split_off(MAX_LOG_LINE);
            let piece = std::mem::replace(&mut self.partial, rest);
            log_line(log, self.name, 'P', &piece);
        }
    }

    /// Reads once from the stream: what came goes to the log and to every
    /// attach client (those that cannot take it are dropped).
    fn pump(&mut self, log: &mut std::fs::File, clients: &mut [Client]) -> Pump {
        let Some(fd) = &self.fd else {
            return Pump::Done;
        };
        let mut buf = [0u8; 8192];
        match nix::unistd::read(fd, &mut buf) {
            Ok(n) if n > 0 => {
                let data = &buf[..n];
                self.feed(log, data);
                let frame = if self.name == "stdout" {
                    Frame::Stdout(data.to_vec())
                } else {
                    Frame::Stderr(data.to_vec())
                };
                let bytes = frame.encode();
                for cl in clients.iter_mut() {
                    cl.send(&bytes);
                }
                Pump::Read
            }
            Err(nix::errno::Errno::EINTR) => Pump::Retry,
            Err(nix::errno::Errno::EAGAIN) => Pump::Empty,
            // EOF, or EIO on a pty whose last slave closed.
            _ => Pump::Done,
        }
    }

    /// At the end of the stream: what is left is a last, complete line.
    fn finish(&mut self, log: &mut std::fs::File) {
        if !self.partial.is_empty() {
            let piece = std::mem::take(&mut self.partial);
            log_line(log, self.name, 'F', &piece);
        }
    }
}

fn run_monitor(req: Request) -> Result<()> {
    let rt = Runtime::new(&req.root);
    let opts = CreateOptions {
        no_pivot: req.no_pivot,
        no_new_keyring: req.no_new_keyring,
        ..CreateOptions::default()
    };
    let mut log = open_log(&req.log_path)?;
    let source = match (&req.bundle, req.spec, req.rootfs) {
        (Some(b), _, _) => Source::Bundle(b),
        (None, Some(spec), Some(rootfs)) => Source::Spec { spec, rootfs },
        _ => {
            return Err(Error::Monitor {
                reason: "the request names neither a bundle nor a spec and rootfs".into(),
            });
        }
    };
    let stdio = Stdio {
        stdin: if req.stdin {
            Stream::Pipe
        } else {
            Stream::Null
        },
        stdout: Stream::Pipe,
        stderr: Stream::Pipe,
    };
    // With a terminal the pty is all three; create refuses streams then.
    let terminal = match &source {
        Source::Spec { spec, .. } => spec.process().as_ref().and_then(|p| p.terminal()),
        Source::Bundle(b) => crate::config::Bundle::load(b)
            .ok()
            .and_then(|b| b.spec.process().as_ref().and_then(|p| p.terminal())),
    }
    .unwrap_or(false);
    let stdio = if terminal { Stdio::default() } else { stdio };
    let mut c = rt.create_container(&req.id, source, &opts, stdio)?;
    let oom_before = crate::container::oom_kills(&rt, &req.id).unwrap_or(0);

    let sock_path = req.root.join(&req.id).join(ATTACH_SOCKET);
    // The dir's fd, if one was needed, lives until the bind is done.
    let bound = socket_path(&sock_path).and_then(|(_dir, short)| UnixListener::bind(&short));
    let listener = match bound {
        Ok(l) => l,
        Err(e) => {
            let _ = rt.delete(&req.id, true);
            return Err(io_err("binding the attach socket", &sock_path)(e));
        }
    };
    let _ = listener.set_nonblocking(true);
    reply(&Reply::Created { pid: c.pid });
    // From here on nothing of the host's: stdio to /dev/null.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: replacing our own stdio with /dev/null.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    // SAFETY: the handler only stores to an atomic.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGUSR1,
            nix::sys::signal::SigHandler::Handler(on_usr1),
        )
    };

    let master = c.pty_master.take();
    let mut stdin: Option<OwnedFd> = match (&master, c.stdin.take()) {
        (Some(m), _) => m.try_clone().ok(),
        (None, s) => s.map(OwnedFd::from),
    };
    // Non-blocking, with what the container has not read yet kept here: a
    // container that writes before it reads must not stall the monitor
    // (and with it, its own output).
    set_nonblocking(stdin.as_ref().map(|f| f.as_fd()));
    let mut pending: Vec<u8> = Vec::new();
    let mut close_when_written = false;
    let mut streams = [
        LogStream {
            name: "stdout",
            fd: master
                .as_ref()
                .and_then(|m| m.try_clone().ok())
                .or_else(|| c.stdout.take().map(OwnedFd::from)),
            partial: Vec::new(),
        },
        LogStream {
            name: "stderr",
            fd: c.stderr.take().map(OwnedFd::from),
            partial: Vec::new(),
        },
    ];
    let mut clients: Vec<Client> = Vec::new();
    let mut exited = false;
    loop {
        if REOPEN.swap(false, std::sync::atomic::Ordering::SeqCst)
            && let Ok(l) = open_log(&req.log_path)
        {
            log = l;
        }
        let mut fds: Vec<nix::poll::PollFd<'_>> = Vec::new();
        let ev = nix::poll::PollFlags::POLLIN;
        for s in &streams {
            if let Some(fd) = &s.fd {
                fds.push(nix::poll::PollFd::new(fd.as_fd(), ev));
            }
        }
        let n_streams = fds.len();
        if !exited {
            fds.push(nix::poll::PollFd::new(c.pidfd.as_fd(), ev));
        }
        fds.push(nix::poll::PollFd::new(listener.as_fd(), ev));
        for cl in &clients {
            fds.push(nix::poll::PollFd::new(cl.stream.as_fd(), ev));
        }
        if exited && n_streams == 0 {
            break;
        }
        let behind = !pending.is_empty() || clients.iter().any(|c| !c.output.is_empty());
        let timeout = if behind {
            10u16
        } else if exited {
            200
        } else {
            1000
        };
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(timeout)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(Error::Sys {
                    operation: "poll in the monitor",
                    source: e.into(),
                });
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        // New clients first, before any output they should see goes out.
        while let Ok((cl, _)) = listener.accept() {
            let _ = cl.set_nonblocking(true);
            clients.push(Client {
                stream: cl,
                input: Vec::new(),
                output: Vec::new(),
                dead: false,
            });
        }
        // Output.
        let mut k = 0;
        for s in streams.iter_mut() {
            if s.fd.is_none() {
                continue;
            }
            let is_ready = ready[k];
            k += 1;
            if !is_ready {
                continue;
            }
            if let Pump::Done = s.pump(&mut log, &mut clients) {
                s.finish(&mut log);
                s.fd = None;
            }
        }
        if !exited {
            if ready[k] {
                exited = true;
                // Output written before the exit is in the pipes: read what is
                // there, then stop (a process left outside a pid namespace may
                // hold them open for ever).
                for s in streams.iter_mut() {
                    set_nonblocking(s.fd.as_ref().map(|f| f.as_fd()));
                    while s.fd.is_some() {
                        match s.pump(&mut log, &mut clients) {
                            Pump::Read | Pump::Retry => {}
                            Pump::Empty | Pump::Done => {
                                s.finish(&mut log);
                                s.fd = None;
                            }
                        }
                    }
                }
            }
            k += 1;
        }
        // (The listener's slot: its clients were taken above.)
        k += 1;
        // Client input.
        for (i, cl) in clients.iter_mut().enumerate() {
            if !ready.get(k + i).copied().unwrap_or(false) {
                continue;
            }
            let mut tmp = [0u8; 8192];
            match cl.stream.read(&mut tmp) {
                Ok(0) => cl.dead = true,
                Ok(n) => cl.input.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => cl.dead = true,
            }
            loop {
                match Frame::decode(&cl.input) {
                    Ok(Some((f, used))) => {
                        cl.input.drain(..used);
                        match f {
                            Frame::Stdin(data)
                                if stdin.is_some() && pending.len() < MAX_PENDING_STDIN =>
                            {
                                pending.extend_from_slice(&data);
                            }
                            Frame::CloseStdin if master.is_none() => close_when_written = true,
                            Frame::Resize(r, col) => {
                                if let Some(m) = &master {
                                    let _ = crate::pty::set_window_size(m, r, col);
                                }
                            }
                            Frame::ReopenLog => {
                                let answer = match open_log(&req.log_path) {
                                    Ok(l) => {
                                        log = l;
                                        String::new()
                                    }
                                    Err(e) => e.to_string(),
                                };
                                cl.send(&Frame::LogReopened(answer).encode());
                            }
                            _ => {}
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        cl.dead = true;
                        break;
                    }
                }
            }
        }
        for cl in clients.iter_mut() {
            cl.flush();
        }
        clients.retain(|c| !c.dead);
        // Stdin: as much as the container takes now.
        if let Some(fd) = &stdin {
            match write_some(fd.as_fd(), &pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(()) => {
                    pending.clear();
                    stdin = None;
                }
            }
        }
        if close_when_written && pending.is_empty() {
            stdin = None;
        }
    }
    drop(stdin);
    let code = rt.reap(&c)?;
    let oom = crate::container::oom_kills(&rt, &req.id).unwrap_or(0) > oom_before;
    rt.record_exit(&req.id, code, Some(oom))?;
    let bytes = Frame::Exit(code).encode();
    for mut cl in clients {
        // What it has not taken yet, then the exit: the container is gone,
        // so waiting on a slow client holds nothing up, for a while.
        let _ = cl.stream.set_nonblocking(false);
        let _ = cl.stream.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = cl.stream.write_all(&cl.output);
        let _ = cl.stream.write_all(&bytes);
    }
    let _ = std::fs::remove_file(&sock_path);
    Ok(())
}

/// Stdin the container has not read yet, at most; attach input past it is dropped.
const MAX_PENDING_STDIN: usize = 8 << 20;

/// Writes what a non-blocking `fd` takes of `data` now: how much, or
/// `Err` once the reader is gone.
fn write_some(fd: BorrowedFd<'_>, data: &[u8]) -> std::result::Result<usize, ()> {
    let mut done = 0;
    while done < data.len() {
        match nix::unistd::write(fd, &data[done..]) {
            Ok(n) if n > 0 => done += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => break,
            _ => return Err(()),
        }
    }
    Ok(done)
}

fn set_nonblocking(fd: Option<BorrowedFd<'_>>) {
    if let Some(fd) = fd
        && let Ok(flags) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)
    {
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        for f in [
            Frame::Stdin(b"abc".to_vec()),
            Frame::CloseStdin,
            Frame::Resize(24, 80),
            Frame::Stdout(Vec::new()),
            Frame::Stderr(vec![0; 70_000]),
            Frame::Exit(137),
            Frame::ReopenLog,
            Frame::LogReopened("no room".into()),
        ] {
            let bytes = f.encode();
            assert_eq!(Frame::decode(&bytes), Ok(Some((f.clone(), bytes.len()))));
            assert_eq!(Frame::decode(&bytes[..bytes.len() - 1]), Ok(None));
        }
        assert!(Frame::decode(&[9, 0, 0, 0, 0]).is_err());
        assert!(Frame::decode(&[2, 0, 0, 0, 1, 0]).is_err());
        assert!(Frame::decode(&[0, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn cri_log_lines_partial_and_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = open_log(&path).unwrap();
        let mut s = LogStream {
            name: "stdout",
            fd: None,
            partial: Vec::new(),
        };
        s.feed(&mut log, b"one\ntw");
        s.feed(&mut log, b"o\n\n");
        s.feed(&mut log, &vec![b'x'; MAX_LOG_LINE + 10]);
        s.feed(&mut log, b"\nlast");
        s.finish(&mut log);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<(&str, &str, &str)> = text
            .lines()
            .map(|l| {
                let mut it = l.splitn(4, ' ');
                let ts = it.next().unwrap();
                assert!(ts.ends_with('Z') && ts.len() == 30, "{ts}");
                (
                    it.next().unwrap(),
                    it.next().unwrap(),
                    it.next().unwrap_or(""),
                )
            })
            .collect();
        let x = "x".repeat(MAX_LOG_LINE);
        assert_eq!(
            lines,
            vec![
                ("stdout", "F", "one"),
                ("stdout", "F", "two"),
                ("stdout", "F", ""),
                ("stdout", "P", x.as_str()),
                ("stdout", "F", "xxxxxxxxxx"),
                ("stdout", "F", "last"),
            ]
        );
    }
}
