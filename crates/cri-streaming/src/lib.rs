#![doc = include_str!("../README.md")]
//!
//! The CRI streaming server: what the URLs that a CRI runtime's Exec,
//! Attach and PortForward answer lead to. A request is stored under a
//! single-use token (at most 60 s old); a client then upgrades an HTTP/1.1
//! GET of the URL to a stream protocol and the runtime's [`Backend`] runs
//! the process with the client's stdin, stdout, stderr and terminal resizes.
//!
//! Protocols served:
//! - WebSocket (RFC 6455) with the Kubernetes channel subprotocols
//!   `v5.channel.k8s.io` (with the close signal for stdin),
//!   `v4.channel.k8s.io` (exit status as a JSON status on the error
//!   channel), `channel.k8s.io` and `base64.channel.k8s.io`.
//! - Port forwarding over WebSocket: `portforward.k8s.io` and
//!   `base64.portforward.k8s.io`, two channels per port (data, error),
//!   each opened with the port number.
//! - Port forwarding over WebSocket as client-go's tunnelling dialer (and
//!   so `crictl port-forward -r websocket`) speaks it:
//!   `SPDY/3.1+portforward.k8s.io`, SPDY's bytes carried in binary
//!   messages.
//! - SPDY/3.1 (`X-Stream-Protocol-Version` v4 down to `channel.k8s.io`):
//!   a stream per channel, opened by the client; and `portforward.k8s.io`,
//!   a data and an error stream per forwarded connection, many at once.
//!
//! The crate knows nothing of containers: the embedder implements
//! [`Backend`]. It listens where it is told, loopback by default.

mod http;
mod portforward;
mod spdy;
mod spdy_conn;
mod spdy_portforward;
mod spdy_session;
mod token;
mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

pub use token::Tokens;

/// A future the backend returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Exec: a command in a running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// The container.
    pub container_id: String,
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// Whether it gets a terminal (stdout and stderr are one stream then).
    pub tty: bool,
    /// Which streams the client wants.
    pub stdin: bool,
    /// See `stdin`.
    pub stdout: bool,
    /// See `stdin`.
    pub stderr: bool,
}

/// Attach: a running container's own stdio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachRequest {
    /// The container.
    pub container_id: String,
    /// Whether the container has a terminal.
    pub tty: bool,
    /// Which streams the client wants.
    pub stdin: bool,
    /// See `stdin`.
    pub stdout: bool,
    /// See `stdin`.
    pub stderr: bool,
}

/// PortForward: TCP connections to ports of a pod's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardRequest {
    /// The pod.
    pub pod_sandbox_id: String,
    /// Ports to forward; a client's `?port=` query names them otherwise.
    pub ports: Vec<u16>,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// For `/exec/<token>`.
    Exec(ExecRequest),
    /// For `/attach/<token>`.
    Attach(AttachRequest),
    /// For `/portforward/<token>`.
    PortForward(PortForwardRequest),
}

impl Request {
    fn kind(&self) -> &'static str {
        match self {
            Request::Exec(_) => "exec",
            Request::Attach(_) => "attach",
            Request::PortForward(_) => "portforward",
        }
    }
}

/// The client's side of a process's stdio, as the backend sees it.
#[derive(Debug)]
pub struct Streams {
    /// What the client writes to stdin; ends when it closes stdin or goes.
    pub stdin: Option<mpsc::Receiver<Vec<u8>>>,
    /// Where the process's stdout (or terminal) goes.
    pub stdout: Option<mpsc::Sender<Vec<u8>>>,
    /// Where its stderr goes (none with a terminal).
    pub stderr: Option<mpsc::Sender<Vec<u8>>>,
    /// Terminal sizes the client sends: (columns, rows).
    pub resize: Option<mpsc::Receiver<(u16, u16)>>,
}

