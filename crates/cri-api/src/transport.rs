//! Serving and reaching the CRI on a unix socket.
//!
//! [`serve`] (or [`bind`] then [`Bound::serve`]) does what a node agent expects of
//! a runtime socket: the parent directory is created, a stale socket left by a
//! crashed server is replaced, a live one is never stolen, the socket is made
//! `0660`, and it is removed again after a graceful shutdown. [`connect`] dials a
//! socket with the HTTP/2 `:authority` set to `localhost`, the value grpc-go and
//! grpcio clients use for unix sockets, so any CRI server accepts it.

use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::Stream;
use tonic::transport::{Endpoint, Server, Uri};

use crate::MAX_MESSAGE_SIZE;
use crate::v1::{ImageService, ImageServiceServer, RuntimeService, RuntimeServiceServer};

pub use tonic::transport::Channel;

/// The longest socket path the kernel accepts: `sun_path` is 108 bytes and the
/// path needs a terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// Mode of a served socket: the owner (root) and its group may talk CRI.
pub const SOCKET_MODE: u32 = 0o660;

/// What can go wrong serving or reaching a CRI socket. Each variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket path is empty.
    #[error("CRI socket path is empty")]
    EmptyPath,
    /// The socket path does not fit `sockaddr_un`.
    #[error(
        "CRI socket path {path:?} is {len} bytes long; a unix socket path may be at most {max} bytes"
    )]
    PathTooLong {
        /// The path given.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The limit, [`MAX_SOCKET_PATH`].
        max: usize,
    },
    /// The socket's parent directory could not be created.
    #[error("creating directory {dir:?} for the CRI socket")]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Another server is listening on the socket.
    #[error("CRI socket {path:?} is in use by a running server")]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the path; it is left alone.
    #[error("{path:?} exists and is not a socket; refusing to replace it")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The existing path could not be examined or probed.
    #[error("checking existing CRI socket {path:?}")]
    Probe {
        /// The path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// A stale socket could not be removed.
    #[error("removing stale CRI socket {path:?}")]
    RemoveStale {
        /// The path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Binding the socket failed.
    #[error("binding CRI socket {path:?}")]
    Bind {
        /// The path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The socket's mode could not be set.
    #[error("setting mode {SOCKET_MODE:o} on CRI socket {path:?}")]
    SetMode {
        /// The path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The gRPC server failed while serving.
    #[error("serving CRI on {path:?}")]
    Serve {
        /// The socket path.
        path: PathBuf,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// No connection could be made to the socket.
    #[error("connecting to CRI socket {path:?}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Result of this module's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn check_path(path: &Path) -> Result<()> {
    let len = path.as_os_str().len();
    if len == 0 {
        return Err(Error::EmptyPath);
    }
    if len > MAX_SOCKET_PATH {
        return Err(Error::PathTooLong {
            path: path.to_path_buf(),
            len,
            max: MAX_SOCKET_PATH,
        });
    }
    Ok(())
}

/// Serves `runtime` and `image` on the unix socket at `path` until `shutdown`
/// completes, then finishes in-flight requests and removes the socket.
///
/// Equivalent to [`bind`] followed by [`Bound::serve`].
pub async fn serve<R, I, F>(path: impl AsRef<Path>, runtime: R, image: I, shutdown: F) -> Result<()>
where
    R: RuntimeService,
    I: ImageService,
    F: Future<Output = ()> + Send,
{
    bind(path)?.serve(runtime, image, shutdown).await
}

/// Binds the CRI socket at `path`, ready to serve.
///
/// Creates the parent directory (mode 0755) if missing. If a socket already
/// exists there, a server still accepting on it makes this fail with
/// [`Error::InUse`]; a stale one is removed. Anything else at the path is left
/// alone and reported as [`Error::NotASocket`]. The new socket gets mode 0660.
/// Must be called within a tokio runtime.
pub fn bind(path: impl AsRef<Path>) -> Result<Bound> {
    let path = path.as_ref();
    check_path(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|source| Error::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
    }
    remove_if_stale(path)?;
    let listener = UnixListener::bind(path).map_err(|source| Error::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    let guard = SocketFile::new(path);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(
        |source| Error::SetMode {
            path: path.to_path_buf(),
            source,
        },
    )?;
    Ok(Bound { listener, guard })
}

fn remove_if_stale(path: &Path) -> Result<()> {
    let probe_err = |source| Error::Probe {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(probe_err(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(Error::InUse {
            path: path.to_path_buf(),
        }),
        // Nobody accepts on it: a server died without cleaning up.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(Error::RemoveStale {
                    path: path.to_path_buf(),
                    source,
                }),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(probe_err(e)),
    }
}

/// A bound CRI socket. Dropping it removes the socket file if it is still the
/// one this process created.
#[derive(Debug)]
pub struct Bound {
    listener: UnixListener,
    guard: SocketFile,
}

impl Bound {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.guard.path
    }

    /// Serves `runtime` and `image` until `shutdown` completes, then lets
    /// in-flight requests finish and removes the socket.
    ///
    /// Both services accept and send messages up to [`MAX_MESSAGE_SIZE`].
    pub async fn serve<R, I, F>(self, runtime: R, image: I, shutdown: F) -> Result<()>
    where
        R: RuntimeService,
        I: ImageService,
        F: Future<Output = ()> + Send,
    {
        let Bound { listener, guard } = self;
        let runtime = RuntimeServiceServer::new(runtime)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let image = ImageServiceServer::new(image)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let result = Server::builder()
            .add_service(runtime)
            .add_service(image)
            .serve_with_incoming_shutdown(Incoming { listener }, shutdown)
            .await;
        let path = guard.path.clone();
        drop(guard);
        result.map_err(|source| Error::Serve { path, source })
    }

    /// The accepted connections, for an embedder that builds its own tonic
    /// server (to add health or reflection services, say). The socket file stays
    /// until the returned stream is dropped.
    pub fn into_incoming(self) -> impl Stream<Item = io::Result<UnixStream>> + Send {
        let Bound { listener, guard } = self;
        GuardedIncoming {
            incoming: Incoming { listener },
            _guard: guard,
        }
    }
}

/// Accepted connections of a listener, as tonic's `serve_with_incoming` wants them.
struct Incoming {
    listener: UnixListener,
}

impl Stream for Incoming {
    type Item = io::Result<UnixStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.listener.poll_accept(cx) {
            Poll::Ready(Ok((stream, _))) => Poll::Ready(Some(Ok(stream))),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

struct GuardedIncoming {
    incoming: Incoming,
    _guard: SocketFile,
}

impl Stream for GuardedIncoming {
    type Item = io::Result<UnixStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.incoming).poll_next(cx)
    }
}

/// Removes the socket file on drop, unless someone replaced it meanwhile.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    id: Option<(u64, u64)>,
}

impl SocketFile {
    fn new(path: &Path) -> Self {
        let id = std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        Self {
            path: path.to_path_buf(),
            id,
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let current = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if current.is_some() && current == self.id {
            // Best effort: a leftover socket is treated as stale by the next bind.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Connects to the CRI socket at `path`.
///
/// The returned [`Channel`] goes to [`crate::v1::RuntimeServiceClient::new`] or
/// [`crate::v1::ImageServiceClient::new`]; it reconnects by itself if the server
/// restarts. Requests carry `:authority: localhost`.
pub async fn connect(path: impl AsRef<Path>) -> Result<Channel> {
    let path = path.as_ref().to_path_buf();
    check_path(&path)?;
    let dial = path.clone();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let dial = dial.clone();
            async move { UnixStream::connect(dial).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| Error::Connect { path, source })
}
