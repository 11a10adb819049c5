//! Serve a tiny CRI runtime on a unix socket and talk to it with the generated
//! client: what `crictl version` and `crictl ps` do, in one process.
//!
//! ```text
//! cargo run -p cri-api --example cri_roundtrip [SOCKET]
//! ```

use std::collections::HashMap;

use cri_api::v1::{
    Container, ContainerMetadata, ContainerState, ImageService, ListContainersRequest,
    ListContainersResponse, RuntimeService, RuntimeServiceClient, VersionRequest, VersionResponse,
};
use cri_api::{Request, Response, Status};

/// A runtime with two fixed containers.
struct TinyRuntime;

#[cri_api::async_trait]
impl RuntimeService for TinyRuntime {
    async fn version(
        &self,
        _req: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "tiny-runtime".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn list_containers(
        &self,
        _req: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let containers = ["web", "sidecar"]
            .iter()
            .enumerate()
            .map(|(i, name)| Container {
                id: format!("{i:012x}"),
                pod_sandbox_id: "pod-1".into(),
                metadata: Some(ContainerMetadata {
                    name: name.to_string(),
                    attempt: 0,
                }),
                state: ContainerState::ContainerRunning as i32,
                labels: HashMap::from([("app".to_string(), "demo".to_string())]),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(ListContainersResponse { containers }))
    }
}

struct NoImages;
impl ImageService for NoImages {}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let socket = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("cri.sock"));

    let bound = cri_api::transport::bind(&socket)?;
    println!("serving CRI runtime.v1 on {}", bound.path().display());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.serve(TinyRuntime, NoImages, async {
        let _ = stopped.await;
    }));

    let mut client = RuntimeServiceClient::new(cri_api::transport::connect(&socket).await?);
    let v = client
        .version(VersionRequest::default())
        .await?
        .into_inner();
    println!(
        "Version: runtime {} {} (CRI {})",
        v.runtime_name, v.runtime_version, v.runtime_api_version
    );
    let listed = client
        .list_containers(ListContainersRequest::default())
        .await?
        .into_inner();
    println!("{:<14} {:<10} STATE", "CONTAINER", "NAME");
    for c in listed.containers {
        let name = c.metadata.map(|m| m.name).unwrap_or_default();
        let state = ContainerState::try_from(c.state).map_or("UNKNOWN", |s| s.as_str_name());
        println!("{:<14} {:<10} {state}", c.id, name);
    }
    let status = client
        .exec_sync(cri_api::v1::ExecSyncRequest::default())
        .await
        .expect_err("ExecSync is not implemented by TinyRuntime");
    println!(
        "ExecSync: {:?} (not implemented by this runtime)",
        status.code()
    );

    stop.send(()).ok();
    server.await??;
    println!("socket removed after shutdown: {}", !socket.exists());
    Ok(())
}