/// What the embedder runs. Errors are text for the client's error channel.
pub trait Backend: Send + Sync + 'static {
    /// Runs `req` with `streams`; its exit code.
    fn exec(&self, req: ExecRequest, streams: Streams) -> BoxFuture<Result<i32, String>>;
    /// Connects `streams` to the container's stdio until it exits or the
    /// client goes.
    fn attach(&self, req: AttachRequest, streams: Streams) -> BoxFuture<Result<(), String>>;
    /// A TCP connection to `port` in pod `pod_sandbox_id`'s network namespace.
    fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
    ) -> BoxFuture<Result<tokio::net::TcpStream, String>>;
}

/// Server errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding or accepting failed.
    #[error("streaming server on {addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// How a server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// How long a URL is good for; at most 60 s.
    pub token_ttl: Duration,
    /// How long a session may wait for its client to take data (a SPDY
    /// window that does not open, a WebSocket that is not read) before it
    /// is dropped. containerd's `stream_idle_timeout` is 4 h by default.
    pub stall_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token_ttl: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(4 * 3600),
        }
    }
}

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub tokens: Arc<Tokens>,
    pub backend: Arc<dyn Backend>,
    pub stall: Duration,
}

/// A running streaming server.
#[derive(Debug, Clone)]
pub struct Server {
    addr: SocketAddr,
    tokens: Arc<Tokens>,
}

impl Server {
    /// Listens on `addr` (say `127.0.0.1:0`) and serves until the runtime
    /// ends; tokens live `ttl` (at most 60 s).
    pub async fn start(
        addr: SocketAddr,
        ttl: Duration,
        backend: Arc<dyn Backend>,
    ) -> Result<Server, Error> {
        let options = Options {
            token_ttl: ttl,
            ..Options::default()
        };
        Server::start_with(addr, options, backend).await
    }

    /// As [`Server::start`], with every option.
    pub async fn start_with(
        addr: SocketAddr,
        options: Options,
        backend: Arc<dyn Backend>,
    ) -> Result<Server, Error> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Io { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Io { addr, source })?;
        let tokens = Arc::new(Tokens::new(options.token_ttl.min(Duration::from_secs(60))));
        let shared = Arc::new(Shared {
            tokens: tokens.clone(),
            backend,
            stall: options.stall_timeout,
        });
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                // Streams are many small frames: Nagle would hold each
                // behind the peer's delayed ACK (40 ms on Linux).
                let _ = sock.set_nodelay(true);
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = http::serve_connection(sock, &shared).await;
                });
            }
        });
        Ok(Server { addr, tokens })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stores `req` and returns the single-use URL that serves it.
    pub fn url_for(&self, req: Request) -> String {
        let kind = req.kind();
        let token = self.tokens.insert(req);
        format!("http://{}/{kind}/{token}", self.addr)
    }
}

/// Entry points for the fuzz targets (`fuzz/`), built only by cargo-fuzz.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use crate::spdy::Codec;

    /// Decodes SPDY/3.1 frames from `bytes` as a session reads them, until
    /// they end or one does not parse; each frame decoded is encoded again
    /// and must decode to itself (through a second pair of contexts).
    pub fn spdy(bytes: &[u8]) {
        let (Ok(mut rx), Ok(mut tx), Ok(mut rx2)) = (Codec::new(), Codec::new(), Codec::new())
        else {
            return;
        };
        let mut at = 0;
        while at < bytes.len() {
            match rx.decode(&bytes[at..]) {
                Ok(Some((f, used))) => {
                    assert!(used > 0 && at + used <= bytes.len());
                    at += used;
                    let Ok(again) = tx.encode(&f) else { continue };
                    match rx2.decode(&again) {
                        Ok(Some((g, n))) => {
                            assert_eq!(n, again.len());
                            assert_eq!(f, g);
                        }
                        other => panic!("a frame encoded does not decode: {other:?}"),
                    }
                }
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// A client's WebSocket channel message in each framing, a resize
    /// message, and port-forward query parameters.
    pub fn channel_message(bytes: &[u8]) {
        crate::ws::fuzz_unframe(bytes);
        if let Ok(text) = std::str::from_utf8(bytes) {
            let _ = crate::portforward::query_ports(text);
        }
    }
}
