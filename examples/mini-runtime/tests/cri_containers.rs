//! Containers through `serve`'s CRI, driven by this workspace's cri-api
//! client: create/start/stop/remove with the image's process and the
//! request's overrides, CRI logs, ExecSync, status and filters, errors as
//! the CRI expects them, and every container found again (running, with
//! its exit code and log) after a `kill -9` of `serve`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::root_or_skip;
use common::serve::{Cleanup, import_busybox, pod_config, spawn_in};
use cri_api::Code;
use cri_api::transport::Channel;
use cri_api::v1::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ContainerStateValue,
    ContainerStatusRequest, CreateContainerRequest, ExecRequest, ExecSyncRequest, ImageSpec,
    Int64Value, KeyValue, LinuxContainerConfig, LinuxContainerSecurityContext,
    ListContainersRequest, RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    RuntimeServiceClient, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
};

fn config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        labels: [("name".to_string(), name.to_string())].into(),
        ..Default::default()
    }
}

async fn create(
    c: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    cfg: ContainerConfig,
    pod_cfg: &cri_api::v1::PodSandboxConfig,
) -> Result<String, cri_api::Status> {
    c.create_container(CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(cfg),
        sandbox_config: Some(pod_cfg.clone()),
    })
    .await
    .map(|r| r.into_inner().container_id)
}

