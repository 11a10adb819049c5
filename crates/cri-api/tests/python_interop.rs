//! Interop with a client nobody here wrote: Python `grpcio`, with stubs that
//! `grpc_tools.protoc` generates from our proto, calls our server over the socket.
//!
//! The Python comes from the venv the test command creates (`.venv` at the
//! repository root, or `CRI_API_PYTHON`); without it the test skips, except
//! under `CI=true`, where it fails.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use cri_api::v1::{
    Container, ContainerMetadata, ContainerState, ListContainersRequest, ListContainersResponse,
    RuntimeService, VersionRequest, VersionResponse,
};
use cri_api::{Request, Response, Status};
use tokio::sync::oneshot;

struct Runtime {
    containers: Vec<Container>,
}

#[cri_api::async_trait]
impl RuntimeService for Runtime {
    async fn version(
        &self,
        req: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: req.into_inner().version,
            runtime_name: "interop-runtime".into(),
            runtime_version: "0.0.7".into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn list_containers(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let id = req.into_inner().filter.map(|f| f.id).unwrap_or_default();
        let containers = self
            .containers
            .iter()
            .filter(|c| id.is_empty() || c.id == id)
            .cloned()
            .collect();
        Ok(Response::new(ListContainersResponse { containers }))
    }
}

struct Images;
impl cri_api::v1::ImageService for Images {}

fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("CRI_API_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
        });
    if candidate.exists() {
        return Some(candidate);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "python with grpcio not found at {}: the test command creates it",
            candidate.display()
        );
    }
    eprintln!(
        "skipping python_grpcio_client: no venv at {}",
        candidate.display()
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_client() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cri.sock");
    let stubs = dir.path().join("stubs");
    std::fs::create_dir(&stubs).unwrap();

    let containers = (0..5)
        .map(|i| Container {
            id: format!("c{i:04}"),
            metadata: Some(ContainerMetadata {
                name: format!("web-{i}"),
                attempt: 1,
            }),
            state: ContainerState::ContainerExited as i32,
            labels: HashMap::from([("tier".to_string(), "front".to_string())]),
            ..Default::default()
        })
        .collect();
    let bound = cri_api::transport::bind(&socket).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(bound.serve(Runtime { containers }, Images, async {
        let _ = stopped.await;
    }));

    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let run = tokio::process::Command::new(&python)
        .arg(manifest.join("tests/interop/cri_client.py"))
        .arg(manifest.join("proto"))
        .arg(&socket)
        .arg(&stubs)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("python client finishes within 120 s")
        .unwrap();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python client failed: {stderr}");
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("python printed no JSON ({e}): {stderr}"));
    assert_eq!(reply["runtime_name"], "interop-runtime");
    assert_eq!(reply["runtime_version"], "0.0.7");
    assert_eq!(reply["version"], "v1");
    assert_eq!(reply["count"], 5);
    assert_eq!(
        reply["filtered"],
        serde_json::json!([{
            "id": "c0001", "name": "web-1", "state": "CONTAINER_EXITED",
            "labels": {"tier": "front"}
        }])
    );
    assert_eq!(reply["garbage"], "INTERNAL");
    assert_eq!(reply["exec_sync"], "UNIMPLEMENTED");
}
