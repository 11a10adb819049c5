//! GetContainerEvents: created/started/stopped/deleted events of pods and
//! containers, each with the pod's status and its containers' statuses (as
//! the kubelet's evented PLEG reads them), to any number of subscribers.
//! A subscriber that falls behind loses the oldest events, never holding up
//! the server or the others.

use cri_api::v1::{ContainerEventResponse, ContainerEventType, PodSandboxStatusRequest};
use cri_api::{BoxStream, Request, Status};
use tokio::sync::broadcast;

use super::Logger;
use super::containers::Containers;
use super::pods::{Pods, now_nanos};

/// Events kept for a subscriber that has not read them yet.
const BACKLOG: usize = 1024;

#[derive(Debug, Clone)]
pub(crate) struct Events {
    tx: broadcast::Sender<ContainerEventResponse>,
    pods: Pods,
    ctrs: Containers,
    log: Logger,
}

impl Events {
    pub(crate) fn new(pods: Pods, ctrs: Containers, log: Logger) -> Self {
        let (tx, _) = broadcast::channel(BACKLOG);
        Self {
            tx,
            pods,
            ctrs,
            log,
        }
    }

    /// Sends an event about `id` (a container, or a pod for pod events) of
    /// pod `pod_id`, with the statuses as they are now.
    pub(crate) async fn send(&self, id: &str, pod_id: &str, kind: ContainerEventType) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let pod_sandbox_status = self
            .pods
            .status(Request::new(PodSandboxStatusRequest {
                pod_sandbox_id: pod_id.to_string(),
                verbose: false,
            }))
            .await
            .ok()
            .and_then(|r| r.into_inner().status);
        let mut containers_statuses = Vec::new();
        for cid in self.ctrs.of_pod(pod_id) {
            if let Ok((s, _)) = self.ctrs.status(&cid, false).await {
                containers_statuses.push(s);
            }
        }
        let _ = self.tx.send(ContainerEventResponse {
            container_id: id.to_string(),
            container_event_type: kind as i32,
            created_at: now_nanos(),
            pod_sandbox_status,
            containers_statuses,
        });
    }

    /// Sends STOPPED once container `id` (running) exits of itself or is stopped.
    pub(crate) fn watch(&self, id: String, pod_id: String) {
        let this = self.clone();
        tokio::spawn(async move {
            if this.ctrs.runtime().exited(&id).await.is_ok() {
                this.send(&id, &pod_id, ContainerEventType::ContainerStoppedEvent)
                    .await;
            }
        });
    }

    /// A new subscriber's stream.
    pub(crate) fn subscribe(&self) -> BoxStream<ContainerEventResponse> {
        let rx = self.tx.subscribe();
        let log = self.log.clone();
        Box::pin(futures_stream(rx, log))
    }
}

fn futures_stream(
    rx: broadcast::Receiver<ContainerEventResponse>,
    log: Logger,
) -> impl tokio_stream::Stream<Item = Result<ContainerEventResponse, Status>> + Send {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |r| match r {
        Ok(ev) => Some(Ok(ev)),
        Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
            log.log(
                "warn",
                &format!("an event subscriber fell behind and lost {n} events"),
            );
            None
        }
    })
}
