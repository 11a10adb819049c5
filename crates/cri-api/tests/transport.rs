//! Round trips over a real unix socket: a small in-memory runtime written here,
//! served with `cri_api::transport::serve`, called with the generated clients.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cri_api::transport::{self, Error};
use cri_api::v1::{
    Container, ContainerMetadata, ContainerState, ContainerStatusRequest, ContainerStatusResponse,
    ExecSyncRequest, FilesystemUsage, ImageFsInfoRequest, ImageFsInfoResponse, ImageService,
    ImageServiceClient, ListContainersRequest, ListContainersResponse, RuntimeService,
    RuntimeServiceClient, StreamContainersRequest, StreamContainersResponse, VersionRequest,
    VersionResponse,
};
use cri_api::{BoxStream, Code, Request, Response, Status};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

/// A runtime that knows a fixed set of containers.
#[derive(Clone, Default)]
struct MemRuntime {
    containers: Arc<Mutex<Vec<Container>>>,
}

impl MemRuntime {
    fn with_containers(n: usize) -> Self {
        let containers = (0..n)
            .map(|i| Container {
                id: format!("c{i:04}"),
                pod_sandbox_id: "pod0".into(),
                metadata: Some(ContainerMetadata {
                    name: format!("app-{i}"),
                    attempt: 0,
                }),
                state: ContainerState::ContainerRunning as i32,
                labels: HashMap::from([("app".to_string(), format!("app-{i}"))]),
                ..Default::default()
            })
            .collect();
        Self {
            containers: Arc::new(Mutex::new(containers)),
        }
    }

    fn list(&self) -> Vec<Container> {
        self.containers.lock().unwrap().clone()
    }
}

