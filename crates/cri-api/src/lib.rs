//! Kubernetes CRI `runtime.v1`: message types, gRPC client and server stubs, and
//! unix-socket helpers.
//!
//! The kubelet (and `crictl`) talk to a container runtime only through the
//! Container Runtime Interface, a gRPC API served on a unix socket. This crate
//! gives a Rust runtime everything it needs to speak it:
//!
//! - [`v1`]: every CRI message and enum at the Kubernetes 1.36 level, generated
//!   with prost from this crate's own `proto/runtime/v1/api.proto`, which is
//!   wire-identical to upstream `k8s.io/cri-api` (a test proves it).
//! - [`v1::RuntimeService`] and [`v1::ImageService`] (feature `server`): the two
//!   traits a runtime implements. Every RPC has a default body answering
//!   `UNIMPLEMENTED`, so a runtime implements what it supports and grows from there.
//! - [`v1::RuntimeServiceClient`] and [`v1::ImageServiceClient`] (feature `client`).
//! - [`validate`]: the CRI's own rules for each request (required fields, enum
//!   values, ranges), checked before a runtime acts on it; errors name the field.
//! - [`transport`] (feature `transport`): [`transport::serve`] on a unix socket and
//!   [`transport::connect`] to one, with the socket hygiene a node agent expects.
//!
//! No system `protoc` is needed to build it: the proto is compiled by protox.
//!
#![deny(missing_docs)]
#![cfg_attr(
    feature = "transport",
    doc = r##"
# A server

```no_run
use cri_api::v1::{RuntimeService, ImageService, VersionRequest, VersionResponse};
use cri_api::{Request, Response, Status};

struct MyRuntime;

#[cri_api::async_trait]
impl RuntimeService for MyRuntime {
    async fn version(
        &self,
        _req: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "my-runtime".into(),
            runtime_version: "0.1.0".into(),
            runtime_api_version: "v1".into(),
        }))
    }
    // Every other RPC answers UNIMPLEMENTED until it is written.
}

struct MyImages;
impl ImageService for MyImages {}

# async fn run() -> Result<(), cri_api::transport::Error> {
let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
cri_api::transport::serve("/run/my-runtime/cri.sock", MyRuntime, MyImages, shutdown).await?;
# Ok(())
# }
```

# A client

```no_run
use cri_api::v1::{RuntimeServiceClient, ListContainersRequest};

# async fn run() -> Result<(), Box<dyn std::error::Error>> {
let channel = cri_api::transport::connect("/run/containerd/containerd.sock").await?;
let mut runtime = RuntimeServiceClient::new(channel);
let containers = runtime
    .list_containers(ListContainersRequest::default())
    .await?
    .into_inner()
    .containers;
for c in containers {
    println!("{} {}", c.id, c.metadata.map(|m| m.name).unwrap_or_default());
}
# Ok(())
# }
```
"##
)]

#[cfg(feature = "transport")]
pub mod transport;
pub mod validate;

/// The CRI `runtime.v1` package: messages, enums, and (by feature) the client and
/// server stubs of `RuntimeService` and `ImageService`.
pub mod v1 {
    /// Code generated from `proto/runtime/v1/api.proto`; its docs are the proto's comments.
    #[allow(
        missing_docs,
        missing_debug_implementations,
        unreachable_pub,
        clippy::all,
        clippy::pedantic
    )]
    mod generated {
        include!(concat!(env!("OUT_DIR"), "/runtime.v1.rs"));
    }
    pub use generated::*;

    #[cfg(feature = "client")]
    pub use generated::{
        image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
    };
    #[cfg(feature = "server")]
    pub use generated::{
        image_service_server::{ImageService, ImageServiceServer},
        runtime_service_server::{RuntimeService, RuntimeServiceServer},
    };

    /// The encoded `FileDescriptorSet` this crate was generated from, for gRPC
    /// reflection or for checking the wire contract.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/runtime.v1.bin"));
}

pub use tonic::{Code, Request, Response, Status, Streaming, async_trait};

/// The stream type of the server-streaming RPCs (`StreamContainers`,
/// `GetContainerEvents`, ...): a boxed stream of messages or a status.
pub use tonic::codegen::BoxStream;

/// The largest CRI message accepted or sent, 16 MiB, as the kubelet configures
/// its own client: a node with many containers exceeds tonic's 4 MiB default.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
