//! RuntimeService: what is implemented so far. Every other RPC answers
//! UNIMPLEMENTED naming itself (cri-api's default bodies).

use std::path::PathBuf;
use std::sync::Mutex;

use cri_api::v1::ContainerEventType as Ev;
use cri_api::v1::{
    AttachRequest, AttachResponse, CheckpointContainerRequest, CheckpointContainerResponse,
    ContainerStatusRequest, ContainerStatusResponse, CreateContainerRequest,
    CreateContainerResponse, ExecRequest, ExecResponse, ExecSyncRequest, ExecSyncResponse,
    ListContainersRequest, ListContainersResponse, PortForwardRequest, PortForwardResponse,
    RemoveContainerRequest, RemoveContainerResponse, ReopenContainerLogRequest,
    ReopenContainerLogResponse, StartContainerRequest, StartContainerResponse,
    StopContainerRequest, StopContainerResponse, UpdateContainerResourcesRequest,
    UpdateContainerResourcesResponse,
};
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
use super::containers::Containers;
use super::events::Events;
use super::pods::Pods;
use super::stats::StatsService;

/// The runtime side of the server.
#[derive(Debug)]
pub(crate) struct Runtime {
    root: PathBuf,
    log: Logger,
    /// The pod CIDR the kubelet last gave in UpdateRuntimeConfig.
    pod_cidr: Mutex<String>,
    pods: Pods,
    ctrs: Containers,
    events: Events,
    stats: StatsService,
    streams: cri_streaming::Server,
}

impl Runtime {
    /// Must be called on the async runtime: containers that run are
    /// watched for their exit events from here on.
    pub(crate) fn new(
        root: PathBuf,
        log: Logger,
        pods: Pods,
        ctrs: Containers,
        streams: cri_streaming::Server,
    ) -> Self {
        let events = Events::new(pods.clone(), ctrs.clone(), log.clone());
        for (id, pod) in ctrs.running() {
            events.watch(id, pod);
        }
        let stats = StatsService::new(ctrs.clone(), pods.clone());
        Self {
            root,
            log,
            pod_cidr: Mutex::new(String::new()),
            pods,
            ctrs,
            events,
            stats,
            streams,
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
            match self.pods.network_ready() {
                Ok(()) => RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: true,
                    reason: String::new(),
                    message: String::new(),
                },
                Err(e) => RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: false,
                    reason: "NetworkPluginNotReady".into(),
                    message: e,
                },
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
        let r = self.pods.run(req).await?;
        let id = r.get_ref().pod_sandbox_id.clone();
        self.events.send(&id, &id, Ev::ContainerCreatedEvent).await;
        self.events.send(&id, &id, Ev::ContainerStartedEvent).await;
        Ok(r)
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<StopPodSandboxRequest>,
    ) -> Result<Response<StopPodSandboxResponse>, Status> {
        // Every container of the pod first, killed at once (as containerd).
        let pod = req.get_ref().pod_sandbox_id.clone();
        for id in self.ctrs.of_pod(&pod) {
            self.ctrs.stop(&id, 0).await?;
        }
        let r = self.pods.stop(req).await?;
        self.events
            .send(&pod, &pod, Ev::ContainerStoppedEvent)
            .await;
        Ok(r)
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<RemovePodSandboxRequest>,
    ) -> Result<Response<RemovePodSandboxResponse>, Status> {
        let pod = req.get_ref().pod_sandbox_id.clone();
        for id in self.ctrs.of_pod(&pod) {
            self.ctrs.remove(&id).await?;
            self.events.send(&id, &pod, Ev::ContainerDeletedEvent).await;
        }
        let r = self.pods.remove(req).await?;
        self.events
            .send(&pod, &pod, Ev::ContainerDeletedEvent)
            .await;
        Ok(r)
    }

    async fn create_container(
        &self,
        req: Request<CreateContainerRequest>,
    ) -> Result<Response<CreateContainerResponse>, Status> {
        let req = req.into_inner();
        let config = req.config.unwrap_or_default();
        let pod = req.pod_sandbox_id.clone();
        let r = self.ctrs.create(req.pod_sandbox_id, config).await?;
        self.events
            .send(&r.get_ref().container_id, &pod, Ev::ContainerCreatedEvent)
            .await;
        Ok(r)
    }

