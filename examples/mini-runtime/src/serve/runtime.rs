//! RuntimeService: what is implemented so far. Every other RPC answers
//! UNIMPLEMENTED naming itself (cri-api's default bodies).

use std::path::PathBuf;
use std::sync::Mutex;

use cri_api::v1::{
    CgroupDriver, LinuxRuntimeConfiguration, ListPodSandboxRequest, ListPodSandboxResponse,
    PodSandboxStatusRequest, PodSandboxStatusResponse, RemovePodSandboxRequest,
    RemovePodSandboxResponse, RunPodSandboxRequest, RunPodSandboxResponse, RuntimeCondition,
    RuntimeConfigRequest, RuntimeConfigResponse, RuntimeStatus, StatusRequest, StatusResponse,
    StopPodSandboxRequest, StopPodSandboxResponse, UpdateRuntimeConfigRequest,
    UpdateRuntimeConfigResponse, VersionRequest, VersionResponse,
};
use cri_api::{Request, Response, Status};

use super::Logger;
use super::pods::Pods;

/// The runtime side of the server.
#[derive(Debug)]
pub(crate) struct Runtime {
    root: PathBuf,
    log: Logger,
    /// The pod CIDR the kubelet last gave in UpdateRuntimeConfig.
    pod_cidr: Mutex<String>,
    pods: Pods,
}

impl Runtime {
    pub(crate) fn new(root: PathBuf, log: Logger, pods: Pods) -> Self {
        Self {
            root,
            log,
            pod_cidr: Mutex::new(String::new()),
            pods,
        }
    }
}

#[cri_api::async_trait]
impl cri_api::v1::RuntimeService for Runtime {
    async fn version(
        &self,
        _req: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "mini-runtime".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let runtime_ready = self.root.is_dir() || std::fs::create_dir_all(&self.root).is_ok();
        let conditions = vec![
            RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: runtime_ready,
                reason: if runtime_ready {
                    String::new()
                } else {
                    "StateDirUnavailable".into()
                },
                message: if runtime_ready {
                    String::new()
                } else {
                    format!("cannot create {}", self.root.display())
                },
            },
            RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: "pod networking (CNI) is not implemented by mini-runtime yet".into(),
            },
        ];
        let mut info = std::collections::HashMap::new();
        if req.get_ref().verbose {
            let cidr = self
                .pod_cidr
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            info.insert(
                "config".to_string(),
                serde_json::json!({"root": self.root, "podCIDR": cidr}).to_string(),
            );
        }
        Ok(Response::new(StatusResponse {
            status: Some(RuntimeStatus { conditions }),
            info,
            ..Default::default()
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<RunPodSandboxRequest>,
    ) -> Result<Response<RunPodSandboxResponse>, Status> {
        self.pods.run(req).await
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        self.pods.stop(req).await
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        self.pods.remove(req).await
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<PodSandboxStatusRequest>,
    ) -> Result<Response<PodSandboxStatusResponse>, Status> {
        self.pods.status(req).await
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<ListPodSandboxRequest>,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        self.pods.list(req).await
    }

    async fn stream_pod_sandboxes(
        &self,
        req: Request<cri_api::v1::StreamPodSandboxesRequest>,
    ) -> Result<Response<cri_api::BoxStream<cri_api::v1::StreamPodSandboxesResponse>>, Status> {
        let filter = req.into_inner().filter;
        let items = self
            .pods
            .list(Request::new(ListPodSandboxRequest { filter }))
            .await?
            .into_inner()
            .items;
        Ok(Response::new(super::status::in_messages(
            items,
            |pod_sandboxes| cri_api::v1::StreamPodSandboxesResponse { pod_sandboxes },
        )))
    }

    async fn runtime_config(
        &self,
        _req: Request<RuntimeConfigRequest>,
    ) -> Result<Response<RuntimeConfigResponse>, Status> {
        Ok(Response::new(RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }

    async fn update_runtime_config(
        &self,
        req: Request<UpdateRuntimeConfigRequest>,
    ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
        let cidr = req
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        self.log.log("info", &format!("pod CIDR is now {cidr:?}"));
        *self.pod_cidr.lock().unwrap_or_else(|e| e.into_inner()) = cidr;
        Ok(Response::new(UpdateRuntimeConfigResponse {}))
    }
}