#[cri_api::async_trait]
impl RuntimeService for MemRuntime {
    async fn version(
        &self,
        req: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: req.into_inner().version,
            runtime_name: "mem-runtime".into(),
            runtime_version: "1.2.3".into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn list_containers(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let filter = req.into_inner().filter.unwrap_or_default();
        let containers = self
            .list()
            .into_iter()
            .filter(|c| filter.id.is_empty() || c.id == filter.id)
            .collect();
        Ok(Response::new(ListContainersResponse { containers }))
    }

    async fn stream_containers(
        &self,
        _req: Request<StreamContainersRequest>,
    ) -> Result<Response<BoxStream<StreamContainersResponse>>, Status> {
        let chunks: Vec<Result<StreamContainersResponse, Status>> = self
            .list()
            .chunks(3)
            .map(|c| {
                Ok(StreamContainersResponse {
                    containers: c.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn container_status(
        &self,
        req: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        let id = req.into_inner().container_id;
        Err(Status::not_found(format!("container {id:?} not found")))
    }
}

#[derive(Clone, Default)]
struct MemImages;

#[cri_api::async_trait]
impl ImageService for MemImages {
    async fn image_fs_info(
        &self,
        _req: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        Ok(Response::new(ImageFsInfoResponse {
            image_filesystems: vec![FilesystemUsage {
                timestamp: 1,
                ..Default::default()
            }],
            container_filesystems: vec![],
        }))
    }
}

/// A served socket in its own temp dir; shut down (and awaited) on drop.
struct Served {
    _dir: tempfile::TempDir,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), Error>>>,
}

impl Served {
    async fn start(runtime: MemRuntime) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/cri.sock");
        let bound = transport::bind(&path).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(runtime, MemImages, async {
            let _ = stopped.await;
        }));
        Self {
            _dir: dir,
            path,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn shutdown(mut self) -> Result<(), Error> {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("server stops within 30 s")
            .unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_and_streaming_round_trip() {
    let served = Served::start(MemRuntime::with_containers(10)).await;
    let channel = transport::connect(&served.path).await.unwrap();
    let mut runtime = RuntimeServiceClient::new(channel.clone());
    let mut images = ImageServiceClient::new(channel);

    let version = runtime
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.runtime_name, "mem-runtime");
    assert_eq!(version.version, "v1");

    let all = runtime
        .list_containers(ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(all.len(), 10);
    assert_eq!(all[3].metadata.as_ref().unwrap().name, "app-3");
    assert_eq!(all[3].labels["app"], "app-3");

    let fs = images
        .image_fs_info(ImageFsInfoRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fs.image_filesystems[0].timestamp, 1);

    let mut stream = runtime
        .stream_containers(StreamContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    let mut messages = 0;
    while let Some(msg) = stream.next().await {
        messages += 1;
        ids.extend(msg.unwrap().containers.into_iter().map(|c| c.id));
    }
    assert_eq!(messages, 4, "10 containers in chunks of 3");
    assert_eq!(ids, (0..10).map(|i| format!("c{i:04}")).collect::<Vec<_>>());

    let missing = runtime
        .container_status(ContainerStatusRequest {
            container_id: "nope".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Not written by this runtime: the default body answers UNIMPLEMENTED.
    let unimplemented = runtime
        .exec_sync(ExecSyncRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unimplemented.code(), Code::Unimplemented);
    assert_eq!(
        unimplemented.message(),
        "runtime.v1.RuntimeService/ExecSync is not implemented by this runtime"
    );

    let path = served.path.clone();
    served.shutdown().await.unwrap();
    assert!(!path.exists(), "graceful shutdown removes the socket");
}

#[tokio::test]
async fn socket_gets_mode_0660_and_parent_dir() {
    let served = Served::start(MemRuntime::default()).await;
    let meta = std::fs::metadata(&served.path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    assert!(served.path.parent().unwrap().is_dir());
    served.shutdown().await.unwrap();
}

#[tokio::test]
async fn stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cri.sock");
    // A listener that went away without unlinking: the file stays, nobody accepts.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());

    let bound = transport::bind(&path).expect("stale socket replaced");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve(MemRuntime::default(), MemImages, async {
        let _ = stopped.await;
    }));
    let mut client = RuntimeServiceClient::new(transport::connect(&path).await.unwrap());
    client.version(VersionRequest::default()).await.unwrap();
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn live_socket_is_refused() {
    let served = Served::start(MemRuntime::default()).await;
    let err = transport::bind(&served.path).unwrap_err();
    assert!(matches!(err, Error::InUse { .. }), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");

    // The first server is untouched.
    let mut client = RuntimeServiceClient::new(transport::connect(&served.path).await.unwrap());
    client.version(VersionRequest::default()).await.unwrap();
    served.shutdown().await.unwrap();
}

#[tokio::test]
async fn non_socket_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cri.sock");
    std::fs::write(&path, b"precious").unwrap();
    let err = transport::bind(&path).unwrap_err();
    assert!(matches!(err, Error::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[tokio::test]
async fn overlong_path_is_a_clear_error() {
    let long = Path::new("/tmp").join("x".repeat(120)).join("cri.sock");
    let err = transport::bind(&long).unwrap_err();
    assert!(matches!(err, Error::PathTooLong { max: 107, .. }), "{err}");
    assert!(err.to_string().contains("at most 107 bytes"), "{err}");
    let err = transport::connect(&long).await.unwrap_err();
    assert!(matches!(err, Error::PathTooLong { .. }), "{err}");

    // Exactly at the limit is accepted.
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().as_os_str().len() + 1;
    let name = "s".repeat(transport::MAX_SOCKET_PATH - base);
    let at_limit = dir.path().join(name);
    assert_eq!(at_limit.as_os_str().len(), transport::MAX_SOCKET_PATH);
    drop(transport::bind(&at_limit).expect("a 107-byte path binds"));
    assert!(!at_limit.exists(), "dropping the bound socket removes it");

    assert!(matches!(transport::bind("").unwrap_err(), Error::EmptyPath));
}

#[tokio::test]
async fn connect_to_missing_socket_fails() {
    let dir = tempfile::tempdir().unwrap();
    let err = transport::connect(dir.path().join("none.sock"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.to_string().contains("none.sock"), "{err}");
}

/// An unprivileged user cannot connect to the 0660 root-owned socket.
#[tokio::test]
async fn other_users_cannot_connect() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("other_users_cannot_connect needs root under CI");
        }
        eprintln!("skipping other_users_cannot_connect: needs root");
        return;
    }
    let served = Served::start(MemRuntime::default()).await;
    // Let the unprivileged user reach the socket itself, so only its mode decides.
    for dir in [
        served.path.parent().unwrap(),
        served.path.parent().unwrap().parent().unwrap(),
    ] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let probe = |uid: u32| {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("python3")
            .args([
                "-c",
                "import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])",
            ])
            .arg(&served.path)
            .uid(uid)
            .gid(uid)
            .output()
            .expect("python3 runs")
    };
    let nobody = probe(65534);
    assert!(
        !nobody.status.success(),
        "nobody connected to a 0660 root socket"
    );
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&nobody.stderr)
    );
    assert!(probe(0).status.success(), "root connects");
    served.shutdown().await.unwrap();
}

mod raw {
    //! A codec that sends bytes as they are, to put garbage on the wire.
    use bytes::{Buf, BufMut, Bytes};
    use tonic::Status;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    #[derive(Default)]
    pub(crate) struct RawCodec;
    pub(crate) struct RawEncoder;
    pub(crate) struct RawDecoder;

    impl Codec for RawCodec {
        type Encode = Bytes;
        type Decode = Bytes;
        type Encoder = RawEncoder;
        type Decoder = RawDecoder;
        fn encoder(&mut self) -> RawEncoder {
            RawEncoder
        }
        fn decoder(&mut self) -> RawDecoder {
            RawDecoder
        }
    }

    impl Encoder for RawEncoder {
        type Item = Bytes;
        type Error = Status;
        fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put(item);
            Ok(())
        }
    }

    impl Decoder for RawDecoder {
        type Item = Bytes;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
            Ok(Some(src.copy_to_bytes(src.remaining())))
        }
    }
}

#[tokio::test]
async fn garbage_request_gets_a_status_not_a_crash() {
    let served = Served::start(MemRuntime::with_containers(2)).await;
    let channel = transport::connect(&served.path).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    let garbage = [
        bytes::Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        bytes::Bytes::from_static(&[0x0a, 0x7f, 0x01]), // a string field claiming 127 bytes
        bytes::Bytes::from_static(&[0x07]),             // wire type 7 does not exist
    ];
    for body in garbage {
        grpc.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/runtime.v1.RuntimeService/ListContainers",
        );
        let status = grpc
            .unary(Request::new(body.clone()), path, raw::RawCodec)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{body:?}: {status}");
    }

    // The server is still serving.
    let mut client = RuntimeServiceClient::new(channel);
    let listed = client
        .list_containers(ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.containers.len(), 2);
    served.shutdown().await.unwrap();
}

#[tokio::test]
async fn requests_carry_localhost_authority() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cri.sock");
    let bound = transport::bind(&path).unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let layer = tower::util::MapRequestLayer::new(move |req: tonic::codegen::http::Request<_>| {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        record.lock().unwrap().push(authority);
        req
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(cri_api::v1::RuntimeServiceServer::new(MemRuntime::default()))
            .serve_with_incoming_shutdown(bound.into_incoming(), async {
                let _ = stopped.await;
            }),
    );
    let mut client = RuntimeServiceClient::new(transport::connect(&path).await.unwrap());
    client.version(VersionRequest::default()).await.unwrap();
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert_eq!(*seen.lock().unwrap(), ["localhost"]);
    assert!(
        !path.exists(),
        "the incoming stream removes the socket when dropped"
    );
}
