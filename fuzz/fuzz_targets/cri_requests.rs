//! Arbitrary bytes decoded as a CRI request (the first byte picks which of
//! the 41) and handed to the validation every server of ours runs first,
//! `cri_api::validate::Validated`, in front of a service that makes
//! nothing. No panic; a refused request answers INVALID_ARGUMENT naming a
//! field in printable text and never reaches the service; a request that
//! passes reaches it unchanged.
#![no_main]

use cri_api::v1::*;
use cri_api::validate::{Validate, Validated};
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// Answers UNIMPLEMENTED to everything: reaching it is what is observed.
struct Nothing;
impl RuntimeService for Nothing {}
impl ImageService for Nothing {}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fn check<T, F, R>(bytes: &[u8], call: F)
where
    T: Message + Default + Validate + Clone + PartialEq + std::fmt::Debug,
    F: FnOnce(Validated<Nothing>, cri_api::Request<T>) -> R,
    R: std::future::Future<Output = Result<cri_api::Response<()>, cri_api::Status>>,
{
    let Ok(req) = T::decode(bytes) else { return };
    let verdict = req.validate();
    let answer = runtime().block_on(call(Validated(Nothing), cri_api::Request::new(req.clone())));
    let status = answer.expect_err("Nothing answers UNIMPLEMENTED");
    match &verdict {
        Ok(()) => assert_eq!(status.code(), cri_api::Code::Unimplemented, "{status:?}"),
        Err(e) => {
            assert_eq!(status.code(), cri_api::Code::InvalidArgument, "{status:?}");
            assert_eq!(status.message(), e.to_string());
            assert!(!e.field.is_empty() && !e.reason.is_empty(), "{e:?}");
            let first = e.field.split(['.', '[', '/']).next().unwrap_or_default();
            assert!(
                !first.is_empty() && first.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{e}"
            );
            let msg = e.to_string();
            assert!(
                msg.chars().all(|c| !c.is_control() && c != '\u{fffd}'),
                "not printable: {msg:?}"
            );
        }
    }
    // Deterministic, and the request is left as it was.
    assert_eq!(req.validate(), verdict);
}

/// One arm per RPC: the request type and the service method it goes to.
macro_rules! rpcs {
    ($sel:expr, $bytes:expr, { $($n:literal => $t:ty, $svc:ident :: $m:ident;)* }) => {
        match $sel {
            $($n => check::<$t, _, _>($bytes, |s, r| async move {
                $svc::$m(&s, r).await.map(|_| cri_api::Response::new(()))
            }),)*
            _ => {}
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((sel, bytes)) = data.split_first() else {
        return;
    };
    rpcs!(sel % 41, bytes, {
        0 => VersionRequest, RuntimeService::version;
        1 => RunPodSandboxRequest, RuntimeService::run_pod_sandbox;
        2 => StopPodSandboxRequest, RuntimeService::stop_pod_sandbox;
        3 => RemovePodSandboxRequest, RuntimeService::remove_pod_sandbox;
        4 => PodSandboxStatusRequest, RuntimeService::pod_sandbox_status;
        5 => ListPodSandboxRequest, RuntimeService::list_pod_sandbox;
        6 => StreamPodSandboxesRequest, RuntimeService::stream_pod_sandboxes;
        7 => CreateContainerRequest, RuntimeService::create_container;
        8 => StartContainerRequest, RuntimeService::start_container;
        9 => StopContainerRequest, RuntimeService::stop_container;
        10 => RemoveContainerRequest, RuntimeService::remove_container;
        11 => ListContainersRequest, RuntimeService::list_containers;
        12 => StreamContainersRequest, RuntimeService::stream_containers;
        13 => ContainerStatusRequest, RuntimeService::container_status;
        14 => UpdateContainerResourcesRequest, RuntimeService::update_container_resources;
        15 => ReopenContainerLogRequest, RuntimeService::reopen_container_log;
        16 => ExecSyncRequest, RuntimeService::exec_sync;
        17 => ExecRequest, RuntimeService::exec;
        18 => AttachRequest, RuntimeService::attach;
        19 => PortForwardRequest, RuntimeService::port_forward;
        20 => ContainerStatsRequest, RuntimeService::container_stats;
        21 => ListContainerStatsRequest, RuntimeService::list_container_stats;
        22 => StreamContainerStatsRequest, RuntimeService::stream_container_stats;
        23 => PodSandboxStatsRequest, RuntimeService::pod_sandbox_stats;
        24 => ListPodSandboxStatsRequest, RuntimeService::list_pod_sandbox_stats;
        25 => StreamPodSandboxStatsRequest, RuntimeService::stream_pod_sandbox_stats;
        26 => UpdateRuntimeConfigRequest, RuntimeService::update_runtime_config;
        27 => StatusRequest, RuntimeService::status;
        28 => CheckpointContainerRequest, RuntimeService::checkpoint_container;
        29 => GetEventsRequest, RuntimeService::get_container_events;
        30 => ListMetricDescriptorsRequest, RuntimeService::list_metric_descriptors;
        31 => ListPodSandboxMetricsRequest, RuntimeService::list_pod_sandbox_metrics;
        32 => StreamPodSandboxMetricsRequest, RuntimeService::stream_pod_sandbox_metrics;
        33 => RuntimeConfigRequest, RuntimeService::runtime_config;
        34 => UpdatePodSandboxResourcesRequest, RuntimeService::update_pod_sandbox_resources;
        35 => ListImagesRequest, ImageService::list_images;
        36 => StreamImagesRequest, ImageService::stream_images;
        37 => ImageStatusRequest, ImageService::image_status;
        38 => PullImageRequest, ImageService::pull_image;
        39 => RemoveImageRequest, ImageService::remove_image;
        40 => ImageFsInfoRequest, ImageService::image_fs_info;
    });
});