async fn status(c: &mut RuntimeServiceClient<Channel>, id: &str) -> cri_api::v1::ContainerStatus {
    c.container_status(ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .unwrap()
}

/// Waits (bounded) until container `id` has exited; its status then.
async fn exited(c: &mut RuntimeServiceClient<Channel>, id: &str) -> cri_api::v1::ContainerStatus {
    for _ in 0..400 {
        let s = status(c, id).await;
        if s.state == ContainerState::ContainerExited as i32 {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("container {id} did not exit");
}

async fn exec(
    c: &mut RuntimeServiceClient<Channel>,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<cri_api::v1::ExecSyncResponse, cri_api::Status> {
    c.exec_sync(ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout,
    })
    .await
    .map(|r| r.into_inner())
}

/// The CRI log lines' stream and text, without their timestamps.
fn log_lines(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let (_time, stream, tag, text) = (f.next(), f.next(), f.next(), f.next());
            assert_eq!(tag, Some("F"), "{l}");
            (stream.unwrap().to_string(), text.unwrap_or("").to_string())
        })
        .collect()
}

#[test]
fn containers_run_in_pods_and_survive_a_restart_of_serve() {
    if !root_or_skip("containers_run_in_pods_and_survive_a_restart_of_serve") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let _cleanup = Cleanup {
        dir: dir.path().to_path_buf(),
        cgroups: vec![format!("/mr-serve-test-{pid}-p")],
    };
    let image = import_busybox(dir.path());
    let logs = dir.path().join("logs");
    let sock = dir.path().join("cri.sock");
    let mut child = spawn_in(dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect =
        || async { RuntimeServiceClient::new(cri_api::transport::connect(&sock).await.unwrap()) };
    let mut pod_cfg = pod_config("p", &[]);
    pod_cfg.log_directory = logs.display().to_string();
    pod_cfg.hostname = "pod-p".into();
    let (pod, web, once) = rt.block_on(async {
        let mut c = connect().await;
        let pod = c
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_cfg.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;

        // A long-running container: output on both streams, a trap for the
        // image's stop signal (SIGQUIT) that exits 3.
        let mut cfg = config(
            "web",
            &image,
            &[
                "/bin/sh",
                "-c",
                "echo out; echo err >&2; trap 'echo bye; exit 3' QUIT; \
                 while :; do sleep 0.05; done",
            ],
        );
        cfg.envs = vec![KeyValue {
            key: "GREETING".into(),
            value: b"hello".to_vec(),
        }];
        let web = create(&mut c, &pod, cfg.clone(), &pod_cfg).await.unwrap();
        let s = status(&mut c, &web).await;
        assert_eq!(s.state, ContainerState::ContainerCreated as i32);
        assert!(s.image_ref.contains("@sha256:"), "{}", s.image_ref);
        assert_eq!(s.log_path, logs.join("web.log").display().to_string());
        // The same name and attempt again: AlreadyExists.
        let e = create(&mut c, &pod, cfg, &pod_cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{}", e.message());
        c.start_container(StartContainerRequest {
            container_id: web.clone(),
        })
        .await
        .unwrap();
        let e = c
            .start_container(StartContainerRequest {
                container_id: web.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
        let s = status(&mut c, &web).await;
        assert_eq!(s.state, ContainerState::ContainerRunning as i32);
        assert!(s.started_at >= s.created_at && s.created_at > 0);

        // ExecSync: the container's env, user and cwd; both streams; the
        // exit code; a timeout.
        let r = exec(
            &mut c,
            &web,
            &[
                "/bin/sh",
                "-c",
                "echo $GREETING $(id -u):$(id -g) $(pwd) $(cat /etc/hostname); echo e >&2; exit 7",
            ],
            10,
        )
        .await
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&r.stdout),
            "hello 1000:50 /home/app pod-p\n"
        );
        assert_eq!(r.stderr, b"e\n");
        assert_eq!(r.exit_code, 7);
        let e = exec(&mut c, &web, &["/bin/sh", "-c", "sleep 30"], 1)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::DeadlineExceeded, "{}", e.message());
        let e = exec(&mut c, &web, &["/no/such/program"], 5).await;
        assert!(
            e.as_ref().is_err() || e.as_ref().unwrap().exit_code != 0,
            "{e:?}"
        );
        let e = c
            .exec(ExecRequest {
                container_id: web.clone(),
                cmd: vec!["sh".into()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unimplemented);
        assert!(e.message().contains("streaming"), "{}", e.message());

        // A container that runs the image's own command, as root with a
        // read-only rootfs and no capabilities.
        let mut cfg = config("once", &image, &[]);
        cfg.args = vec![
            "id -u; id -g; touch /x 2>/dev/null || echo ro; grep CapEff /proc/self/status".into(),
        ];
        cfg.linux = Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                run_as_user: Some(Int64Value { value: 0 }),
                readonly_rootfs: true,
                capabilities: Some(cri_api::v1::Capability {
                    drop_capabilities: vec!["ALL".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let once = create(&mut c, &pod, cfg, &pod_cfg).await.unwrap();
        c.start_container(StartContainerRequest {
            container_id: once.clone(),
        })
        .await
        .unwrap();
        let s = exited(&mut c, &once).await;
        assert_eq!(s.exit_code, 0);
        assert_eq!(s.reason, "Completed");
        assert!(s.finished_at >= s.started_at, "{s:?}");
        let lines = log_lines(&logs.join("once.log"));
        let texts: Vec<&str> = lines.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts[..3], ["0", "0", "ro"], "{lines:?}");
        assert!(texts[3].ends_with("0000000000000000"), "{lines:?}");

        // Errors: a missing pod, image or container; stop and remove of a
        // missing container are no errors.
        let e = create(&mut c, "nope", config("x", &image, &["true"]), &pod_cfg)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{}", e.message());
        let e = create(
            &mut c,
            &pod,
            config("x", "example.com/none:1", &["true"]),
            &pod_cfg,
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{}", e.message());
        let e = create(&mut c, &pod, ContainerConfig::default(), &pod_cfg)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        let e = c
            .container_status(ContainerStatusRequest {
                container_id: "nope".into(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        c.stop_container(StopContainerRequest {
            container_id: "nope".into(),
            timeout: 1,
        })
        .await
        .unwrap();
        c.remove_container(RemoveContainerRequest {
            container_id: "nope".into(),
        })
        .await
        .unwrap();
        // Nothing of the failed creates is left.
        let all = c
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(all.len(), 2, "{all:?}");
        (pod, web, once)
    });

    // kill -9 of serve: the containers go on; a new serve finds them.
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&sock);
    let mut child = spawn_in(dir.path(), &[]);
    rt.block_on(async {
        let mut c = connect().await;
        let running = c
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    state: Some(ContainerStateValue {
                        state: ContainerState::ContainerRunning as i32,
                    }),
                    pod_sandbox_id: pod.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(
            running.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            [web.as_str()]
        );
        let by_label = c
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    label_selector: [("name".to_string(), "once".to_string())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert_eq!(by_label.len(), 1);
        assert_eq!(by_label[0].id, once);
        assert_eq!(status(&mut c, &once).await.exit_code, 0);
        let r = exec(&mut c, &web, &["/bin/sh", "-c", "echo again"], 5)
            .await
            .unwrap();
        assert_eq!(r.stdout, b"again\n");

        // StopContainer: the image's SIGQUIT, which the trap answers with 3.
        c.stop_container(StopContainerRequest {
            container_id: web.clone(),
            timeout: 20,
        })
        .await
        .unwrap();
        let s = status(&mut c, &web).await;
        assert_eq!(s.state, ContainerState::ContainerExited as i32);
        assert_eq!(s.exit_code, 3);
        assert_eq!(s.reason, "Error");
        let lines = log_lines(&logs.join("web.log"));
        assert!(
            lines.contains(&("stdout".into(), "out".into())),
            "{lines:?}"
        );
        assert!(
            lines.contains(&("stderr".into(), "err".into())),
            "{lines:?}"
        );
        assert!(
            lines.contains(&("stdout".into(), "bye".into())),
            "{lines:?}"
        );
        let e = exec(&mut c, &web, &["/bin/sh", "-c", "true"], 5)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);

        // A new container after the restart, then the pod stopped and
        // removed with everything in it.
        let late = create(
            &mut c,
            &pod,
            config("late", &image, &["/bin/sh", "-c", "sleep 60"]),
            &pod_cfg,
        )
        .await
        .unwrap();
        c.start_container(StartContainerRequest {
            container_id: late.clone(),
        })
        .await
        .unwrap();
        c.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        let s = status(&mut c, &late).await;
        assert_eq!(s.state, ContainerState::ContainerExited as i32);
        assert_eq!(s.exit_code, 137);
        c.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        let all = c
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert!(all.is_empty(), "{all:?}");
    });
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let base = dir.path().display().to_string();
    assert!(
        !mounts.contains(&base),
        "mounts left under {base}:\n{mounts}"
    );
    let leases = std::fs::read_dir(dir.path().join("store/.store/leases"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leases, 0, "leases left in the store");
    child.kill().unwrap();
    child.wait().unwrap();
}