    async fn start_container(
        &self,
        req: Request<StartContainerRequest>,
    ) -> Result<Response<StartContainerResponse>, Status> {
        let id = req.into_inner().container_id;
        self.ctrs.start(&id).await?;
        if let Some((id, pod)) = self.ctrs.pod_of(&id) {
            self.events.send(&id, &pod, Ev::ContainerStartedEvent).await;
            self.events.watch(id, pod);
        }
        Ok(Response::new(StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<StopContainerRequest>,
    ) -> Result<Response<StopContainerResponse>, Status> {
        let req = req.into_inner();
        self.ctrs.stop(&req.container_id, req.timeout).await?;
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        let id = req.into_inner().container_id;
        let known = self.ctrs.pod_of(&id);
        self.ctrs.remove(&id).await?;
        if let Some((id, pod)) = known {
            self.events.send(&id, &pod, Ev::ContainerDeletedEvent).await;
        }
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn container_status(
        &self,
        req: Request<ContainerStatusRequest>,
    ) -> Result<Response<ContainerStatusResponse>, Status> {
        let req = req.into_inner();
        let (status, info) = self.ctrs.status(&req.container_id, req.verbose).await?;
        Ok(Response::new(ContainerStatusResponse {
            status: Some(status),
            info,
        }))
    }

    async fn list_containers(
        &self,
        req: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let containers = self.ctrs.list(req.into_inner().filter).await?;
        Ok(Response::new(ListContainersResponse { containers }))
    }

    async fn stream_containers(
        &self,
        req: Request<cri_api::v1::StreamContainersRequest>,
    ) -> Result<Response<cri_api::BoxStream<cri_api::v1::StreamContainersResponse>>, Status> {
        let items = self.ctrs.list(req.into_inner().filter).await?;
        Ok(Response::new(super::status::in_messages(
            items,
            |containers| cri_api::v1::StreamContainersResponse { containers },
        )))
    }

    async fn update_container_resources(
        &self,
        req: Request<UpdateContainerResourcesRequest>,
    ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
        let req = req.into_inner();
        self.ctrs
            .update_resources(&req.container_id, req.linux)
            .await?;
        Ok(Response::new(UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        req: Request<ReopenContainerLogRequest>,
    ) -> Result<Response<ReopenContainerLogResponse>, Status> {
        self.ctrs.reopen_log(&req.into_inner().container_id).await?;
        Ok(Response::new(ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        req: Request<ExecSyncRequest>,
    ) -> Result<Response<ExecSyncResponse>, Status> {
        self.ctrs.exec_sync(req.into_inner()).await
    }

    async fn exec(&self, req: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
        let r = req.into_inner();
        let id = self.ctrs.running_id(&r.container_id)?;
        let url = self
            .streams
            .url_for(cri_streaming::Request::Exec(cri_streaming::ExecRequest {
                container_id: id,
                cmd: r.cmd,
                tty: r.tty,
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
            }));
        Ok(Response::new(ExecResponse { url }))
    }

    async fn attach(
        &self,
        req: Request<AttachRequest>,
    ) -> Result<Response<AttachResponse>, Status> {
        let r = req.into_inner();
        let id = self.ctrs.running_id(&r.container_id)?;
        let url = self.streams.url_for(cri_streaming::Request::Attach(
            cri_streaming::AttachRequest {
                container_id: id,
                tty: r.tty,
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
            },
        ));
        Ok(Response::new(AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        req: Request<PortForwardRequest>,
    ) -> Result<Response<PortForwardResponse>, Status> {
        let r = req.into_inner();
        let ports = r
            .port
            .iter()
            .filter_map(|p| u16::try_from(*p).ok())
            .collect();
        self.pods.netns_of(&r.pod_sandbox_id)?;
        let url = self.streams.url_for(cri_streaming::Request::PortForward(
            cri_streaming::PortForwardRequest {
                pod_sandbox_id: r.pod_sandbox_id,
                ports,
            },
        ));
        Ok(Response::new(PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        req: Request<cri_api::v1::ContainerStatsRequest>,
    ) -> Result<Response<cri_api::v1::ContainerStatsResponse>, Status> {
        let stats = self
            .stats
            .container_stats(&req.into_inner().container_id)
            .await?;
        Ok(Response::new(cri_api::v1::ContainerStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_container_stats(
        &self,
        req: Request<cri_api::v1::ListContainerStatsRequest>,
    ) -> Result<Response<cri_api::v1::ListContainerStatsResponse>, Status> {
        let stats = self
            .stats
            .list_container_stats(req.into_inner().filter)
            .await?;
        Ok(Response::new(cri_api::v1::ListContainerStatsResponse {
            stats,
        }))
    }

    async fn stream_container_stats(
        &self,
        req: Request<cri_api::v1::StreamContainerStatsRequest>,
    ) -> Result<Response<cri_api::BoxStream<cri_api::v1::StreamContainerStatsResponse>>, Status>
    {
        let stats = self
            .stats
            .list_container_stats(req.into_inner().filter)
            .await?;
        Ok(Response::new(super::status::in_messages(
            stats,
            |container_stats| cri_api::v1::StreamContainerStatsResponse { container_stats },
        )))
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<cri_api::v1::PodSandboxStatsRequest>,
    ) -> Result<Response<cri_api::v1::PodSandboxStatsResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        let stats = self.stats.pod_stats(&id).await?;
        Ok(Response::new(cri_api::v1::PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<cri_api::v1::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri_api::v1::ListPodSandboxStatsResponse>, Status> {
        let stats = self.stats.list_pod_stats(req.into_inner().filter).await?;
        Ok(Response::new(cri_api::v1::ListPodSandboxStatsResponse {
            stats,
        }))
    }

    async fn stream_pod_sandbox_stats(
        &self,
        req: Request<cri_api::v1::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<cri_api::BoxStream<cri_api::v1::StreamPodSandboxStatsResponse>>, Status>
    {
        let stats = self.stats.list_pod_stats(req.into_inner().filter).await?;
        Ok(Response::new(super::status::in_messages(
            stats,
            |pod_sandbox_stats| cri_api::v1::StreamPodSandboxStatsResponse { pod_sandbox_stats },
        )))
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<cri_api::v1::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri_api::v1::ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(cri_api::v1::ListMetricDescriptorsResponse {
            descriptors: StatsService::descriptors(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<cri_api::v1::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri_api::v1::ListPodSandboxMetricsResponse>, Status> {
        Ok(Response::new(cri_api::v1::ListPodSandboxMetricsResponse {
            pod_metrics: self.stats.list_pod_metrics().await?,
        }))
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        _req: Request<cri_api::v1::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<cri_api::BoxStream<cri_api::v1::StreamPodSandboxMetricsResponse>>, Status>
    {
        let metrics = self.stats.list_pod_metrics().await?;
        Ok(Response::new(super::status::in_messages(
            metrics,
            |pod_sandbox_metrics| cri_api::v1::StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics,
            },
        )))
    }

    async fn update_pod_sandbox_resources(
        &self,
        req: Request<cri_api::v1::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<cri_api::v1::UpdatePodSandboxResourcesResponse>, Status> {
        let req = req.into_inner();
        self.pods
            .update_resources(&req.pod_sandbox_id, req.overhead, req.resources)?;
        Ok(Response::new(
            cri_api::v1::UpdatePodSandboxResourcesResponse {},
        ))
    }

    async fn get_container_events(
        &self,
        _req: Request<cri_api::v1::GetEventsRequest>,
    ) -> Result<Response<cri_api::BoxStream<cri_api::v1::ContainerEventResponse>>, Status> {
        Ok(Response::new(self.events.subscribe()))
    }

    async fn checkpoint_container(
        &self,
        _req: Request<CheckpointContainerRequest>,
    ) -> Result<Response<CheckpointContainerResponse>, Status> {
        Err(Status::unimplemented(
            "CheckpointContainer is not supported by mini-runtime: it needs CRIU, and \
             Debian's criu 3.17 fails `criu check` on this kernel",
        ))
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
